//! `pfai bench mixed`: pushes, pulls and manifest GETs at once, as a registry sees them in
//! production, started on a fixed schedule (open loop) at a target rate. A request's latency
//! is measured from when it was due to start, so a saturated server shows up as latency and a
//! lower achieved rate instead of being hidden by a client that waits politely
//! (coordinated omission).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{digest_of, get_manifest, parse_duration, parse_size, report, Phase, Reg, Target};
use crate::cli::client::{CliError, CliResult};
use crate::ids::Algorithm;

/// The arguments of `pfai bench mixed`.
#[derive(Debug, clap::Args)]
pub struct MixedArgs {
    /// Registry to load.
    #[command(flatten)]
    pub target: Target,
    /// How long requests are started for (in-flight ones are then awaited).
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Requests started per second, all kinds together.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    /// Weights of pushes, pulls and manifest GETs, `PUSH:PULL:MANIFEST`.
    #[arg(long, default_value = "1:4:15", value_parser = parse_mix)]
    pub mix: Mix,
    /// Size of each pushed blob.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    pub push_size: u64,
    /// Size of each pulled blob.
    #[arg(long, default_value = "4MiB", value_parser = parse_size)]
    pub pull_size: u64,
    /// Blobs pushed before the run (untimed) for the pulls to choose from.
    #[arg(long, default_value_t = 8)]
    pub pool: usize,
    /// Most requests in flight; past it, requests wait (and their wait counts as latency).
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Skip checking pulled blobs and manifests against their digests.
    #[arg(long)]
    pub no_verify: bool,
    /// Seed of the generated data and of the request order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The weights of the three kinds of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    push: u32,
    pull: u32,
    manifest: u32,
}

/// Parses `PUSH:PULL:MANIFEST` weights, e.g. `1:4:15`; at least one must be non-zero.
fn parse_mix(s: &str) -> Result<Mix, String> {
    let w: Vec<u32> = s
        .split(':')
        .map(|p| p.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{s:?} is not PUSH:PULL:MANIFEST weights (e.g. 1:4:15)"))?;
    match w[..] {
        [push, pull, manifest] if push + pull + manifest > 0 => Ok(Mix {
            push,
            pull,
            manifest,
        }),
        _ => Err(format!(
            "{s:?} is not PUSH:PULL:MANIFEST weights with one above zero (e.g. 1:4:15)"
        )),
    }
}

/// A kind of request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Push,
    Pull,
    Manifest,
}

impl Mix {
    /// The kind a random draw `x` picks, in proportion to the weights.
    fn pick(&self, x: u64) -> Op {
        let total = u64::from(self.push + self.pull + self.manifest);
        let r = x % total.max(1);
        if r < u64::from(self.push) {
            Op::Push
        } else if r < u64::from(self.push + self.pull) {
            Op::Pull
        } else {
            Op::Manifest
        }
    }
}

/// xorshift64: the request order, reproducible from `--seed`.
fn next(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// Runs the mixed workload and reports one phase per kind, plus the target and achieved rates.
pub async fn run(a: MixedArgs) -> CliResult<()> {
    if !(a.rate.is_finite() && a.rate > 0.0) {
        return Err(CliError::Msg("--rate must be above zero".into()));
    }
    let reg = Arc::new(Reg::new(a.target.clone(), a.max_in_flight));
    let verify = !a.no_verify;
    // Untimed setup: the manifest to GET and the blobs to pull.
    let manifest = super::push_bench_image(&reg).await?;
    let mut pool = Vec::new();
    if a.mix.pull > 0 {
        for i in 0..a.pool.max(1) as u64 {
            let seed = a.seed.wrapping_mul(1_000_003).wrapping_add(500_000 + i);
            let size = a.pull_size;
            let d = tokio::task::spawn_blocking(move || digest_of(Algorithm::Sha256, seed, size))
                .await
                .map_err(|e| CliError::Msg(e.to_string()))?;
            reg.push_monolithic(seed, size, &d).await?;
            pool.push(d);
        }
    }
    let pool = Arc::new(pool);
    let check = verify.then_some(manifest);
    let gate = Arc::new(tokio::sync::Semaphore::new(a.max_in_flight.max(1)));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now();
    let deadline = start + a.duration;
    let mut x = a.seed | 1;
    let mut scheduled = 0u64;
    loop {
        let due = start + interval.mul_f64(scheduled as f64);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let permit = gate
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| CliError::Msg(e.to_string()))?;
        let op = a.mix.pick(next(&mut x));
        let pick = next(&mut x) as usize;
        let push_seed = a.seed.wrapping_mul(7_777_777).wrapping_add(scheduled);
        let (reg, pool, check, tx) = (reg.clone(), pool.clone(), check.clone(), tx.clone());
        let push_size = a.push_size;
        tokio::spawn(async move {
            let r = match op {
                Op::Push => push_one(&reg, push_seed, push_size).await,
                Op::Pull => reg.pull(&pool[pick % pool.len()], verify).await,
                Op::Manifest => get_manifest(&reg, false, check.as_ref()).await,
            };
            drop(permit);
            let _ = tx.send((op, due.elapsed().as_micros() as u64, r));
        });
        scheduled += 1;
    }
    drop(tx);
    let mut by_op: Vec<(Op, u64, Vec<u64>, u64)> = [Op::Push, Op::Pull, Op::Manifest]
        .into_iter()
        .map(|op| (op, 0, Vec::new(), 0))
        .collect();
    while let Some((op, us, r)) = rx.recv().await {
        if let Some(slot) = by_op.iter_mut().find(|s| s.0 == op) {
            match r {
                Ok(n) => {
                    slot.1 += n;
                    slot.2.push(us);
                }
                Err(e) => {
                    if slot.3 == 0 {
                        eprintln!("{op:?}: {e}");
                    }
                    slot.3 += 1;
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let completed: usize = by_op.iter().map(|s| s.2.len()).sum();
    let phases: Vec<Phase> = by_op
        .into_iter()
        .filter(|(_, _, lat, errors)| !lat.is_empty() || *errors > 0)
        .map(|(op, bytes, lat, errors)| {
            let (name, checked) = match op {
                Op::Push => ("mixed push", true),
                Op::Pull => ("mixed pull", verify),
                Op::Manifest => ("mixed manifest GET", verify),
            };
            Phase::measured(name, bytes, seconds, lat, errors).verified(checked)
        })
        .collect();
    let achieved = completed as f64 / seconds;
    if !a.json {
        println!(
            "rate: {:.1} req/s targeted, {achieved:.1} req/s completed ({scheduled} started in {:.1} s)",
            a.rate,
            a.duration.as_secs_f64()
        );
    }
    let extra = serde_json::json!({
        "target_rate": a.rate,
        "achieved_rate": achieved,
        "started": scheduled,
    });
    report(a.json, &a.target.url, &phases, extra)
}

/// Pushes one new blob monolithically (its digest computed first, off the async threads).
async fn push_one(reg: &Reg, seed: u64, size: u64) -> CliResult<u64> {
    let d = tokio::task::spawn_blocking(move || digest_of(Algorithm::Sha256, seed, size))
        .await
        .map_err(|e| CliError::Msg(e.to_string()))?;
    reg.push_monolithic(seed, size, &d).await?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_pick_in_proportion() {
        assert!(parse_mix("0:0:0").is_err());
        assert!(parse_mix("1:2").is_err());
        assert!(parse_mix("a:b:c").is_err());
        let m = parse_mix("1:4:15").unwrap();
        let mut x = 7u64;
        let mut counts = [0usize; 3];
        for _ in 0..20_000 {
            counts[m.pick(next(&mut x)) as usize] += 1;
        }
        // 5 %, 20 %, 75 %, within a point.
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
        assert!((3600..4400).contains(&counts[1]), "{counts:?}");
        assert!((14_600..15_400).contains(&counts[2]), "{counts:?}");
    }
}

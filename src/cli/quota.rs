//! `pfai quota set|unset|view`: storage quotas per owner (setting them is for site admins).

use clap::Subcommand;
use reqwest::Method;

use super::client::{decode, CliError, CliResult, Client};
use super::{print_json, print_rows};
use crate::api::{QuotaSet, QuotaView};
use crate::domain::quota::human;

/// Storage quota subcommands.
#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Set an owner's storage quota (site admin). SIZE: bytes, or with a unit: 500MB, 10GiB.
    ///
    /// Example: pfai quota set acme 10GiB
    Set {
        /// The user or org.
        owner: String,
        /// The limit: a number with an optional unit (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB).
        size: String,
    },
    /// Remove an owner's storage quota (site admin).
    ///
    /// Example: pfai quota unset acme
    Unset {
        /// The user or org.
        owner: String,
    },
    /// Show an owner's quota and usage; without OWNER, every owner's (site admin).
    ///
    /// Example: pfai quota view acme
    View {
        /// The user or org.
        owner: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Parses `10GiB`, `500MB`, `1.5G`, `1024` into bytes (decimal units are powers of 1000,
/// binary units of 1024, a bare `K`/`M`/`G`/`T` is binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 500MB or 10GiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        u => {
            return Err(format!(
                "unknown size unit `{u}` (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(bytes.round() as u64)
}

fn line(v: &QuotaView) -> Vec<String> {
    let limit = v
        .limit_bytes
        .map(|l| format!("{} ({l})", human(l)))
        .unwrap_or_else(|| "unlimited".into());
    vec![
        v.owner.clone(),
        format!("{} ({})", human(v.used_bytes), v.used_bytes),
        limit,
    ]
}

/// Runs a quota subcommand.
pub async fn run(cmd: QuotaCmd) -> CliResult<()> {
    let c = Client::from_env();
    c.token()?;
    match cmd {
        QuotaCmd::Set { owner, size } => {
            let limit_bytes = parse_size(&size).map_err(CliError::Msg)?;
            let v: QuotaView = decode(
                c.call_with(
                    Method::PUT,
                    &format!("/api/v1/admin/quotas/{owner}"),
                    &QuotaSet { limit_bytes },
                )
                .await?,
            )?;
            print_rows(&["OWNER", "USED", "LIMIT"], &[v], line);
        }
        QuotaCmd::Unset { owner } => {
            let v: QuotaView = decode(
                c.call(Method::DELETE, &format!("/api/v1/admin/quotas/{owner}"))
                    .await?,
            )?;
            print_rows(&["OWNER", "USED", "LIMIT"], &[v], line);
        }
        QuotaCmd::View { owner, json } => {
            let v = match &owner {
                Some(o) => {
                    c.call(Method::GET, &format!("/api/v1/admin/quotas/{o}"))
                        .await?
                }
                None => c.call(Method::GET, "/api/v1/admin/quotas").await?,
            };
            if json {
                print_json(&v);
            } else if owner.is_some() {
                let q: QuotaView = decode(v)?;
                print_rows(&["OWNER", "USED", "LIMIT"], &[q], line);
            } else {
                let all: Vec<QuotaView> = decode(v)?;
                print_rows(&["OWNER", "USED", "LIMIT"], &all, line);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_with_units_parse_to_bytes() {
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5XB").is_err());
        assert!(parse_size("").is_err());
    }
}

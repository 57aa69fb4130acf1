//! The machine a benchmark ran on. `--json` output carries it beside the figures, so a figure
//! is never quoted without the CPU, memory, kernel and load it was measured on.

use serde::Serialize;

/// What the figures of one run depend on, read from `/proc` (Linux; `unknown` elsewhere).
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    /// The client's version (the server's may differ).
    pub pfai_version: String,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The server under load.
    pub url: String,
    /// `model name` of the first CPU.
    pub cpu_model: String,
    /// CPUs this process may run on.
    pub cpus: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average when the run started: above ~0.5 the machine was not quiet.
    pub load_1m: f64,
}

/// Reads the facts now (cheap: a few small `/proc` files).
pub fn collect(url: &str) -> Facts {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu_model = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / (1 << 20) as f64);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    let load_1m = read("/proc/loadavg")
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Facts {
        pfai_version: env!("CARGO_PKG_VERSION").into(),
        started_at: crate::util::rfc3339(crate::util::now_unix()),
        url: url.into(),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        memory_gib,
        kernel: if kernel.is_empty() {
            "unknown".into()
        } else {
            kernel
        },
        load_1m,
    }
}

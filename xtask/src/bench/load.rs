//! Request-rate workloads, driven by [oha](https://crates.io/crates/oha), a
//! maintained HTTP load generator on hyper/tokio that can send `HEAD`
//! requests (Debian's wrk 4.1 hangs on `HEAD` responses) and reports
//! latency percentiles as JSON.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use crate::server::{Error, cargo, target_dir};

/// The oha release the bench installs when none is on `PATH`.
pub const OHA_VERSION: &str = "1.16.0";

/// Finds oha: `explicit`, then `oha` on `PATH`, then the copy the bench
/// installed before under `target/tools`; else installs it there with
/// `cargo install --locked` (once, a few minutes).
pub fn find_or_install(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("oha"))
            .find(|p| p.is_file())
    }) {
        return Ok(path);
    }
    let root = target_dir().join("tools");
    let installed = root.join("bin/oha");
    if installed.is_file() {
        return Ok(installed);
    }
    eprintln!(
        "bench: installing oha {OHA_VERSION} into {} (once)",
        root.display()
    );
    let status = cargo()
        .args([
            "install",
            "--locked",
            "--quiet",
            "oha",
            "--version",
            OHA_VERSION,
        ])
        .arg("--root")
        .arg(&root)
        .status()?;
    if !status.success() || !installed.is_file() {
        return Err("cargo install oha failed; install it or pass --oha PATH".into());
    }
    Ok(installed)
}

/// One load run.
#[derive(Debug, Clone)]
pub struct Load<'a> {
    /// Full URL.
    pub url: String,
    /// `GET` or `HEAD`.
    pub method: &'a str,
    /// Extra request headers (`Name: value`).
    pub headers: Vec<String>,
    /// Connections kept busy.
    pub concurrency: usize,
    /// How long to send requests.
    pub duration: Duration,
    /// oha's worker threads.
    pub threads: usize,
}

/// What a load run measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Successful (2xx) requests per second.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Responses that were not 2xx, plus transport errors.
    pub failures: u64,
    /// CPU time of the load generator over wall time (1.0 = one core).
    pub loadgen_cores: f64,
}

/// Runs oha for `load`.
pub fn run(oha: &Path, load: &Load<'_>) -> Result<Outcome, Error> {
    let mut cmd = Command::new(oha);
    cmd.args(["--no-tui", "--output-format", "json"])
        .args(["-m", load.method])
        .args(["-c", &load.concurrency.to_string()])
        .args(["--worker-threads", &load.threads.max(1).to_string()])
        .args(["-z", &format!("{}ms", load.duration.as_millis())]);
    for h in &load.headers {
        cmd.args(["-H", h]);
    }
    cmd.arg(&load.url);
    let before = children_cpu()?;
    let started = Instant::now();
    let output = cmd.output()?;
    let wall = started.elapsed();
    let cpu = children_cpu()?.saturating_sub(before);
    if !output.status.success() {
        return Err(format!(
            "oha failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let mut outcome = parse(&output.stdout)?;
    outcome.loadgen_cores = cpu.as_secs_f64() / wall.as_secs_f64();
    Ok(outcome)
}

/// CPU time (user + system) of every child this process has waited for.
fn children_cpu() -> Result<Duration, Error> {
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    let micros = |t: nix::sys::time::TimeVal| t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64;
    Ok(Duration::from_micros(
        micros(usage.user_time()) + micros(usage.system_time()),
    ))
}

/// oha's name for requests it cancelled at the end of the duration.
const DEADLINE: &str = "aborted due to deadline";

/// Reads oha's JSON summary: successful requests per second, latency
/// percentiles (seconds in oha's output) and failures.
fn parse(json: &[u8]) -> Result<Outcome, Error> {
    let v: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| format!("oha printed no JSON summary: {e}"))?;
    let number = |path: &[&str]| -> Result<f64, Error> {
        let mut at = &v;
        for key in path {
            at = at
                .get(key)
                .ok_or_else(|| format!("oha JSON: no {}", path.join(".")))?;
        }
        at.as_f64()
            .ok_or_else(|| format!("oha JSON: {} is not a number", path.join(".")).into())
    };
    let mut ok = 0u64;
    let mut failures = 0u64;
    if let Some(codes) = v.get("statusCodeDistribution").and_then(|c| c.as_object()) {
        for (code, count) in codes {
            let count = count.as_u64().unwrap_or(0);
            if code.starts_with('2') {
                ok += count;
            } else {
                failures += count;
            }
        }
    }
    if let Some(errors) = v.get("errorDistribution").and_then(|c| c.as_object()) {
        // Requests still in flight when the duration ends are cut off by oha
        // itself, not failed by the server.
        failures += errors
            .iter()
            .filter(|(kind, _)| kind.as_str() != DEADLINE)
            .filter_map(|(_, count)| count.as_u64())
            .sum::<u64>();
    }
    let total = number(&["summary", "total"])?;
    Ok(Outcome {
        rps: if total > 0.0 { ok as f64 / total } else { 0.0 },
        p50_ms: number(&["latencyPercentiles", "p50"])? * 1000.0,
        p99_ms: number(&["latencyPercentiles", "p99"])? * 1000.0,
        failures,
        loadgen_cores: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_summary() {
        let json = br#"{
            "summary": {"successRate": 0.99, "total": 2.0, "requestsPerSec": 5000.0},
            "latencyPercentiles": {"p50": 0.0004, "p99": 0.0021},
            "statusCodeDistribution": {"200": 9990, "404": 10},
            "errorDistribution": {"connection closed": 2, "aborted due to deadline": 16}
        }"#;
        let o = parse(json).unwrap();
        assert_eq!(o.rps, 4995.0);
        assert!((o.p50_ms - 0.4).abs() < 1e-9);
        assert!((o.p99_ms - 2.1).abs() < 1e-9);
        assert_eq!(o.failures, 12);
    }

    #[test]
    fn refuses_output_without_a_summary() {
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"latencyPercentiles": {}}"#).is_err());
    }
}

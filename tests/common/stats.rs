//! The daemon seen from outside: `/stats` parsed as JSON, and its CPU time, open
//! descriptors and resident memory read from /proc.

use std::fmt;
use std::fs;
use std::time::Duration;

use super::{expect_status, Daemon};

/// A `/stats` document.
pub struct Stats(serde_json::Value);

impl Stats {
    /// Parses a `/stats` body; panics (showing it) unless it is a JSON object.
    pub fn parse(body: &str) -> Stats {
        Stats::try_parse(body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_parse(body: &str) -> Result<Stats, String> {
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(v) if v.is_object() => Ok(Stats(v)),
            Ok(_) => Err(format!("/stats is not a JSON object: {body}")),
            Err(e) => Err(format!("/stats is not JSON ({e}): {body:?}")),
        }
    }

    /// The unsigned integer at `path`, dot-separated for nested objects
    /// ("clients", "frames_dropped.slow_client"); panics when it is missing or
    /// not one.
    pub fn u64(&self, path: &str) -> u64 {
        self.try_u64(path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The string at `path`, or "null" for a JSON null; panics when it is missing.
    pub fn str(&self, path: &str) -> String {
        let pointer = format!("/{}", path.replace('.', "/"));
        match self.0.pointer(&pointer) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) => "null".into(),
            Some(v) => panic!("/stats {path} is {v}, not a string: {self}"),
            None => panic!("/stats has no {path}: {self}"),
        }
    }

    fn try_u64(&self, path: &str) -> Result<u64, String> {
        let pointer = format!("/{}", path.replace('.', "/"));
        match self.0.pointer(&pointer) {
            Some(v) => v
                .as_u64()
                .ok_or_else(|| format!("/stats {path} is {v}, not a count: {self}")),
            None => Err(format!("/stats has no {path}: {self}")),
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// GET /stats, parsed; panics unless the answer is 200 with a JSON object.
pub fn stats(daemon: &Daemon) -> Stats {
    let resp = expect_status(
        daemon,
        "GET /stats",
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        200,
    );
    Stats::parse(&resp.body_text())
}

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_paths() {
        let s = Stats::parse(r#"{"clients":2,"frames_dropped":{"slow_client":7},"device":"x"}"#);
        assert_eq!(s.u64("clients"), 2);
        assert_eq!(s.u64("frames_dropped.slow_client"), 7);
        assert!(s.try_u64("slow_client").is_err(), "not at the top level");
        assert!(s.try_u64("device").is_err(), "a string is no count");
        assert!(Stats::try_parse("{\"clients\":").is_err());
        assert!(Stats::try_parse("[1]").is_err());
    }
}

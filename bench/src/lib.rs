//! Shared pieces of the benchmark binaries: WebSocket client framing, argument parsing,
//! statistics and a tiny JSON writer (the output is read by bench/bench.py).

pub mod ws;

use std::collections::HashMap;
use std::time::Duration;

/// `--key value` pairs and bare `--flag`s; panics with a usage line on a malformed value.
pub struct Args(HashMap<String, String>);

impl Args {
    pub fn parse() -> Args {
        let mut map = HashMap::new();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(a) = it.next() {
            let Some(k) = a.strip_prefix("--") else {
                eprintln!("unexpected argument {a}");
                std::process::exit(2);
            };
            let v = match it.peek() {
                Some(n) if !n.starts_with("--") => it.next().unwrap(),
                _ => "true".to_string(),
            };
            map.insert(k.to_string(), v);
        }
        Args(map)
    }
    pub fn str(&self, k: &str, d: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| d.to_string())
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str, d: T) -> T {
        match self.0.get(k) {
            None => d,
            Some(v) => v.parse().unwrap_or_else(|_| {
                eprintln!("--{k}: not a number: {v}");
                std::process::exit(2)
            }),
        }
    }
    pub fn flag(&self, k: &str) -> bool {
        self.0.get(k).is_some_and(|v| v != "false")
    }
}

/// Nearest-rank percentile of an unsorted sample (`q` in 0..=100); NaN when empty.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Median (mean of the two middle values for an even count); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// This process's user+system CPU time.
pub fn self_cpu() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Peak RSS of this process in KiB.
pub fn self_maxrss_kib() -> i64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// A JSON number (null for NaN/inf, which JSON cannot carry).
pub fn jnum(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "null".into()
    }
}

pub fn jstr(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

pub fn jarr(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| jnum(*x)).collect();
    format!("[{}]", items.join(","))
}

/// Raise RLIMIT_NOFILE to its hard limit (1000 sockets exceed the usual soft 1024 with margin).
pub fn raise_nofile() {
    let mut r: libc::rlimit = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn stats() {
        let v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(median(&v), 3.0);
        assert_eq!(percentile(&v, 99.0), 5.0);
        assert_eq!(percentile(&v, 20.0), 1.0);
        assert_eq!(median(&[1.0, 2.0]), 1.5);
        assert_eq!(jnum(f64::NAN), "null");
    }
}

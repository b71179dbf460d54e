//! Checks and figures over a run of received frames: timestamp steps and gaps,
//! frame rates by arrival and by timestamp, arrival gaps, and small statistics
//! for the lines of figures the tests print.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Frame;

/// Check that timestamps step by exactly `step` ms, never go backwards, and
/// allow at most one forward jump, within the first `jump_window` frames.
pub fn check_timestamps(frames: &[Frame], step: u64, jump_window: usize) -> Result<(), String> {
    let mut jumps = Vec::new();
    for (i, w) in frames.windows(2).enumerate() {
        let (a, b) = (w[0].ts_ms, w[1].ts_ms);
        if b <= a {
            return Err(format!(
                "timestamp did not advance at frame {}: {a} -> {b}",
                i + 1
            ));
        }
        if b - a != step {
            let arrival_ms = w[1]
                .received
                .saturating_duration_since(w[0].received)
                .as_millis();
            jumps.push((i + 1, a, b, arrival_ms));
        }
    }
    match jumps.as_slice() {
        [] => Ok(()),
        [(i, _, _, _)] if *i <= jump_window => Ok(()),
        _ => Err(format!(
            "timestamps must step by {step} ms; irregular steps \
             (frame index, from ts, to ts, ms between their arrivals): {:?} \
             (a forward jump is skipped silence: did the test's player underrun?)",
            &jumps[..jumps.len().min(20)]
        )),
    }
}

/// Frames per second by arrival time inside [from, from + dur).
pub fn arrival_rate(frames: &[Frame], from: Instant, dur: Duration) -> f64 {
    let n = frames
        .iter()
        .filter(|f| f.received >= from && f.received < from + dur)
        .count();
    n as f64 / dur.as_secs_f64()
}

/// Frames per second by timestamps: frames between the first and last ts.
pub fn timestamp_rate(frames: &[Frame]) -> f64 {
    if frames.len() < 2 {
        return 0.0;
    }
    let span = frames.last().unwrap().ts_ms - frames[0].ts_ms;
    (frames.len() - 1) as f64 * 1000.0 / span as f64
}

/// Largest gap between consecutive timestamps.
pub fn max_ts_gap(frames: &[Frame]) -> u64 {
    frames
        .windows(2)
        .map(|w| w[1].ts_ms.saturating_sub(w[0].ts_ms))
        .max()
        .unwrap_or(0)
}

/// Strictly increasing timestamps over a whole run.
pub fn assert_strictly_monotonic(frames: &[Frame], who: &str) {
    for (i, w) in frames.windows(2).enumerate() {
        assert!(
            w[1].ts_ms > w[0].ts_ms,
            "{who}: timestamp went from {} to {} at frame {}",
            w[0].ts_ms,
            w[1].ts_ms,
            i + 1
        );
    }
}

/// Largest gap between the arrivals of consecutive frames.
pub fn max_arrival_gap(frames: &[Frame]) -> Duration {
    frames
        .windows(2)
        .map(|w| w[1].received - w[0].received)
        .max()
        .unwrap_or_default()
}

/// Median and maximum of a non-empty list of figures.
pub fn median_max(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], *s.last().unwrap())
}

/// Milliseconds from `from` to `t`, negative when `t` is earlier.
pub fn ms_since(from: Instant, t: Instant) -> f64 {
    if t >= from {
        (t - from).as_secs_f64() * 1000.0
    } else {
        -((from - t).as_secs_f64() * 1000.0)
    }
}

/// Count of per-key occurrences, for diagnostics.
pub fn histogram<T: std::hash::Hash + Eq + Copy + Ord>(
    it: impl Iterator<Item = T>,
) -> Vec<(T, usize)> {
    let mut m: HashMap<T, usize> = HashMap::new();
    for v in it {
        *m.entry(v).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_checks() {
        let t = Instant::now();
        let mk = |ts: &[u64]| -> Vec<Frame> {
            ts.iter()
                .map(|&ts_ms| Frame {
                    ts_ms,
                    codec: 1,
                    payload: vec![],
                    received: t,
                })
                .collect()
        };
        assert!(check_timestamps(&mk(&[0, 20, 40, 60]), 20, 5).is_ok());
        assert!(check_timestamps(&mk(&[0, 100, 120, 140]), 20, 5).is_ok());
        assert!(check_timestamps(&mk(&[0, 20, 40, 40]), 20, 5).is_err());
        assert!(check_timestamps(&mk(&[0, 20, 10]), 20, 5).is_err());
        assert!(check_timestamps(&mk(&[0, 100, 120, 200]), 20, 5).is_err());
        assert_eq!(max_ts_gap(&mk(&[0, 20, 100])), 80);
    }
}

//! Checks and figures over a run of received frames: timestamp steps and gaps,
//! frame rates by arrival and by timestamp, arrival gaps, and small statistics
//! for the lines of figures the tests print.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{stats, Daemon, Frame, Tone};

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

/// Silence the daemon skipped while a run of frames came, and why there was any: the
/// test's player underran, so the null sink played zeros. With silence skipping, a player
/// that underruns on this busy machine shows as a timestamp jump that is the player's,
/// not the daemon's; the checks below accept such a jump only when both say so.
#[derive(Debug, Clone, Copy, Default)]
pub struct Skipped {
    /// How much /stats frames_skipped_silence grew.
    pub frames: u64,
    /// How many underruns the player reported.
    pub underruns: usize,
}

impl Skipped {
    /// Are all the jumps of `frames` skipped silence? Only when the player underran and
    /// the daemon counted at least as many skipped frames as the jumps stand for.
    pub fn explains(&self, frames: &[Frame], step: u64) -> bool {
        self.underruns > 0 && jumped_frames(frames, step).is_some_and(|n| n <= self.frames)
    }

    /// The frames the jumps of `frames` stand for, when they are skipped silence, else 0.
    pub fn explained(&self, frames: &[Frame], step: u64) -> u64 {
        if self.explains(frames, step) {
            jumped_frames(frames, step).unwrap_or(0)
        } else {
            0
        }
    }
}

/// Watches the daemon's skipped-silence count and a player's underruns over a run of
/// frames: `start` before the first, `skipped` after the last.
pub struct SkipWatch<'a> {
    /// Reads /stats frames_skipped_silence.
    count: Box<dyn Fn() -> u64 + 'a>,
    tone: &'a Tone,
    frames: u64,
    underruns: usize,
}

impl<'a> SkipWatch<'a> {
    /// Reads the daemon's /stats over plain HTTP.
    pub fn start(daemon: &'a Daemon, tone: &'a Tone) -> SkipWatch<'a> {
        Self::start_with(tone, move || stats(daemon).u64("frames_skipped_silence"))
    }

    /// Reads frames_skipped_silence with `count` (a daemon that speaks only TLS).
    pub fn start_with(tone: &'a Tone, count: impl Fn() -> u64 + 'a) -> SkipWatch<'a> {
        SkipWatch {
            frames: count(),
            count: Box::new(count),
            tone,
            underruns: tone.underruns(),
        }
    }

    pub fn skipped(&self) -> Skipped {
        Skipped {
            frames: (self.count)() - self.frames,
            underruns: self.tone.underruns() - self.underruns,
        }
    }
}

/// The frames that the forward jumps of a run stand for (a step of k * `step` ms stands
/// for k - 1); None when a step is no positive multiple of `step`.
pub fn jumped_frames(frames: &[Frame], step: u64) -> Option<u64> {
    frames.windows(2).try_fold(0, |n, w| {
        let d = w[1].ts_ms.checked_sub(w[0].ts_ms)?;
        (d > 0 && d % step == 0).then(|| n + d / step - 1)
    })
}

/// `check_timestamps`, except that jumps are also accepted when they are silence the
/// daemon skipped because the player underran (see [`Skipped`]).
pub fn check_timestamps_skipping(
    frames: &[Frame],
    step: u64,
    jump_window: usize,
    skipped: Skipped,
) -> Result<(), String> {
    match check_timestamps(frames, step, jump_window) {
        Ok(()) => Ok(()),
        Err(e) if skipped.explains(frames, step) => {
            println!("accepted as the player's underrun: {e}; {skipped:?}");
            Ok(())
        }
        Err(e) => Err(format!(
            "{e}; the jumps stand for {:?} frames, the daemon skipped {} as silence and the \
             player underran {} times meanwhile",
            jumped_frames(frames, step),
            skipped.frames,
            skipped.underruns
        )),
    }
}

/// Largest gap between consecutive timestamps, or one `step` when every jump of the run
/// is silence skipped because the player underran (see [`Skipped`]).
pub fn max_ts_gap_skipping(frames: &[Frame], step: u64, skipped: Skipped) -> u64 {
    let gap = max_ts_gap(frames);
    if gap > step && skipped.explains(frames, step) {
        println!("max ts gap {gap} ms accepted as the player's underrun: {skipped:?}");
        return step;
    }
    gap
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

/// The three largest timestamp steps of a run: (frame index, ms), for failure messages.
pub fn largest_steps(frames: &[Frame]) -> Vec<(usize, u64)> {
    let mut steps: Vec<(usize, u64)> = frames
        .windows(2)
        .enumerate()
        .map(|(i, w)| (i + 1, w[1].ts_ms.saturating_sub(w[0].ts_ms)))
        .collect();
    steps.sort_by_key(|&(_, d)| std::cmp::Reverse(d));
    steps.truncate(3);
    steps
}

/// How far behind its timestamps a run of frames ends: the last frame's (arrival -
/// timestamp) less the lowest of the run. A client the daemon keeps up with ends with none
/// beyond scheduling noise; a stream that slows down builds it up (45 frames a second
/// leave 100 ms after one second), while a stall of this busy machine that the frames
/// then catch up on leaves none. Unlike a frame rate over a short window, a late first
/// frame does not count (52.8 fps over 967 ms was that in a loaded run).
pub fn backlog_at_end(frames: &[Frame]) -> Duration {
    let Some(first) = frames.first() else {
        return Duration::ZERO;
    };
    let lag = |f: &Frame| {
        f.received
            .saturating_duration_since(first.received)
            .as_secs_f64()
            * 1000.0
            - f.ts_ms.saturating_sub(first.ts_ms) as f64
    };
    let lowest = frames.iter().map(lag).fold(f64::INFINITY, f64::min);
    let last = lag(frames.last().unwrap());
    Duration::from_secs_f64(((last - lowest) / 1000.0).max(0.0))
}

/// How late this test process gets the CPU: a thread sleeps 5 ms at a time and notes every
/// wake-up that came more than 10 ms late. A gap in a client's arrivals that a stall of
/// the probe covers is this busy machine's (the test's reader was not running either),
/// not the daemon's.
pub struct StallProbe {
    stop: Arc<AtomicBool>,
    /// (when the probe woke, how late).
    stalls: Arc<Mutex<Vec<(Instant, Duration)>>>,
    handle: Option<JoinHandle<()>>,
}

impl StallProbe {
    pub fn start() -> StallProbe {
        let stop = Arc::new(AtomicBool::new(false));
        let stalls = Arc::new(Mutex::new(Vec::new()));
        let (stop2, stalls2) = (stop.clone(), stalls.clone());
        let handle = thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                let due = Instant::now() + Duration::from_millis(5);
                thread::sleep(Duration::from_millis(5));
                let woke = Instant::now();
                let late = woke.saturating_duration_since(due);
                if late > Duration::from_millis(10) {
                    stalls2.lock().unwrap().push((woke, late));
                }
            }
        });
        StallProbe {
            stop,
            stalls,
            handle: Some(handle),
        }
    }

    /// How much of [from, to] the longest stall that overlaps it covers.
    pub fn stalled_within(&self, from: Instant, to: Instant) -> Duration {
        self.stalls
            .lock()
            .unwrap()
            .iter()
            .map(|&(woke, late)| {
                let start = (woke - late).max(from);
                let end = woke.min(to);
                end.saturating_duration_since(start)
            })
            .max()
            .unwrap_or_default()
    }

    /// The longest stall seen so far.
    pub fn worst(&self) -> Duration {
        self.stalls
            .lock()
            .unwrap()
            .iter()
            .map(|&(_, late)| late)
            .max()
            .unwrap_or_default()
    }
}

impl Drop for StallProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Largest gap between the arrivals of consecutive frames, less what a stall of this test
/// process within it explains (see [`StallProbe`]).
pub fn max_arrival_gap_unexplained(frames: &[Frame], probe: &StallProbe) -> Duration {
    frames
        .windows(2)
        .map(|w| {
            let gap = w[1].received - w[0].received;
            gap.saturating_sub(probe.stalled_within(w[0].received, w[1].received))
        })
        .max()
        .unwrap_or_default()
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
        let at = |ms: u64, ts_ms: u64| Frame {
            ts_ms,
            codec: 1,
            payload: vec![],
            received: t + Duration::from_millis(ms),
        };
        // A late first frame, then on time: no backlog. Slower than the timestamps: some.
        let caught_up = [at(60, 0), at(61, 20), at(62, 40), at(80, 60), at(100, 80)];
        assert_eq!(backlog_at_end(&caught_up), Duration::ZERO);
        let slow = [at(0, 0), at(25, 20), at(50, 40), at(75, 60)];
        assert_eq!(backlog_at_end(&slow).as_millis(), 15);
        assert_eq!(jumped_frames(&mk(&[0, 20, 100, 120]), 20), Some(3));
        assert_eq!(jumped_frames(&mk(&[0, 20, 90]), 20), None);
        assert_eq!(jumped_frames(&mk(&[0, 20, 20]), 20), None);
        let jump = mk(&[0, 20, 100, 120]);
        let skipped = |frames, underruns| Skipped { frames, underruns };
        assert!(skipped(3, 1).explains(&jump, 20));
        assert!(!skipped(3, 0).explains(&jump, 20), "no underrun, no excuse");
        assert!(
            !skipped(2, 1).explains(&jump, 20),
            "more jumped than skipped"
        );
        assert!(check_timestamps_skipping(&jump, 20, 0, skipped(3, 1)).is_ok());
        assert!(check_timestamps_skipping(&jump, 20, 0, skipped(0, 1)).is_err());
        assert_eq!(max_ts_gap_skipping(&jump, 20, skipped(4, 2)), 20);
        assert_eq!(max_ts_gap_skipping(&jump, 20, skipped(4, 0)), 80);
    }
}

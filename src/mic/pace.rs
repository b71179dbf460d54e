//! Is the speaker sending faster than real time?
//!
//! A leaky bucket in microseconds of audio: each frame adds its duration, the wall clock
//! drains it a little faster than real time (so a client clock that runs fast by any
//! realistic amount never fills it). A burst after a network stall fits; a sender that
//! keeps going faster than real time fills it within seconds and is closed with 1008.
//! Until then the jitter buffer drops what does not fit, so nothing queues without bound.

use std::time::{Duration, Instant};

use super::message::{Rejection, CLOSE_POLICY};

/// Audio the speaker may be ahead of the wall clock.
pub const MAX_AHEAD: Duration = Duration::from_secs(2);
/// The bucket drains this much faster than real time (5 %).
const DRAIN_PER_MILLE: u64 = 1050;

pub struct Pace {
    ahead_us: u64,
    last: Option<Instant>,
}

impl Default for Pace {
    fn default() -> Self {
        Pace::new()
    }
}

impl Pace {
    pub fn new() -> Pace {
        Pace {
            ahead_us: 0,
            last: None,
        }
    }

    /// Counts a frame of `audio_us` that arrived at `now`.
    pub fn admit(&mut self, now: Instant, audio_us: u64) -> Result<(), Rejection> {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_micros() as u64;
            self.ahead_us = self
                .ahead_us
                .saturating_sub(elapsed.saturating_mul(DRAIN_PER_MILLE) / 1000);
        }
        self.last = Some(now);
        self.ahead_us = self.ahead_us.saturating_add(audio_us);
        if self.ahead_us > MAX_AHEAD.as_micros() as u64 {
            return Err(Rejection::new(
                CLOSE_POLICY,
                format!(
                    "audio arrives faster than real time ({:.1} s ahead of the clock)",
                    self.ahead_us as f64 / 1e6
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME_US: u64 = 20_000;

    #[test]
    fn real_time_and_a_slightly_fast_clock_pass_for_hours() {
        let t0 = Instant::now();
        let mut pace = Pace::new();
        // 3 hours of 20 ms frames from a client whose clock runs 1 % fast.
        for k in 0..540_000u64 {
            let now = t0 + Duration::from_micros(k * FRAME_US * 100 / 101);
            pace.admit(now, FRAME_US).unwrap();
        }
    }

    #[test]
    fn a_burst_after_a_stall_fits() {
        let t0 = Instant::now();
        let mut pace = Pace::new();
        // Nothing for 1.5 s, then 1.5 s of audio at once.
        for _ in 0..75 {
            pace.admit(t0 + Duration::from_millis(1500), FRAME_US)
                .unwrap();
        }
    }

    #[test]
    fn a_flood_is_refused_within_seconds() {
        let t0 = Instant::now();
        let mut pace = Pace::new();
        // Twice real time.
        let refused = (0..1000u64).find_map(|k| {
            let now = t0 + Duration::from_micros(k * FRAME_US / 2);
            pace.admit(now, FRAME_US).err().map(|e| (k, e))
        });
        let (k, err) = refused.expect("a flood at twice real time is refused");
        assert_eq!(err.code, CLOSE_POLICY);
        assert!(err.reason.contains("faster than real time"), "{err}");
        let wall = Duration::from_micros(k * FRAME_US / 2);
        assert!(
            wall > Duration::from_secs(1) && wall < Duration::from_secs(5),
            "{wall:?}"
        );
    }

    #[test]
    fn all_at_once_is_refused_at_two_seconds() {
        let now = Instant::now();
        let mut pace = Pace::new();
        let admitted = (0..1000).take_while(|_| pace.admit(now, FRAME_US).is_ok());
        assert_eq!(admitted.count(), 100, "2 s of 20 ms frames");
    }
}

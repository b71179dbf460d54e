//! A small, bounded jitter buffer for the speaker's decoded audio (mono samples).
//!
//! It holds decoded frames in arrival order and lets the playback stream pull exactly as
//! many samples as PulseAudio asks for. Its rules, in the spirit of WebRTC's NetEq but
//! much smaller:
//! - playout starts (and restarts after an underrun) once `target` audio is buffered, so
//!   a little network jitter never reaches the source as gaps;
//! - when the buffer runs dry while playing, the caller is asked to conceal the missing
//!   samples (Opus packet-loss concealment) for at most `max_conceal`, then silence;
//! - it never holds more than `capacity`: on overflow the oldest frames are dropped
//!   (and counted), because for a live voice stale audio is worse than lost audio;
//! - if the level stays well above target for a whole `trim_window` (the client's clock
//!   runs a little fast, or a burst after a stall), whole frames are dropped from the
//!   front back down to target, so the latency cannot creep up to `capacity`.
//!
//! Pure: no clocks, no I/O; time is the count of samples pulled.

use std::collections::VecDeque;

/// Sizes, in samples (per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    pub target: usize,
    pub capacity: usize,
    pub max_conceal: usize,
    /// The level may stay above `target + trim_margin` for at most this many pulled samples.
    pub trim_window: usize,
    pub trim_margin: usize,
}

impl JitterConfig {
    /// The daemon's sizes at `rate`: target 40 ms, capacity 200 ms (room for a 120 ms
    /// packet on top of a full target), conceal at most 60 ms, trim after 1 s above 60 ms.
    pub fn at_rate(rate: u32) -> JitterConfig {
        let ms = |n: usize| n * rate as usize / 1000;
        JitterConfig {
            target: ms(40),
            capacity: ms(200),
            max_conceal: ms(60),
            trim_window: ms(1000),
            trim_margin: ms(20),
        }
    }
}

/// What a pull produced, in order: `audio` samples from the buffer, then `conceal`
/// samples the caller should fill by concealment, then silence up to the requested length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pulled {
    pub audio: usize,
    pub conceal: usize,
}

/// Counters since creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JitterStats {
    /// Frames dropped on overflow or to bring the latency back to target.
    pub dropped: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
}

pub struct JitterBuffer {
    config: JitterConfig,
    frames: VecDeque<Vec<i16>>,
    /// Samples of the front frame already pulled.
    front_offset: usize,
    level: usize,
    playing: bool,
    /// Concealment still allowed before silence (set when playout runs dry).
    conceal_budget: usize,
    /// Smallest level seen in the current trim window, and how far the window has gone.
    window_min: usize,
    window_pulled: usize,
    spare: Vec<Vec<i16>>,
    stats: JitterStats,
}

impl JitterBuffer {
    pub fn new(config: JitterConfig) -> JitterBuffer {
        assert!(config.target <= config.capacity && config.capacity > 0);
        JitterBuffer {
            config,
            frames: VecDeque::new(),
            front_offset: 0,
            level: 0,
            playing: false,
            conceal_budget: 0,
            window_min: usize::MAX,
            window_pulled: 0,
            spare: Vec::new(),
            stats: JitterStats::default(),
        }
    }

    /// Samples buffered.
    pub fn level(&self) -> usize {
        self.level
    }

    #[cfg(test)]
    pub fn is_playing(&self) -> bool {
        self.playing
    }

    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Would a frame of `len` samples fit without dropping anything?
    pub fn fits(&self, len: usize) -> bool {
        self.level + len <= self.config.capacity
    }

    /// Appends one frame. Drops the oldest frames if it would not fit; a frame longer
    /// than the whole capacity is itself dropped. Returns how many frames were dropped.
    pub fn push(&mut self, samples: &[i16]) -> u64 {
        if samples.is_empty() {
            return 0;
        }
        if samples.len() > self.config.capacity {
            self.stats.dropped += 1;
            return 1;
        }
        let mut dropped = 0;
        while !self.fits(samples.len()) {
            self.drop_front();
            dropped += 1;
        }
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.clear();
        frame.extend_from_slice(samples);
        self.level += frame.len();
        self.frames.push_back(frame);
        dropped
    }

    /// Fills the front of `out` with buffered audio; see [`Pulled`] for the rest.
    pub fn pull(&mut self, out: &mut [i16]) -> Pulled {
        if !self.playing && self.level >= self.config.target.max(1) {
            self.playing = true;
            self.window_min = usize::MAX;
            self.window_pulled = 0;
        }
        let mut pulled = Pulled::default();
        if self.playing {
            pulled.audio = self.take(out);
            self.watch_level(out.len());
            if pulled.audio < out.len() {
                // Ran dry: rebuffer to target, concealing the first of the gap.
                self.playing = false;
                self.stats.underruns += 1;
                self.conceal_budget = self.config.max_conceal;
            }
        }
        let missing = out.len() - pulled.audio;
        pulled.conceal = missing.min(self.conceal_budget);
        self.conceal_budget -= pulled.conceal;
        pulled
    }

    /// Forgets everything buffered (the speaker left, or starts anew): no stale audio.
    pub fn clear(&mut self) {
        while !self.frames.is_empty() {
            let frame = self.frames.pop_front().unwrap_or_default();
            self.recycle(frame);
        }
        self.front_offset = 0;
        self.level = 0;
        self.playing = false;
        self.conceal_budget = 0;
    }

    fn take(&mut self, out: &mut [i16]) -> usize {
        let mut n = 0;
        while n < out.len() {
            let Some(front) = self.frames.front() else {
                break;
            };
            let avail = &front[self.front_offset..];
            let k = avail.len().min(out.len() - n);
            out[n..n + k].copy_from_slice(&avail[..k]);
            n += k;
            self.front_offset += k;
            self.level -= k;
            if self.front_offset == front.len() {
                let frame = self.frames.pop_front().unwrap_or_default();
                self.front_offset = 0;
                self.recycle(frame);
            }
        }
        n
    }

    /// Latency control: drop whole frames from the front when the level has stayed above
    /// target + margin for a whole window.
    fn watch_level(&mut self, pulled: usize) {
        self.window_min = self.window_min.min(self.level);
        self.window_pulled += pulled;
        if self.window_pulled < self.config.trim_window {
            return;
        }
        if self.window_min > self.config.target + self.config.trim_margin {
            while let Some(len) = self.front_remaining() {
                if self.level - len < self.config.target {
                    break;
                }
                self.drop_front();
            }
        }
        self.window_min = usize::MAX;
        self.window_pulled = 0;
    }

    fn front_remaining(&self) -> Option<usize> {
        self.frames.front().map(|f| f.len() - self.front_offset)
    }

    fn drop_front(&mut self) {
        if let Some(frame) = self.frames.pop_front() {
            self.level -= frame.len() - self.front_offset;
            self.front_offset = 0;
            self.stats.dropped += 1;
            self.recycle(frame);
        }
    }

    fn recycle(&mut self, frame: Vec<i16>) {
        if self.spare.len() < 16 {
            self.spare.push(frame);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: usize = 48;

    fn buffer() -> JitterBuffer {
        JitterBuffer::new(JitterConfig::at_rate(48000))
    }

    /// A 20 ms frame whose samples all hold `v`.
    fn frame(v: i16) -> Vec<i16> {
        vec![v; 20 * MS]
    }

    #[test]
    fn waits_for_the_target_then_plays_in_order() {
        let mut jb = buffer();
        let mut out = vec![7i16; 10 * MS];
        jb.push(&frame(1));
        assert_eq!(jb.pull(&mut out), Pulled::default(), "20 ms < 40 ms target");
        assert_eq!(jb.level(), 20 * MS, "nothing consumed while buffering");
        jb.push(&frame(2));
        let mut out = vec![0i16; 30 * MS];
        assert_eq!(
            jb.pull(&mut out),
            Pulled {
                audio: 30 * MS,
                conceal: 0
            }
        );
        assert!(out[..20 * MS].iter().all(|&s| s == 1));
        assert!(out[20 * MS..].iter().all(|&s| s == 2));
        assert_eq!(jb.level(), 10 * MS);
        assert!(jb.is_playing());
    }

    #[test]
    fn an_underrun_asks_for_bounded_concealment_then_rebuffers() {
        let mut jb = buffer();
        jb.push(&frame(1));
        jb.push(&frame(1));
        let mut out = vec![0i16; 50 * MS];
        // 40 ms of audio, then 10 ms missing: conceal it.
        assert_eq!(
            jb.pull(&mut out),
            Pulled {
                audio: 40 * MS,
                conceal: 10 * MS
            }
        );
        assert_eq!(jb.stats().underruns, 1);
        assert!(!jb.is_playing(), "rebuffering after the underrun");
        // Still dry: 50 ms more of concealment at most (60 ms in all), then silence.
        let mut out = vec![0i16; 100 * MS];
        assert_eq!(
            jb.pull(&mut out),
            Pulled {
                audio: 0,
                conceal: 50 * MS
            }
        );
        assert_eq!(jb.pull(&mut out), Pulled::default(), "silence after 60 ms");
        assert_eq!(jb.stats().underruns, 1, "one underrun, counted once");
        // A single late frame does not restart playout: the target comes first.
        jb.push(&frame(3));
        assert_eq!(jb.pull(&mut out[..MS]), Pulled::default());
        jb.push(&frame(4));
        assert_eq!(jb.pull(&mut out[..MS]).audio, MS);
        assert_eq!(out[0], 3);
    }

    #[test]
    fn a_fresh_buffer_never_conceals() {
        let mut jb = buffer();
        let mut out = vec![0i16; 100 * MS];
        assert_eq!(jb.pull(&mut out), Pulled::default());
    }

    #[test]
    fn overflow_drops_the_oldest_and_counts() {
        let mut jb = buffer();
        for v in 0..10 {
            assert_eq!(jb.push(&frame(v)), 0, "200 ms fit");
        }
        assert_eq!(jb.level(), 200 * MS);
        assert_eq!(jb.push(&frame(10)), 1);
        assert_eq!(jb.push(&frame(11)), 1);
        assert_eq!(jb.stats().dropped, 2);
        assert_eq!(jb.level(), 200 * MS, "never above capacity");
        let mut out = vec![0i16; MS];
        jb.pull(&mut out);
        assert_eq!(out[0], 2, "frames 0 and 1 were dropped");
    }

    #[test]
    fn a_flood_stays_bounded() {
        let mut jb = buffer();
        for v in 0..10_000 {
            jb.push(&frame(v as i16));
            assert!(jb.level() <= 200 * MS);
        }
        assert_eq!(jb.stats().dropped, 10_000 - 10);
        assert!(jb.frames.len() <= 10);
    }

    #[test]
    fn a_frame_longer_than_the_capacity_is_dropped_alone() {
        let mut jb = buffer();
        jb.push(&frame(1));
        assert_eq!(jb.push(&vec![2; 201 * MS]), 1);
        assert_eq!(jb.level(), 20 * MS, "what was buffered stays");
    }

    #[test]
    fn latency_creep_is_trimmed_back_to_target() {
        let mut jb = buffer();
        // A client 50 ms ahead of the pulls, for longer than the trim window.
        for _ in 0..5 {
            jb.push(&frame(1));
        }
        let mut out = vec![0i16; 20 * MS];
        for _ in 0..60 {
            jb.push(&frame(1));
            assert_eq!(jb.pull(&mut out).audio, 20 * MS);
        }
        assert!(
            jb.level() <= 60 * MS,
            "trimmed from 100 ms toward 40 ms: {} ms",
            jb.level() / MS
        );
        assert!(jb.stats().dropped >= 2);
    }

    #[test]
    fn a_steady_level_near_target_is_left_alone() {
        let mut jb = buffer();
        jb.push(&frame(1));
        jb.push(&frame(1));
        let mut out = vec![0i16; 20 * MS];
        for _ in 0..200 {
            jb.push(&frame(1));
            assert_eq!(jb.pull(&mut out).audio, 20 * MS);
        }
        assert_eq!(jb.stats().dropped, 0);
        assert_eq!(jb.level(), 40 * MS);
    }

    #[test]
    fn clear_leaves_nothing_stale() {
        let mut jb = buffer();
        for v in 0..5 {
            jb.push(&frame(v));
        }
        let mut out = vec![0i16; 10 * MS];
        jb.pull(&mut out);
        jb.clear();
        assert_eq!(jb.level(), 0);
        assert_eq!(
            jb.pull(&mut out),
            Pulled::default(),
            "silence, no concealment"
        );
        jb.push(&frame(9));
        jb.push(&frame(9));
        jb.pull(&mut out);
        assert!(out.iter().all(|&s| s == 9), "only new audio after clear");
    }
}

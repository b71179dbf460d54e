//! Between capture and transport: cuts the captured bytes into fixed-size frames,
//! stamps them, encodes each frame once per codec that somebody listens to, and hands
//! the framed bytes on.
//!
//! Timestamps count samples: while capture is continuous each frame is exactly one frame
//! duration after the previous one. After a discontinuity (new stream, move, cork) the
//! count is re-anchored to the wall clock at which the audio was captured, never earlier
//! than where the previous frame ended, so time never goes backwards.

use std::rc::Rc;

use crate::audio::{Codec, StreamFormat};
use crate::encoder::{EncodeError, Encoder, OpusEncoder, PcmEncoder};
use crate::stats::PipelineStats;
use crate::wire::{FrameBuilder, WireFrame};

/// If the capture falls this far behind the wall clock, audio was lost without a word
/// from the server (PulseAudio reports overruns, which re-anchor at once): the timestamps
/// jump forward to stay tied to when the audio was captured. Large enough that a main
/// loop running late on a loaded machine, which loses nothing, never triggers it.
const MAX_LAG_US: u64 = 1_000_000;

/// Where frames go (the WebSocket clients).
pub trait FrameSink {
    /// Does anybody want frames of this codec?
    fn wants(&self, codec: Codec) -> bool;
    fn send(&mut self, codec: Codec, frame: &Rc<WireFrame>);
}

/// Sample-count timestamps, re-anchored across gaps.
pub struct Clock {
    rate: u64,
    anchor_us: u64,
    samples_since_anchor: u64,
    next_us: u64,
    anchored: bool,
}

impl Clock {
    pub fn new(rate: u32) -> Clock {
        Clock {
            rate: rate as u64,
            anchor_us: 0,
            samples_since_anchor: 0,
            next_us: 0,
            anchored: false,
        }
    }

    pub fn discontinuity(&mut self) {
        self.anchored = false;
    }

    fn anchor(&mut self, captured_us: u64) {
        self.anchor_us = captured_us.max(self.next_us);
        self.samples_since_anchor = 0;
        self.next_us = self.anchor_us;
        self.anchored = true;
    }

    /// Called for each chunk of `samples` (per channel) that arrived at `now_us`, with
    /// `pending` samples already buffered before it. Re-anchors when needed.
    pub fn observe(&mut self, now_us: u64, pending: u64, samples: u64) -> bool {
        let dur = |n: u64| n * 1_000_000 / self.rate;
        let first_sample_us = now_us.saturating_sub(dur(pending + samples));
        if !self.anchored {
            self.anchor(first_sample_us);
            return true;
        }
        let expected_end = self.anchor_us + dur(self.samples_since_anchor + pending + samples);
        if now_us > expected_end + MAX_LAG_US {
            self.anchor(first_sample_us);
            return true;
        }
        false
    }

    /// The timestamp (µs) of the next frame, then advances by `samples`.
    pub fn stamp(&mut self, samples: u64) -> u64 {
        let ts = self.anchor_us + self.samples_since_anchor * 1_000_000 / self.rate;
        self.samples_since_anchor += samples;
        self.next_us = self.anchor_us + self.samples_since_anchor * 1_000_000 / self.rate;
        ts
    }
}

pub struct Pipeline {
    frame_bytes: usize,
    bytes_per_sample: usize,
    frame_samples: u64,
    remainder: Vec<u8>,
    clock: Clock,
    opus: Option<OpusEncoder>,
    pcm: PcmEncoder,
    builder: FrameBuilder,
    pub stats: PipelineStats,
}

impl Pipeline {
    pub fn new(format: StreamFormat, opus: Option<OpusEncoder>) -> Pipeline {
        Pipeline {
            frame_bytes: format.frame_bytes(),
            bytes_per_sample: format.bytes_per_sample_frame(),
            frame_samples: format.frame_samples() as u64,
            remainder: Vec::with_capacity(format.frame_bytes()),
            clock: Clock::new(format.rate),
            opus,
            pcm: PcmEncoder,
            builder: FrameBuilder::default(),
            stats: PipelineStats::default(),
        }
    }

    pub fn opus_mut(&mut self) -> Option<&mut OpusEncoder> {
        self.opus.as_mut()
    }

    /// The next audio does not continue the previous: drop the partial frame.
    pub fn discontinuity(&mut self) {
        self.remainder.clear();
        self.clock.discontinuity();
    }

    /// Takes captured bytes that arrived at `now_us` (µs since the server started).
    pub fn push(&mut self, mut data: &[u8], now_us: u64, sink: &mut dyn FrameSink) {
        let pending = (self.remainder.len() / self.bytes_per_sample) as u64;
        let samples = (data.len() / self.bytes_per_sample) as u64;
        if self.clock.observe(now_us, pending, samples) && pending > 0 {
            // Re-anchored mid-frame: the partial frame belongs to the old timeline.
            self.remainder.clear();
            self.clock.observe(now_us, 0, samples);
        }
        if !self.remainder.is_empty() {
            let need = self.frame_bytes - self.remainder.len();
            let take = need.min(data.len());
            self.remainder.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.remainder.len() < self.frame_bytes {
                return;
            }
            let frame = std::mem::take(&mut self.remainder);
            self.emit(&frame, sink);
            self.remainder = frame;
            self.remainder.clear();
        }
        while data.len() >= self.frame_bytes {
            let (frame, rest) = data.split_at(self.frame_bytes);
            self.emit(frame, sink);
            data = rest;
        }
        self.remainder.extend_from_slice(data);
    }

    fn emit(&mut self, pcm: &[u8], sink: &mut dyn FrameSink) {
        let ts_ms = self.clock.stamp(self.frame_samples) / 1000;
        for codec in [Codec::Opus, Codec::Pcm] {
            if !sink.wants(codec) {
                continue;
            }
            let encoder: &mut dyn Encoder = match codec {
                Codec::Opus => match self.opus.as_mut() {
                    Some(e) => e,
                    None => continue,
                },
                Codec::Pcm => &mut self.pcm,
            };
            let built = self
                .builder
                .build::<EncodeError>(ts_ms, codec.wire_byte(), |out| encoder.encode(pcm, out));
            match built {
                Ok(frame) => {
                    if codec == Codec::Opus {
                        self.stats.frames_encoded += 1;
                    }
                    sink.send(codec, &frame);
                    self.builder.recycle(frame);
                }
                Err(e) => {
                    self.stats.encode_errors += 1;
                    if self.stats.encode_errors.is_power_of_two() {
                        log::warn!(
                            "{e} (dropped the frame; {} so far)",
                            self.stats.encode_errors
                        );
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(channels: u8, frame_us: u32) -> StreamFormat {
        StreamFormat {
            rate: 48000,
            channels,
            frame_us,
        }
    }

    #[derive(Default)]
    struct Collect {
        frames: Vec<(u64, u8, usize)>,
        opus: bool,
    }

    impl FrameSink for Collect {
        fn wants(&self, codec: Codec) -> bool {
            codec == Codec::Pcm || self.opus
        }
        fn send(&mut self, _codec: Codec, frame: &Rc<WireFrame>) {
            let b = frame.bytes();
            let hdr = if b[1] == 126 { 4 } else { 2 };
            let ts = u64::from_be_bytes(b[hdr..hdr + 8].try_into().unwrap());
            self.frames.push((ts, b[hdr + 8], b.len() - hdr - 9));
        }
    }

    #[test]
    fn fixed_frames_from_odd_chunks_with_exact_steps() {
        let mut p = Pipeline::new(format(2, 20000), None);
        let mut sink = Collect::default();
        let mut now = 1_000_000;
        // 7 ms chunks: frames straddle chunk boundaries.
        for _ in 0..30 {
            now += 7000;
            p.push(&vec![0u8; 336 * 4], now, &mut sink);
        }
        assert_eq!(sink.frames.len(), 30 * 336 / 960);
        let first = sink.frames[0].0;
        assert_eq!(first, (1_007_000 - 7000) / 1000);
        for (i, f) in sink.frames.iter().enumerate() {
            assert_eq!(f.0, first + 20 * i as u64);
            assert_eq!(f.1, 0x00);
            assert_eq!(f.2, 3840);
        }
    }

    #[test]
    fn gaps_jump_forward_and_time_never_goes_back() {
        let mut p = Pipeline::new(format(1, 10000), None);
        let mut sink = Collect::default();
        p.push(&[0u8; 960 * 2], 100_000, &mut sink); // 20 ms at t=100 ms -> 2 frames
        assert_eq!(sink.frames[0].0, 80);
        assert_eq!(sink.frames[1].0, 90);
        // A discontinuity whose audio would be stamped before the last frame's end.
        p.discontinuity();
        p.push(&[0u8; 960 * 2], 100_000, &mut sink);
        assert_eq!(
            sink.frames[2].0, 100,
            "re-anchored at the previous end, not earlier"
        );
        // Capture stalls for a second: the next audio is stamped when it was captured.
        p.push(&[0u8; 960], 1_200_000, &mut sink);
        assert_eq!(sink.frames[4].0, 1190);
        let ts: Vec<u64> = sink.frames.iter().map(|f| f.0).collect();
        assert!(ts.windows(2).all(|w| w[1] > w[0]), "{ts:?}");
    }

    #[test]
    fn a_late_main_loop_does_not_move_the_timeline() {
        let mut p = Pipeline::new(format(1, 10000), None);
        let mut sink = Collect::default();
        p.push(&[0u8; 960], 10_000, &mut sink); // 10 ms at t=10 ms
                                                // The loop was busy for half a second; the audio of that time arrives at once.
        p.push(&vec![0u8; 960 * 50], 510_000, &mut sink);
        let ts: Vec<u64> = sink.frames.iter().map(|f| f.0).collect();
        assert_eq!(ts.len(), 51);
        assert!(ts.windows(2).all(|w| w[1] - w[0] == 10), "{ts:?}");
    }

    #[test]
    fn opus_encoded_once_only_when_wanted() {
        let cfg = crate::config::EncoderConfig {
            codec: Codec::Opus,
            bitrate: 64000,
            frame_us: 20000,
            application: crate::audio::OpusApplication::LowDelay,
        };
        let enc = OpusEncoder::new(format(2, 20000), &cfg).unwrap();
        let mut p = Pipeline::new(format(2, 20000), Some(enc));
        let mut sink = Collect::default();
        p.push(&vec![0u8; 3840], 20_000, &mut sink);
        assert_eq!(p.stats.frames_encoded, 0);
        sink.opus = true;
        p.push(&vec![0u8; 3840], 40_000, &mut sink);
        assert_eq!(p.stats.frames_encoded, 1);
        assert_eq!(sink.frames.iter().filter(|f| f.1 == 0x01).count(), 1);
    }
}

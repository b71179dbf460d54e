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

/// Frames of exact digital silence sent after sound before the rest are skipped: one, so
/// the decoder plays out the encoder's lookahead (the last 2.5-6.5 ms of the sound).
const SILENT_FRAMES_SENT: u32 = 1;

pub struct Pipeline {
    frame_bytes: usize,
    bytes_per_sample: usize,
    frame_samples: u64,
    remainder: Vec<u8>,
    clock: Clock,
    opus: Option<OpusEncoder>,
    pcm: PcmEncoder,
    builder: FrameBuilder,
    /// Skip frames of digital silence (off with --send-silence).
    skip_silence: bool,
    /// Silent frames in a row, counted across discontinuities: the silence before a cork
    /// and the silence after it are one silence.
    silent_run: u32,
    pub stats: PipelineStats,
}

impl Pipeline {
    pub fn new(format: StreamFormat, opus: Option<OpusEncoder>, skip_silence: bool) -> Pipeline {
        Pipeline {
            frame_bytes: format.frame_bytes(),
            bytes_per_sample: format.bytes_per_sample_frame(),
            frame_samples: format.frame_samples() as u64,
            remainder: Vec::with_capacity(format.frame_bytes()),
            clock: Clock::new(format.rate),
            opus,
            pcm: PcmEncoder,
            builder: FrameBuilder::default(),
            skip_silence,
            // Silence from the start is not sent either.
            silent_run: SILENT_FRAMES_SENT,
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
        if self.skip_silence {
            if pcm.iter().all(|&b| b == 0) {
                self.silent_run = self.silent_run.saturating_add(1);
            } else {
                self.silent_run = 0;
            }
            // A skipped frame is not fed to the encoder either: the client's decoder, which
            // does not see it, stays in step with the encoder, so the next frame decodes
            // cleanly. Its timestamp is used up: the next frame's jumps.
            self.stats.skipping_silence = self.silent_run > SILENT_FRAMES_SENT;
            if self.stats.skipping_silence {
                self.stats.frames_skipped_silence += 1;
                return;
            }
        }
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
        let mut p = Pipeline::new(format(2, 20000), None, false);
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
        let mut p = Pipeline::new(format(1, 10000), None, false);
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
        let mut p = Pipeline::new(format(1, 10000), None, false);
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
        let mut p = Pipeline::new(format(2, 20000), Some(enc), false);
        let mut sink = Collect::default();
        p.push(&vec![0u8; 3840], 20_000, &mut sink);
        assert_eq!(p.stats.frames_encoded, 0);
        sink.opus = true;
        p.push(&vec![0u8; 3840], 40_000, &mut sink);
        assert_eq!(p.stats.frames_encoded, 1);
        assert_eq!(sink.frames.iter().filter(|f| f.1 == 0x01).count(), 1);
    }
}

#[cfg(test)]
mod silence_tests {
    use super::*;

    fn format() -> StreamFormat {
        StreamFormat {
            rate: 48000,
            channels: 2,
            frame_us: 20000,
        }
    }

    fn opus_pipeline(skip: bool) -> Pipeline {
        let cfg = crate::config::EncoderConfig {
            codec: Codec::Opus,
            bitrate: 64000,
            frame_us: 20000,
            application: crate::audio::OpusApplication::LowDelay,
        };
        let enc = OpusEncoder::new(format(), &cfg).unwrap();
        Pipeline::new(format(), Some(enc), skip)
    }

    /// Timestamps of the PCM frames sent.
    #[derive(Default)]
    struct Stamps(Vec<u64>);

    impl FrameSink for Stamps {
        fn wants(&self, _codec: Codec) -> bool {
            true
        }
        fn send(&mut self, codec: Codec, frame: &Rc<WireFrame>) {
            if codec == Codec::Pcm {
                let b = frame.bytes();
                let hdr = if b[1] == 126 { 4 } else { 2 };
                self.0
                    .push(u64::from_be_bytes(b[hdr..hdr + 8].try_into().unwrap()));
            }
        }
    }

    /// `frames` frames of a 440 Hz tone, s16le stereo.
    fn tone(frames: usize) -> Vec<u8> {
        (0..960 * frames)
            .flat_map(|i| {
                let v =
                    ((i as f32 * 440.0 * std::f32::consts::TAU / 48000.0).sin() * 12000.0) as i16;
                [v, v]
            })
            .flat_map(|s| s.to_le_bytes())
            .collect()
    }

    const SILENCE: [u8; 3840] = [0; 3840];

    #[test]
    fn silence_after_sound_sends_one_frame_then_nothing_and_time_jumps() {
        let mut p = opus_pipeline(true);
        let mut sink = Stamps::default();
        let mut now = 0;
        let mut push = |p: &mut Pipeline, pcm: &[u8], sink: &mut Stamps| {
            now += 20_000;
            p.push(pcm, now, sink);
        };
        for _ in 0..5 {
            push(&mut p, &SILENCE, &mut sink);
        }
        assert!(sink.0.is_empty(), "silence from the start is not sent");
        assert_eq!(p.stats.frames_skipped_silence, 5);
        assert!(p.stats.skipping_silence);
        push(&mut p, &tone(1), &mut sink);
        for _ in 0..10 {
            push(&mut p, &SILENCE, &mut sink);
        }
        // A discontinuity (a cork) inside the silence does not make it a new silence.
        p.discontinuity();
        push(&mut p, &SILENCE, &mut sink);
        push(&mut p, &tone(1), &mut sink);
        assert_eq!(
            sink.0.len(),
            3,
            "sound, one silent frame, sound: {:?}",
            sink.0
        );
        assert_eq!(sink.0[1] - sink.0[0], 20);
        assert_eq!(
            sink.0[2] - sink.0[1],
            220,
            "the timestamp jumps over the gap"
        );
        assert_eq!(p.stats.frames_skipped_silence, 5 + 9 + 1);
        assert_eq!(p.stats.frames_encoded, 3, "skipped frames are not encoded");
        assert!(!p.stats.skipping_silence);
    }

    #[test]
    fn a_single_nonzero_sample_is_sound() {
        let mut p = opus_pipeline(true);
        let mut sink = Stamps::default();
        let mut almost = SILENCE;
        almost[2001] = 1;
        p.push(&almost, 20_000, &mut sink);
        assert_eq!(sink.0.len(), 1);
    }

    #[test]
    fn send_silence_sends_every_frame() {
        let mut p = opus_pipeline(false);
        let mut sink = Stamps::default();
        for i in 0..10 {
            p.push(&SILENCE, 20_000 * (i + 1), &mut sink);
        }
        assert_eq!(sink.0.len(), 10);
        assert_eq!(p.stats.frames_skipped_silence, 0);
        assert!(!p.stats.skipping_silence);
    }

    #[test]
    fn the_first_frame_after_skipped_silence_decodes_cleanly() {
        // A client's decoder never sees the skipped frames; it must still turn the sound
        // after the gap back into the tone, at its level.
        struct Decode(opus::Decoder, Vec<i16>);
        impl FrameSink for Decode {
            fn wants(&self, codec: Codec) -> bool {
                codec == Codec::Opus
            }
            fn send(&mut self, _codec: Codec, frame: &Rc<WireFrame>) {
                let b = frame.bytes();
                let hdr = if b[1] == 126 { 4 } else { 2 };
                let mut out = vec![0i16; 960 * 2];
                let n = self.0.decode(&b[hdr + 9..], &mut out, false).unwrap();
                self.1.extend_from_slice(&out[..n * 2]);
            }
        }
        let mut p = opus_pipeline(true);
        let decoder = opus::Decoder::new(48000, opus::Channels::Stereo).unwrap();
        let mut dec = Decode(decoder, Vec::new());
        let mut now = 0;
        let mut feed = |p: &mut Pipeline, pcm: &[u8], dec: &mut Decode| {
            for frame in pcm.chunks(3840) {
                now += 20_000;
                p.push(frame, now, dec);
            }
        };
        feed(&mut p, &tone(4), &mut dec);
        feed(&mut p, &[0u8; 3840 * 20], &mut dec);
        let before = dec.1.len();
        feed(&mut p, &tone(4), &mut dec);
        let after = &dec.1[before..];
        assert_eq!(after.len(), 4 * 960 * 2, "four frames after the gap");
        let power = |s: &[i16]| s.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / s.len() as f64;
        let input: Vec<i16> = tone(4)
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // The first 2.5 ms of the first packet are still the encoder's lookahead of silence.
        let got = power(&after[240..]);
        let want = power(&input);
        assert!(
            (got / want - 1.0).abs() < 0.15,
            "decoded power {got:.0} vs the tone's {want:.0}"
        );
    }
}

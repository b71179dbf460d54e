//! The speaker's path from WebSocket message to the samples the source plays:
//! parse → pace → decode → jitter buffer, and concealment where audio is missing.
//! Pure: the caller passes the time, and pulls samples when PulseAudio asks.

use std::time::Instant;

use super::decode::{MicDecoder, CONCEAL_FRAME, RATE};
use super::jitter::{JitterBuffer, JitterConfig};
use super::message::{self, MicCodec, Rejection};
use super::pace::Pace;

/// A jump in the client's timestamps longer than this is a new talk spurt (the client
/// paused, or restarted its clock), not a loss to conceal.
const MAX_GAP_MS: f64 = 120.0;

/// Counters since the daemon started (every speaker adds to them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpeakerStats {
    /// Binary messages received, valid or not.
    pub frames_received: u64,
    pub bytes_received: u64,
    pub frames_decoded: u64,
    /// 10 ms frames of packet-loss concealment.
    pub frames_concealed: u64,
    /// Frames dropped by the jitter buffer (overflow, latency trim).
    pub frames_dropped: u64,
    /// Times the jitter buffer ran dry while playing.
    pub underruns: u64,
}

pub struct Speaker {
    decoder: MicDecoder,
    jitter: JitterBuffer,
    pace: Pace,
    /// The timestamp (ms) the next frame should carry if nothing is missing.
    next_ts_ms: Option<f64>,
    conceal_buf: Vec<i16>,
    stats: SpeakerStats,
}

impl Speaker {
    pub fn new() -> Result<Speaker, String> {
        Ok(Speaker {
            decoder: MicDecoder::new()?,
            jitter: JitterBuffer::new(JitterConfig::at_rate(RATE)),
            pace: Pace::new(),
            next_ts_ms: None,
            conceal_buf: Vec::new(),
            stats: SpeakerStats::default(),
        })
    }

    pub fn stats(&self) -> SpeakerStats {
        let jitter = self.jitter.stats();
        SpeakerStats {
            frames_dropped: jitter.dropped,
            underruns: jitter.underruns,
            ..self.stats
        }
    }

    /// Samples waiting to be played.
    pub fn buffered(&self) -> usize {
        self.jitter.level()
    }

    /// Takes one binary message that arrived at `now`; an error closes the speaker.
    pub fn receive(&mut self, msg: &[u8], now: Instant) -> Result<(), Rejection> {
        self.stats.frames_received += 1;
        self.stats.bytes_received += msg.len() as u64;
        let frame = message::parse(msg)?;
        let samples = MicDecoder::duration(&frame)?;
        self.pace
            .admit(now, samples as u64 * 1_000_000 / RATE as u64)?;
        if frame.codec == MicCodec::Opus {
            self.conceal_gap(frame.ts_ms, samples);
        }
        let decoded = self.decoder.decode(&frame)?;
        self.stats.frames_decoded += 1;
        self.jitter.push(decoded);
        self.next_ts_ms = Some(frame.ts_ms as f64 + samples as f64 * 1000.0 / RATE as f64);
        Ok(())
    }

    /// Frames are missing before this one (the client's timestamps jumped by at least a
    /// frame and at most [`MAX_GAP_MS`]): fill their place by concealment, so what follows
    /// keeps its timing and the voice does not click.
    fn conceal_gap(&mut self, ts_ms: u64, samples: usize) {
        let Some(expected) = self.next_ts_ms else {
            return;
        };
        let frame_ms = samples as f64 * 1000.0 / RATE as f64;
        let gap_ms = ts_ms as f64 - expected;
        if gap_ms < frame_ms.max(10.0) - 0.5 || gap_ms > MAX_GAP_MS {
            return;
        }
        let frames = (gap_ms / 10.0).round() as usize;
        self.conceal_buf.resize(frames * CONCEAL_FRAME, 0);
        let produced = self.decoder.conceal(&mut self.conceal_buf);
        self.stats.frames_concealed += produced;
        if produced > 0 {
            self.jitter.push(&self.conceal_buf);
        }
    }

    /// Fills `out` with what the source should play now: buffered audio, concealment where
    /// it ran dry, silence when there is nothing (no speaker, or rebuffering).
    pub fn fill(&mut self, out: &mut [i16]) {
        let pulled = self.jitter.pull(out);
        let conceal_end = pulled.audio + pulled.conceal;
        if pulled.conceal > 0 {
            self.stats.frames_concealed +=
                self.decoder.conceal(&mut out[pulled.audio..conceal_end]);
        }
        out[conceal_end..].fill(0);
    }

    /// Drops what is buffered (it waited for a stream that was not there: stale now).
    pub fn flush(&mut self) {
        self.jitter.clear();
    }

    /// Forgets the current speaker: no stale audio, no concealment of their last word,
    /// a fresh pace and timeline for the next one. Counters stay.
    pub fn reset(&mut self) {
        self.jitter.clear();
        self.decoder.reset();
        self.pace = Pace::new();
        self.next_ts_ms = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mic::decode::tests::{opus_packets, tone, tone_share};
    use crate::mic::message::{CLOSE_INVALID, CLOSE_POLICY, CLOSE_UNSUPPORTED};

    fn msg(ts: u64, codec: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = ts.to_be_bytes().to_vec();
        m.push(codec);
        m.extend_from_slice(payload);
        m
    }

    fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Sends `packets` of 20 ms in real time while pulling 10 ms at a time, as the
    /// playback stream does; returns what was played.
    fn play(speaker: &mut Speaker, packets: &[Vec<u8>], codec: u8, skip: &[usize]) -> Vec<i16> {
        let t0 = Instant::now();
        let mut played = Vec::new();
        let mut out = vec![0i16; 480];
        for (k, p) in packets.iter().enumerate() {
            let now = t0 + Duration::from_millis(20 * k as u64);
            if !skip.contains(&k) {
                speaker.receive(&msg(20 * k as u64, codec, p), now).unwrap();
            }
            for _ in 0..2 {
                speaker.fill(&mut out);
                played.extend_from_slice(&out);
            }
        }
        played
    }

    #[test]
    fn an_opus_tone_comes_out_as_the_tone() {
        let mut s = Speaker::new().unwrap();
        let played = play(&mut s, &opus_packets(660.0, 1, 960, 50), 0x01, &[]);
        let share = tone_share(&played[played.len() / 2..], 660.0);
        assert!(share > 0.8, "660 Hz share {share}");
        let st = s.stats();
        assert_eq!((st.frames_received, st.frames_decoded), (50, 50));
        assert_eq!(st.frames_dropped, 0);
    }

    #[test]
    fn a_pcm_tone_comes_out_bit_exact_after_the_target_delay() {
        let mut s = Speaker::new().unwrap();
        let samples = tone(660.0, 0, 960 * 20);
        let packets: Vec<Vec<u8>> = samples.chunks(960).map(pcm_bytes).collect();
        let played = play(&mut s, &packets, 0x00, &[]);
        // Playout starts once 40 ms are buffered: after the second packet.
        assert!(played[..960].iter().all(|&v| v == 0));
        assert_eq!(&played[960..], &samples[..played.len() - 960]);
    }

    #[test]
    fn a_missing_opus_packet_is_concealed_in_its_place() {
        let mut s = Speaker::new().unwrap();
        let packets = opus_packets(660.0, 1, 960, 40);
        let played = play(&mut s, &packets, 0x01, &[20]);
        let st = s.stats();
        assert_eq!(st.frames_decoded, 39);
        assert_eq!(st.frames_concealed, 2, "20 ms gap = two 10 ms frames");
        assert_eq!(
            st.underruns, 0,
            "the gap was filled before playout reached it"
        );
        let share = tone_share(&played[played.len() / 2..], 660.0);
        assert!(share > 0.7, "660 Hz share across the gap {share}");
    }

    #[test]
    fn a_long_pause_is_not_concealed() {
        let mut s = Speaker::new().unwrap();
        let packets = opus_packets(660.0, 1, 960, 3);
        let now = Instant::now();
        s.receive(&msg(0, 1, &packets[0]), now).unwrap();
        s.receive(&msg(5_000, 1, &packets[1]), now).unwrap();
        assert_eq!(s.stats().frames_concealed, 0);
        assert_eq!(s.buffered(), 1920);
    }

    #[test]
    fn hostile_messages_get_their_close_code() {
        let mut s = Speaker::new().unwrap();
        let now = Instant::now();
        let code = |s: &mut Speaker, m: &[u8]| s.receive(m, now).unwrap_err().code;
        assert_eq!(code(&mut s, &[1, 2, 3]), CLOSE_INVALID);
        assert_eq!(code(&mut s, &msg(0, 9, &[0, 0])), CLOSE_UNSUPPORTED);
        assert_eq!(code(&mut s, &msg(0, 0, &[0, 0, 0])), CLOSE_INVALID);
        assert_eq!(code(&mut s, &msg(0, 1, &[0x03, 0x00])), CLOSE_INVALID);
        assert_eq!(s.stats().frames_received, 4);
        assert_eq!(s.stats().frames_decoded, 0);
        assert_eq!(s.buffered(), 0, "nothing of a bad message is played");
    }

    #[test]
    fn a_flood_is_bounded_then_refused() {
        let mut s = Speaker::new().unwrap();
        let now = Instant::now();
        let payload = pcm_bytes(&tone(660.0, 0, 960));
        let mut refused = None;
        for k in 0..1000u64 {
            if let Err(e) = s.receive(&msg(20 * k, 0, &payload), now) {
                refused = Some((k, e));
                break;
            }
            assert!(s.buffered() <= 200 * 48, "bounded: {}", s.buffered());
        }
        let (k, e) = refused.expect("refused");
        assert_eq!(e.code, CLOSE_POLICY);
        assert_eq!(k, 100, "after 2 s of audio in no time");
        assert_eq!(s.stats().frames_dropped, 100 - 10);
    }

    #[test]
    fn reset_leaves_silence_and_no_concealment() {
        let mut s = Speaker::new().unwrap();
        let played = play(&mut s, &opus_packets(660.0, 1, 960, 10), 0x01, &[]);
        assert!(played.iter().any(|&v| v != 0));
        s.reset();
        let mut out = vec![1i16; 4800];
        s.fill(&mut out);
        assert!(out.iter().all(|&v| v == 0), "nothing stale after reset");
    }
}

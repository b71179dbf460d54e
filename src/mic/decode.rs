//! The speaker's audio to mono 48 kHz samples: libopus for Opus (mono or stereo packets,
//! mixed down by the decoder), a byte swap for PCM, and Opus packet-loss concealment for
//! what is missing.

use super::message::{MicCodec, MicFrame, Rejection, CLOSE_INVALID};

pub const RATE: u32 = 48_000;
/// Longest Opus packet we accept (libopus' own maximum), in samples at 48 kHz.
pub const MAX_PACKET_SAMPLES: usize = 120 * 48;
/// Concealment is produced in frames of this many samples (10 ms).
pub const CONCEAL_FRAME: usize = 480;

pub struct MicDecoder {
    opus: opus::Decoder,
    samples: Vec<i16>,
    /// Was the last decoded audio Opus? Only then is there anything to conceal from.
    opus_last: bool,
    conceal_buf: Vec<i16>,
}

impl MicDecoder {
    pub fn new() -> Result<MicDecoder, String> {
        let opus = opus::Decoder::new(RATE, opus::Channels::Mono)
            .map_err(|e| format!("cannot create the Opus decoder: {e}"))?;
        Ok(MicDecoder {
            opus,
            samples: Vec::with_capacity(MAX_PACKET_SAMPLES),
            opus_last: false,
            conceal_buf: vec![0; CONCEAL_FRAME],
        })
    }

    /// How many samples the frame holds, without decoding it (PCM by its length, Opus by
    /// its table of contents); the Opus error is the client's.
    pub fn duration(frame: &MicFrame<'_>) -> Result<usize, Rejection> {
        match frame.codec {
            MicCodec::Pcm => Ok(frame.payload.len() / 2),
            MicCodec::Opus => {
                let n = opus::packet::get_nb_samples(frame.payload, RATE).map_err(|e| {
                    Rejection::new(CLOSE_INVALID, format!("Opus packet does not decode: {e}"))
                })?;
                if n == 0 || n > MAX_PACKET_SAMPLES {
                    return Err(Rejection::new(
                        CLOSE_INVALID,
                        format!("Opus packet of {} ms; at most 120 ms", n / 48),
                    ));
                }
                Ok(n)
            }
        }
    }

    /// Decodes one frame to mono samples.
    pub fn decode(&mut self, frame: &MicFrame<'_>) -> Result<&[i16], Rejection> {
        self.samples.clear();
        match frame.codec {
            MicCodec::Pcm => {
                self.samples.extend(
                    frame
                        .payload
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
                self.opus_last = false;
            }
            MicCodec::Opus => {
                let n = Self::duration(frame)?;
                self.samples.resize(n, 0);
                let decoded = self
                    .opus
                    .decode(frame.payload, &mut self.samples, false)
                    .map_err(|e| {
                        Rejection::new(CLOSE_INVALID, format!("Opus packet does not decode: {e}"))
                    })?;
                self.samples.truncate(decoded);
                self.opus_last = true;
            }
        }
        Ok(&self.samples)
    }

    /// Fills `out` by concealment: libopus' packet-loss concealment after Opus, silence
    /// after PCM. Returns the number of 10 ms concealment frames produced.
    pub fn conceal(&mut self, out: &mut [i16]) -> u64 {
        if !self.opus_last {
            out.fill(0);
            return 0;
        }
        let mut frames = 0;
        for chunk in out.chunks_mut(CONCEAL_FRAME) {
            // Whole 10 ms frames (libopus wants multiples of 2.5 ms); the tail of the
            // last one is not needed and is dropped.
            match self.opus.decode(&[], &mut self.conceal_buf, false) {
                Ok(n) if n >= chunk.len() => {
                    chunk.copy_from_slice(&self.conceal_buf[..chunk.len()])
                }
                _ => chunk.fill(0),
            }
            frames += 1;
        }
        frames
    }

    /// Starts afresh for a new speaker: nothing of the previous voice is carried over.
    pub fn reset(&mut self) {
        let _ = self.opus.reset_state();
        self.opus_last = false;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mic::message::CLOSE_INVALID;

    /// `ms` of a sine at `freq`, amplitude 12000.
    pub fn tone(freq: f64, start: usize, len: usize) -> Vec<i16> {
        (start..start + len)
            .map(|i| ((i as f64 * freq * std::f64::consts::TAU / 48000.0).sin() * 12000.0) as i16)
            .collect()
    }

    /// Goertzel power at `freq`, relative to the signal's energy.
    pub fn tone_share(x: &[i16], freq: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / 48000.0;
        let (mut s1, mut s2) = (0f64, 0f64);
        for &v in x {
            let s = v as f64 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
        let energy: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        if energy == 0.0 {
            return 0.0;
        }
        power / (energy * x.len() as f64 / 2.0)
    }

    pub fn opus_packets(freq: f64, channels: usize, frame: usize, count: usize) -> Vec<Vec<u8>> {
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let mut enc = opus::Encoder::new(48000, ch, opus::Application::Voip).unwrap();
        (0..count)
            .map(|k| {
                let mono = tone(freq, k * frame, frame);
                let pcm: Vec<i16> = mono
                    .iter()
                    .flat_map(|&s| std::iter::repeat_n(s, channels))
                    .collect();
                enc.encode_vec(&pcm, 4000).unwrap()
            })
            .collect()
    }

    fn frame(codec: MicCodec, payload: &[u8]) -> MicFrame<'_> {
        MicFrame {
            ts_ms: 0,
            codec,
            payload,
        }
    }

    #[test]
    fn opus_mono_and_stereo_of_each_duration_decode_to_the_tone() {
        for channels in [1, 2] {
            for ms in [10, 20, 40, 60] {
                let mut dec = MicDecoder::new().unwrap();
                let mut out = Vec::new();
                for p in opus_packets(660.0, channels, ms * 48, 400 / ms) {
                    let f = frame(MicCodec::Opus, &p);
                    assert_eq!(MicDecoder::duration(&f).unwrap(), ms * 48);
                    out.extend_from_slice(dec.decode(&f).unwrap());
                }
                let tail = &out[out.len() / 2..];
                let share = tone_share(tail, 660.0);
                assert!(share > 0.8, "{channels} ch {ms} ms: 660 Hz share {share}");
                assert!(tone_share(tail, 440.0) < 0.05);
            }
        }
    }

    #[test]
    fn pcm_is_little_endian_mono() {
        let mut dec = MicDecoder::new().unwrap();
        let payload = [0x01, 0x00, 0xFF, 0xFF, 0x00, 0x80];
        let out = dec.decode(&frame(MicCodec::Pcm, &payload)).unwrap();
        assert_eq!(out, &[1, -1, i16::MIN]);
    }

    #[test]
    fn opus_that_does_not_decode_is_invalid_payload() {
        let mut dec = MicDecoder::new().unwrap();
        // TOC code 3 (arbitrary frame count) with a frame count of 0: malformed.
        for bad in [&[0x03u8][..], &[0x03, 0x00], &[0xFF, 0xFF, 0xFF, 0xFF]] {
            let err = dec.decode(&frame(MicCodec::Opus, bad)).unwrap_err();
            assert_eq!(err.code, CLOSE_INVALID, "{bad:?}");
            assert!(err.reason.contains("Opus"), "{err}");
        }
    }

    #[test]
    fn concealment_continues_the_tone_after_opus_and_is_silent_after_pcm() {
        let mut dec = MicDecoder::new().unwrap();
        for p in opus_packets(660.0, 1, 960, 20) {
            dec.decode(&frame(MicCodec::Opus, &p)).unwrap();
        }
        let mut out = vec![0i16; 1000];
        assert_eq!(dec.conceal(&mut out), 3, "1000 samples = 3 frames of 10 ms");
        assert!(
            tone_share(&out[..480], 660.0) > 0.5,
            "PLC carries the pitch on"
        );
        let pcm: Vec<u8> = tone(660.0, 0, 960)
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        dec.decode(&frame(MicCodec::Pcm, &pcm)).unwrap();
        let mut out = vec![1i16; 500];
        assert_eq!(dec.conceal(&mut out), 0);
        assert!(out.iter().all(|&s| s == 0));
    }

    #[test]
    fn a_fresh_or_reset_decoder_conceals_with_silence() {
        let mut dec = MicDecoder::new().unwrap();
        let mut out = vec![1i16; 480];
        assert_eq!(dec.conceal(&mut out), 0);
        assert!(out.iter().all(|&s| s == 0));
        for p in opus_packets(660.0, 1, 960, 5) {
            dec.decode(&frame(MicCodec::Opus, &p)).unwrap();
        }
        dec.reset();
        let mut out = vec![1i16; 480];
        assert_eq!(dec.conceal(&mut out), 0);
        assert!(out.iter().all(|&s| s == 0));
    }
}

//! Encode stage: one fixed-size frame of s16le PCM in, one payload out.
//! Knows nothing of sockets or PulseAudio.

use crate::audio::{OpusApplication, StreamFormat};
use crate::config::EncoderConfig;

/// Recommended ceiling for one Opus packet (RFC 6716 allows more, libopus never needs it).
const MAX_OPUS_PACKET: usize = 4000;

/// libopus refused: setting up the encoder, a bitrate, or a frame.
#[derive(Debug, thiserror::Error)]
#[error("Opus encoder: {0}")]
pub struct EncodeError(#[from] opus::Error);

pub trait Encoder {
    /// Appends the payload for one frame of interleaved s16le samples to `out`.
    fn encode(&mut self, pcm: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError>;
}

/// PCM passes through: the wire carries s16le interleaved, as captured.
pub struct PcmEncoder;

impl Encoder for PcmEncoder {
    fn encode(&mut self, pcm: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        out.extend_from_slice(pcm);
        Ok(())
    }
}

pub struct OpusEncoder {
    inner: opus::Encoder,
    samples: Vec<i16>,
}

impl OpusEncoder {
    pub fn new(format: StreamFormat, config: &EncoderConfig) -> Result<Self, EncodeError> {
        let ch = if format.channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        let app = match config.application {
            OpusApplication::LowDelay => opus::Application::LowDelay,
            OpusApplication::Audio => opus::Application::Audio,
        };
        let mut inner = opus::Encoder::new(format.rate, ch, app)?;
        inner.set_bitrate(opus::Bitrate::Bits(config.bitrate as i32))?;
        Ok(OpusEncoder {
            inner,
            samples: Vec::with_capacity(5760 * 2),
        })
    }

    /// Applies a new bitrate without restarting anything (SIGHUP).
    pub fn set_bitrate(&mut self, bitrate: u32) -> Result<(), EncodeError> {
        Ok(self
            .inner
            .set_bitrate(opus::Bitrate::Bits(bitrate as i32))?)
    }
}

impl Encoder for OpusEncoder {
    fn encode(&mut self, pcm: &[u8], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.samples.clear();
        self.samples.extend(
            pcm.chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]])),
        );
        let start = out.len();
        out.resize(start + MAX_OPUS_PACKET, 0);
        match self.inner.encode(&self.samples, &mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                Ok(())
            }
            Err(e) => {
                out.truncate(start);
                Err(EncodeError(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Codec;

    fn tone(freq: f32, samples: usize, channels: usize) -> Vec<u8> {
        (0..samples)
            .flat_map(|i| {
                let v =
                    ((i as f32 * freq * std::f32::consts::TAU / 48000.0).sin() * 12000.0) as i16;
                std::iter::repeat_n(v, channels)
            })
            .flat_map(|s| s.to_le_bytes())
            .collect()
    }

    #[test]
    fn opus_round_trip_keeps_the_tone_energy() {
        let cfg = EncoderConfig {
            codec: Codec::Opus,
            bitrate: 64000,
            frame_us: 20000,
            application: OpusApplication::LowDelay,
        };
        let format = StreamFormat {
            rate: 48000,
            channels: 2,
            frame_us: 20000,
        };
        let mut enc = OpusEncoder::new(format, &cfg).unwrap();
        let mut dec = opus::Decoder::new(48000, opus::Channels::Stereo).unwrap();
        let pcm = tone(440.0, 960 * 10, 2);
        let mut energy = 0f64;
        for frame in pcm.chunks_exact(960 * 4) {
            let mut out = vec![9u8; 3];
            enc.encode(frame, &mut out).unwrap();
            assert_eq!(&out[..3], &[9, 9, 9], "prefix kept");
            assert!(out.len() > 3 && out.len() < 3 + 400, "{}", out.len());
            let mut decoded = vec![0i16; 960 * 2];
            let n = dec.decode(&out[3..], &mut decoded, false).unwrap();
            assert_eq!(n, 960);
            energy += decoded.iter().map(|&s| (s as f64).powi(2)).sum::<f64>();
        }
        assert!(energy > 1e9, "decoded tone has energy: {energy}");
    }

    #[test]
    fn pcm_passes_bytes_through() {
        let mut out = Vec::new();
        PcmEncoder.encode(&[1, 2, 3, 4], &mut out).unwrap();
        assert_eq!(out, vec![1, 2, 3, 4]);
    }
}

//! The domain: what is recorded, in which format, and how it is coded on the wire.
//! Every stage speaks these types; none of them knows the command line.

/// Sample rates libopus encodes at.
pub const OPUS_RATES: [u32; 5] = [8000, 12000, 16000, 24000, 48000];

/// Bytes of one s16le sample of one channel.
const BYTES_PER_SAMPLE: usize = 2;

/// Which audio to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// Follow the server's default sink, whatever it becomes.
    FollowDefault,
    /// A named sink (or, with `--no-monitor`, a named source).
    Named(String),
}

impl Device {
    /// As the command line and the config file spell it.
    pub fn name(&self) -> &str {
        match self {
            Device::FollowDefault => "default",
            Device::Named(n) => n,
        }
    }
}

/// How a frame's audio bytes are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Pcm,
}

impl Codec {
    /// The codec byte of the wire format.
    pub fn wire_byte(self) -> u8 {
        match self {
            Codec::Pcm => 0x00,
            Codec::Opus => 0x01,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcm => "pcm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusApplication {
    /// `OPUS_APPLICATION_RESTRICTED_LOWDELAY`: CELT only, 2.5 ms lookahead.
    LowDelay,
    /// `OPUS_APPLICATION_AUDIO`: 6.5 ms lookahead.
    Audio,
}

impl OpusApplication {
    pub fn name(self) -> &'static str {
        match self {
            OpusApplication::LowDelay => "lowdelay",
            OpusApplication::Audio => "audio",
        }
    }
}

/// The captured stream: interleaved s16le at `rate`, cut into frames of `frame_us`.
/// The facts that travel together, so no stage multiplies channels by two itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub rate: u32,
    pub channels: u8,
    /// Frame duration in microseconds (2500 to 60000).
    pub frame_us: u32,
}

impl StreamFormat {
    /// Bytes of one sample of every channel (one "sample frame").
    pub fn bytes_per_sample_frame(&self) -> usize {
        self.channels as usize * BYTES_PER_SAMPLE
    }

    /// Samples per channel in one frame.
    pub fn frame_samples(&self) -> usize {
        (self.rate as u64 * self.frame_us as u64 / 1_000_000) as usize
    }

    /// Bytes of PCM in one frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_samples() * self.bytes_per_sample_frame()
    }

    /// Bytes of PCM per second.
    pub fn bytes_per_second(&self) -> usize {
        self.rate as usize * self.bytes_per_sample_frame()
    }

    /// Bytes of PCM in `us` microseconds (whole sample frames, at least one).
    pub fn bytes_for_us(&self, us: u32) -> usize {
        let samples = self.rate as u64 * us as u64 / 1_000_000;
        (samples as usize).max(1) * self.bytes_per_sample_frame()
    }

    /// Can libopus encode this format?
    pub fn opus_possible(&self) -> bool {
        OPUS_RATES.contains(&self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_format_arithmetic() {
        let f = StreamFormat {
            rate: 48000,
            channels: 2,
            frame_us: 20000,
        };
        assert_eq!(f.bytes_per_sample_frame(), 4);
        assert_eq!(f.frame_samples(), 960);
        assert_eq!(f.frame_bytes(), 3840);
        assert_eq!(f.bytes_per_second(), 192_000);
        assert_eq!(f.bytes_for_us(10_000), 1920);
        assert_eq!(f.bytes_for_us(1), 4, "at least one sample frame");
        assert!(f.opus_possible());
        let mono = StreamFormat {
            rate: 44100,
            channels: 1,
            frame_us: 2500,
        };
        assert_eq!(mono.frame_samples(), 110);
        assert_eq!(mono.frame_bytes(), 220);
        assert!(!mono.opus_possible());
    }

    #[test]
    fn wire_bytes_and_names() {
        assert_eq!(Codec::Opus.wire_byte(), 0x01);
        assert_eq!(Codec::Pcm.wire_byte(), 0x00);
        assert_eq!(Device::FollowDefault.name(), "default");
        assert_eq!(Device::Named("x".into()).name(), "x");
        assert_eq!(OpusApplication::LowDelay.name(), "lowdelay");
    }
}

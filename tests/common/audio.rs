//! What the clients hear: Opus and PCM payloads decoded to samples, and the tone
//! analysis (level, dominant frequency by Goertzel) the tests judge them with.

use super::Frame;

/// A libopus decoder at 48 kHz for the daemon's mono or stereo packets.
pub struct OpusDecoder {
    dec: opus::Decoder,
    channels: usize,
    buf: Vec<i16>,
}

impl OpusDecoder {
    pub fn new(channels: usize) -> OpusDecoder {
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        OpusDecoder {
            dec: opus::Decoder::new(48000, ch).expect("opus decoder"),
            channels,
            buf: vec![0; 5760 * channels],
        }
    }

    /// Decode one packet to interleaved i16; panics if libopus rejects it.
    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        let n = self
            .dec
            .decode(payload, &mut self.buf, false)
            .unwrap_or_else(|e| panic!("opus decode of a {}-byte packet: {e}", payload.len()));
        self.buf[..n * self.channels].to_vec()
    }
}

/// Samples per channel at 48 kHz announced by an Opus packet's TOC.
pub fn opus_packet_samples(payload: &[u8]) -> usize {
    opus::packet::get_nb_samples(payload, 48000).expect("valid opus packet")
}

/// The stereo flag of an Opus packet's TOC byte.
pub fn opus_packet_is_stereo(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x04 != 0)
}

/// PCM s16le bytes to i16 samples.
pub fn pcm_samples(payload: &[u8]) -> Vec<i16> {
    payload
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

// ---------------------------------------------------------------------------
// Signal analysis
// ---------------------------------------------------------------------------

/// Interleaved i16 to mono f32 in -1..1 (channel average).
pub fn to_mono(interleaved: &[i16], channels: usize) -> Vec<f32> {
    interleaved
        .chunks_exact(channels)
        .map(|c| c.iter().map(|&s| s as f32).sum::<f32>() / (channels as f32 * 32768.0))
        .collect()
}

/// Root mean square level of a signal in -1..1 (0 when empty).
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Goertzel power of `freq` in a Hann-windowed signal.
fn goertzel(windowed: &[f32], rate: f64, freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in windowed {
        let s = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn hann(x: &[f32]) -> Vec<f32> {
    let n = x.len();
    if n < 2 {
        return x.to_vec();
    }
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            v * w as f32
        })
        .collect()
}

/// Dominant frequency in 100..4000 Hz of a mono signal: Goertzel on a Hann
/// window over a 5 Hz grid, then a 0.5 Hz grid around the best bin.
pub fn dominant_frequency(mono: &[f32], rate: u32) -> f64 {
    let rate = rate as f64;
    let w = hann(mono);
    let mut best = (0.0f64, -1.0f64);
    let mut f = 100.0;
    while f <= 4000.0 {
        let p = goertzel(&w, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 5.0;
    }
    let centre = best.0;
    let mut f = centre - 5.0;
    while f <= centre + 5.0 {
        let p = goertzel(&w, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.5;
    }
    best.0
}

/// Power ratio of `a` over `b` in the signal (Hann window).
pub fn power_ratio(mono: &[f32], rate: u32, a: f64, b: f64) -> f64 {
    let w = hann(mono);
    goertzel(&w, rate as f64, a) / goertzel(&w, rate as f64, b).max(1e-12)
}

/// Whether one frame's audio is the `freq` tone: audible (rms > 0.05) and its
/// dominant frequency within 30 Hz (one 20 ms frame resolves no finer).
pub fn is_tone_frame(mono: &[f32], freq: f64) -> bool {
    rms(mono) > 0.05 && (dominant_frequency(mono, 48000) - freq).abs() <= 30.0
}

/// Panics unless `mono` is the `freq` tone: rms over 0.1 and the dominant
/// frequency within 10 Hz.
pub fn assert_tone(mono: &[f32], freq: f64, what: &str) {
    if let Some(e) = not_the_tone(mono, freq) {
        panic!("{what}: {e}");
    }
}

/// Why `mono` is not the `freq` tone of `assert_tone`, None when it is.
fn not_the_tone(mono: &[f32], freq: f64) -> Option<String> {
    let level = rms(mono);
    if level <= 0.1 {
        return Some(format!(
            "expected a {freq} Hz tone, got near silence (rms {level:.4})"
        ));
    }
    let got = dominant_frequency(mono, 48000);
    ((got - freq).abs() > 10.0)
        .then(|| format!("dominant frequency {got} Hz, expected {freq} ± 10 Hz"))
}

/// Decode a run of Opus frames and return the last `secs` of mono audio.
pub fn decode_tail(frames: &[Frame], channels: usize, secs: f64) -> Vec<f32> {
    let mut dec = OpusDecoder::new(channels);
    let mut pcm = Vec::new();
    for f in frames {
        pcm.extend(dec.decode(&f.payload));
    }
    tail_mono(&pcm, channels, secs)
}

/// Last `secs` of interleaved audio as mono.
pub fn tail_mono(pcm: &[i16], channels: usize, secs: f64) -> Vec<f32> {
    let mono = to_mono(pcm, channels);
    let n = ((48000.0 * secs) as usize).min(mono.len());
    mono[mono.len() - n..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, secs: f64) -> Vec<f32> {
        let n = (48000.0 * secs) as usize;
        (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / 48000.0).sin()) as f32)
            .collect()
    }

    #[test]
    fn detects_synthetic_sines() {
        for f in [440.0, 880.0, 1000.0, 1234.0] {
            let got = dominant_frequency(&sine(f, 0.5), 48000);
            assert!((got - f).abs() <= 2.0, "{f} Hz detected as {got}");
        }
    }

    #[test]
    fn detects_frequency_in_one_20ms_frame() {
        for f in [440.0, 880.0] {
            let got = dominant_frequency(&sine(f, 0.02), 48000);
            assert!((got - f).abs() <= 25.0, "{f} Hz (20 ms) detected as {got}");
        }
        assert!(power_ratio(&sine(880.0, 0.02), 48000, 880.0, 440.0) > 100.0);
    }

    #[test]
    fn stereo_to_mono_and_rms() {
        let st: Vec<i16> = [16384i16, 16384, -16384, -16384].repeat(10);
        let m = to_mono(&st, 2);
        assert_eq!(m.len(), 20);
        assert!((rms(&m) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn tone_frames_and_tone_assertion() {
        assert!(is_tone_frame(&sine(440.0, 0.02), 440.0));
        assert!(!is_tone_frame(&sine(440.0, 0.02), 880.0));
        assert!(!is_tone_frame(&vec![0.0; 960], 440.0));
        assert_eq!(not_the_tone(&sine(440.0, 0.5), 440.0), None);
        let quiet: Vec<f32> = sine(440.0, 0.5).iter().map(|v| v / 10.0).collect();
        assert!(not_the_tone(&quiet, 440.0).is_some_and(|e| e.contains("silence")));
        assert!(not_the_tone(&sine(460.0, 0.5), 440.0).is_some_and(|e| e.contains("460")));
    }
}

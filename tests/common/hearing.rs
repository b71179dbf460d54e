//! Hearing a tone over time: each client's frames decoded in order and classified
//! as the tone or not, and the wait until every client heard a run of it.

use std::thread;
use std::time::{Duration, Instant};

use super::{dominant_frequency, is_tone_frame, rms, to_mono, Frame, OpusDecoder, Reader};

/// Decodes a client's frames in order and classifies each as `freq` tone or not.
pub struct Listener {
    dec: OpusDecoder,
    next: usize,
    /// (index, received, is the tone) for every decoded frame.
    tone: Vec<(usize, Instant, bool)>,
}

impl Listener {
    pub fn new() -> Listener {
        Listener {
            dec: OpusDecoder::new(2),
            next: 0,
            tone: Vec::new(),
        }
    }

    pub fn update(&mut self, r: &Reader, freq: f64) {
        for f in r.frames_from(self.next) {
            let mono = to_mono(&self.dec.decode(&f.payload), 2);
            self.tone
                .push((self.next, f.received, is_tone_frame(&mono, freq)));
            self.next += 1;
        }
    }

    /// Received time of the first frame of a run of `run` tone frames received after
    /// `after`.
    pub fn heard_since(&self, after: Instant, run: usize) -> Option<Instant> {
        let mut count = 0;
        let mut start = None;
        for &(_, t, is) in self.tone.iter().filter(|(_, t, _)| *t > after) {
            if is {
                if count == 0 {
                    start = Some(t);
                }
                count += 1;
                if count >= run {
                    return start;
                }
            } else {
                count = 0;
            }
        }
        None
    }
}

/// Waits until every listener heard `run` frames of `freq` after `after`; returns the
/// latest of their first-tone times.
pub fn wait_heard(
    readers: &[Reader],
    listeners: &mut [Listener],
    freq: f64,
    after: Instant,
    run: usize,
    timeout: Duration,
) -> Result<Instant, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut latest = Some(after);
        for (r, l) in readers.iter().zip(listeners.iter_mut()) {
            l.update(r, freq);
            latest = match (latest, l.heard_since(after, run)) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
        }
        if let Some(t) = latest {
            return Ok(t);
        }
        for r in readers {
            if let Some(e) = r.ended() {
                return Err(format!("a client lost its connection: {e}"));
            }
        }
        if Instant::now() >= deadline {
            let counts: Vec<_> = readers.iter().map(Reader::len).collect();
            return Err(format!(
                "clients did not hear {freq} Hz within {timeout:?} (frames per client {counts:?}); \
                 last second of client 0: {}",
                describe_tail(&readers[0].snapshot(), 50)
            ));
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Level and dominant frequency of the last `n` frames, for failure messages.
pub fn describe_tail(frames: &[Frame], n: usize) -> String {
    let mut dec = OpusDecoder::new(2);
    let mut out = Vec::new();
    let start = frames.len().saturating_sub(n + 20);
    for (i, f) in frames[start..].iter().enumerate() {
        let mono = to_mono(&dec.decode(&f.payload), 2);
        if start + i + n >= frames.len() {
            out.push(format!(
                "{}ms:{:.2}@{:.0}",
                f.ts_ms,
                rms(&mono),
                dominant_frequency(&mono, 48000)
            ));
        }
    }
    out.join(" ")
}

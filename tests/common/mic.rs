//! The microphone seen from both ends: a speaker that sends a 660 Hz voice to `/mic`
//! in real time (Opus or PCM, in the stream's frame format), and a recorder (`parec`)
//! on a source of the test's server that timestamps every sample it gets.

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::{poll_until, rms, PulseServer, WsClient};

/// The speaker's tone.
pub const VOICE_HZ: f64 = 660.0;
/// The source the daemon creates by default.
pub const MIC_SOURCE: &str = "novnc_mic";
/// 20 ms at 48 kHz.
pub const VOICE_FRAME: usize = 960;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceCodec {
    Opus,
    Pcm,
}

/// One message of the speaker's protocol: u64 BE timestamp (ms), codec byte, payload.
pub fn mic_message(ts_ms: u64, codec: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = ts_ms.to_be_bytes().to_vec();
    m.push(codec);
    m.extend_from_slice(payload);
    m
}

/// 20 ms frames of a 660 Hz tone (or silence), encoded as a browser would send them.
pub struct Voice {
    codec: VoiceCodec,
    opus: Option<opus::Encoder>,
    sample: usize,
}

impl Voice {
    pub fn new(codec: VoiceCodec) -> Voice {
        let opus = (codec == VoiceCodec::Opus).then(|| {
            opus::Encoder::new(48000, opus::Channels::Mono, opus::Application::Voip)
                .expect("Opus encoder")
        });
        Voice {
            codec,
            opus,
            sample: 0,
        }
    }

    /// The next 20 ms: the tone when `loud`, silence otherwise; as a whole message.
    pub fn next_message(&mut self, loud: bool) -> Vec<u8> {
        let pcm: Vec<i16> = (self.sample..self.sample + VOICE_FRAME)
            .map(|i| {
                if loud {
                    ((i as f64 * VOICE_HZ * std::f64::consts::TAU / 48000.0).sin() * 16000.0) as i16
                } else {
                    0
                }
            })
            .collect();
        let ts = (self.sample / 48) as u64;
        self.sample += VOICE_FRAME;
        match &mut self.opus {
            Some(enc) => mic_message(ts, 0x01, &enc.encode_vec(&pcm, 4000).expect("encode")),
            None => {
                let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
                mic_message(ts, 0x00, &bytes)
            }
        }
    }
}

/// What a talker saw when it ended.
#[derive(Debug, Default)]
pub struct TalkerEnd {
    /// The server's close frame, if it closed us.
    pub closed_by_server: Option<CloseFrame>,
    pub error: Option<String>,
    pub sent: usize,
    /// Frames this thread sent 40 ms or more after they were due: a stall of this busy
    /// machine that then sent them in a burst. The daemon rightly trims such a burst back
    /// to its target latency (microphone frames_dropped).
    pub sent_late: usize,
}

/// A speaker sending 20 ms frames in real time from a thread of its own; `loud(k)` says
/// whether frame `k` carries the tone. It notes when each burst of tone began.
pub struct Talker {
    stop: Arc<AtomicBool>,
    onsets: Arc<Mutex<Vec<Instant>>>,
    handle: Option<JoinHandle<TalkerEnd>>,
}

impl Talker {
    pub fn start(client: WsClient, codec: VoiceCodec, loud: fn(usize) -> bool) -> Talker {
        let stop = Arc::new(AtomicBool::new(false));
        let onsets = Arc::new(Mutex::new(Vec::new()));
        let (stop2, onsets2) = (stop.clone(), onsets.clone());
        let mut ws = client.ws;
        ws.get_ref()
            .set_read_timeout(Some(Duration::from_millis(1)))
            .unwrap();
        let handle = thread::spawn(move || {
            let mut voice = Voice::new(codec);
            let mut end = TalkerEnd::default();
            let start = Instant::now();
            let mut was_loud = false;
            for k in 0.. {
                if stop2.load(Ordering::Relaxed) {
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    // Until the server's answer, so the daemon sees a clean close.
                    let _ = wait_close(&mut ws, Duration::from_secs(2));
                    break;
                }
                let due = start + Duration::from_millis(20 * k as u64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    thread::sleep(wait);
                }
                if Instant::now().saturating_duration_since(due) >= Duration::from_millis(40) {
                    end.sent_late += 1;
                }
                let is_loud = loud(k);
                let msg = voice.next_message(is_loud);
                if is_loud && !was_loud {
                    onsets2.lock().unwrap().push(Instant::now());
                }
                was_loud = is_loud;
                if let Err(e) = ws.send(Message::Binary(msg.into())) {
                    end.error = Some(e.to_string());
                    break;
                }
                end.sent += 1;
                match ws.read() {
                    Ok(Message::Close(c)) => {
                        end.closed_by_server = c;
                        break;
                    }
                    Ok(_) => {}
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        end.error = Some(e.to_string());
                        break;
                    }
                }
            }
            end
        });
        Talker {
            stop,
            onsets,
            handle: Some(handle),
        }
    }

    /// When each burst of tone was sent.
    pub fn onsets(&self) -> Vec<Instant> {
        self.onsets.lock().unwrap().clone()
    }

    /// Is it still sending?
    pub fn is_talking(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Closes (unless the server did) and says how it ended.
    pub fn stop(mut self) -> TalkerEnd {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("talker thread")
    }
}

impl Drop for Talker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads until the server's close frame (or `timeout`); returns it.
pub fn wait_close(
    ws: &mut WebSocket<TcpStream>,
    timeout: Duration,
) -> Result<Option<CloseFrame>, String> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(c)) => return Ok(c),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(None),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("no close frame within {timeout:?}"))
}

/// `parec` on one source of the test's server; every sample with the time it was
/// recorded (the read time, less the samples after it in the same read).
pub struct Recorder {
    child: Child,
    samples: Arc<Mutex<(Vec<f32>, Vec<Instant>)>>,
    reader: Option<JoinHandle<()>>,
}

impl Recorder {
    pub fn start(pulse: &PulseServer, source: &str) -> Recorder {
        let mut child = pulse
            .command("parec")
            .args([
                "--raw",
                "--format=s16le",
                "--rate=48000",
                "--channels=1",
                "--latency-msec=10",
                &format!("--device={source}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn parec");
        let mut out = child.stdout.take().unwrap();
        let samples = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let into = samples.clone();
        let reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let mut odd: Option<u8> = None;
            loop {
                let n = match out.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let now = Instant::now();
                let mut bytes: Vec<u8> = odd.take().into_iter().collect();
                bytes.extend_from_slice(&buf[..n]);
                if bytes.len() % 2 == 1 {
                    odd = bytes.pop();
                }
                let count = bytes.len() / 2;
                let mut s = into.lock().unwrap();
                for (i, b) in bytes.chunks_exact(2).enumerate() {
                    s.0.push(i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0);
                    let after = (count - 1 - i) as u64;
                    s.1.push(now - Duration::from_micros(after * 1_000_000 / 48000));
                }
            }
        });
        Recorder {
            child,
            samples,
            reader: Some(reader),
        }
    }

    /// Samples recorded so far.
    pub fn len(&self) -> usize {
        self.samples.lock().unwrap().0.len()
    }

    /// The samples recorded between `from` and `to`.
    pub fn between(&self, from: Instant, to: Instant) -> Vec<f32> {
        let s = self.samples.lock().unwrap();
        s.0.iter()
            .zip(&s.1)
            .filter(|(_, t)| **t >= from && **t < to)
            .map(|(v, _)| *v)
            .collect()
    }

    /// The last `secs` recorded.
    pub fn tail(&self, secs: f64) -> Vec<f32> {
        let s = self.samples.lock().unwrap();
        let n = ((secs * 48000.0) as usize).min(s.0.len());
        s.0[s.0.len() - n..].to_vec()
    }

    /// When each burst of sound began: a 2.5 ms window louder than 0.05 after one
    /// quieter than 0.01.
    pub fn onsets(&self) -> Vec<Instant> {
        let s = self.samples.lock().unwrap();
        let mut onsets = Vec::new();
        let mut quiet = false;
        for (w, window) in s.0.chunks_exact(120).enumerate() {
            let level = rms(window);
            if level < 0.01 {
                quiet = true;
            } else if level > 0.05 && quiet {
                quiet = false;
                onsets.push(s.1[w * 120]);
            }
        }
        onsets
    }

    /// Waits until it has recorded `secs` of audio.
    pub fn wait_for(&self, secs: f64) {
        let n = (secs * 48000.0) as usize;
        poll_until(Duration::from_secs_f64(secs * 3.0 + 5.0), || {
            (self.len() >= n).then_some(())
        })
        .unwrap_or_else(|| panic!("parec recorded {} samples, not {n}", self.len()));
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The time from each sent burst to its onset at the source, in ms: each burst with the
/// first onset heard after it, within a second (a dip inside a burst, heard as a second
/// onset, counts once).
pub fn mouth_to_source_ms(sent: &[Instant], heard: &[Instant]) -> Vec<f64> {
    let mut used = vec![false; sent.len()];
    let mut out = Vec::new();
    for h in heard {
        let Some(i) = sent.iter().rposition(|s| s <= h) else {
            continue;
        };
        let d = h.duration_since(sent[i]);
        if used[i] || d >= Duration::from_secs(1) {
            continue;
        }
        used[i] = true;
        out.push(d.as_secs_f64() * 1000.0);
    }
    out
}

/// (median, p99) of `v`.
pub fn median_p99(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99))
}

/// The server's default source, by `pactl get-default-source`.
pub fn default_source(pulse: &PulseServer) -> Option<String> {
    pulse
        .try_pactl(&["get-default-source"])
        .ok()
        .map(|s| s.trim().to_string())
}

/// Waits until the microphone's source exists and is the default source.
pub fn wait_mic_source(pulse: &PulseServer, timeout: Duration) -> bool {
    poll_until(timeout, || {
        (default_source(pulse).as_deref() == Some(MIC_SOURCE)).then_some(())
    })
    .is_some()
}

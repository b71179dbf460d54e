//! The sound the tests play: a continuous sine written to pacat, and where its
//! stream plays (sink input, sink) as the server sees it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{poll_until, PulseServer};

/// A continuous sine played with pacat into a sink of a `PulseServer`.
pub struct Tone {
    child: Child,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
    /// Underruns pacat reported (its buffer in the server ran dry: the sink played zeros).
    underruns: Arc<AtomicUsize>,
    /// What pacat said, for failure messages.
    said: Arc<Mutex<String>>,
}

impl Tone {
    pub fn play(pulse: &PulseServer, sink: Option<&str>, freq_hz: f64) -> Tone {
        Self::play_with(pulse, sink, freq_hz, 48000, 2)
    }

    /// 100 ms of buffer in the server by default. With 20 ms, a stall of this shared
    /// machine made pacat underrun; the null sink then renders zeros, the daemon skips
    /// them as silence, and a test that checks every timestamp step saw a 100 ms jump
    /// that was the player's, not the daemon's (CI, stop 14). The writer fills pacat's
    /// buffer at once, so a larger one does not delay the tone's start.
    const DEFAULT_LATENCY_MS: u32 = 100;

    pub fn play_with(
        pulse: &PulseServer,
        sink: Option<&str>,
        freq_hz: f64,
        rate: u32,
        channels: u32,
    ) -> Tone {
        Self::play_buffered(
            pulse,
            sink,
            freq_hz,
            rate,
            channels,
            Self::DEFAULT_LATENCY_MS,
        )
    }

    /// With `latency_ms` of buffer in the server: a larger one than the default keeps
    /// the tone unbroken while this shared machine is busy (for tests that check every
    /// frame of it, not how fast it starts).
    pub fn play_buffered(
        pulse: &PulseServer,
        sink: Option<&str>,
        freq_hz: f64,
        rate: u32,
        channels: u32,
        latency_ms: u32,
    ) -> Tone {
        let mut cmd = pulse.command("pacat");
        cmd.args([
            // Verbose for its "Stream underrun." lines.
            "--verbose",
            "--playback",
            "--raw",
            "--format=s16le",
            &format!("--rate={rate}"),
            &format!("--channels={channels}"),
            &format!("--latency-msec={latency_ms}"),
        ]);
        if let Some(s) = sink {
            cmd.arg(format!("--device={s}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn pacat");
        let mut stdin = child.stdin.take().unwrap();
        let underruns = Arc::new(AtomicUsize::new(0));
        let said = Arc::new(Mutex::new(String::new()));
        {
            let underruns = underruns.clone();
            let said = said.clone();
            let stderr = BufReader::new(child.stderr.take().unwrap());
            // Ends with pacat (its stderr closes).
            thread::spawn(move || {
                for line in stderr.lines().map_while(Result::ok) {
                    if line.contains("Stream underrun") {
                        underruns.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut said = said.lock().unwrap();
                    if said.len() < 16 * 1024 {
                        said.push_str(&line);
                        said.push('\n');
                    }
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = thread::spawn(move || {
            let frames_per_chunk = (rate / 100) as usize; // 10 ms
            let step = 2.0 * std::f64::consts::PI * freq_hz / rate as f64;
            let mut phase = 0.0f64;
            let mut buf = Vec::with_capacity(frames_per_chunk * channels as usize * 2);
            while !stop2.load(Ordering::Relaxed) {
                buf.clear();
                for _ in 0..frames_per_chunk {
                    let v = (phase.sin() * 16384.0) as i16;
                    phase += step;
                    if phase > 2.0 * std::f64::consts::PI {
                        phase -= 2.0 * std::f64::consts::PI;
                    }
                    for _ in 0..channels {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
                if stdin.write_all(&buf).is_err() {
                    break;
                }
            }
        });
        Tone {
            child,
            stop,
            writer: Some(writer),
            underruns,
            said,
        }
    }
}

impl Tone {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// For failure messages: whether pacat still runs (and what it said if not: a player
    /// that could not connect or died leaves the sink silent, which the daemon skips).
    pub fn describe(&self) -> String {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .ok()
            .and_then(|st| {
                st.rsplit(')')
                    .next()?
                    .split_whitespace()
                    .next()
                    .map(str::to_owned)
            });
        let running = !matches!(state.as_deref(), None | Some("Z") | Some("X"));
        if running {
            return format!("player pacat running, {} underruns", self.underruns());
        }
        format!(
            "player pacat {} EXITED; it said:\n{}",
            self.pid(),
            self.said.lock().unwrap()
        )
    }

    /// Underruns pacat reported so far: each time its buffer in the server ran dry, the
    /// sink played zeros, which the daemon skips as silence (its timestamps jump).
    pub fn underruns(&self) -> usize {
        self.underruns.load(Ordering::Relaxed)
    }

    /// The index of this tone's sink input (polls up to 5 s for it to appear).
    pub fn sink_input(&self, pulse: &PulseServer) -> u32 {
        let needle = format!("application.process.id = \"{}\"", self.pid());
        poll_until(Duration::from_secs(5), || {
            let list = pulse.pactl(&["list", "sink-inputs"]);
            list.split("Sink Input #").skip(1).find_map(|block| {
                block
                    .contains(&needle)
                    .then(|| block.split_whitespace().next()?.parse().ok())
                    .flatten()
            })
        })
        .unwrap_or_else(|| panic!("no sink input for pacat pid {}", self.pid()))
    }

    /// Move this tone to `sink` with `pactl move-sink-input`. A move to a sink
    /// that is not the default makes it the stream's preferred sink, so a later
    /// default-sink change leaves the stream where it is. (A stream that merely
    /// started on a sink, `pacat --device=`, is carried along to the new default.)
    pub fn move_to(&self, pulse: &PulseServer, sink: &str) {
        let idx = self.sink_input(pulse).to_string();
        pulse.pactl(&["move-sink-input", &idx, sink]);
    }

    /// Name of the sink this tone is playing into right now.
    pub fn sink_name(&self, pulse: &PulseServer) -> String {
        let idx = self.sink_input(pulse).to_string();
        let sink_idx = pulse
            .pactl(&["list", "short", "sink-inputs"])
            .lines()
            .find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(idx.as_str())).then(|| cols.next().map(str::to_owned))?
            })
            .expect("sink input listed");
        pulse
            .pactl(&["list", "short", "sinks"])
            .lines()
            .find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(sink_idx.as_str())).then(|| cols.next().map(str::to_owned))?
            })
            .expect("sink listed")
    }
}

impl Drop for Tone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

//! What the scenario tests (resilience, pipewire, hostile) share: the serial lock,
//! the full-count switch, /stats and /proc readers, clients read by threads of their
//! own, tone detection and the audio-server restart cycles.

use std::fs;
use std::io::ErrorKind;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::*;

/// The sink the daemon creates and selects.
pub const SINK: &str = "novnc_audio";

/// The tests of a scenario file start audio stacks, share the daemon's CPU and
/// measure gaps, rates and memory: they run one at a time (one lock per test binary).
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Full-count variants (soak) when NOVNC_AUDIO_FULL=1.
pub fn full() -> bool {
    std::env::var("NOVNC_AUDIO_FULL").is_ok_and(|v| v == "1")
}

/// A private server plus a daemon that has created and selected its sink.
pub fn setup(args: &[&str]) -> (PulseServer, Daemon) {
    let pulse = PulseServer::start();
    let daemon = Daemon::start(&pulse, args);
    assert!(
        pulse.wait_default_sink(SINK, Duration::from_secs(5)),
        "daemon did not create and select {SINK} within 5 s; sinks {:?}",
        pulse.sinks()
    );
    (pulse, daemon)
}

// ---------------------------------------------------------------------------
// The daemon seen from outside
// ---------------------------------------------------------------------------

/// CPU time (user + system) a process has used so far.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based).
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The body of GET /stats.
pub fn stats(daemon: &Daemon) -> String {
    let resp = raw_request(
        daemon.addr(),
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .expect("GET /stats");
    assert_eq!(resp.status, 200, "GET /stats: {}", resp.head);
    resp.body_text()
}

/// The first unsigned number after `"key":` in a JSON text.
pub fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    json[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// A client read by a thread of its own into a shared list of frames.
pub struct Reader {
    frames: Arc<Mutex<Vec<Frame>>>,
    ended: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reader {
    /// Connects to `url`; when dropped, the client sends a Close.
    pub fn start(url: &str) -> Reader {
        Reader::read(WsClient::connect(url), true)
    }

    /// Reads `c` until dropped; then sends a Close if `close`, else just drops the
    /// connection.
    pub fn read(mut c: WsClient, close: bool) -> Reader {
        c.set_read_timeout(Duration::from_millis(200));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, e2, s2) = (frames.clone(), ended.clone(), stop.clone());
        let handle = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match c.next() {
                    Ok(Next::Frame(f)) => f2.lock().unwrap().push(f),
                    Ok(Next::Close(cf)) => {
                        *e2.lock().unwrap() = Some(format!("server closed: {cf:?}"));
                        return;
                    }
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        *e2.lock().unwrap() = Some(format!("read failed: {e}"));
                        return;
                    }
                }
            }
            if close {
                let _ = c.ws.close(None);
                let _ = c.ws.flush();
            }
        });
        Reader {
            frames,
            ended,
            stop,
            handle: Some(handle),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    pub fn frames_from(&self, from: usize) -> Vec<Frame> {
        self.frames.lock().unwrap()[from..].to_vec()
    }

    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Panics if the connection ended.
    pub fn assert_alive(&self, what: &str) {
        if let Some(e) = self.ended() {
            panic!("{what}: the client lost its connection: {e}");
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Two clients of `/audio`.
pub fn two_readers(daemon: &Daemon) -> [Reader; 2] {
    [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ]
}

// ---------------------------------------------------------------------------
// Hearing a tone
// ---------------------------------------------------------------------------

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
            let is = rms(&mono) > 0.05 && (dominant_frequency(&mono, 48000) - freq).abs() <= 30.0;
            self.tone.push((self.next, f.received, is));
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

// ---------------------------------------------------------------------------
// Frame checks and figures
// ---------------------------------------------------------------------------

/// Strictly increasing timestamps over a whole run.
pub fn assert_strictly_monotonic(frames: &[Frame], who: &str) {
    for (i, w) in frames.windows(2).enumerate() {
        assert!(
            w[1].ts_ms > w[0].ts_ms,
            "{who}: timestamp went from {} to {} at frame {}",
            w[0].ts_ms,
            w[1].ts_ms,
            i + 1
        );
    }
}

/// Largest gap between the arrivals of consecutive frames.
pub fn max_arrival_gap(frames: &[Frame]) -> Duration {
    frames
        .windows(2)
        .map(|w| w[1].received - w[0].received)
        .max()
        .unwrap_or_default()
}

pub fn median_max(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], *s.last().unwrap())
}

/// Milliseconds from `from` to `t`, negative when `t` is earlier.
pub fn ms_since(from: Instant, t: Instant) -> f64 {
    if t >= from {
        (t - from).as_secs_f64() * 1000.0
    } else {
        -((from - t).as_secs_f64() * 1000.0)
    }
}

// ---------------------------------------------------------------------------
// Restarting the audio server under the daemon
// ---------------------------------------------------------------------------

/// The audio server of a restart scenario (PulseAudio, PipeWire) and the 440 Hz
/// player that plays into it.
pub trait AudioServer {
    /// How messages name the server ("the server", "pipewire-pulse").
    const NAME: &'static str;

    /// Starts the 440 Hz player.
    fn play(&mut self);

    /// SIGKILLs the server (the player dies with it), starts a new one and waits
    /// until it can take a player; returns when the new server accepted clients.
    fn restart(&mut self, cycle: usize, daemon: &Daemon) -> Instant;

    /// What failure messages and the line of a cycle add about the server ("" for
    /// nothing), starting with "; ".
    fn state(&self, daemon: &Daemon) -> String;

    /// Checks the server after the tone was heard again.
    fn check(&self, cycle: usize);
}

/// The times of one restart cycle.
pub struct Cycle {
    /// The new server accepted clients.
    pub accepted: Instant,
    /// The daemon logged "reconnected to PulseAudio".
    pub log_at: Instant,
    /// The latest of the clients' first frames of the new timeline.
    pub first: Instant,
    /// Every client heard the new player.
    pub heard: Instant,
}

/// Sets a flag to false when dropped, panicking or not.
struct Lower<'a>(&'a AtomicBool);

impl Drop for Lower<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Restarts `server` `cycles` times under the daemon and its clients, once they hear
/// the player. After each restart every client hears the new player (a run of 5
/// frames within 5 s), the timestamps jump forward, the daemon logs "reconnected to
/// PulseAudio" within 2 s, `server.check` holds and every client is still connected.
/// After the last: the daemon still runs, every client's timestamps rose strictly,
/// /stats counts one reconnect per restart, and the daemon reconnected and sent the
/// first frame within 1000 ms of the server's return in every cycle. `label` starts
/// the line of figures.
pub fn restart_cycles<S: AudioServer>(
    server: &mut S,
    daemon: &mut Daemon,
    readers: &[Reader],
    listeners: &mut [Listener],
    cycles: usize,
    label: &str,
) {
    wait_heard(
        readers,
        listeners,
        440.0,
        Instant::now() - Duration::from_secs(60),
        10,
        Duration::from_secs(5),
    )
    .expect("440 Hz before the first restart");

    let done = {
        let daemon = &*daemon;
        // Times at which the daemon logged "reconnected to PulseAudio", by occurrence.
        let logged: Mutex<Vec<Instant>> = Mutex::new(Vec::new());
        let watching = AtomicBool::new(true);
        thread::scope(|s| {
            s.spawn(|| {
                while watching.load(Ordering::Relaxed) {
                    let n = daemon
                        .stderr_text()
                        .matches("reconnected to PulseAudio")
                        .count();
                    let mut v = logged.lock().unwrap();
                    while v.len() < n {
                        v.push(Instant::now());
                    }
                    drop(v);
                    thread::sleep(Duration::from_millis(1));
                }
            });
            // A failed cycle ends the watcher too, so the scope can end.
            let _stop_watching = Lower(&watching);
            (1..=cycles)
                .map(|cycle| restart_cycle(server, daemon, readers, listeners, &logged, cycle))
                .collect::<Vec<Cycle>>()
        })
    };

    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    let json = stats(daemon);
    assert_eq!(
        json_u64(&json, "reconnects"),
        cycles as u64,
        "stats reconnects after {cycles} restarts: {json}"
    );
    let delays = |to: fn(&Cycle) -> Instant| -> Vec<f64> {
        done.iter().map(|c| ms_since(c.accepted, to(c))).collect()
    };
    let (lm, lx) = median_max(&delays(|c| c.log_at));
    let (fm, fx) = median_max(&delays(|c| c.first));
    let (tm, tx) = median_max(&delays(|c| c.heard));
    println!(
        "{label}{cycles} restarts: reconnect log line median {lm:.1} ms max {lx:.1} ms; first frame median \
         {fm:.1} ms max {fx:.1} ms; 440 Hz (incl. starting a player) median {tm:.1} ms max {tx:.1} ms"
    );
    assert!(
        lx < 1000.0,
        "the daemon reconnected {lx:.0} ms after {} returned (limit 1000 ms)",
        S::NAME
    );
    assert!(
        fx < 1000.0,
        "first frame {fx:.0} ms after {} returned (limit 1000 ms)",
        S::NAME
    );
}

/// One cycle of `restart_cycles`; `logged` holds when the daemon logged each reconnect.
fn restart_cycle<S: AudioServer>(
    server: &mut S,
    daemon: &Daemon,
    readers: &[Reader],
    listeners: &mut [Listener],
    logged: &Mutex<Vec<Instant>>,
    cycle: usize,
) -> Cycle {
    let marks: Vec<usize> = readers.iter().map(Reader::len).collect();
    let accepted = server.restart(cycle, daemon);
    let tone_started = Instant::now();
    server.play();
    let heard = wait_heard(
        readers,
        listeners,
        440.0,
        tone_started,
        5,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "cycle {cycle}: {e}{}\ndaemon stderr:\n{}",
            server.state(daemon),
            daemon.stderr_text()
        )
    });

    // First frame of the new timeline for each client: the first frame after the kill
    // whose timestamp jumps forward (the gap), i.e. captured after it.
    let mut first = accepted;
    for (r, &mark) in readers.iter().zip(&marks) {
        let frames = r.snapshot();
        let f = frames[mark.max(1)..]
            .iter()
            .zip(&frames[mark.max(1) - 1..])
            .find(|(f, prev)| f.ts_ms > prev.ts_ms + 40)
            .map(|(f, _)| f.received)
            .unwrap_or_else(|| panic!("cycle {cycle}: no timestamp gap seen"));
        first = first.max(f);
    }
    let log_at = poll_until(Duration::from_secs(2), || {
        logged.lock().unwrap().get(cycle - 1).copied()
    })
    .unwrap_or_else(|| {
        panic!(
            "cycle {cycle}: no \"reconnected to PulseAudio\" line; stderr:\n{}",
            daemon.stderr_text()
        )
    });
    println!(
        "cycle {cycle}: reconnect logged {:+.1} ms, first frame {:+.1} ms, 440 Hz heard {:+.1} ms \
         after {} accepted{}",
        ms_since(accepted, log_at),
        ms_since(accepted, first),
        ms_since(accepted, heard),
        S::NAME,
        server.state(daemon)
    );
    server.check(cycle);
    for r in readers {
        r.assert_alive(&format!("cycle {cycle}"));
    }
    Cycle {
        accepted,
        log_at,
        first,
        heard,
    }
}

// ---------------------------------------------------------------------------
// The recorded sink unloaded
// ---------------------------------------------------------------------------

/// Makes a new null sink `other` the default and plays 880 Hz into it and 440 Hz into
/// `keep`; once the clients hear 880 Hz, stops that player and unloads `other`. The
/// clients must hear the 440 Hz of the new default within 1000 ms, the daemon still
/// runs and every client is connected with strictly increasing timestamps. `label`
/// starts the lines of figures, `state` ends failure messages. Returns the 440 Hz
/// player.
pub fn follow_unloaded_sink(
    pulse: &PulseServer,
    daemon: &mut Daemon,
    readers: &[Reader],
    keep: &str,
    label: &str,
    state: impl Fn(&Daemon) -> String,
) -> Tone {
    let mut l440: Vec<Listener> = readers.iter().map(|_| Listener::new()).collect();
    let mut l880: Vec<Listener> = readers.iter().map(|_| Listener::new()).collect();
    let other = pulse.load_null_sink("other");
    let switched = Instant::now();
    pulse.pactl(&["set-default-sink", "other"]);
    // Players start after the switch: PulseAudio 16 moves a stream that plays into the
    // default sink along with the default, even one started with --device.
    let a = Tone::play(pulse, Some(keep), 440.0);
    let b = Tone::play(pulse, Some("other"), 880.0);
    let t = wait_heard(
        readers,
        &mut l880,
        880.0,
        switched,
        10,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "880 Hz after making `other` the default: {e}{}",
            state(daemon)
        )
    });
    println!(
        "{label}880 Hz heard {:.1} ms after set-default-sink other",
        ms_since(switched, t)
    );
    // The 880 Hz player would be moved into the new default with the unload and mix
    // with the 440 Hz one there; it goes first.
    drop(b);

    let unloading = Instant::now();
    pulse.pactl(&["unload-module", &other.to_string()]);
    let heard = wait_heard(
        readers,
        &mut l440,
        440.0,
        unloading,
        5,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("after unloading the recorded sink: {e}{}", state(daemon)));
    let ms = ms_since(unloading, heard);
    println!(
        "{label}440 Hz heard again {ms:.1} ms after unloading the recorded sink (default {:?})",
        pulse.default_sink()
    );
    assert!(
        ms < 1000.0,
        "clients heard the new default {ms:.0} ms after the recorded sink was unloaded (limit 1000 ms)"
    );
    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        r.assert_alive("after the unload");
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    a
}

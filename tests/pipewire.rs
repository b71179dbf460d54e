//! The resilience scenarios against PipeWire's PulseAudio server (pipewire-pulse):
//! a tone played into the default sink is heard, the audio server restarted, the
//! recorded sink unloaded. Each test runs a private session (its own dbus-daemon,
//! XDG_RUNTIME_DIR, pipewire, wireplumber and pipewire-pulse) and kills it by pid.
//! Skipped, with the reason printed, when those programs are not installed
//! (Debian: pipewire pipewire-pulse wireplumber dbus-daemon).

mod common;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

const PROGRAMS: &[&str] = &["pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon"];

/// Full-count variants (soak) when NOVNC_AUDIO_FULL=1.
fn full() -> bool {
    std::env::var("NOVNC_AUDIO_FULL").is_ok_and(|v| v == "1")
}

/// The programs of PROGRAMS that are not on PATH.
fn missing_programs() -> Vec<&'static str> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    PROGRAMS
        .iter()
        .copied()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .collect()
}

/// Returns true (after saying why) when the test cannot run here.
fn skip() -> bool {
    let missing = missing_programs();
    if missing.is_empty() {
        return false;
    }
    println!(
        "skipped: {} not installed (apt-get install pipewire pipewire-pulse wireplumber dbus-daemon)",
        missing.join(", ")
    );
    true
}

/// The tests of this file start whole audio stacks and measure gaps: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// A private PipeWire session
// ---------------------------------------------------------------------------

/// A PipeWire session in the runtime dir of a harness `PulseServer`: the harness'
/// pulseaudio is killed (by pid) and pipewire-pulse takes its socket path, so the
/// harness' `Daemon`, `Tone` and `pactl` talk to PipeWire unchanged.
struct PipeWire<'a> {
    pulse: &'a PulseServer,
    runtime: PathBuf,
    dir: PathBuf,
    dbus: Option<Child>,
    /// pipewire, wireplumber, pipewire-pulse.
    stack: Vec<Child>,
}

impl<'a> PipeWire<'a> {
    fn start(pulse: &'a PulseServer) -> PipeWire<'a> {
        let runtime = pulse
            .server_path()
            .parent()
            .and_then(Path::parent)
            .unwrap()
            .to_path_buf();
        // The harness' pulseaudio: its pid from its pid file, SIGKILL; the harness
        // reaps it when the PulseServer is dropped.
        let pid_file = pulse.server_path().with_file_name("pid");
        let pid: u32 = fs::read_to_string(&pid_file)
            .expect("pulseaudio pid file")
            .trim()
            .parse()
            .expect("pid");
        send_signal(pid, "KILL");
        poll_until(Duration::from_secs(5), || {
            pulse.try_pactl(&["info"]).is_err().then_some(())
        })
        .expect("pulseaudio still answers after SIGKILL");
        let _ = fs::remove_file(&pid_file);
        let _ = fs::remove_file(pulse.server_path());

        let dir = pulse.dir().join("pw");
        for d in ["config", "state", "data"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let bus = runtime.join("bus");
        let mut cmd = pulse.command("dbus-daemon");
        cmd.args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(dir.join("dbus.log")).unwrap()));
        let dbus = cmd.spawn().expect("spawn dbus-daemon");
        poll_until(Duration::from_secs(5), || bus.exists().then_some(()))
            .expect("dbus-daemon did not create its socket within 5 s");
        let mut pw = PipeWire {
            pulse,
            runtime,
            dir,
            dbus: Some(dbus),
            stack: Vec::new(),
        };
        pw.start_stack();
        pw
    }

    fn spawn(&self, program: &str) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{program}.log")))
            .unwrap();
        let mut cmd = self.pulse.command(program);
        cmd.env_remove("PULSE_SERVER")
            .env_remove("PULSE_CLIENTCONFIG")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", self.runtime.join("bus").display()),
            )
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    }

    /// Starts pipewire, wireplumber and pipewire-pulse; returns when `pactl info`
    /// succeeds on the PulseAudio socket.
    fn start_stack(&mut self) -> Instant {
        let _ = fs::remove_file(self.pulse.server_path().with_file_name("pid"));
        let pw = self.spawn("pipewire");
        let socket = self.runtime.join("pipewire-0");
        poll_until(Duration::from_secs(5), || socket.exists().then_some(()))
            .expect("pipewire did not create its socket within 5 s");
        self.stack.push(pw);
        let wp = self.spawn("wireplumber");
        self.stack.push(wp);
        let pp = self.spawn("pipewire-pulse");
        self.stack.push(pp);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for c in &mut self.stack {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("a PipeWire process exited ({st}):\n{}", self.logs());
                }
            }
            if self.pulse.try_pactl(&["info"]).is_ok() {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "pipewire-pulse did not answer within 10 s:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL pipewire-pulse, wireplumber and pipewire (by pid); waits for them.
    fn kill_stack(&mut self) {
        while let Some(mut c) = self.stack.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(self.runtime.join("pipewire-0"));
        let _ = fs::remove_file(self.runtime.join("pipewire-0.lock"));
        assert!(
            self.pulse.try_pactl(&["info"]).is_err(),
            "pactl info still succeeds after the PipeWire stack was killed"
        );
    }

    fn logs(&self) -> String {
        ["pipewire", "wireplumber", "pipewire-pulse", "dbus"]
            .iter()
            .map(|p| {
                format!(
                    "---- {p} ----\n{}",
                    fs::read_to_string(self.dir.join(format!("{p}.log"))).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PipeWire<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        while let Some(mut c) = self.stack.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut d) = self.dbus.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Waits until PipeWire offers at least one sink and a default sink; returns it.
fn wait_default_sink(pulse: &PulseServer) -> String {
    poll_until(Duration::from_secs(5), || {
        pulse
            .try_pactl(&["info"])
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Default Sink: "))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "(null)" && !s.starts_with('@'))
    })
    .expect("PipeWire has no default sink 5 s after starting")
}

// ---------------------------------------------------------------------------
// Clients (as in tests/resilience.rs)
// ---------------------------------------------------------------------------

/// The body of GET /stats.
fn stats(daemon: &Daemon) -> String {
    let resp = raw_request(
        daemon.addr(),
        b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    )
    .expect("GET /stats");
    assert_eq!(resp.status, 200, "GET /stats: {}", resp.head);
    resp.body_text()
}

/// The first unsigned number after `"key":` in a JSON text.
fn json_u64(json: &str, key: &str) -> u64 {
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

/// A client read by a thread of its own into a shared list of frames.
struct Reader {
    frames: Arc<Mutex<Vec<Frame>>>,
    ended: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reader {
    fn start(url: &str) -> Reader {
        let mut c = WsClient::connect(url);
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
            let _ = c.ws.close(None);
            let _ = c.ws.flush();
        });
        Reader {
            frames,
            ended,
            stop,
            handle: Some(handle),
        }
    }

    fn len(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    fn frames_from(&self, from: usize) -> Vec<Frame> {
        self.frames.lock().unwrap()[from..].to_vec()
    }

    fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Panics if the connection ended.
    fn assert_alive(&self, what: &str) {
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

/// Decodes a client's frames in order and classifies each as `freq` tone or not.
struct Listener {
    dec: OpusDecoder,
    next: usize,
    /// (index, received, is the tone) for every decoded frame.
    tone: Vec<(usize, Instant, bool)>,
}

impl Listener {
    fn new() -> Listener {
        Listener {
            dec: OpusDecoder::new(2),
            next: 0,
            tone: Vec::new(),
        }
    }

    fn update(&mut self, r: &Reader, freq: f64) {
        for f in r.frames_from(self.next) {
            let mono = to_mono(&self.dec.decode(&f.payload), 2);
            let is = rms(&mono) > 0.05 && (dominant_frequency(&mono, 48000) - freq).abs() <= 30.0;
            self.tone.push((self.next, f.received, is));
            self.next += 1;
        }
    }

    /// Received time of the first frame of a run of `run` tone frames received after
    /// `after`.
    fn heard_since(&self, after: Instant, run: usize) -> Option<Instant> {
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
fn wait_heard(
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
fn describe_tail(frames: &[Frame], n: usize) -> String {
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

fn assert_strictly_monotonic(frames: &[Frame], who: &str) {
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

fn median_max(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], *s.last().unwrap())
}

/// Milliseconds from `from` to `t`, negative when `t` is earlier.
fn ms_since(from: Instant, t: Instant) -> f64 {
    if t >= from {
        (t - from).as_secs_f64() * 1000.0
    } else {
        -((from - t).as_secs_f64() * 1000.0)
    }
}

fn own_sinks(pulse: &PulseServer) -> usize {
    pulse
        .try_pactl(&["list", "short", "sinks"])
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split('\t').nth(1) == Some("novnc_audio"))
        .count()
}

/// The source named in the daemon's last "recording from" line.
fn recording_from(daemon: &Daemon) -> Option<String> {
    daemon
        .stderr_text()
        .lines()
        .rev()
        .find_map(|l| l.split("recording from ").nth(1))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// PipeWire always offers a sink (the dummy `auto_null` while there is no real one):
/// whatever the daemon records, a tone played into the default sink must be heard.
#[test]
fn pipewire_tone_into_default_sink_is_heard() {
    if skip() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    let default_before = wait_default_sink(&pulse);
    let sinks_before = pulse.sinks();
    let daemon = Daemon::start(&pulse, &[]);
    let recording =
        poll_until(Duration::from_secs(5), || recording_from(&daemon)).unwrap_or_else(|| {
            panic!(
                "no \"recording from\" within 5 s:\n{}",
                daemon.stderr_text()
            )
        });
    println!(
        "PipeWire before the daemon: sinks {sinks_before:?}, default {default_before}; \
         the daemon records {recording}; sinks now {:?}, default {:?}",
        pulse.sinks(),
        pulse.default_sink()
    );
    let readers = [Reader::start(&daemon.url("/audio"))];
    let mut listeners = [Listener::new()];
    let started = Instant::now();
    let _tone = Tone::play(&pulse, None, 440.0);
    let heard = wait_heard(
        &readers,
        &mut listeners,
        440.0,
        started,
        10,
        Duration::from_secs(5),
    );
    let heard = heard.unwrap_or_else(|e| {
        panic!(
            "a tone played into the default sink ({:?}) is not heard; the daemon records {:?}: {e}\n\
             sink inputs:\n{}\nsource outputs:\n{}\ndaemon stderr:\n{}",
            pulse.default_sink(),
            recording_from(&daemon),
            pulse.pactl(&["list", "short", "sink-inputs"]),
            pulse.source_outputs(),
            daemon.stderr_text()
        )
    });
    println!(
        "440 Hz into the default sink heard {:.1} ms after the player started (recording {:?})",
        ms_since(started, heard),
        recording_from(&daemon)
    );
    assert!(own_sinks(&pulse) <= 1, "duplicate novnc_audio sinks");
}

#[test]
fn pipewire_restarted() {
    if skip() {
        return;
    }
    let _serial = serial();
    let cycles = if full() { 20 } else { 5 };
    let pulse = PulseServer::start();
    let mut pw = PipeWire::start(&pulse);
    wait_default_sink(&pulse);
    let daemon = Daemon::start(&pulse, &[]);
    poll_until(Duration::from_secs(5), || recording_from(&daemon)).expect("recording");
    let readers = [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ];
    let mut listeners = [Listener::new(), Listener::new()];
    let mut tone = Some(Tone::play(&pulse, None, 440.0));
    wait_heard(
        &readers,
        &mut listeners,
        440.0,
        Instant::now() - Duration::from_secs(60),
        10,
        Duration::from_secs(5),
    )
    .expect("440 Hz before the first restart");

    let logged: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let watching = AtomicBool::new(true);
    let (mut to_log, mut to_frame, mut to_tone) = (Vec::new(), Vec::new(), Vec::new());
    thread::scope(|s| {
        let daemon = &daemon;
        let watching = &watching;
        let logged2 = logged.clone();
        s.spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let n = daemon
                    .stderr_text()
                    .matches("reconnected to PulseAudio")
                    .count();
                let mut v = logged2.lock().unwrap();
                while v.len() < n {
                    v.push(Instant::now());
                }
                drop(v);
                thread::sleep(Duration::from_millis(1));
            }
        });
        for cycle in 1..=cycles {
            let marks: Vec<usize> = readers.iter().map(Reader::len).collect();
            pw.kill_stack();
            drop(tone.take());
            let accepted = pw.start_stack();
            let default = wait_default_sink(&pulse);
            let tone_started = Instant::now();
            tone = Some(Tone::play(&pulse, None, 440.0));
            let heard = wait_heard(
                &readers,
                &mut listeners,
                440.0,
                tone_started,
                5,
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "cycle {cycle}: {e}; default {default}, recording {:?}\n{}",
                    recording_from(daemon),
                    daemon.stderr_text()
                )
            });
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
            .unwrap_or_else(|| panic!("cycle {cycle}: no \"reconnected to PulseAudio\" line"));
            println!(
                "cycle {cycle}: reconnect logged {:+.1} ms, first frame {:+.1} ms, 440 Hz heard {:+.1} ms \
                 after pipewire-pulse accepted; default {default}, recording {:?}, sinks {:?}",
                ms_since(accepted, log_at),
                ms_since(accepted, first),
                ms_since(accepted, heard),
                recording_from(daemon),
                pulse.sinks()
            );
            to_log.push(ms_since(accepted, log_at));
            to_frame.push(ms_since(accepted, first));
            to_tone.push(ms_since(accepted, heard));
            assert!(
                own_sinks(&pulse) <= 1,
                "cycle {cycle}: duplicate novnc_audio sinks"
            );
            for r in &readers {
                r.assert_alive(&format!("cycle {cycle}"));
            }
        }
        watching.store(false, Ordering::Relaxed);
    });
    let mut daemon = daemon;
    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    let json = stats(&daemon);
    assert_eq!(json_u64(&json, "reconnects"), cycles as u64, "{json}");
    let (lm, lx) = median_max(&to_log);
    let (fm, fx) = median_max(&to_frame);
    let (tm, tx) = median_max(&to_tone);
    println!(
        "PipeWire, {cycles} restarts: reconnect log line median {lm:.1} ms max {lx:.1} ms; first frame median \
         {fm:.1} ms max {fx:.1} ms; 440 Hz (incl. starting a player) median {tm:.1} ms max {tx:.1} ms"
    );
    assert!(
        lx < 1000.0,
        "reconnected {lx:.0} ms after pipewire-pulse returned"
    );
    assert!(
        fx < 1000.0,
        "first frame {fx:.0} ms after pipewire-pulse returned"
    );
    drop(tone);
}

#[test]
fn pipewire_recorded_sink_unloaded() {
    if skip() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    wait_default_sink(&pulse);
    let daemon = Daemon::start(&pulse, &[]);
    poll_until(Duration::from_secs(5), || recording_from(&daemon)).expect("recording");
    let readers = [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ];
    let mut l440 = [Listener::new(), Listener::new()];
    let mut l880 = [Listener::new(), Listener::new()];

    pulse.load_null_sink("keep");
    let other = pulse.load_null_sink("other");
    let switched = Instant::now();
    pulse.pactl(&["set-default-sink", "other"]);
    let _a = Tone::play(&pulse, Some("keep"), 440.0);
    let b = Tone::play(&pulse, Some("other"), 880.0);
    let t = wait_heard(
        &readers,
        &mut l880,
        880.0,
        switched,
        10,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "880 Hz after making `other` the default: {e}; recording {:?}\n{}",
            recording_from(&daemon),
            daemon.stderr_text()
        )
    });
    println!(
        "PipeWire: 880 Hz heard {:.1} ms after set-default-sink other",
        ms_since(switched, t)
    );
    drop(b);
    let unloading = Instant::now();
    pulse.pactl(&["unload-module", &other.to_string()]);
    let heard = wait_heard(
        &readers,
        &mut l440,
        440.0,
        unloading,
        5,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| {
        panic!(
            "after unloading the recorded sink: {e}; default {:?}, recording {:?}\n{}",
            pulse.default_sink(),
            recording_from(&daemon),
            daemon.stderr_text()
        )
    });
    let ms = ms_since(unloading, heard);
    println!(
        "PipeWire: 440 Hz heard again {ms:.1} ms after unloading the recorded sink (default {:?})",
        pulse.default_sink()
    );
    assert!(
        ms < 1000.0,
        "{ms:.0} ms to follow the new default (limit 1000 ms)"
    );
    let mut daemon = daemon;
    assert!(daemon.is_running());
    for (i, r) in readers.iter().enumerate() {
        r.assert_alive("after the unload");
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
}

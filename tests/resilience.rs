//! Resilience: PulseAudio killed and restarted, the recorded sink unloaded, connection
//! churn and stalled readers, each against a private PulseAudio and real WebSocket
//! clients. CI counts by default; `NOVNC_AUDIO_FULL=1` runs the full counts
//! (see scripts/soak.sh).

mod common;

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

const SINK: &str = "novnc_audio";

/// The tests of this file measure gaps and memory: they run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
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

/// Full-count variants (soak) when NOVNC_AUDIO_FULL=1.
fn full() -> bool {
    std::env::var("NOVNC_AUDIO_FULL").is_ok_and(|v| v == "1")
}

// ---------------------------------------------------------------------------
// Helpers of this file
// ---------------------------------------------------------------------------

/// A private server plus a daemon that has created and selected its sink.
fn setup(args: &[&str]) -> (PulseServer, Daemon) {
    let pulse = PulseServer::start();
    let daemon = Daemon::start(&pulse, args);
    assert!(
        pulse.wait_default_sink(SINK, Duration::from_secs(5)),
        "daemon did not create and select {SINK} within 5 s; sinks {:?}",
        pulse.sinks()
    );
    (pulse, daemon)
}

/// Open file descriptors of a process.
fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Resident set size of a process in KiB.
fn rss_kib(pid: u32) -> u64 {
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

/// Strictly increasing timestamps over a whole run.
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

fn max_arrival_gap(frames: &[Frame]) -> Duration {
    frames
        .windows(2)
        .map(|w| w[1].received - w[0].received)
        .max()
        .unwrap_or_default()
}

fn median_max(v: &[f64]) -> (f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    (s[s.len() / 2], *s.last().unwrap())
}

// ---------------------------------------------------------------------------
// 1. PulseAudio killed and restarted
// ---------------------------------------------------------------------------

/// Kills the test's PulseAudio with SIGKILL and starts a new one on the same socket.
struct Restarter<'a> {
    pulse: &'a PulseServer,
    /// The server we started ourselves (after the first kill).
    current: Option<Child>,
    log: PathBuf,
}

impl<'a> Restarter<'a> {
    fn new(pulse: &'a PulseServer) -> Restarter<'a> {
        Restarter {
            pulse,
            current: None,
            log: pulse.dir().join("restarted-pulseaudio.log"),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.pulse.server_path().with_file_name("pid")
    }

    /// SIGKILL by pid; returns once the process is dead and the server refuses.
    fn kill(&mut self) {
        match self.current.take() {
            Some(mut child) => {
                child.kill().expect("SIGKILL the restarted pulseaudio");
                child.wait().expect("reap the restarted pulseaudio");
            }
            None => {
                // The harness' server: its pid from the pid file, killed by pid; the
                // harness reaps it when the PulseServer is dropped.
                let pid: u32 = fs::read_to_string(self.pid_file())
                    .expect("read pulseaudio's pid file")
                    .trim()
                    .parse()
                    .expect("pid in pulseaudio's pid file");
                send_signal(pid, "KILL");
                let dead = poll_until(Duration::from_secs(5), || {
                    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                    (stat.is_empty() || state.starts_with('Z')).then_some(())
                });
                assert!(dead.is_some(), "pulseaudio {pid} still alive after SIGKILL");
            }
        }
        // A zombie's pid would pass pulseaudio's "already running" check.
        let _ = fs::remove_file(self.pid_file());
        assert!(
            self.pulse.try_pactl(&["info"]).is_err(),
            "pactl info still succeeds after the server was killed"
        );
    }

    /// Starts a new server on the same socket; returns when `pactl info` succeeds.
    fn start(&mut self) -> Instant {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = self.pulse.command("pulseaudio");
        cmd.env_remove("PULSE_SERVER")
            .env_remove("PULSE_CLIENTCONFIG")
            .args([
                "-n",
                "-F",
                "/dev/null",
                "--exit-idle-time=-1",
                "--daemonize=no",
                "--log-target=stderr",
                "-L",
                "module-native-protocol-unix",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let mut child = cmd.spawn().expect("spawn pulseaudio");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "restarted pulseaudio exited ({st}):\n{}",
                    fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if self.pulse.try_pactl(&["info"]).is_ok() {
                let t = Instant::now();
                self.current = Some(child);
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "restarted pulseaudio did not answer within 10 s"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Restarter<'_> {
    fn drop(&mut self) {
        if let Some(mut c) = self.current.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn pulseaudio_killed_and_restarted() {
    let _serial = serial();
    let cycles = if full() { 20 } else { 5 };
    let (pulse, daemon) = setup(&[]);
    let mut restarter = Restarter::new(&pulse);
    let mut tone = Some(Tone::play(&pulse, Some(SINK), 440.0));
    let readers = [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ];
    let mut listeners = [Listener::new(), Listener::new()];
    wait_heard(
        &readers,
        &mut listeners,
        440.0,
        Instant::now() - Duration::from_secs(60),
        10,
        Duration::from_secs(5),
    )
    .expect("440 Hz before the first restart");

    // Times at which the daemon logged "reconnected to PulseAudio", by occurrence.
    let reconnect_logged: Arc<Mutex<Vec<Instant>>> = Arc::new(Mutex::new(Vec::new()));
    let watching = AtomicBool::new(true);
    let mut to_frame = Vec::new();
    let mut to_log = Vec::new();
    let mut to_tone = Vec::new();

    thread::scope(|s| {
        let daemon = &daemon;
        let watching = &watching;
        let logged = reconnect_logged.clone();
        s.spawn(move || {
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

        for cycle in 1..=cycles {
            let marks: Vec<usize> = readers.iter().map(Reader::len).collect();
            restarter.kill();
            drop(tone.take()); // its pacat died with the server
            let accepted = restarter.start();

            // The daemon must recreate its sink on the new server; then a player.
            let sink = poll_until(Duration::from_secs(5), || {
                pulse
                    .try_pactl(&["list", "short", "sinks"])
                    .ok()
                    .filter(|l| l.contains(SINK))
            });
            assert!(
                sink.is_some(),
                "cycle {cycle}: no {SINK} sink 5 s after the restart; daemon stderr:\n{}",
                daemon.stderr_text()
            );
            let tone_started = Instant::now();
            tone = Some(Tone::play(&pulse, Some(SINK), 440.0));
            let heard = wait_heard(
                &readers,
                &mut listeners,
                440.0,
                tone_started,
                5,
                Duration::from_secs(5),
            )
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));

            // First frame of the new timeline for each client: the first frame after the
            // kill whose timestamp jumps forward (the gap), i.e. captured after it.
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
                reconnect_logged.lock().unwrap().get(cycle - 1).copied()
            })
            .unwrap_or_else(|| {
                panic!(
                    "cycle {cycle}: no \"reconnected to PulseAudio\" line; stderr:\n{}",
                    daemon.stderr_text()
                )
            });
            let ms = |t: Instant| {
                if t >= accepted {
                    (t - accepted).as_secs_f64() * 1000.0
                } else {
                    -((accepted - t).as_secs_f64() * 1000.0)
                }
            };
            println!(
                "cycle {cycle}: reconnect logged {:+.1} ms, first frame {:+.1} ms, 440 Hz heard {:+.1} ms after the server accepted",
                ms(log_at),
                ms(first),
                ms(heard)
            );
            to_log.push(ms(log_at));
            to_frame.push(ms(first));
            to_tone.push(ms(heard));

            let own = pulse
                .pactl(&["list", "short", "sinks"])
                .lines()
                .filter(|l| l.split('\t').nth(1) == Some(SINK))
                .count();
            assert_eq!(own, 1, "cycle {cycle}: {own} {SINK} sinks");
            for r in &readers {
                r.assert_alive(&format!("cycle {cycle}"));
            }
        }
        watching.store(false, Ordering::Relaxed);
    });

    let mut daemon = daemon;
    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        r.assert_alive("end");
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    let json = stats(&daemon);
    assert_eq!(
        json_u64(&json, "reconnects"),
        cycles as u64,
        "stats reconnects after {cycles} restarts: {json}"
    );
    let (lm, lx) = median_max(&to_log);
    let (fm, fx) = median_max(&to_frame);
    let (tm, tx) = median_max(&to_tone);
    println!(
        "{cycles} restarts: reconnect log line median {lm:.1} ms max {lx:.1} ms; first frame median {fm:.1} ms max {fx:.1} ms; 440 Hz (incl. starting a player) median {tm:.1} ms max {tx:.1} ms"
    );
    assert!(
        lx < 1000.0,
        "the daemon reconnected {lx:.0} ms after the server returned (limit 1000 ms)"
    );
    assert!(
        fx < 1000.0,
        "first frame {fx:.0} ms after the server returned (limit 1000 ms)"
    );
    drop(tone);
}

// ---------------------------------------------------------------------------
// 2. The recorded sink is unloaded
// ---------------------------------------------------------------------------

#[test]
fn recorded_sink_unloaded_follows_new_default() {
    let _serial = serial();
    let (pulse, daemon) = setup(&[]);
    let readers = [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ];
    let mut l440 = [Listener::new(), Listener::new()];
    let mut l880 = [Listener::new(), Listener::new()];

    let other = pulse.load_null_sink("other");
    let switched = Instant::now();
    pulse.pactl(&["set-default-sink", "other"]);
    // Players start after the switch: PulseAudio 16 moves a stream that plays into the
    // default sink along with the default, even one started with --device.
    let _a = Tone::play(&pulse, Some(SINK), 440.0);
    let b = Tone::play(&pulse, Some("other"), 880.0);
    let t = wait_heard(
        &readers,
        &mut l880,
        880.0,
        switched,
        10,
        Duration::from_secs(5),
    )
    .expect("880 Hz after making `other` the default");
    println!(
        "880 Hz heard {:.1} ms after set-default-sink other",
        (t - switched).as_secs_f64() * 1000.0
    );
    // The 880 Hz player would be moved into novnc_audio with the unload and mix with
    // the 440 Hz one there; it goes first.
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
    );
    let heard = heard.unwrap_or_else(|e| {
        panic!(
            "after unloading the recorded sink: {e}; default {:?}, source outputs:\n{}\ndaemon stderr:\n{}",
            pulse.default_sink(),
            pulse.source_outputs(),
            daemon.stderr_text()
        )
    });
    let ms = (heard - unloading).as_secs_f64() * 1000.0;
    println!("440 Hz heard again {ms:.1} ms after unloading the recorded sink");
    assert!(
        ms < 1000.0,
        "clients heard the new default {ms:.0} ms after the recorded sink was unloaded (limit 1000 ms)"
    );
    assert_eq!(pulse.default_sink().as_deref(), Some(SINK));
    let mut daemon = daemon;
    assert!(daemon.is_running(), "the daemon exited");
    for (i, r) in readers.iter().enumerate() {
        r.assert_alive("after the unload");
        assert_strictly_monotonic(&r.snapshot(), &format!("client {i}"));
    }
    assert!(
        json_u64(&stats(&daemon), "reconnects") == 0,
        "the daemon reconnected instead of following the default"
    );
}

// ---------------------------------------------------------------------------
// 3. Connection churn
// ---------------------------------------------------------------------------

/// One connect / handshake / read one frame / close cycle.
fn churn_once(url: &str, clean: bool) -> Result<(), String> {
    let mut c = WsClient::try_connect(url, &[])?;
    match c.next() {
        Ok(Next::Frame(_)) => {}
        Ok(Next::Close(cf)) => return Err(format!("closed before a frame: {cf:?}")),
        Err(e) => return Err(format!("no frame: {e}")),
    }
    if !clean {
        return Ok(()); // dropping the stream: FIN, or RST with unread data
    }
    c.ws.close(None).map_err(|e| format!("close: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed) => return Ok(()),
            Err(e) => return Err(format!("after close: {e}")),
        }
        if Instant::now() > deadline {
            return Err("no close reply within 3 s".into());
        }
    }
}

/// Runs `total` churn cycles on `threads` threads; returns the failures.
fn churn(url: &str, total: usize, threads: usize) -> Vec<String> {
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = done.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if let Err(e) = churn_once(url, i.is_multiple_of(2)) {
                    failures.lock().unwrap().push(format!("cycle {i}: {e}"));
                }
            });
        }
    });
    failures.into_inner().unwrap()
}

/// Waits until the daemon's fd count is `baseline`; returns the last count seen.
fn settle_fds(pid: u32, baseline: usize) -> usize {
    poll_until(Duration::from_secs(10), || {
        (fd_count(pid) == baseline).then_some(())
    });
    fd_count(pid)
}

#[test]
fn connection_churn_leaks_nothing() {
    let _serial = serial();
    let total = if full() { 10_000 } else { 1000 };
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, Some(SINK), 440.0);
    let pid = daemon.pid();
    let url = daemon.url("/audio");
    let healthy = Reader::start(&url);
    poll_until(Duration::from_secs(5), || {
        (healthy.len() > 10).then_some(())
    })
    .expect("healthy client gets frames");

    let rss_start = rss_kib(pid);
    let fds_start = fd_count(pid);
    // Warm-up so the allocator's arenas hold what a connection needs.
    let mut failures = churn(&url, 100, 3);
    let fds_base = settle_fds(pid, fds_start);
    assert_eq!(
        fds_base, fds_start,
        "open fds after 100 warm-up connections"
    );
    let rss_base = rss_kib(pid);

    let mark = healthy.len();
    let started = Instant::now();
    let cpu_before = cpu_time(pid);
    failures.extend(churn(&url, total, 3));
    let took = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let during = healthy.frames_from(mark);

    let fds_after = settle_fds(pid, fds_base);
    thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(pid);
    let ts_gap = max_ts_gap(&during);
    let arrival_gap = max_arrival_gap(&during);
    for w in during.windows(2) {
        let ag = w[1].received - w[0].received;
        if w[1].ts_ms - w[0].ts_ms > 40 || ag > Duration::from_millis(60) {
            println!(
                "  gap at +{:?}: ts {} -> {} ({} ms), arrival gap {ag:?}",
                w[0].received.saturating_duration_since(started),
                w[0].ts_ms,
                w[1].ts_ms,
                w[1].ts_ms - w[0].ts_ms
            );
        }
    }
    println!(
        "churn: {total} cycles in {took:.1?} ({:.0}/s, daemon CPU {cpu:?}); fds {fds_base} -> {fds_after}; \
         RSS {rss_start} KiB at start, {rss_base} KiB after warm-up, {rss_after} KiB after ({:+} KiB); \
         healthy client: {} frames, max ts gap {ts_gap} ms, max arrival gap {arrival_gap:?}",
        total as f64 / took.as_secs_f64(),
        rss_after as i64 - rss_base as i64,
        during.len()
    );
    healthy.assert_alive("churn");
    assert_eq!(fds_after, fds_base, "open fds before/after churn");
    assert!(
        rss_after.abs_diff(rss_base) <= 2048,
        "RSS {rss_base} KiB -> {rss_after} KiB after {total} connections"
    );
    assert!(
        ts_gap <= 60,
        "healthy client: timestamp gap {ts_gap} ms during churn"
    );
    assert!(
        arrival_gap <= Duration::from_millis(100),
        "healthy client: arrival gap {arrival_gap:?} during churn"
    );
    let json = stats(&daemon);
    assert!(json_u64(&json, "connections_total") >= total as u64 + 101);
    assert_eq!(json_u64(&json, "clients"), 1, "{json}");
    // Checked last so the figures above are checked even while clean closes fail.
    assert!(
        failures.is_empty(),
        "{} of {} churn cycles failed, first: {:?}",
        failures.len(),
        total + 100,
        &failures[..failures.len().min(3)]
    );
}

/// RFC 6455 5.5.1: a Close from the client is answered with a Close before the server
/// closes the TCP connection.
#[test]
fn client_close_is_answered_with_close() {
    let _serial = serial();
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, Some(SINK), 440.0);
    let mut answered = 0;
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let mut c = WsClient::connect(&daemon.url("/audio"));
        c.next_frame();
        c.ws.close(Some(tungstenite::protocol::CloseFrame {
            code: tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "bye".into(),
        }))
        .expect("send close");
        let outcome = loop {
            match c.ws.read() {
                Ok(tungstenite::Message::Close(cf)) => {
                    // The server's reply to our close (RFC 6455 5.5.1).
                    answered += 1;
                    break format!("close frame {cf:?}");
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed) => {
                    answered += 1;
                    break "close reply, then the server closed".to_string();
                }
                Err(e) => break format!("{e}"),
            }
        };
        outcomes.push(outcome);
    }
    assert_eq!(
        answered, 5,
        "clients that sent Close did not get a Close back: {outcomes:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. Stalled readers
// ---------------------------------------------------------------------------

/// A raw client that completes the handshake and then never reads.
fn stalled_client(daemon: &Daemon, query: &str) -> TcpStream {
    let mut s = TcpStream::connect(daemon.addr()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(upgrade_request(&format!("/audio{query}"), "").as_bytes())
        .unwrap();
    let resp = read_response(&mut s).expect("stalled client handshake");
    assert_eq!(resp.status, 101, "{}", resp.head);
    s
}

#[test]
fn stalled_readers_do_not_hurt() {
    let _serial = serial();
    let stall = Duration::from_secs(if full() { 60 } else { 10 });
    let (pulse, daemon) = setup(&["--max-clients", "200"]);
    let _tone = Tone::play(&pulse, Some(SINK), 440.0);
    let pid = daemon.pid();
    let healthy = Reader::start(&daemon.url("/audio"));
    poll_until(Duration::from_secs(5), || {
        (healthy.len() > 10).then_some(())
    })
    .expect("healthy client gets frames");
    let fds_base = fd_count(pid);
    let rss_base = rss_kib(pid);
    let dropped_before = json_u64(&stats(&daemon), "slow_client");

    // PCM (192 kB/s) fills the socket buffers of a client that stops reading in about
    // a second; the stalled clients use it so the daemon really has to drop for them.
    let mark = healthy.len();
    let stalled: Vec<TcpStream> = (0..100)
        .map(|_| stalled_client(&daemon, "?codec=pcm"))
        .collect();
    let began = Instant::now();
    let mut rss_max = rss_kib(pid);
    while began.elapsed() < stall {
        rss_max = rss_max.max(rss_kib(pid));
        thread::sleep(Duration::from_millis(250));
        healthy.assert_alive("while 100 clients are stalled");
    }
    let json = stats(&daemon);
    let dropped_after = json_u64(&json, "slow_client");
    if stall > Duration::from_secs(31) {
        // Past the 30 s stall limit the daemon has dropped every stalled client.
        assert_eq!(json_u64(&json, "clients"), 1, "{json}");
        assert_eq!(
            json_u64(&json, "clients_disconnected_stalled"),
            100,
            "{json}"
        );
    } else {
        assert_eq!(json_u64(&json, "clients"), 101, "{json}");
    }
    let fds_stalled = fd_count(pid);
    let during = healthy.frames_from(mark);
    drop(stalled);

    let fds_after = settle_fds(pid, fds_base);
    thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(pid);
    let ts_gap = max_ts_gap(&during);
    let arrival_gap = max_arrival_gap(&during);
    let fps = arrival_rate(
        &during,
        during[0].received,
        (during.last().unwrap().received - during[0].received).max(Duration::from_secs(1)),
    );
    println!(
        "stalled: 100 clients for {stall:?}; fds {fds_base} -> {fds_stalled} (stalled) -> {fds_after}; \
         RSS {rss_base} KiB -> max {rss_max} KiB -> {rss_after} KiB after; \
         frames dropped for slow clients {dropped_before} -> {dropped_after}; \
         healthy: {} frames, {fps:.1} fps, max ts gap {ts_gap} ms, max arrival gap {arrival_gap:?}",
        during.len()
    );
    assert!(
        ts_gap <= 60,
        "healthy client: timestamp gap {ts_gap} ms next to stalled clients"
    );
    assert!(
        (fps - 50.0).abs() <= 2.0,
        "healthy client: {fps:.1} frames/s next to stalled clients"
    );
    assert!(
        dropped_after > dropped_before,
        "stats frames_dropped.slow_client did not grow ({dropped_before} -> {dropped_after})"
    );
    assert!(
        rss_max <= rss_base + 16 * 1024,
        "RSS grew from {rss_base} KiB to {rss_max} KiB with 100 stalled clients"
    );
    assert_eq!(
        fds_after, fds_base,
        "open fds after the stalled clients left"
    );
    assert!(
        rss_after.abs_diff(rss_base) <= 2048,
        "RSS {rss_base} KiB -> {rss_after} KiB after the stalled clients left"
    );
}

/// A client that never reads anything is disconnected after the 30 s stall limit.
#[test]
fn never_reading_client_is_dropped_after_30s() {
    let _serial = serial();
    if !full() {
        println!("skipped: takes 35 s; run with NOVNC_AUDIO_FULL=1 (scripts/soak.sh)");
        return;
    }
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, Some(SINK), 440.0);
    let healthy = Reader::start(&daemon.url("/audio"));
    let mut s = stalled_client(&daemon, "?codec=pcm");
    let connected = Instant::now();
    let dropped = poll_until(Duration::from_secs(40), || {
        (json_u64(&stats(&daemon), "clients_disconnected_stalled") >= 1).then(Instant::now)
    });
    let json = stats(&daemon);
    let after = dropped.map(|t| t - connected);
    println!("never-reading client disconnected after {after:?}");
    let after = after.unwrap_or_else(|| panic!("not disconnected within 40 s: {json}"));
    assert!(
        after >= Duration::from_secs(29) && after <= Duration::from_secs(36),
        "disconnected after {after:?}, expected about 30 s"
    );
    assert_eq!(json_u64(&json, "clients"), 1, "{json}");
    // The socket drains what the daemon had sent, then ends.
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut buf = vec![0u8; 65536];
    let ended = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    assert!(ended, "the stalled client's connection did not end");
    healthy.assert_alive("after the stalled client was dropped");
}

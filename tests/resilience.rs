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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::scenarios::*;
use common::*;

// ---------------------------------------------------------------------------
// 1. PulseAudio killed and restarted
// ---------------------------------------------------------------------------

/// Kills the test's PulseAudio with SIGKILL and starts a new one on the same socket.
struct Restarter<'a> {
    pulse: &'a PulseServer,
    /// The server we started ourselves (after the first kill).
    current: Option<Child>,
    log: PathBuf,
    /// The 440 Hz player in the daemon's sink.
    tone: Option<Tone>,
}

impl<'a> Restarter<'a> {
    fn new(pulse: &'a PulseServer) -> Restarter<'a> {
        Restarter {
            pulse,
            current: None,
            log: pulse.dir().join("restarted-pulseaudio.log"),
            tone: None,
        }
    }

    /// SIGKILL by pid; returns once the process is dead and the server refuses.
    fn kill(&mut self) {
        let Some(mut child) = self.current.take() else {
            // The harness' server: the harness reaps it when it is dropped.
            self.pulse.kill();
            return;
        };
        child.kill().expect("SIGKILL the restarted pulseaudio");
        child.wait().expect("reap the restarted pulseaudio");
        // A stale pid file would stop the next server (see PulseServer::kill).
        let _ = fs::remove_file(self.pulse.pid_file());
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
            .args(PULSEAUDIO_ARGS)
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

impl AudioServer for Restarter<'_> {
    const NAME: &'static str = "the server";

    fn play(&mut self) {
        self.tone = Some(Tone::play(self.pulse, Some(SINK), 440.0));
    }

    fn restart(&mut self, cycle: usize, daemon: &Daemon) -> Instant {
        self.kill();
        drop(self.tone.take()); // its pacat died with the server
        let accepted = self.start();
        // The daemon must recreate its sink on the new server; then a player.
        let sink = poll_until(Duration::from_secs(5), || {
            self.pulse
                .try_pactl(&["list", "short", "sinks"])
                .ok()
                .filter(|l| l.contains(SINK))
        });
        assert!(
            sink.is_some(),
            "cycle {cycle}: no {SINK} sink 5 s after the restart; daemon stderr:\n{}",
            daemon.stderr_text()
        );
        accepted
    }

    fn state(&self, _: &Daemon) -> String {
        match &self.tone {
            Some(t) => format!("; {}", t.describe()),
            None => "; no player".into(),
        }
    }

    fn check(&self, cycle: usize) {
        let own = self
            .pulse
            .pactl(&["list", "short", "sinks"])
            .lines()
            .filter(|l| l.split('\t').nth(1) == Some(SINK))
            .count();
        assert_eq!(own, 1, "cycle {cycle}: {own} {SINK} sinks");
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
    let (pulse, mut daemon) = setup(&[]);
    let mut restarter = Restarter::new(&pulse);
    restarter.play();
    let readers = two_readers(&daemon);
    let mut listeners = [Listener::new(), Listener::new()];
    restart_cycles(
        &mut restarter,
        &mut daemon,
        &readers,
        &mut listeners,
        cycles,
        "",
    );
    for r in &readers {
        r.assert_alive("end");
    }
    drop(restarter.tone.take());
}

// ---------------------------------------------------------------------------
// 2. The recorded sink is unloaded
// ---------------------------------------------------------------------------

#[test]
fn recorded_sink_unloaded_follows_new_default() {
    let _serial = serial();
    let (pulse, mut daemon) = setup(&[]);
    let readers = two_readers(&daemon);
    let _a = follow_unloaded_sink(&pulse, &mut daemon, &readers, SINK, "", |daemon| {
        format!(
            "; default {:?}, source outputs:\n{}\ndaemon stderr:\n{}",
            pulse.default_sink(),
            pulse.source_outputs(),
            daemon.stderr_text()
        )
    });
    assert_eq!(pulse.default_sink().as_deref(), Some(SINK));
    assert_eq!(
        stats(&daemon).u64("reconnects"),
        0,
        "the daemon reconnected instead of following the default"
    );
}

/// A device swap: the only sink goes and another comes a moment later (PipeWire drops its
/// `auto_null` placeholder when a real sink arrives, and may list none in between). The
/// daemon follows it to the new sink; it neither creates its own sink in the moment there
/// is none nor takes the default from the new one (pipewire_recorded_sink_unloaded failed
/// 1 in 30 runs so).
#[test]
fn a_swapped_sink_is_followed_without_creating_ours() {
    let _serial = serial();
    let pulse = PulseServer::start();
    let card = pulse.load_null_sink("card");
    let daemon = Daemon::start(&pulse, &[]);
    let readers = [Reader::start(&daemon.url("/audio"))];
    let tone = Tone::play(&pulse, None, 440.0);
    wait_heard(
        &readers,
        &mut [Listener::new()],
        440.0,
        Instant::now() - Duration::from_secs(60),
        10,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("440 Hz in `card`: {e}\n{}", daemon.stderr_text()));
    drop(tone);

    let swapping = Instant::now();
    pulse.pactl(&["unload-module", &card.to_string()]);
    pulse.load_null_sink("card2");
    let swap = swapping.elapsed();
    let _tone = Tone::play(&pulse, None, 880.0);
    let heard = wait_heard(
        &readers,
        &mut [Listener::new()],
        880.0,
        swapping,
        10,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|e| panic!("880 Hz in the default sink after the swap: {e}"));
    // Past the daemon's grace (500 ms) for a sink to come.
    thread::sleep(Duration::from_millis(800));
    println!(
        "swap took {:.1} ms; 880 Hz heard {:.1} ms after it began; sinks {:?}, default {:?}",
        ms_since(swapping, swapping + swap),
        ms_since(swapping, heard),
        pulse.sinks(),
        pulse.default_sink()
    );
    assert_eq!(
        (pulse.sinks(), pulse.default_sink()),
        (vec!["card2".to_string()], Some("card2".to_string())),
        "after a swap that listed no sink for {swap:?}: sinks, default; daemon stderr:\n{}",
        daemon.stderr_text()
    );
    assert!(
        stats(&daemon).str("device") == "card2.monitor",
        "{}",
        stats(&daemon)
    );
    // A sink that goes for good is followed by ours, once the grace has passed.
    let card2 = pulse
        .pactl(&["list", "short", "modules"])
        .lines()
        .find(|l| l.contains("sink_name=card2"))
        .and_then(|l| l.split('\t').next().map(str::to_owned))
        .expect("card2's module");
    let unloading = Instant::now();
    pulse.pactl(&["unload-module", &card2]);
    assert!(
        pulse.wait_default_sink(SINK, Duration::from_secs(3)),
        "no {SINK} as the default 3 s after the last sink went; sinks {:?}:\n{}",
        pulse.sinks(),
        daemon.stderr_text()
    );
    println!(
        "{SINK} the default {:.1} ms after the last sink went",
        ms_since(unloading, Instant::now())
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
    let tone = Tone::play(&pulse, Some(SINK), 440.0);
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

    let watch = SkipWatch::start(&daemon, &tone);
    let probe = StallProbe::start();
    let mark = healthy.len();
    let started = Instant::now();
    let cpu_before = cpu_time(pid);
    failures.extend(churn(&url, total, 3));
    let took = started.elapsed();
    let cpu = cpu_time(pid) - cpu_before;
    let during = healthy.frames_from(mark);
    let skipped = watch.skipped();

    let fds_after = settle_fds(pid, fds_base);
    thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(pid);
    let ts_gap = max_ts_gap_skipping(&during, 20, skipped);
    let arrival_gap = max_arrival_gap(&during);
    let arrival_gap_daemon = max_arrival_gap_unexplained(&during, &probe);
    for w in during.windows(2) {
        let ag = w[1].received - w[0].received;
        if w[1].ts_ms - w[0].ts_ms > 40 || ag > Duration::from_millis(60) {
            println!(
                "  gap at +{:?}: ts {} -> {} ({} ms), arrival gap {ag:?}, the test process \
                 itself stalled {:?} of it",
                w[0].received.saturating_duration_since(started),
                w[0].ts_ms,
                w[1].ts_ms,
                w[1].ts_ms - w[0].ts_ms,
                probe.stalled_within(w[0].received, w[1].received)
            );
        }
    }
    println!(
        "churn: {total} cycles in {took:.1?} ({:.0}/s, daemon CPU {cpu:?}); fds {fds_base} -> {fds_after}; \
         RSS {rss_start} KiB at start, {rss_base} KiB after warm-up, {rss_after} KiB after ({:+} KiB); \
         healthy client: {} frames, max ts gap {ts_gap} ms, max arrival gap {arrival_gap:?} \
         ({arrival_gap_daemon:?} not explained by a stall of the test process, whose worst \
         was {:?}); {skipped:?}",
        total as f64 / took.as_secs_f64(),
        rss_after as i64 - rss_base as i64,
        during.len(),
        probe.worst()
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
    // A gap while this test process itself did not run (CI loaded, a busy loop next to
    // it: 102.6 ms once) is the machine's; what is left is the daemon's.
    assert!(
        arrival_gap_daemon <= Duration::from_millis(100),
        "healthy client: arrival gap {arrival_gap:?} during churn, {arrival_gap_daemon:?} of \
         it while the test process ran"
    );
    let json = stats(&daemon);
    assert!(
        json.u64("connections_total") >= total as u64 + 101,
        "connections_total after {} connections: {json}",
        total + 101
    );
    assert_eq!(json.u64("clients"), 1, "{json}");
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
    let tone = Tone::play(&pulse, Some(SINK), 440.0);
    let pid = daemon.pid();
    let healthy = Reader::start(&daemon.url("/audio"));
    poll_until(Duration::from_secs(5), || {
        (healthy.len() > 10).then_some(())
    })
    .expect("healthy client gets frames");
    let fds_base = fd_count(pid);
    let rss_base = rss_kib(pid);
    let dropped_before = stats(&daemon).u64("frames_dropped.slow_client");

    // PCM (192 kB/s) fills the socket buffers of a client that stops reading in about
    // a second; the stalled clients use it so the daemon really has to drop for them.
    let watch = SkipWatch::start(&daemon, &tone);
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
    let dropped_after = json.u64("frames_dropped.slow_client");
    if stall > Duration::from_secs(31) {
        // Past the 30 s stall limit the daemon has dropped every stalled client.
        assert_eq!(json.u64("clients"), 1, "{json}");
        assert_eq!(json.u64("clients_disconnected_stalled"), 100, "{json}");
    } else {
        assert_eq!(json.u64("clients"), 101, "{json}");
    }
    let fds_stalled = fd_count(pid);
    let during = healthy.frames_from(mark);
    let skipped = watch.skipped();
    drop(stalled);

    let fds_after = settle_fds(pid, fds_base);
    thread::sleep(Duration::from_millis(300));
    let rss_after = rss_kib(pid);
    let ts_gap = max_ts_gap_skipping(&during, 20, skipped);
    let arrival_gap = max_arrival_gap(&during);
    let span = (during.last().unwrap().received - during[0].received).max(Duration::from_secs(1));
    // Silence skipped because the player underran counts as frames sent.
    let fps = arrival_rate(&during, during[0].received, span)
        + skipped.explained(&during, 20) as f64 / span.as_secs_f64();
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
    if !full() {
        // A soak test: not even CI runs it, scripts/soak.sh does.
        say_skipped("takes 35 s; runs with NOVNC_AUDIO_FULL=1 (scripts/soak.sh)");
        return;
    }
    let _serial = serial();
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, Some(SINK), 440.0);
    let healthy = Reader::start(&daemon.url("/audio"));
    let mut s = stalled_client(&daemon, "?codec=pcm");
    let connected = Instant::now();
    let dropped = poll_until(Duration::from_secs(40), || {
        (stats(&daemon).u64("clients_disconnected_stalled") >= 1).then(Instant::now)
    });
    let json = stats(&daemon);
    let after = dropped.map(|t| t - connected);
    println!("never-reading client disconnected after {after:?}");
    let after = after.unwrap_or_else(|| panic!("not disconnected within 40 s: {json}"));
    assert!(
        after >= Duration::from_secs(29) && after <= Duration::from_secs(36),
        "disconnected after {after:?}, expected about 30 s"
    );
    assert_eq!(json.u64("clients"), 1, "{json}");
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

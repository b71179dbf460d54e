//! Streaming behaviour of the daemon against a private PulseAudio.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;

/// Arrival-rate window: starts 0.5 s after the first frame.
fn window_rate(frames: &[Frame], secs: f64) -> f64 {
    arrival_rate(
        frames,
        frames[0].received + Duration::from_millis(500),
        Duration::from_secs_f64(secs),
    )
}

#[test]
fn creates_one_null_sink_and_makes_it_default() {
    let pulse = PulseServer::start();
    assert_eq!(pulse.sinks(), Vec::<String>::new());
    let mut daemon = Daemon::start(&pulse, &[]);
    let ok = poll_until(Duration::from_secs(5), || {
        (pulse.sinks() == [SINK] && pulse.default_sink().as_deref() == Some(SINK)).then_some(())
    });
    assert!(
        ok.is_some(),
        "expected exactly one sink {SINK}, the default; got sinks {:?}, default {:?}",
        pulse.sinks(),
        pulse.default_sink()
    );
    // It must stay exactly one (no duplicate created later).
    thread::sleep(Duration::from_millis(700));
    assert_eq!(pulse.sinks(), [SINK]);
    assert_eq!(
        pulse.sink_description(SINK).as_deref(),
        Some("noVNC audio"),
        "what desktops show for our sink"
    );
    let st = daemon.stop();
    assert_eq!(st.code(), Some(0), "SIGTERM exit status: {st}");
    drop(daemon);

    let mut again = Daemon::start(&pulse, &[]);
    let ok = poll_until(Duration::from_secs(5), || {
        (pulse.sinks() == [SINK] && pulse.default_sink().as_deref() == Some(SINK)).then_some(())
    });
    assert!(
        ok.is_some(),
        "after a restart: sinks {:?}, default {:?}",
        pulse.sinks(),
        pulse.default_sink()
    );
    thread::sleep(Duration::from_millis(700));
    assert_eq!(pulse.sinks(), [SINK], "restart must not pile up null sinks");
    let st = again.stop();
    assert_eq!(st.code(), Some(0), "second SIGTERM exit status: {st}");
}

#[test]
fn opus_stream_to_three_clients() {
    let (pulse, daemon) = setup(&[]);
    let tone = Tone::play(&pulse, None, 440.0);
    let watch = SkipWatch::start(&daemon, &tone);
    let url = daemon.url("/audio");
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            thread::spawn(move || {
                let mut c = WsClient::connect(&url);
                let mut frames = vec![c.next_frame()];
                frames.extend(c.collect_for(Duration::from_millis(3600)));
                frames
            })
        })
        .collect();
    let clients: Vec<Vec<Frame>> = handles
        .into_iter()
        .map(|h| h.join().expect("client thread"))
        .collect();
    let skipped = watch.skipped();
    for (i, frames) in clients.into_iter().enumerate() {
        let codecs = histogram(frames.iter().map(|f| f.codec));
        assert_eq!(codecs, [(1u8, frames.len())], "client {i}: codec bytes");
        check_timestamps_skipping(&frames, 20, 10, skipped)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        let steady: Vec<Frame> = frames
            .iter()
            .filter(|f| f.received >= frames[0].received + Duration::from_millis(500))
            .cloned()
            .collect();
        // Silence skipped because the player underran counts as frames sent.
        let not_sent = skipped.explained(&steady, 20) as f64;
        let by_arrival = window_rate(&frames, 3.0) + not_sent / 3.0;
        let sent = (steady.len() - 1) as f64;
        let by_ts = timestamp_rate(&steady) * (sent + not_sent) / sent;
        println!(
            "client {i}: {} frames, {by_arrival:.2} fps by arrival, {by_ts:.2} fps by timestamps",
            frames.len()
        );
        assert!(
            (by_arrival - 50.0).abs() <= 1.0,
            "client {i}: {by_arrival:.2} frames/s by arrival, expected 50 ± 1"
        );
        assert!(
            (by_ts - 50.0).abs() <= 1.0,
            "client {i}: {by_ts:.2} frames/s by timestamps, expected 50 ± 1"
        );
        for f in &frames {
            assert_eq!(
                opus_packet_samples(&f.payload),
                960,
                "client {i}: 20 ms packets"
            );
        }
        assert_tone(&decode_tail(&frames, 2, 1.0), 440.0, &format!("client {i}"));
    }
}

#[test]
fn pcm_codec_frames() {
    let (pulse, daemon) = setup(&["--codec", "pcm"]);
    let tone = Tone::play(&pulse, None, 440.0);
    let watch = SkipWatch::start(&daemon, &tone);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    let frames = c.collect_for(Duration::from_millis(2000));
    assert!(frames.len() >= 80, "only {} frames in 2 s", frames.len());
    for f in &frames {
        assert_eq!(f.codec, 0x00, "PCM codec byte");
        assert_eq!(f.payload.len(), 3840, "20 ms of s16le stereo 48 kHz");
    }
    check_timestamps_skipping(&frames, 20, 10, watch.skipped()).unwrap();
    let pcm: Vec<i16> = frames
        .iter()
        .flat_map(|f| pcm_samples(&f.payload))
        .collect();
    assert_tone(&tail_mono(&pcm, 2, 1.0), 440.0, "pcm");
}

#[test]
fn per_client_pcm_by_query() {
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, None, 440.0);
    let mut pcm_client = WsClient::connect(&daemon.url("/audio?codec=pcm"));
    let mut opus_client = WsClient::connect(&daemon.url("/audio"));
    let pcm_frames = pcm_client.collect_for(Duration::from_millis(1500));
    let opus_frames = opus_client.collect_for(Duration::from_millis(300));
    assert!(pcm_frames.len() > 50);
    for f in &pcm_frames {
        assert_eq!(f.codec, 0x00, "?codec=pcm client gets PCM");
        assert_eq!(f.payload.len(), 3840);
    }
    for f in &opus_frames {
        assert_eq!(f.codec, 0x01, "the plain client still gets Opus");
    }
    let pcm: Vec<i16> = pcm_frames
        .iter()
        .flat_map(|f| pcm_samples(&f.payload))
        .collect();
    assert_tone(&tail_mono(&pcm, 2, 0.5), 440.0, "?codec=pcm");
}

#[test]
fn mono_opus() {
    let (pulse, daemon) = setup(&["-c", "1"]);
    let tone = Tone::play(&pulse, None, 440.0);
    let watch = SkipWatch::start(&daemon, &tone);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    let frames = c.collect_for(Duration::from_millis(2500));
    assert!(frames.len() >= 100, "only {} frames in 2.5 s", frames.len());
    for f in &frames {
        assert_eq!(f.codec, 0x01);
        assert!(
            !opus_packet_is_stereo(&f.payload),
            "-c 1 must produce mono Opus packets (TOC 0x{:02x})",
            f.payload[0]
        );
        assert_eq!(opus_packet_samples(&f.payload), 960);
    }
    check_timestamps_skipping(&frames, 20, 10, watch.skipped()).unwrap();
    assert_tone(&decode_tail(&frames, 1, 1.0), 440.0, "mono");
}

#[test]
fn ten_ms_frames() {
    let (pulse, daemon) = setup(&["--frame-ms", "10"]);
    let tone = Tone::play(&pulse, None, 440.0);
    let watch = SkipWatch::start(&daemon, &tone);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    let mut frames = vec![c.next_frame()];
    frames.extend(c.collect_for(Duration::from_millis(3000)));
    for f in &frames {
        assert_eq!(f.codec, 0x01);
        assert_eq!(opus_packet_samples(&f.payload), 480, "10 ms packets");
    }
    let skipped = watch.skipped();
    check_timestamps_skipping(&frames, 10, 20, skipped).unwrap();
    // Silence skipped because the player underran counts as frames sent.
    let fps = window_rate(&frames, 2.4) + skipped.explained(&frames, 10) as f64 / 2.4;
    println!("--frame-ms 10: {fps:.2} frames/s");
    assert!(
        (fps - 100.0).abs() <= 2.0,
        "{fps:.2} frames/s by arrival, expected 100 ± 2"
    );
    assert_tone(&decode_tail(&frames, 2, 1.0), 440.0, "10 ms frames");
}

/// Reads frames on a thread and hands them over a channel.
fn spawn_reader(
    mut c: WsClient,
) -> (
    mpsc::Receiver<Frame>,
    Arc<AtomicBool>,
    thread::JoinHandle<()>,
) {
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let h = thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            match c.next() {
                Ok(Next::Frame(f)) => {
                    if tx.send(f).is_err() {
                        break;
                    }
                }
                _ => break,
            }
        }
    });
    (rx, stop, h)
}

/// Read whatever arrives on `s` during `dur`; returns the byte count.
fn drain_for(s: &mut std::net::TcpStream, dur: Duration) -> usize {
    let until = Instant::now() + dur;
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    while Instant::now() < until {
        match std::io::Read::read(s, &mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    total
}

fn daemon_alive(d: &Daemon) -> bool {
    std::net::TcpStream::connect(d.addr()).is_ok()
}

#[test]
fn follows_default_sink_change() {
    let (pulse, daemon) = setup(&["--log-level", "debug"]);
    // PulseAudio carries a stream along to the new default sink when the
    // default changes, unless the stream was explicitly moved to its sink
    // (while that sink was not the default). So each tone starts elsewhere and
    // is moved: 440 Hz onto `first`, 880 Hz onto `other`; then `first` becomes
    // the default, and the measured switch is `first` -> `other`.
    pulse.load_null_sink("first");
    pulse.load_null_sink("other");
    let a = Tone::play(&pulse, Some("other"), 440.0);
    a.move_to(&pulse, "first");
    let b = Tone::play(&pulse, Some("first"), 880.0);
    b.move_to(&pulse, "other");
    pulse.pactl(&["set-default-sink", "first"]);
    assert_eq!(pulse.default_sink().as_deref(), Some("first"));
    // Give the daemon time to follow this first change before measuring the next.
    thread::sleep(Duration::from_millis(500));

    let c = WsClient::connect(&daemon.url("/audio"));
    let (rx, stop, reader) = spawn_reader(c);
    let mut dec = OpusDecoder::new(2);
    let mut last_ts = None;
    let mut take = |f: &Frame| -> Vec<f32> {
        if let Some(prev) = last_ts {
            assert!(f.ts_ms > prev, "timestamp went from {prev} to {}", f.ts_ms);
        }
        last_ts = Some(f.ts_ms);
        to_mono(&dec.decode(&f.payload), 2)
    };

    // Precondition: the stream carries `first`'s 440 Hz, steadily for 0.5 s.
    // (A stream moved onto a null sink can sit behind the sink's ~2 s default
    // latency until a low-latency reader arrives, so allow up to 5 s.)
    let start = Instant::now();
    let mut before = Vec::new();
    let mut steady = 0;
    while steady < 25 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the stream did not carry first's 440 Hz within 5 s"
        );
        let f = rx.recv_timeout(Duration::from_secs(3)).expect("frame");
        let mono = take(&f);
        steady = if is_tone_frame(&mono, 440.0) {
            steady + 1
        } else {
            0
        };
        before.extend(mono);
    }
    println!(
        "440 Hz steady on `first` {:?} after connecting",
        start.elapsed()
    );
    assert_tone(&before[before.len() - 24000..], 440.0, "before the switch");

    let t0 = Instant::now();
    pulse.pactl(&["set-default-sink", "other"]);
    let t_switch = Instant::now();

    let mut first_880: Option<Instant> = None;
    let mut after = Vec::new();
    let until = t_switch + Duration::from_millis(2000);
    while Instant::now() < until {
        let f = rx
            .recv_timeout(Duration::from_secs(3))
            .expect("frame after the switch");
        let mono = take(&f);
        if first_880.is_none() && is_tone_frame(&mono, 880.0) {
            first_880 = Some(f.received);
        }
        after.extend(mono);
    }
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = reader.join();

    let first = first_880.expect("no 880 Hz frame within 2 s of set-default-sink");
    let delay = first.saturating_duration_since(t_switch);
    println!(
        "default sink switch: pactl took {:?}; first 880 Hz frame {:?} after it returned",
        t_switch - t0,
        delay
    );
    assert!(
        delay < Duration::from_millis(200),
        "first 880 Hz frame arrived {delay:?} after set-default-sink returned (limit 200 ms)"
    );
    let timeline: Vec<String> = after
        .chunks(4800)
        .map(|c| format!("{:.0}", dominant_frequency(c, 48000)))
        .collect();
    println!("after the switch, dominant frequency per 100 ms: {timeline:?}");
    assert_tone(&after[after.len() - 24000..], 880.0, "after the switch");
    // The harness must not have mixed the tones (see above).
    assert_eq!(a.sink_name(&pulse), "first", "the 440 Hz tone moved");
    assert_eq!(b.sink_name(&pulse), "other", "the 880 Hz tone moved");
}

/// Connect, then read until the first frame that carries the tone; returns
/// (delay to the first frame, delay to the first frame with the tone).
fn connect_and_time(url: &str) -> (Duration, Duration) {
    let mut c = WsClient::connect(url);
    let mut dec = OpusDecoder::new(2);
    let first = c.next_frame();
    let mut f = first.clone();
    loop {
        let mono = to_mono(&dec.decode(&f.payload), 2);
        if rms(&mono) > 0.1 && (dominant_frequency(&mono, 48000) - 440.0).abs() <= 30.0 {
            break;
        }
        assert!(
            f.received - c.started < Duration::from_secs(5),
            "no 440 Hz frame within 5 s of connecting"
        );
        f = c.next_frame();
    }
    (first.received - c.started, f.received - c.started)
}

#[test]
fn first_frame_delay() {
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, None, 440.0);
    let url = daemon.url("/audio");
    // The very first client (the capture starts for it).
    let (frame, audible) = connect_and_time(&url);
    println!(
        "first client ever: first frame after {frame:?}, first 440 Hz frame after {audible:?}"
    );
    thread::sleep(Duration::from_millis(500));
    let mut worst = (Duration::ZERO, Duration::ZERO);
    for i in 0..3 {
        let (frame, audible) = connect_and_time(&url);
        println!("client #{i} (nobody else connected): first frame after {frame:?}, first 440 Hz frame after {audible:?}");
        worst = (worst.0.max(frame), worst.1.max(audible));
        thread::sleep(Duration::from_millis(300));
    }
    // With another client already listening.
    let _other = WsClient::connect(&url);
    let (frame, audible) = connect_and_time(&url);
    println!("client next to a listener: first frame after {frame:?}, first 440 Hz frame after {audible:?}");
    worst = (worst.0.max(frame), worst.1.max(audible));
    drop(_other);
    // After the default sink changed while nobody was listening.
    pulse.load_null_sink("first");
    let tone2 = Tone::play(&pulse, Some("first"), 440.0);
    drop(_tone);
    thread::sleep(Duration::from_millis(300));
    pulse.pactl(&["set-default-sink", "first"]);
    thread::sleep(Duration::from_millis(500));
    let (frame, audible) = connect_and_time(&url);
    println!(
        "client after an idle default-sink change: first frame after {frame:?}, \
         first 440 Hz frame after {audible:?}"
    );
    worst = (worst.0.max(frame), worst.1.max(audible));
    drop(tone2);
    println!(
        "first frame delay: worst {:?}; first audible frame: worst {:?} (target 100 ms)",
        worst.0, worst.1
    );
    assert!(
        worst.0 < Duration::from_secs(1),
        "first frame took {:?}",
        worst.0
    );
    assert!(
        worst.1 < Duration::from_secs(1),
        "first frame with the playing tone took {:?}",
        worst.1
    );
}

#[test]
fn slow_client_does_not_delay_others() {
    // PCM makes ~192 KB/s per client, so a client that never reads fills its
    // socket buffers within a second or two.
    let (pulse, daemon) = setup(&["--codec", "pcm"]);
    let tone = Tone::play(&pulse, None, 440.0);
    let mut slow = Vec::new();
    for _ in 0..2 {
        let mut s = std::net::TcpStream::connect(daemon.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        std::io::Write::write_all(&mut s, upgrade_request("/audio", "").as_bytes()).unwrap();
        let resp = read_response(&mut s).expect("slow client handshake");
        assert_eq!(resp.status, 101, "{}", resp.head);
        slow.push(s); // not read again until the end
    }
    let slow_since = Instant::now();
    thread::sleep(Duration::from_millis(1000));

    let watch = SkipWatch::start(&daemon, &tone);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    let mut frames = vec![c.next_frame()];
    frames.extend(c.collect_for(Duration::from_millis(4000)));
    let skipped = watch.skipped();
    // Silence skipped because the player underran counts as frames sent.
    let fps = arrival_rate(
        &frames,
        frames[0].received + Duration::from_millis(300),
        Duration::from_millis(3500),
    ) + skipped.explained(&frames, 20) as f64 / 3.5;
    let gap = max_ts_gap_skipping(&frames, 20, skipped);
    let arrival_gap = max_arrival_gap(&frames);
    println!(
        "healthy client next to slow ones: {fps:.2} fps, max ts gap {gap} ms, max arrival gap {arrival_gap:?}"
    );
    assert!(
        (fps - 50.0).abs() <= 2.0,
        "{fps:.2} frames/s next to a stalled client, expected 50 ± 2"
    );
    assert!(
        gap <= 60,
        "timestamp gap of {gap} ms next to a stalled client"
    );
    for f in &frames {
        assert_eq!(f.payload.len(), 3840);
    }
    // Make sure the scenario was real: the stalled clients hold far less than
    // the ~192 KB/s the daemon produced since they connected, so the daemon
    // did have to stop writing to them (their socket buffers were full).
    let produced = slow_since.elapsed().as_secs_f64() * 192_000.0;
    for (i, s) in slow.iter_mut().enumerate() {
        let held = drain_for(s, Duration::from_millis(300));
        println!(
            "stalled client {i}: {held} bytes readable after {:.0} KB produced",
            produced / 1000.0
        );
        assert!(
            (held as f64) < produced * 0.8,
            "stalled client {i} received {held} of {produced:.0} bytes: it never stalled, \
             so this test proved nothing"
        );
    }
    assert!(daemon_alive(&daemon), "daemon died");
    drop(slow);
}

#[test]
fn sigterm_closes_clients_with_1001() {
    let (pulse, mut daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, None, 440.0);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    for _ in 0..5 {
        c.next_frame();
    }
    daemon.signal("TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    let close = loop {
        assert!(
            Instant::now() < deadline,
            "no Close frame within 5 s of SIGTERM"
        );
        match c.next() {
            Ok(Next::Frame(_)) => continue,
            Ok(Next::Close(cf)) => break cf,
            Err(e) => panic!("connection ended without a Close frame: {e}"),
        }
    };
    let cf = close.expect("Close frame without a status code");
    assert_eq!(cf.code, CloseCode::Away, "close code (want 1001)");
    let st = daemon
        .wait_exit(Duration::from_secs(5))
        .expect("daemon still running 5 s after SIGTERM");
    assert_eq!(st.code(), Some(0), "exit status after SIGTERM: {st}");
}

/// The harness itself, without the daemon: a private server, a null sink, a
/// tone, recorded back with parec, is detected as the right frequency.
#[test]
fn harness_self_check() {
    let pulse = PulseServer::start();
    assert!(pulse.sinks().is_empty());
    pulse.load_null_sink("probe");
    assert_eq!(pulse.sinks(), ["probe"]);
    let _tone = Tone::play(&pulse, Some("probe"), 660.0);
    let mut rec = pulse
        .command("parec")
        .args([
            "--format=s16le",
            "--rate=48000",
            "--channels=2",
            "--device=probe.monitor",
            "--latency-msec=20",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn parec");
    let mut out = rec.stdout.take().unwrap();
    // parec writes in bursts: read until one second of audio has arrived.
    let want = 48000 * 4;
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut got = Vec::new();
        while got.len() < want {
            match std::io::Read::read(&mut out, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let deadline = Instant::now() + Duration::from_secs(8);
    while !reader.is_finished() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    rec.kill().unwrap();
    rec.wait().unwrap();
    let bytes = reader.join().unwrap();
    let pcm = pcm_samples(&bytes);
    assert!(
        pcm.len() >= 48000 * 2,
        "parec recorded only {} samples",
        pcm.len()
    );
    assert_tone(&tail_mono(&pcm, 2, 0.5), 660.0, "parec of the harness tone");
}

/// Reads `c` until a text message arrives or `dur` passes; counts the audio frames meanwhile.
fn next_text(c: &mut WsClient, dur: Duration) -> (Option<String>, usize) {
    let (mut text, mut frames) = (None, 0);
    read_for(&mut c.ws, dur, |m| match m {
        tungstenite::Message::Text(t) => {
            text = Some(t.to_string());
            false
        }
        tungstenite::Message::Binary(_) => {
            frames += 1;
            true
        }
        _ => true,
    });
    (text, frames)
}

fn send_text(c: &mut WsClient, text: &str) {
    c.ws.send(tungstenite::Message::Text(text.into()))
        .expect("sending a text message");
}

/// The module times round trips with the playout report's `echo` (src/playout.rs): the
/// sender alone gets it back, once per accepted report; a refused report (too soon, an echo
/// out of range) and a report without one get nothing, and the audio never stops.
#[test]
fn playout_report_echo_answers_only_its_sender() {
    let (pulse, daemon) = setup(&[]);
    let _tone = Tone::play(&pulse, None, 440.0);
    let url = daemon.url("/audio");
    let mut a = WsClient::connect(&url);
    let mut b = WsClient::connect(&url);
    a.next_frame();
    b.next_frame();
    let report = |echo: &str| format!(r#"{{"type":"playout","latencyMs":40{echo}}}"#);

    send_text(&mut a, &report(r#","echo":1234.5"#));
    let sent = Instant::now();
    let (text, _) = next_text(&mut a, Duration::from_secs(3));
    assert_eq!(
        text.as_deref(),
        Some(r#"{"type":"echo","echo":1234.5}"#),
        "the echo of an accepted report"
    );
    // Within the report's 1 s bound: refused, so no echo.
    send_text(&mut a, &report(r#","echo":99"#));
    let (text, frames) = next_text(&mut a, Duration::from_millis(600));
    assert_eq!(text, None, "a report sent too soon is not echoed");
    assert!(
        frames >= 10,
        "audio kept flowing: {frames} frames in 600 ms"
    );
    // Out of range: refused.
    thread::sleep(Duration::from_millis(1100).saturating_sub(sent.elapsed()));
    send_text(&mut a, &report(r#","echo":-5"#));
    let (text, _) = next_text(&mut a, Duration::from_millis(600));
    assert_eq!(text, None, "a negative echo is refused, not echoed");
    // No echo asked for: nothing but audio.
    thread::sleep(Duration::from_millis(600));
    send_text(&mut a, &report(""));
    let (text, frames) = next_text(&mut a, Duration::from_millis(600));
    assert_eq!(text, None, "a report without echo gets no text message");
    assert!(
        frames >= 10,
        "audio kept flowing: {frames} frames in 600 ms"
    );
    // The other client read nothing but audio all along.
    let (text, frames) = next_text(&mut b, Duration::from_millis(1000));
    assert_eq!(text, None, "only the sender gets its echo");
    assert!(frames >= 100, "client b kept streaming: {frames} frames");
    let s = stats(&daemon);
    assert_eq!(s.u64("playout.reports"), 2, "two reports taken: {s}");
    assert_eq!(s.u64("playout.rejected.too_soon"), 1, "{s}");
    assert_eq!(s.u64("playout.rejected.invalid"), 1, "{s}");
}

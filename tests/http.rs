//! HTTP side of the daemon: raw requests on the stream port. Bad requests with a
//! precise answer (404, 426, 431, ...) and the access controls (--max-clients,
//! --token-file, --allow-origin) are tested in tests/hostile.rs, next to a client
//! that keeps streaming.

mod common;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;

#[test]
fn garbage_requests_do_not_disturb_streaming() {
    let (pulse, daemon) = setup(&[]);
    // Something plays: nothing is sent while nothing does.
    let tone = Tone::play(&pulse, None, 440.0);
    let watch = SkipWatch::start(&daemon, &tone);
    let mut c = WsClient::connect(&daemon.url("/audio"));
    let reader = thread::spawn(move || {
        let mut frames = vec![c.next_frame()];
        frames.extend(c.collect_for(Duration::from_millis(3000)));
        frames
    });
    thread::sleep(Duration::from_millis(300));

    let garbage: &[&[u8]] = &[
        b"\x00\x01\x02garbage\xff\xfe\r\n\r\n",
        b"NOT HTTP AT ALL\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /audio HTTP/1.1\r\nthis is not a header\r\n\r\n",
    ];
    for g in garbage {
        match raw_request(daemon.addr(), g) {
            Ok(resp) => assert_eq!(
                resp.status,
                400,
                "garbage {:?} got {}",
                String::from_utf8_lossy(g),
                resp.head
            ),
            Err(e) => {
                assert!(
                    e.starts_with("closed"),
                    "garbage {:?}: neither 400 nor closed: {e}",
                    String::from_utf8_lossy(g)
                );
                println!("garbage {:?}: {e}", String::from_utf8_lossy(g));
            }
        }
    }
    // A TLS ClientHello-like start, then EOF.
    let mut s = TcpStream::connect(daemon.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    match read_response(&mut s) {
        Ok(resp) => assert_eq!(resp.status, 400, "TLS hello got {}", resp.head),
        Err(e) => {
            assert!(
                e.starts_with("closed"),
                "TLS hello: neither 400 nor closed: {e}"
            );
            println!("TLS hello: {e}");
        }
    }
    // A connection that sends nothing and goes away.
    drop(TcpStream::connect(daemon.addr()).unwrap());

    let frames = reader.join().expect("healthy client kept receiving");
    let skipped = watch.skipped();
    check_timestamps_skipping(&frames, 20, 10, skipped).unwrap();
    // Silence skipped because the player underran counts as frames sent.
    let fps = arrival_rate(
        &frames,
        frames[0].received + Duration::from_millis(500),
        Duration::from_millis(2400),
    ) + skipped.explained(&frames, 20) as f64 / 2.4;
    println!("healthy client during garbage: {fps:.2} fps");
    assert!((fps - 50.0).abs() <= 2.0, "{fps:.2} frames/s");
    assert!(daemon.stderr_text().lines().count() < 200, "log flood");
}

#[test]
fn subprotocol_first_offer_is_echoed() {
    let (_pulse, daemon) = setup(&[]);
    let resp = expect_status(
        &daemon,
        "upgrade offering binary, foo",
        upgrade_request("/audio", "Sec-WebSocket-Protocol: binary, foo\r\n"),
        101,
    );
    assert_eq!(
        resp.header("sec-websocket-protocol").as_deref(),
        Some("binary"),
        "{}",
        resp.head
    );
    assert_eq!(
        resp.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{}",
        resp.head
    );
    // Without an offer, no protocol header is sent back.
    let resp = expect_status(&daemon, "upgrade", upgrade_request("/audio", ""), 101);
    assert_eq!(resp.header("sec-websocket-protocol"), None, "{}", resp.head);
}

#[test]
fn stats_and_metrics() {
    let (_pulse, daemon) = setup(&[]);
    let _client = WsClient::connect(&daemon.url("/audio"));
    let resp = expect_status(&daemon, "GET /stats", get("/stats", ""), 200);
    let stats = Stats::parse(&resp.body_text());
    assert_eq!(stats.u64("clients"), 1, "/stats with one client: {stats}");
    let resp = expect_status(&daemon, "GET /metrics", get("/metrics", ""), 200);
    assert!(!resp.body.is_empty(), "/metrics body is empty");
}

#[test]
fn no_stats_and_no_web() {
    let (_pulse, daemon) = setup(&[]);
    let page = expect_status(&daemon, "GET /", get("/", ""), 200);
    assert!(
        page.body_text().to_lowercase().contains("html"),
        "GET / is the page"
    );
    expect_status(
        &daemon,
        "GET /novnc-audio.js",
        get("/novnc-audio.js", ""),
        200,
    );
    drop(daemon);
    drop(_pulse);

    let (_pulse, daemon) = setup(&["--no-stats", "--no-web"]);
    expect_status(&daemon, "GET /stats", get("/stats", ""), 404);
    expect_status(&daemon, "GET /metrics", get("/metrics", ""), 404);
    expect_status(&daemon, "GET /", get("/", ""), 404);
    expect_status(
        &daemon,
        "GET /novnc-audio.js",
        get("/novnc-audio.js", ""),
        404,
    );
}

#[test]
fn custom_path() {
    let (_pulse, daemon) = setup(&["--path", "/x"]);
    expect_status(&daemon, "upgrade on /x", upgrade_request("/x", ""), 101);
    expect_status(
        &daemon,
        "upgrade on /audio with --path /x",
        upgrade_request("/audio", ""),
        404,
    );
}

/// `--novnc-dir`: a copy of noVNC's page comes out with the sound module and websockify's
/// port added, its other files as they are, nothing outside the directory, and the module
/// the page names is served beside it.
#[test]
fn novnc_dir_serves_novnc_with_sound() {
    let dir = std::env::temp_dir().join(format!("novnc-dir-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("app")).unwrap();
    std::fs::write(
        dir.join("vnc.html"),
        "<!DOCTYPE html><html><head><title>noVNC</title></head><body><div id=\"noVNC_control_bar\"></div></body></html>",
    )
    .unwrap();
    std::fs::write(dir.join("app/ui.js"), "export default 1;\n").unwrap();
    let dir_arg = dir.display().to_string();
    let (_pulse, daemon) = setup(&["--novnc-dir", &dir_arg, "--websockify-port", "5999"]);

    let page = exchange(daemon.addr(), get("/novnc/vnc.html", "").as_bytes()).unwrap();
    assert_eq!(page.status, 200, "{}", page.head);
    let html = String::from_utf8(page.body).unwrap();
    assert!(html.contains("searchParams.set('port', '5999')"), "{html}");
    assert!(
        html.contains(r#"<script type="module" src="../novnc-ui.js" data-audio-url="../audio">"#),
        "{html}"
    );
    assert!(html.ends_with("</body></html>"), "{html}");

    let js = exchange(daemon.addr(), get("/novnc/app/ui.js", "").as_bytes()).unwrap();
    assert_eq!(js.status, 200);
    assert_eq!(js.body, b"export default 1;\n");
    assert!(js
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));

    // What the injected tag loads resolves to our own module.
    let ui = exchange(daemon.addr(), get("/novnc-ui.js", "").as_bytes()).unwrap();
    assert_eq!(
        ui.status, 200,
        "the page's module /novnc-ui.js: {}",
        ui.head
    );

    for bad in [
        "/novnc/../Cargo.toml",
        "/novnc/app/../../x",
        "/novnc/.hidden",
        "/novnc/none.js",
    ] {
        let r = exchange(daemon.addr(), get(bad, "").as_bytes()).unwrap();
        assert_eq!(r.status, 404, "{bad}: {}", r.head);
    }
    let r = exchange(daemon.addr(), get("/novnc/", "").as_bytes()).unwrap();
    assert_eq!(
        (r.status, r.header("location")),
        (302, Some("vnc.html".into()))
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

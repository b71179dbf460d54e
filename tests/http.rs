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
    let (_pulse, daemon) = setup(&[]);
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
    check_timestamps(&frames, 20, 10).unwrap();
    let fps = arrival_rate(
        &frames,
        frames[0].received + Duration::from_millis(500),
        Duration::from_millis(2400),
    );
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

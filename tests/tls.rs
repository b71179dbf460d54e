//! wss:// served directly with --tls-cert/--tls-key: a self-signed certificate made by
//! the test, a rustls client that trusts exactly it, a 440 Hz tone through the stream and a
//! 660 Hz voice into the microphone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// A throw-away CA and a localhost certificate it signed: returns (CA, chain, key) paths.
fn make_certificate(dir: &Path) -> (String, String, String) {
    let path = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
    let (csr, cert, key, ext) = (
        path("leaf.csr"),
        path("cert.pem"),
        path("key.pem"),
        path("ext.cnf"),
    );
    openssl(
        &[
            &["req", "-x509"][..],
            &ec,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=test CA",
                "-keyout",
                &ca_key,
                "-out",
                &ca,
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"][..],
            &ec,
            &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr],
        ]
        .concat(),
    );
    std::fs::write(
        &ext,
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &ext,
        "-out",
        &cert,
    ]);
    (ca, cert, key)
}

fn tls_stream(port: u16, ca: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, sock)
}

#[test]
fn wss_streams_the_tone_and_plain_clients_are_refused() {
    if !missing_programs(&["openssl"]).is_empty() {
        skip("openssl (which makes the test certificate) not installed");
        return;
    }
    let pulse = PulseServer::start();
    let (ca, cert, key) = make_certificate(pulse.dir());
    let daemon = Daemon::start(&pulse, &["--tls-cert", &cert, "--tls-key", &key]);
    // The daemon accepts before the line reaches our reader thread (seen in CI once,
    // with an empty stderr at the time of the check): wait for the line, do not race it.
    let listening = poll_until(Duration::from_secs(5), || {
        daemon
            .stderr_text()
            .contains("listening on wss://")
            .then_some(())
    });
    assert!(listening.is_some(), "{}", daemon.stderr_text());
    let _tone = Tone::play(&pulse, None, 440.0);

    let stream = tls_stream(daemon.port(), &ca);
    let url = format!("wss://localhost:{}/audio", daemon.port());
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("wss handshake");
    assert_eq!(response.status(), 101);
    let mut frames = Vec::new();
    while frames.len() < 100 {
        match ws.read().expect("frame over TLS") {
            tungstenite::Message::Binary(b) => {
                frames.push(parse_frame(&b, std::time::Instant::now()))
            }
            _ => continue,
        }
    }
    assert!(frames.iter().all(|f| f.codec == 0x01));
    check_timestamps(&frames[10..], 20, 0).unwrap();
    let mono = decode_tail(&frames, 2, 1.0);
    let f = dominant_frequency(&mono, 48000);
    assert!((f - 440.0).abs() <= 10.0, "decoded {f} Hz over wss://");

    // Stats over HTTPS on the same port.
    let mut s = tls_stream(daemon.port(), &ca);
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let (_, body) = text.split_once("\r\n\r\n").expect("a response head");
    let stats = Stats::parse(body);
    assert_eq!(stats.u64("clients"), 1, "/stats over TLS: {stats}");

    // A plain-text request on the TLS port gets no HTTP answer and does not hurt the
    // streaming client.
    let plain = raw_request(daemon.addr(), upgrade_request("/audio", "").as_bytes());
    assert!(
        plain.as_ref().map(|r| r.status != 101).unwrap_or(true),
        "plain upgrade on a TLS port must not succeed"
    );
    for _ in 0..25 {
        assert!(matches!(ws.read(), Ok(tungstenite::Message::Binary(_))));
    }
}

#[test]
fn mismatched_tls_options_exit_2() {
    let out = Command::new(BIN)
        .args(["--tls-cert", "/nonexistent.pem", "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
}

#[test]
fn a_speaker_over_wss_is_heard_at_the_microphones_source() {
    if !missing_programs(&["openssl"]).is_empty() {
        skip("openssl (which makes the test certificate) not installed");
        return;
    }
    let pulse = PulseServer::start();
    let (ca, cert, key) = make_certificate(pulse.dir());
    let daemon = Daemon::start(
        &pulse,
        &["--tls-cert", &cert, "--tls-key", &key, "--microphone"],
    );
    assert!(wait_mic_source(&pulse, Duration::from_secs(5)));
    let recorder = Recorder::start(&pulse, MIC_SOURCE);
    let stream = tls_stream(daemon.port(), &ca);
    let url = format!("wss://localhost:{}/mic", daemon.port());
    let (mut ws, response) = tungstenite::client(url.as_str(), stream).expect("wss handshake");
    assert_eq!(response.status(), 101);
    let mut voice = Voice::new(VoiceCodec::Opus);
    let start = Instant::now();
    for k in 0..75u64 {
        if let Some(wait) =
            (start + Duration::from_millis(20 * k)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        ws.send(tungstenite::Message::Binary(
            voice.next_message(true).into(),
        ))
        .expect("send over TLS");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert_tone(&recorder.tail(0.5), VOICE_HZ, "the voice over wss://");
    let _ = ws.close(None);
}

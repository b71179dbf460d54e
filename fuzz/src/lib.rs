//! The fuzzed functions, shared by the cargo-fuzz targets (fuzz_targets/) and the
//! plain `cargo test` replay (tests/replay.rs). Each must never panic, whatever the
//! input.

use novnc_audio::config::{self, Command};
use novnc_audio::fuzzing::http::{self, Parse};
use novnc_audio::fuzzing::Speaker;

/// The HTTP side: parse what a client sent; on a complete request run everything the
/// transport runs on it (upgrade check, token, query, 101 answer, reply bytes).
pub fn http_request(data: &[u8]) {
    match http::parse_request(data) {
        Parse::Partial => {}
        Parse::Reject(reply) => {
            let bytes = reply.to_bytes(false);
            assert!(bytes.starts_with(b"HTTP/1.1 4"), "a reject is a 4xx");
        }
        Parse::Complete(req) => {
            let _ = req.presented_token();
            let _ = req.query_param("codec");
            let _ = req.header_has_token("connection", "upgrade");
            let _ = http::json_string(&req.path);
            match http::check_upgrade(&req) {
                Ok((key, protocol)) => {
                    let resp = http::switching_protocols(&key, protocol.as_deref());
                    assert!(resp.starts_with(b"HTTP/1.1 101 "));
                }
                Err(reply) => {
                    let _ = reply.to_bytes(true);
                }
            }
        }
    }
}

/// A config file: parse it; every accepted (key, value) pair then goes through the
/// command-line parser as `--key=value` (flags as `--key`), which validates values.
pub fn config_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(entries) = config::parse_config_text(&text, "fuzz.conf") else {
        return;
    };
    let args: Vec<String> = entries
        .iter()
        .filter(|(k, _)| k != "config")
        .map(|(k, v)| match v.as_str() {
            "true" => format!("--{k}"),
            _ => format!("--{k}={v}"),
        })
        .collect();
    cli(args);
}

/// A command line: tokens split on NUL and newline.
pub fn cli_args(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let args: Vec<String> = text
        .split(['\0', '\n'])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    cli(args);
}

fn cli(mut args: Vec<String>) {
    // --config reads a file: the fuzzer must not make us read /dev/zero or a FIFO.
    // Dropping it (and its value) keeps the rest of the line meaningful.
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--config" {
            args.drain(i..(i + 2).min(args.len()));
        } else if args[i].starts_with("--config=") {
            args.remove(i);
        } else {
            i += 1;
        }
    }
    if let Ok(Command::Run(c) | Command::CheckConfig(c)) = config::parse_args(args) {
        let _ = c.describe();
        let _ = c.frame_samples();
        let _ = c.frame_bytes();
    }
}

/// The microphone: a speaker's messages (each a big-endian u16 length, then that many
/// bytes) through the whole pure path (parse, pace, decode, concealment, jitter buffer),
/// one message every 20 ms of a made-up clock, with the 10 ms pulls PulseAudio makes in
/// between. A message may be refused (that closes a speaker), never panic.
pub fn mic_messages(data: &[u8]) {
    let mut speaker = Speaker::new().expect("an Opus decoder");
    let t0 = std::time::Instant::now();
    let mut out = vec![0i16; 480];
    let mut rest = data;
    let mut k = 0u64;
    while rest.len() >= 2 {
        let len = (usize::from(rest[0]) << 8 | usize::from(rest[1])).min(rest.len() - 2);
        let msg = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let now = t0 + std::time::Duration::from_millis(20 * k);
        if speaker.receive(msg, now).is_err() {
            speaker.reset();
        }
        speaker.fill(&mut out);
        speaker.fill(&mut out);
        k += 1;
    }
}

//! Burst detector: how fast and how whole does sound come back after silence?
//!
//! Listens either as a novnc-audio WebSocket client (`--mode ws`, Opus decoded, PCM taken
//! as is) or as a bare libpulse recorder on the monitor (`--mode bare`, 1 ms fragments, the
//! reference of what PulseAudio itself delivers). It cuts what it hears into 1 ms blocks;
//! a block is active when its RMS exceeds a tenth of the burst's (the orchestrator plays
//! a 1 kHz sine at half scale). A run of active blocks is one burst; it ends after
//! `END_QUIET` of inactive audio or of nothing received at all (the daemon may stop
//! sending when the sound stops). For each burst it prints
//! `BURST {"first_ns":..,"active_ms":..,"span_ms":..}`: CLOCK_MONOTONIC of the arrival of
//! the audio holding the first active block (comparable with Python's
//! `time.monotonic_ns()`), the number of active blocks, and first-to-last active block.
//! Prints `READY` once connected, then runs until stdin closes.
//!
//! Usage: burst --mode ws|bare [--port P] [--host H] [--path /audio] [--source bench.monitor]
//!        [--fragsize-us 1000]

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;
use novnc_audio_bench::ws::{self, Handshake};
use novnc_audio_bench::Args;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const RATE: u32 = 48000;
const CH: usize = 2;
/// One block is 1 ms.
const BLOCK: usize = (RATE / 1000) as usize;
/// RMS threshold: a tenth of a half-scale sine's RMS (16384 / sqrt 2).
const THRESHOLD_RMS: f64 = 1158.0;
/// Inactive time that ends a burst.
const END_QUIET_MS: u64 = 60;

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Default)]
struct Detector {
    /// Samples (interleaved) not yet forming a whole block.
    partial: Vec<i16>,
    /// The burst in progress: arrival of its first active block, active blocks, blocks
    /// from the first to the last active one, inactive blocks since the last active one.
    first_ns: Option<u64>,
    active: u64,
    span: u64,
    quiet: u64,
    last_active_ns: u64,
}

impl Detector {
    fn feed(&mut self, samples: &[i16], at_ns: u64) {
        self.partial.extend_from_slice(samples);
        let whole = self.partial.len() / (BLOCK * CH) * BLOCK * CH;
        let partial = std::mem::take(&mut self.partial);
        for block in partial[..whole].chunks_exact(BLOCK * CH) {
            let energy: f64 = block.iter().map(|&s| (s as f64).powi(2)).sum();
            let rms = (energy / block.len() as f64).sqrt();
            if rms >= THRESHOLD_RMS {
                if self.first_ns.is_none() {
                    self.first_ns = Some(at_ns);
                    self.span = 0;
                    self.quiet = 0;
                }
                self.active += 1;
                self.span += self.quiet + 1;
                self.quiet = 0;
                self.last_active_ns = at_ns;
            } else if self.first_ns.is_some() {
                self.quiet += 1;
                if self.quiet >= END_QUIET_MS {
                    self.finish();
                }
            }
        }
        self.partial = partial;
        self.partial.drain(..whole);
    }

    /// Nothing arrived for a while: a burst in progress is over.
    fn idle(&mut self, now_ns: u64) {
        if self.first_ns.is_some() && now_ns - self.last_active_ns > END_QUIET_MS * 1_000_000 {
            self.finish();
        }
    }

    fn finish(&mut self) {
        if let Some(first) = self.first_ns.take() {
            println!(
                "BURST {{\"first_ns\":{first},\"active_ms\":{},\"span_ms\":{}}}",
                self.active, self.span
            );
            let _ = std::io::stdout().flush();
        }
        self.active = 0;
        self.span = 0;
        self.quiet = 0;
    }
}

fn bare(source: &str, fragsize_us: u32, stop: &AtomicBool) {
    let bytes_1ms = (BLOCK * CH * 2) as u32;
    let frag = bytes_1ms * fragsize_us / 1000;
    let attr = BufferAttr {
        maxlength: u32::MAX,
        tlength: u32::MAX,
        prebuf: u32::MAX,
        minreq: u32::MAX,
        fragsize: frag,
    };
    let spec = Spec {
        format: Format::S16le,
        channels: CH as u8,
        rate: RATE,
    };
    let s = Simple::new(
        None,
        "bench-burst-bare",
        Direction::Record,
        Some(source),
        "bare recorder",
        &spec,
        None,
        Some(&attr),
    )
    .unwrap_or_else(|e| {
        eprintln!("burst: bare record stream: {e}");
        std::process::exit(1)
    });
    println!("READY");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; frag as usize];
    let mut pcm = vec![0i16; buf.len() / 2];
    let mut d = Detector::default();
    while !stop.load(Ordering::Relaxed) {
        if s.read(&mut buf).is_err() {
            eprintln!("burst: bare read failed");
            std::process::exit(1);
        }
        let at = monotonic_ns();
        for (o, b) in pcm.iter_mut().zip(buf.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
        }
        d.feed(&pcm, at);
    }
    d.finish();
}

fn ws_client(host: &str, port: u16, path: &str, stop: &AtomicBool) {
    let mut sock = TcpStream::connect((host, port)).unwrap_or_else(|e| {
        eprintln!("burst: connect {host}:{port}: {e}");
        std::process::exit(1)
    });
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    sock.write_all(&ws::request(host, port, path)).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 65536];
    let mut upgraded = false;
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Stereo).unwrap();
    let mut pcm = vec![0i16; 5760 * CH];
    let mut d = Detector::default();
    let mut scratch = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let n = match sock.read(&mut tmp) {
            Ok(0) => {
                eprintln!("burst: server closed the stream");
                std::process::exit(1)
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                d.idle(monotonic_ns());
                continue;
            }
            Err(e) => {
                eprintln!("burst: read: {e}");
                std::process::exit(1)
            }
        };
        let at = monotonic_ns();
        buf.extend_from_slice(&tmp[..n]);
        if !upgraded {
            match ws::parse_response(&buf) {
                Handshake::Partial => continue,
                Handshake::Refused(s) => {
                    eprintln!("burst: upgrade refused: {s}");
                    std::process::exit(1)
                }
                Handshake::Upgraded(off) => {
                    buf.drain(..off);
                    upgraded = true;
                    println!("READY");
                    let _ = std::io::stdout().flush();
                }
            }
        }
        let mut pos = 0;
        let mut pong = None;
        while let Some((f, used)) = ws::parse_frame(&buf[pos..], &mut scratch) {
            pos += used;
            if f.opcode == 9 {
                pong = Some(ws::client_frame(0xA, f.payload));
                continue;
            }
            if f.opcode != 2 {
                continue;
            }
            let Some((_ts, codec, audio)) = ws::audio_header(f.payload) else {
                continue;
            };
            match codec {
                1 => {
                    let n = dec.decode(audio, &mut pcm, false).unwrap_or(0);
                    d.feed(&pcm[..n * CH], at);
                }
                _ => {
                    let s: Vec<i16> = audio
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]]))
                        .collect();
                    d.feed(&s, at);
                }
            }
        }
        buf.drain(..pos);
        if let Some(p) = pong {
            let _ = sock.write_all(&p);
        }
        d.idle(at);
    }
    d.finish();
}

fn main() {
    let a = Args::parse();
    let mode = a.str("mode", "ws");
    let stop = Arc::new(AtomicBool::new(false));
    {
        // The orchestrator closes our stdin to end the run.
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            stop.store(true, Ordering::Relaxed);
        });
    }
    match mode.as_str() {
        "bare" => bare(
            &a.str("source", "bench.monitor"),
            a.num("fragsize-us", 1000),
            &stop,
        ),
        "ws" => ws_client(
            &a.str("host", "127.0.0.1"),
            a.num("port", 6090),
            &a.str("path", "/audio"),
            &stop,
        ),
        m => {
            eprintln!("--mode: ws or bare, not {m}");
            std::process::exit(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(ms: usize) -> Vec<i16> {
        (0..ms * BLOCK)
            .flat_map(|i| {
                let v = ((i as f64 * 1000.0 * std::f64::consts::TAU / RATE as f64).sin() * 16384.0)
                    as i16;
                [v, v]
            })
            .collect()
    }

    #[test]
    fn counts_a_burst_between_silences() {
        let mut d = Detector::default();
        d.feed(&vec![0; 50 * BLOCK * CH], 1);
        assert!(d.first_ns.is_none());
        d.feed(&sine(100), 2);
        assert_eq!((d.first_ns, d.active, d.span), (Some(2), 100, 100));
        d.feed(&vec![0; 59 * BLOCK * CH], 3);
        assert!(d.first_ns.is_some(), "still within END_QUIET");
        d.feed(&[0; BLOCK * CH], 4);
        assert!(d.first_ns.is_none(), "ended");
    }
}

//! Click latency probe.
//!
//! One thread plays a low-latency PulseAudio stream into the sink (`--sink`, 5 ms target
//! length, 1 ms writes of silence) and every 150–200 ms writes a 1 ms full-scale click,
//! timestamping the moment the write returned. A detector listens for it:
//! - `--mode ws`: a WebSocket client of novnc-audio that decodes each Opus frame (or takes
//!   PCM frames as they are) and stamps the arrival of the frame holding the click;
//! - `--mode bare`: a bare libpulse recorder on the monitor (`--source`) with a small
//!   fragment (`--fragsize-us`, 1000), the floor PulseAudio itself imposes.
//!
//! The tone played by the orchestrator (amplitude 0.1) stays far below the threshold (0.5).
//! Prints `RESULT {...}` with the distribution of detection minus write time, in ms.
//!
//! Usage: latency --mode ws|bare [--port P] [--host H] [--path /audio] [--duration S]
//!        [--sink bench] [--source bench.monitor] [--fragsize-us 1000]

use libpulse_binding::def::BufferAttr;
use libpulse_binding::sample::{Format, Spec};
use libpulse_binding::stream::Direction;
use libpulse_simple_binding::Simple;
use novnc_audio_bench::ws::{self, Handshake};
use novnc_audio_bench::{jarr, jnum, jstr, median, percentile, Args};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: u32 = 48000;
const CH: usize = 2;
const THRESHOLD: i16 = 16384;
const REFRACTORY: Duration = Duration::from_millis(100);
const WARMUP: Duration = Duration::from_millis(1500);

fn spec() -> Spec {
    Spec {
        format: Format::S16le,
        channels: CH as u8,
        rate: RATE,
    }
}

fn bytes_for_us(us: u32) -> u32 {
    (RATE as u64 * us as u64 / 1_000_000) as u32 * (CH as u32) * 2
}

/// Plays silence with 1 ms writes and a click every 150–200 ms; returns the write times.
fn probe(sink: String, stop: Arc<AtomicBool>, clicks: Arc<Mutex<Vec<Instant>>>) {
    let attr = BufferAttr {
        maxlength: u32::MAX,
        tlength: bytes_for_us(5000),
        prebuf: u32::MAX,
        minreq: u32::MAX,
        fragsize: u32::MAX,
    };
    let s = Simple::new(
        None,
        "bench-latency-probe",
        Direction::Playback,
        Some(&sink),
        "click",
        &spec(),
        None,
        Some(&attr),
    )
    .unwrap_or_else(|e| {
        eprintln!("latency: probe playback stream: {e}");
        std::process::exit(1)
    });
    let chunk = (RATE / 1000) as usize * CH;
    let silence = vec![0u8; chunk * 2];
    let click: Vec<u8> = std::iter::repeat_n(29490i16.to_le_bytes(), chunk)
        .flatten()
        .collect();
    let start = Instant::now();
    // xorshift jitter so the click falls anywhere inside a frame.
    let mut rng: u32 = 0x9e37_79b9;
    let mut next = start + WARMUP;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next {
            if s.write(&click).is_err() {
                break;
            }
            clicks.lock().unwrap().push(Instant::now());
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            next = now + Duration::from_micros(150_000 + (rng % 50_000) as u64);
        } else if s.write(&silence).is_err() {
            break;
        }
    }
    let _ = s.drain();
}

struct Detector {
    last: Option<Instant>,
    hits: Vec<Instant>,
}

impl Detector {
    fn feed(&mut self, samples: &[i16], at: Instant) {
        if samples.iter().any(|&x| x >= THRESHOLD || x <= -THRESHOLD)
            && self.last.is_none_or(|l| at.duration_since(l) > REFRACTORY)
        {
            self.last = Some(at);
            self.hits.push(at);
        }
    }
}

fn bare(source: &str, fragsize_us: u32, until: Instant) -> Detector {
    let attr = BufferAttr {
        maxlength: u32::MAX,
        tlength: u32::MAX,
        prebuf: u32::MAX,
        minreq: u32::MAX,
        fragsize: bytes_for_us(fragsize_us),
    };
    let s = Simple::new(
        None,
        "bench-latency-bare",
        Direction::Record,
        Some(source),
        "bare recorder",
        &spec(),
        None,
        Some(&attr),
    )
    .unwrap_or_else(|e| {
        eprintln!("latency: bare record stream: {e}");
        std::process::exit(1)
    });
    let mut buf = vec![0u8; bytes_for_us(fragsize_us) as usize];
    let mut d = Detector {
        last: None,
        hits: Vec::new(),
    };
    let mut pcm = vec![0i16; buf.len() / 2];
    while Instant::now() < until {
        if s.read(&mut buf).is_err() {
            eprintln!("latency: bare read failed");
            std::process::exit(1);
        }
        let at = Instant::now();
        for (o, b) in pcm.iter_mut().zip(buf.chunks_exact(2)) {
            *o = i16::from_le_bytes([b[0], b[1]]);
        }
        d.feed(&pcm, at);
    }
    d
}

fn ws_client(host: &str, port: u16, path: &str, until: Instant) -> (Detector, u64) {
    let mut sock = TcpStream::connect((host, port)).unwrap_or_else(|e| {
        eprintln!("latency: connect {host}:{port}: {e}");
        std::process::exit(1)
    });
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    sock.write_all(&ws::request(host, port, path)).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut tmp = vec![0u8; 65536];
    let mut upgraded = false;
    let mut dec = opus::Decoder::new(RATE, opus::Channels::Stereo).unwrap();
    let mut pcm = vec![0i16; 5760 * CH];
    let mut d = Detector {
        last: None,
        hits: Vec::new(),
    };
    let mut scratch = Vec::new();
    let mut frames = 0u64;
    while Instant::now() < until {
        let n = match sock.read(&mut tmp) {
            Ok(0) => {
                eprintln!("latency: server closed the stream");
                std::process::exit(1)
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => {
                eprintln!("latency: read: {e}");
                std::process::exit(1)
            }
        };
        let at = Instant::now();
        buf.extend_from_slice(&tmp[..n]);
        if !upgraded {
            match ws::parse_response(&buf) {
                Handshake::Partial => continue,
                Handshake::Refused(s) => {
                    eprintln!("latency: upgrade refused: {s}");
                    std::process::exit(1)
                }
                Handshake::Upgraded(off) => {
                    buf.drain(..off);
                    upgraded = true;
                }
            }
        }
        let mut pos = 0;
        while let Some((f, used)) = ws::parse_frame(&buf[pos..], &mut scratch) {
            pos += used;
            if f.opcode != 2 {
                continue;
            }
            let Some((_ts, codec, audio)) = ws::audio_header(f.payload) else {
                continue;
            };
            frames += 1;
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
    }
    (d, frames)
}

fn main() {
    let a = Args::parse();
    let mode = a.str("mode", "ws");
    let duration = Duration::from_secs_f64(a.num("duration", 30.0));
    let sink = a.str("sink", "bench");
    let source = a.str("source", "bench.monitor");
    let host = a.str("host", "127.0.0.1");
    let port: u16 = a.num("port", 6090);
    let path = a.str("path", "/audio");
    let fragsize_us: u32 = a.num("fragsize-us", 1000);

    let stop = Arc::new(AtomicBool::new(false));
    let clicks = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + WARMUP + duration;
    let detector = {
        let (stop2, clicks2) = (stop.clone(), clicks.clone());
        let p = std::thread::spawn(move || probe(sink, stop2, clicks2));
        let (d, frames) = match mode.as_str() {
            "bare" => (bare(&source, fragsize_us, until), 0),
            "ws" => ws_client(&host, port, &path, until),
            m => {
                eprintln!("--mode: ws or bare, not {m}");
                std::process::exit(2)
            }
        };
        stop.store(true, Ordering::Relaxed);
        let _ = p.join();
        if mode == "ws" && frames == 0 {
            eprintln!("latency: no frames received");
        }
        d
    };

    // Match each detection to the latest click written before it (clicks are >= 150 ms
    // apart, so anything later than 140 ms is not that click's).
    let clicks = clicks.lock().unwrap().clone();
    let mut lat = Vec::new();
    let mut spurious = 0;
    let mut matched = vec![false; clicks.len()];
    for h in &detector.hits {
        match clicks.iter().rposition(|c| c <= h) {
            Some(i) if h.duration_since(clicks[i]) < Duration::from_millis(140) && !matched[i] => {
                matched[i] = true;
                lat.push(h.duration_since(clicks[i]).as_secs_f64() * 1000.0);
            }
            _ => spurious += 1,
        }
    }
    // The last click may still be in flight when the window closes.
    let missed = matched.iter().filter(|m| !**m).count().saturating_sub(1);
    println!(
        "RESULT {{\"mode\":{},\"clicks\":{},\"detected\":{},\"missed\":{},\"spurious\":{},\
         \"min_ms\":{},\"median_ms\":{},\"p90_ms\":{},\"p99_ms\":{},\"max_ms\":{},\"samples_ms\":{}}}",
        jstr(&mode),
        clicks.len(),
        lat.len(),
        missed,
        spurious,
        jnum(percentile(&lat, 0.0)),
        jnum(median(&lat)),
        jnum(percentile(&lat, 90.0)),
        jnum(percentile(&lat, 99.0)),
        jnum(percentile(&lat, 100.0)),
        jarr(&lat)
    );
}

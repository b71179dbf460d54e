//! The fuzz targets as a plain `cargo test` (stable Rust, no libFuzzer): every seed in
//! seeds/<target>/ and corpus/<target>/ (if cargo fuzz made one), then a mutation loop
//! with a fixed seed. FUZZ_ITERS sets the mutations per target (default 20,000);
//! FUZZ_SEED another seed. A panic fails the test and prints the input.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

type Target = fn(&[u8]);

/// Tokens the mutator splices in: what the parsers look for.
const DICTIONARY: &[&str] = &[
    "GET ",
    "HEAD ",
    "POST ",
    " HTTP/1.1\r\n",
    " HTTP/1.0\r\n",
    "\r\n",
    "\r\n\r\n",
    ": ",
    "Upgrade: websocket\r\n",
    "Connection: Upgrade\r\n",
    "Sec-WebSocket-Version: 13\r\n",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "Sec-WebSocket-Protocol: ",
    "Authorization: Bearer ",
    "Origin: ",
    "?token=",
    "&codec=",
    "%",
    "%zz",
    "%ff",
    "+",
    "/audio",
    "/stats",
    "\x16\x03\x01",
    "\0",
    "=",
    " = ",
    "\"",
    "'",
    "#",
    "\n",
    "port",
    "bitrate",
    "frame-ms",
    "2.5",
    "sample-rate",
    "channels",
    "allow-origin",
    "max-clients",
    "--",
    "-p",
    "--host",
    "--path",
    "-1",
    "4294967296",
    "18446744073709551616",
    "1e9",
    "NaN",
    "inf",
    "0x10",
    "é",
    "\u{fffd}",
    "true",
    "false",
    "::1",
    "[::1]",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(rng: &mut Rng, input: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
            2 => v.insert(at, rng.next() as u8),
            3 if !v.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            4 | 5 => {
                let tok = DICTIONARY[rng.below(DICTIONARY.len())].as_bytes();
                v.splice(at..at, tok.iter().copied());
            }
            6 => {
                // Splice a piece of another input.
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let s = rng.below(other.len());
                    let e = (s + 1 + rng.below(64)).min(other.len());
                    v.splice(at..at, other[s..e].iter().copied());
                }
            }
            _ if !v.is_empty() => {
                // Repeat a chunk (long headers, many lines).
                let s = rng.below(v.len());
                let e = (s + 1 + rng.below(32)).min(v.len());
                let chunk = v[s..e].to_vec();
                for _ in 0..rng.below(300) {
                    v.splice(at..at, chunk.iter().copied());
                }
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v.truncate(64 * 1024);
    v
}

fn load(dir: &Path, into: &mut Vec<Vec<u8>>) {
    if let Ok(rd) = fs::read_dir(dir) {
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(b) = fs::read(&f) {
                into.push(b);
            }
        }
    }
}

fn run(name: &str, target: Target) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pool = vec![Vec::new()];
    load(&root.join("seeds").join(name), &mut pool);
    load(&root.join("corpus").join(name), &mut pool);
    load(&root.join("artifacts").join(name), &mut pool);
    let iters: usize = std::env::var("FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_cafe_f00d_d00d);
    let mut rng = Rng(seed | 1);
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut crash = None;
    let mut runs = 0;
    for input in pool.clone() {
        runs += 1;
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            crash = Some(input);
            break;
        }
    }
    if crash.is_none() {
        for _ in 0..iters {
            let base = &pool[rng.below(pool.len())];
            let input = mutate(&mut rng, base, &pool);
            runs += 1;
            if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
                crash = Some(input);
                break;
            }
            // Keep some mutants as bases so mutations compound.
            if rng.below(16) == 0 && pool.len() < 4096 {
                pool.push(input);
            }
        }
    }
    std::panic::set_hook(prev_hook);
    if let Some(input) = crash {
        // Run once more with the normal hook so the panic message shows.
        let shown = String::from_utf8_lossy(&input);
        eprintln!("{name}: crash on {} bytes: {shown:?}", input.len());
        target(&input);
        panic!("{name}: crashed on {shown:?}");
    }
    println!("{name}: {runs} inputs, no panic");
}

#[test]
fn http_request() {
    run("http_request", novnc_audio_fuzz::http_request);
}

#[test]
fn config_text() {
    run("config_text", novnc_audio_fuzz::config_text);
}

#[test]
fn cli_args() {
    run("cli_args", novnc_audio_fuzz::cli_args);
}

#[test]
fn mic_messages() {
    run("mic_messages", novnc_audio_fuzz::mic_messages);
}

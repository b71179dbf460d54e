//! The transport floor: what sending one frame to each of N WebSocket clients every frame
//! period costs the sender, with nothing else (no capture, no encoding, no HTTP parsing).
//!
//! Accepts `--clients` connections on 127.0.0.1:`--port`, answers each request with a
//! bare 101, then every `--frame-ms` writes one pre-built binary message (novnc-audio
//! header + `--bytes` of payload, a 64 kbit/s 20 ms Opus frame is about 160 bytes) to every
//! client with one write() each, on one thread. A client whose socket is full loses the
//! frame. Runs until SIGTERM; bench.py measures its CPU like the daemon's.
//!
//! Usage: fanout --port P [--clients N] [--frame-ms 20] [--bytes 160]

use novnc_audio_bench::{raise_nofile, Args};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn main() {
    let a = Args::parse();
    let port: u16 = a.num("port", 6091);
    let clients: usize = a.num("clients", 1000);
    let frame_ms: f64 = a.num("frame-ms", 20.0);
    let bytes: usize = a.num("bytes", 160);
    raise_nofile();
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    println!("LISTENING");
    std::io::stdout().flush().unwrap();

    let mut socks: Vec<TcpStream> = Vec::with_capacity(clients);
    let mut buf = [0u8; 4096];
    while socks.len() < clients {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).unwrap();
        // Read the request head (the load generator sends it in one segment).
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
        );
        s.set_nonblocking(true).unwrap();
        socks.push(s);
    }

    let start = Instant::now();
    let period = Duration::from_secs_f64(frame_ms / 1000.0);
    let msg_len = 9 + bytes;
    let mut frame = vec![0x82u8];
    if msg_len < 126 {
        frame.push(msg_len as u8);
    } else {
        frame.push(126);
        frame.extend_from_slice(&(msg_len as u16).to_be_bytes());
    }
    let hdr = frame.len();
    frame.resize(hdr + msg_len, 0x55);
    for n in 0u64.. {
        let due = start + period.mul_f64(n as f64);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let ts = (n as f64 * frame_ms) as u64;
        frame[hdr..hdr + 8].copy_from_slice(&ts.to_be_bytes());
        frame[hdr + 8] = 1;
        for s in &socks {
            unsafe {
                libc::write(
                    s.as_raw_fd(),
                    frame.as_ptr() as *const libc::c_void,
                    frame.len(),
                )
            };
        }
    }
}

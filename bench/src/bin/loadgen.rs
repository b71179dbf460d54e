//! WebSocket load generator for novnc-audio: N receiving clients on one epoll thread.
//!
//! Phases: connect every client (in batches, so the listen backlog never overflows), let
//! frames flow uncounted for `--warmup` seconds, print
//! `READY {...}` on stdout, count frames for `--duration` seconds, print `RESULT {...}`.
//! The orchestrator samples the daemon's /proc between the two lines. Per client it counts
//! frames inside the window, missing frames (timestamp gaps), the time from connect() to
//! the 101 and to the first frame; for itself, CPU (getrusage) so it can be shown not to be
//! the bottleneck.
//!
//! Usage: loadgen --port P [--host 127.0.0.1] [--path /audio] [--clients N] [--duration S]
//!        [--frame-ms 20] [--connect-timeout S] [--batch N] [--warmup S]

use novnc_audio_bench::ws::{self, Handshake};
use novnc_audio_bench::{jnum, jstr, median, percentile, raise_nofile, self_cpu, Args};
use std::io::Write;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

#[derive(PartialEq)]
enum State {
    Idle,
    Connecting,
    Handshake,
    Open,
    Failed,
    Closed,
}

struct Conn {
    fd: i32,
    state: State,
    out: Vec<u8>,
    rbuf: Vec<u8>,
    msg: Vec<u8>,
    t_start: Option<Instant>,
    t_open: Option<Instant>,
    t_first: Option<Instant>,
    frames_window: u64,
    frames_total: u64,
    bytes_window: u64,
    /// Every byte read from the socket in the window: frames, WebSocket headers, pings.
    wire_bytes_window: u64,
    pings_window: u64,
    last_ts: Option<u64>,
    missing: u64,
    gaps: u64,
    backwards: u64,
    bad: u64,
    codecs: [u64; 2],
    gap_log: Vec<(f64, u64)>,
    error: Option<String>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            fd: -1,
            state: State::Idle,
            out: Vec::new(),
            rbuf: Vec::with_capacity(4096),
            msg: Vec::new(),
            t_start: None,
            t_open: None,
            t_first: None,
            frames_window: 0,
            frames_total: 0,
            bytes_window: 0,
            wire_bytes_window: 0,
            pings_window: 0,
            last_ts: None,
            missing: 0,
            gaps: 0,
            backwards: 0,
            bad: 0,
            codecs: [0; 2],
            gap_log: Vec::new(),
            error: None,
        }
    }
}

struct Gen {
    epfd: i32,
    conns: Vec<Conn>,
    request: Vec<u8>,
    addr: libc::sockaddr_in,
    frame_ms: f64,
    in_window: bool,
    window_start: Option<Instant>,
    scratch: Vec<u8>,
    readbuf: Vec<u8>,
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

impl Gen {
    fn epoll(&self, op: i32, i: usize, events: u32) {
        let mut ev = libc::epoll_event {
            events,
            u64: i as u64,
        };
        unsafe { libc::epoll_ctl(self.epfd, op, self.conns[i].fd, &mut ev) };
    }

    fn fail(&mut self, i: usize, why: String) {
        let c = &mut self.conns[i];
        if c.fd >= 0 {
            unsafe { libc::close(c.fd) };
            c.fd = -1;
        }
        c.state = if c.state == State::Open {
            State::Closed
        } else {
            State::Failed
        };
        c.error.get_or_insert(why);
    }

    fn start(&mut self, i: usize) {
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            self.conns[i].state = State::Failed;
            self.conns[i].error = Some(format!("socket: errno {}", errno()));
            return;
        }
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                4,
            )
        };
        let c = &mut self.conns[i];
        c.fd = fd;
        c.t_start = Some(Instant::now());
        c.state = State::Connecting;
        c.out = self.request.clone();
        let r = unsafe {
            libc::connect(
                fd,
                &self.addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        if r < 0 && errno() != libc::EINPROGRESS {
            let e = errno();
            self.fail(i, format!("connect: errno {e}"));
            return;
        }
        self.epoll(
            libc::EPOLL_CTL_ADD,
            i,
            (libc::EPOLLOUT | libc::EPOLLIN) as u32,
        );
    }

    fn writable(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.state == State::Connecting {
            let mut err: libc::c_int = 0;
            let mut len = 4u32;
            unsafe {
                libc::getsockopt(
                    c.fd,
                    libc::SOL_SOCKET,
                    libc::SO_ERROR,
                    &mut err as *mut _ as *mut libc::c_void,
                    &mut len,
                )
            };
            if err != 0 {
                self.fail(i, format!("connect: errno {err}"));
                return;
            }
            c.state = State::Handshake;
        }
        let c = &mut self.conns[i];
        while !c.out.is_empty() {
            let n =
                unsafe { libc::write(c.fd, c.out.as_ptr() as *const libc::c_void, c.out.len()) };
            if n < 0 {
                if errno() == libc::EAGAIN {
                    return;
                }
                let e = errno();
                self.fail(i, format!("write: errno {e}"));
                return;
            }
            c.out.drain(..n as usize);
        }
        self.epoll(libc::EPOLL_CTL_MOD, i, libc::EPOLLIN as u32);
    }

    fn readable(&mut self, i: usize, now: Instant) {
        loop {
            let fd = self.conns[i].fd;
            if fd < 0 {
                return;
            }
            let n = unsafe {
                libc::read(
                    fd,
                    self.readbuf.as_mut_ptr() as *mut libc::c_void,
                    self.readbuf.len(),
                )
            };
            if n == 0 {
                self.fail(i, "server closed the connection".into());
                return;
            }
            if n < 0 {
                let e = errno();
                if e != libc::EAGAIN {
                    self.fail(i, format!("read: errno {e}"));
                }
                break;
            }
            let n = n as usize;
            if self.in_window {
                self.conns[i].wire_bytes_window += n as u64;
            }
            self.conns[i].rbuf.extend_from_slice(&self.readbuf[..n]);
            if n < self.readbuf.len() {
                break;
            }
        }
        self.process(i, now);
    }

    fn process(&mut self, i: usize, now: Instant) {
        let since = self
            .window_start
            .map(|w| now.duration_since(w).as_secs_f64());
        if self.conns[i].state == State::Handshake {
            match ws::parse_response(&self.conns[i].rbuf) {
                Handshake::Partial => return,
                Handshake::Refused(s) => return self.fail(i, s),
                Handshake::Upgraded(off) => {
                    let c = &mut self.conns[i];
                    c.rbuf.drain(..off);
                    c.state = State::Open;
                    c.t_open = Some(now);
                }
            }
        }
        let mut pos = 0usize;
        let mut pong: Option<Vec<u8>> = None;
        let mut closed = false;
        let frame_ms = self.frame_ms;
        let in_window = self.in_window;
        let c = &mut self.conns[i];
        let mut rbuf = std::mem::take(&mut c.rbuf);
        while let Some((f, used)) = ws::parse_frame(&rbuf[pos..], &mut self.scratch) {
            pos += used;
            match f.opcode {
                0..=2 => {
                    if !f.fin || !c.msg.is_empty() {
                        c.msg.extend_from_slice(f.payload);
                        if !f.fin {
                            continue;
                        }
                    }
                    let msg: &[u8] = if c.msg.is_empty() { f.payload } else { &c.msg };
                    match ws::audio_header(msg) {
                        None => c.bad += 1,
                        Some((ts, codec, audio)) => {
                            if c.t_first.is_none() {
                                c.t_first = Some(now);
                            }
                            c.frames_total += 1;
                            if (codec as usize) < 2 {
                                c.codecs[codec as usize] += 1;
                            } else {
                                c.bad += 1;
                            }
                            if in_window {
                                c.frames_window += 1;
                                c.bytes_window += audio.len() as u64 + 9;
                                if let Some(prev) = c.last_ts {
                                    if ts <= prev {
                                        c.backwards += 1;
                                    }
                                    let m = ws::missing_between(prev, ts, frame_ms);
                                    if m > 0 {
                                        c.gaps += 1;
                                        c.missing += m;
                                        if c.gap_log.len() < 20 {
                                            c.gap_log.push((since.unwrap_or(0.0), m));
                                        }
                                    }
                                }
                            }
                            c.last_ts = Some(ts);
                        }
                    }
                    c.msg.clear();
                }
                8 => closed = true,
                9 => {
                    if in_window {
                        c.pings_window += 1;
                    }
                    pong = Some(ws::client_frame(0xA, f.payload))
                }
                _ => {}
            }
        }
        rbuf.drain(..pos);
        c.rbuf = rbuf;
        if let Some(p) = pong {
            let _ = unsafe { libc::write(c.fd, p.as_ptr() as *const libc::c_void, p.len()) };
        }
        if closed {
            self.fail(i, "close frame received".into());
        }
    }

    fn poll(&mut self, timeout: Duration) {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 256];
        let n = unsafe {
            libc::epoll_wait(
                self.epfd,
                evs.as_mut_ptr(),
                evs.len() as i32,
                timeout.as_millis() as i32,
            )
        };
        let now = Instant::now();
        for ev in evs.iter().take(n.max(0) as usize) {
            let i = ev.u64 as usize;
            let events = ev.events;
            if events & libc::EPOLLOUT as u32 != 0 {
                self.writable(i);
            }
            if events & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                if self.conns[i].state == State::Connecting {
                    self.writable(i);
                }
                self.readable(i, now);
            }
        }
    }
}

fn ms(a: Option<Instant>, b: Option<Instant>) -> Option<f64> {
    Some(b?.duration_since(a?).as_secs_f64() * 1000.0)
}

fn stats(v: &[f64]) -> String {
    format!(
        "{{\"min\":{},\"median\":{},\"p99\":{},\"max\":{}}}",
        jnum(percentile(v, 0.0)),
        jnum(median(v)),
        jnum(percentile(v, 99.0)),
        jnum(percentile(v, 100.0))
    )
}

fn main() {
    let a = Args::parse();
    let host = a.str("host", "127.0.0.1");
    let port: u16 = a.num("port", 6090);
    let path = a.str("path", "/audio");
    let clients: usize = a.num("clients", 1);
    let duration = Duration::from_secs_f64(a.num("duration", 30.0));
    let frame_ms: f64 = a.num("frame-ms", 20.0);
    let connect_timeout = Duration::from_secs_f64(a.num("connect-timeout", 30.0));
    let batch: usize = a.num("batch", 64);
    let warmup = Duration::from_secs_f64(a.num("warmup", 0.0));
    raise_nofile();

    let ip: Ipv4Addr = host.parse().expect("--host must be an IPv4 address");
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    let mut g = Gen {
        epfd: unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
        conns: (0..clients).map(|_| Conn::new()).collect(),
        request: ws::request(&host, port, &path),
        addr,
        frame_ms,
        in_window: false,
        window_start: None,
        scratch: Vec::new(),
        readbuf: vec![0u8; 64 * 1024],
    };

    // Connect phase: at most `batch` handshakes in flight.
    let t0 = Instant::now();
    let mut next = 0usize;
    loop {
        let pending = g
            .conns
            .iter()
            .filter(|c| matches!(c.state, State::Connecting | State::Handshake))
            .count();
        let mut room = batch.saturating_sub(pending);
        while room > 0 && next < clients {
            g.start(next);
            next += 1;
            room -= 1;
        }
        let pending = g
            .conns
            .iter()
            .filter(|c| matches!(c.state, State::Connecting | State::Handshake))
            .count();
        if next == clients && pending == 0 {
            break;
        }
        if t0.elapsed() > connect_timeout {
            for i in 0..clients {
                if matches!(
                    g.conns[i].state,
                    State::Idle | State::Connecting | State::Handshake
                ) {
                    g.fail(i, "connect timeout".into());
                }
            }
            break;
        }
        g.poll(Duration::from_millis(5));
    }
    let connect_s = t0.elapsed().as_secs_f64();
    // Warm-up: frames flow but are not counted (the daemon settles after the connect storm).
    let w = Instant::now();
    while w.elapsed() < warmup {
        g.poll(
            warmup
                .saturating_sub(w.elapsed())
                .min(Duration::from_millis(100)),
        );
    }
    let open = g.conns.iter().filter(|c| c.state == State::Open).count();
    println!(
        "READY {{\"clients\":{clients},\"open\":{open},\"connect_s\":{}}}",
        jnum(connect_s)
    );
    std::io::stdout().flush().unwrap();

    // Measurement window.
    let cpu0 = self_cpu();
    let w0 = Instant::now();
    g.in_window = true;
    g.window_start = Some(w0);
    while w0.elapsed() < duration {
        let left = duration.saturating_sub(w0.elapsed());
        g.poll(left.min(Duration::from_millis(100)));
    }
    g.in_window = false;
    let wall = w0.elapsed().as_secs_f64();
    let cpu = (self_cpu() - cpu0).as_secs_f64();

    let opened: Vec<&Conn> = g.conns.iter().filter(|c| c.t_open.is_some()).collect();
    let fps: Vec<f64> = opened
        .iter()
        .map(|c| c.frames_window as f64 / wall)
        .collect();
    let connect_ms: Vec<f64> = opened
        .iter()
        .filter_map(|c| ms(c.t_start, c.t_open))
        .collect();
    let first_ms: Vec<f64> = opened
        .iter()
        .filter_map(|c| ms(c.t_start, c.t_first))
        .collect();
    let first_after_open_ms: Vec<f64> = opened
        .iter()
        .filter_map(|c| ms(c.t_open, c.t_first))
        .collect();
    let sum = |f: &dyn Fn(&Conn) -> u64| g.conns.iter().map(f).sum::<u64>();
    let mut errors: Vec<String> = g.conns.iter().filter_map(|c| c.error.clone()).collect();
    errors.sort();
    errors.dedup();
    errors.truncate(5);
    let errs: Vec<String> = errors.iter().map(|e| jstr(e)).collect();
    // Where in the window the first client with gaps saw them: all clients at once points
    // at the sender, a few clients at the receiving side.
    let gap_log: Vec<String> = g
        .conns
        .iter()
        .find(|c| !c.gap_log.is_empty())
        .map(|c| {
            c.gap_log
                .iter()
                .map(|(t, m)| format!("[{},{m}]", jnum(*t)))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "RESULT {{\"clients\":{clients},\"opened\":{},\"open_at_end\":{},\"failed\":{},\
         \"closed_in_window\":{},\"window_s\":{},\"connect_s\":{},\"fps\":{},\
         \"frames\":{},\"bytes\":{},\"wire_bytes\":{},\"pings\":{},\"missing_frames\":{},\"gaps\":{},\"backwards\":{},\
         \"bad_messages\":{},\"opus_frames\":{},\"pcm_frames\":{},\"clients_without_frames\":{},\
         \"connect_ms\":{},\"first_frame_ms\":{},\"first_frame_after_101_ms\":{},\
         \"loadgen_cpu_pct\":{},\"gap_log_s_frames\":[{}],\"errors\":[{}]}}",
        opened.len(),
        g.conns.iter().filter(|c| c.state == State::Open).count(),
        g.conns.iter().filter(|c| c.state == State::Failed).count(),
        g.conns.iter().filter(|c| c.state == State::Closed).count(),
        jnum(wall),
        jnum(connect_s),
        stats(&fps),
        sum(&|c| c.frames_window),
        sum(&|c| c.bytes_window),
        sum(&|c| c.wire_bytes_window),
        sum(&|c| c.pings_window),
        sum(&|c| c.missing),
        sum(&|c| c.gaps),
        sum(&|c| c.backwards),
        sum(&|c| c.bad),
        sum(&|c| c.codecs[1]),
        sum(&|c| c.codecs[0]),
        opened.iter().filter(|c| c.frames_window == 0).count(),
        stats(&connect_ms),
        stats(&first_ms),
        stats(&first_after_open_ms),
        jnum(100.0 * cpu / wall),
        gap_log.join(","),
        errs.join(",")
    );
}

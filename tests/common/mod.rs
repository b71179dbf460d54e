//! Test harness for the novnc-audio integration tests.
//!
//! Every test gets its own private PulseAudio server (a temp dir with its own
//! XDG_RUNTIME_DIR and HOME), its own daemon on a free port, and cleans up by
//! pid. Nothing here ever talks to an ambient PulseAudio.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

pub mod scenarios;

/// Path of the daemon binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_novnc-audio");

/// Variables that could point a child at another PulseAudio, a session bus or
/// the journal; they are removed from every child we start.
const SCRUBBED_VARS: &[&str] = &[
    "PULSE_SERVER",
    "PULSE_SINK",
    "PULSE_SOURCE",
    "PULSE_COOKIE",
    "PULSE_RUNTIME_PATH",
    "PULSE_STATE_PATH",
    "PULSE_CONFIG",
    "PULSE_CLIENTCONFIG",
    "PULSE_PROP",
    "DBUS_SESSION_BUS_ADDRESS",
    "DISPLAY",
    "JOURNAL_STREAM",
    "XDG_CONFIG_HOME",
    "XDG_STATE_HOME",
    "XDG_RUNTIME_DIR",
    "HOME",
];

/// The arguments of every private pulseaudio: no config, no autospawn, no idle exit,
/// in the foreground, logging to stderr, with only the native protocol.
pub const PULSEAUDIO_ARGS: &[&str] = &[
    "-n",
    "-F",
    "/dev/null",
    "--exit-idle-time=-1",
    "--daemonize=no",
    "--log-target=stderr",
    "-L",
    "module-native-protocol-unix",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique, short temp dir (unix socket paths are limited to 108 bytes).
fn unique_temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("nvat-{tag}-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Apply a scrubbed environment plus `vars` to a command.
fn apply_env(cmd: &mut Command, vars: &[(String, OsString)]) {
    for v in SCRUBBED_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
}

/// Send a signal by pid with kill(1) (std only, no libc).
pub fn send_signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Poll `f` every 50 ms until it returns Some or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// PulseAudio
// ---------------------------------------------------------------------------

/// A private PulseAudio server with zero sinks.
pub struct PulseServer {
    child: Child,
    dir: PathBuf,
    runtime_dir: PathBuf,
    home: PathBuf,
    log_path: PathBuf,
}

impl PulseServer {
    pub fn start() -> PulseServer {
        let dir = unique_temp_dir("pa");
        let runtime_dir = dir.join("xdg");
        let home = dir.join("home");
        fs::create_dir_all(&runtime_dir).unwrap();
        fs::create_dir_all(&home).unwrap();
        fs::set_permissions(&runtime_dir, fs::Permissions::from_mode(0o700)).unwrap();
        // A client.conf of our own so no client ever autospawns a server.
        fs::write(dir.join("client.conf"), "autospawn = no\n").unwrap();
        let log_path = dir.join("pulseaudio.log");
        let log = fs::File::create(&log_path).unwrap();

        let mut cmd = Command::new("pulseaudio");
        cmd.args(PULSEAUDIO_ARGS)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        apply_env(
            &mut cmd,
            &[
                ("XDG_RUNTIME_DIR".into(), runtime_dir.clone().into()),
                ("HOME".into(), home.clone().into()),
            ],
        );
        let child = cmd.spawn().expect("spawn pulseaudio");
        let mut server = PulseServer {
            child,
            dir,
            runtime_dir,
            home,
            log_path,
        };

        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = server.child.try_wait() {
                panic!("pulseaudio exited early ({st}):\n{}", server.log_text());
            }
            if server.try_pactl(&["info"]).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                panic!(
                    "pulseaudio did not answer `pactl info` within 10 s:\n{}",
                    server.log_text()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// The unix socket of this server.
    pub fn server_path(&self) -> PathBuf {
        self.runtime_dir.join("pulse").join("native")
    }

    /// Environment to give to every child that should talk to this server.
    pub fn env(&self) -> Vec<(String, OsString)> {
        let mut server = OsString::from("unix:");
        server.push(self.server_path());
        vec![
            ("PULSE_SERVER".into(), server),
            ("XDG_RUNTIME_DIR".into(), self.runtime_dir.clone().into()),
            ("HOME".into(), self.home.clone().into()),
            (
                "PULSE_CLIENTCONFIG".into(),
                self.dir.join("client.conf").into(),
            ),
        ]
    }

    /// A command with this server's environment applied.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        apply_env(&mut cmd, &self.env());
        cmd.current_dir(&self.dir);
        cmd
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn try_pactl(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command("pactl")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("spawn pactl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "pactl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Run pactl against this server; panics on failure.
    pub fn pactl(&self, args: &[&str]) -> String {
        self.try_pactl(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sink names from `pactl list short sinks`.
    pub fn sinks(&self) -> Vec<String> {
        self.pactl(&["list", "short", "sinks"])
            .lines()
            .filter_map(|l| l.split('\t').nth(1).map(str::to_owned))
            .collect()
    }

    /// Source names from `pactl list short sources`.
    pub fn sources(&self) -> Vec<String> {
        self.pactl(&["list", "short", "sources"])
            .lines()
            .filter_map(|l| l.split('\t').nth(1).map(str::to_owned))
            .collect()
    }

    /// The default sink from `pactl info`, None when unset.
    pub fn default_sink(&self) -> Option<String> {
        let info = self.pactl(&["info"]);
        info.lines()
            .find_map(|l| l.strip_prefix("Default Sink: "))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty() && s != "(null)")
    }

    /// Load a null sink; returns the module index.
    pub fn load_null_sink(&self, name: &str) -> u32 {
        let out = self.pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={name}"),
        ]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad module index {out:?}"))
    }

    /// Wait until `name` is the default sink.
    pub fn wait_default_sink(&self, name: &str, timeout: Duration) -> bool {
        poll_until(timeout, || {
            (self.default_sink().as_deref() == Some(name)).then_some(())
        })
        .is_some()
    }

    /// Names of the record streams' sources ("source-outputs"), for diagnostics.
    pub fn source_outputs(&self) -> String {
        self.pactl(&["list", "short", "source-outputs"])
    }
}

impl Drop for PulseServer {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "---- pulseaudio log ({}) ----\n{}",
                self.log_path.display(),
                self.log_text()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// Tone generator
// ---------------------------------------------------------------------------

/// A continuous sine played with pacat into a sink of a `PulseServer`.
pub struct Tone {
    child: Child,
    stop: Arc<AtomicBool>,
    writer: Option<JoinHandle<()>>,
}

impl Tone {
    pub fn play(pulse: &PulseServer, sink: Option<&str>, freq_hz: f64) -> Tone {
        Self::play_with(pulse, sink, freq_hz, 48000, 2)
    }

    pub fn play_with(
        pulse: &PulseServer,
        sink: Option<&str>,
        freq_hz: f64,
        rate: u32,
        channels: u32,
    ) -> Tone {
        let mut cmd = pulse.command("pacat");
        cmd.args([
            "--playback",
            "--raw",
            "--format=s16le",
            &format!("--rate={rate}"),
            &format!("--channels={channels}"),
            "--latency-msec=20",
        ]);
        if let Some(s) = sink {
            cmd.arg(format!("--device={s}"));
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn pacat");
        let mut stdin = child.stdin.take().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let writer = thread::spawn(move || {
            let frames_per_chunk = (rate / 100) as usize; // 10 ms
            let step = 2.0 * std::f64::consts::PI * freq_hz / rate as f64;
            let mut phase = 0.0f64;
            let mut buf = Vec::with_capacity(frames_per_chunk * channels as usize * 2);
            while !stop2.load(Ordering::Relaxed) {
                buf.clear();
                for _ in 0..frames_per_chunk {
                    let v = (phase.sin() * 16384.0) as i16;
                    phase += step;
                    if phase > 2.0 * std::f64::consts::PI {
                        phase -= 2.0 * std::f64::consts::PI;
                    }
                    for _ in 0..channels {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                }
                if stdin.write_all(&buf).is_err() {
                    break;
                }
            }
        });
        Tone {
            child,
            stop,
            writer: Some(writer),
        }
    }
}

impl Tone {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The index of this tone's sink input (polls up to 5 s for it to appear).
    pub fn sink_input(&self, pulse: &PulseServer) -> u32 {
        let needle = format!("application.process.id = \"{}\"", self.pid());
        poll_until(Duration::from_secs(5), || {
            let list = pulse.pactl(&["list", "sink-inputs"]);
            list.split("Sink Input #").skip(1).find_map(|block| {
                block
                    .contains(&needle)
                    .then(|| block.split_whitespace().next()?.parse().ok())
                    .flatten()
            })
        })
        .unwrap_or_else(|| panic!("no sink input for pacat pid {}", self.pid()))
    }

    /// Move this tone to `sink` with `pactl move-sink-input`. A move to a sink
    /// that is not the default makes it the stream's preferred sink, so a later
    /// default-sink change leaves the stream where it is. (A stream that merely
    /// started on a sink, `pacat --device=`, is carried along to the new default.)
    pub fn move_to(&self, pulse: &PulseServer, sink: &str) {
        let idx = self.sink_input(pulse).to_string();
        pulse.pactl(&["move-sink-input", &idx, sink]);
    }

    /// Name of the sink this tone is playing into right now.
    pub fn sink_name(&self, pulse: &PulseServer) -> String {
        let idx = self.sink_input(pulse).to_string();
        let sink_idx = pulse
            .pactl(&["list", "short", "sink-inputs"])
            .lines()
            .find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(idx.as_str())).then(|| cols.next().map(str::to_owned))?
            })
            .expect("sink input listed");
        pulse
            .pactl(&["list", "short", "sinks"])
            .lines()
            .find_map(|l| {
                let mut cols = l.split('\t');
                (cols.next() == Some(sink_idx.as_str())).then(|| cols.next().map(str::to_owned))?
            })
            .expect("sink listed")
    }
}

impl Drop for Tone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// Pick a port that is free right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

/// Spawn a thread that appends a child's stream to a shared string.
fn capture<R: Read + Send + 'static>(r: R, into: Arc<Mutex<String>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(r);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => into.lock().unwrap().push_str(&line),
            }
        }
    })
}

/// A running novnc-audio daemon.
pub struct Daemon {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    /// Start the daemon on 127.0.0.1 and a free port and wait until it accepts.
    pub fn start(pulse: &PulseServer, args: &[&str]) -> Daemon {
        let mut last_err = String::new();
        // A free port may be taken by a parallel test between our probe and the
        // daemon's bind; retry a few times in that case only.
        for _ in 0..3 {
            match Self::try_start(pulse, args) {
                Ok(d) => return d,
                Err((in_use, err)) => {
                    last_err = err;
                    if !in_use {
                        break;
                    }
                }
            }
        }
        panic!("{last_err}");
    }

    fn try_start(pulse: &PulseServer, args: &[&str]) -> Result<Daemon, (bool, String)> {
        let port = free_port();
        let mut cmd = pulse.command(BIN);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string(), "--allow-root"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn novnc-audio");
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let readers = vec![
            capture(child.stderr.take().unwrap(), stderr.clone()),
            capture(child.stdout.take().unwrap(), stdout.clone()),
        ];
        let mut d = Daemon {
            child,
            port,
            stderr,
            stdout,
            readers,
            status: None,
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(st)) = d.child.try_wait() {
                d.status = Some(st);
                // Let the reader threads drain the pipes.
                for r in d.readers.drain(..) {
                    let _ = r.join();
                }
                let text = d.stderr_text();
                let in_use = text.to_lowercase().contains("in use");
                return Err((
                    in_use,
                    format!("novnc-audio exited before listening ({st}); args {args:?}; stderr:\n{text}"),
                ));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(d);
            }
            if Instant::now() >= deadline {
                return Err((
                    false,
                    format!(
                        "novnc-audio did not accept on port {port} within 10 s; stderr:\n{}",
                        d.stderr_text()
                    ),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// `ws://127.0.0.1:PORT<path>`
    pub fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => {
                self.status = Some(st);
                false
            }
            _ => true,
        }
    }

    /// Send a signal (e.g. "TERM", "HUP") to the daemon.
    pub fn signal(&self, sig: &str) {
        send_signal(self.pid(), sig);
    }

    /// Wait for the daemon to exit; None on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(st) = self.status {
            return Some(st);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                for r in self.readers.drain(..) {
                    let _ = r.join();
                }
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait up to 5 s for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        self.signal("TERM");
        match self.wait_exit(Duration::from_secs(5)) {
            Some(st) => st,
            None => panic!(
                "novnc-audio did not exit within 5 s of SIGTERM; stderr:\n{}",
                self.stderr_text()
            ),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!(
                "---- novnc-audio stderr (port {}) ----\n{}",
                self.port,
                self.stderr_text()
            );
        }
    }
}

// ---------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------

/// One parsed wire frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ms: u64,
    pub codec: u8,
    pub payload: Vec<u8>,
    pub received: Instant,
}

/// Parse one binary message of the wire format.
pub fn parse_frame(data: &[u8], received: Instant) -> Frame {
    assert!(
        data.len() >= 9,
        "binary message of {} bytes is shorter than the 9-byte header",
        data.len()
    );
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&data[..8]);
    Frame {
        ts_ms: u64::from_be_bytes(ts),
        codec: data[8],
        payload: data[9..].to_vec(),
        received,
    }
}

/// A blocking tungstenite client with a read timeout.
pub struct WsClient {
    pub ws: WebSocket<TcpStream>,
    pub response: tungstenite::handshake::client::Response,
    /// When the TCP connect started.
    pub started: Instant,
    /// When the handshake completed.
    pub handshake_done: Instant,
}

/// Outcome of reading one message.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    Close(Option<CloseFrame>),
}

impl WsClient {
    pub fn connect(url: &str) -> WsClient {
        Self::try_connect(url, &[]).unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connect with extra request headers.
    pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                tungstenite::http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let host = req.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = req.uri().port_u16().unwrap_or(80);
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("tcp connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, response) = tungstenite::client(req, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => format!("handshake: {e}"),
            tungstenite::HandshakeError::Interrupted(_) => "handshake interrupted".into(),
        })?;
        Ok(WsClient {
            ws,
            response,
            started,
            handshake_done: Instant::now(),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.ws.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    /// Next audio frame or close; skips text, ping and pong messages.
    pub fn next(&mut self) -> Result<Next, tungstenite::Error> {
        loop {
            match self.ws.read()? {
                Message::Binary(b) => return Ok(Next::Frame(parse_frame(&b, Instant::now()))),
                Message::Close(c) => return Ok(Next::Close(c)),
                _ => continue,
            }
        }
    }

    /// Next audio frame; panics on close, error or timeout.
    pub fn next_frame(&mut self) -> Frame {
        match self.next() {
            Ok(Next::Frame(f)) => f,
            Ok(Next::Close(c)) => panic!("connection closed by the server: {c:?}"),
            Err(e) => panic!("reading a frame failed: {e}"),
        }
    }

    /// All frames received during `dur`.
    pub fn collect_for(&mut self, dur: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + dur;
        let mut frames = Vec::new();
        while Instant::now() < deadline {
            frames.push(self.next_frame());
        }
        frames
    }

    /// Value of a response header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP
// ---------------------------------------------------------------------------

/// A raw HTTP response: status code, head and body (as read until EOF or timeout).
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim().to_ascii_lowercase() == name).then(|| v.trim().to_owned())
        })
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Send raw bytes; read the response head, then the body: for 101 nothing,
/// with Content-Length exactly that many bytes, otherwise until EOF/timeout.
/// Without a complete head: Err("closed: ...") if the server closed or reset
/// the connection, Err("timeout: ...") if it said nothing for 3 s.
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> Result<RawResponse, String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(request).map_err(|e| format!("write: {e}"))?;
    read_response(&mut s)
}

/// Read one HTTP response from a stream (see `raw_request`).
pub fn read_response(s: &mut TcpStream) -> Result<RawResponse, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = find(&buf, b"\r\n\r\n") {
            break p;
        }
        let so_far = String::from_utf8_lossy(&buf).into_owned();
        match s.read(&mut chunk) {
            Ok(0) => return Err(format!("closed: EOF after {so_far:?}")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!(
                    "timeout: no complete response head, got {so_far:?}"
                ))
            }
            Err(e) => return Err(format!("closed: {e} after {so_far:?}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut body = buf[head_end + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    let mut resp = RawResponse {
        status,
        head,
        body: Vec::new(),
    };
    if status != 101 {
        let len: Option<usize> = resp.header("content-length").and_then(|v| v.parse().ok());
        loop {
            if len.is_some_and(|l| body.len() >= l) {
                break;
            }
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        if let Some(l) = len {
            body.truncate(l);
        }
    }
    resp.body = body;
    Ok(resp)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket upgrade request for `path` with a fixed key.
pub fn upgrade_request(path: &str, extra_headers: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    )
}

// ---------------------------------------------------------------------------
// Opus
// ---------------------------------------------------------------------------

pub struct OpusDecoder {
    dec: opus::Decoder,
    channels: usize,
    buf: Vec<i16>,
}

impl OpusDecoder {
    pub fn new(channels: usize) -> OpusDecoder {
        let ch = if channels == 1 {
            opus::Channels::Mono
        } else {
            opus::Channels::Stereo
        };
        OpusDecoder {
            dec: opus::Decoder::new(48000, ch).expect("opus decoder"),
            channels,
            buf: vec![0; 5760 * channels],
        }
    }

    /// Decode one packet to interleaved i16; panics if libopus rejects it.
    pub fn decode(&mut self, payload: &[u8]) -> Vec<i16> {
        let n = self
            .dec
            .decode(payload, &mut self.buf, false)
            .unwrap_or_else(|e| panic!("opus decode of a {}-byte packet: {e}", payload.len()));
        self.buf[..n * self.channels].to_vec()
    }
}

/// Samples per channel at 48 kHz announced by an Opus packet's TOC.
pub fn opus_packet_samples(payload: &[u8]) -> usize {
    opus::packet::get_nb_samples(payload, 48000).expect("valid opus packet")
}

/// The stereo flag of an Opus packet's TOC byte.
pub fn opus_packet_is_stereo(payload: &[u8]) -> bool {
    payload.first().is_some_and(|b| b & 0x04 != 0)
}

/// PCM s16le bytes to i16 samples.
pub fn pcm_samples(payload: &[u8]) -> Vec<i16> {
    payload
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

// ---------------------------------------------------------------------------
// Signal analysis
// ---------------------------------------------------------------------------

/// Interleaved i16 to mono f32 in -1..1 (channel average).
pub fn to_mono(interleaved: &[i16], channels: usize) -> Vec<f32> {
    interleaved
        .chunks_exact(channels)
        .map(|c| c.iter().map(|&s| s as f32).sum::<f32>() / (channels as f32 * 32768.0))
        .collect()
}

pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// Goertzel power of `freq` in a Hann-windowed signal.
fn goertzel(windowed: &[f32], rate: f64, freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * std::f64::consts::PI * freq / rate).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in windowed {
        let s = x as f64 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn hann(x: &[f32]) -> Vec<f32> {
    let n = x.len();
    if n < 2 {
        return x.to_vec();
    }
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
            v * w as f32
        })
        .collect()
}

/// Dominant frequency in 100..4000 Hz of a mono signal: Goertzel on a Hann
/// window over a 5 Hz grid, then a 0.5 Hz grid around the best bin.
pub fn dominant_frequency(mono: &[f32], rate: u32) -> f64 {
    let rate = rate as f64;
    let w = hann(mono);
    let mut best = (0.0f64, -1.0f64);
    let mut f = 100.0;
    while f <= 4000.0 {
        let p = goertzel(&w, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 5.0;
    }
    let centre = best.0;
    let mut f = centre - 5.0;
    while f <= centre + 5.0 {
        let p = goertzel(&w, rate, f);
        if p > best.1 {
            best = (f, p);
        }
        f += 0.5;
    }
    best.0
}

/// Power ratio of `a` over `b` in the signal (Hann window).
pub fn power_ratio(mono: &[f32], rate: u32, a: f64, b: f64) -> f64 {
    let w = hann(mono);
    goertzel(&w, rate as f64, a) / goertzel(&w, rate as f64, b).max(1e-12)
}

// ---------------------------------------------------------------------------
// Frame stream checks
// ---------------------------------------------------------------------------

/// Check that timestamps step by exactly `step` ms, never go backwards, and
/// allow at most one forward jump, within the first `jump_window` frames.
pub fn check_timestamps(frames: &[Frame], step: u64, jump_window: usize) -> Result<(), String> {
    let mut jumps = Vec::new();
    for (i, w) in frames.windows(2).enumerate() {
        let (a, b) = (w[0].ts_ms, w[1].ts_ms);
        if b <= a {
            return Err(format!(
                "timestamp did not advance at frame {}: {a} -> {b}",
                i + 1
            ));
        }
        if b - a != step {
            let arrival_ms = w[1]
                .received
                .saturating_duration_since(w[0].received)
                .as_millis();
            jumps.push((i + 1, a, b, arrival_ms));
        }
    }
    match jumps.as_slice() {
        [] => Ok(()),
        [(i, _, _, _)] if *i <= jump_window => Ok(()),
        _ => Err(format!(
            "timestamps must step by {step} ms; irregular steps \
             (frame index, from ts, to ts, ms between their arrivals): {:?}",
            &jumps[..jumps.len().min(20)]
        )),
    }
}

/// Frames per second by arrival time inside [from, from + dur).
pub fn arrival_rate(frames: &[Frame], from: Instant, dur: Duration) -> f64 {
    let n = frames
        .iter()
        .filter(|f| f.received >= from && f.received < from + dur)
        .count();
    n as f64 / dur.as_secs_f64()
}

/// Frames per second by timestamps: frames between the first and last ts.
pub fn timestamp_rate(frames: &[Frame]) -> f64 {
    if frames.len() < 2 {
        return 0.0;
    }
    let span = frames.last().unwrap().ts_ms - frames[0].ts_ms;
    (frames.len() - 1) as f64 * 1000.0 / span as f64
}

/// Largest gap between consecutive timestamps.
pub fn max_ts_gap(frames: &[Frame]) -> u64 {
    frames
        .windows(2)
        .map(|w| w[1].ts_ms.saturating_sub(w[0].ts_ms))
        .max()
        .unwrap_or(0)
}

/// Decode a run of Opus frames and return the last `secs` of mono audio.
pub fn decode_tail(frames: &[Frame], channels: usize, secs: f64) -> Vec<f32> {
    let mut dec = OpusDecoder::new(channels);
    let mut pcm = Vec::new();
    for f in frames {
        pcm.extend(dec.decode(&f.payload));
    }
    tail_mono(&pcm, channels, secs)
}

/// Last `secs` of interleaved audio as mono.
pub fn tail_mono(pcm: &[i16], channels: usize, secs: f64) -> Vec<f32> {
    let mono = to_mono(pcm, channels);
    let n = ((48000.0 * secs) as usize).min(mono.len());
    mono[mono.len() - n..].to_vec()
}

/// Count of per-key occurrences, for diagnostics.
pub fn histogram<T: std::hash::Hash + Eq + Copy + Ord>(
    it: impl Iterator<Item = T>,
) -> Vec<(T, usize)> {
    let mut m: HashMap<T, usize> = HashMap::new();
    for v in it {
        *m.entry(v).or_default() += 1;
    }
    let mut v: Vec<_> = m.into_iter().collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, secs: f64) -> Vec<f32> {
        let n = (48000.0 * secs) as usize;
        (0..n)
            .map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / 48000.0).sin()) as f32)
            .collect()
    }

    #[test]
    fn detects_synthetic_sines() {
        for f in [440.0, 880.0, 1000.0, 1234.0] {
            let got = dominant_frequency(&sine(f, 0.5), 48000);
            assert!((got - f).abs() <= 2.0, "{f} Hz detected as {got}");
        }
    }

    #[test]
    fn detects_frequency_in_one_20ms_frame() {
        for f in [440.0, 880.0] {
            let got = dominant_frequency(&sine(f, 0.02), 48000);
            assert!((got - f).abs() <= 25.0, "{f} Hz (20 ms) detected as {got}");
        }
        assert!(power_ratio(&sine(880.0, 0.02), 48000, 880.0, 440.0) > 100.0);
    }

    #[test]
    fn stereo_to_mono_and_rms() {
        let st: Vec<i16> = [16384i16, 16384, -16384, -16384].repeat(10);
        let m = to_mono(&st, 2);
        assert_eq!(m.len(), 20);
        assert!((rms(&m) - 0.5).abs() < 1e-3);
    }

    #[test]
    fn timestamp_checks() {
        let t = Instant::now();
        let mk = |ts: &[u64]| -> Vec<Frame> {
            ts.iter()
                .map(|&ts_ms| Frame {
                    ts_ms,
                    codec: 1,
                    payload: vec![],
                    received: t,
                })
                .collect()
        };
        assert!(check_timestamps(&mk(&[0, 20, 40, 60]), 20, 5).is_ok());
        assert!(check_timestamps(&mk(&[0, 100, 120, 140]), 20, 5).is_ok());
        assert!(check_timestamps(&mk(&[0, 20, 40, 40]), 20, 5).is_err());
        assert!(check_timestamps(&mk(&[0, 20, 10]), 20, 5).is_err());
        assert!(check_timestamps(&mk(&[0, 100, 120, 200]), 20, 5).is_err());
        assert_eq!(max_ts_gap(&mk(&[0, 20, 100])), 80);
    }
}

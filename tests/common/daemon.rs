//! The daemon under test as a child process: started on 127.0.0.1 and a free port
//! against a private server, its stdout and stderr captured, stopped by pid; and
//! `setup()`, the private server plus a daemon that has created and selected its sink.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{send_signal, PulseServer};

/// Path of the daemon binary built by cargo for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_novnc-audio");

/// The sink the daemon creates and selects.
pub const SINK: &str = "novnc_audio";

/// A fresh private server (checked to have no sink) plus a daemon started with
/// `args` that has created its null sink and made it the default.
pub fn setup(args: &[&str]) -> (PulseServer, Daemon) {
    let pulse = PulseServer::start();
    assert!(pulse.sinks().is_empty(), "a fresh test server has no sinks");
    let daemon = Daemon::start(&pulse, args);
    assert!(
        pulse.wait_default_sink(SINK, Duration::from_secs(5)),
        "daemon did not create and select the null sink {SINK} within 5 s; sinks {:?}, default {:?}",
        pulse.sinks(),
        pulse.default_sink()
    );
    (pulse, daemon)
}

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

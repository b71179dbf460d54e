//! The process around the server: --daemonize with a pid file and syslog, systemd's
//! notify protocol, journal priority prefixes, SIGHUP reload, the refusal to run as
//! root.

mod common;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

fn recv_all(sock: &UnixDatagram, until: impl Fn(&str) -> bool, timeout: Duration) -> String {
    let mut all = String::new();
    let end = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while Instant::now() < end && !until(&all) {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
            all.push('\n');
        }
    }
    all
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
}

/// The daemonizing tests may bind /dev/log, and their daemons log there: one at a time.
static DEV_LOG: Mutex<()> = Mutex::new(());

/// Where the daemon's syslog writes.
const DEV_LOG_PATH: &str = "/dev/log";

/// Binds /dev/log for the test if the machine has no syslog (CI has none).
fn test_syslog() -> Option<UnixDatagram> {
    let dev_log = Path::new(DEV_LOG_PATH);
    if dev_log.exists() {
        skip("the syslog lines: /dev/log is the machine's syslog, not the test's");
        None
    } else {
        Some(UnixDatagram::bind(dev_log).expect("bind /dev/log for the test"))
    }
}

/// Starts the daemon with --daemonize and a pid file; returns the parent's exit status.
fn start_daemonized(pulse: &PulseServer, pidfile: &Path, port: u16) -> std::process::ExitStatus {
    pulse
        .command(BIN)
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "--allow-root"])
        .arg("--daemonize")
        .arg("--pidfile")
        .arg(pidfile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
}

/// Removes the test's /dev/log, kills a daemon the test left running, re-raises its panic.
fn finish(own_syslog: bool, pidfile: &Path, result: std::thread::Result<()>) {
    if own_syslog {
        let _ = std::fs::remove_file(DEV_LOG_PATH);
    }
    if let Err(e) = result {
        if let Ok(pid) = std::fs::read_to_string(pidfile) {
            send_signal(pid.trim().parse().unwrap_or(0), "KILL");
        }
        std::panic::resume_unwind(e);
    }
}

#[test]
fn daemonize_writes_pidfile_logs_to_syslog_and_cleans_up() {
    let _one = DEV_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let pulse = PulseServer::start();
    let syslog = test_syslog();
    let pidfile = pulse.dir().join("novnc-audio.pid");
    let port = free_port();
    let started = Instant::now();
    let status = start_daemonized(&pulse, &pidfile, port);
    let result = std::panic::catch_unwind(|| {
        assert!(status.success(), "the parent exits 0 once forked");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the parent returns at once"
        );
        let pid: u32 = poll_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
        })
        .expect("pid file written");
        assert!(pid_alive(pid), "the daemon runs as pid {pid}");
        let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ppid: u32 = ppid
            .rsplit(") ")
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert_ne!(
            ppid,
            std::process::id(),
            "detached from the starting process"
        );
        poll_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("the daemon listens");
        if let Some(sock) = &syslog {
            let log = recv_all(sock, |s| s.contains("listening on"), Duration::from_secs(5));
            assert!(log.contains("novnc-audio"), "syslog ident: {log}");
            assert!(
                log.contains("listening on ws://127.0.0.1:"),
                "syslog: {log}"
            );
            // Facility daemon (3) and level info (6): <30>.
            assert!(log.contains("<30>"), "facility daemon, level info: {log}");
        }
        send_signal(pid, "TERM");
        poll_until(Duration::from_secs(5), || (!pid_alive(pid)).then_some(()))
            .expect("SIGTERM ends the daemon");
        assert!(!pidfile.exists(), "SIGTERM removes the pid file");
    });
    finish(syslog.is_some(), &pidfile, result);
}

/// A SIGTERM while the daemon is still starting (the pid file exists, the port may not yet)
/// must wait for the handlers, not kill the process with its pid file left behind.
/// CI once caught the default action: the daemon gone, the pid file still there.
#[test]
fn sigterm_while_starting_still_removes_the_pid_file() {
    let _one = DEV_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let pulse = PulseServer::start();
    let syslog = test_syslog();
    let pidfile = pulse.dir().join("novnc-audio.pid");
    let port = free_port();
    let status = start_daemonized(&pulse, &pidfile, port);
    let result = std::panic::catch_unwind(|| {
        assert!(status.success(), "the parent exits 0 once forked");
        // The first moment the pid is readable: the daemon has only just forked.
        let deadline = Instant::now() + Duration::from_secs(5);
        let pid: u32 = loop {
            // Whole only with its newline: never signal a torn read.
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .filter(|s| s.ends_with('\n'))
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "pid file written");
            thread::sleep(Duration::from_micros(200));
        };
        // SAFETY: kill has no memory preconditions; the pid is the daemon this test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0, "kill");
        poll_until(Duration::from_secs(5), || (!pid_alive(pid)).then_some(()))
            .expect("SIGTERM ends the daemon");
        assert!(
            !pidfile.exists(),
            "a SIGTERM during start-up still removes the pid file"
        );
        if let Some(sock) = &syslog {
            let log = recv_all(sock, |s| s.contains("stopped"), Duration::from_secs(2));
            assert!(log.contains("SIGTERM: shutting down"), "syslog: {log}");
            assert!(log.contains("stopped"), "syslog: {log}");
        }
    });
    finish(syslog.is_some(), &pidfile, result);
}

#[test]
fn notify_socket_gets_ready_status_and_stopping() {
    let pulse = PulseServer::start();
    let path = pulse.dir().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    let port = free_port();
    let mut child = pulse
        .command(BIN)
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "--allow-root"])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "2000000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // WATCHDOG_PID is unset, so the watchdog is ours: pings at most every second.
    let got = recv_all(
        &sock,
        |s| s.contains("READY=1") && s.contains("WATCHDOG=1"),
        Duration::from_secs(8),
    );
    assert!(got.contains("READY=1"), "{got}");
    assert!(got.contains("STATUS="), "{got}");
    assert!(got.contains("WATCHDOG=1"), "{got}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
        "ready means listening"
    );
    send_signal(child.id(), "TERM");
    let got = recv_all(&sock, |s| s.contains("STOPPING=1"), Duration::from_secs(5));
    assert!(got.contains("STOPPING=1"), "{got}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[test]
fn journal_stream_gets_priority_prefixes() {
    let pulse = PulseServer::start();
    let log = pulse.dir().join("stderr.log");
    let file = std::fs::File::create(&log).unwrap();
    let meta = file.metadata().unwrap();
    let port = free_port();
    let mut child = pulse
        .command(BIN)
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "--allow-root"])
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stderr(file)
        .spawn()
        .unwrap();
    poll_until(Duration::from_secs(5), || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|s| s.contains("listening on"))
    })
    .expect("logs the listener");
    send_signal(child.id(), "TERM");
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
    assert!(text.contains("<6>listening on ws://127.0.0.1:"), "{text}");
}

#[test]
fn sighup_reloads_the_config_file() {
    let pulse = PulseServer::start();
    let conf = pulse.dir().join("novnc-audio.conf");
    std::fs::write(&conf, "bitrate = 64000\nmax-clients = 5\n").unwrap();
    let conf_s = conf.display().to_string();
    let daemon = Daemon::start(&pulse, &["--config", &conf_s]);
    let _client = WsClient::connect(&daemon.url("/audio"));
    std::fs::write(
        &conf,
        "bitrate = 32000\nmax-clients = 1\npath = /elsewhere\n",
    )
    .unwrap();
    daemon.signal("HUP");
    let text = poll_until(Duration::from_secs(5), || {
        let t = daemon.stderr_text();
        t.contains("restart is needed").then_some(t)
    })
    .expect("reload logged");
    assert!(text.contains("bitrate now 32000"), "{text}");
    assert!(
        text.contains("host, port or path"),
        "says what needs a restart: {text}"
    );
    // max-clients = 1 applies live: the second client is refused.
    let resp = raw_request(daemon.addr(), upgrade_request("/audio", "").as_bytes()).unwrap();
    assert_eq!(resp.status, 503, "{}", resp.head);

    // A broken file keeps the running configuration.
    std::fs::write(&conf, "bogus = 1\n").unwrap();
    daemon.signal("HUP");
    let text = poll_until(Duration::from_secs(5), || {
        let t = daemon.stderr_text();
        t.contains("keeping the running configuration").then_some(t)
    })
    .expect("bad reload refused");
    assert!(text.contains("unknown key 'bogus'"), "{text}");
}

/// As root without --allow-root the daemon refuses to start: exit status 1, a
/// message that says how to run it as a user (or with --allow-root), and nothing
/// listening on its port.
#[test]
fn root_is_refused_without_allow_root() {
    if !running_as_root() {
        skip("not running as root");
        return;
    }
    let pulse = PulseServer::start();
    let port = free_port();
    let child = pulse
        .command(BIN)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn novnc-audio");
    let pid = child.id();
    let waiter = thread::spawn(move || child.wait_with_output());
    let deadline = Instant::now() + Duration::from_secs(5);
    while !waiter.is_finished() {
        if Instant::now() > deadline {
            send_signal(pid, "KILL");
            let _ = waiter.join();
            panic!("novnc-audio as root without --allow-root was still running after 5 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    let out = waiter.join().unwrap().expect("wait for novnc-audio");
    let err = String::from_utf8_lossy(&out.stderr);
    println!("as root: {} {err:?}", out.status);
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status as root; stderr {err:?}"
    );
    assert!(err.contains("refusing to run as root"), "{err}");
    assert!(
        err.contains("--allow-root") && err.contains("systemctl --user"),
        "the message must say how to run it as a user (or --allow-root): {err:?}"
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "something listens on the port of the refused daemon"
    );
}

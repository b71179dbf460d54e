//! A private PipeWire session (dbus-daemon, pipewire, wireplumber, pipewire-pulse) in
//! the runtime dir of a harness `PulseServer`, for the tests that run against
//! PipeWire's PulseAudio server. Everything it starts is killed by pid.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{missing_programs, poll_until, skip, PulseServer};

pub const PIPEWIRE_PROGRAMS: &[&str] =
    &["pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon"];

/// Returns true (after saying why, see `skip`) when the PipeWire programs are not
/// installed: under CI=true that fails the test instead.
pub fn pipewire_missing() -> bool {
    let missing = missing_programs(PIPEWIRE_PROGRAMS);
    if missing.is_empty() {
        return false;
    }
    skip(&format!(
        "{} not installed (apt-get install pipewire pipewire-pulse wireplumber dbus)",
        missing.join(", ")
    ));
    true
}

// ---------------------------------------------------------------------------
// A private PipeWire session
// ---------------------------------------------------------------------------

/// A PipeWire session in the runtime dir of a harness `PulseServer`: the harness'
/// pulseaudio is killed (by pid) and pipewire-pulse takes its socket path, so the
/// harness' `Daemon`, `Tone` and `pactl` talk to PipeWire unchanged.
pub struct PipeWire<'a> {
    pub pulse: &'a PulseServer,
    runtime: PathBuf,
    dir: PathBuf,
    dbus: Option<Child>,
    /// pipewire, wireplumber, pipewire-pulse.
    stack: Vec<Child>,
}

impl<'a> PipeWire<'a> {
    pub fn start(pulse: &'a PulseServer) -> PipeWire<'a> {
        let runtime = pulse.runtime_dir().to_path_buf();
        // The harness' pulseaudio goes (the harness reaps it when it is dropped);
        // pipewire-pulse takes its socket path.
        pulse.kill();
        let _ = fs::remove_file(pulse.server_path());

        let dir = pulse.dir().join("pw");
        for d in ["config", "state", "data"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let bus = runtime.join("bus");
        let mut cmd = pulse.command("dbus-daemon");
        cmd.args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", bus.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(dir.join("dbus.log")).unwrap()));
        let dbus = cmd.spawn().expect("spawn dbus-daemon");
        poll_until(Duration::from_secs(5), || bus.exists().then_some(()))
            .expect("dbus-daemon did not create its socket within 5 s");
        let mut pw = PipeWire {
            pulse,
            runtime,
            dir,
            dbus: Some(dbus),
            stack: Vec::new(),
        };
        pw.start_stack();
        pw
    }

    fn spawn(&self, program: &str) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{program}.log")))
            .unwrap();
        let mut cmd = self.pulse.command(program);
        cmd.env_remove("PULSE_SERVER")
            .env_remove("PULSE_CLIENTCONFIG")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", self.runtime.join("bus").display()),
            )
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        cmd.spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    }

    /// Starts pipewire, wireplumber and pipewire-pulse; returns when `pactl info`
    /// succeeds on the PulseAudio socket.
    pub fn start_stack(&mut self) -> Instant {
        let _ = fs::remove_file(self.pulse.pid_file());
        let pw = self.spawn("pipewire");
        let socket = self.runtime.join("pipewire-0");
        poll_until(Duration::from_secs(5), || socket.exists().then_some(()))
            .expect("pipewire did not create its socket within 5 s");
        self.stack.push(pw);
        let wp = self.spawn("wireplumber");
        self.stack.push(wp);
        let pp = self.spawn("pipewire-pulse");
        self.stack.push(pp);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            for c in &mut self.stack {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("a PipeWire process exited ({st}):\n{}", self.logs());
                }
            }
            if self.pulse.try_pactl(&["info"]).is_ok() {
                return Instant::now();
            }
            assert!(
                Instant::now() < deadline,
                "pipewire-pulse did not answer within 10 s:\n{}",
                self.logs()
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL pipewire-pulse, wireplumber and pipewire (by pid); waits for them.
    pub fn kill_stack(&mut self) {
        while let Some(mut c) = self.stack.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(self.runtime.join("pipewire-0"));
        let _ = fs::remove_file(self.runtime.join("pipewire-0.lock"));
        assert!(
            self.pulse.try_pactl(&["info"]).is_err(),
            "pactl info still succeeds after the PipeWire stack was killed"
        );
    }

    pub fn logs(&self) -> String {
        ["pipewire", "wireplumber", "pipewire-pulse", "dbus"]
            .iter()
            .map(|p| {
                format!(
                    "---- {p} ----\n{}",
                    fs::read_to_string(self.dir.join(format!("{p}.log"))).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PipeWire<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("{}", self.logs());
        }
        while let Some(mut c) = self.stack.pop() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut d) = self.dbus.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Waits until PipeWire offers at least one sink and a default sink; returns it.
pub fn pipewire_default_sink(pulse: &PulseServer) -> String {
    poll_until(Duration::from_secs(5), || {
        pulse
            .try_pactl(&["info"])
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("Default Sink: "))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s != "(null)" && !s.starts_with('@'))
    })
    .expect("PipeWire has no default sink 5 s after starting")
}

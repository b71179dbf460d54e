//! A private PulseAudio server per test, and the scrubbed environment every child
//! we start gets, so nothing reaches the machine's own audio server or session bus.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::{poll_until, send_signal};

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

static TEMP_DIRS: AtomicUsize = AtomicUsize::new(0);

/// A unique, short temp dir (unix socket paths are limited to 108 bytes).
pub(super) fn unique_temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = TEMP_DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("nvat-{tag}-{}-{n}-{nanos}", std::process::id()));
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Apply a scrubbed environment plus `vars` to a command.
pub(super) fn apply_env(cmd: &mut Command, vars: &[(String, OsString)]) {
    for v in SCRUBBED_VARS {
        cmd.env_remove(v);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
}

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

    /// The XDG_RUNTIME_DIR of this server's clients.
    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }

    /// pulseaudio's pid file, next to its socket.
    pub fn pid_file(&self) -> PathBuf {
        self.server_path().with_file_name("pid")
    }

    /// SIGKILLs this pulseaudio by pid (Drop reaps it) and returns once it is dead
    /// and its socket refuses clients. Its pid file goes too: the zombie's pid
    /// would pass a new server's "already running" check.
    pub fn kill(&self) {
        let pid = self.child.id();
        send_signal(pid, "KILL");
        let dead = poll_until(Duration::from_secs(5), || {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            (stat.is_empty() || state.starts_with('Z')).then_some(())
        });
        assert!(dead.is_some(), "pulseaudio {pid} still alive after SIGKILL");
        let _ = fs::remove_file(self.pid_file());
        assert!(
            self.try_pactl(&["info"]).is_err(),
            "pactl info still succeeds after the server was killed"
        );
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

    /// The description of sink `name` (`pactl list sinks`), None when it is not listed.
    pub fn sink_description(&self, name: &str) -> Option<String> {
        let list = self.pactl(&["list", "sinks"]);
        list.split("Sink #").skip(1).find_map(|block| {
            block
                .lines()
                .any(|l| l.trim() == format!("Name: {name}"))
                .then(|| {
                    block
                        .lines()
                        .find_map(|l| l.trim().strip_prefix("Description: "))
                        .map(str::to_owned)
                })
                .flatten()
        })
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

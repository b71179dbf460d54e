//! The resilience scenarios against PipeWire's PulseAudio server (pipewire-pulse):
//! a tone played into the default sink is heard, the audio server restarted, the
//! recorded sink unloaded. Each test runs a private session (its own dbus-daemon,
//! XDG_RUNTIME_DIR, pipewire, wireplumber and pipewire-pulse) and kills it by pid.
//! Skipped, with a "SKIPPED:" line, when those programs are not installed (Debian:
//! pipewire pipewire-pulse wireplumber dbus); under CI=true, which installs them
//! (scripts/test-deps.txt), they fail instead.

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::scenarios::*;
use common::*;

const PROGRAMS: &[&str] = &["pipewire", "wireplumber", "pipewire-pulse", "dbus-daemon"];

/// Returns true (after saying why, see `skip`) when the PipeWire programs are not
/// installed.
fn cannot_run() -> bool {
    let missing = missing_programs(PROGRAMS);
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
struct PipeWire<'a> {
    pulse: &'a PulseServer,
    runtime: PathBuf,
    dir: PathBuf,
    dbus: Option<Child>,
    /// pipewire, wireplumber, pipewire-pulse.
    stack: Vec<Child>,
}

impl<'a> PipeWire<'a> {
    fn start(pulse: &'a PulseServer) -> PipeWire<'a> {
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
    fn start_stack(&mut self) -> Instant {
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
    fn kill_stack(&mut self) {
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

    fn logs(&self) -> String {
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
fn wait_default_sink(pulse: &PulseServer) -> String {
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

/// Sink names, none when pactl fails.
fn sink_names(pulse: &PulseServer) -> Vec<String> {
    pulse
        .try_pactl(&["list", "short", "sinks"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(1).map(str::to_owned))
        .collect()
}

fn own_sinks(pulse: &PulseServer) -> usize {
    sink_names(pulse).iter().filter(|s| *s == SINK).count()
}

/// The source named in the daemon's last "recording from" line.
fn recording_from(daemon: &Daemon) -> Option<String> {
    daemon
        .stderr_text()
        .lines()
        .rev()
        .find_map(|l| l.split("recording from ").nth(1))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// PipeWire always offers a sink (the dummy `auto_null` while there is no real one):
/// whatever the daemon records, a tone played into the default sink must be heard.
#[test]
fn pipewire_tone_into_default_sink_is_heard() {
    if cannot_run() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    let default_before = wait_default_sink(&pulse);
    let sinks_before = pulse.sinks();
    let daemon = Daemon::start(&pulse, &[]);
    let recording =
        poll_until(Duration::from_secs(5), || recording_from(&daemon)).unwrap_or_else(|| {
            panic!(
                "no \"recording from\" within 5 s:\n{}",
                daemon.stderr_text()
            )
        });
    println!(
        "PipeWire before the daemon: sinks {sinks_before:?}, default {default_before}; \
         the daemon records {recording}; sinks now {:?}, default {:?}",
        pulse.sinks(),
        pulse.default_sink()
    );
    let readers = [Reader::start(&daemon.url("/audio"))];
    let mut listeners = [Listener::new()];
    let started = Instant::now();
    let _tone = Tone::play(&pulse, None, 440.0);
    let heard = wait_heard(
        &readers,
        &mut listeners,
        440.0,
        started,
        10,
        Duration::from_secs(5),
    );
    let heard = heard.unwrap_or_else(|e| {
        panic!(
            "a tone played into the default sink ({:?}) is not heard; the daemon records {:?}: {e}\n\
             sink inputs:\n{}\nsource outputs:\n{}\ndaemon stderr:\n{}",
            pulse.default_sink(),
            recording_from(&daemon),
            pulse.pactl(&["list", "short", "sink-inputs"]),
            pulse.source_outputs(),
            daemon.stderr_text()
        )
    });
    println!(
        "440 Hz into the default sink heard {:.1} ms after the player started (recording {:?})",
        ms_since(started, heard),
        recording_from(&daemon)
    );
    assert!(own_sinks(&pulse) <= 1, "duplicate novnc_audio sinks");
}

/// The PipeWire stack as the server of `restart_cycles`, with the 440 Hz player in
/// the default sink.
struct Restarts<'p, 'a> {
    pw: &'p mut PipeWire<'a>,
    tone: Option<Tone>,
    /// The default sink after the last restart.
    default: String,
}

impl AudioServer for Restarts<'_, '_> {
    const NAME: &'static str = "pipewire-pulse";

    fn play(&mut self) {
        self.tone = Some(Tone::play(self.pw.pulse, None, 440.0));
    }

    fn restart(&mut self, _: usize, _: &Daemon) -> Instant {
        self.pw.kill_stack();
        drop(self.tone.take());
        let accepted = self.pw.start_stack();
        self.default = wait_default_sink(self.pw.pulse);
        accepted
    }

    fn state(&self, daemon: &Daemon) -> String {
        format!(
            "; default {}, recording {:?}, sinks {:?}",
            self.default,
            recording_from(daemon),
            sink_names(self.pw.pulse)
        )
    }

    fn check(&self, cycle: usize) {
        assert!(
            own_sinks(self.pw.pulse) <= 1,
            "cycle {cycle}: duplicate novnc_audio sinks"
        );
    }
}

/// A daemon on a PipeWire that has a default sink, once it records.
fn start_daemon(pulse: &PulseServer) -> Daemon {
    wait_default_sink(pulse);
    let daemon = Daemon::start(pulse, &[]);
    poll_until(Duration::from_secs(5), || recording_from(&daemon)).expect("recording");
    daemon
}

#[test]
fn pipewire_restarted() {
    if cannot_run() {
        return;
    }
    let _serial = serial();
    let cycles = if full() { 20 } else { 5 };
    let pulse = PulseServer::start();
    let mut pw = PipeWire::start(&pulse);
    let mut daemon = start_daemon(&pulse);
    let readers = two_readers(&daemon);
    let mut listeners = [Listener::new(), Listener::new()];
    let mut restarts = Restarts {
        pw: &mut pw,
        tone: None,
        default: String::new(),
    };
    restarts.play();
    restart_cycles(
        &mut restarts,
        &mut daemon,
        &readers,
        &mut listeners,
        cycles,
        "PipeWire, ",
    );
    drop(restarts.tone.take());
}

#[test]
fn pipewire_recorded_sink_unloaded() {
    if cannot_run() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    let mut daemon = start_daemon(&pulse);
    let readers = two_readers(&daemon);
    pulse.load_null_sink("keep");
    let _a = follow_unloaded_sink(
        &pulse,
        &mut daemon,
        &readers,
        "keep",
        "PipeWire: ",
        |daemon| {
            format!(
                "; default {:?}, recording {:?}\n{}",
                pulse.default_sink(),
                recording_from(daemon),
                daemon.stderr_text()
            )
        },
    );
}

/// The microphone on pipewire-pulse: the feed sink's arrival drops `auto_null` and
/// becomes PipeWire's default sink, which must neither be recorded by the stream nor
/// left as the default. A 660 Hz voice reaches the default source while the stream's
/// listener keeps hearing the desktop's 440 Hz.
#[test]
fn pipewire_microphone_voice_reaches_the_default_source() {
    if cannot_run() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    wait_default_sink(&pulse);
    let daemon = Daemon::start(&pulse, &["--microphone"]);
    let reader = Reader::start(&daemon.url("/audio"));
    let talker = Talker::start(
        WsClient::connect(&daemon.url("/mic")),
        VoiceCodec::Opus,
        |k| k < 100 || (k - 100) % 12 < 5,
    );
    assert!(
        wait_mic_source(&pulse, Duration::from_secs(5)),
        "{MIC_SOURCE} is not the default source 5 s after the speaker came; sources {:?}:\n{}",
        pulse.sources(),
        daemon.stderr_text()
    );
    let feed = format!("{MIC_SOURCE}_feed");
    let default_sink = poll_until(Duration::from_secs(5), || {
        pulse.default_sink().filter(|d| *d != feed)
    });
    assert!(
        default_sink.is_some(),
        "the feed stayed the default sink; sinks {:?}:\n{}",
        pulse.sinks(),
        daemon.stderr_text()
    );
    let _tone = Tone::play(&pulse, None, 440.0);
    let recorder = Recorder::start(&pulse, "@DEFAULT_SOURCE@");
    recorder.wait_for(0.8);
    assert_tone(&recorder.tail(0.4), VOICE_HZ, "the voice on pipewire-pulse");
    thread::sleep(Duration::from_secs(6));
    let latencies = mouth_to_source_ms(&talker.onsets(), &recorder.onsets());
    let left = Instant::now();
    let end = talker.stop();
    assert!(end.closed_by_server.is_none(), "{end:?}");
    assert!(latencies.len() >= 15, "bursts heard: {latencies:?}");
    // When the speaker leaves, the source falls silent: nothing stale.
    thread::sleep(Duration::from_millis(800));
    let after = recorder.between(
        left + Duration::from_millis(200),
        left + Duration::from_millis(700),
    );
    assert!(
        after.len() > 15_000 && rms(&after) < 0.001,
        "{} samples at rms {} after the speaker left",
        after.len(),
        rms(&after)
    );
    let (median, p99) = median_p99(&latencies);
    eprintln!(
        "mic on pipewire-pulse: mouth-to-source latency median {median:.1} ms, p99 {p99:.1} ms \
         over {} bursts; default sink {:?}",
        latencies.len(),
        default_sink
    );
    let frames = reader.snapshot();
    let heard = decode_tail(&frames, 2, 0.5);
    assert_tone(&heard, 440.0, "the stream while someone speaks");
    // What the stream records now (the capture may have started on the feed's monitor
    // for a moment, when the feed's arrival took auto_null away before anyone listened).
    let st = stats(&daemon);
    assert!(
        !st.to_string().contains(&format!("\"device\":\"{feed}")),
        "the stream records the microphone's feed: {st}"
    );
}

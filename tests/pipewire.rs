//! The resilience scenarios against PipeWire's PulseAudio server (pipewire-pulse):
//! a tone played into the default sink is heard, the audio server restarted, the
//! recorded sink unloaded. Each test runs a private session (its own dbus-daemon,
//! XDG_RUNTIME_DIR, pipewire, wireplumber and pipewire-pulse) and kills it by pid.
//! Skipped, with a "SKIPPED:" line, when those programs are not installed (Debian:
//! pipewire pipewire-pulse wireplumber dbus); under CI=true, which installs them
//! (scripts/test-deps.txt), they fail instead.

mod common;

use std::time::{Duration, Instant};

use common::scenarios::*;
use common::*;

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
    if pipewire_missing() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    let default_before = pipewire_default_sink(&pulse);
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
        self.default = pipewire_default_sink(self.pw.pulse);
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
    pipewire_default_sink(pulse);
    let daemon = Daemon::start(pulse, &[]);
    poll_until(Duration::from_secs(5), || recording_from(&daemon)).expect("recording");
    daemon
}

#[test]
fn pipewire_restarted() {
    if pipewire_missing() {
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
    if pipewire_missing() {
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

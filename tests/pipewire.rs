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

/// The microphone on pipewire-pulse: the feed sink's arrival drops `auto_null` and
/// becomes PipeWire's default sink, which must neither be recorded by the stream nor
/// left as the default. A 660 Hz voice reaches the default source while the stream's
/// listener keeps hearing the desktop's 440 Hz.
#[test]
fn pipewire_microphone_voice_reaches_the_default_source() {
    if pipewire_missing() {
        return;
    }
    let _serial = serial();
    let pulse = PulseServer::start();
    let _pw = PipeWire::start(&pulse);
    pipewire_default_sink(&pulse);
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
    // The feed took auto_null away: the daemon created its own sink, described with the
    // space pipewire-pulse used to show as "noVNC\ audio".
    let described = poll_until(Duration::from_secs(5), || pulse.sink_description(SINK));
    assert_eq!(
        described.as_deref(),
        Some("noVNC audio"),
        "our sink on pipewire-pulse; sinks {:?}:\n{}",
        pulse.sinks(),
        daemon.stderr_text()
    );
    let _tone = Tone::play(&pulse, None, 440.0);
    let recorder = Recorder::start(&pulse, "@DEFAULT_SOURCE@");
    recorder.wait_for(0.8);
    assert_tone(&recorder.tail(0.4), VOICE_HZ, "the voice on pipewire-pulse");
    std::thread::sleep(Duration::from_secs(6));
    let latencies = mouth_to_source_ms(&talker.onsets(), &recorder.onsets());
    let left = Instant::now();
    let end = talker.stop();
    assert!(end.closed_by_server.is_none(), "{end:?}");
    assert!(latencies.len() >= 15, "bursts heard: {latencies:?}");
    // When the speaker leaves, the source falls silent: nothing stale.
    std::thread::sleep(Duration::from_millis(800));
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

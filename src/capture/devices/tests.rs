//! The device choice without a server: the cases the integration tests (streaming,
//! resilience, pipewire) drive through a real PulseAudio or PipeWire.

use super::*;
use crate::config::Config;

fn sink(name: &str, is_null: bool) -> SinkRecord {
    SinkRecord {
        index: 0,
        name: name.into(),
        monitor: format!("{name}.monitor"),
        is_null,
    }
}

/// A server with these sinks (each with its monitor source), these other sources and
/// this default sink.
fn server(default: Option<&str>, sinks: &[&str], sources: &[&str]) -> Snapshot {
    let sinks: Vec<SinkRecord> = sinks.iter().map(|s| sink(s, s.contains("null"))).collect();
    let mut all_sources: Vec<SourceRecord> = sinks
        .iter()
        .map(|s| SourceRecord {
            name: s.monitor.clone(),
        })
        .collect();
    all_sources.extend(sources.iter().map(|s| SourceRecord {
        name: s.to_string(),
    }));
    Snapshot {
        default_sink: default.map(str::to_string),
        sinks,
        sources: all_sources,
        ..Default::default()
    }
}

fn follow_default() -> CaptureConfig {
    Config::default().capture
}

fn named(name: &str, monitor: bool) -> CaptureConfig {
    CaptureConfig {
        device: Device::Named(name.into()),
        monitor,
        ..follow_default()
    }
}

fn record(source: &str) -> Decision {
    Decision::Record {
        source: source.into(),
        restore_default: false,
    }
}

#[test]
fn no_sink_at_all_creates_the_null_sink() {
    // streaming::creates_one_null_sink_and_makes_it_default: a bare server.
    let bare = server(None, &[], &["alsa_input.mic"]);
    assert_eq!(
        decide(&bare, &follow_default(), false),
        Decision::CreateNullSink
    );
    // Naming our own sink asks for it too; naming another one waits for it.
    assert_eq!(
        decide(&bare, &named("novnc_audio", true), false),
        Decision::CreateNullSink
    );
    assert_eq!(
        decide(&bare, &named("speakers", true), false),
        Decision::Wait {
            why: Wait::Device {
                name: "speakers".into(),
                monitor: true
            },
            restore_default: false
        }
    );
    // As a source (--no-monitor), our sink's name is not a sink to create.
    assert!(matches!(
        decide(&bare, &named("novnc_audio", false), false),
        Decision::Wait { .. }
    ));
}

#[test]
fn the_default_sink_is_followed() {
    // streaming::follows_default_sink_change: two sinks, the default moves.
    let config = follow_default();
    let a = server(Some("a"), &["a", "b"], &[]);
    assert_eq!(decide(&a, &config, false), record("a.monitor"));
    let b = server(Some("b"), &["a", "b"], &[]);
    assert_eq!(decide(&b, &config, false), record("b.monitor"));
}

#[test]
fn the_sink_monitor_is_read_not_guessed() {
    let mut snap = server(Some("hw"), &[], &[]);
    snap.sinks.push(SinkRecord {
        index: 1,
        name: "hw".into(),
        monitor: "hw-monitor-source".into(),
        is_null: false,
    });
    assert_eq!(
        decide(&snap, &follow_default(), false),
        record("hw-monitor-source")
    );
    assert_eq!(
        decide(&snap, &named("hw", true), false),
        record("hw-monitor-source")
    );
}

#[test]
fn a_missing_or_unknown_default_falls_back_to_the_first_sink() {
    // pipewire: pipewire-pulse may report no default (or a stale one) for a moment.
    let config = follow_default();
    let none = server(None, &["a", "b"], &[]);
    assert_eq!(decide(&none, &config, false), record("a.monitor"));
    let stale = server(Some("gone"), &["a", "b"], &[]);
    assert_eq!(decide(&stale, &config, false), record("a.monitor"));
}

#[test]
fn our_removed_default_is_restored_to_our_sink() {
    // resilience::recorded_sink_unloaded_follows_new_default: the recorded default sink is
    // unloaded; the server points the default nowhere (or at a sink that went away).
    let snap = server(Some("unloaded"), &["other", "novnc_audio"], &[]);
    assert_eq!(
        decide(&snap, &follow_default(), true),
        Decision::Record {
            source: "other.monitor".into(),
            restore_default: true
        }
    );
    // A sink we did not create is never made the default.
    assert_eq!(
        decide(&snap, &follow_default(), false),
        record("other.monitor")
    );
    // A valid default is left alone.
    let fine = server(Some("other"), &["other", "novnc_audio"], &[]);
    assert_eq!(
        decide(&fine, &follow_default(), true),
        record("other.monitor")
    );
}

#[test]
fn a_named_sink_is_recorded_once_it_appears() {
    // streaming (--device=probe.monitor-style names) and hostile/resilience named sinks.
    let config = named("probe", true);
    let without = server(Some("a"), &["a"], &[]);
    assert_eq!(
        decide(&without, &config, false),
        Decision::Wait {
            why: Wait::Device {
                name: "probe".into(),
                monitor: true
            },
            restore_default: false
        }
    );
    let with = server(Some("a"), &["a", "probe"], &[]);
    assert_eq!(decide(&with, &config, false), record("probe.monitor"));
    // A source named NAME.monitor without its sink listed (yet) will do.
    let monitor_only = server(Some("a"), &["a"], &["probe.monitor"]);
    assert_eq!(
        decide(&monitor_only, &config, false),
        record("probe.monitor")
    );
    // The default sink changing does not move a named recording.
    let other_default = server(Some("a"), &["probe", "a"], &[]);
    assert_eq!(
        decide(&other_default, &config, false),
        record("probe.monitor")
    );
}

#[test]
fn no_monitor_records_a_source_itself() {
    let config = named("alsa_input.mic", false);
    let with = server(Some("a"), &["a"], &["alsa_input.mic"]);
    assert_eq!(decide(&with, &config, false), record("alsa_input.mic"));
    // A sink of that name is not a source.
    let sink_only = server(Some("alsa_input.mic"), &["alsa_input.mic"], &[]);
    assert_eq!(
        decide(&sink_only, &config, false),
        Decision::Wait {
            why: Wait::Device {
                name: "alsa_input.mic".into(),
                monitor: false
            },
            restore_default: false
        }
    );
    // --no-monitor with a monitor's full name records that monitor.
    let monitor = named("a.monitor", false);
    assert_eq!(decide(&with, &monitor, false), record("a.monitor"));
}

#[test]
fn sinks_without_the_default_still_give_a_source_when_following() {
    // resilience::pulseaudio_killed_and_restarted: a restarted server that already has
    // our null sink (module-null-sink in its config) is recorded, not duplicated.
    let restarted = server(None, &["novnc_audio"], &[]);
    assert_eq!(
        decide(&restarted, &follow_default(), false),
        record("novnc_audio.monitor")
    );
}

#[test]
fn the_microphone_feed_is_never_recorded_nor_counted_as_a_sink() {
    // pipewire-pulse drops auto_null once the feed exists and makes the feed default.
    let only_feed = server(Some("novnc_mic_feed"), &["novnc_mic_feed"], &[]);
    assert_eq!(
        decide(&only_feed, &follow_default(), false),
        Decision::CreateNullSink
    );
    let with_ours = server(
        Some("novnc_mic_feed"),
        &["novnc_mic_feed", "novnc_audio"],
        &[],
    );
    assert_eq!(
        decide(&with_ours, &follow_default(), true),
        Decision::Record {
            source: "novnc_audio.monitor".into(),
            restore_default: true,
        }
    );
}

#[test]
fn our_new_sink_becomes_the_default_only_when_it_is_alone() {
    // pipewire::pipewire_recorded_sink_unloaded: auto_null went, we created ours, and the
    // user's sink came meanwhile: its default stays.
    let config = follow_default();
    let not_yet = server(Some("keep"), &["keep"], &[]);
    assert_eq!(ours_alone(&not_yet, &config), None);
    let alone = server(None, &["novnc_audio"], &[]);
    assert_eq!(ours_alone(&alone, &config), Some(true));
    let with_feed = server(None, &["novnc_mic_feed", "novnc_audio"], &[]);
    assert_eq!(ours_alone(&with_feed, &config), Some(true));
    let with_keep = server(Some("keep"), &["keep", "novnc_audio"], &[]);
    assert_eq!(ours_alone(&with_keep, &config), Some(false));
}

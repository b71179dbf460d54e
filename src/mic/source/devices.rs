//! What the microphone needs of the server's devices: a snapshot (copied out of the
//! introspection callbacks), the pure [`plan`] that says what to create or change, and
//! its effects (loading the feed and the remap source, the defaults).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libpulse_binding::callbacks::ListResult;
use log::{debug, error, info, warn};

use super::connection::{ready, ready_mut};
use super::{defer, with_inner, Inner, MicConfig, RATE};

/// How long a loaded module's device may take to show up before we load it again.
const AWAIT_DEVICE: Duration = Duration::from_secs(2);

/// The server's devices, as far as the microphone cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicSnapshot {
    pub default_sink: Option<String>,
    pub default_source: Option<String>,
    pub sinks: Vec<String>,
    /// (name, is a monitor)
    pub sources: Vec<(String, bool)>,
    /// The monitor of the feed sink, if the feed exists.
    pub feed_monitor: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub load_feed: bool,
    /// Load the remap source of this monitor.
    pub load_source_of: Option<String>,
    /// Feed and source exist: the stream can play.
    pub ready: bool,
    pub make_default_source: bool,
    /// The feed became the default sink: make this one default instead.
    pub default_sink_instead: Option<String>,
}

pub fn plan(config: &MicConfig, snap: &MicSnapshot) -> Plan {
    let feed = config.feed_sink_name();
    let source = &config.source_name;
    let feed_exists = snap.sinks.contains(&feed);
    let source_exists = snap.sources.iter().any(|(s, _)| s == source);
    let only_monitors_besides = snap
        .sources
        .iter()
        .filter(|(s, _)| s != source)
        .all(|(_, monitor)| *monitor);
    Plan {
        load_feed: !feed_exists,
        load_source_of: match (&snap.feed_monitor, source_exists) {
            (Some(monitor), false) if feed_exists => Some(monitor.clone()),
            _ => None,
        },
        ready: feed_exists && source_exists,
        make_default_source: source_exists
            && only_monitors_besides
            && snap.default_source.as_deref() != Some(source.as_str()),
        default_sink_instead: if snap.default_sink.as_deref() == Some(feed.as_str()) {
            snap.sinks.iter().find(|s| **s != feed).cloned()
        } else {
            None
        },
    }
}

impl Inner {
    /// Reads the server's defaults, sinks and sources, then acts on [`plan`].
    pub(super) fn refresh(&mut self) {
        if self.refresh_in_flight {
            self.refresh_again = true;
            return;
        }
        let Some(ctx) = ready(&self.context) else {
            return;
        };
        self.refresh_in_flight = true;
        let generation = self.generation;
        let feed = self.config.feed_sink_name();
        let snap = Rc::new(RefCell::new((MicSnapshot::default(), 3u8, false)));
        let introspect = ctx.introspect();
        let done = {
            let weak = self.weak.clone();
            move |snap: &Rc<RefCell<(MicSnapshot, u8, bool)>>| {
                let finished = {
                    let mut s = snap.borrow_mut();
                    s.1 -= 1;
                    s.1 == 0
                };
                if finished {
                    let snap = snap.clone();
                    defer(&weak, move |inner| {
                        if inner.generation == generation {
                            let (snapshot, _, failed) = std::mem::take(&mut *snap.borrow_mut());
                            inner.on_snapshot(snapshot, failed);
                        }
                    });
                }
            }
        };
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_server_info(move |info| {
                {
                    let s = &mut snap.borrow_mut().0;
                    s.default_sink = info.default_sink_name.as_ref().map(|n| n.to_string());
                    s.default_source = info.default_source_name.as_ref().map(|n| n.to_string());
                }
                done(&snap);
            });
        }
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_sink_info_list(move |result| match result {
                ListResult::Item(sink) => {
                    if let Some(name) = &sink.name {
                        let s = &mut snap.borrow_mut().0;
                        if *name == feed {
                            s.feed_monitor =
                                sink.monitor_source_name.as_ref().map(|m| m.to_string());
                        }
                        s.sinks.push(name.to_string());
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().2 = true;
                    done(&snap);
                }
            });
        }
        {
            let snap = snap.clone();
            introspect.get_source_info_list(move |result| match result {
                ListResult::Item(source) => {
                    if let Some(name) = &source.name {
                        let monitor = source.monitor_of_sink.is_some()
                            || source.proplist.get_str("device.class").as_deref()
                                == Some("monitor");
                        snap.borrow_mut()
                            .0
                            .sources
                            .push((name.to_string(), monitor));
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().2 = true;
                    done(&snap);
                }
            });
        }
    }

    pub(super) fn on_snapshot(&mut self, snap: MicSnapshot, failed: bool) {
        self.refresh_in_flight = false;
        if self.refresh_again {
            self.refresh_again = false;
            self.refresh();
            return;
        }
        if failed {
            warn!("microphone: PulseAudio did not list its devices; will retry on the next change");
            return;
        }
        let plan = plan(&self.config, &snap);
        let awaited_is_there = match self.awaiting {
            Some(("module-null-sink", _)) => !plan.load_feed,
            Some(_) => plan.ready,
            None => false,
        };
        if awaited_is_there {
            self.awaiting = None;
        }
        if let Some(other) = &plan.default_sink_instead {
            info!(
                "the microphone's feed became the default sink: making {other} the default again"
            );
            if let Some(ctx) = ready_mut(&mut self.context) {
                ctx.set_default_sink(other, |_| {});
            }
        }
        // Quoted so that PulseAudio and pipewire-pulse both read the description with
        // its spaces (a backslash escape shows up verbatim on pipewire-pulse).
        if plan.load_feed {
            let feed = self.config.feed_sink_name();
            let args = format!(
                "sink_name={feed} rate={RATE} channels=1 channel_map=mono \
                 sink_properties='device.description=\"noVNC microphone feed\"'"
            );
            self.load_module("module-null-sink", args);
            return;
        }
        if let Some(monitor) = &plan.load_source_of {
            let args = format!(
                "source_name={} master={monitor} rate={RATE} channels=1 channel_map=mono \
                 source_properties='device.description=\"noVNC microphone\"'",
                self.config.source_name
            );
            self.load_module("module-remap-source", args);
            return;
        }
        if plan.make_default_source && !self.default_source_claimed {
            self.default_source_claimed = true;
            let name = self.config.source_name.clone();
            info!("no microphone but {name}: making it the default source");
            if let Some(ctx) = ready_mut(&mut self.context) {
                ctx.set_default_source(&name, |_| {});
            }
        }
        if plan.ready && self.stream.is_none() {
            self.create_stream();
        }
    }

    pub(super) fn load_module(&mut self, module: &'static str, args: String) {
        if self.load_pending || self.load_refused {
            return;
        }
        if let Some((awaited, since)) = self.awaiting {
            if awaited == module && since.elapsed() < AWAIT_DEVICE {
                let weak = self.weak.clone();
                let generation = self.generation;
                // Look again soon even if no event says it appeared.
                glib::timeout_add_local_once(Duration::from_millis(100), move || {
                    with_inner(&weak, |inner| {
                        if inner.generation == generation {
                            inner.refresh();
                        }
                    })
                });
                return;
            }
        }
        let Some(ctx) = ready_mut(&mut self.context) else {
            return;
        };
        self.load_pending = true;
        debug!("microphone: loading {module} {args}");
        let weak = self.weak.clone();
        let generation = self.generation;
        ctx.introspect().load_module(module, &args, move |index| {
            let errno = weak.upgrade().and_then(|i| {
                i.try_borrow()
                    .ok()
                    .and_then(|i| i.context.as_ref().map(|c| c.errno()))
            });
            defer(&weak, move |inner| {
                if inner.generation != generation {
                    return;
                }
                inner.load_pending = false;
                if index == u32::MAX {
                    inner.load_refused = true;
                    let why = errno.map(|e| format!("{e}")).unwrap_or_default();
                    error!(
                        "PulseAudio refused to load {module} for the microphone ({why}): module \
                         loading is disabled in system mode; copy \
                         /usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa to \
                         /etc/pulse/system.pa.d/, uncomment its microphone lines and restart \
                         PulseAudio"
                    );
                    return;
                }
                inner.status.source_created = true;
                inner.awaiting = Some((module, Instant::now()));
                info!("microphone: loaded {module} (module #{index})");
                inner.refresh();
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MicConfig {
        MicConfig {
            source_name: "novnc_mic".into(),
        }
    }

    fn snap(sinks: &[&str], sources: &[(&str, bool)]) -> MicSnapshot {
        MicSnapshot {
            sinks: sinks.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|(s, m)| (s.to_string(), *m)).collect(),
            feed_monitor: sinks
                .contains(&"novnc_mic_feed")
                .then(|| "novnc_mic_feed.monitor".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn an_empty_server_gets_the_feed_then_the_source() {
        let p = plan(&config(), &snap(&[], &[]));
        assert!(p.load_feed && !p.ready);
        let s = snap(&["novnc_mic_feed"], &[("novnc_mic_feed.monitor", true)]);
        let p = plan(&config(), &s);
        assert!(!p.load_feed);
        assert_eq!(p.load_source_of.as_deref(), Some("novnc_mic_feed.monitor"));
        assert!(!p.ready);
    }

    #[test]
    fn existing_feed_and_source_are_reused() {
        let s = snap(
            &["novnc", "novnc_mic_feed"],
            &[
                ("novnc.monitor", true),
                ("novnc_mic_feed.monitor", true),
                ("novnc_mic", false),
            ],
        );
        let p = plan(&config(), &s);
        assert!(!p.load_feed && p.load_source_of.is_none() && p.ready);
        assert!(p.make_default_source, "only monitors besides ours");
    }

    #[test]
    fn a_real_microphone_stays_the_default() {
        let mut s = snap(
            &["novnc_mic_feed"],
            &[
                ("novnc_mic_feed.monitor", true),
                ("novnc_mic", false),
                ("alsa_input.usb", false),
            ],
        );
        s.default_source = Some("alsa_input.usb".into());
        let p = plan(&config(), &s);
        assert!(p.ready && !p.make_default_source);
    }

    #[test]
    fn already_default_is_left_alone() {
        let mut s = snap(
            &["novnc_mic_feed"],
            &[("novnc_mic_feed.monitor", true), ("novnc_mic", false)],
        );
        s.default_source = Some("novnc_mic".into());
        assert!(!plan(&config(), &s).make_default_source);
    }

    #[test]
    fn the_feed_never_stays_the_default_sink_when_there_is_another() {
        let mut s = snap(&["novnc_mic_feed", "novnc"], &[]);
        s.default_sink = Some("novnc_mic_feed".into());
        assert_eq!(
            plan(&config(), &s).default_sink_instead.as_deref(),
            Some("novnc")
        );
        let mut s = snap(&["novnc_mic_feed"], &[]);
        s.default_sink = Some("novnc_mic_feed".into());
        assert_eq!(
            plan(&config(), &s).default_sink_instead,
            None,
            "no other sink yet: the capture creates one"
        );
        let mut s = snap(&["novnc_mic_feed", "novnc"], &[]);
        s.default_sink = Some("novnc".into());
        assert_eq!(plan(&config(), &s).default_sink_instead, None);
    }

    #[test]
    fn the_names_follow_the_source_name() {
        let c = MicConfig {
            source_name: "voice".into(),
        };
        assert_eq!(c.feed_sink_name(), "voice_feed");
        let p = plan(&c, &snap(&["novnc_mic_feed"], &[("novnc_mic", false)]));
        assert!(p.load_feed, "another name's feed is not ours");
    }
}

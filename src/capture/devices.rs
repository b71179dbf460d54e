//! What to record: a snapshot of the server's devices, the pure [`decide`] that picks the
//! source from it and the configuration, and the effects of its answer (creating the null
//! sink, making it the default, pointing the stream at the source).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use libpulse_binding::callbacks::ListResult;
use libpulse_binding::stream::State as StreamState;
use log::{error, info, warn};

use super::connection::{ready, ready_mut};
use super::{defer, with_inner, Inner};
use crate::audio::Device;
use crate::config::CaptureConfig;

/// The server's devices at one moment (copied out of the introspection callbacks).
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    pub(super) default_sink: Option<String>,
    pub(super) sinks: Vec<SinkRecord>,
    pub(super) sources: Vec<SourceRecord>,
    /// Introspection answers still to come.
    pending: u8,
    /// An introspection call failed: the snapshot is incomplete.
    failed: bool,
}

#[derive(Debug)]
pub(super) struct SinkRecord {
    pub(super) index: u32,
    pub(super) name: String,
    /// Its monitor source (NAME.monitor on PulseAudio and PipeWire alike, but read, not
    /// assumed).
    pub(super) monitor: String,
    pub(super) is_null: bool,
}

#[derive(Debug)]
pub(super) struct SourceRecord {
    pub(super) name: String,
}

/// What the device choice remembers between snapshots.
#[derive(Default)]
pub(super) struct DeviceState {
    pub(super) refresh_in_flight: bool,
    pub(super) refresh_again: bool,
    pub(super) sink_load_pending: bool,
    pub(super) sink_load_refused: bool,
    /// The device whose absence was logged (logged once until it appears).
    pub(super) waiting_logged: Option<String>,
    /// Sinks known to be null sinks, by monitor source name (for the suspend kick).
    pub(super) null_sink_of_monitor: Vec<(String, String)>,
    /// A snapshot of this connection listed a sink (one we would record).
    pub(super) sink_listed: bool,
    /// The sinks went away: waiting [`SINK_SWAP_GRACE`] for another before creating ours.
    pub(super) swap_timer: Option<glib::SourceId>,
    /// The grace passed with no sink: create ours now.
    pub(super) swap_waited: bool,
    /// We created our null sink: make it the default once a snapshot lists it, unless
    /// another sink came meanwhile (see [`ours_alone`]).
    pub(super) make_ours_default: bool,
}

impl DeviceState {
    /// A new connection: what the previous server had says nothing about this one.
    pub(super) fn forget_server(&mut self) {
        self.refresh_in_flight = false;
        self.refresh_again = false;
        self.sink_listed = false;
        self.swap_waited = false;
        self.make_ours_default = false;
        if let Some(t) = self.swap_timer.take() {
            t.remove();
        }
    }
}

/// How long the sinks may be gone before we create ours, once the server had one. A
/// device swap lists no sink for a moment: PipeWire drops its placeholder `auto_null` when
/// a real sink arrives, and the removal can come first (seen in 1 of 30 runs of
/// tests/pipewire.rs `pipewire_recorded_sink_unloaded` on a loaded machine: we created
/// `novnc_audio` in that moment and made it the default over the user's new sink).
/// A server that starts with no sink gets ours at once.
const SINK_SWAP_GRACE: Duration = Duration::from_millis(500);

/// After we created our null sink: Some(true) when the snapshot lists it as the only sink
/// we would record (make it the default), Some(false) when another sink is there too (the
/// server had a sink after all: leave its default alone), None when ours is not listed
/// yet (ask again on the next snapshot).
pub(super) fn ours_alone(snap: &Snapshot, config: &CaptureConfig) -> Option<bool> {
    let mut sinks = snap
        .sinks
        .iter()
        .filter(|s| !config.ignored_sinks.contains(&s.name));
    if !snap.sinks.iter().any(|s| s.name == config.sink_name) {
        return None;
    }
    Some(sinks.all(|s| s.name == config.sink_name))
}

/// What to do about a snapshot.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Decision {
    /// The server has no sink and we would record ours: create the null sink (and decide
    /// again once it exists).
    CreateNullSink,
    /// Record this source.
    Record {
        source: String,
        /// Our null sink exists but the default sink is gone: make ours the default.
        restore_default: bool,
    },
    /// Nothing to record yet.
    Wait { why: Wait, restore_default: bool },
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Wait {
    /// Following the default sink, and there is no sink at all.
    NoSink,
    /// The named sink (`monitor`) or source is not there.
    Device { name: String, monitor: bool },
}

/// Which source to record, given the server's devices, the configuration and whether this
/// process created its null sink. Pure: the caller applies the answer.
pub(super) fn decide(snap: &Snapshot, config: &CaptureConfig, sink_created: bool) -> Decision {
    let wants_own_sink = match &config.device {
        Device::FollowDefault => true,
        Device::Named(n) => *n == config.sink_name && config.monitor,
    };
    // The sinks to listen to: not the microphone's feed.
    let sinks: Vec<&SinkRecord> = snap
        .sinks
        .iter()
        .filter(|s| !config.ignored_sinks.contains(&s.name))
        .collect();
    let own_sink_exists = sinks.iter().any(|s| s.name == config.sink_name);
    if sinks.is_empty() && wants_own_sink && !own_sink_exists {
        return Decision::CreateNullSink;
    }
    let restore_default = sink_created
        && own_sink_exists
        && snap
            .default_sink
            .as_deref()
            .is_none_or(|d| !sinks.iter().any(|s| s.name == d));
    let source = match &config.device {
        Device::FollowDefault => snap
            .default_sink
            .as_deref()
            .and_then(|d| sinks.iter().find(|s| s.name == d))
            .or_else(|| sinks.first())
            .map(|s| s.monitor.clone())
            .ok_or(Wait::NoSink),
        Device::Named(name) if config.monitor => {
            // The monitor of sink NAME (its real name), or a source NAME.monitor.
            snap.sinks
                .iter()
                .find(|s| s.name == *name)
                .map(|s| s.monitor.clone())
                .or_else(|| {
                    let m = format!("{name}.monitor");
                    snap.sources.iter().any(|s| s.name == m).then_some(m)
                })
                .ok_or(Wait::Device {
                    name: name.clone(),
                    monitor: true,
                })
        }
        Device::Named(name) => snap
            .sources
            .iter()
            .any(|s| s.name == *name)
            .then(|| name.clone())
            .ok_or(Wait::Device {
                name: name.clone(),
                monitor: false,
            }),
    };
    match source {
        Ok(source) => Decision::Record {
            source,
            restore_default,
        },
        Err(why) => Decision::Wait {
            why,
            restore_default,
        },
    }
}

impl Inner {
    /// Reads the server's default sink, sinks and sources, then decides what to record.
    pub(super) fn refresh(&mut self) {
        if self.devices.refresh_in_flight {
            self.devices.refresh_again = true;
            return;
        }
        let Some(ctx) = ready(&self.context) else {
            return;
        };
        self.devices.refresh_in_flight = true;
        let generation = self.link.generation;
        let snap = Rc::new(RefCell::new(Snapshot {
            pending: 3,
            ..Default::default()
        }));
        let introspect = ctx.introspect();

        let done = {
            let weak = self.weak.clone();
            move |snap: &Rc<RefCell<Snapshot>>| {
                let finished = {
                    let mut s = snap.borrow_mut();
                    s.pending -= 1;
                    s.pending == 0
                };
                if finished {
                    let snap = snap.clone();
                    defer(&weak, move |inner| {
                        if inner.link.generation == generation {
                            let snapshot = std::mem::take(&mut *snap.borrow_mut());
                            inner.on_snapshot(snapshot);
                        }
                    });
                }
            }
        };
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_server_info(move |info| {
                snap.borrow_mut().default_sink =
                    info.default_sink_name.as_ref().map(|n| n.to_string());
                done(&snap);
            });
        }
        {
            let snap = snap.clone();
            let done = done.clone();
            introspect.get_sink_info_list(move |result| match result {
                ListResult::Item(sink) => {
                    if let (Some(name), Some(monitor)) = (&sink.name, &sink.monitor_source_name) {
                        let is_null = sink.driver.as_deref().is_some_and(|d| d.contains("null"));
                        snap.borrow_mut().sinks.push(SinkRecord {
                            index: sink.index,
                            name: name.to_string(),
                            monitor: monitor.to_string(),
                            is_null,
                        });
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().failed = true;
                    done(&snap);
                }
            });
        }
        {
            let snap = snap.clone();
            introspect.get_source_info_list(move |result| match result {
                ListResult::Item(source) => {
                    if let Some(name) = &source.name {
                        snap.borrow_mut().sources.push(SourceRecord {
                            name: name.to_string(),
                        });
                    }
                }
                ListResult::End => done(&snap),
                ListResult::Error => {
                    snap.borrow_mut().failed = true;
                    done(&snap);
                }
            });
        }
    }

    /// Applies what [`decide`] says about a fresh snapshot.
    fn on_snapshot(&mut self, snap: Snapshot) {
        self.devices.refresh_in_flight = false;
        if self.devices.refresh_again {
            // Something changed while we were asking: ask again before acting.
            self.devices.refresh_again = false;
            self.refresh();
            return;
        }
        if snap.failed {
            warn!("PulseAudio did not list its devices; will retry on the next change");
            return;
        }
        self.playing.monitored_sink = snap
            .sinks
            .iter()
            .map(|s| (s.monitor.clone(), s.index))
            .collect();
        // Never the microphone's feed: suspending it (the kick) on pipewire-pulse, when the
        // server had moved our stream onto its monitor, left the microphone's source
        // silent (pipewire_microphone_voice_reaches_the_default_source, rms 0).
        self.devices.null_sink_of_monitor = snap
            .sinks
            .iter()
            .filter(|s| s.is_null && !self.config.ignored_sinks.contains(&s.name))
            .map(|s| (s.monitor.clone(), s.name.clone()))
            .collect();
        let decision = decide(&snap, &self.config, self.status.sink_created);
        if decision != Decision::CreateNullSink {
            self.devices.swap_waited = false;
            if let Some(t) = self.devices.swap_timer.take() {
                t.remove();
            }
            self.devices.sink_listed |= snap
                .sinks
                .iter()
                .any(|s| !self.config.ignored_sinks.contains(&s.name));
        }
        if self.devices.make_ours_default {
            if let Some(alone) = ours_alone(&snap, &self.config) {
                self.devices.make_ours_default = false;
                if alone {
                    self.set_default_sink();
                } else {
                    info!(
                        "another sink came while we created {}: its default stays",
                        self.config.sink_name
                    );
                }
            }
        }
        let (source, restore_default) = match decision {
            Decision::CreateNullSink => {
                // Only when the server lists no sink at all: a sink of ours that we do
                // not record (the microphone's feed, which makes PipeWire drop auto_null)
                // is no swap under way.
                if self.devices.sink_listed && !self.devices.swap_waited && snap.sinks.is_empty() {
                    self.wait_for_another_sink();
                } else {
                    self.load_null_sink();
                }
                return;
            }
            Decision::Record {
                source,
                restore_default,
            } => (Some(source), restore_default),
            Decision::Wait {
                why,
                restore_default,
            } => {
                self.log_waiting(why);
                (None, restore_default)
            }
        };
        if restore_default {
            self.set_default_sink();
        }
        // The recorded sink's index may be new: decide again whether anything plays.
        self.apply_run();
        let Some(target) = source else {
            return;
        };
        self.devices.waiting_logged = None;
        match self.stream.as_ref() {
            None => self.create_stream(&target),
            Some(stream) => {
                let current = stream.get_device_name().map(|n| n.to_string());
                let ready = stream.get_state() == StreamState::Ready;
                if ready && current.as_deref() != Some(target.as_str()) {
                    self.move_stream(&target);
                }
            }
        }
    }

    fn log_waiting(&mut self, why: Wait) {
        match why {
            Wait::NoSink => info!("no sink to record yet; waiting for one"),
            Wait::Device { name, monitor } => {
                if self.devices.waiting_logged.as_deref() != Some(name.as_str()) {
                    let kind = if monitor { "sink" } else { "source" };
                    info!("waiting for {kind} '{name}' to appear");
                    self.devices.waiting_logged = Some(name);
                }
            }
        }
    }

    /// The server had a sink and lists none now: a device swap lists none for a moment.
    /// Decide again after [`SINK_SWAP_GRACE`]; create ours then if still none came.
    fn wait_for_another_sink(&mut self) {
        if self.devices.swap_timer.is_some() {
            return;
        }
        info!(
            "the server lists no sink; creating {} in {} ms unless one comes",
            self.config.sink_name,
            SINK_SWAP_GRACE.as_millis()
        );
        let weak = self.weak.clone();
        let generation = self.link.generation;
        self.devices.swap_timer = Some(glib::timeout_add_local_once(SINK_SWAP_GRACE, move || {
            with_inner(&weak, |inner| {
                inner.devices.swap_timer = None;
                if inner.link.generation == generation {
                    inner.devices.swap_waited = true;
                    inner.refresh();
                }
            })
        }));
    }

    fn load_null_sink(&mut self) {
        if self.devices.sink_load_pending || self.devices.sink_load_refused {
            return;
        }
        let Some(ctx) = ready_mut(&mut self.context) else {
            return;
        };
        self.devices.sink_load_pending = true;
        let name = self.config.sink_name.clone();
        // Quoted so that PulseAudio and pipewire-pulse both read the description with its
        // space: pipewire-pulse kept the backslash of `noVNC\ audio` ("noVNC\ audio").
        let args = format!(
            "sink_name={name} sink_properties='device.description=\"noVNC audio\"' rate={} channels={}",
            self.format.rate, self.format.channels
        );
        info!("the server has no sink: creating null sink {name}");
        let weak = self.weak.clone();
        let generation = self.link.generation;
        ctx.introspect()
            .load_module("module-null-sink", &args, move |index| {
                // Read the error now: it belongs to this operation.
                let errno = weak.upgrade().and_then(|i| {
                    i.try_borrow()
                        .ok()
                        .and_then(|i| i.context.as_ref().map(|c| c.errno()))
                });
                defer(&weak, move |inner| {
                    if inner.link.generation != generation {
                        return;
                    }
                    inner.devices.sink_load_pending = false;
                    if index == u32::MAX {
                        inner.devices.sink_load_refused = true;
                        let why = errno.map(|e| format!("{e}")).unwrap_or_default();
                        error!(
                            "PulseAudio refused to load module-null-sink ({why}): module loading \
                             is disabled in system mode; copy \
                             /usr/share/novnc-audio/pulse/system.pa.d/novnc-audio.pa to \
                             /etc/pulse/system.pa.d/ and restart PulseAudio"
                        );
                        return;
                    }
                    inner.status.sink_created = true;
                    info!(
                        "created null sink {} (module #{index})",
                        inner.config.sink_name
                    );
                    // Made the default once a snapshot shows it alone: a sink that came
                    // meanwhile keeps the default the user or the server gave it.
                    inner.devices.make_ours_default = true;
                    inner.refresh();
                });
            });
    }

    fn set_default_sink(&mut self) {
        let name = self.config.sink_name.clone();
        if let Some(ctx) = ready_mut(&mut self.context) {
            info!("making {name} the default sink");
            ctx.set_default_sink(&name, |_| {});
        }
    }
}

#[cfg(test)]
mod tests;

//! The daemon's glue: capture → pipeline → transport on one glib main loop, plus
//! signals, systemd notifications and stats.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::ControlFlow;

use crate::capture::{Capture, CaptureEvent};
use crate::config::{self, Config};
use crate::encoder::OpusEncoder;
use crate::error::Error;
use crate::mic::{MicConfig, Microphone};
use crate::notify;
use crate::pipeline::Pipeline;
use crate::stats::{CaptureStatus, Stats, TransportStats};
use crate::transport::{SpeakerHooks, Transport, TransportHooks};
use crate::web::stats::{render_json, render_prometheus};
use crate::web::{Codecs, StatsFormat};
use log::{info, warn};

/// Re-reads the configuration on SIGHUP (the command line given, the file re-read).
pub type Reloader = Box<dyn Fn() -> Result<Config, crate::config::ConfigError>>;

struct Shared {
    config: RefCell<Config>,
    started: Instant,
    capture: RefCell<Option<Capture>>,
    transport: RefCell<Option<Transport>>,
    microphone: Option<Rc<Microphone>>,
    pipeline: RefCell<Pipeline>,
    main_loop: glib::MainLoop,
    reloader: Option<Reloader>,
    signal_sources: RefCell<Vec<glib::SourceId>>,
}

/// The running daemon. Create it on the thread that will run it.
pub struct Server {
    shared: Rc<Shared>,
}

impl Server {
    /// Binds the port and starts capturing; nothing runs until [`Server::run`]. The
    /// SIGINT/SIGTERM/SIGHUP handlers are installed last: a binary that must not die of a
    /// signal meanwhile blocks them until this returns (see `hold_signals` in main).
    pub fn start(config: Config, reloader: Option<Reloader>) -> Result<Server, Error> {
        let format = config.format();
        let opus = if format.opus_possible() {
            Some(OpusEncoder::new(format, &config.encoder)?)
        } else {
            None
        };
        let microphone = if config.microphone.enabled {
            Some(Rc::new(Microphone::new(MicConfig {
                source_name: config.microphone.source_name.clone(),
            })?))
        } else {
            None
        };
        let pipeline = Pipeline::new(format, opus, !config.capture.send_silence);
        let shared = Rc::new(Shared {
            config: RefCell::new(config.clone()),
            started: Instant::now(),
            capture: RefCell::new(None),
            transport: RefCell::new(None),
            microphone: microphone.clone(),
            pipeline: RefCell::new(pipeline),
            main_loop: glib::MainLoop::new(None, false),
            reloader,
            signal_sources: RefCell::new(Vec::new()),
        });

        let weak = Rc::downgrade(&shared);
        let weak2 = Rc::downgrade(&shared);
        let hooks = TransportHooks {
            on_listening: Box::new(move |listening| {
                if let Some(s) = weak.upgrade() {
                    if let Some(c) = s.capture.borrow().as_ref() {
                        c.set_active(listening);
                    }
                }
            }),
            render_stats: Box::new(move |transport, format| {
                let Some(s) = weak2.upgrade() else {
                    return String::new();
                };
                // The hub is borrowed while it renders: take its counters as given.
                let stats = snapshot(&s, transport.clone());
                let config = s.config.borrow();
                match format {
                    StatsFormat::Prometheus => render_prometheus(&stats, &config),
                    StatsFormat::Json => render_json(&stats, &config),
                }
            }),
            speaker: microphone.map(|mic| {
                let joined = mic.clone();
                SpeakerHooks {
                    path: config.microphone.path.clone(),
                    on_speaker: Box::new(move |here| {
                        if here {
                            joined.speaker_joined()
                        } else {
                            joined.speaker_left()
                        }
                    }),
                    on_message: Box::new(move |msg| mic.receive(msg, Instant::now())),
                }
            }),
        };
        let codecs = Codecs {
            default: config.encoder.codec,
            opus: format.opus_possible(),
        };
        let transport = Transport::start(config.websocket.clone(), codecs, format, hooks)?;
        let addr = transport.local_addr()?;
        info!(
            "listening on {}://{}{}",
            transport.scheme(),
            addr,
            config.websocket.path
        );
        *shared.transport.borrow_mut() = Some(transport);

        let weak = Rc::downgrade(&shared);
        let capture = Capture::start(config.capture.clone(), format, move |event| {
            let Some(s) = weak.upgrade() else {
                return;
            };
            let Ok(mut pipeline) = s.pipeline.try_borrow_mut() else {
                return;
            };
            match event {
                CaptureEvent::Discontinuity => pipeline.discontinuity(),
                CaptureEvent::Audio(data) => {
                    let now_us = s.started.elapsed().as_micros() as u64;
                    if let Some(t) = s.transport.borrow().as_ref() {
                        t.with_sink(|sink| pipeline.push(data, now_us, sink));
                    }
                }
            }
        })?;
        *shared.capture.borrow_mut() = Some(capture);
        // The microphone's source is made now, not on the first speaker: applications list
        // their input devices when they start (see mic/source).
        if let Some(mic) = &shared.microphone {
            mic.start();
        }
        let server = Server { shared };
        server.install_signals();
        server.install_systemd_status();
        notify::notify(&format!(
            "READY=1\nSTATUS=listening on {}, connecting to PulseAudio",
            addr
        ));
        Ok(server)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared
            .transport
            .borrow()
            .as_ref()
            .and_then(|t| t.local_addr().ok())
    }

    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let transport = s
            .transport
            .borrow()
            .as_ref()
            .map(|t| t.stats())
            .unwrap_or_default();
        snapshot(s, transport)
    }

    /// Runs the main loop until [`Server::stop`] or SIGINT/SIGTERM.
    pub fn run(&self) {
        self.shared.main_loop.run();
    }

    /// Closes clients with 1001, disconnects from PulseAudio, ends [`Server::run`].
    pub fn stop(&self) {
        shutdown(&self.shared);
    }

    fn install_signals(&self) {
        let mut sources = self.shared.signal_sources.borrow_mut();
        for (signum, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
            let weak = Rc::downgrade(&self.shared);
            sources.push(glib_unix::unix_signal_add_local(signum, move || {
                if let Some(s) = weak.upgrade() {
                    info!("{name}: shutting down");
                    shutdown(&s);
                }
                ControlFlow::Continue
            }));
        }
        let weak = Rc::downgrade(&self.shared);
        sources.push(glib_unix::unix_signal_add_local(libc::SIGHUP, move || {
            if let Some(s) = weak.upgrade() {
                reload(&s);
            }
            ControlFlow::Continue
        }));
    }

    /// Under systemd: STATUS= with device and clients, and watchdog pings.
    fn install_systemd_status(&self) {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let watchdog = notify::watchdog_interval();
        let period = watchdog
            .map(|w| (w / 2).min(Duration::from_secs(5)))
            .unwrap_or(Duration::from_secs(5));
        let weak = Rc::downgrade(&self.shared);
        let last = RefCell::new(String::new());
        glib::timeout_add_local(period, move || {
            let Some(s) = weak.upgrade() else {
                return ControlFlow::Break;
            };
            let status = status_line(&s);
            let mut msg = String::new();
            if *last.borrow() != status {
                let _ = writeln!(msg, "STATUS={status}");
                *last.borrow_mut() = status;
            }
            if watchdog.is_some() {
                msg.push_str("WATCHDOG=1\n");
            }
            if !msg.is_empty() {
                notify::notify(&msg);
            }
            ControlFlow::Continue
        });
    }
}

fn snapshot(s: &Shared, transport: TransportStats) -> Stats {
    Stats {
        uptime: s.started.elapsed(),
        capture: s
            .capture
            .borrow()
            .as_ref()
            .map(|c| c.status())
            .unwrap_or_else(CaptureStatus::idle),
        transport,
        pipeline: s.pipeline.borrow().stats,
        microphone: s.microphone.as_ref().map(|m| m.status()),
    }
}

fn status_line(s: &Shared) -> String {
    let capture = s.capture.borrow().as_ref().map(|c| c.status());
    let clients = s
        .transport
        .borrow()
        .as_ref()
        .map(|t| t.stats().clients)
        .unwrap_or(0);
    let microphone = match s.microphone.as_ref().map(|m| m.status()) {
        Some(m) if m.speaker_connected => ", someone speaking into the microphone",
        Some(m) if m.source.is_some() => ", microphone ready",
        Some(_) => ", microphone not ready",
        None => "",
    };
    match capture {
        Some(c) => format!(
            "PulseAudio {}, recording {}, {clients} client(s){microphone}",
            c.state.name(),
            c.device.as_deref().unwrap_or("nothing yet")
        ),
        None => "stopping".into(),
    }
}

fn shutdown(s: &Shared) {
    notify::notify("STOPPING=1");
    if let Some(t) = s.transport.borrow_mut().take() {
        t.shutdown();
    }
    if let Some(c) = s.capture.borrow_mut().take() {
        c.stop();
    }
    if let Some(m) = &s.microphone {
        m.stop();
    }
    s.main_loop.quit();
}

fn reload(s: &Shared) {
    let Some(reloader) = &s.reloader else {
        info!("SIGHUP: no configuration to reload");
        return;
    };
    notify::notify("RELOADING=1");
    let new = match reloader() {
        Ok(c) => c,
        Err(e) => {
            warn!("SIGHUP: keeping the running configuration: {e}");
            notify::notify("READY=1");
            return;
        }
    };
    let running = s.config.borrow().clone();
    let change = config::apply_live(&running, &new);
    let live = &change.config;
    if change.changed.contains(&"bitrate") {
        if let Some(enc) = s.pipeline.borrow_mut().opus_mut() {
            match enc.set_bitrate(live.encoder.bitrate) {
                Ok(()) => info!("SIGHUP: bitrate now {}", live.encoder.bitrate),
                Err(e) => warn!("SIGHUP: {e}"),
            }
        }
    }
    // Always: the token file and certificate may have new contents at the same paths.
    if let Some(t) = s.transport.borrow().as_ref() {
        if let Err(e) = t.reload(&live.websocket) {
            warn!("SIGHUP: {e}; keeping the previous token and certificate");
        }
    }
    log::set_max_level(live.daemon.log_level);
    let restart_needed = change.restart_needed;
    *s.config.borrow_mut() = change.config;
    if restart_needed.is_empty() {
        info!("SIGHUP: configuration reloaded");
    } else {
        warn!(
            "SIGHUP: reloaded what can change live; a restart is needed to apply: {}",
            restart_needed.join("; ")
        );
    }
    notify::notify("READY=1");
}

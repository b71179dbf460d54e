//! The daemon's glue: capture → pipeline → transport on one glib main loop, plus
//! signals, systemd notifications and stats.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glib::ControlFlow;

use crate::capture::{Capture, CaptureEvent, CaptureStatus};
use crate::config::{Config, Device};
use crate::encoder::OpusEncoder;
use crate::error::Error;
use crate::http::json_string;
use crate::notify;
use crate::pipeline::{Pipeline, PipelineStats};
use crate::transport::{Transport, TransportHooks, TransportStats, WebFiles};
use crate::{info, warn};

/// The listen page and the client module, compiled in.
pub const WEB_FILES: WebFiles = WebFiles {
    index_html: include_str!("../web/index.html"),
    client_js: include_str!("../web/novnc-audio.js"),
};

/// A snapshot of what the daemon is doing.
#[derive(Debug, Clone)]
pub struct Stats {
    pub uptime: Duration,
    pub capture: CaptureStatus,
    pub transport: TransportStats,
    pub pipeline: PipelineStats,
}

/// Re-reads the configuration on SIGHUP (the command line given, the file re-read).
pub type Reloader = Box<dyn Fn() -> Result<Config, crate::config::ConfigError>>;

struct Shared {
    config: RefCell<Config>,
    started: Instant,
    capture: RefCell<Option<Capture>>,
    transport: RefCell<Option<Transport>>,
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
    /// Binds the port and starts capturing; nothing runs until [`Server::run`].
    pub fn start(config: Config, reloader: Option<Reloader>) -> Result<Server, Error> {
        let opus_possible =
            [8000, 12000, 16000, 24000, 48000].contains(&config.capture.sample_rate);
        let opus = if opus_possible {
            Some(OpusEncoder::new(
                config.capture.sample_rate,
                config.capture.channels,
                &config.encoder,
            )?)
        } else {
            None
        };
        let pipeline = Pipeline::new(
            config.capture.sample_rate,
            config.capture.channels,
            config.frame_samples(),
            opus,
        );
        let shared = Rc::new(Shared {
            config: RefCell::new(config.clone()),
            started: Instant::now(),
            capture: RefCell::new(None),
            transport: RefCell::new(None),
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
            render_stats: Box::new(move |transport, prometheus| {
                let Some(s) = weak2.upgrade() else {
                    return String::new();
                };
                // The hub is borrowed while it renders: take its counters as given.
                let stats = snapshot(&s, transport.clone());
                let config = s.config.borrow();
                if prometheus {
                    render_prometheus(&stats, &config)
                } else {
                    render_json(&stats, &config)
                }
            }),
        };
        let pcm_rate = config.capture.sample_rate as usize * config.capture.channels as usize * 2;
        let transport = Transport::start(
            config.websocket.clone(),
            config.encoder.codec,
            opus_possible,
            config.encoder.frame_us,
            pcm_rate,
            WEB_FILES,
            hooks,
        )
        .map_err(Error::Listen)?;
        let addr = transport
            .local_addr()
            .map_err(|e| Error::Listen(e.to_string()))?;
        info!(
            "listening on {}://{}{}",
            transport.scheme(),
            addr,
            config.websocket.path
        );
        *shared.transport.borrow_mut() = Some(transport);

        let weak = Rc::downgrade(&shared);
        let capture = Capture::start(config.capture.clone(), move |event| {
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
        })
        .map_err(Error::Pulse)?;
        *shared.capture.borrow_mut() = Some(capture);
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
            .unwrap_or_else(idle_status),
        transport,
        pipeline: s.pipeline.borrow().stats,
    }
}

fn idle_status() -> CaptureStatus {
    CaptureStatus {
        state: crate::capture::PulseState::Disconnected,
        device: None,
        sink_created: false,
        reconnects: 0,
        recording: false,
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
    match capture {
        Some(c) => format!(
            "PulseAudio {}, recording {}, {clients} client(s)",
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
    let old = s.config.borrow().clone();
    let mut restart_needed = Vec::new();
    if new.capture != old.capture {
        restart_needed.push("capture settings (device, rate, channels, latency, sink-name)");
    }
    if new.encoder.codec != old.encoder.codec
        || new.encoder.frame_us != old.encoder.frame_us
        || new.encoder.application != old.encoder.application
    {
        restart_needed.push("codec, frame-ms or opus-application");
    }
    let w_old = &old.websocket;
    let w_new = &new.websocket;
    if w_new.host != w_old.host || w_new.port != w_old.port || w_new.path != w_old.path {
        restart_needed.push("host, port or path");
    }
    if new.daemon.daemonize != old.daemon.daemonize || new.daemon.pidfile != old.daemon.pidfile {
        restart_needed.push("daemonize or pidfile");
    }
    if new.encoder.bitrate != old.encoder.bitrate {
        if let Some(enc) = s.pipeline.borrow_mut().opus_mut() {
            match enc.set_bitrate(new.encoder.bitrate) {
                Ok(()) => info!("SIGHUP: bitrate now {}", new.encoder.bitrate),
                Err(e) => warn!("SIGHUP: {e}"),
            }
        }
    }
    if let Some(t) = s.transport.borrow().as_ref() {
        if let Err(e) = t.reload(&new.websocket) {
            warn!("SIGHUP: {e}; keeping the previous token and certificate");
        }
    }
    crate::log::set_level(new.daemon.log_level);
    {
        let mut cfg = s.config.borrow_mut();
        cfg.encoder.bitrate = new.encoder.bitrate;
        cfg.websocket.max_clients = new.websocket.max_clients;
        cfg.websocket.token_file = new.websocket.token_file.clone();
        cfg.websocket.allowed_origins = new.websocket.allowed_origins.clone();
        cfg.websocket.serve_web = new.websocket.serve_web;
        cfg.websocket.serve_stats = new.websocket.serve_stats;
        cfg.websocket.handshake_timeout = new.websocket.handshake_timeout;
        cfg.daemon.log_level = new.daemon.log_level;
    }
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

fn device_name(config: &Config) -> String {
    match &config.capture.device {
        Device::FollowDefault => "default".into(),
        Device::Named(n) => n.clone(),
    }
}

fn render_json(stats: &Stats, config: &Config) -> String {
    let c = &stats.capture;
    let t = &stats.transport;
    let mut rejected = String::new();
    let mut codes: Vec<_> = t.rejected.iter().collect();
    codes.sort();
    for (i, (code, n)) in codes.into_iter().enumerate() {
        if i > 0 {
            rejected.push(',');
        }
        let _ = write!(rejected, "\"{code}\":{n}");
    }
    format!(
        concat!(
            "{{\"uptime_s\":{:.3},\"pulse_state\":{},\"device\":{},\"device_setting\":{},",
            "\"sink_created\":{},\"codec\":{},\"sample_rate\":{},\"channels\":{},",
            "\"bitrate\":{},\"frame_ms\":{},\"clients\":{},\"opus_clients\":{},",
            "\"pcm_clients\":{},\"connections_total\":{},\"frames_encoded\":{},",
            "\"frames_sent\":{},\"bytes_sent\":{},",
            "\"frames_dropped\":{{\"slow_client\":{},\"encode_error\":{}}},",
            "\"clients_disconnected_stalled\":{},\"requests_rejected\":{{{}}},\"reconnects\":{}}}\n"
        ),
        stats.uptime.as_secs_f64(),
        json_string(c.state.name()),
        c.device
            .as_deref()
            .map(json_string)
            .unwrap_or("null".into()),
        json_string(&device_name(config)),
        c.sink_created,
        json_string(config.encoder.codec.name()),
        config.capture.sample_rate,
        config.capture.channels,
        config.encoder.bitrate,
        config.encoder.frame_us as f64 / 1000.0,
        t.clients,
        t.opus_clients,
        t.pcm_clients,
        t.connections_total,
        stats.pipeline.frames_encoded,
        t.frames_sent,
        t.bytes_sent,
        t.dropped_slow_client,
        stats.pipeline.encode_errors,
        t.disconnected_stalled,
        rejected,
        c.reconnects,
    )
}

fn render_prometheus(stats: &Stats, config: &Config) -> String {
    let c = &stats.capture;
    let t = &stats.transport;
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = write!(
            s,
            "# HELP novnc_audio_{name} {help}\n# TYPE novnc_audio_{name} {kind}\nnovnc_audio_{name} {value}\n"
        );
    };
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        format!("{:.3}", stats.uptime.as_secs_f64()),
    );
    metric(
        "pulse_connected",
        "gauge",
        "1 when connected to PulseAudio.",
        u8::from(c.state == crate::capture::PulseState::Ready).to_string(),
    );
    metric(
        "recording",
        "gauge",
        "1 while a record stream is attached.",
        u8::from(c.recording).to_string(),
    );
    metric(
        "sink_created",
        "gauge",
        "1 if this process created its null sink.",
        u8::from(c.sink_created).to_string(),
    );
    metric(
        "clients",
        "gauge",
        "Connected WebSocket clients.",
        t.clients.to_string(),
    );
    metric(
        "connections_total",
        "counter",
        "TCP connections accepted.",
        t.connections_total.to_string(),
    );
    metric(
        "frames_encoded_total",
        "counter",
        "Opus frames encoded.",
        stats.pipeline.frames_encoded.to_string(),
    );
    metric(
        "frames_sent_total",
        "counter",
        "Frames queued to clients.",
        t.frames_sent.to_string(),
    );
    metric(
        "bytes_sent_total",
        "counter",
        "Bytes written to clients.",
        t.bytes_sent.to_string(),
    );
    metric(
        "reconnects_total",
        "counter",
        "Reconnections to PulseAudio.",
        c.reconnects.to_string(),
    );
    metric(
        "clients_disconnected_stalled_total",
        "counter",
        "Clients dropped for not reading.",
        t.disconnected_stalled.to_string(),
    );
    let _ = write!(
        s,
        "# HELP novnc_audio_frames_dropped_total Frames not delivered, by reason.\n\
         # TYPE novnc_audio_frames_dropped_total counter\n\
         novnc_audio_frames_dropped_total{{reason=\"slow_client\"}} {}\n\
         novnc_audio_frames_dropped_total{{reason=\"encode_error\"}} {}\n",
        t.dropped_slow_client, stats.pipeline.encode_errors
    );
    let _ = write!(
        s,
        "# HELP novnc_audio_info Static settings.\n# TYPE novnc_audio_info gauge\n\
         novnc_audio_info{{codec=\"{}\",sample_rate=\"{}\",channels=\"{}\",bitrate=\"{}\",device=\"{}\"}} 1\n",
        config.encoder.codec.name(),
        config.capture.sample_rate,
        config.capture.channels,
        config.encoder.bitrate,
        c.device.as_deref().unwrap_or("").replace('"', "'")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_as_json_and_prometheus() {
        let stats = Stats {
            uptime: Duration::from_millis(1500),
            capture: CaptureStatus {
                state: crate::capture::PulseState::Ready,
                device: Some("novnc_audio.monitor".into()),
                sink_created: true,
                reconnects: 2,
                recording: true,
            },
            transport: TransportStats {
                clients: 3,
                ..Default::default()
            },
            pipeline: PipelineStats::default(),
        };
        let config = Config::default();
        let json = render_json(&stats, &config);
        assert!(
            json.starts_with("{\"uptime_s\":1.500,\"pulse_state\":\"ready\""),
            "{json}"
        );
        assert!(json.contains("\"device\":\"novnc_audio.monitor\""));
        assert!(json.contains("\"clients\":3,"));
        assert!(json.contains("\"reconnects\":2}"));
        let prom = render_prometheus(&stats, &config);
        assert!(prom.contains("\nnovnc_audio_clients 3\n"));
        assert!(prom.contains("novnc_audio_frames_dropped_total{reason=\"slow_client\"} 0"));
    }

    #[test]
    fn codec_names() {
        use crate::config::Codec;
        assert_eq!(Codec::Opus.wire_byte(), 1);
        assert_eq!(Codec::Pcm.wire_byte(), 0);
    }
}

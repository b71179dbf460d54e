//! Transport stage: the listening socket and every client, watched from the glib main
//! loop (the clients through one epoll set, [`readiness`]). Knows nothing of PulseAudio.
//!
//! Audio frames arrive pre-framed and shared ([`WireFrame`]); each client keeps a short
//! queue of references to them and writes them with one `writev` ([`client_io`]). A client
//! that cannot keep up loses whole audio frames (never control frames, never a frame
//! already begun), and is dropped after a long stall. A connection starts as an HTTP
//! request ([`conn`]); the web side's router decides what it gets. tungstenite parses what
//! clients send and writes control frames (pong, close) into the same queue.
//!
//! [`WireFrame`]: crate::wire::WireFrame

mod client_io;
mod conn;
mod hub;
mod listeners;
mod readiness;
mod socket_options;
mod ticker;
mod tls;

pub use tls::TlsError;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::rc::Rc;
use std::time::Duration;

use glib::SourceId;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;

use crate::audio::StreamFormat;
use crate::config::WebSocketConfig;
use crate::error::Error;
use crate::mic::Rejection;
use crate::pipeline::FrameSink;
use crate::stats::TransportStats;
use crate::web::{Codecs, Router, StatsFormat};
use conn::ConnKind;
use hub::Hub;
use readiness::Readiness;
use tls::load_tls;

/// Largest message a client may send (it has no reason to send any).
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Control bytes (pongs) a client may leave unread before it is dropped.
pub(crate) const MAX_CONTROL_BACKLOG: usize = 64 * 1024;
/// Audio queued per client before the oldest frames are dropped.
const MAX_QUEUE_DELAY_US: u64 = 200_000;
/// How long to stop accepting when accept() fails (out of file descriptors).
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// Messages read from one client per wakeup, so a flooding client cannot hold the loop.
pub(crate) const MAX_MESSAGES_PER_WAKEUP: usize = 32;
/// A client whose socket accepted nothing for this long is disconnected.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(30);
/// A WebSocket client nothing was written to for this long gets a ping.
pub(crate) const PING_IDLE: Duration = Duration::from_secs(15);
/// How often the idle clients are looked for (only while clients are connected).
pub(crate) const PING_CHECK: Duration = Duration::from_secs(5);

/// The listening socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the listener non-blocking: {0}")]
    NonBlocking(#[source] io::Error),
    #[error("cannot read the listening address: {0}")]
    LocalAddr(#[source] io::Error),
    #[error("cannot create the epoll set for the connections: {0}")]
    Epoll(#[source] io::Error),
}

/// Renders `/stats` or `/metrics` from the transport's counters.
pub type StatsRenderer = Box<dyn Fn(&TransportStats, StatsFormat) -> String>;

/// What the transport needs from the rest of the daemon.
pub struct TransportHooks {
    /// Listeners came (true) or all left (false). Called from the main loop, later.
    pub on_listening: Box<dyn Fn(bool)>,
    /// Renders `/stats` or `/metrics`.
    pub render_stats: StatsRenderer,
    /// The speaker's endpoint, when the microphone is on (`--microphone`).
    pub speaker: Option<SpeakerHooks>,
}

/// Takes one message of the speaker; an error closes the speaker.
pub type SpeakerMessages = Box<dyn Fn(&[u8]) -> Result<(), Rejection>>;

/// Where a speaker's audio goes. The transport only carries messages: what they mean
/// and whether they are acceptable is for `on_message` to say.
pub struct SpeakerHooks {
    /// The WebSocket path (`--mic-path`).
    pub path: String,
    /// A speaker arrived (true) or left (false). Called at once, from the main loop.
    pub on_speaker: Box<dyn Fn(bool)>,
    /// One binary message; an error closes the speaker with its code and reason.
    pub on_message: SpeakerMessages,
}

pub struct Transport {
    hub: Rc<RefCell<Hub>>,
}

/// Removes a glib source if it still exists (a fired one-shot timer is already gone).
pub fn remove_source(id: SourceId) {
    if glib::MainContext::default()
        .find_source_by_id(&id)
        .is_some()
    {
        id.remove();
    }
}

impl Transport {
    /// Binds the listener and starts accepting. The stream `format` sizes the per-client
    /// queues and socket buffers.
    pub fn start(
        config: WebSocketConfig,
        codecs: Codecs,
        format: StreamFormat,
        hooks: TransportHooks,
    ) -> Result<Transport, Error> {
        let mic_path = hooks.speaker.as_ref().map(|s| s.path.clone());
        let router = Router::new(&config, codecs)?.with_mic_path(mic_path);
        let tls = load_tls(&config)?;
        let addr = if config.host.contains(':') && !config.host.starts_with('[') {
            format!("[{}]:{}", config.host, config.port)
        } else {
            format!("{}:{}", config.host, config.port)
        };
        // Reads NOVNC_AUDIO_TCP_OPTIONS now, so a typo is warned about at start-up, not
        // at the first client.
        socket_options::TcpOptions::current();
        let listener = TcpListener::bind(&addr).map_err(|source| ListenError::Bind {
            addr: addr.clone(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(ListenError::NonBlocking)?;
        let max_queue_frames = ((MAX_QUEUE_DELAY_US / format.frame_us as u64) as usize).max(4);
        // Small enough that a stalled client shows up within ~250 ms of PCM, yet holds a
        // few frames so a healthy one never waits on us.
        let sndbuf = (format.bytes_per_second() / 4).clamp(16 * 1024, 256 * 1024);
        let readiness = Readiness::new().map_err(ListenError::Epoll)?;
        let hub = Rc::new_cyclic(|weak| {
            RefCell::new(Hub {
                config,
                tls,
                router,
                codecs,
                max_queue_frames,
                sndbuf,
                listener,
                listener_source: None,
                readiness,
                listeners: Default::default(),
                readiness_source: None,
                conns: HashMap::new(),
                next_id: 1,
                weak: weak.clone(),
                hooks: Rc::new(hooks),
                stats: TransportStats::default(),
                listening: false,
                ping_timer: None,
                accept_failing: false,
                shut_down: false,
            })
        });
        hub.borrow_mut().arm_readiness();
        hub.borrow_mut().arm_listener();
        Ok(Transport { hub })
    }

    pub fn scheme(&self) -> &'static str {
        if self.hub.borrow().tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    pub fn local_addr(&self) -> Result<SocketAddr, ListenError> {
        self.hub
            .borrow()
            .listener
            .local_addr()
            .map_err(ListenError::LocalAddr)
    }

    pub fn stats(&self) -> TransportStats {
        self.hub.borrow().stats.clone()
    }

    /// Runs `f` with the hub as the pipeline's frame sink.
    pub fn with_sink<R>(&self, f: impl FnOnce(&mut dyn FrameSink) -> R) -> R {
        let mut hub = self.hub.borrow_mut();
        f(&mut *hub)
    }

    /// Applies settings that can change without a restart (SIGHUP).
    /// Takes the running configuration after a reload (SIGHUP; see
    /// [`crate::config::apply_live`]): re-reads the token file and the certificate, and
    /// changes nothing if either fails.
    pub fn reload(&self, config: &WebSocketConfig) -> Result<(), Error> {
        let mut hub = self.hub.borrow_mut();
        let mic_path = hub.hooks.speaker.as_ref().map(|s| s.path.clone());
        let router = Router::new(config, hub.codecs)?.with_mic_path(mic_path);
        let tls = load_tls(config)?;
        hub.router = router;
        hub.tls = tls;
        hub.config = config.clone();
        Ok(())
    }

    /// Says goodbye (close 1001) to every client and stops listening.
    pub fn shutdown(&self) {
        let mut hub = self.hub.borrow_mut();
        hub.shut_down = true;
        if let Some(s) = hub.listener_source.take() {
            remove_source(s);
        }
        let ids: Vec<u64> = hub.conns.keys().copied().collect();
        let mut sent = 0;
        for id in ids {
            if let Some(conn) = hub.conns.get_mut(&id) {
                if let ConnKind::Ws(w) = &mut conn.kind {
                    w.ws.get_mut().drop_pending_audio();
                    let _ = w.ws.close(Some(CloseFrame {
                        code: CloseCode::Away,
                        reason: "server shutting down".into(),
                    }));
                    let _ = w.ws.get_mut().flush_queue(&mut sent);
                }
            }
            hub.remove(id);
        }
        if let Some(s) = hub.readiness_source.take() {
            remove_source(s);
        }
    }
}

//! Transport stage: the listening socket and every client, each watched by a glib fd
//! source on the main loop. Knows nothing of PulseAudio.
//!
//! Audio frames arrive pre-framed and shared ([`WireFrame`]); each client keeps a short
//! queue of references to them and writes them with one `writev`. A client that cannot
//! keep up loses whole audio frames (never control frames, never a frame already begun),
//! and is dropped after a long stall. tungstenite parses what clients send and writes
//! control frames (pong, close) into the same queue through [`ClientIo`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glib::{ControlFlow, IOCondition, SourceId};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig as WsProtoConfig};
use tungstenite::Message;

use crate::config::{Codec, WebSocketConfig};
use crate::http::{self, Parse, Reply, Request};
use crate::pipeline::FrameSink;
use crate::wire::WireFrame;
use crate::{debug, info, warn};

/// Largest message a client may send (it has no reason to send any).
const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Control bytes (pongs) a client may leave unread before it is dropped.
const MAX_CONTROL_BACKLOG: usize = 64 * 1024;
/// Audio queued per client before the oldest frames are dropped.
const MAX_QUEUE_DELAY_US: u64 = 200_000;
/// How long to stop accepting when accept() fails (out of file descriptors).
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);
/// Messages read from one client per wakeup, so a flooding client cannot hold the loop.
const MAX_MESSAGES_PER_WAKEUP: usize = 32;
/// A client whose socket accepted nothing for this long is disconnected.
const STALL_LIMIT: Duration = Duration::from_secs(30);

/// Counters for stats.
#[derive(Debug, Default, Clone)]
pub struct TransportStats {
    pub clients: usize,
    pub opus_clients: usize,
    pub pcm_clients: usize,
    pub connections_total: u64,
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub dropped_slow_client: u64,
    pub disconnected_stalled: u64,
    pub rejected: HashMap<u16, u64>,
}

/// Renders `/stats` (`false`) or `/metrics` (`true`) from the transport's counters.
pub type StatsRenderer = Box<dyn Fn(&TransportStats, bool) -> String>;

/// What the transport needs from the rest of the daemon.
pub struct TransportHooks {
    /// Listeners came (true) or all left (false). Called from the main loop, later.
    pub on_listening: Box<dyn Fn(bool)>,
    /// Renders `/stats` (false) or `/metrics` (true).
    pub render_stats: StatsRenderer,
}

/// Static files compiled into the binary.
pub struct WebFiles {
    pub index_html: &'static str,
    pub client_js: &'static str,
}

pub struct Transport {
    hub: Rc<RefCell<Hub>>,
}

enum Item {
    Audio(Rc<WireFrame>),
    Control(Vec<u8>),
}

impl Item {
    fn bytes(&self) -> &[u8] {
        match self {
            Item::Audio(f) => f.bytes(),
            Item::Control(v) => v,
        }
    }
}

/// The socket plus its outgoing queue. tungstenite writes control frames into the queue
/// (never the socket directly), so they are ordered with the audio around them.
pub struct ClientIo {
    sock: TcpStream,
    /// With `--tls-cert`: the TLS session; queued items are fed to it whole.
    tls: Option<Box<rustls::ServerConnection>>,
    queue: VecDeque<Item>,
    /// Bytes of the front item already written.
    offset: usize,
    control_bytes: usize,
    audio_frames: usize,
    last_progress: Instant,
}

impl Read for ClientIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = self.tls.as_mut() else {
            return self.sock.read(buf);
        };
        loop {
            match tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
            // No plaintext yet: pull TLS records from the socket.
            match tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        // Queue the alert for the peer; the caller closes.
                        let _ = tls.write_tls(&mut self.sock);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for ClientIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.control_bytes += buf.len();
        self.queue.push_back(Item::Control(buf.to_vec()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum Flush {
    Done,
    Blocked,
}

impl ClientIo {
    fn new(sock: TcpStream, tls: Option<Box<rustls::ServerConnection>>) -> ClientIo {
        ClientIo {
            sock,
            tls,
            queue: VecDeque::new(),
            offset: 0,
            control_bytes: 0,
            audio_frames: 0,
            last_progress: Instant::now(),
        }
    }

    /// Writes as much of the queue as the socket takes, several items per syscall.
    fn flush_queue(&mut self, bytes_sent: &mut u64) -> io::Result<Flush> {
        if self.tls.is_some() {
            return self.flush_tls(bytes_sent);
        }
        while !self.queue.is_empty() {
            let mut slices: [IoSlice<'_>; 16] = [IoSlice::new(&[]); 16];
            let mut n = 0;
            for (i, item) in self.queue.iter().take(16).enumerate() {
                let b = item.bytes();
                slices[i] = IoSlice::new(if i == 0 { &b[self.offset..] } else { b });
                n += 1;
            }
            let written = match self.sock.write_vectored(&slices[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            *bytes_sent += written as u64;
            self.last_progress = Instant::now();
            let mut left = written;
            while left > 0 {
                let front_len = self.queue[0].bytes().len() - self.offset;
                if left >= front_len {
                    left -= front_len;
                    self.offset = 0;
                    match self.queue.pop_front() {
                        Some(Item::Control(v)) => self.control_bytes -= v.len(),
                        Some(Item::Audio(_)) => self.audio_frames -= 1,
                        None => {}
                    }
                } else {
                    self.offset += left;
                    left = 0;
                }
            }
        }
        Ok(Flush::Done)
    }

    /// TLS: items enter the session only once its previous records are on the wire, so
    /// the queue (where stale audio is dropped) stays the only place data waits.
    fn flush_tls(&mut self, bytes_sent: &mut u64) -> io::Result<Flush> {
        let Some(tls) = self.tls.as_mut() else {
            return Ok(Flush::Done);
        };
        loop {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        *bytes_sent += n as u64;
                        self.last_progress = Instant::now();
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Flush::Blocked),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(item) = self.queue.pop_front() else {
                return Ok(Flush::Done);
            };
            match &item {
                Item::Control(v) => self.control_bytes -= v.len(),
                Item::Audio(_) => self.audio_frames -= 1,
            }
            tls.writer().write_all(item.bytes())?;
        }
    }

    /// Queues a frame, dropping the oldest not-yet-begun audio beyond `max_frames`.
    /// Returns how many frames were dropped.
    fn enqueue_audio(&mut self, frame: &Rc<WireFrame>, max_frames: usize) -> u64 {
        let mut dropped = 0;
        while self.audio_frames >= max_frames {
            let begun = if self.offset > 0 { 1 } else { 0 };
            let Some(pos) = self
                .queue
                .iter()
                .skip(begun)
                .position(|i| matches!(i, Item::Audio(_)))
            else {
                break;
            };
            self.queue.remove(pos + begun);
            self.audio_frames -= 1;
            dropped += 1;
        }
        self.queue.push_back(Item::Audio(frame.clone()));
        self.audio_frames += 1;
        dropped
    }

    fn drop_pending_audio(&mut self) {
        let begun = usize::from(self.offset > 0);
        let mut i = begun;
        while i < self.queue.len() {
            if matches!(self.queue[i], Item::Audio(_)) {
                self.queue.remove(i);
                self.audio_frames -= 1;
            } else {
                i += 1;
            }
        }
    }
}

struct HttpConn {
    io: ClientIo,
    buf: Vec<u8>,
    timeout: Option<SourceId>,
    /// An answer is queued; close once it is written.
    closing: bool,
}

struct WsConn {
    ws: WebSocket<ClientIo>,
    codec: Codec,
    closing: bool,
}

enum ConnKind {
    Http(HttpConn),
    // Boxed: a WebSocket's state is several times larger than a pending request's.
    Ws(Box<WsConn>),
}

struct Conn {
    peer: SocketAddr,
    kind: ConnKind,
    in_source: Option<SourceId>,
    out_source: Option<SourceId>,
}

impl Conn {
    fn io(&mut self) -> &mut ClientIo {
        match &mut self.kind {
            ConnKind::Http(h) => &mut h.io,
            ConnKind::Ws(w) => w.ws.get_mut(),
        }
    }
}

struct Hub {
    config: WebSocketConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    token: Option<String>,
    default_codec: Codec,
    opus_available: bool,
    max_queue_frames: usize,
    sndbuf: usize,
    listener: TcpListener,
    listener_source: Option<SourceId>,
    conns: HashMap<u64, Conn>,
    next_id: u64,
    weak: Weak<RefCell<Hub>>,
    hooks: Rc<TransportHooks>,
    web: WebFiles,
    stats: TransportStats,
    listening: bool,
    /// accept() is failing (out of descriptors): logged once per episode.
    accept_failing: bool,
    shut_down: bool,
}

/// Reads `--token-file`. An empty file is an error: an empty token would match an empty
/// `?token=`.
fn load_token(config: &WebSocketConfig) -> Result<Option<String>, String> {
    let Some(path) = &config.token_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read --token-file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("--token-file {} is empty", path.display()));
    }
    Ok(Some(token.to_string()))
}

/// Loads `--tls-cert` / `--tls-key` (PEM) into a rustls server configuration.
fn load_tls(config: &WebSocketConfig) -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let (Some(cert_path), Some(key_path)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let certs = CertificateDer::pem_file_iter(cert_path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read --tls-cert {}: {e}", cert_path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--tls-cert {}: no PEM certificate in it",
            cert_path.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| format!("cannot read --tls-key {}: {e}", key_path.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert/--tls-key do not make a usable pair: {e}"))?;
    Ok(Some(Arc::new(server)))
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

fn set_sndbuf(sock: &TcpStream, bytes: usize) {
    let value = bytes as libc::c_int;
    // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the given size.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

impl Transport {
    /// Binds the listener and starts accepting.
    /// `frame_us` and `bytes_per_second` size the per-client queues and socket buffers.
    pub fn start(
        config: WebSocketConfig,
        default_codec: Codec,
        opus_available: bool,
        frame_us: u32,
        pcm_bytes_per_second: usize,
        web: WebFiles,
        hooks: TransportHooks,
    ) -> Result<Transport, String> {
        let token = load_token(&config)?;
        let tls = load_tls(&config)?;
        let addr = format!("{}:{}", config.host, config.port);
        let addr = if config.host.contains(':') && !config.host.starts_with('[') {
            format!("[{}]:{}", config.host, config.port)
        } else {
            addr
        };
        let listener =
            TcpListener::bind(&addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;
        let max_queue_frames = ((MAX_QUEUE_DELAY_US / frame_us as u64) as usize).max(4);
        // Small enough that a stalled client shows up within ~250 ms of PCM, yet holds a
        // few frames so a healthy one never waits on us.
        let sndbuf = (pcm_bytes_per_second / 4).clamp(16 * 1024, 256 * 1024);
        let hub = Rc::new_cyclic(|weak| {
            RefCell::new(Hub {
                config,
                tls,
                token,
                default_codec,
                opus_available,
                max_queue_frames,
                sndbuf,
                listener,
                listener_source: None,
                conns: HashMap::new(),
                next_id: 1,
                weak: weak.clone(),
                hooks: Rc::new(hooks),
                web,
                stats: TransportStats::default(),
                listening: false,
                accept_failing: false,
                shut_down: false,
            })
        });
        hub.borrow_mut().arm_listener();
        Ok(Transport { hub })
    }

    /// `wss` with a certificate, `ws` without.
    pub fn scheme(&self) -> &'static str {
        if self.hub.borrow().tls.is_some() {
            "wss"
        } else {
            "ws"
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.hub.borrow().listener.local_addr()
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
    pub fn reload(&self, config: &WebSocketConfig) -> Result<(), String> {
        let mut hub = self.hub.borrow_mut();
        let token = load_token(config)?;
        hub.tls = load_tls(config)?;
        hub.token = token;
        hub.config.max_clients = config.max_clients;
        hub.config.allowed_origins = config.allowed_origins.clone();
        hub.config.serve_web = config.serve_web;
        hub.config.serve_stats = config.serve_stats;
        hub.config.handshake_timeout = config.handshake_timeout;
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
    }
}

impl FrameSink for Hub {
    fn wants(&self, codec: Codec) -> bool {
        match codec {
            Codec::Opus => self.stats.opus_clients > 0,
            Codec::Pcm => self.stats.pcm_clients > 0,
        }
    }

    fn send(&mut self, codec: Codec, frame: &Rc<WireFrame>) {
        let now = Instant::now();
        let mut to_watch = Vec::new();
        let mut to_drop = Vec::new();
        let max = self.max_queue_frames;
        let mut bytes_sent = 0;
        let mut frames_sent = 0;
        let mut dropped = 0;
        for (&id, conn) in self.conns.iter_mut() {
            let waiting_for_out = conn.out_source.is_some();
            let ConnKind::Ws(w) = &mut conn.kind else {
                continue;
            };
            if w.codec != codec || w.closing {
                continue;
            }
            let io = w.ws.get_mut();
            dropped += io.enqueue_audio(frame, max);
            frames_sent += 1;
            if waiting_for_out {
                if io.audio_frames >= max && now - io.last_progress > STALL_LIMIT {
                    to_drop.push(id);
                }
                continue;
            }
            match io.flush_queue(&mut bytes_sent) {
                Ok(Flush::Done) => {}
                Ok(Flush::Blocked) => to_watch.push(id),
                Err(_) => to_drop.push(id),
            }
        }
        self.stats.bytes_sent += bytes_sent;
        self.stats.frames_sent += frames_sent;
        self.stats.dropped_slow_client += dropped;
        for id in to_watch {
            self.watch_out(id);
        }
        for id in to_drop {
            if let Some(c) = self.conns.get(&id) {
                if c.out_source.is_some() {
                    self.stats.disconnected_stalled += 1;
                    warn!(
                        "client {} stopped reading for {}s: disconnecting it",
                        c.peer,
                        STALL_LIMIT.as_secs()
                    );
                }
            }
            self.remove(id);
        }
    }
}

impl Hub {
    fn arm_listener(&mut self) {
        if self.listener_source.is_some() || self.shut_down {
            return;
        }
        let fd = self.listener.as_raw_fd();
        let weak = self.weak.clone();
        self.listener_source = Some(glib_unix::unix_fd_add_local(
            fd,
            IOCondition::IN,
            move |_, _| {
                if let Some(hub) = weak.upgrade() {
                    hub.borrow_mut().accept_all();
                }
                ControlFlow::Continue
            },
        ));
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((sock, peer)) => {
                    self.accept_failing = false;
                    self.add_conn(sock, peer)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors (EMFILE, ENFILE) or memory: the pending
                    // connection stays queued and the listener stays readable, so stop
                    // watching it for a moment instead of spinning; the others go on.
                    if !self.accept_failing {
                        warn!(
                            "cannot accept connections ({e}) with {} open; pausing accept for {} ms",
                            self.conns.len(),
                            ACCEPT_PAUSE.as_millis()
                        );
                        self.accept_failing = true;
                    }
                    if let Some(s) = self.listener_source.take() {
                        remove_source(s);
                    }
                    let weak = self.weak.clone();
                    glib::timeout_add_local_once(ACCEPT_PAUSE, move || {
                        if let Some(hub) = weak.upgrade() {
                            hub.borrow_mut().arm_listener();
                        }
                    });
                    break;
                }
            }
        }
    }

    fn add_conn(&mut self, sock: TcpStream, peer: SocketAddr) {
        if sock.set_nonblocking(true).is_err() {
            return;
        }
        let _ = sock.set_nodelay(true);
        let tls = match &self.tls {
            Some(config) => match rustls::ServerConnection::new(config.clone()) {
                Ok(mut c) => {
                    // Our queue bounds what waits; the session only holds one item.
                    c.set_buffer_limit(None);
                    Some(Box::new(c))
                }
                Err(e) => {
                    warn!("TLS session setup failed: {e}");
                    return;
                }
            },
            None => None,
        };
        let id = self.next_id;
        self.next_id += 1;
        self.stats.connections_total += 1;
        let fd = sock.as_raw_fd();
        let weak = self.weak.clone();
        let in_source = glib_unix::unix_fd_add_local(
            fd,
            IOCondition::IN | IOCondition::HUP | IOCondition::ERR,
            move |_, _| {
                if let Some(hub) = weak.upgrade() {
                    hub.borrow_mut().on_readable(id);
                }
                ControlFlow::Continue
            },
        );
        let weak = self.weak.clone();
        let timeout = glib::timeout_add_local_once(self.config.handshake_timeout, move || {
            if let Some(hub) = weak.upgrade() {
                hub.borrow_mut().on_handshake_timeout(id);
            }
        });
        debug!("connection from {peer}");
        self.conns.insert(
            id,
            Conn {
                peer,
                kind: ConnKind::Http(HttpConn {
                    io: ClientIo::new(sock, tls),
                    buf: Vec::with_capacity(1024),
                    timeout: Some(timeout),
                    closing: false,
                }),
                in_source: Some(in_source),
                out_source: None,
            },
        );
    }

    fn on_handshake_timeout(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let peer = conn.peer;
        if let ConnKind::Http(h) = &mut conn.kind {
            h.timeout = None; // fired: already gone
            if h.closing {
                // The answer was given; the peer had its time to read it.
                self.remove(id);
                return;
            }
            debug!(
                "{peer}: request not finished within {}s; closing",
                self.config.handshake_timeout.as_secs()
            );
            self.count_reject(408);
            let reply = Reply::text(408, "Request Timeout", "Request not received in time.");
            self.answer(id, reply, false);
            // Give the answer a second to leave, then close regardless.
            let weak = self.weak.clone();
            let linger = glib::timeout_add_local_once(Duration::from_secs(1), move || {
                if let Some(hub) = weak.upgrade() {
                    hub.borrow_mut().on_handshake_timeout(id);
                }
            });
            if let Some(ConnKind::Http(h)) = self.conns.get_mut(&id).map(|c| &mut c.kind) {
                h.timeout = Some(linger);
            } else {
                remove_source(linger);
            }
        }
    }

    fn on_readable(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        match &mut conn.kind {
            ConnKind::Http(_) => self.read_http(id),
            ConnKind::Ws(_) => self.read_ws(id),
        }
    }

    fn read_http(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnKind::Http(h) = &mut conn.kind else {
            return;
        };
        if h.closing {
            // The answer is out; discard what else arrives until the peer closes (closing
            // with unread data would reset the connection and could lose the answer).
            let mut sink = [0u8; 4096];
            loop {
                match h.io.read(&mut sink) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            self.remove(id);
            return;
        }
        let mut chunk = [0u8; 4096];
        loop {
            match h.io.read(&mut chunk) {
                Ok(0) => {
                    self.remove(id);
                    return;
                }
                Ok(n) => {
                    h.buf.extend_from_slice(&chunk[..n]);
                    if h.buf.len() > http::MAX_REQUEST_HEAD + 4096 {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.remove(id);
                    return;
                }
            }
        }
        let peer = conn.peer;
        let tls = h.io.tls.is_some();
        match http::parse_request(&h.buf) {
            Parse::Partial => {
                if tls {
                    // TLS handshake records may be waiting to go out.
                    self.flush(id);
                }
            }
            Parse::Reject(reply) => {
                debug!("{peer}: {} {}", reply.status, reply.reason);
                self.count_reject(reply.status);
                self.answer(id, reply, false);
            }
            Parse::Complete(req) => self.route(id, req),
        }
    }

    fn count_reject(&mut self, status: u16) {
        *self.stats.rejected.entry(status).or_insert(0) += 1;
    }

    fn authorized(&self, req: &Request) -> bool {
        match &self.token {
            None => true,
            Some(t) => req
                .presented_token()
                .is_some_and(|p| http::constant_time_eq(p.as_bytes(), t.as_bytes())),
        }
    }

    fn route(&mut self, id: u64, req: Request) {
        let head_only = req.method == "HEAD";
        let peer = self.conns.get(&id).map(|c| c.peer);
        let reply = if req.path == self.config.path {
            match self.check_ws(&req) {
                Ok((key, protocol, codec)) => {
                    self.upgrade(id, &key, protocol.as_deref(), codec);
                    return;
                }
                Err(reply) => reply,
            }
        } else if req.method != "GET" && req.method != "HEAD" {
            Reply::text(405, "Method Not Allowed", "Only GET is served here.")
                .with_header("Allow", "GET, HEAD")
        } else {
            self.page(&req)
        };
        if reply.status >= 400 {
            // The request line and status only: the token never reaches the log.
            if let Some(p) = peer {
                debug!("{p}: {} {} -> {}", req.method, req.path, reply.status);
            }
            self.count_reject(reply.status);
        }
        self.answer(id, reply, head_only);
    }

    fn page(&self, req: &Request) -> Reply {
        match req.path.as_str() {
            "/" | "/index.html" if self.config.serve_web => {
                if !self.authorized(req) {
                    return Reply::unauthorized();
                }
                Reply {
                    status: 200,
                    reason: "OK",
                    content_type: "text/html; charset=utf-8",
                    body: self.web.index_html.as_bytes().to_vec(),
                    headers: Vec::new(),
                }
            }
            "/novnc-audio.js" if self.config.serve_web => Reply {
                status: 200,
                reason: "OK",
                content_type: "text/javascript; charset=utf-8",
                body: self.web.client_js.as_bytes().to_vec(),
                headers: vec![("Access-Control-Allow-Origin", "*".into())],
            },
            "/stats" | "/metrics" if self.config.serve_stats => {
                if !self.authorized(req) {
                    return Reply::unauthorized();
                }
                let prometheus = req.path == "/metrics";
                let body = (self.hooks.render_stats)(&self.stats, prometheus);
                Reply {
                    status: 200,
                    reason: "OK",
                    content_type: if prometheus {
                        "text/plain; version=0.0.4; charset=utf-8"
                    } else {
                        "application/json"
                    },
                    body: body.into_bytes(),
                    headers: Vec::new(),
                }
            }
            _ => Reply::text(
                404,
                "Not Found",
                &format!("Not found. The audio stream is at {}.", self.config.path),
            ),
        }
    }

    /// Checks a request on the stream path; on success returns key, protocol, codec.
    fn check_ws(&self, req: &Request) -> Result<(String, Option<String>, Codec), Reply> {
        let (key, protocol) = http::check_upgrade(req)?;
        if !self.config.allowed_origins.is_empty() {
            let origin = req
                .header("origin")
                .unwrap_or("")
                .trim()
                .trim_end_matches('/');
            if !self.config.allowed_origins.iter().any(|o| o == origin) {
                return Err(Reply::text(
                    403,
                    "Forbidden",
                    "This Origin may not connect.",
                ));
            }
        }
        if !self.authorized(req) {
            return Err(Reply::unauthorized());
        }
        let codec = match req.query_param("codec").as_deref() {
            None | Some("") => self.default_codec,
            Some("pcm") => Codec::Pcm,
            Some("opus") if self.opus_available => Codec::Opus,
            Some(other) => {
                return Err(Reply::text(
                    400,
                    "Bad Request",
                    &format!("Codec '{other}' is not available here (try pcm)."),
                ))
            }
        };
        if self.stats.clients >= self.config.max_clients {
            return Err(Reply::text(
                503,
                "Service Unavailable",
                &format!(
                    "Too many clients (the limit is {}).",
                    self.config.max_clients
                ),
            )
            .with_header("Retry-After", "5"));
        }
        Ok((key, protocol, codec))
    }

    /// Queues an HTTP answer and closes once it is written.
    fn answer(&mut self, id: u64, reply: Reply, head_only: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnKind::Http(h) = &mut conn.kind else {
            return;
        };
        // The handshake timeout stays armed: it also bounds how long we linger.
        h.closing = true;
        let bytes = reply.to_bytes(head_only);
        h.io.control_bytes += bytes.len();
        h.io.queue.push_back(Item::Control(bytes));
        self.flush(id);
    }

    fn upgrade(&mut self, id: u64, key: &str, protocol: Option<&str>, codec: Codec) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        let ConnKind::Http(mut h) = conn.kind else {
            return;
        };
        if let Some(t) = h.timeout.take() {
            remove_source(t);
        }
        set_sndbuf(&h.io.sock, self.sndbuf);
        let response = http::switching_protocols(key, protocol);
        h.io.control_bytes += response.len();
        h.io.queue.push_back(Item::Control(response));
        h.io.last_progress = Instant::now();
        let config = WsProtoConfig::default()
            .read_buffer_size(4096)
            .max_message_size(Some(MAX_CLIENT_MESSAGE))
            .max_frame_size(Some(MAX_CLIENT_MESSAGE));
        let ws = WebSocket::from_raw_socket(h.io, Role::Server, Some(config));
        conn.kind = ConnKind::Ws(Box::new(WsConn {
            ws,
            codec,
            closing: false,
        }));
        info!(
            "client {} connected ({}, {} now)",
            conn.peer,
            codec.name(),
            self.stats.clients + 1
        );
        self.conns.insert(id, conn);
        self.stats.clients += 1;
        match codec {
            Codec::Opus => self.stats.opus_clients += 1,
            Codec::Pcm => self.stats.pcm_clients += 1,
        }
        self.update_listening();
        // Bytes pipelined after the request head (client frames) are dropped with `h.buf`.
        self.flush(id);
    }

    fn update_listening(&mut self) {
        let listening = self.stats.clients > 0;
        if listening != self.listening {
            self.listening = listening;
            let hooks = self.hooks.clone();
            // Outside of our borrow: the hook reaches into the capture.
            glib::timeout_add_local_once(Duration::ZERO, move || (hooks.on_listening)(listening));
        }
    }

    fn read_ws(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnKind::Ws(w) = &mut conn.kind else {
            return;
        };
        let peer = conn.peer;
        let mut gone = false;
        let mut close_with: Option<(CloseCode, &'static str)> = None;
        // Stays true only if the loop stops at the cap, with messages possibly left in
        // tungstenite's buffer where no fd watch can see them.
        let mut more = true;
        for _ in 0..MAX_MESSAGES_PER_WAKEUP {
            more = false;
            match w.ws.read() {
                Ok(Message::Close(_)) => {
                    // tungstenite queues the close reply; it goes out with the next flush.
                    debug!("client {peer} sent close");
                    w.closing = true;
                    more = true;
                }
                Ok(_) => more = true, // data, pings (answered by tungstenite), pongs: ignored
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(tungstenite::Error::ConnectionClosed)
                | Err(tungstenite::Error::AlreadyClosed) => {
                    // After a close handshake: send our reply (queued), then drop.
                    if !w.closing {
                        gone = true;
                    }
                    break;
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    info!("client {peer} sent an oversized message ({e}); closing with 1009");
                    close_with = Some((CloseCode::Size, "message too big"));
                    break;
                }
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    debug!("client {peer} went away without a close frame");
                    gone = true;
                    break;
                }
                Err(tungstenite::Error::Protocol(e)) => {
                    if w.closing {
                        gone = true;
                    } else {
                        info!(
                            "client {peer} broke the WebSocket protocol ({e}); closing with 1002"
                        );
                        close_with = Some((CloseCode::Protocol, "protocol error"));
                    }
                    break;
                }
                Err(e) => {
                    debug!("client {peer}: {e}");
                    gone = true;
                    break;
                }
            }
        }
        // A pong tungstenite holds back until its next read goes into our queue now
        // (the loop may have stopped at the per-wakeup cap, not at WouldBlock).
        if !gone && close_with.is_none() {
            let _ = w.ws.flush();
        }
        if let Some((code, reason)) = close_with {
            w.ws.get_mut().drop_pending_audio();
            let _ = w.ws.close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            w.closing = true;
        }
        if gone {
            self.remove(id);
            return;
        }
        self.flush(id);
        // Pongs the socket refused pile up only for a client that pings without reading.
        let flooded = self
            .conns
            .get_mut(&id)
            .is_some_and(|c| c.out_source.is_some() && c.io().control_bytes > MAX_CONTROL_BACKLOG);
        if flooded {
            info!(
                "client {peer} floods us with pings it does not read the answers to; disconnecting"
            );
            self.remove(id);
            return;
        }
        if more && self.conns.contains_key(&id) {
            // Come back after the other sources had their turn.
            let weak = self.weak.clone();
            glib::timeout_add_local_once(Duration::ZERO, move || {
                if let Some(hub) = weak.upgrade() {
                    hub.borrow_mut().read_ws(id);
                }
            });
        }
    }

    /// Writes what is queued for `id`; watches for OUT when the socket is full;
    /// finishes closing connections whose last bytes are out.
    fn flush(&mut self, id: u64) {
        let mut sent = 0;
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let closing = match &conn.kind {
            ConnKind::Http(h) => h.closing,
            ConnKind::Ws(w) => w.closing,
        };
        let result = conn.io().flush_queue(&mut sent);
        self.stats.bytes_sent += sent;
        match result {
            Ok(Flush::Done) => {
                if let Some(s) = self.conns.get_mut(&id).and_then(|c| c.out_source.take()) {
                    remove_source(s);
                }
                if closing {
                    let Some(c) = self.conns.get_mut(&id) else {
                        return;
                    };
                    match c.kind {
                        // Half-close and wait for the peer's EOF (see read_http).
                        ConnKind::Http(_) => {
                            let io = c.io();
                            if let Some(tls) = io.tls.as_mut() {
                                tls.send_close_notify();
                                let _ = tls.write_tls(&mut io.sock);
                            }
                            let _ = io.sock.shutdown(std::net::Shutdown::Write);
                        }
                        // The close handshake is complete.
                        ConnKind::Ws(_) => self.remove(id),
                    }
                }
            }
            Ok(Flush::Blocked) => self.watch_out(id),
            Err(_) => self.remove(id),
        }
    }

    fn watch_out(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.out_source.is_some() {
            return;
        }
        let fd = conn.io().sock.as_raw_fd();
        let weak = self.weak.clone();
        conn.out_source = Some(glib_unix::unix_fd_add_local(
            fd,
            IOCondition::OUT,
            move |_, _| {
                if let Some(hub) = weak.upgrade() {
                    let mut hub = hub.borrow_mut();
                    hub.flush(id);
                }
                ControlFlow::Continue
            },
        ));
    }

    fn remove(&mut self, id: u64) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if let Some(s) = conn.in_source.take() {
            remove_source(s);
        }
        if let Some(s) = conn.out_source.take() {
            remove_source(s);
        }
        match &mut conn.kind {
            ConnKind::Http(h) => {
                if let Some(t) = h.timeout.take() {
                    remove_source(t);
                }
            }
            ConnKind::Ws(w) => {
                self.stats.clients -= 1;
                match w.codec {
                    Codec::Opus => self.stats.opus_clients -= 1,
                    Codec::Pcm => self.stats.pcm_clients -= 1,
                }
                info!(
                    "client {} disconnected ({} left)",
                    conn.peer, self.stats.clients
                );
                self.update_listening();
            }
        }
        // Dropping the socket closes it.
    }
}

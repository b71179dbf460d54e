//! The hub: the listener and every connection (one epoll set behind one glib source); the
//! fan-out of each shared frame to the clients of its codec.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glib::{ControlFlow, IOCondition, SourceId};
use log::{debug, info, warn};
use tungstenite::Message;

use super::client_io::{ClientIo, Flush};
use super::conn::{Conn, ConnKind, HttpConn, WsRole};
use super::listeners::{send_now, Listeners, Sent};
use super::readiness::{Readiness, Watch};
use super::ticker::Ticker;
use super::{remove_source, TransportHooks, ACCEPT_PAUSE, PING_CHECK, PING_IDLE, STALL_LIMIT};
use crate::audio::Codec;
use crate::config::WebSocketConfig;
use crate::pipeline::FrameSink;
use crate::stats::TransportStats;
use crate::web::{Codecs, Router};
use crate::wire::WireFrame;

pub(super) struct Hub {
    pub(super) config: WebSocketConfig,
    pub(super) tls: Option<Arc<rustls::ServerConfig>>,
    pub(super) router: Router,
    pub(super) codecs: Codecs,
    pub(super) max_queue_frames: usize,
    pub(super) sndbuf: usize,
    pub(super) listener: TcpListener,
    pub(super) listener_source: Option<SourceId>,
    /// The audio listeners, densely, for the fan-out (see listeners.rs).
    pub(super) listeners: Listeners,
    /// Every connection's socket, behind one glib fd source.
    pub(super) readiness: Readiness,
    pub(super) readiness_source: Option<SourceId>,
    pub(super) conns: HashMap<u64, Conn>,
    pub(super) next_id: u64,
    pub(super) weak: Weak<RefCell<Hub>>,
    pub(super) hooks: Rc<TransportHooks>,
    pub(super) stats: TransportStats,
    pub(super) listening: bool,
    /// While clients are connected: the timer that pings the idle ones.
    pub(super) ping_timer: Option<Ticker>,
    /// accept() is failing (out of descriptors): logged once per episode.
    pub(super) accept_failing: bool,
    pub(super) shut_down: bool,
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
        let bytes = frame.bytes();
        let mut to_watch = Vec::new();
        let mut to_drop = Vec::new();
        // Clients with something queued, or whose direct send was cut: (id, bytes the
        // socket took of this frame, None if it was not tried directly).
        let mut queued = Vec::new();
        let mut to_review = Vec::new();
        let max = self.max_queue_frames;
        let mut bytes_sent = 0;
        let mut frames_sent = 0;
        let mut dropped = 0;
        // The dense list first: a client that keeps up costs one send() and no lookup.
        for l in self.listeners.list.iter_mut() {
            if l.codec != codec {
                continue;
            }
            frames_sent += 1;
            if !l.direct {
                queued.push((l.id, None, l.last_progress));
                continue;
            }
            match send_now(l.fd, bytes) {
                Sent::All => {
                    bytes_sent += bytes.len() as u64;
                    l.last_progress = now;
                }
                Sent::Part(n) => {
                    bytes_sent += n as u64;
                    if n > 0 {
                        l.last_progress = now;
                    }
                    l.direct = false;
                    queued.push((l.id, Some(n), l.last_progress));
                }
                Sent::Failed => to_drop.push(l.id),
            }
        }
        for (id, sent, progress) in queued {
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            let waiting_for_out = conn.out_source.is_some();
            let ConnKind::Ws(w) = &mut conn.kind else {
                continue;
            };
            let io = w.ws.get_mut();
            io.last_progress = io.last_progress.max(progress);
            if let Some(n) = sent {
                // Cut on the direct path: the rest waits; come back when writable.
                if n == 0 {
                    dropped += io.enqueue_audio(frame, max);
                } else {
                    io.queue_rest(frame, n);
                }
                to_watch.push(id);
                continue;
            }
            if waiting_for_out {
                dropped += io.enqueue_audio(frame, max);
                if io.audio_frames >= max && now - io.last_progress > STALL_LIMIT {
                    to_drop.push(id);
                }
                continue;
            }
            let (d, result) = io.send_audio(frame, max, now, &mut bytes_sent);
            dropped += d;
            match result {
                // Its queue emptied: back to the direct path (TLS never is).
                Ok(Flush::Done) if io.tls.is_none() => to_review.push(id),
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
        for id in to_review {
            self.review_listener(id);
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
    pub(super) fn arm_listener(&mut self) {
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

    /// One glib source for every connection (see [`Readiness`]).
    pub(super) fn arm_readiness(&mut self) {
        let weak = self.weak.clone();
        self.readiness_source = Some(glib_unix::unix_fd_add_local(
            self.readiness.fd(),
            IOCondition::IN,
            move |_, _| {
                if let Some(hub) = weak.upgrade() {
                    hub.borrow_mut().on_ready();
                }
                ControlFlow::Continue
            },
        ));
    }

    /// Reads the readable sockets and writes the writable ones that were waiting.
    fn on_ready(&mut self) {
        for ready in self.readiness.ready() {
            if ready.readable {
                self.on_readable(ready.id);
            }
            let waiting = self
                .conns
                .get(&ready.id)
                .is_some_and(|c| c.out_source.is_some());
            if ready.writable && waiting {
                self.flush(ready.id);
            }
        }
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
        if let Err(e) = self.readiness.add(sock.as_raw_fd(), id) {
            warn!("cannot watch the connection from {peer}: {e}");
            return;
        }
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
                in_source: Some(Watch),
                out_source: None,
            },
        );
    }

    pub(super) fn update_listening(&mut self) {
        let listening = self.stats.clients > 0;
        if listening != self.listening {
            self.listening = listening;
            self.ping_timer = None;
            if listening {
                let weak = self.weak.clone();
                // A timerfd, not a glib timeout: see ticker.rs for what a timeout costs
                // every capture wakeup.
                match Ticker::start(PING_CHECK, move || {
                    if let Some(hub) = weak.upgrade() {
                        hub.borrow_mut().ping_idle();
                    }
                }) {
                    Ok(t) => self.ping_timer = Some(t),
                    Err(e) => {
                        warn!("cannot create the ping timer (idle clients get no pings): {e}")
                    }
                }
            }
            let hooks = self.hooks.clone();
            // Outside of our borrow: the hook reaches into the capture.
            glib::timeout_add_local_once(Duration::ZERO, move || (hooks.on_listening)(listening));
        }
    }

    /// Pings every WebSocket client nothing was written to for [`PING_IDLE`]: while nothing
    /// plays no audio is sent, and proxies close connections that stay quiet (nginx after
    /// 60 s by default). A few bytes every 15-20 s.
    fn ping_idle(&mut self) {
        let now = Instant::now();
        let mut to_flush = Vec::new();
        for (&id, conn) in self.conns.iter_mut() {
            let waiting_for_out = conn.out_source.is_some();
            let ConnKind::Ws(w) = &mut conn.kind else {
                continue;
            };
            // Audio sent on the direct path counts as progress too.
            let io = w.ws.get_mut();
            if let Some(p) = self.listeners.progress(id) {
                io.last_progress = io.last_progress.max(p);
            }
            // A client whose socket is full has bytes pending anyway.
            if w.closing || waiting_for_out || now - io.last_progress < PING_IDLE {
                continue;
            }
            // tungstenite puts the frame into the client's queue (ClientIo), in order with
            // the audio; flush() below writes it.
            if w.ws.write(Message::Ping(Default::default())).is_ok() && w.ws.flush().is_ok() {
                to_flush.push(id);
            }
        }
        self.stats.pings_sent += to_flush.len() as u64;
        for id in to_flush {
            self.flush(id);
        }
    }

    /// Writes what is queued for `id`; watches for OUT when the socket is full;
    /// finishes closing connections whose last bytes are out.
    pub(super) fn flush(&mut self, id: u64) {
        self.flush_queue_of(id);
        self.review_listener(id);
    }

    /// Keeps `id`'s entry in the dense listener list in step with the connection: listed
    /// while it is an audio listener that is not closing; direct while nothing waits.
    /// Every change of those goes through [`Hub::flush`], [`Hub::watch_out`] or
    /// [`Hub::remove`] (an upgrade, a close, a read: each ends with a flush).
    pub(super) fn review_listener(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            self.listeners.remove(id);
            return;
        };
        let waiting_for_out = conn.out_source.is_some();
        let listening = match &conn.kind {
            ConnKind::Ws(w) if !w.closing => match w.role {
                WsRole::Listener(codec) => Some(codec),
                WsRole::Speaker { .. } => None,
            },
            _ => None,
        };
        let Some(codec) = listening else {
            self.listeners.remove(id);
            return;
        };
        let io = conn.io();
        let direct = !waiting_for_out && io.tls.is_none() && io.is_idle();
        let fd = io.sock.as_raw_fd();
        let progress = io.last_progress;
        self.listeners.upsert(id, fd, codec, direct, progress);
    }

    fn flush_queue_of(&mut self, id: u64) {
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
                if let Some(c) = self.conns.get_mut(&id) {
                    if c.out_source.take().is_some() {
                        let fd = c.io().sock.as_raw_fd();
                        self.readiness.set_out(fd, id, false);
                    }
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

    pub(super) fn watch_out(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.out_source.is_some() {
            return;
        }
        let fd = conn.io().sock.as_raw_fd();
        conn.out_source = Some(Watch);
        self.readiness.set_out(fd, id, true);
        self.review_listener(id);
    }

    /// Tells the microphone, once, that the speaker `id` is gone (closed by us or not).
    pub(super) fn speaker_left(&mut self, id: u64) {
        let Some(ConnKind::Ws(w)) = self.conns.get_mut(&id).map(|c| &mut c.kind) else {
            return;
        };
        let WsRole::Speaker { left } = &mut w.role else {
            return;
        };
        if *left {
            return;
        }
        *left = true;
        self.stats.speaker_connected = false;
        if let Some(speaker) = &self.hooks.speaker {
            (speaker.on_speaker)(false);
        }
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.speaker_left(id);
        self.listeners.remove(id);
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        if conn.in_source.take().is_some() {
            let fd = conn.io().sock.as_raw_fd();
            self.readiness.remove(fd);
        }
        match &mut conn.kind {
            ConnKind::Http(h) => {
                if let Some(t) = h.timeout.take() {
                    remove_source(t);
                }
            }
            ConnKind::Ws(w) => match w.role {
                WsRole::Speaker { .. } => info!("speaker {} disconnected", conn.peer),
                WsRole::Listener(codec) => {
                    self.stats.clients -= 1;
                    self.stats.playout.forget(id);
                    match codec {
                        Codec::Opus => self.stats.opus_clients -= 1,
                        Codec::Pcm => self.stats.pcm_clients -= 1,
                    }
                    info!(
                        "client {} disconnected ({} left)",
                        conn.peer, self.stats.clients
                    );
                    self.update_listening();
                }
            },
        }
        // Dropping the socket closes it.
    }
}

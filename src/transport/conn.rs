//! A connection's states: an HTTP request being read, then either an answer on its way
//! out (and a close) or a WebSocket client; what arrives from each, and the handshake
//! timeout.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use glib::SourceId;
use log::{debug, info};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocket, WebSocketConfig as WsProtoConfig};
use tungstenite::Message;

use super::client_io::{set_sndbuf, ClientIo};
use super::hub::Hub;
use super::readiness::Watch;
use super::socket_options;
use super::{remove_source, MAX_CLIENT_MESSAGE, MAX_CONTROL_BACKLOG, MAX_MESSAGES_PER_WAKEUP};
use crate::audio::Codec;
use crate::mic::{self, Rejection};
use crate::playout;
use crate::web::http::{self, Parse, Reply, Request};
use crate::web::{Route, RouteContext};

pub(super) struct HttpConn {
    pub(super) io: ClientIo,
    pub(super) buf: Vec<u8>,
    pub(super) timeout: Option<SourceId>,
    /// An answer is queued; close once it is written.
    pub(super) closing: bool,
}

pub(super) struct WsConn {
    pub(super) ws: WebSocket<ClientIo>,
    pub(super) role: WsRole,
    pub(super) closing: bool,
}

/// What a WebSocket client is here for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WsRole {
    /// Listens to the stream in this codec.
    Listener(Codec),
    /// Speaks into the microphone: sends audio, receives none.
    Speaker {
        /// The microphone was told this speaker left.
        left: bool,
    },
}

impl WsConn {
    pub(super) fn is_speaker(&self) -> bool {
        matches!(self.role, WsRole::Speaker { .. })
    }
}

pub(super) enum ConnKind {
    Http(HttpConn),
    // Boxed: a WebSocket's state is several times larger than a pending request's.
    Ws(Box<WsConn>),
}

pub(super) struct Conn {
    pub(super) peer: SocketAddr,
    pub(super) kind: ConnKind,
    /// In the hub's epoll set (see readiness.rs).
    pub(super) in_source: Option<Watch>,
    /// Also watched for writability: the socket was full.
    pub(super) out_source: Option<Watch>,
}

impl Conn {
    pub(super) fn io(&mut self) -> &mut ClientIo {
        match &mut self.kind {
            ConnKind::Http(h) => &mut h.io,
            ConnKind::Ws(w) => w.ws.get_mut(),
        }
    }
}

impl Hub {
    pub(super) fn on_handshake_timeout(&mut self, id: u64) {
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

    pub(super) fn on_readable(&mut self, id: u64) {
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

    /// Hands a complete request to the router and carries out its decision.
    fn route(&mut self, id: u64, req: Request) {
        let head_only = req.method == "HEAD";
        let peer = self.conns.get(&id).map(|c| c.peer);
        let route = {
            let hooks = &self.hooks;
            let stats = &self.stats;
            let render = |format| (hooks.render_stats)(stats, format);
            let ctx = RouteContext {
                clients: stats.clients,
                speaker_connected: stats.speaker_connected,
                render_stats: &render,
            };
            self.router.route(&req, &ctx)
        };
        let reply = match route {
            Route::Upgrade(u) => {
                self.upgrade(id, &u.key, u.protocol.as_deref(), Some(u.codec));
                return;
            }
            Route::Speaker { key, protocol } => {
                self.upgrade(id, &key, protocol.as_deref(), None);
                return;
            }
            Route::Reply(reply) => reply,
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

    fn answer(&mut self, id: u64, reply: Reply, head_only: bool) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnKind::Http(h) = &mut conn.kind else {
            return;
        };
        // The handshake timeout stays armed: it also bounds how long we linger.
        h.closing = true;
        h.io.enqueue_control(reply.to_bytes(head_only));
        self.flush(id);
    }

    /// Switches to WebSocket: a listener of `codec`, or the speaker (`None`).
    fn upgrade(&mut self, id: u64, key: &str, protocol: Option<&str>, codec: Option<Codec>) {
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
        socket_options::apply_to_client(&h.io.sock);
        h.io.enqueue_control(http::switching_protocols(key, protocol));
        h.io.last_progress = Instant::now();
        let max_message = match codec {
            Some(_) => MAX_CLIENT_MESSAGE,
            None => mic::message::MAX_MESSAGE,
        };
        let config = WsProtoConfig::default()
            .read_buffer_size(4096)
            .max_message_size(Some(max_message))
            .max_frame_size(Some(max_message));
        let ws = WebSocket::from_raw_socket(h.io, Role::Server, Some(config));
        let Some(codec) = codec else {
            conn.kind = ConnKind::Ws(Box::new(WsConn {
                ws,
                role: WsRole::Speaker { left: false },
                closing: false,
            }));
            info!("speaker {} connected to the microphone", conn.peer);
            self.conns.insert(id, conn);
            self.stats.speaker_connected = true;
            if let Some(speaker) = &self.hooks.speaker {
                (speaker.on_speaker)(true);
            }
            self.flush(id);
            return;
        };
        conn.kind = ConnKind::Ws(Box::new(WsConn {
            ws,
            role: WsRole::Listener(codec),
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

    pub(super) fn read_ws(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let ConnKind::Ws(w) = &mut conn.kind else {
            return;
        };
        let peer = conn.peer;
        let speaker = w.is_speaker();
        let mut gone = false;
        let mut close_with: Option<(CloseCode, String)> = None;
        let hooks = self.hooks.clone();
        let mut rejected: Option<u16> = None;
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
                Ok(Message::Binary(data)) if speaker => {
                    more = true;
                    if w.closing {
                        continue;
                    }
                    let result = match &hooks.speaker {
                        Some(speaker) => (speaker.on_message)(&data),
                        None => Ok(()),
                    };
                    if let Err(r) = result {
                        info!("speaker {peer}: {r}; closing");
                        rejected = Some(r.code);
                        close_with = Some((CloseCode::from(r.code), r.reason));
                        break;
                    }
                }
                Ok(Message::Text(_)) if speaker => {
                    let r = Rejection::text_message();
                    info!("speaker {peer}: {r}; closing");
                    rejected = Some(r.code);
                    close_with = Some((CloseCode::from(r.code), r.reason));
                    break;
                }
                Ok(Message::Text(text)) => {
                    more = true;
                    // The module's playout report (src/playout.rs); anything else is refused
                    // there, logged once per client, and changes nothing else.
                    let now = std::time::Instant::now();
                    match self.stats.playout.receive(id, peer, now, &text) {
                        Ok(()) => {
                            // Answered at once, to this client only: the module times the
                            // round trip (src/playout.rs). At most one a second (the report's
                            // own bound), queued as control bytes, never dropped.
                            let echo = self
                                .stats
                                .playout
                                .clients
                                .get(&id)
                                .and_then(|c| c.report.echo);
                            if let (Some(echo), false) = (echo, w.closing) {
                                let _ = w.ws.write(Message::Text(playout::echo_reply(echo).into()));
                            }
                        }
                        Err((e, true)) => info!("client {peer}: playout report refused: {e}"),
                        Err((e, false)) => debug!("client {peer}: playout report refused: {e}"),
                    }
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
                Err(tungstenite::Error::Capacity(e)) if speaker => {
                    let r = Rejection::new(
                        mic::message::CLOSE_TOO_BIG,
                        format!(
                            "message too big: at most {} bytes",
                            mic::message::MAX_MESSAGE
                        ),
                    );
                    info!("speaker {peer}: {e}; closing with {}", r.code);
                    rejected = Some(r.code);
                    close_with = Some((CloseCode::from(r.code), r.reason));
                    break;
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    info!("client {peer} sent an oversized message ({e}); closing with 1009");
                    close_with = Some((CloseCode::Size, "message too big".into()));
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
                        close_with = Some((CloseCode::Protocol, "protocol error".into()));
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
        if let Some(code) = rejected {
            // Silence at once, not when the close handshake ends.
            *self.stats.speakers_rejected.entry(code).or_insert(0) += 1;
            self.speaker_left(id);
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
}

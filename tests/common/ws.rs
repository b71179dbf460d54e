//! The client side of the wire: one parsed frame (u64 BE timestamp, codec byte,
//! audio), a blocking tungstenite client, and a client read by a thread of its own.

use std::io::ErrorKind;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Message, WebSocket};

use super::Daemon;

/// One parsed wire frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ms: u64,
    pub codec: u8,
    pub payload: Vec<u8>,
    pub received: Instant,
}

/// Parse one binary message of the wire format.
pub fn parse_frame(data: &[u8], received: Instant) -> Frame {
    assert!(
        data.len() >= 9,
        "binary message of {} bytes is shorter than the 9-byte header",
        data.len()
    );
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&data[..8]);
    Frame {
        ts_ms: u64::from_be_bytes(ts),
        codec: data[8],
        payload: data[9..].to_vec(),
        received,
    }
}

/// A blocking tungstenite client with a read timeout.
pub struct WsClient {
    pub ws: WebSocket<TcpStream>,
    pub response: tungstenite::handshake::client::Response,
    /// When the TCP connect started.
    pub started: Instant,
    /// When the handshake completed.
    pub handshake_done: Instant,
}

/// Outcome of reading one message.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    Close(Option<CloseFrame>),
}

impl WsClient {
    pub fn connect(url: &str) -> WsClient {
        Self::try_connect(url, &[]).unwrap_or_else(|e| panic!("connect {url}: {e}"))
    }

    /// Connect with extra request headers.
    pub fn try_connect(url: &str, headers: &[(&str, &str)]) -> Result<WsClient, String> {
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                tungstenite::http::HeaderValue::from_str(v).unwrap(),
            );
        }
        let host = req.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = req.uri().port_u16().unwrap_or(80);
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let started = Instant::now();
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            .map_err(|e| format!("tcp connect: {e}"))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, response) = tungstenite::client(req, stream).map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => format!("handshake: {e}"),
            tungstenite::HandshakeError::Interrupted(_) => "handshake interrupted".into(),
        })?;
        Ok(WsClient {
            ws,
            response,
            started,
            handshake_done: Instant::now(),
        })
    }

    pub fn set_read_timeout(&self, d: Duration) {
        self.ws.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    /// Next audio frame or close; skips text, ping and pong messages.
    pub fn next(&mut self) -> Result<Next, tungstenite::Error> {
        loop {
            match self.ws.read()? {
                Message::Binary(b) => return Ok(Next::Frame(parse_frame(&b, Instant::now()))),
                Message::Close(c) => return Ok(Next::Close(c)),
                _ => continue,
            }
        }
    }

    /// Next audio frame; panics on close, error or timeout.
    pub fn next_frame(&mut self) -> Frame {
        match self.next() {
            Ok(Next::Frame(f)) => f,
            Ok(Next::Close(c)) => panic!("connection closed by the server: {c:?}"),
            Err(e) => panic!("reading a frame failed: {e}"),
        }
    }

    /// All frames received during `dur`.
    pub fn collect_for(&mut self, dur: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + dur;
        let mut frames = Vec::new();
        while Instant::now() < deadline {
            frames.push(self.next_frame());
        }
        frames
    }

    /// Value of a response header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

/// Reads `ws` for `dur`, handing every message to `on` until it returns false; a read timeout
/// only means nothing came (pongs are answered by tungstenite). Panics on any other error.
pub fn read_for(ws: &mut WebSocket<TcpStream>, dur: Duration, mut on: impl FnMut(Message) -> bool) {
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + dur;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(m) => {
                if !on(m) {
                    return;
                }
            }
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the stream failed: {e}"),
        }
    }
}

/// A client read by a thread of its own into a shared list of frames.
pub struct Reader {
    frames: Arc<Mutex<Vec<Frame>>>,
    ended: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Reader {
    /// Connects to `url`; when dropped, the client sends a Close.
    pub fn start(url: &str) -> Reader {
        Reader::read(WsClient::connect(url), true)
    }

    /// Reads `c` until dropped; then sends a Close if `close`, else just drops the
    /// connection.
    pub fn read(mut c: WsClient, close: bool) -> Reader {
        c.set_read_timeout(Duration::from_millis(200));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let ended = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (f2, e2, s2) = (frames.clone(), ended.clone(), stop.clone());
        let handle = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match c.next() {
                    Ok(Next::Frame(f)) => f2.lock().unwrap().push(f),
                    Ok(Next::Close(cf)) => {
                        *e2.lock().unwrap() = Some(format!("server closed: {cf:?}"));
                        return;
                    }
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        *e2.lock().unwrap() = Some(format!("read failed: {e}"));
                        return;
                    }
                }
            }
            if close {
                let _ = c.ws.close(None);
                let _ = c.ws.flush();
            }
        });
        Reader {
            frames,
            ended,
            stop,
            handle: Some(handle),
        }
    }

    pub fn len(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().unwrap().clone()
    }

    pub fn frames_from(&self, from: usize) -> Vec<Frame> {
        self.frames.lock().unwrap()[from..].to_vec()
    }

    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap().clone()
    }

    /// Panics if the connection ended.
    pub fn assert_alive(&self, what: &str) {
        if let Some(e) = self.ended() {
            panic!("{what}: the client lost its connection: {e}");
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Two clients of `/audio`.
pub fn two_readers(daemon: &Daemon) -> [Reader; 2] {
    [
        Reader::start(&daemon.url("/audio")),
        Reader::start(&daemon.url("/audio")),
    ]
}

//! The web side of the port, behind one small routing interface: given a parsed request
//! and the moment's facts, [`Router::route`] answers with a WebSocket upgrade or a reply
//! (a page, a web asset, stats, or a precise error). No sockets here: the transport reads
//! requests and writes what the router decided.

pub mod access;
#[cfg(test)]
mod asset_table;
pub mod assets;
pub mod http;
pub mod novnc;
mod playout;
pub mod stats;

pub use access::{Codecs, TokenError};
pub use assets::{Asset, ASSETS};

use crate::audio::Codec;
use crate::config::WebSocketConfig;
use access::Access;
use http::{Reply, Request};
use novnc::NovncDir;

/// What a request gets.
#[derive(Debug)]
pub enum Route {
    /// Switch to WebSocket (the transport sends the 101 and streams `codec`).
    Upgrade(Upgrade),
    /// Switch to WebSocket for the speaker (`--microphone`): audio flows the other way.
    Speaker {
        key: String,
        /// The sub-protocol to echo.
        protocol: Option<String>,
    },
    /// Answer and close.
    Reply(Reply),
}

/// A valid upgrade on the stream path.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    pub key: String,
    /// The sub-protocol to echo.
    pub protocol: Option<String>,
    pub codec: Codec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsFormat {
    /// `/stats`
    Json,
    /// `/metrics`
    Prometheus,
}

/// What the router needs to know of the moment.
pub struct RouteContext<'a> {
    /// WebSocket clients connected now (for `--max-clients`).
    pub clients: usize,
    /// A speaker is connected now (one at a time).
    pub speaker_connected: bool,
    /// Renders the stats now.
    pub render_stats: &'a dyn Fn(StatsFormat) -> String,
}

/// Decides what each request gets.
pub struct Router {
    stream_path: String,
    /// The speaker's path, when the microphone is on.
    mic_path: Option<String>,
    serve_web: bool,
    serve_stats: bool,
    max_clients: usize,
    access: Access,
    assets: &'static [Asset],
    novnc: Option<NovncDir>,
}

impl Router {
    /// A router serving the files of web/ compiled into the daemon; reads `--token-file`.
    pub fn new(config: &WebSocketConfig, codecs: Codecs) -> Result<Router, TokenError> {
        Router::with_assets(config, codecs, ASSETS)
    }

    /// A router serving `assets` instead.
    pub fn with_assets(
        config: &WebSocketConfig,
        codecs: Codecs,
        assets: &'static [Asset],
    ) -> Result<Router, TokenError> {
        let access = Access::new(config, codecs)?;
        let novnc = config.novnc_dir.as_ref().map(|root| NovncDir {
            root: root.clone(),
            websockify_port: config.websockify_port,
            stream_path: config.path.clone(),
            token: access.token().map(str::to_string),
        });
        Ok(Router {
            stream_path: config.path.clone(),
            mic_path: None,
            serve_web: config.serve_web,
            serve_stats: config.serve_stats,
            max_clients: config.max_clients,
            access,
            assets,
            novnc,
        })
    }

    /// Also answers upgrades on `path` for the speaker (`None`: that path is unknown).
    pub fn with_mic_path(mut self, path: Option<String>) -> Router {
        self.mic_path = path;
        self
    }

    pub fn route(&self, req: &Request, ctx: &RouteContext<'_>) -> Route {
        if self.mic_path.as_deref() == Some(req.path.as_str()) {
            return match self.check_speaker(req, ctx) {
                Ok((key, protocol)) => Route::Speaker { key, protocol },
                Err(reply) => Route::Reply(reply),
            };
        }
        if req.path == self.stream_path {
            return match self.check_upgrade(req, ctx) {
                Ok(upgrade) => Route::Upgrade(upgrade),
                Err(reply) => Route::Reply(reply),
            };
        }
        if req.method != "GET" && req.method != "HEAD" {
            return Route::Reply(
                Reply::text(405, "Method Not Allowed", "Only GET is served here.")
                    .with_header("Allow", "GET, HEAD"),
            );
        }
        Route::Reply(self.page(req, ctx))
    }

    fn page(&self, req: &Request, ctx: &RouteContext<'_>) -> Reply {
        let stats = match req.path.as_str() {
            "/stats" => Some(StatsFormat::Json),
            "/metrics" => Some(StatsFormat::Prometheus),
            _ => None,
        };
        if let Some(format) = stats.filter(|_| self.serve_stats) {
            if !self.access.authorized(req) {
                return Reply::unauthorized();
            }
            return Reply {
                status: 200,
                reason: "OK",
                content_type: match format {
                    StatsFormat::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
                    StatsFormat::Json => "application/json",
                },
                body: (ctx.render_stats)(format).into_bytes(),
                headers: Vec::new(),
            };
        }
        if let Some(reply) = self.novnc_page(req) {
            return reply;
        }
        let asset = assets::find(self.assets, &req.path).filter(|_| self.serve_web);
        match asset {
            Some(asset) if asset.is_page() => {
                if !self.access.authorized(req) {
                    return Reply::unauthorized();
                }
                Reply::ok(asset.content_type(), asset.body.to_vec())
            }
            Some(asset) => Reply::ok(asset.content_type(), asset.body.to_vec())
                .with_header("Access-Control-Allow-Origin", "*"),
            None => Reply::text(
                404,
                "Not Found",
                &format!("Not found. The audio stream is at {}.", self.stream_path),
            ),
        }
    }

    /// The rules every WebSocket path shares: a valid upgrade, an allowed Origin, the token.
    /// Returns the upgrade's key and protocol.
    fn check_websocket(&self, req: &Request) -> Result<(String, Option<String>), Reply> {
        let (key, protocol) = http::check_upgrade(req)?;
        if !self.access.origin_allowed(req) {
            return Err(Reply::text(
                403,
                "Forbidden",
                "This Origin may not connect.",
            ));
        }
        if !self.access.authorized(req) {
            return Err(Reply::unauthorized());
        }
        Ok((key, protocol))
    }

    /// Checks a request on the microphone path: the stream's rules (upgrade, Origin,
    /// token), then one speaker at a time.
    fn check_speaker(
        &self,
        req: &Request,
        ctx: &RouteContext<'_>,
    ) -> Result<(String, Option<String>), Reply> {
        let (key, protocol) = self.check_websocket(req)?;
        if ctx.speaker_connected {
            return Err(Reply::text(
                409,
                "Conflict",
                "Someone else is speaking: the microphone takes one speaker at a time. \
                 Try again when they stop.",
            ));
        }
        Ok((key, protocol))
    }

    /// noVNC's files (`--novnc-dir`): its pages with the token rule of our own pages.
    fn novnc_page(&self, req: &Request) -> Option<Reply> {
        let novnc = self.novnc.as_ref().filter(|_| self.serve_web)?;
        let reply = novnc.serve(&req.path)?;
        if reply.content_type.starts_with("text/html") && !self.access.authorized(req) {
            return Some(Reply::unauthorized());
        }
        Some(reply)
    }

    /// Checks a request on the stream path.
    fn check_upgrade(&self, req: &Request, ctx: &RouteContext<'_>) -> Result<Upgrade, Reply> {
        let (key, protocol) = self.check_websocket(req)?;
        let codec = self.access.codec(req)?;
        if ctx.clients >= self.max_clients {
            return Err(Reply::text(
                503,
                "Service Unavailable",
                &format!("Too many clients (the limit is {}).", self.max_clients),
            )
            .with_header("Retry-After", "5"));
        }
        Ok(Upgrade {
            key,
            protocol,
            codec,
        })
    }
}

#[cfg(test)]
mod tests;

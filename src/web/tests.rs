//! The router: what each request gets, over the compiled-in web/ and over test tables.

use super::*;
use crate::config::Config;

static NESTED: &[Asset] = &[
    Asset {
        path: "/index.html",
        body: b"<!doctype html>",
    },
    Asset {
        path: "/decoders/opus.js",
        body: b"export {}",
    },
    Asset {
        path: "/vendor/opus-decoder/decoder.wasm",
        body: b"\0asm",
    },
];

const CODECS: Codecs = Codecs {
    default: Codec::Opus,
    opus: true,
};

fn request(raw: &str) -> Request {
    match http::parse_request(raw.as_bytes()) {
        http::Parse::Complete(r) => r,
        other => panic!("{other:?}"),
    }
}

fn get(router: &Router, target: &str) -> Reply {
    let ctx = RouteContext {
        clients: 0,
        render_stats: &|f| format!("{f:?}"),
    };
    match router.route(&request(&format!("GET {target} HTTP/1.1\r\n\r\n")), &ctx) {
        Route::Reply(r) => r,
        other => panic!("{other:?}"),
    }
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply
        .headers
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn files_in_subfolders_of_web_are_served_with_their_type() {
    let router = Router::with_assets(&Config::default().websocket, CODECS, NESTED).unwrap();
    let js = get(&router, "/decoders/opus.js");
    assert_eq!(js.status, 200);
    assert_eq!(js.content_type, "text/javascript; charset=utf-8");
    assert_eq!(js.body, b"export {}");
    assert_eq!(header(&js, "Access-Control-Allow-Origin"), Some("*"));
    let wasm = get(&router, "/vendor/opus-decoder/decoder.wasm");
    assert_eq!(wasm.status, 200);
    assert_eq!(wasm.content_type, "application/wasm");
    let index = get(&router, "/");
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    assert_eq!(index.body, b"<!doctype html>");
    assert_eq!(get(&router, "/decoders/").status, 404);
    assert_eq!(get(&router, "/decoders/missing.js").status, 404);
}

#[test]
fn no_web_turns_every_file_off_and_the_token_guards_pages_only() {
    let mut config = Config::default().websocket;
    config.serve_web = false;
    let router = Router::with_assets(&config, CODECS, NESTED).unwrap();
    for path in ["/", "/index.html", "/decoders/opus.js"] {
        assert_eq!(get(&router, path).status, 404, "{path}");
    }

    let dir = std::env::temp_dir().join(format!("novnc-audio-router-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "t0k\n").unwrap();
    let config = WebSocketConfig {
        token_file: Some(dir.join("token")),
        ..Config::default().websocket
    };
    let router = Router::with_assets(&config, CODECS, NESTED).unwrap();
    assert_eq!(get(&router, "/").status, 401);
    assert_eq!(get(&router, "/?token=t0k").status, 200);
    assert_eq!(get(&router, "/decoders/opus.js").status, 200);
    assert_eq!(get(&router, "/stats").status, 401);
    let stats = get(&router, "/metrics?token=t0k");
    assert_eq!(stats.body, b"Prometheus");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn upgrades_are_checked_against_the_policy() {
    let config = WebSocketConfig {
        max_clients: 1,
        allowed_origins: vec!["https://a".into()],
        ..Config::default().websocket
    };
    let router = Router::with_assets(&config, CODECS, NESTED).unwrap();
    let upgrade = |origin: &str, clients: usize| {
        let req = request(&format!(
            "GET /audio?codec=pcm HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Origin: {origin}\r\n\r\n"
        ));
        let ctx = RouteContext {
            clients,
            render_stats: &|_| String::new(),
        };
        router.route(&req, &ctx)
    };
    match upgrade("https://a", 0) {
        Route::Upgrade(u) => assert_eq!(u.codec, Codec::Pcm),
        other => panic!("{other:?}"),
    }
    assert!(matches!(upgrade("https://b", 0), Route::Reply(r) if r.status == 403));
    assert!(matches!(upgrade("https://a", 1), Route::Reply(r) if r.status == 503));
    let post = request("POST /x HTTP/1.1\r\n\r\n");
    let ctx = RouteContext {
        clients: 0,
        render_stats: &|_| String::new(),
    };
    assert!(matches!(router.route(&post, &ctx), Route::Reply(r) if r.status == 405));
}

#[test]
fn the_daemon_carries_every_file_of_web() {
    let web = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    let files: Vec<String> = asset_table::web_files(&web)
        .unwrap()
        .into_iter()
        .map(|(url, _)| url)
        .collect();
    let compiled: Vec<&str> = ASSETS.iter().map(|a| a.path).collect();
    assert_eq!(compiled, files);
    assert!(compiled.contains(&"/index.html") && compiled.contains(&"/novnc-audio.js"));
    assert!(!compiled.iter().any(|p| p.ends_with("README.md")));
}

#[test]
fn the_table_generator_walks_subfolders() {
    let dir = std::env::temp_dir().join(format!("novnc-audio-webgen-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("decoders")).unwrap();
    std::fs::create_dir_all(dir.join("vendor/opus-decoder")).unwrap();
    for f in [
        "index.html",
        "README.md",
        ".hidden",
        "decoders/pcm.js",
        "vendor/opus-decoder/x.wasm",
    ] {
        std::fs::write(dir.join(f), f).unwrap();
    }
    let urls: Vec<String> = asset_table::web_files(&dir)
        .unwrap()
        .into_iter()
        .map(|(url, _)| url)
        .collect();
    assert_eq!(
        urls,
        [
            "/decoders/pcm.js",
            "/index.html",
            "/vendor/opus-decoder/x.wasm"
        ]
    );
    let source = asset_table::asset_table_source(&dir).unwrap();
    assert!(
        source.contains("path: \"/vendor/opus-decoder/x.wasm\""),
        "{source}"
    );
    assert_eq!(
        assets::content_type("/a/b.mjs"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(assets::content_type("/a.svg"), "image/svg+xml");
    std::fs::remove_dir_all(dir).unwrap();
}

//! Every option, one row each (ripgrep's flags/defs.rs style): the names, the `--help`
//! line, the parsing, the `--check-config` value, the reload rule and an example value.

use std::time::Duration;

use super::options::{boolean, int, one, path, shown_path, OptionDef, Setting};
use crate::audio::{Codec, Device, OpusApplication};

use super::options::Reload::{Live, Restart, StartOnly};
use super::options::RestartGroup::{Capture, Encoder, Listener, Microphone, Process};

/// Every option the daemon understands, in `--help` order.
pub static OPTIONS: &[OptionDef] = &[
    OptionDef {
        short: "p",
        long: "port",
        value: Some("PORT"),
        help: "TCP port to listen on (default 6090)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.port = int(v, 1u16, 65535)?;
                Ok(())
            },
            show: |c| one(c.websocket.port),
            reset: None,
            reload: Restart(Listener),
            example: "7000",
        }),
    },
    OptionDef {
        short: "H",
        long: "host",
        value: Some("ADDR"),
        help: "address to listen on (default 0.0.0.0)",
        setting: Some(Setting {
            set: |c, v| {
                if v.trim().is_empty() {
                    return Err("an address such as 0.0.0.0 or ::1".into());
                }
                c.websocket.host = v.trim().to_string();
                Ok(())
            },
            show: |c| one(&c.websocket.host),
            reset: None,
            reload: Restart(Listener),
            example: "127.0.0.1",
        }),
    },
    OptionDef {
        short: "",
        long: "path",
        value: Some("PATH"),
        help: "WebSocket path of the stream (default /audio)",
        setting: Some(Setting {
            set: |c, v| {
                if !v.starts_with('/') || v.contains(char::is_whitespace) || v.contains('?') {
                    return Err("a path starting with / such as /audio".into());
                }
                c.websocket.path = v.to_string();
                Ok(())
            },
            show: |c| one(&c.websocket.path),
            reset: None,
            reload: Restart(Listener),
            example: "/x",
        }),
    },
    OptionDef {
        short: "d",
        long: "device",
        value: Some("NAME"),
        help: "sink to record; \"default\" follows the default sink (default)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.device = match v.trim() {
                    "" => return Err("a sink name or \"default\"".into()),
                    "default" => Device::FollowDefault,
                    n => Device::Named(n.to_string()),
                };
                Ok(())
            },
            show: |c| one(c.capture.device.name()),
            reset: None,
            reload: Restart(Capture),
            example: "foo",
        }),
    },
    OptionDef {
        short: "r",
        long: "sample-rate",
        value: Some("HZ"),
        help: "sample rate (default 48000; Opus: 8000, 12000, 16000, 24000, 48000)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.sample_rate = int(v, 8000u32, 192000)?;
                Ok(())
            },
            show: |c| one(c.capture.sample_rate),
            reset: None,
            reload: Restart(Capture),
            example: "24000",
        }),
    },
    OptionDef {
        short: "c",
        long: "channels",
        value: Some("N"),
        help: "channels: 1 (mono) or 2 (default 2)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.channels = int(v, 1u8, 2)?;
                Ok(())
            },
            show: |c| one(c.capture.channels),
            reset: None,
            reload: Restart(Capture),
            example: "1",
        }),
    },
    OptionDef {
        short: "b",
        long: "bitrate",
        value: Some("BPS"),
        help: "Opus bitrate in bit/s, 6000 to 510000 (default 64000)",
        setting: Some(Setting {
            set: |c, v| {
                c.encoder.bitrate = int(v, 6000u32, 510000)?;
                Ok(())
            },
            show: |c| one(c.encoder.bitrate),
            reset: None,
            reload: Live(|c, new| c.encoder.bitrate = new.encoder.bitrate),
            example: "32000",
        }),
    },
    OptionDef {
        short: "l",
        long: "latency",
        value: Some("USEC"),
        help: "capture fragment size in microseconds (default: the frame duration, 20000)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.latency_us = int(v, 1000u32, 2_000_000)?;
                Ok(())
            },
            show: |c| one(c.capture.latency_us),
            reset: None,
            reload: Restart(Capture),
            example: "10000",
        }),
    },
    OptionDef {
        short: "",
        long: "no-monitor",
        value: None,
        help: "record --device as a source itself (do not append .monitor)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.monitor = !boolean(v)?;
                Ok(())
            },
            show: |c| one(!c.capture.monitor),
            reset: None,
            reload: Restart(Capture),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "send-silence",
        value: None,
        help: "send every frame, silence included (default: nothing is sent while nothing plays)",
        setting: Some(Setting {
            set: |c, v| {
                c.capture.send_silence = boolean(v)?;
                Ok(())
            },
            show: |c| one(c.capture.send_silence),
            reset: None,
            reload: Restart(Capture),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "codec",
        value: Some("CODEC"),
        help: "opus or pcm (default opus)",
        setting: Some(Setting {
            set: |c, v| {
                c.encoder.codec = match v.trim() {
                    "opus" => Codec::Opus,
                    "pcm" => Codec::Pcm,
                    _ => return Err("opus or pcm".into()),
                };
                Ok(())
            },
            show: |c| one(c.encoder.codec.name()),
            reset: None,
            reload: Restart(Encoder),
            example: "pcm",
        }),
    },
    OptionDef {
        short: "",
        long: "frame-ms",
        value: Some("MS"),
        help: "frame duration: 2.5, 5, 10, 20, 40 or 60 (default 20)",
        setting: Some(Setting {
            set: |c, v| {
                c.encoder.frame_us = match v.trim() {
                    "2.5" => 2500,
                    "5" => 5000,
                    "10" => 10000,
                    "20" => 20000,
                    "40" => 40000,
                    "60" => 60000,
                    _ => return Err("2.5, 5, 10, 20, 40 or 60".into()),
                };
                Ok(())
            },
            show: |c| match c.encoder.frame_us {
                2500 => one("2.5"),
                us => one(us / 1000),
            },
            reset: None,
            reload: Restart(Encoder),
            example: "10",
        }),
    },
    OptionDef {
        short: "",
        long: "opus-application",
        value: Some("APP"),
        help:
            "Opus application: lowdelay (CELT only, 2.5 ms lookahead) or audio (default lowdelay)",
        setting: Some(Setting {
            set: |c, v| {
                c.encoder.application = match v.trim() {
                    "lowdelay" => OpusApplication::LowDelay,
                    "audio" => OpusApplication::Audio,
                    _ => return Err("lowdelay or audio".into()),
                };
                Ok(())
            },
            show: |c| one(c.encoder.application.name()),
            reset: None,
            reload: Restart(Encoder),
            example: "audio",
        }),
    },
    OptionDef {
        short: "",
        long: "sink-name",
        value: Some("NAME"),
        help: "null sink created when the server has no sink (default novnc_audio)",
        setting: Some(Setting {
            set: |c, v| {
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err("letters, digits, '_', '-' or '.'".into());
                }
                c.capture.sink_name = v.to_string();
                Ok(())
            },
            show: |c| one(&c.capture.sink_name),
            reset: None,
            reload: Restart(Capture),
            example: "my_sink",
        }),
    },
    OptionDef {
        short: "",
        long: "max-clients",
        value: Some("N"),
        help: "most WebSocket clients at once; more get HTTP 503 (default 64)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.max_clients = int(v, 1usize, 100_000)?;
                Ok(())
            },
            show: |c| one(c.websocket.max_clients),
            reset: None,
            reload: Live(|c, new| c.websocket.max_clients = new.websocket.max_clients),
            example: "3",
        }),
    },
    OptionDef {
        short: "",
        long: "token-file",
        value: Some("PATH"),
        help: "clients must present the token in this file (?token= or Authorization: Bearer)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.token_file = Some(path(v));
                Ok(())
            },
            show: |c| shown_path(&c.websocket.token_file),
            reset: None,
            reload: Live(|c, new| c.websocket.token_file = new.websocket.token_file.clone()),
            example: "/etc/novnc-audio/token",
        }),
    },
    OptionDef {
        short: "",
        long: "allow-origin",
        value: Some("ORIGIN"),
        help: "accept upgrades only from this Origin (repeatable)",
        setting: Some(Setting {
            set: |c, v| {
                let origin = v.trim().trim_end_matches('/').to_string();
                c.websocket.allowed_origins.push(origin);
                Ok(())
            },
            show: |c| c.websocket.allowed_origins.clone(),
            reset: Some(|c| c.websocket.allowed_origins.clear()),
            reload: Live(|c, new| {
                c.websocket.allowed_origins = new.websocket.allowed_origins.clone()
            }),
            example: "https://desk.example",
        }),
    },
    OptionDef {
        short: "",
        long: "tls-cert",
        value: Some("PATH"),
        help: "serve wss:// with this PEM certificate chain (with --tls-key)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.tls_cert = Some(path(v));
                Ok(())
            },
            show: |c| shown_path(&c.websocket.tls_cert),
            reset: None,
            reload: Live(|c, new| c.websocket.tls_cert = new.websocket.tls_cert.clone()),
            example: "/etc/novnc-audio/cert.pem",
        }),
    },
    OptionDef {
        short: "",
        long: "tls-key",
        value: Some("PATH"),
        help: "PEM private key for --tls-cert",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.tls_key = Some(path(v));
                Ok(())
            },
            show: |c| shown_path(&c.websocket.tls_key),
            reset: None,
            reload: Live(|c, new| c.websocket.tls_key = new.websocket.tls_key.clone()),
            example: "/etc/novnc-audio/key.pem",
        }),
    },
    OptionDef {
        short: "",
        long: "no-web",
        value: None,
        help: "do not serve the listen page, the browser module and --novnc-dir",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.serve_web = !boolean(v)?;
                Ok(())
            },
            show: |c| one(!c.websocket.serve_web),
            reset: None,
            reload: Live(|c, new| c.websocket.serve_web = new.websocket.serve_web),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "novnc-dir",
        value: Some("DIR"),
        help: "serve noVNC from DIR (e.g. /usr/share/novnc) at /novnc/vnc.html, with sound added",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.novnc_dir = Some(path(v));
                Ok(())
            },
            show: |c| shown_path(&c.websocket.novnc_dir),
            reset: None,
            reload: Live(|c, new| c.websocket.novnc_dir = new.websocket.novnc_dir.clone()),
            example: "/usr/share/novnc",
        }),
    },
    OptionDef {
        short: "",
        long: "websockify-port",
        value: Some("PORT"),
        help:
            "websockify's port, where the --novnc-dir page connects for the desktop (default 6080)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.websockify_port = int(v, 1u16, 65535)?;
                Ok(())
            },
            show: |c| one(c.websocket.websockify_port),
            reset: None,
            reload: Live(|c, new| c.websocket.websockify_port = new.websocket.websockify_port),
            example: "5901",
        }),
    },
    OptionDef {
        short: "",
        long: "no-stats",
        value: None,
        help: "do not serve /stats and /metrics",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.serve_stats = !boolean(v)?;
                Ok(())
            },
            show: |c| one(!c.websocket.serve_stats),
            reset: None,
            reload: Live(|c, new| c.websocket.serve_stats = new.websocket.serve_stats),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "handshake-timeout",
        value: Some("SECONDS"),
        help: "close connections that have not finished their request by then (default 5)",
        setting: Some(Setting {
            set: |c, v| {
                c.websocket.handshake_timeout = Duration::from_secs(int(v, 1u64, 3600)?);
                Ok(())
            },
            show: |c| one(c.websocket.handshake_timeout.as_secs()),
            reset: None,
            reload: Live(|c, new| c.websocket.handshake_timeout = new.websocket.handshake_timeout),
            example: "9",
        }),
    },
    OptionDef {
        short: "",
        long: "microphone",
        value: None,
        help: "take the browser's microphone on --mic-path and offer it as a source",
        setting: Some(Setting {
            set: |c, v| {
                c.microphone.enabled = boolean(v)?;
                Ok(())
            },
            show: |c| one(c.microphone.enabled),
            reset: None,
            reload: Restart(Microphone),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "mic-path",
        value: Some("PATH"),
        help: "WebSocket path of the microphone (default /mic)",
        setting: Some(Setting {
            set: |c, v| {
                if !v.starts_with('/') || v.contains(char::is_whitespace) || v.contains('?') {
                    return Err("a path starting with / such as /mic".into());
                }
                c.microphone.path = v.to_string();
                Ok(())
            },
            show: |c| one(&c.microphone.path),
            reset: None,
            reload: Restart(Microphone),
            example: "/speak",
        }),
    },
    OptionDef {
        short: "",
        long: "mic-source-name",
        value: Some("NAME"),
        help: "source the microphone becomes (default novnc_mic)",
        setting: Some(Setting {
            set: |c, v| {
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err("letters, digits, '_', '-' or '.'".into());
                }
                c.microphone.source_name = v.to_string();
                c.capture.ignored_sinks = vec![crate::mic::feed_sink_name(v)];
                Ok(())
            },
            show: |c| one(&c.microphone.source_name),
            reset: None,
            reload: Restart(Microphone),
            example: "my_mic",
        }),
    },
    OptionDef {
        short: "",
        long: "config",
        value: Some("PATH"),
        help: "config file (default /etc/novnc-audio.conf, if it exists)",
        setting: None,
    },
    OptionDef {
        short: "",
        long: "daemonize",
        value: None,
        help: "fork into the background and log to syslog",
        setting: Some(Setting {
            set: |c, v| {
                c.daemon.daemonize = boolean(v)?;
                Ok(())
            },
            show: |c| one(c.daemon.daemonize),
            reset: None,
            reload: Restart(Process),
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "pidfile",
        value: Some("PATH"),
        help: "write the daemon's pid here (with --daemonize)",
        setting: Some(Setting {
            set: |c, v| {
                c.daemon.pidfile = Some(path(v));
                Ok(())
            },
            show: |c| shown_path(&c.daemon.pidfile),
            reset: None,
            reload: Restart(Process),
            example: "/run/novnc-audio.pid",
        }),
    },
    OptionDef {
        short: "",
        long: "allow-root",
        value: None,
        help: "allow running as root",
        setting: Some(Setting {
            set: |c, v| {
                c.daemon.allow_root = boolean(v)?;
                Ok(())
            },
            show: |c| one(c.daemon.allow_root),
            reset: None,
            reload: StartOnly,
            example: "true",
        }),
    },
    OptionDef {
        short: "",
        long: "log-level",
        value: Some("LEVEL"),
        help: "error, warn, info or debug (default info)",
        setting: Some(Setting {
            set: |c, v| {
                c.daemon.log_level = match v.trim() {
                    "error" => log::LevelFilter::Error,
                    "warn" | "warning" => log::LevelFilter::Warn,
                    "info" => log::LevelFilter::Info,
                    "debug" => log::LevelFilter::Debug,
                    _ => return Err("error, warn, info or debug".into()),
                };
                Ok(())
            },
            show: |c| one(c.daemon.log_level.as_str().to_ascii_lowercase()),
            reset: None,
            reload: Live(|c, new| c.daemon.log_level = new.daemon.log_level),
            example: "debug",
        }),
    },
    OptionDef {
        short: "",
        long: "check-config",
        value: None,
        help: "print the effective configuration and exit",
        setting: None,
    },
    OptionDef {
        short: "h",
        long: "help",
        value: None,
        help: "print this help and exit",
        setting: None,
    },
    OptionDef {
        short: "V",
        long: "version",
        value: None,
        help: "print the version and exit",
        setting: None,
    },
];

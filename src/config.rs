//! Configuration: one table of options feeds the command line, `--help`, the config file
//! and (checked by a test) the man page, so none of them can drift from the others.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::log::Level;

/// Where the config file lives unless `--config` says otherwise.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/novnc-audio.conf";

/// One command-line option, which is also a config-file key (its long name).
pub struct OptionSpec {
    pub short: &'static str,
    pub long: &'static str,
    /// Name of the value in `--help` (`None` for a flag).
    pub value: Option<&'static str>,
    pub help: &'static str,
    /// May the option be given more than once (values accumulate)?
    pub repeatable: bool,
    /// Allowed in the config file? (`config`, `help`, `version` are not.)
    pub in_file: bool,
}

const fn opt(
    short: &'static str,
    long: &'static str,
    value: Option<&'static str>,
    help: &'static str,
) -> OptionSpec {
    OptionSpec {
        short,
        long,
        value,
        help,
        repeatable: false,
        in_file: true,
    }
}

/// Every option the daemon understands, in `--help` order.
pub static OPTIONS: &[OptionSpec] = &[
    opt(
        "p",
        "port",
        Some("PORT"),
        "TCP port to listen on (default 6090)",
    ),
    opt(
        "H",
        "host",
        Some("ADDR"),
        "address to listen on (default 0.0.0.0)",
    ),
    opt(
        "",
        "path",
        Some("PATH"),
        "WebSocket path of the stream (default /audio)",
    ),
    opt(
        "d",
        "device",
        Some("NAME"),
        "sink to record; \"default\" follows the default sink (default)",
    ),
    opt(
        "r",
        "sample-rate",
        Some("HZ"),
        "sample rate (default 48000; Opus: 8000, 12000, 16000, 24000, 48000)",
    ),
    opt(
        "c",
        "channels",
        Some("N"),
        "channels: 1 (mono) or 2 (default 2)",
    ),
    opt(
        "b",
        "bitrate",
        Some("BPS"),
        "Opus bitrate in bit/s, 6000 to 510000 (default 64000)",
    ),
    opt(
        "l",
        "latency",
        Some("USEC"),
        "capture fragment size in microseconds (default: the frame duration, 20000)",
    ),
    opt(
        "",
        "no-monitor",
        None,
        "record --device as a source itself (do not append .monitor)",
    ),
    opt("", "codec", Some("CODEC"), "opus or pcm (default opus)"),
    opt(
        "",
        "frame-ms",
        Some("MS"),
        "frame duration: 2.5, 5, 10, 20, 40 or 60 (default 20)",
    ),
    opt(
        "",
        "opus-application",
        Some("APP"),
        "Opus application: lowdelay (CELT only, 2.5 ms lookahead) or audio (default lowdelay)",
    ),
    opt(
        "",
        "sink-name",
        Some("NAME"),
        "null sink created when the server has no sink (default novnc_audio)",
    ),
    opt(
        "",
        "max-clients",
        Some("N"),
        "most WebSocket clients at once; more get HTTP 503 (default 64)",
    ),
    opt(
        "",
        "token-file",
        Some("PATH"),
        "clients must present the token in this file (?token= or Authorization: Bearer)",
    ),
    OptionSpec {
        repeatable: true,
        ..opt(
            "",
            "allow-origin",
            Some("ORIGIN"),
            "accept upgrades only from this Origin (repeatable)",
        )
    },
    opt(
        "",
        "tls-cert",
        Some("PATH"),
        "serve wss:// with this PEM certificate chain (with --tls-key)",
    ),
    opt(
        "",
        "tls-key",
        Some("PATH"),
        "PEM private key for --tls-cert",
    ),
    opt(
        "",
        "no-web",
        None,
        "do not serve the listen page / and /novnc-audio.js",
    ),
    opt("", "no-stats", None, "do not serve /stats and /metrics"),
    opt(
        "",
        "handshake-timeout",
        Some("SECONDS"),
        "close connections that have not finished their request by then (default 5)",
    ),
    OptionSpec {
        in_file: false,
        ..opt(
            "",
            "config",
            Some("PATH"),
            "config file (default /etc/novnc-audio.conf, if it exists)",
        )
    },
    opt(
        "",
        "daemonize",
        None,
        "fork into the background and log to syslog",
    ),
    opt(
        "",
        "pidfile",
        Some("PATH"),
        "write the daemon's pid here (with --daemonize)",
    ),
    opt("", "allow-root", None, "allow running as root"),
    opt(
        "",
        "log-level",
        Some("LEVEL"),
        "error, warn, info or debug (default info)",
    ),
    OptionSpec {
        in_file: false,
        ..opt(
            "",
            "check-config",
            None,
            "print the effective configuration and exit",
        )
    },
    OptionSpec {
        in_file: false,
        ..opt("h", "help", None, "print this help and exit")
    },
    OptionSpec {
        in_file: false,
        ..opt("V", "version", None, "print the version and exit")
    },
];

/// Which audio to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// Follow the server's default sink, whatever it becomes.
    FollowDefault,
    /// A named sink (or, with `--no-monitor`, a named source).
    Named(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Opus,
    Pcm,
}

impl Codec {
    /// The codec byte of the wire format.
    pub fn wire_byte(self) -> u8 {
        match self {
            Codec::Pcm => 0x00,
            Codec::Opus => 0x01,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcm => "pcm",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusApplication {
    /// `OPUS_APPLICATION_RESTRICTED_LOWDELAY`: CELT only, 2.5 ms lookahead.
    LowDelay,
    /// `OPUS_APPLICATION_AUDIO`: 6.5 ms lookahead.
    Audio,
}

/// The capture stage: what to record from PulseAudio and how.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureConfig {
    pub device: Device,
    pub monitor: bool,
    pub sample_rate: u32,
    pub channels: u8,
    /// Capture fragment size. Defaults to the frame duration: a larger fragment would
    /// make frames wait for it, a smaller one costs wakeups for nothing.
    pub latency_us: u32,
    /// Was `latency` given (command line or file)? If not it follows `--frame-ms`.
    pub latency_explicit: bool,
    pub sink_name: String,
}

/// The encode stage.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub codec: Codec,
    pub bitrate: u32,
    /// Frame duration in microseconds (2500 to 60000).
    pub frame_us: u32,
    pub application: OpusApplication,
}

/// The transport stage.
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketConfig {
    pub host: String,
    pub port: u16,
    pub path: String,
    pub max_clients: usize,
    pub token_file: Option<PathBuf>,
    pub allowed_origins: Vec<String>,
    pub serve_web: bool,
    pub serve_stats: bool,
    pub handshake_timeout: Duration,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// Process-level settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub config_file: Option<PathBuf>,
    pub daemonize: bool,
    pub pidfile: Option<PathBuf>,
    pub allow_root: bool,
    pub log_level: Level,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub capture: CaptureConfig,
    pub encoder: EncoderConfig,
    pub websocket: WebSocketConfig,
    pub daemon: DaemonConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            capture: CaptureConfig {
                device: Device::FollowDefault,
                monitor: true,
                sample_rate: 48000,
                channels: 2,
                latency_us: 20000,
                latency_explicit: false,
                sink_name: "novnc_audio".into(),
            },
            encoder: EncoderConfig {
                codec: Codec::Opus,
                bitrate: 64000,
                frame_us: 20000,
                application: OpusApplication::LowDelay,
            },
            websocket: WebSocketConfig {
                host: "0.0.0.0".into(),
                port: 6090,
                path: "/audio".into(),
                max_clients: 64,
                token_file: None,
                allowed_origins: Vec::new(),
                serve_web: true,
                serve_stats: true,
                handshake_timeout: Duration::from_secs(5),
                tls_cert: None,
                tls_key: None,
            },
            daemon: DaemonConfig {
                config_file: None,
                daemonize: false,
                pidfile: None,
                allow_root: false,
                log_level: Level::Info,
            },
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Config>),
    CheckConfig(Box<Config>),
    Help,
    Version,
}

/// A configuration error: always one line that names the option (or file and line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn invalid(name: &str, value: &str, accepts: &str) -> ConfigError {
    ConfigError(format!("invalid --{name} '{value}': expected {accepts}"))
}

fn parse_int<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    name: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, ConfigError> {
    match value.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(invalid(
            name,
            value,
            &format!("an integer from {min} to {max}"),
        )),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(invalid(name, value, "true or false")),
    }
}

impl Config {
    /// Applies one option (by long name) to the configuration.
    /// `value` is `None` for a flag given on the command line.
    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), ConfigError> {
        let v = value.unwrap_or("true");
        match name {
            "port" => self.websocket.port = parse_int(name, v, 1u16, 65535)?,
            "host" => {
                if v.trim().is_empty() {
                    return Err(invalid(name, v, "an address such as 0.0.0.0 or ::1"));
                }
                self.websocket.host = v.trim().to_string()
            }
            "path" => {
                if !v.starts_with('/') || v.contains(char::is_whitespace) || v.contains('?') {
                    return Err(invalid(name, v, "a path starting with / such as /audio"));
                }
                self.websocket.path = v.to_string()
            }
            "device" => {
                self.capture.device = match v.trim() {
                    "" => return Err(invalid(name, v, "a sink name or \"default\"")),
                    "default" => Device::FollowDefault,
                    n => Device::Named(n.to_string()),
                }
            }
            "sample-rate" => self.capture.sample_rate = parse_int(name, v, 8000u32, 192000)?,
            "channels" => self.capture.channels = parse_int(name, v, 1u8, 2)?,
            "bitrate" => self.encoder.bitrate = parse_int(name, v, 6000u32, 510000)?,
            "latency" => {
                self.capture.latency_us = parse_int(name, v, 1000u32, 2_000_000)?;
                self.capture.latency_explicit = true;
            }
            "no-monitor" => self.capture.monitor = !parse_bool(name, v)?,
            "codec" => {
                self.encoder.codec = match v.trim() {
                    "opus" => Codec::Opus,
                    "pcm" => Codec::Pcm,
                    _ => return Err(invalid(name, v, "opus or pcm")),
                }
            }
            "frame-ms" => {
                self.encoder.frame_us = match v.trim() {
                    "2.5" => 2500,
                    "5" => 5000,
                    "10" => 10000,
                    "20" => 20000,
                    "40" => 40000,
                    "60" => 60000,
                    _ => return Err(invalid(name, v, "2.5, 5, 10, 20, 40 or 60")),
                }
            }
            "opus-application" => {
                self.encoder.application = match v.trim() {
                    "lowdelay" => OpusApplication::LowDelay,
                    "audio" => OpusApplication::Audio,
                    _ => return Err(invalid(name, v, "lowdelay or audio")),
                }
            }
            "sink-name" => {
                let ok = !v.is_empty()
                    && v.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
                if !ok {
                    return Err(invalid(name, v, "letters, digits, '_', '-' or '.'"));
                }
                self.capture.sink_name = v.to_string()
            }
            "max-clients" => self.websocket.max_clients = parse_int(name, v, 1usize, 100_000)?,
            "token-file" => self.websocket.token_file = Some(PathBuf::from(v.trim())),
            "allow-origin" => self
                .websocket
                .allowed_origins
                .push(v.trim().trim_end_matches('/').to_string()),
            "tls-cert" => self.websocket.tls_cert = Some(PathBuf::from(v.trim())),
            "tls-key" => self.websocket.tls_key = Some(PathBuf::from(v.trim())),
            "no-web" => self.websocket.serve_web = !parse_bool(name, v)?,
            "no-stats" => self.websocket.serve_stats = !parse_bool(name, v)?,
            "handshake-timeout" => {
                self.websocket.handshake_timeout =
                    Duration::from_secs(parse_int(name, v, 1u64, 3600)?)
            }
            "config" => self.daemon.config_file = Some(PathBuf::from(v)),
            "daemonize" => self.daemon.daemonize = parse_bool(name, v)?,
            "pidfile" => self.daemon.pidfile = Some(PathBuf::from(v.trim())),
            "allow-root" => self.daemon.allow_root = parse_bool(name, v)?,
            "log-level" => {
                self.daemon.log_level = Level::parse(v.trim())
                    .ok_or_else(|| invalid(name, v, "error, warn, info or debug"))?
            }
            _ => return Err(ConfigError(format!("unknown option --{name}"))),
        }
        Ok(())
    }

    /// Checks what single options cannot: combinations.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.encoder.codec == Codec::Opus
            && ![8000, 12000, 16000, 24000, 48000].contains(&self.capture.sample_rate)
        {
            return Err(invalid(
                "sample-rate",
                &self.capture.sample_rate.to_string(),
                "8000, 12000, 16000, 24000 or 48000 with --codec opus",
            ));
        }
        if self.websocket.tls_cert.is_some() != self.websocket.tls_key.is_some() {
            return Err(ConfigError(
                "--tls-cert and --tls-key go together: give both or neither".into(),
            ));
        }
        if self.daemon.pidfile.is_some() && !self.daemon.daemonize {
            return Err(ConfigError(
                "--pidfile needs --daemonize (under systemd the manager tracks the pid)".into(),
            ));
        }
        Ok(())
    }

    /// Samples per channel in one frame.
    pub fn frame_samples(&self) -> usize {
        (self.capture.sample_rate as u64 * self.encoder.frame_us as u64 / 1_000_000) as usize
    }

    /// Bytes of s16le interleaved PCM in one frame.
    pub fn frame_bytes(&self) -> usize {
        self.frame_samples() * self.capture.channels as usize * 2
    }

    /// The configuration as config-file lines (for `--check-config`).
    pub fn describe(&self) -> String {
        let c = &self.capture;
        let e = &self.encoder;
        let w = &self.websocket;
        let d = &self.daemon;
        let mut s = String::new();
        let device = match &c.device {
            Device::FollowDefault => "default".to_string(),
            Device::Named(n) => n.clone(),
        };
        let frame_ms = if e.frame_us == 2500 {
            "2.5".to_string()
        } else {
            (e.frame_us / 1000).to_string()
        };
        let app = match e.application {
            OpusApplication::LowDelay => "lowdelay",
            OpusApplication::Audio => "audio",
        };
        let _ = writeln!(s, "port = {}", w.port);
        let _ = writeln!(s, "host = {}", w.host);
        let _ = writeln!(s, "path = {}", w.path);
        let _ = writeln!(s, "device = {device}");
        let _ = writeln!(s, "sample-rate = {}", c.sample_rate);
        let _ = writeln!(s, "channels = {}", c.channels);
        let _ = writeln!(s, "bitrate = {}", e.bitrate);
        let _ = writeln!(s, "latency = {}", c.latency_us);
        let _ = writeln!(s, "no-monitor = {}", !c.monitor);
        let _ = writeln!(s, "codec = {}", e.codec.name());
        let _ = writeln!(s, "frame-ms = {frame_ms}");
        let _ = writeln!(s, "opus-application = {app}");
        let _ = writeln!(s, "sink-name = {}", c.sink_name);
        let _ = writeln!(s, "max-clients = {}", w.max_clients);
        if let Some(p) = &w.token_file {
            let _ = writeln!(s, "token-file = {}", p.display());
        }
        for o in &w.allowed_origins {
            let _ = writeln!(s, "allow-origin = {o}");
        }
        if let Some(p) = &w.tls_cert {
            let _ = writeln!(s, "tls-cert = {}", p.display());
        }
        if let Some(p) = &w.tls_key {
            let _ = writeln!(s, "tls-key = {}", p.display());
        }
        let _ = writeln!(s, "no-web = {}", !w.serve_web);
        let _ = writeln!(s, "no-stats = {}", !w.serve_stats);
        let _ = writeln!(s, "handshake-timeout = {}", w.handshake_timeout.as_secs());
        let _ = writeln!(s, "daemonize = {}", d.daemonize);
        if let Some(p) = &d.pidfile {
            let _ = writeln!(s, "pidfile = {}", p.display());
        }
        let _ = writeln!(s, "allow-root = {}", d.allow_root);
        let _ = writeln!(s, "log-level = {}", d.log_level.name());
        s
    }
}

fn getopts_table() -> getopts::Options {
    let mut opts = getopts::Options::new();
    for o in OPTIONS {
        match o.value {
            Some(hint) => opts.optmulti(o.short, o.long, o.help, hint),
            None => opts.optflagmulti(o.short, o.long, o.help),
        };
    }
    opts
}

/// `--help` text, generated from [`OPTIONS`].
pub fn help_text() -> String {
    let mut s = String::from(
        "Usage: novnc-audio [OPTIONS]\n\n\
         Streams the sound of this machine (the monitor of a PulseAudio sink) as Opus\n\
         over WebSocket to noVNC clients.\n\nOptions:\n",
    );
    for o in OPTIONS {
        let short = if o.short.is_empty() {
            "    ".to_string()
        } else {
            format!("-{}, ", o.short)
        };
        let long = match o.value {
            Some(v) => format!("--{} {v}", o.long),
            None => format!("--{}", o.long),
        };
        let _ = writeln!(s, "  {short}{long:<26} {}", o.help);
    }
    s.push_str("\nSee novnc-audio(1) for the config file, the wire format and examples.\n");
    s
}

/// Parses `key = value` lines of a config file into (key, value) pairs, checking keys.
pub fn parse_config_text(text: &str, origin: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(ConfigError(format!(
                "{origin}:{}: expected 'key = value', got '{line}'",
                n + 1
            )));
        };
        let key = key.trim();
        let mut value = value.trim();
        if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            value = &value[1..value.len() - 1];
        }
        if !OPTIONS.iter().any(|o| o.long == key && o.in_file) {
            return Err(ConfigError(format!(
                "{origin}:{}: unknown key '{key}'",
                n + 1
            )));
        }
        entries.push((key.to_string(), value.to_string()));
    }
    Ok(entries)
}

fn apply_file(config: &mut Config, path: &Path) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let origin = path.display().to_string();
    for (key, value) in parse_config_text(&text, &origin)? {
        config
            .apply(&key, Some(&value))
            .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
    }
    Ok(())
}

/// Parses the command line (without the program name) into a command.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let matches = getopts_table().parse(args).map_err(|e| {
        ConfigError(match e {
            getopts::Fail::UnrecognizedOption(o) => {
                let dashes = if o.starts_with('-') {
                    ""
                } else if o.len() == 1 {
                    "-"
                } else {
                    "--"
                };
                format!("unknown option {dashes}{o} (see --help)")
            }
            other => other.to_string(),
        })
    })?;
    if let Some(extra) = matches.free.first() {
        return Err(ConfigError(format!(
            "unexpected argument '{extra}' (see --help)"
        )));
    }
    if matches.opt_present("help") {
        return Ok(Command::Help);
    }
    if matches.opt_present("version") {
        return Ok(Command::Version);
    }
    let config_path = matches.opt_strs("config").pop();
    let config = build_config(config_path.as_deref(), &matches)?;
    Ok(if matches.opt_present("check-config") {
        Command::CheckConfig(Box::new(config))
    } else {
        Command::Run(Box::new(config))
    })
}

/// Defaults, then the config file, then the command line.
fn build_config(
    config_path: Option<&str>,
    matches: &getopts::Matches,
) -> Result<Config, ConfigError> {
    let mut config = Config::default();
    match config_path {
        Some(p) => apply_file(&mut config, Path::new(p))?,
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
            apply_file(&mut config, Path::new(DEFAULT_CONFIG_FILE))?
        }
        None => {}
    }
    // Values from the command line replace those of the file, except repeatable ones,
    // which the command line replaces as a whole.
    for o in OPTIONS.iter().filter(|o| o.in_file) {
        if !matches.opt_present(o.long) {
            continue;
        }
        match o.value {
            None => config.apply(o.long, None)?,
            Some(_) => {
                let values = matches.opt_strs(o.long);
                if o.repeatable {
                    config.websocket.allowed_origins.clear();
                    for v in &values {
                        config.apply(o.long, Some(v))?;
                    }
                } else if let Some(v) = values.last() {
                    config.apply(o.long, Some(v))?;
                }
            }
        }
    }
    config.daemon.config_file = config_path.map(PathBuf::from).or_else(|| {
        Path::new(DEFAULT_CONFIG_FILE)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG_FILE))
    });
    if !config.capture.latency_explicit {
        config.capture.latency_us = config.encoder.frame_us;
    }
    config.validate()?;
    Ok(config)
}

/// Re-reads the config file for SIGHUP, keeping the command line's overrides.
pub fn reload<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
    match parse_args(args)? {
        Command::Run(c) | Command::CheckConfig(c) => Ok(*c),
        Command::Help | Command::Version => Err(ConfigError("nothing to reload".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, ConfigError> {
        let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        // Keep the machine's /etc/novnc-audio.conf out of unit tests.
        v.push("--config".into());
        v.push("/dev/null".into());
        parse_args(v)
    }

    fn config(args: &[&str]) -> Config {
        match parse(args).unwrap() {
            Command::Run(c) => *c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_node_server() {
        let c = config(&[]);
        assert_eq!(c.websocket.port, 6090);
        assert_eq!(c.websocket.host, "0.0.0.0");
        assert_eq!(c.websocket.path, "/audio");
        assert_eq!(c.capture.device, Device::FollowDefault);
        assert_eq!(c.capture.sample_rate, 48000);
        assert_eq!(c.capture.channels, 2);
        assert_eq!(c.encoder.bitrate, 64000);
        assert_eq!(c.capture.latency_us, 20000);
        assert_eq!(c.encoder.frame_us, 20000);
        assert_eq!(c.frame_bytes(), 3840);
    }

    #[test]
    fn every_option_parses() {
        let c = config(&[
            "-p",
            "7000",
            "-H",
            "127.0.0.1",
            "--path",
            "/x",
            "-d",
            "foo",
            "-r",
            "24000",
            "-c",
            "1",
            "-b",
            "32000",
            "-l",
            "10000",
            "--no-monitor",
            "--codec",
            "pcm",
            "--frame-ms",
            "2.5",
        ]);
        assert_eq!(c.websocket.port, 7000);
        assert_eq!(c.websocket.host, "127.0.0.1");
        assert_eq!(c.websocket.path, "/x");
        assert_eq!(c.capture.device, Device::Named("foo".into()));
        assert_eq!(c.capture.sample_rate, 24000);
        assert_eq!(c.capture.channels, 1);
        assert_eq!(c.encoder.bitrate, 32000);
        assert_eq!(c.capture.latency_us, 10000);
        // Without --latency the fragment follows the frame.
        assert_eq!(config(&["--frame-ms", "10"]).capture.latency_us, 10000);
        assert_eq!(config(&["--frame-ms", "60"]).capture.latency_us, 60000);
        assert!(!c.capture.monitor);
        assert_eq!(c.encoder.codec, Codec::Pcm);
        assert_eq!(c.encoder.frame_us, 2500);
        assert_eq!(c.frame_samples(), 60);
    }

    #[test]
    fn invalid_values_name_the_option() {
        for (args, option) in [
            (&["-p", "0"][..], "--port"),
            (&["-p", "70000"], "--port"),
            (&["-r", "44100"], "--sample-rate"),
            (&["-c", "3"], "--channels"),
            (&["-b", "5000"], "--bitrate"),
            (&["-b", "600000"], "--bitrate"),
            (&["--codec", "mp3"], "--codec"),
            (&["--frame-ms", "7"], "--frame-ms"),
            (&["--bogus"], "--bogus"),
        ] {
            let err = parse(args).unwrap_err().0;
            assert!(err.contains(option), "{args:?}: {err}");
            assert!(!err.contains('\n'), "{args:?}: one line expected: {err}");
        }
    }

    #[test]
    fn pcm_accepts_44100() {
        assert_eq!(
            config(&["--codec", "pcm", "-r", "44100"])
                .capture
                .sample_rate,
            44100
        );
    }

    #[test]
    fn config_file_keys_lines_and_override() {
        let entries = parse_config_text(
            "# comment\nport = 7001\n\nallow-origin = \"https://a\"\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            entries,
            vec![
                ("port".to_string(), "7001".to_string()),
                ("allow-origin".to_string(), "https://a".to_string())
            ]
        );
        let err = parse_config_text("port = 1\nbogus = 2\n", "f.conf").unwrap_err();
        assert_eq!(err.0, "f.conf:2: unknown key 'bogus'");
        let err = parse_config_text("help = true\n", "f.conf").unwrap_err();
        assert!(err.0.contains("unknown key 'help'"));
    }

    #[test]
    fn command_line_overrides_file() {
        let dir = std::env::temp_dir().join(format!("novnc-audio-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.conf");
        std::fs::write(
            &file,
            "port = 7001\nbitrate = 96000\nallow-origin = https://x\n",
        )
        .unwrap();
        let args = vec![
            "--config".to_string(),
            file.display().to_string(),
            "-p".to_string(),
            "7002".to_string(),
        ];
        let Command::Run(c) = parse_args(args).unwrap() else {
            panic!()
        };
        assert_eq!(c.websocket.port, 7002);
        assert_eq!(c.encoder.bitrate, 96000);
        assert_eq!(c.websocket.allowed_origins, vec!["https://x".to_string()]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn shipped_example_config_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/novnc-audio.conf");
        if let Ok(text) = std::fs::read_to_string(path) {
            parse_config_text(&text, path).unwrap();
            // Uncommenting every key must give a valid configuration too.
            let uncommented: String = text
                .lines()
                .map(|l| l.trim_start_matches('#').trim())
                .filter(|l| l.contains('=') && parse_config_text(l, path).is_ok())
                .map(|l| format!("{l}\n"))
                .collect();
            assert!(
                uncommented.lines().count() >= 10,
                "example documents too few keys"
            );
            let entries = parse_config_text(&uncommented, path).unwrap();
            let mut c = Config::default();
            for (k, v) in entries {
                c.apply(&k, Some(&v)).unwrap();
            }
        } else {
            panic!("{path} is missing");
        }
    }

    #[test]
    fn help_lists_every_option() {
        let help = help_text();
        for o in OPTIONS {
            assert!(help.contains(&format!("--{}", o.long)), "{}", o.long);
        }
    }

    #[test]
    fn readme_shows_the_current_help() {
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&help_text()),
            "README.md's options block differs from --help: paste `novnc-audio --help` into it"
        );
    }

    #[test]
    fn man_page_documents_exactly_the_options() {
        let man = include_str!("../man/novnc-audio.1");
        for o in OPTIONS {
            let needle = format!("\\-\\-{}", o.long.replace('-', "\\-"));
            assert!(man.contains(&needle), "man page lacks {needle}");
        }
        // And nothing the program does not have: every option heading (the line after
        // a .TP that starts with \-\-name or -x, \-\-name) is in the table.
        let lines: Vec<&str> = man.lines().collect();
        for pair in lines.windows(2).filter(|w| w[0] == ".TP") {
            let heading = pair[1];
            if !heading.starts_with(".B") {
                continue;
            }
            let Some(pos) = heading.find("\\-\\-") else {
                continue;
            };
            let name: String = heading[pos + 4..]
                .replace("\\-", "-")
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            assert!(
                OPTIONS.iter().any(|o| o.long == name),
                "man page documents --{name}, which the program does not have"
            );
        }
    }
}

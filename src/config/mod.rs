//! Configuration: one table of options ([`options::OPTIONS`]) feeds the command line,
//! `--help`, the config file, `--check-config` and the reload, and (checked by tests) the
//! man page and the README, so none of them can drift from the others.

mod defs;
mod file;
pub mod options;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::audio::{Codec, Device, OpusApplication, StreamFormat};
pub use file::{parse_config_text, DEFAULT_CONFIG_FILE};
pub use options::{OptionDef, Reload, RestartGroup, OPTIONS};

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
    pub sink_name: String,
    /// Sinks that are not for listening: the microphone's feed (`<mic-source-name>_feed`),
    /// which must never be recorded nor taken for the server's sink (it may outlive a
    /// run with `--microphone`, so it is ignored with the microphone off too).
    pub ignored_sinks: Vec<String>,
    /// Record and send every frame, digital silence included, and never cork while
    /// clients listen (for clients that need a frame every frame duration).
    pub send_silence: bool,
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
    /// `--novnc-dir`: noVNC's files, served at /novnc/ with sound added.
    pub novnc_dir: Option<PathBuf>,
    /// `--websockify-port`: where that noVNC page connects for the desktop.
    pub websockify_port: u16,
}

/// The way back: the browser's microphone as a PulseAudio source (off by default).
#[derive(Debug, Clone, PartialEq)]
pub struct MicrophoneConfig {
    pub enabled: bool,
    /// The speaker's WebSocket path, on the stream's port.
    pub path: String,
    /// The source applications record from (its feed sink is `<name>_feed`).
    pub source_name: String,
}

/// Process-level settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub config_file: Option<PathBuf>,
    pub daemonize: bool,
    pub pidfile: Option<PathBuf>,
    pub allow_root: bool,
    pub log_level: log::LevelFilter,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub capture: CaptureConfig,
    pub encoder: EncoderConfig,
    pub websocket: WebSocketConfig,
    pub microphone: MicrophoneConfig,
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
                sink_name: "novnc_audio".into(),
                ignored_sinks: vec![crate::mic::feed_sink_name("novnc_mic")],
                send_silence: false,
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
                novnc_dir: None,
                websockify_port: 6080,
            },
            microphone: MicrophoneConfig {
                enabled: false,
                path: "/mic".into(),
                source_name: "novnc_mic".into(),
            },
            daemon: DaemonConfig {
                config_file: None,
                daemonize: false,
                pidfile: None,
                allow_root: false,
                log_level: log::LevelFilter::Info,
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
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read config file {}: {source}", path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(name: &str, value: &str, accepts: &str) -> ConfigError {
    ConfigError::Invalid(format!("invalid --{name} '{value}': expected {accepts}"))
}

/// What a reload changes: the running configuration with every live setting taken from
/// the new one, and what would need a restart.
#[derive(Debug)]
pub struct LiveChange {
    pub config: Config,
    /// Long names of the live settings that changed.
    pub changed: Vec<&'static str>,
    /// What to restart for the other changes (empty: all applied).
    pub restart_needed: Vec<&'static str>,
}

/// Decides, from the option table, what SIGHUP applies live and what needs a restart.
pub fn apply_live(running: &Config, new: &Config) -> LiveChange {
    let mut config = running.clone();
    let mut changed = Vec::new();
    let mut groups = Vec::new();
    for o in OPTIONS {
        let Some(s) = &o.setting else {
            continue;
        };
        if (s.show)(running) == (s.show)(new) {
            continue;
        }
        match s.reload {
            Reload::Live(take) => {
                take(&mut config, new);
                changed.push(o.long);
            }
            Reload::Restart(group) => groups.push(group),
            Reload::StartOnly => {}
        }
    }
    groups.sort();
    groups.dedup();
    LiveChange {
        config,
        changed,
        restart_needed: groups.into_iter().map(RestartGroup::label).collect(),
    }
}

impl Config {
    /// Applies one option (by long name) to the configuration.
    /// `value` is `None` for a flag given on the command line.
    fn apply(&mut self, name: &str, value: Option<&str>) -> Result<(), ConfigError> {
        let v = value.unwrap_or("true");
        let Some(setting) = options::find(name).and_then(|o| o.setting.as_ref()) else {
            return Err(ConfigError::Invalid(format!("unknown option --{name}")));
        };
        (setting.set)(self, v).map_err(|accepts| invalid(name, v, &accepts))
    }

    /// Checks what single options cannot: combinations.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.encoder.codec == Codec::Opus && !self.format().opus_possible() {
            return Err(invalid(
                "sample-rate",
                &self.capture.sample_rate.to_string(),
                "8000, 12000, 16000, 24000 or 48000 with --codec opus",
            ));
        }
        if self.websocket.tls_cert.is_some() != self.websocket.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "--tls-cert and --tls-key go together: give both or neither".into(),
            ));
        }
        if self.microphone.enabled && self.microphone.path == self.websocket.path {
            return Err(ConfigError::Invalid(format!(
                "--mic-path {} is the stream's --path: give the microphone a path of its own",
                self.microphone.path
            )));
        }
        if self.daemon.pidfile.is_some() && !self.daemon.daemonize {
            return Err(ConfigError::Invalid(
                "--pidfile needs --daemonize (under systemd the manager tracks the pid)".into(),
            ));
        }
        Ok(())
    }

    /// The format of the captured stream and its frames.
    pub fn format(&self) -> StreamFormat {
        StreamFormat {
            rate: self.capture.sample_rate,
            channels: self.capture.channels,
            frame_us: self.encoder.frame_us,
        }
    }

    /// Samples per channel in one frame.
    pub fn frame_samples(&self) -> usize {
        self.format().frame_samples()
    }

    /// Bytes of s16le interleaved PCM in one frame.
    pub fn frame_bytes(&self) -> usize {
        self.format().frame_bytes()
    }

    /// The configuration as config-file lines (for `--check-config`).
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for o in OPTIONS {
            let Some(setting) = &o.setting else {
                continue;
            };
            for value in (setting.show)(self) {
                s.push_str(&format!("{} = {value}\n", o.long));
            }
        }
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
        s.push_str(&format!("  {short}{long:<26} {}\n", o.help));
    }
    s.push_str("\nSee novnc-audio(1) for the config file, the wire format and examples.\n");
    s
}

fn apply_file(config: &mut Config, path: &Path) -> Result<Vec<String>, ConfigError> {
    let origin = path.display().to_string();
    let mut keys = Vec::new();
    for (key, value) in file::read_config_file(path)? {
        config
            .apply(&key, Some(&value))
            .map_err(|e| ConfigError::Invalid(format!("{origin}: {e}")))?;
        keys.push(key);
    }
    Ok(keys)
}

/// Parses the command line (without the program name) into a command.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, ConfigError> {
    let matches = getopts_table().parse(args).map_err(|e| {
        ConfigError::Invalid(match e {
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
        return Err(ConfigError::Invalid(format!(
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
    let file = config_path.map(PathBuf::from).or_else(|| {
        Path::new(DEFAULT_CONFIG_FILE)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG_FILE))
    });
    let mut given = match &file {
        Some(path) => apply_file(&mut config, path)?,
        None => Vec::new(),
    };
    // Values from the command line replace those of the file, except repeatable ones,
    // which the command line replaces as a whole.
    for o in OPTIONS {
        let Some(setting) = &o.setting else {
            continue;
        };
        if !matches.opt_present(o.long) {
            continue;
        }
        given.push(o.long.to_string());
        match o.value {
            None => config.apply(o.long, None)?,
            Some(_) => {
                let values = matches.opt_strs(o.long);
                if let Some(reset) = setting.reset {
                    reset(&mut config);
                    for v in &values {
                        config.apply(o.long, Some(v))?;
                    }
                } else if let Some(v) = values.last() {
                    config.apply(o.long, Some(v))?;
                }
            }
        }
    }
    config.daemon.config_file = file;
    // Without --latency the capture fragment follows the frame duration.
    if !given.iter().any(|k| k == "latency") {
        config.capture.latency_us = config.encoder.frame_us;
    }
    config.validate()?;
    Ok(config)
}

/// Re-reads the config file for SIGHUP, keeping the command line's overrides.
pub fn reload<I: IntoIterator<Item = String>>(args: I) -> Result<Config, ConfigError> {
    match parse_args(args)? {
        Command::Run(c) | Command::CheckConfig(c) => Ok(*c),
        Command::Help | Command::Version => Err(ConfigError::Invalid("nothing to reload".into())),
    }
}

#[cfg(test)]
mod tests;

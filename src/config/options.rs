//! The option table ([`OPTIONS`], in defs.rs): one row per option holds its names, its
//! `--help` line, how its value is parsed, how it is shown by `--check-config`, and what a
//! reload (SIGHUP) does with a change of it. The command line, the config file, `--help`, `--check-config`, the reload
//! and the tests all read this table, so none of them can drift from the others.

use std::path::PathBuf;

pub use super::defs::OPTIONS;
use super::Config;

/// One command-line option, which is also a config-file key (its long name) when it is a
/// setting.
pub struct OptionDef {
    pub short: &'static str,
    pub long: &'static str,
    /// Name of the value in `--help` (`None` for a flag).
    pub value: Option<&'static str>,
    pub help: &'static str,
    /// `None` for options of the command line only (`config`, `help`, ...).
    pub setting: Option<Setting>,
}

/// What an option sets in the [`Config`].
pub struct Setting {
    /// Applies a value (`"true"` for a flag given on the command line); `Err` says what
    /// the option expects.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    /// The values as a config file spells them (none for an unset path, several for a
    /// repeatable option).
    pub show: fn(&Config) -> Vec<String>,
    /// For a repeatable option: clears what the config file gave before the command
    /// line's values replace it as a whole.
    pub reset: Option<fn(&mut Config)>,
    pub reload: Reload,
    /// A valid value other than the default, for tests that set every option.
    pub example: &'static str,
}

/// What SIGHUP does when the option's value changed.
#[derive(Clone, Copy)]
pub enum Reload {
    /// Takes the new value from the new configuration into the running one.
    Live(fn(&mut Config, &Config)),
    /// Needs a restart; the group names what to restart for in the log.
    Restart(RestartGroup),
    /// Only checked at start (nothing runs differently afterwards).
    StartOnly,
}

/// Restart reasons, in the order the log lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestartGroup {
    Capture,
    Encoder,
    Listener,
    Microphone,
    Process,
}

impl RestartGroup {
    pub fn label(self) -> &'static str {
        match self {
            RestartGroup::Capture => {
                "capture settings (device, rate, channels, latency, sink-name, send-silence)"
            }
            RestartGroup::Encoder => "codec, frame-ms or opus-application",
            RestartGroup::Listener => "host, port or path",
            RestartGroup::Microphone => "microphone, mic-path or mic-source-name",
            RestartGroup::Process => "daemonize or pidfile",
        }
    }
}

impl OptionDef {
    /// May the option be given more than once (values accumulate)?
    pub fn repeatable(&self) -> bool {
        self.setting.as_ref().is_some_and(|s| s.reset.is_some())
    }
    /// Allowed in the config file?
    pub fn in_file(&self) -> bool {
        self.setting.is_some()
    }
}

/// The row of option `long`.
pub fn find(long: &str) -> Option<&'static OptionDef> {
    OPTIONS.iter().find(|o| o.long == long)
}

pub(super) fn int<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    value: &str,
    min: T,
    max: T,
) -> Result<T, String> {
    match value.trim().parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("an integer from {min} to {max}")),
    }
}

pub(super) fn boolean(value: &str) -> Result<bool, String> {
    match value.trim() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err("true or false".into()),
    }
}

pub(super) fn path(value: &str) -> PathBuf {
    PathBuf::from(value.trim())
}

pub(super) fn one(value: impl std::fmt::Display) -> Vec<String> {
    vec![value.to_string()]
}

pub(super) fn shown_path(path: &Option<PathBuf>) -> Vec<String> {
    path.iter().map(|p| p.display().to_string()).collect()
}

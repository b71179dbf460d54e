//! Logging: stderr in the foreground (with `<N>` priority prefixes when the journal reads
//! it), syslog when daemonized. One line per event, with its level.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" => Some(Level::Debug),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
    /// syslog(3) priority, as the journal's `<N>` prefix wants it.
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Stderr,
    Journal,
    Syslog,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static TARGET: AtomicU8 = AtomicU8::new(Target::Stderr as u8);
type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;
static SYSLOG: OnceLock<Mutex<SyslogLogger>> = OnceLock::new();

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Ordering::Relaxed)
}

/// Logs to stderr, with journal priority prefixes when stderr is the journal
/// (systemd sets `JOURNAL_STREAM` to the device and inode of that stream).
pub fn init_stderr() {
    let target = if stderr_is_journal() {
        Target::Journal
    } else {
        Target::Stderr
    };
    TARGET.store(target as u8, Ordering::Relaxed);
}

fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(value) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse::<u64>() == Ok(meta.dev()) && ino.parse::<u64>() == Ok(meta.ino())
}

/// Logs to syslog (facility daemon, ident novnc-audio); falls back to stderr.
pub fn init_syslog() -> Result<(), String> {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "novnc-audio".into(),
        pid: std::process::id(),
    };
    let logger = syslog::unix(formatter).map_err(|e| format!("cannot open syslog: {e}"))?;
    let _ = SYSLOG.set(Mutex::new(logger));
    TARGET.store(Target::Syslog as u8, Ordering::Relaxed);
    Ok(())
}

pub fn write(level: Level, message: std::fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let target = TARGET.load(Ordering::Relaxed);
    if target == Target::Syslog as u8 {
        if let Some(logger) = SYSLOG.get() {
            if let Ok(mut l) = logger.lock() {
                let text = message.to_string();
                let _ = match level {
                    Level::Error => l.err(text),
                    Level::Warn => l.warning(text),
                    Level::Info => l.info(text),
                    Level::Debug => l.debug(text),
                };
                return;
            }
        }
    }
    let mut err = std::io::stderr().lock();
    let _ = if target == Target::Journal as u8 {
        writeln!(err, "<{}>{}", level.priority(), message)
    } else {
        writeln!(err, "novnc-audio: {}: {}", level.name(), message)
    };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($arg)*)) };
}

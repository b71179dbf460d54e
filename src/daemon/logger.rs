//! The `log` backend of the daemon: stderr in the foreground (with `<N>` priority prefixes
//! when the journal reads it), syslog when daemonized. One line per event, with its level.
//! The daemon's own lines and those of its libraries (tungstenite) go the same way.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

use log::{Level, Log, Metadata, Record};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Stderr,
    Journal,
    Syslog,
}

type SyslogLogger = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

struct Logger {
    target: AtomicU8,
    syslog: OnceLock<Mutex<SyslogLogger>>,
}

static LOGGER: Logger = Logger {
    target: AtomicU8::new(Target::Stderr as u8),
    syslog: OnceLock::new(),
};

/// The error of opening syslog.
#[derive(Debug, thiserror::Error)]
#[error("cannot open syslog: {0}")]
pub struct SyslogError(#[from] syslog::Error);

/// Installs the backend (once) at `level`; logs to stderr until told otherwise.
pub fn install(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Logs to stderr, with journal priority prefixes when stderr is the journal
/// (systemd sets `JOURNAL_STREAM` to the device and inode of that stream).
pub fn to_stderr() {
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .is_some_and(|v| stream_is(&v, "/proc/self/fd/2"));
    let target = if journal {
        Target::Journal
    } else {
        Target::Stderr
    };
    LOGGER.target.store(target as u8, Ordering::Relaxed);
}

/// Does `JOURNAL_STREAM`'s `device:inode` name the file at `path`?
fn stream_is(journal_stream: &str, path: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    dev.parse::<u64>() == Ok(meta.dev()) && ino.parse::<u64>() == Ok(meta.ino())
}

/// Logs to syslog (facility daemon, ident novnc-audio).
pub fn to_syslog() -> Result<(), SyslogError> {
    let formatter = syslog::Formatter3164 {
        facility: syslog::Facility::LOG_DAEMON,
        hostname: None,
        process: "novnc-audio".into(),
        pid: std::process::id(),
    };
    let logger = syslog::unix(formatter)?;
    let _ = LOGGER.syslog.set(Mutex::new(logger));
    LOGGER.target.store(Target::Syslog as u8, Ordering::Relaxed);
    Ok(())
}

/// syslog(3) priority, as the journal's `<N>` prefix wants it.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// The line without prefix: a library's lines say which library they come from.
fn text(record: &Record<'_>) -> String {
    if record.target().starts_with("novnc_audio") {
        record.args().to_string()
    } else {
        format!("{}: {}", record.target(), record.args())
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let target = self.target.load(Ordering::Relaxed);
        if target == Target::Syslog as u8 {
            if let Some(Ok(mut l)) = self.syslog.get().map(|l| l.lock()) {
                let text = text(record);
                let _ = match level {
                    Level::Error => l.err(text),
                    Level::Warn => l.warning(text),
                    Level::Info => l.info(text),
                    Level::Debug | Level::Trace => l.debug(text),
                };
                return;
            }
        }
        let mut err = std::io::stderr().lock();
        let _ = if target == Target::Journal as u8 {
            writeln!(err, "<{}>{}", priority(level), text(record))
        } else {
            let name = level.as_str().to_ascii_lowercase();
            writeln!(err, "novnc-audio: {name}: {}", text(record))
        };
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_names_a_file_by_device_and_inode() {
        use std::os::unix::fs::MetadataExt;
        let path = std::env::temp_dir().join(format!("novnc-audio-log-{}", std::process::id()));
        std::fs::write(&path, "").unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        let p = path.to_str().unwrap();
        assert!(stream_is(&format!("{}:{}", meta.dev(), meta.ino()), p));
        assert!(!stream_is(&format!("{}:{}", meta.dev(), meta.ino() + 1), p));
        assert!(!stream_is("garbage", p));
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn library_lines_name_their_origin() {
        let own = format_args!("listening");
        let record = Record::builder()
            .args(own)
            .target("novnc_audio::server")
            .build();
        assert_eq!(text(&record), "listening");
        let theirs = format_args!("closing");
        let record = Record::builder()
            .args(theirs)
            .target("tungstenite::protocol")
            .build();
        assert_eq!(text(&record), "tungstenite::protocol: closing");
        assert_eq!(priority(Level::Warn), 4);
    }
}

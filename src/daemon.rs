//! The process around the server: privileges, daemonizing, logging target.

use std::path::PathBuf;

use crate::config::DaemonConfig;
use crate::error::Error;

/// Refuses root unless allowed: a root process would hold the audio of every session.
pub fn check_privileges(config: &DaemonConfig) -> Result<(), Error> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && !config.allow_root {
        return Err(Error::Daemon(
            "refusing to run as root: run it as the desktop user (systemctl --user enable --now \
             novnc-audio) or as the novnc-audio system user (the system unit), or pass \
             --allow-root"
                .into(),
        ));
    }
    Ok(())
}

/// Forks into the background (before any glib or libpulse object exists), writes the
/// pid file and switches logging to syslog. Returns a guard removing the pid file.
pub fn daemonize(config: &DaemonConfig) -> Result<Option<PidFile>, Error> {
    if !config.daemonize {
        crate::log::init_stderr();
        return Ok(None);
    }
    let mut d = daemonize::Daemonize::new().working_directory("/");
    if let Some(p) = &config.pidfile {
        d = d.pid_file(p).chown_pid_file(false);
    }
    d.start()
        .map_err(|e| Error::Daemon(format!("cannot daemonize: {e}")))?;
    if let Err(e) = crate::log::init_syslog() {
        // Nowhere else to say it: stderr is /dev/null now.
        crate::log::init_stderr();
        crate::warn!("{e}");
    }
    Ok(config.pidfile.clone().map(|path| PidFile { path }))
}

/// Removes the pid file when the daemon ends.
pub struct PidFile {
    path: PathBuf,
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

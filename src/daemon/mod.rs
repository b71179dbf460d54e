//! The process around the server: privileges, daemonizing, the logging backend.

pub mod logger;

use std::path::PathBuf;

use novnc_audio::config::DaemonConfig;

/// What can go wrong while setting up the process.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(
        "refusing to run as root: run it as the desktop user (systemctl --user enable --now \
         novnc-audio) or as the novnc-audio system user (the system unit), or pass \
         --allow-root"
    )]
    Root,
    #[error("cannot daemonize: {0}")]
    Daemonize(#[from] daemonize::Error),
}

/// Refuses root unless allowed: a root process would hold the audio of every session.
pub fn check_privileges(config: &DaemonConfig) -> Result<(), DaemonError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid == 0 && !config.allow_root {
        return Err(DaemonError::Root);
    }
    Ok(())
}

/// Forks into the background (before any glib or libpulse object exists), writes the
/// pid file and switches logging to syslog. Returns a guard removing the pid file.
pub fn daemonize(config: &DaemonConfig) -> Result<Option<PidFile>, DaemonError> {
    if !config.daemonize {
        logger::to_stderr();
        return Ok(None);
    }
    let mut d = daemonize::Daemonize::new().working_directory("/");
    if let Some(p) = &config.pidfile {
        d = d.pid_file(p).chown_pid_file(false);
    }
    d.start()?;
    if let Err(e) = logger::to_syslog() {
        // Nowhere else to say it: stderr is /dev/null now.
        logger::to_stderr();
        log::warn!("{e}");
    }
    Ok(config.pidfile.clone().map(|path| PidFile { path }))
}

/// SIGINT, SIGTERM and SIGHUP, kept pending from the start of the process until the
/// server's main-loop handlers exist.
///
/// Without it a signal in that window (daemonizing, binding the port, connecting to
/// PulseAudio) takes its default action: the process dies without removing its pid file
/// or saying why, although the port already answers. Blocked, the signal waits and
/// reaches glib's handler the moment [`HeldSignals::release`] unblocks it.
pub struct HeldSignals {
    set: libc::sigset_t,
}

/// Blocks the signals the server handles; call before anything forks or spawns a thread,
/// so that every thread inherits the mask.
pub fn hold_signals() -> HeldSignals {
    // SAFETY: sigemptyset/sigaddset initialise the set we own; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signum in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signum);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        HeldSignals { set }
    }
}

impl HeldSignals {
    /// Unblocks the signals on this thread; one that arrived meanwhile is delivered now.
    pub fn release(self) {
        // SAFETY: the set was initialised by hold_signals.
        unsafe {
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &self.set, std::ptr::null_mut());
        }
    }
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

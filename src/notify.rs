//! systemd's notify protocol: one datagram to `$NOTIFY_SOCKET`, no libsystemd needed.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// Sends `state` (e.g. `READY=1`) if the service manager asked for notifications.
/// Returns whether a message went out.
pub fn notify(state: &str) -> bool {
    notify_to(std::env::var_os("NOTIFY_SOCKET").as_deref(), state)
}

/// Sends `state` to the socket `$NOTIFY_SOCKET` names (`@name` for an abstract socket).
fn notify_to(socket: Option<&std::ffi::OsStr>, state: &str) -> bool {
    let Some(path) = socket else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = if let Some(abstract_name) = path.strip_prefix('@') {
        SocketAddr::from_abstract_name(abstract_name.as_bytes())
    } else {
        SocketAddr::from_pathname(&path)
    };
    let Ok(addr) = addr else {
        return false;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    sock.send_to_addr(state.as_bytes(), &addr).is_ok()
}

/// The watchdog interval systemd expects pings at, if it set one for this process.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_a_datagram_to_the_socket_named() {
        let dir = std::env::temp_dir().join(format!("novnc-audio-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        assert!(notify_to(Some(path.as_os_str()), "READY=1\nSTATUS=ok"));
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");
        assert!(!notify_to(None, "READY=1"));
        assert!(!notify_to(
            Some(dir.join("absent.sock").as_os_str()),
            "READY=1"
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

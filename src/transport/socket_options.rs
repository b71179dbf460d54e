//! TCP options for the sockets of WebSocket clients, set when a connection upgrades.
//!
//! A listener receives a thin, latency-bound stream (one small message every frame), the
//! case Linux has options for: on a lossy link TCP turns each lost segment into a stall,
//! and these decide how long it lasts and how much stale audio waits in the kernel
//! behind it. What is on by default, and why, is measured on an emulated WAN link
//! (tests/netlink, `make bench`, docs/PERFORMANCE.md "WAN").
//!
//! `NOVNC_AUDIO_TCP_OPTIONS` replaces the defaults, for that benchmark and for anyone who
//! wants to measure their own link: a comma-separated list of `nodelay=0|1`,
//! `notsent_lowat=BYTES`, `thin_linear=0|1`, `user_timeout=MS`, or `none` (only what every
//! connection gets anyway: `TCP_NODELAY` and the small send buffer).

use std::io;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::OnceLock;

/// The environment variable that replaces [`TcpOptions::DEFAULT`].
pub(crate) const ENV: &str = "NOVNC_AUDIO_TCP_OPTIONS";

/// Options set on a client's socket; `None` leaves the kernel's (or the accept path's) value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TcpOptions {
    pub nodelay: Option<bool>,
    pub notsent_lowat: Option<u32>,
    pub thin_linear_timeouts: Option<bool>,
    pub user_timeout_ms: Option<u32>,
}

impl TcpOptions {
    /// What a client socket gets unless [`ENV`] says otherwise: nothing beyond the accept
    /// path's `TCP_NODELAY` (without it, stalls are 1.8-2x longer at p99.9 on the emulated
    /// link). `TCP_THIN_LINEAR_TIMEOUTS` and `TCP_NOTSENT_LOWAT` (16 KiB, 2 KiB) measured
    /// within the noise of two identical baseline rows at 1 % and at 5 % loss: RACK/TLP
    /// recovers a lost segment of this stream before an RTO backs off, and at 8 KB/s nothing
    /// waits unsent in the kernel for the low-water mark to act on (docs/PERFORMANCE.md, WAN).
    pub(crate) const DEFAULT: TcpOptions = TcpOptions {
        nodelay: None,
        notsent_lowat: None,
        thin_linear_timeouts: None,
        user_timeout_ms: None,
    };

    /// Parses the [`ENV`] syntax; the error names the item it could not read.
    pub(crate) fn parse(spec: &str) -> Result<TcpOptions, String> {
        let mut o = TcpOptions::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "none" {
                continue;
            }
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("'{item}' is not key=value"))?;
            let num = || {
                value
                    .parse::<u32>()
                    .map_err(|_| format!("'{item}': {value} is not a whole number"))
            };
            let flag = || match value {
                "0" => Ok(false),
                "1" => Ok(true),
                _ => Err(format!("'{item}': use 0 or 1")),
            };
            match key {
                "nodelay" => o.nodelay = Some(flag()?),
                "notsent_lowat" => o.notsent_lowat = Some(num()?),
                "thin_linear" => o.thin_linear_timeouts = Some(flag()?),
                "user_timeout" => o.user_timeout_ms = Some(num()?),
                _ => {
                    return Err(format!(
                        "unknown option '{key}' (nodelay, notsent_lowat, thin_linear, user_timeout)"
                    ))
                }
            }
        }
        Ok(o)
    }

    /// The options in force: [`ENV`] if set and valid, else the defaults (a bad value is
    /// logged once and ignored, so a typo never stops the daemon).
    pub(crate) fn current() -> TcpOptions {
        static CURRENT: OnceLock<TcpOptions> = OnceLock::new();
        *CURRENT.get_or_init(|| match std::env::var(ENV) {
            Err(_) => TcpOptions::DEFAULT,
            Ok(spec) => match TcpOptions::parse(&spec) {
                Ok(o) => {
                    log::info!("{ENV}={spec}: client sockets get {o:?}");
                    o
                }
                Err(e) => {
                    log::warn!("ignoring {ENV}={spec}: {e}; using the defaults");
                    TcpOptions::DEFAULT
                }
            },
        })
    }

    /// Sets every option that is `Some` on `sock`. Stops at the first the kernel refuses
    /// (an old kernel without one of them) and says which.
    pub(crate) fn apply(&self, sock: &TcpStream) -> io::Result<()> {
        let fd = sock.as_raw_fd();
        let set = |name: &str, opt: libc::c_int, value: u32| {
            setsockopt(fd, libc::IPPROTO_TCP, opt, value as libc::c_int)
                .map_err(|e| io::Error::new(e.kind(), format!("{name}: {e}")))
        };
        if let Some(v) = self.nodelay {
            set("TCP_NODELAY", libc::TCP_NODELAY, v as u32)?;
        }
        if let Some(v) = self.notsent_lowat {
            set("TCP_NOTSENT_LOWAT", libc::TCP_NOTSENT_LOWAT, v)?;
        }
        if let Some(v) = self.thin_linear_timeouts {
            set(
                "TCP_THIN_LINEAR_TIMEOUTS",
                libc::TCP_THIN_LINEAR_TIMEOUTS,
                v as u32,
            )?;
        }
        if let Some(v) = self.user_timeout_ms {
            set("TCP_USER_TIMEOUT", libc::TCP_USER_TIMEOUT, v)?;
        }
        Ok(())
    }
}

/// Sets the options in force on a client's socket that just upgraded to WebSocket.
pub(super) fn apply_to_client(sock: &TcpStream) {
    if let Err(e) = TcpOptions::current().apply(sock) {
        log::debug!("cannot set a TCP option on a client socket: {e}");
    }
}

fn setsockopt(
    fd: libc::c_int,
    level: libc::c_int,
    opt: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn getsockopt(sock: &TcpStream, opt: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt on a live socket into a c_int with its size.
        let rc = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_TCP,
                opt,
                &mut value as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    /// The server side of a real loopback connection, as the daemon's accept gives it.
    fn accepted() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        (listener.accept().unwrap().0, client)
    }

    #[test]
    fn every_option_reaches_the_socket() {
        let (server, _client) = accepted();
        let before = [
            getsockopt(&server, libc::TCP_NOTSENT_LOWAT),
            getsockopt(&server, libc::TCP_THIN_LINEAR_TIMEOUTS),
            getsockopt(&server, libc::TCP_USER_TIMEOUT),
        ];
        let o = TcpOptions::parse("nodelay=1,notsent_lowat=4096,thin_linear=1,user_timeout=20000")
            .unwrap();
        o.apply(&server).unwrap();
        assert_eq!(getsockopt(&server, libc::TCP_NODELAY), 1);
        assert_eq!(getsockopt(&server, libc::TCP_NOTSENT_LOWAT), 4096);
        assert_eq!(getsockopt(&server, libc::TCP_THIN_LINEAR_TIMEOUTS), 1);
        assert_eq!(getsockopt(&server, libc::TCP_USER_TIMEOUT), 20000);
        assert_ne!(
            before,
            [4096, 1, 20000],
            "the kernel's defaults already matched"
        );
    }

    #[test]
    fn none_changes_nothing_and_bad_items_are_named() {
        assert_eq!(TcpOptions::parse("none").unwrap(), TcpOptions::default());
        assert_eq!(TcpOptions::parse("").unwrap(), TcpOptions::default());
        let e = TcpOptions::parse("thin_linear=yes").unwrap_err();
        assert!(e.contains("thin_linear=yes"), "{e}");
        let e = TcpOptions::parse("lowat=5").unwrap_err();
        assert!(e.contains("unknown option 'lowat'"), "{e}");
        let e = TcpOptions::parse("notsent_lowat=-1").unwrap_err();
        assert!(e.contains("not a whole number"), "{e}");
    }
}

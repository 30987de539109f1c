//! systemd's notify protocol (`Type=notify`), without libsystemd: datagrams
//! to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
//! `READY=1` once the database is open and the loops run, `WATCHDOG=1` while
//! every loop keeps beating, `STOPPING=1` on the way out. Without
//! `$NOTIFY_SOCKET` (not under systemd) every call does nothing.

use std::time::Duration;

/// Where notifications go, read once from the environment.
pub struct Notifier {
    #[cfg(unix)]
    socket: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    watchdog: Option<Duration>,
}

impl Notifier {
    pub fn from_env() -> Notifier {
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
        );
        #[cfg(unix)]
        {
            let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
                match open(&path) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!(socket = ?path, error = %e, "cannot use NOTIFY_SOCKET; systemd will not hear from stoksync");
                        None
                    }
                }
            });
            Notifier { socket, watchdog }
        }
        #[cfg(not(unix))]
        Notifier { watchdog }
    }

    /// A notifier that sends nothing (the demo is not a service).
    pub fn disabled() -> Notifier {
        Notifier {
            #[cfg(unix)]
            socket: None,
            watchdog: None,
        }
    }

    /// Sends `state` (e.g. `READY=1`); failures are logged, never fatal.
    pub fn send(&self, state: &str) {
        #[cfg(unix)]
        if let Some((sock, addr)) = &self.socket
            && let Err(e) = sock.send_to_addr(state.as_bytes(), addr)
        {
            tracing::warn!(error = %e, "cannot notify systemd");
        }
    }

    /// How often to send `WATCHDOG=1` (half of `WatchdogSec`), when systemd
    /// asked for it.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog
    }
}

#[cfg(unix)]
fn open(
    path: &std::ffi::OsStr,
) -> std::io::Result<(
    std::os::unix::net::UnixDatagram,
    std::os::unix::net::SocketAddr,
)> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        #[cfg(target_os = "linux")]
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        #[cfg(not(target_os = "linux"))]
        Some(_) => {
            return Err(std::io::Error::other(
                "abstract sockets exist only on Linux",
            ));
        }
        None => SocketAddr::from_pathname(path)?,
    };
    Ok((UnixDatagram::unbound()?, addr))
}

/// Half of `WATCHDOG_USEC`, when it is set and meant for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_interval_is_half_of_watchdog_usec_for_this_pid() {
        assert_eq!(
            watchdog_interval(Some("60000000"), None),
            Some(Duration::from_secs(30))
        );
        let me = std::process::id().to_string();
        assert_eq!(
            watchdog_interval(Some("2000000"), Some(&me)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(watchdog_interval(Some("2000000"), Some("1")), None);
        assert_eq!(watchdog_interval(Some("0"), None), None);
        assert_eq!(watchdog_interval(Some("x"), None), None);
        assert_eq!(watchdog_interval(None, None), None);
    }
}

//! Active and standby: several `stoksync run` against one PostgreSQL
//! ledger, one active. The active daemon holds the lease row
//! (`leader_lease`) and renews it every third of `[database] lease_ttl`;
//! the others wait as standbys and take over once it expires by the
//! database's clock, or at once when its holder was a daemon of this same
//! host that is gone (a crash and a systemd restart).
//!
//! Fencing: the epoch taken with the lease is checked inside every write
//! transaction (see `Ledger::begin`), request-log rows carry it, and no
//! request is sent unless the lease has at least a margin left by the
//! local monotonic clock. A daemon that loses its lease (paused past it,
//! cut off from the database) stops its loops and exits, so that systemd
//! starts it again as a standby with nothing stale in memory.

use crate::ledger::{Claim, LeaseRow, Ledger};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// This process as a lease holder: `host/pid/nonce`.
pub fn holder_id() -> String {
    format!(
        "{}/{}/{:08x}",
        hostname(),
        std::process::id(),
        fastrand::u32(..)
    )
}

/// The host name holders are known by: `STOKSYNC_HOST` when set (a
/// container whose host name changes at each start), else the kernel's.
fn hostname() -> String {
    std::env::var("STOKSYNC_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Whether `holder` was a daemon of this host that no longer runs (its
/// pid is gone). Any doubt (another host, a pid still alive) is "no": the
/// lease is then waited out.
pub fn gone_from_this_host(holder: &str) -> bool {
    let mut parts = holder.rsplitn(3, '/');
    let (Some(_nonce), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == hostname()
        && pid != std::process::id()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// How often a standby looks at the lease, and the active one renews it.
pub fn renew_every(ttl: Duration) -> Duration {
    ttl / 3
}

/// Waits until this process holds the lease; `None` when `stop` came
/// first. `standby` is called with the holder each time it is seen.
pub async fn wait_for_lease(
    ledger: &Ledger,
    holder: &str,
    ttl: Duration,
    stop: &CancellationToken,
    mut standby: impl FnMut(&LeaseRow),
) -> Option<i64> {
    let poll = renew_every(ttl).min(Duration::from_secs(1));
    let mut announced = None::<String>;
    loop {
        match ledger.claim_lease(holder, ttl, gone_from_this_host).await {
            Ok(Claim::Taken { epoch, .. }) => {
                tracing::info!(epoch, holder, "took the active lease: this daemon syncs");
                return Some(epoch);
            }
            Ok(Claim::Held(row)) => {
                if announced.as_deref() != Some(row.holder.as_str()) {
                    tracing::info!(active = %row.holder, epoch = row.epoch, "standby: another daemon is active; taking over when its lease expires");
                    announced = Some(row.holder.clone());
                }
                standby(&row);
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the lease; trying again"),
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// Renews the lease until `stop`; cancels `lost` (and returns) as soon as
/// it is no longer surely ours: taken over, or not renewed within the
/// lease less its margin (the database out of reach).
pub async fn keep_lease(
    ledger: Ledger,
    holder: String,
    epoch: i64,
    ttl: Duration,
    stop: CancellationToken,
    lost: CancellationToken,
) {
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(renew_every(ttl)) => {}
        }
        match ledger.renew_lease(&holder, epoch, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(
                    epoch,
                    "the active lease was taken over by another daemon: stopping at once"
                );
                lost.cancel();
                return;
            }
            Err(e) => {
                if let Err(why) = ledger.lease_allows() {
                    tracing::error!(error = %e, "{why}: cannot renew the lease; stopping");
                    lost.cancel();
                    return;
                }
                tracing::warn!(error = %e, "cannot renew the lease; trying again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_holder_of_this_host_whose_pid_is_gone_is_dead() {
        let me = hostname();
        assert!(gone_from_this_host(&format!("{me}/999999999/abcd")));
        assert!(!gone_from_this_host(&format!(
            "{me}/{}/abcd",
            std::process::id()
        )));
        assert!(!gone_from_this_host(&format!("{me}/1/abcd")), "pid 1 runs");
        assert!(!gone_from_this_host("other-host.example/999999999/abcd"));
        assert!(!gone_from_this_host("garbage"));
        let id = holder_id();
        assert!(
            id.starts_with(&format!("{me}/{}/", std::process::id())),
            "{id}"
        );
    }
}

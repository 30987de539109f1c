//! One daemon per ledger: `run` and `sync --once` (and `demo`) hold an
//! exclusive advisory lock on `<database>.lock` for their whole life. The
//! kernel drops it when the process ends, kill -9 included, so a crash never
//! leaves a stale lock behind. Read-only commands (`status`, `stock list`)
//! and single ERP movements do not take it: they are safe beside a daemon.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Held while the process syncs this ledger.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock for `database`, or says who holds it.
    pub fn acquire(database: &Path) -> anyhow::Result<InstanceLock> {
        let mut name = database.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the lock file {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                anyhow::bail!(
                    "another stoksync is already syncing {} ({}; lock {}): stop it first, or give this one its own database",
                    database.display(),
                    if holder.is_empty() {
                        "pid unknown".to_string()
                    } else {
                        format!("pid {holder}")
                    },
                    path.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                anyhow::bail!("cannot lock {}: {e}", path.display())
            }
        }
        // The pid is only a hint for the message above; the lock is the truth.
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(InstanceLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        let first = InstanceLock::acquire(&db).unwrap();
        let e = InstanceLock::acquire(&db).unwrap_err().to_string();
        assert!(e.contains("already syncing"), "{e}");
        assert!(e.contains(&format!("pid {}", std::process::id())), "{e}");
        drop(first);
        InstanceLock::acquire(&db).expect("free again once dropped");
    }
}

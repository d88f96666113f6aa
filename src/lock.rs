//! Advisory file locks (flock).
//!
//! The kernel drops a flock when its holder dies, so a CLI killed half-way
//! never leaves a stale lock behind. Lock files are never deleted: every
//! waiter must lock the same inode.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, IoContext, Result};

/// A held lock; released on drop.
#[derive(Debug)]
pub struct Lock {
    _file: Flock<File>,
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .context(|| format!("opening lock {}", path.display()))
}

impl Lock {
    /// Takes an exclusive lock, waiting for other holders as long as needed.
    /// `what` names the lock in the message shown while waiting.
    pub fn exclusive(path: &Path, what: &str) -> Result<Lock> {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Lock { _file: lock }),
            Err((file, Errno::EWOULDBLOCK)) => {
                tracing::info!("waiting for {what} (another nixos-container command holds it)");
                Flock::lock(file, FlockArg::LockExclusive)
                    .map(|l| Lock { _file: l })
                    .map_err(|(_, e)| e)
                    .context(|| format!("locking {}", path.display()))
            }
            Err((_, e)) => Err(e).context(|| format!("locking {}", path.display())),
        }
    }

    /// Takes an exclusive lock if it is free right now.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(Lock { _file: lock })),
            Err((_, Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(e).context(|| format!("locking {}", path.display())),
        }
    }

    /// Waits up to `timeout` for an exclusive lock.
    pub fn exclusive_within(path: &Path, timeout: Duration) -> Result<Option<Lock>> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            if let Some(l) = Lock::try_exclusive(path)? {
                return Ok(Some(l));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

/// Whether someone holds a lock on `path`, without creating it. Works for
/// any user who can read the file.
pub fn is_held(path: &PathBuf) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_) => false,
        Err((_, e)) => e == Errno::EWOULDBLOCK,
    }
}

/// Explains a lock that could not be taken in time.
pub fn busy(name: &str) -> Error {
    Error::other(format!(
        "container '{name}' is busy: another nixos-container command is changing it"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_locks_exclude_each_other_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("locks/x.lock");
        let held = Lock::exclusive(&p, "x").unwrap();
        assert!(is_held(&p));
        assert!(Lock::try_exclusive(&p).unwrap().is_none());
        assert!(Lock::exclusive_within(&p, Duration::from_millis(30)).unwrap().is_none());
        drop(held);
        assert!(!is_held(&p));
        assert!(Lock::try_exclusive(&p).unwrap().is_some());
    }
}

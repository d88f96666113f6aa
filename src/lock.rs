//! Advisory file locks (flock).
//!
//! The kernel drops a flock when its holder dies, so a CLI killed half-way
//! never leaves a stale lock behind. Lock files are never deleted: every
//! waiter must lock the same inode.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::error::{IoContext, Result};

/// A held lock. It is released when the last descriptor of its open file
/// goes: on drop, or, when handed to a child process, when that child exits.
#[derive(Debug)]
pub struct Lock {
    file: File,
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
        // Root only: anyone who can open a lock file can hold it.
        .mode(0o600)
        .open(path)
        .context(|| format!("opening lock {}", path.display()))
}

fn flock(file: &File, op: libc::c_int) -> nix::Result<()> {
    // SAFETY: flock on a descriptor we own.
    Errno::result(unsafe { libc::flock(file.as_raw_fd(), op) }).map(drop)
}

impl Lock {
    /// Takes an exclusive lock, waiting for other holders as long as needed.
    /// `what` names the lock in the message shown while waiting.
    pub fn exclusive(path: &Path, what: &str) -> Result<Lock> {
        let file = open(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => return Ok(Lock { file }),
            Err(Errno::EWOULDBLOCK) => {}
            Err(e) => return Err(e).context(|| format!("locking {}", path.display())),
        }
        tracing::info!("waiting for {what} (another nixos-container command holds it)");
        loop {
            match flock(&file, libc::LOCK_EX) {
                Ok(()) => return Ok(Lock { file }),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e).context(|| format!("locking {}", path.display())),
            }
        }
    }

    /// Takes an exclusive lock if it is free right now.
    pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
        let file = open(path)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Lock { file })),
            Err(Errno::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e).context(|| format!("locking {}", path.display())),
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

    /// The lock file, e.g. to record who holds it.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Keeps the lock held by the returned file (and whoever inherits it).
    pub fn into_file(self) -> File {
        self.file
    }

    /// The descriptor, for handing the lock to a child process.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Whether someone holds a lock on `path`, without creating it. Works for
/// any user who can read the file.
pub fn is_held(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    flock(&file, libc::LOCK_SH | libc::LOCK_NB) == Err(Errno::EWOULDBLOCK)
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

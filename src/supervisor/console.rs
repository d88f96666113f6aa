//! The console log (`RUN/NAME/console.log`), kept bounded.
//!
//! nspawn copies the guest's console to its stdout, and the guest writes
//! there as much as it likes. The supervisor's stdout and stderr (which
//! nspawn inherits) are therefore a pipe, and a thread of the supervisor
//! appends what comes through to the log. When the file passes `MAX` bytes
//! it becomes `console.log.old` (replacing the one before) and a new
//! `console.log` begins: at most about 2 x `MAX` on disk, and the newest
//! lines, which failure reports quote (`container::log_tail` reads the old
//! file too), always there. A new file rather than a cut one, so that a
//! reader following the log (`logs -f`) simply continues in the new file.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{IoContext, Result};

/// The most one log file holds before the next begins.
pub const MAX: u64 = 2 << 20;

/// The log before the current one: `console.log.old` beside `console.log`.
pub fn previous(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".old");
    path.with_file_name(name)
}

/// A log file that starts anew (keeping one previous file) past `max` bytes.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    len: u64,
    max: u64,
}

impl RotatingLog {
    /// Appends to the log at `path` (`start` created it).
    pub fn open(path: &Path, max: u64) -> std::io::Result<RotatingLog> {
        let file = OpenOptions::new().write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_path_buf(), file, len, max })
    }

    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        if self.len >= self.max {
            self.rotate()?;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        std::fs::rename(&self.path, previous(&self.path))?;
        self.file = OpenOptions::new().create(true).write(true).truncate(true).mode(0o640).open(&self.path)?;
        self.len = 0;
        Ok(())
    }
}

/// The supervisor's stdout and stderr, pumped into the bounded log.
pub struct Console {
    /// The pipe's read end (for the bytes still in it).
    pending: OwnedFd,
    /// Held while a chunk is between the pipe and the file.
    busy: Arc<Mutex<()>>,
}

impl Console {
    /// Makes fds 1 and 2 a pipe whose content ends up in the log at `path`
    /// (appended: `start` created it).
    pub fn take_over(path: &Path) -> Result<Console> {
        let mut log = RotatingLog::open(path, MAX).context(|| format!("opening {}", path.display()))?;
        let (read_end, write_end) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "creating the console pipe".into())?;
        for target in [1, 2] {
            // SAFETY: dup2 onto the standard descriptors, which no Rust
            // object owns; the copies are inherited by nspawn.
            if unsafe { libc::dup2(write_end.as_raw_fd(), target) } < 0 {
                return Err(std::io::Error::last_os_error()).context(|| "redirecting the console".into());
            }
        }
        drop(write_end);
        let pending = read_end.try_clone().context(|| "duplicating the console pipe".into())?;
        let busy = Arc::new(Mutex::new(()));
        let held = busy.clone();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || pump(read_end, &mut log, &held))
            .context(|| "starting the console thread".into())?;
        Ok(Console { pending, busy })
    }

    /// Waits (up to `within`) until everything written to the console so
    /// far is in the log: before its last lines are quoted, and at exit.
    pub fn flush(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            {
                let _quiet = self.busy.lock().unwrap_or_else(|p| p.into_inner());
                let mut queued: libc::c_int = 0;
                // SAFETY: FIONREAD writes one int.
                let ok = unsafe { libc::ioctl(self.pending.as_raw_fd(), libc::FIONREAD, &mut queued) } == 0;
                if !ok || queued == 0 {
                    return;
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn pump(pipe: OwnedFd, log: &mut RotatingLog, busy: &Mutex<()>) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let _writing = busy.lock().unwrap_or_else(|p| p.into_inner());
        match nix::unistd::read(&pipe, &mut buf) {
            Ok(0) => return,
            // A log that cannot be written loses the chunk; the guest must
            // never block on its console because of it.
            Ok(n) => {
                let _ = log.append(&buf[..n]);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_past_its_bound_starts_anew_keeping_one_old_file_and_every_recent_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "").unwrap();
        let mut log = RotatingLog::open(&path, 1000).unwrap();
        // 10-byte lines: a new file every 100.
        for i in 0..450 {
            // Lines split across writes, as a pipe delivers them.
            log.append(format!("line {i:04}").as_bytes()).unwrap();
            log.append(b"\n").unwrap();
            let total = std::fs::metadata(&path).unwrap().len()
                + std::fs::metadata(previous(&path)).map(|m| m.len()).unwrap_or(0);
            assert!(total <= 2000, "{total} bytes after line {i}");
        }
        assert!(previous(&path).exists());
        // The failure report's tail reads across both files.
        let tail = crate::container::log_tail(&path, 120);
        let numbers: Vec<u32> = tail.lines().map(|l| l[5..].parse().unwrap()).collect();
        assert_eq!(numbers, (330..450).collect::<Vec<u32>>());
    }

    #[test]
    fn a_small_log_is_left_as_written_and_appends_continue_where_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "from start\n").unwrap();
        let mut log = RotatingLog::open(&path, MAX).unwrap();
        log.append(b"from the guest\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "from start\nfrom the guest\n");
        assert!(!previous(&path).exists());
    }
}

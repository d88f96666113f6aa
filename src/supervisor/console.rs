//! The console log (`RUN/NAME/console.log`), kept bounded.
//!
//! nspawn copies the guest's console to its stdout, and the guest writes
//! there as much as it likes. The supervisor's stdout and stderr (which
//! nspawn inherits) are therefore a pipe, and a thread of the supervisor
//! appends what comes through to the log: when the file passes `MAX` bytes,
//! it keeps the last `KEEP` (from a line start, after a note saying so), so
//! the newest lines, which failure reports quote, are always there.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::error::{IoContext, Result};

/// The most the log holds.
pub const MAX: u64 = 4 << 20;
/// What is left after the log passed `MAX`.
pub const KEEP: u64 = 2 << 20;

/// The first line of a log that lost its beginning.
pub const DROPPED: &str = "[nixos-container: earlier console output dropped to keep this file small]\n";

/// An append-only file that keeps only its last bytes.
pub struct BoundedLog {
    file: File,
    len: u64,
    max: u64,
    keep: u64,
}

impl BoundedLog {
    pub fn new(file: File, max: u64, keep: u64) -> std::io::Result<BoundedLog> {
        let len = file.metadata()?.len();
        Ok(BoundedLog { file, len, max, keep: keep.min(max) })
    }

    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all_at(data, self.len)?;
        self.len += data.len() as u64;
        if self.len > self.max {
            self.cut_front()?;
        }
        Ok(())
    }

    /// Keeps the last `keep` bytes, from the first line that starts in them.
    fn cut_front(&mut self) -> std::io::Result<()> {
        let start = self.len - self.keep;
        let mut tail = vec![0u8; self.keep as usize];
        self.file.read_exact_at(&mut tail, start)?;
        let line_start = tail.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut kept = DROPPED.as_bytes().to_vec();
        kept.extend_from_slice(&tail[line_start..]);
        self.file.write_all_at(&kept, 0)?;
        self.file.set_len(kept.len() as u64)?;
        self.len = kept.len() as u64;
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> u64 {
        self.len
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
        let file =
            OpenOptions::new().read(true).write(true).open(path).context(|| format!("opening {}", path.display()))?;
        let mut log = BoundedLog::new(file, MAX, KEEP).context(|| format!("reading {}", path.display()))?;
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

fn pump(pipe: OwnedFd, log: &mut BoundedLog, busy: &Mutex<()>) {
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

    fn log_in(dir: &Path, max: u64, keep: u64) -> (BoundedLog, std::path::PathBuf) {
        let path = dir.join("console.log");
        let file = OpenOptions::new().create(true).read(true).write(true).truncate(true).open(&path).unwrap();
        (BoundedLog::new(file, max, keep).unwrap(), path)
    }

    #[test]
    fn a_log_that_grows_past_its_bound_keeps_its_last_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = log_in(dir.path(), 1000, 400);
        for i in 0..500 {
            log.append(format!("line {i:04}\n").as_bytes()).unwrap();
            let on_disk = std::fs::metadata(&path).unwrap().len();
            assert!(on_disk <= 1000 && on_disk == log.len(), "{on_disk} bytes after line {i}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let body = text.strip_prefix(DROPPED).expect("the note comes first");
        assert!(body.starts_with("line "), "cut at a line start: {body:?}");
        assert!(text.ends_with("line 0499\n"));
        let numbers: Vec<u32> = body.lines().map(|l| l[5..].parse().unwrap()).collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "nothing lost in the kept part");
        // The failure report's tail still finds the newest lines.
        let tail = crate::container::log_tail(&path, 3);
        assert_eq!(tail, "line 0497\nline 0498\nline 0499");
    }

    #[test]
    fn a_small_log_is_left_as_written_and_appends_continue_where_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, "from start\n").unwrap();
        let file = OpenOptions::new().read(true).write(true).open(&path).unwrap();
        let mut log = BoundedLog::new(file, MAX, KEEP).unwrap();
        log.append(b"from the guest\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "from start\nfrom the guest\n");
    }

    #[test]
    fn one_huge_line_is_cut_anyway() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, path) = log_in(dir.path(), 100, 50);
        log.append(&[b'x'; 300]).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(len, (DROPPED.len() + 50) as u64);
    }
}

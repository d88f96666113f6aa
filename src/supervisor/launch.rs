//! `start`'s side: fork the supervisor and wait for its verdict.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::readiness::{self, Report};
use super::record::Record;
use super::{LOCK_FD, REPORT_FD};
use crate::container::{Container, log_tail};
use crate::error::{Error, IoContext, Lingering, Result};
use crate::fsutil;
use crate::lock::Lock;
use crate::supervision::Phase;

/// Starts the supervisor for `c` and waits until the container is ready or
/// has failed. Called by `start` with the container's lock held.
pub fn launch(c: &Container, timeout: Duration, netns: Option<&Path>) -> Result<()> {
    fsutil::create_dir(&c.paths.run, 0o755)?;
    // A new run, a new log: the previous run's lines must not be quoted as
    // this one's.
    let _ = std::fs::remove_file(super::console::previous(&c.paths.console_log()));
    let log = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o640)
        .open(c.paths.console_log())
        .context(|| format!("creating {}", c.paths.console_log().display()))?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "creating a pipe".into())?;
    // Taken here and inherited by the supervisor, so that from this moment
    // on everybody sees that a supervisor runs, even if we die right away.
    // (Within a moment: `status` may be holding a shared lock to look.)
    let Some(alive) = Lock::exclusive_within(&c.paths.supervisor_lock(), Duration::from_secs(2))? else {
        return Err(Error::StillRunning { name: c.name.clone(), what: Lingering::Supervisor });
    };
    Record { pid: None, phase: Phase::Starting }.write(alive.file())?;

    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("nixos-container")
        .arg("__supervise")
        .arg(&c.name)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    if let Some(ns) = netns {
        cmd.arg("--netns").arg(ns);
    }
    let log2 = log.try_clone().context(|| "duplicating the log".into())?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let report = write_end.as_raw_fd();
    let lock = alive.as_fd().as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Both are first moved above the targets: one may already sit
            // on the other's target, or on its own (where dup2 does nothing
            // and close-on-exec would stay set). The copies left above are
            // closed by the supervisor.
            let high = [report, lock].map(|fd| libc::fcntl(fd, libc::F_DUPFD, LOCK_FD + 1));
            for (from, to) in [(high[0], REPORT_FD), (high[1], LOCK_FD)] {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    tracing::info!("launching the supervisor of {}", c.name);
    cmd.spawn().context(|| "starting the supervisor".into())?;
    drop(write_end);
    drop(alive); // the supervisor holds it now
    crate::faults::crash_point("start-launched");

    // The supervisor applies the timeout itself; this margin only covers a
    // supervisor that hangs.
    let verdict = readiness::read_verdict(read_end, timeout + Duration::from_secs(15), |r| {
        if let Report::Runs(argv) = r {
            tracing::info!("its systemd-nspawn: {argv}");
        }
    });
    let reason = match verdict {
        Some(Report::Ready(note)) => {
            if let Some(note) = note {
                tracing::warn!("container '{}': {note}", c.name);
            }
            return Ok(());
        }
        Some(Report::Failed(why)) => why,
        Some(Report::Runs(_)) | None => {
            let tail = log_tail(&c.paths.console_log(), 8);
            if tail.is_empty() {
                "the supervisor exited without a word".into()
            } else {
                format!("the supervisor exited; the console said:\n{tail}")
            }
        }
    };
    Err(Error::StartFailed { name: c.name.clone(), reason })
}

//! Our own supervisor: the [`Supervision`] of hosts without systemd.
//!
//! There may be no systemd on the host to keep a container running after the
//! CLI exits, so `start` forks a small supervisor of our own
//! (`nixos-container __supervise NAME`, in a session of its own):
//! - `launch` (in `start`): takes the supervisor lock, forks the supervisor
//!   with the lock and a report pipe, and waits for its verdict;
//! - `run` (in the supervisor): puts systemd-nspawn into the container's
//!   cgroup and runs it, restarts it when the guest reboots (exit 133), and
//!   when the guest is gone kills what is left and removes everything
//!   `start` set up;
//! - `readiness`: when the guest counts as ready, and the report protocol;
//! - `record`: `PID PHASE` in the lock file, whose flock says the
//!   supervisor lives;
//! - `console`: the console log, bounded (the supervisor's stdout and
//!   stderr, which nspawn inherits, go through a pipe into it).

pub mod console;
mod launch;
pub mod readiness;
pub mod record;
mod run;

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};

pub use run::{EXIT_REBOOT, SuperviseArgs, supervise};

use crate::cgroup::{ContainerCgroup, Hierarchy};
use crate::container::Container;
use crate::error::{Error, Lingering, Result};
use crate::lock::Lock;
use crate::paths::ContainerPaths;
use crate::supervision::{RunStatus, Supervision};
use record::Record;

/// The descriptor on which the supervisor reports to `start`.
const REPORT_FD: RawFd = 3;
/// The supervisor lock, taken by `start` and inherited.
const LOCK_FD: RawFd = 4;

/// The detached `__supervise` process per container.
pub struct OwnSupervisor;

impl Supervision for OwnSupervisor {
    fn describe(&self) -> &'static str {
        "the container's own supervisor"
    }

    fn status(&self, name: &str, paths: &ContainerPaths, hierarchies: &[Hierarchy]) -> RunStatus {
        let record = Record::of_live_supervisor(paths);
        let populated = ContainerCgroup::in_hierarchies(hierarchies, name).is_populated();
        RunStatus::from_parts(record.map(|r| (r.phase, r.pid)), populated)
    }

    fn launch(&self, c: &Container, timeout: Duration) -> Result<()> {
        let netns = crate::lifecycle::prepare_host(c)?;
        launch::launch(c, timeout, netns.as_deref())
    }

    /// SIGTERM to the supervisor: it passes the first one to nspawn (which
    /// halts the guest with SIGRTMIN+3), and before nspawn runs it simply
    /// launches nothing.
    fn request_halt(&self, c: &Container, status: &RunStatus) -> bool {
        let Some(pid) = status.supervisor_pid() else { return false };
        tracing::info!("asking the supervisor of {} (PID {pid}) to halt it", c.name);
        let _ = kill(pid, Signal::SIGTERM);
        true
    }

    fn wait_ended(&self, c: &Container, wait: Duration) -> bool {
        matches!(Lock::exclusive_within(&c.paths.supervisor_lock(), wait), Ok(Some(_)))
    }

    fn terminate(&self, c: &Container, cgroup: &ContainerCgroup) -> Result<()> {
        // Told first, the supervisor launches nothing more; it stays alive to
        // reap nspawn and the guest's init (it is their subreaper). Killed
        // first, it would leave them as zombies of the host's init, which on
        // hosts whose PID 1 does not reap (a container's shell, say) stay.
        if let Some(pid) = Record::of_live_supervisor(&c.paths).and_then(|r| r.pid) {
            let _ = kill(pid, Signal::SIGTERM);
        }
        cgroup.kill_all(Duration::from_secs(5));
        let polite_until = Instant::now() + Duration::from_secs(2);
        while Record::of_live_supervisor(&c.paths).is_some() && Instant::now() < polite_until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(record) = Record::of_live_supervisor(&c.paths) {
            if let Some(pid) = record.pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
            if Instant::now() >= deadline {
                return Err(Error::StillRunning { name: c.name.clone(), what: Lingering::SupervisorAfterKill });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

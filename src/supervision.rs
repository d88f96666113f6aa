//! The supervision seam: what keeps a running container running, and the one
//! answer to "is it running?".
//!
//! Something must own a container while it runs: launch nspawn, tell `start`
//! when the guest is ready, restart it on a guest reboot, halt it on request
//! and clean up after it. On hosts without systemd as PID 1 that is our own
//! supervisor (`crate::supervisor`, a detached `nixos-container __supervise`
//! process). Where systemd runs, the container's transient unit
//! `nixos-container@NAME.service` does that job (`crate::unit`). The choice is made once per host ([`for_host`]) and everything else
//! (lifecycle's start/stop/terminate/destroy, `status`, `list`, the picker,
//! `update`, `run`) goes through the [`Supervision`] trait and reads state
//! through [`RunStatus`] only.
//!
//! The unit's ActiveState maps onto [`Phase`] (activating -> Starting,
//! active/reloading -> Running, deactivating -> Stopping, inactive/failed ->
//! none), and the container's cgroup is then the unit's, which
//! [`crate::cgroup`] finds under machine.slice.
//!
//! `NIXOS_CONTAINER_SUPERVISION=own|systemd` overrides the choice (for
//! admins, and for tests).

use std::sync::OnceLock;
use std::time::Duration;

use nix::unistd::Pid;

use crate::cgroup::{ContainerCgroup, Hierarchy};
use crate::container::{Container, State};
use crate::error::Result;
use crate::paths::ContainerPaths;

/// Where in its life a supervised container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Launching nspawn and waiting for the guest to be ready.
    Starting,
    /// The guest was ready (and may be rebooting).
    Running,
    /// The guest is gone (or going); cleaning up.
    Stopping,
}

/// Whether a container runs, as every command sees it: from its supervision
/// (if any lives) and whether its cgroup has processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Nothing of the container runs.
    Gone,
    /// Its supervision lives. `pid` is the process to signal, once known;
    /// `guest` says whether the container's cgroup has processes.
    Supervised { phase: Phase, pid: Option<Pid>, guest: bool },
    /// Processes of the container are left, but nothing supervises them
    /// (the supervisor was killed).
    Unsupervised,
}

impl RunStatus {
    /// The status from its two observations.
    pub fn from_parts(supervision: Option<(Phase, Option<Pid>)>, populated: bool) -> RunStatus {
        match supervision {
            Some((phase, pid)) => RunStatus::Supervised { phase, pid, guest: populated },
            None if populated => RunStatus::Unsupervised,
            None => RunStatus::Gone,
        }
    }

    /// `up` for `status` and `list`: anything of the container lives, its
    /// supervision (starting, or cleaning up) or any of its processes.
    pub fn is_up(&self) -> bool {
        *self != RunStatus::Gone
    }

    pub fn state(&self) -> State {
        if self.is_up() { State::Up } else { State::Down }
    }

    /// Whether there is a guest to talk to or activate in: processes in the
    /// cgroup, and not a supervision cleaning up after a guest that is gone.
    pub fn guest_runs(&self) -> bool {
        match self {
            RunStatus::Gone => false,
            RunStatus::Unsupervised => true,
            RunStatus::Supervised { phase: Phase::Stopping, .. } => false,
            RunStatus::Supervised { guest, .. } => *guest,
        }
    }

    pub fn phase(&self) -> Option<Phase> {
        match self {
            RunStatus::Supervised { phase, .. } => Some(*phase),
            _ => None,
        }
    }

    /// The supervising process, where there is one and it is known.
    pub fn supervisor_pid(&self) -> Option<Pid> {
        match self {
            RunStatus::Supervised { pid, .. } => *pid,
            _ => None,
        }
    }

    pub fn is_supervised(&self) -> bool {
        matches!(self, RunStatus::Supervised { .. })
    }
}

/// One way of keeping containers running. Chosen once per host.
pub trait Supervision: Sync {
    /// What `-v` output and messages call it.
    fn describe(&self) -> &'static str;

    /// The container's status: cheap (a lock probe, a file, one cgroup
    /// file), and needs no conf.
    fn status(&self, name: &str, paths: &ContainerPaths, hierarchies: &[Hierarchy]) -> RunStatus;

    /// Prepares the host (`lifecycle::prepare_host`: root, network) and
    /// starts the guest of `c`; returns once it is ready or has failed
    /// (then with the reason and the console's last lines). The caller holds
    /// the container's lock.
    fn launch(&self, c: &Container, timeout: Duration) -> Result<()>;

    /// Asks for a clean halt of the guest (the supervision passes it on,
    /// and launches nothing more). False when there was nobody to ask.
    fn request_halt(&self, c: &Container, status: &RunStatus) -> bool;

    /// Waits up to `wait` until the supervision of `c` has ended; true if it
    /// has (or there was none).
    fn wait_ended(&self, c: &Container, wait: Duration) -> bool;

    /// Kills every process of the container at once and ends its
    /// supervision (which reaps what it launched). Returns when nothing of
    /// either is left; the caller then releases the runtime state.
    fn terminate(&self, c: &Container, cgroup: &ContainerCgroup) -> Result<()>;
}

/// The variable that overrides the host's choice: `own` or `systemd`.
pub const SUPERVISION_VAR: &str = "NIXOS_CONTAINER_SUPERVISION";

/// What [`SUPERVISION_VAR`] asks for: Some(true) for systemd units,
/// Some(false) for our own supervisor, None to choose by the host.
pub fn parse_choice(value: Option<&str>) -> std::result::Result<Option<bool>, String> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some("systemd") => Ok(Some(true)),
        Some("own") => Ok(Some(false)),
        Some(other) => Err(format!("{SUPERVISION_VAR}='{other}' is neither 'own' nor 'systemd'")),
    }
}

/// Whether containers are systemd units on this host: where systemd is
/// PID 1 and the system bus answers, unless [`SUPERVISION_VAR`] says.
pub fn units_run_containers() -> bool {
    static UNITS: OnceLock<bool> = OnceLock::new();
    *UNITS.get_or_init(|| {
        let asked = std::env::var(SUPERVISION_VAR).ok();
        match parse_choice(asked.as_deref()) {
            Ok(Some(units)) => units,
            Ok(None) => crate::systemd::booted() && crate::unit::bus().is_ok(),
            Err(e) => {
                tracing::warn!("{e}; choosing by the host");
                crate::systemd::booted() && crate::unit::bus().is_ok()
            }
        }
    })
}

/// The supervision of this host, chosen on first use.
pub fn for_host() -> &'static dyn Supervision {
    if units_run_containers() { &crate::unit::UnitSupervisor } else { &crate::supervisor::OwnSupervisor }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PID: Option<Pid> = Some(Pid::from_raw(42));

    #[test]
    fn up_means_anything_of_the_container_lives() {
        assert!(!RunStatus::from_parts(None, false).is_up());
        assert_eq!(RunStatus::from_parts(None, false).state(), State::Down);
        assert_eq!(RunStatus::from_parts(None, true), RunStatus::Unsupervised);
        for phase in [Phase::Starting, Phase::Running, Phase::Stopping] {
            for populated in [false, true] {
                let s = RunStatus::from_parts(Some((phase, None)), populated);
                assert!(s.is_up() && s.is_supervised(), "{s:?}");
                assert_eq!(s.state(), State::Up);
            }
        }
    }

    #[test]
    fn a_guest_runs_while_it_has_processes_and_is_not_being_cleaned_up_after() {
        let runs = |sup, populated| RunStatus::from_parts(sup, populated).guest_runs();
        assert!(!runs(None, false));
        assert!(runs(None, true), "a guest whose supervisor was killed still runs");
        assert!(runs(Some((Phase::Running, PID)), true));
        assert!(runs(Some((Phase::Starting, None)), true));
        assert!(!runs(Some((Phase::Running, PID)), false), "between nspawn's exit and the cleanup");
        assert!(!runs(Some((Phase::Stopping, PID)), true), "its last processes are being killed");
    }

    #[test]
    fn the_override_says_own_or_systemd_and_nothing_else() {
        assert_eq!(parse_choice(None), Ok(None));
        assert_eq!(parse_choice(Some("")), Ok(None));
        assert_eq!(parse_choice(Some("systemd")), Ok(Some(true)));
        assert_eq!(parse_choice(Some("own")), Ok(Some(false)));
        assert!(parse_choice(Some("units")).unwrap_err().contains("neither 'own' nor 'systemd'"));
    }

    #[test]
    fn the_supervisor_pid_is_known_only_once_recorded() {
        assert_eq!(RunStatus::from_parts(Some((Phase::Starting, None)), false).supervisor_pid(), None);
        assert_eq!(RunStatus::from_parts(Some((Phase::Running, PID)), true).supervisor_pid(), PID);
        assert_eq!(RunStatus::Unsupervised.supervisor_pid(), None);
        assert_eq!(RunStatus::from_parts(Some((Phase::Stopping, PID)), true).phase(), Some(Phase::Stopping));
    }
}

//! The systemd backend of [`Supervision`]: where systemd is PID 1, a running
//! container NAME is the transient unit `nixos-container@NAME.service` (see
//! [`crate::systemd`] for its properties and why it is transient).
//!
//! - `launch` (in `start`) creates and starts the unit and waits for its
//!   start job: systemd reports "done" once the guest's systemd said
//!   READY=1 (nspawn passes it on, `--notify-ready=yes`).
//! - The unit's main process is `nixos-container __run-unit NAME`: it
//!   prepares the host (root, network) and then *becomes* systemd-nspawn
//!   (exec), so nspawn is the unit's main PID, gets systemd's notify socket,
//!   and manages the unit's delegated cgroup itself (`supervisor/`,
//!   `payload/`).
//! - `nixos-container __release NAME` (ExecStopPost) releases what
//!   `__run-unit` set up, after any end of nspawn: a halt, a kill, a
//!   failed boot, and before a guest's reboot restarts the unit.
//!
//! Neither entry point takes the container's lock: `start`, `stop` and
//! `destroy` hold it while they wait for the unit's jobs.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::unistd::Pid;

use crate::cgroup::{ContainerCgroup, Hierarchy};
use crate::conf::Conf;
use crate::container::{Container, RunState};
use crate::error::{Error, IoContext, Lingering, Result};
use crate::paths::{ContainerPaths, Paths};
use crate::supervision::{Phase, RunStatus, Supervision};
use crate::systemd::{Systemd, UnitSpec, unit_name};
use crate::{fsutil, nspawn};

/// How long the unit may take to halt the guest (systemctl stop, shutdown).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(90);

/// The process's connection to systemd, made once.
pub fn bus() -> Result<&'static Systemd> {
    static BUS: OnceLock<std::result::Result<Systemd, String>> = OnceLock::new();
    BUS.get_or_init(|| Systemd::connect().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| Error::Systemd { what: "connecting to systemd".into(), message: e.clone() })
}

/// The phase a unit's ActiveState stands for; None when nothing runs.
pub fn phase_of(active_state: &str) -> Option<Phase> {
    match active_state {
        "activating" => Some(Phase::Starting),
        "active" | "reloading" | "refreshing" => Some(Phase::Running),
        "deactivating" => Some(Phase::Stopping),
        _ => None,
    }
}

/// The environment the unit's commands get: every `NIXOS_CONTAINER_*`
/// variable of the caller (they move the tool's directories) and its PATH
/// (where `start` found systemd-nspawn).
pub fn unit_environment(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<String> {
    vars.filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("NIXOS_CONTAINER_") || k == "PATH")
        .map(|(k, v)| format!("{k}={v}"))
        .collect()
}

/// The conf's DEVICES as `DeviceAllow=` paths: a directory (/dev/dri) as
/// the nodes below it, which systemd would not take; a path that is no
/// device stays as it is (nspawn's --bind fails on it with its own words).
fn device_paths(devices: &[std::path::PathBuf]) -> Vec<String> {
    devices
        .iter()
        .flat_map(|d| match crate::devices::nodes(std::slice::from_ref(d)) {
            Ok(nodes) => nodes.into_iter().map(|n| n.path).collect(),
            Err(_) => vec![d.clone()],
        })
        .map(|p| p.to_string_lossy().into_owned())
        .collect()
}

/// The unit that runs container `c`.
pub fn spec(name: &str, conf: &Conf, exe: &Path, start_timeout: Duration) -> UnitSpec {
    let exe = OsString::from(exe);
    let limits = &conf.limits;
    UnitSpec {
        unit: unit_name(name),
        description: format!("NixOS container {name}"),
        exec_start: vec![exe.clone(), "__run-unit".into(), name.into()],
        exec_stop_post: vec![exe, "__release".into(), name.into()],
        environment: unit_environment(std::env::vars_os()),
        start_timeout,
        stop_timeout: STOP_TIMEOUT,
        memory_max: limits.memory_max,
        // CPU_QUOTA is in percent of one CPU: 100% is 1 s per second.
        cpu_quota_per_sec: limits.cpu_quota.map(|pct| Duration::from_micros(u64::from(pct) * 10_000)),
        tasks_max: limits.pids_max,
        devices: device_paths(&conf.devices),
    }
}

fn current_exe() -> Result<std::path::PathBuf> {
    std::env::current_exe().context(|| "finding this program's path".into())
}

/// Waits until the unit is gone or inactive; true if it is.
fn wait_inactive(unit: &str, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    loop {
        let running = match bus().and_then(|b| b.state(unit)) {
            Ok(Some(s)) => s.is_running(),
            Ok(None) => false,
            // Nobody to ask: nothing to wait for.
            Err(_) => return true,
        };
        if !running {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The unit's last journal lines since `since`.
fn journal_tail(unit: &str, since: SystemTime, lines: usize) -> String {
    let secs = since.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let out = Command::new("journalctl")
        .args(["--no-pager", "-o", "cat", "-u", unit])
        .arg(format!("--since=@{secs}"))
        .arg(format!("--lines={lines}"))
        .output();
    match out {
        Ok(o) => crate::logs::sanitize(&o.stdout).trim_end().to_string(),
        Err(_) => String::new(),
    }
}

/// `logs NAME` where containers are units: the console is nspawn's output,
/// in the journal. Guest-written bytes are cleaned as the console log's are.
pub fn console(name: &str, lines: Option<usize>, follow: bool, out: &mut dyn std::io::Write) -> Result<()> {
    use std::io::BufRead;
    let mut cmd = Command::new("journalctl");
    cmd.args(["--no-pager", "-o", "cat", "-u", &unit_name(name)]);
    match lines {
        Some(n) => cmd.arg(format!("--lines={n}")),
        // Every run of the unit since the host booted: a stopped transient
        // unit leaves nothing to narrow it to its last run (the own
        // supervisor's console log holds one run).
        None => cmd.arg("--boot").arg("--lines=all"),
    };
    if follow {
        cmd.arg("--follow");
    }
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().context(|| "running journalctl".into())?;
    let mut reader = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {
                if out.write_all(crate::logs::sanitize(&line).as_bytes()).and_then(|()| out.flush()).is_err() {
                    let _ = child.kill();
                    break;
                }
            }
            Err(e) => return Err(e).context(|| "reading journalctl's output".into()),
        }
    }
    let _ = child.wait();
    Ok(())
}

/// The container's systemd unit.
pub struct UnitSupervisor;

impl Supervision for UnitSupervisor {
    fn describe(&self) -> &'static str {
        "the container's systemd unit"
    }

    fn status(&self, name: &str, _paths: &ContainerPaths, hierarchies: &[Hierarchy]) -> RunStatus {
        let populated = ContainerCgroup::of_unit(hierarchies, name).is_populated();
        let state = bus().and_then(|b| b.state(&unit_name(name))).ok().flatten();
        let supervision = state.and_then(|s| {
            let pid = s.main_pid.map(|p| Pid::from_raw(p as i32));
            phase_of(&s.active).map(|phase| (phase, pid))
        });
        RunStatus::from_parts(supervision, populated)
    }

    fn launch(&self, c: &Container, timeout: Duration) -> Result<()> {
        let spec = spec(&c.name, &c.conf, &current_exe()?, timeout);
        let since = SystemTime::now() - Duration::from_secs(1);
        tracing::info!("starting the transient unit {}", spec.unit);
        let result = bus()?.start_transient(&spec);
        let why = match result {
            Ok(r) if r.is_done() => return Ok(()),
            Ok(r) => format!("its unit {} ended its start with '{}'", spec.unit, r.0),
            Err(e) => e.to_string(),
        };
        // A failed unit is collected once its ExecStopPost (the release) ran.
        if !wait_inactive(&spec.unit, Duration::from_secs(15)) {
            let _ = bus().and_then(|b| b.kill(&spec.unit, "all", libc::SIGKILL));
            wait_inactive(&spec.unit, Duration::from_secs(5));
        }
        // journald may still be writing the last lines.
        std::thread::sleep(Duration::from_millis(200));
        let tail = journal_tail(&spec.unit, since, 10);
        let reason = if tail.is_empty() { why } else { format!("{why}; 'journalctl -u {}' said:\n{tail}", spec.unit) };
        Err(Error::StartFailed { name: c.name.clone(), reason })
    }

    /// Queues the unit's stop job (SIGTERM to nspawn, which halts the guest
    /// with SIGRTMIN+3) without waiting for it: `stop` waits itself.
    fn request_halt(&self, c: &Container, status: &RunStatus) -> bool {
        if !status.is_supervised() {
            return false;
        }
        let unit = unit_name(&c.name);
        tracing::info!("asking systemd to stop {unit}");
        bus().and_then(|b| b.request_stop(&unit)).is_ok()
    }

    fn wait_ended(&self, c: &Container, wait: Duration) -> bool {
        wait_inactive(&unit_name(&c.name), wait)
    }

    fn terminate(&self, c: &Container, _cgroup: &ContainerCgroup) -> Result<()> {
        let unit = unit_name(&c.name);
        let Some(state) = bus()?.state(&unit)? else { return Ok(()) };
        if state.is_running() {
            let _ = bus()?.kill(&unit, "all", libc::SIGKILL);
        }
        // Also cancels a restart that a guest's reboot queued.
        let _ = bus()?.request_stop(&unit);
        if !wait_inactive(&unit, Duration::from_secs(15)) {
            return Err(Error::StillRunning { name: c.name.clone(), what: Lingering::Unit(unit) });
        }
        Ok(())
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `__run-unit NAME`, the unit's main process: prepares the host, then
/// becomes systemd-nspawn. Returns only when that failed.
pub fn run_unit(paths: &Paths, name: &str) -> Result<i32> {
    let c = Container::open(paths, name)?;
    fsutil::create_dir(&c.paths.run, 0o755)?;
    let netns = crate::lifecycle::prepare_host(&c)?;
    let argv = nspawn::command_line(&nspawn::Launch {
        mode: nspawn::Mode::Unit,
        name: &c.name,
        paths: &c.paths,
        conf: &c.conf,
        in_own_netns: netns.is_some(),
        host_has: &|p: &Path| p.exists(),
    });
    eprintln!("{}", nspawn::display(&argv));
    // After the exec, our PID is nspawn's.
    let pid = std::process::id() as i32;
    let system =
        std::fs::canonicalize(c.paths.system_profile()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let state = RunState {
        supervisor_pid: pid,
        nspawn_pid: pid,
        started_at: now(),
        system,
        started_with: Some(c.conf.launch_settings()),
    };
    let json = serde_json::to_vec(&state).expect("state serialises");
    fsutil::write_atomic(&c.paths.state_file(), &json, 0o644)?;
    if let Some(ns) = &netns {
        // nspawn runs inside the container's namespace (see the supervisor's
        // spawn_nspawn): its sysfs then lists the guest's interfaces. setns
        // of the network namespace is per thread, and this thread execs.
        let f = File::open(ns).context(|| format!("opening {}", ns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).context(|| format!("entering {}", ns.display()))?;
    }
    let e = Command::new(&argv[0]).args(&argv[1..]).exec();
    Err(match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingProgram {
            program: "systemd-nspawn",
            hint: "install systemd-container (the same version as systemd)",
        },
        _ => Error::Io { context: "starting systemd-nspawn".into(), source: e },
    })
}

/// `__release NAME` (the unit's ExecStopPost): removes what `__run-unit`
/// set up. Also for a container whose conf is damaged or gone.
pub fn release(paths: &Paths, name: &str) -> Result<i32> {
    crate::name::validate_existing(name)?;
    let c = match Container::open_to_destroy(paths, name) {
        Ok((c, _)) => c,
        Err(_) => Container { name: name.to_string(), paths: paths.container(name), conf: Conf::default() },
    };
    let cgroup = c.cgroup()?;
    crate::lifecycle::release_runtime(&c, &cgroup);
    // The next boot's sockets must not be mistaken for this one's.
    let _ = crate::guest::remove_sockets(&c.paths.root);
    remove_journal_links(Path::new(HOST_JOURNAL_DIR), &c.paths.root);
    Ok(0)
}

/// Where nspawn's `--link-journal=try-guest` links a guest's journal.
const HOST_JOURNAL_DIR: &str = "/var/log/journal";

/// Removes the host's links into the guest's journal (nspawn makes one per
/// machine ID at each start and removes none; a guest without a fixed
/// machine ID would leave one per boot, and all of them dangle after
/// destroy). Only links are read and removed: nothing in the guest's root
/// is followed.
fn remove_journal_links(dir: &Path, root: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if let Ok(target) = std::fs::read_link(e.path())
            && target.starts_with(root)
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_links_into_this_guests_root_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("journal");
        std::fs::create_dir(&dir).unwrap();
        let root = Path::new("/var/lib/nixos-containers/web");
        std::os::unix::fs::symlink(root.join("var/log/journal/abc"), dir.join("abc")).unwrap();
        std::os::unix::fs::symlink("/var/lib/nixos-containers/web2/var/log/journal/d", dir.join("d")).unwrap();
        std::fs::create_dir(dir.join("hostid")).unwrap();
        remove_journal_links(&dir, root);
        let mut left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["d", "hostid"]);
    }

    #[test]
    fn active_states_map_onto_phases() {
        assert_eq!(phase_of("activating"), Some(Phase::Starting));
        assert_eq!(phase_of("active"), Some(Phase::Running));
        assert_eq!(phase_of("reloading"), Some(Phase::Running));
        assert_eq!(phase_of("deactivating"), Some(Phase::Stopping));
        assert_eq!(phase_of("inactive"), None);
        assert_eq!(phase_of("failed"), None);
    }

    #[test]
    fn the_unit_carries_the_tools_directories_and_path_only() {
        let vars = [
            ("NIXOS_CONTAINER_STATE_DIR", "/tmp/t/state"),
            ("NIXOS_CONTAINER_RUN_DIR", "/tmp/t/run"),
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("NIXOS_CONTAINERS", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        assert_eq!(
            unit_environment(vars.into_iter()),
            ["NIXOS_CONTAINER_STATE_DIR=/tmp/t/state", "NIXOS_CONTAINER_RUN_DIR=/tmp/t/run", "PATH=/usr/bin:/bin"]
        );
    }

    #[test]
    fn the_unit_runs_this_program_and_the_confs_limits() {
        let mut conf = Conf::default();
        conf.limits.memory_max = Some(1 << 30);
        conf.limits.cpu_quota = Some(150);
        conf.limits.pids_max = Some(300);
        let s = spec("web", &conf, Path::new("/opt/bin/nixos-container"), Duration::from_secs(60));
        assert_eq!(s.unit, "nixos-container@web.service");
        assert_eq!(s.exec_start, ["/opt/bin/nixos-container", "__run-unit", "web"].map(OsString::from));
        assert_eq!(s.exec_stop_post, ["/opt/bin/nixos-container", "__release", "web"].map(OsString::from));
        assert_eq!(s.memory_max, Some(1 << 30));
        assert_eq!(s.cpu_quota_per_sec, Some(Duration::from_millis(1500)));
        assert_eq!(s.tasks_max, Some(300));
        assert_eq!(s.start_timeout, Duration::from_secs(60));
        let s = spec("web", &Conf::default(), Path::new("/x"), Duration::from_secs(1));
        assert_eq!((s.memory_max, s.cpu_quota_per_sec, s.tasks_max), (None, None, None));
    }
}

//! The host's systemd, over D-Bus: where systemd is PID 1, a running
//! container is the unit `nixos-container@NAME.service`.
//!
//! We create that unit as a *transient* unit (`StartTransientUnit`) with
//! the properties below, rather than shipping a template unit file: the
//! unit then always matches the binary that starts it (no stale unit file
//! after an upgrade, nothing to install for `cargo run` or a Nix profile),
//! and the conf's settings become unit properties at each start. The unit
//! lives in `machine.slice` with `Delegate=yes`, so nspawn (`--keep-unit`)
//! registers it with machined and every process of the container lives in
//! its cgroup; systemd stops it at shutdown like any other service.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;
use std::time::Duration;

use zbus::blocking::{Connection, Proxy};
use zbus::zvariant::{OwnedObjectPath, Value};

use crate::error::{Error, Result};

const DESTINATION: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";

/// The unit's TasksMax when the conf sets no limit (nspawn's own units use
/// the same).
pub const DEFAULT_TASKS_MAX: u64 = 16384;

/// nspawn's exit status when the guest asked for a reboot.
pub const REBOOT_EXIT_STATUS: i32 = 133;

/// Whether systemd is the host's init (sd_booted(3): the directory exists
/// only while systemd runs as PID 1).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// The unit of container `name`. Container names are DNS labels (and
/// nixpkgs' `_`), all of them valid in unit names as they are.
pub fn unit_name(name: &str) -> String {
    format!("nixos-container@{name}.service")
}

/// What the container's unit runs and how systemd treats it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitSpec {
    pub unit: String,
    pub description: String,
    /// The main process (argv; argv[0] is an absolute path). It sends
    /// READY=1 when the guest has booted (`Type=notify`).
    pub exec_start: Vec<OsString>,
    /// Runs after the main process is gone, also after SIGKILL: releases
    /// what start set up on the host (network, runtime files).
    pub exec_stop_post: Vec<OsString>,
    /// `NAME=VALUE` for both commands.
    pub environment: Vec<String>,
    pub start_timeout: Duration,
    pub stop_timeout: Duration,
    /// Resource limits as unit properties (`MemoryMax=`, `CPUQuotaPerSecUSec=`, `TasksMax=`).
    pub memory_max: Option<u64>,
    pub cpu_quota_per_sec: Option<Duration>,
    pub tasks_max: Option<u64>,
    /// The conf's DEVICES (paths under /dev), which the guest may open.
    pub devices: Vec<String>,
}

fn exec(argv: &[OsString]) -> Value<'static> {
    let args: Vec<Vec<u8>> = argv.iter().map(|a| a.clone().into_vec()).collect();
    // systemd wants strings; our arguments are paths and names we made.
    let args: Vec<String> = args.into_iter().map(|a| String::from_utf8_lossy(&a).into_owned()).collect();
    let path = args.first().cloned().unwrap_or_default();
    Value::from(vec![(path, args, false)])
}

/// The transient unit's properties, in systemd's D-Bus names.
pub fn properties(spec: &UnitSpec) -> Vec<(&'static str, Value<'static>)> {
    let usec = |d: Duration| Value::from(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut props = vec![
        ("Description", Value::from(spec.description.clone())),
        // Where machined and nixpkgs' container@ units put guests.
        ("Slice", Value::from("machine.slice")),
        // nspawn manages the container's cgroup subtree itself.
        ("Delegate", Value::from(true)),
        // The main process says READY=1 once the guest has booted; nothing
        // of the guest can reach the unit's notify socket.
        ("Type", Value::from("notify")),
        ("NotifyAccess", Value::from("main")),
        // Up after the host's network, down before it at shutdown.
        ("After", Value::from(vec!["network.target".to_string()])),
        // SIGTERM to the main process halts the guest cleanly; whatever is
        // left after the stop timeout is killed.
        ("KillMode", Value::from("mixed")),
        ("TimeoutStartUSec", usec(spec.start_timeout)),
        ("TimeoutStopUSec", usec(spec.stop_timeout)),
        // A guest's reboot: nspawn exits 133 and systemd starts it again.
        // Nothing else restarts it: `terminate` and a guest that died stay
        // down, as on hosts without systemd.
        ("RestartForceExitStatus", Value::from((vec![REBOOT_EXIT_STATUS], Vec::<i32>::new()))),
        ("SuccessExitStatus", Value::from((vec![REBOOT_EXIT_STATUS], Vec::<i32>::new()))),
        // A failed start leaves no unit behind to block the next one.
        ("CollectMode", Value::from("inactive-or-failed")),
        ("Environment", Value::from(spec.environment.clone())),
        ("ExecStart", exec(&spec.exec_start)),
        ("ExecStopPost", exec(&spec.exec_stop_post)),
    ];
    if let Some(bytes) = spec.memory_max {
        props.push(("MemoryAccounting", Value::from(true)));
        props.push(("MemoryMax", Value::from(bytes)));
    }
    if let Some(quota) = spec.cpu_quota_per_sec {
        props.push(("CPUAccounting", Value::from(true)));
        props.push(("CPUQuotaPerSecUSec", usec(quota)));
    }
    // The device policy systemd-nspawn@.service sets (nspawn with
    // --keep-unit sets none of its own): a privileged guest keeps
    // CAP_MKNOD and could otherwise make and open a node of any host
    // device (its disks). "closed" still allows the standard pseudo
    // devices (/dev/null, zero, full, random, urandom, tty, ptmx); the
    // guest's ptys and /dev/net/tun are added, and the conf's DEVICES.
    // nspawn@'s loop and mapper entries are for --image, which we never use.
    props.push(("DevicePolicy", Value::from("closed")));
    props.push(("DeviceAllow", Value::from(device_allow(&spec.devices))));
    props.push(("TasksAccounting", Value::from(true)));
    // systemd's default TasksMax (15% of pid_max) is low for a whole OS.
    props.push(("TasksMax", Value::from(spec.tasks_max.unwrap_or(DEFAULT_TASKS_MAX))));
    props
}

/// `DeviceAllow=` entries (path or `char-GROUP`, access): the guest's
/// ptys, /dev/net/tun and the conf's devices.
pub fn device_allow(devices: &[String]) -> Vec<(String, String)> {
    let mut allow = vec![("char-pts".to_string(), "rw".to_string()), ("/dev/net/tun".into(), "rwm".into())];
    allow.extend(devices.iter().map(|d| (d.clone(), "rwm".to_string())));
    allow
}

/// What became of a job (`JobRemoved`'s result): "done", "failed",
/// "timeout", "canceled", "dependency", "skipped".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobResult(pub String);

impl JobResult {
    pub fn is_done(&self) -> bool {
        self.0 == "done"
    }
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitState {
    /// "active", "activating", "deactivating", "failed", "inactive", ...
    pub active: String,
    pub main_pid: Option<u32>,
    /// The unit's cgroup, relative to the cgroup2 root ("/machine.slice/...").
    pub control_group: Option<String>,
    /// When it last became active, in µs since the epoch.
    pub active_since_usec: Option<u64>,
}

impl UnitState {
    /// The guest (or its start) is going on in the unit.
    pub fn is_running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "activating" | "deactivating" | "reloading" | "refreshing")
    }
}

fn dbus(what: impl Into<String>) -> impl FnOnce(zbus::Error) -> Error {
    let what = what.into();
    move |e| Error::Systemd { what, message: e.to_string() }
}

/// A connection to the system bus and systemd's manager.
pub struct Systemd {
    connection: Connection,
}

impl Systemd {
    pub fn connect() -> Result<Systemd> {
        let connection = Connection::system().map_err(dbus("connecting to the system bus"))?;
        Ok(Systemd { connection })
    }

    fn manager(&self) -> Result<Proxy<'_>> {
        Proxy::new(&self.connection, DESTINATION, MANAGER_PATH, MANAGER).map_err(dbus("reaching systemd"))
    }

    /// Runs `start` (which queues a job and returns its path) and waits for
    /// that job to end. The signal subscription comes first, so a job that
    /// ends at once is not missed.
    fn run_job(
        &self,
        what: &str,
        start: impl FnOnce(&Proxy<'_>) -> zbus::Result<OwnedObjectPath>,
    ) -> Result<JobResult> {
        let manager = self.manager()?;
        // Without a subscriber systemd may not send JobRemoved; a second
        // Subscribe of the same client is an error we can ignore.
        let _ = manager.call_method("Subscribe", &());
        let mut removed = manager.receive_signal("JobRemoved").map_err(dbus(what))?;
        let job = start(&manager).map_err(dbus(what))?;
        for message in &mut removed {
            let (_id, path, _unit, result): (u32, OwnedObjectPath, String, String) =
                message.body().deserialize().map_err(dbus(what))?;
            if path == job {
                return Ok(JobResult(result));
            }
        }
        Err(Error::Systemd { what: what.into(), message: "the system bus closed the connection".into() })
    }

    /// Creates and starts the transient unit; returns when its start job
    /// has ended (for `Type=notify`: READY=1, the main process's death or
    /// the start timeout).
    pub fn start_transient(&self, spec: &UnitSpec) -> Result<JobResult> {
        let props = properties(spec);
        let aux: Vec<(&str, Vec<(&str, Value<'_>)>)> = Vec::new();
        let what = format!("starting {}", spec.unit);
        self.run_job(&what, |m| m.call("StartTransientUnit", &(spec.unit.as_str(), "fail", props, aux)))
    }

    /// Stops the unit and waits until it is stopped (the unit's stop
    /// timeout bounds this). A unit that is not loaded is stopped already.
    pub fn stop(&self, unit: &str) -> Result<JobResult> {
        let what = format!("stopping {unit}");
        match self.run_job(&what, |m| m.call("StopUnit", &(unit, "replace"))) {
            Err(Error::Systemd { message, .. }) if message.contains("NoSuchUnit") || message.contains("not loaded") => {
                Ok(JobResult("done".into()))
            }
            other => other,
        }
    }

    /// Queues the unit's stop job and returns at once. A unit that is not
    /// loaded is stopped already.
    pub fn request_stop(&self, unit: &str) -> Result<()> {
        match self.manager()?.call_method("StopUnit", &(unit, "replace")) {
            Ok(_) => Ok(()),
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchUnit") => Ok(()),
            Err(e) => Err(dbus(format!("stopping {unit}"))(e)),
        }
    }

    /// Sends `signal` to the unit's processes (`whom`: "main" or "all").
    pub fn kill(&self, unit: &str, whom: &str, signal: i32) -> Result<()> {
        self.manager()?
            .call_method("KillUnit", &(unit, whom, signal))
            .map(drop)
            .map_err(dbus(format!("signalling {unit}")))
    }

    /// The unit's state, or None when systemd has no such unit loaded.
    pub fn state(&self, unit: &str) -> Result<Option<UnitState>> {
        let path: OwnedObjectPath = match self.manager()?.call("GetUnit", &(unit,)) {
            Ok(p) => p,
            Err(zbus::Error::MethodError(name, _, _)) if name.as_str().ends_with("NoSuchUnit") => return Ok(None),
            Err(e) => return Err(dbus(format!("asking systemd about {unit}"))(e)),
        };
        let what = format!("reading the state of {unit}");
        let unit_proxy = Proxy::new(&self.connection, DESTINATION, path.as_str(), UNIT).map_err(dbus(what.clone()))?;
        let active: String = unit_proxy.get_property("ActiveState").map_err(dbus(what.clone()))?;
        let since: u64 = unit_proxy.get_property("ActiveEnterTimestamp").unwrap_or(0);
        let service = Proxy::new(&self.connection, DESTINATION, path.as_str(), SERVICE).map_err(dbus(what))?;
        let main_pid: u32 = service.get_property("MainPID").unwrap_or(0);
        let control_group: String = service.get_property("ControlGroup").unwrap_or_default();
        Ok(Some(UnitState {
            active,
            main_pid: (main_pid != 0).then_some(main_pid),
            control_group: (!control_group.is_empty()).then_some(control_group),
            active_since_usec: (since != 0).then_some(since),
        }))
    }

    /// Sets resource limits on a running unit (not persisted: the conf
    /// is, and the next start applies it again). A limit not set is lifted.
    pub fn set_limits(&self, unit: &str, spec: &UnitSpec) -> Result<()> {
        self.manager()?
            .call_method("SetUnitProperties", &(unit, true, limit_properties(spec)))
            .map(drop)
            .map_err(dbus(format!("setting the limits of {unit}")))
    }
}

/// The limits of a running unit, each one set or lifted ("infinity").
pub fn limit_properties(spec: &UnitSpec) -> Vec<(&'static str, Value<'static>)> {
    let usec = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    vec![
        ("MemoryAccounting", Value::from(true)),
        ("CPUAccounting", Value::from(true)),
        ("MemoryMax", Value::from(spec.memory_max.unwrap_or(u64::MAX))),
        ("CPUQuotaPerSecUSec", Value::from(spec.cpu_quota_per_sec.map(usec).unwrap_or(u64::MAX))),
        ("TasksMax", Value::from(spec.tasks_max.unwrap_or(DEFAULT_TASKS_MAX))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> UnitSpec {
        UnitSpec {
            unit: unit_name("web"),
            description: "NixOS container web".into(),
            exec_start: vec!["/usr/bin/nixos-container".into(), "__unit".into(), "web".into()],
            exec_stop_post: vec!["/usr/bin/nixos-container".into(), "__release".into(), "web".into()],
            environment: vec!["NIXOS_CONTAINER_CONF_DIR=/tmp/c".into()],
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(90),
            memory_max: None,
            cpu_quota_per_sec: None,
            tasks_max: None,
            devices: Vec::new(),
        }
    }

    fn get<'a>(props: &'a [(&'static str, Value<'static>)], key: &str) -> &'a Value<'static> {
        &props.iter().find(|(k, _)| *k == key).unwrap_or_else(|| panic!("no {key}")).1
    }

    #[test]
    fn the_unit_is_named_after_the_container() {
        assert_eq!(unit_name("web-1"), "nixos-container@web-1.service");
    }

    #[test]
    fn the_unit_is_a_delegated_notify_service_in_machine_slice() {
        let props = properties(&spec());
        assert_eq!(get(&props, "Slice"), &Value::from("machine.slice"));
        assert_eq!(get(&props, "Delegate"), &Value::from(true));
        assert_eq!(get(&props, "Type"), &Value::from("notify"));
        assert_eq!(get(&props, "KillMode"), &Value::from("mixed"));
        assert_eq!(get(&props, "TimeoutStopUSec"), &Value::from(90_000_000u64));
        assert_eq!(get(&props, "TimeoutStartUSec"), &Value::from(60_000_000u64));
        // No key twice: systemd refuses a property given twice.
        let mut keys: Vec<_> = props.iter().map(|(k, _)| *k).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), props.len());
    }

    #[test]
    fn a_guest_reboot_restarts_the_unit() {
        let props = properties(&spec());
        let codes = Value::from((vec![133i32], Vec::<i32>::new()));
        assert_eq!(get(&props, "RestartForceExitStatus"), &codes);
        assert_eq!(get(&props, "SuccessExitStatus"), &codes);
        assert_eq!(get(&props, "RestartForceExitStatus").value_signature().to_string(), "(aiai)");
    }

    #[test]
    fn commands_travel_as_path_argv_and_no_ignore_flag() {
        let props = properties(&spec());
        let start = get(&props, "ExecStart");
        assert_eq!(start.value_signature().to_string(), "a(sasb)");
        let expected = Value::from(vec![(
            "/usr/bin/nixos-container".to_string(),
            vec!["/usr/bin/nixos-container".to_string(), "__unit".into(), "web".into()],
            false,
        )]);
        assert_eq!(start, &expected);
        assert_eq!(get(&props, "Environment").value_signature().to_string(), "as");
    }

    #[test]
    fn limits_become_unit_properties_only_when_set() {
        let props = properties(&spec());
        assert!(!props.iter().any(|(k, _)| matches!(*k, "MemoryMax" | "CPUQuotaPerSecUSec")));
        assert_eq!(get(&props, "TasksMax"), &Value::from(DEFAULT_TASKS_MAX));
        let mut s = spec();
        s.memory_max = Some(512 << 20);
        s.cpu_quota_per_sec = Some(Duration::from_millis(1500));
        s.tasks_max = Some(200);
        let props = properties(&s);
        assert_eq!(get(&props, "MemoryMax"), &Value::from(512u64 << 20));
        assert_eq!(get(&props, "CPUQuotaPerSecUSec"), &Value::from(1_500_000u64));
        assert_eq!(get(&props, "TasksMax"), &Value::from(200u64));
    }

    #[test]
    fn the_guest_opens_only_pseudo_devices_ptys_tun_and_its_devices() {
        let props = properties(&spec());
        assert_eq!(get(&props, "DevicePolicy"), &Value::from("closed"));
        let allow = get(&props, "DeviceAllow");
        assert_eq!(allow.value_signature().to_string(), "a(ss)");
        let pair = |p: &str, a: &str| (p.to_string(), a.to_string());
        assert_eq!(allow, &Value::from(vec![pair("char-pts", "rw"), pair("/dev/net/tun", "rwm")]));
        let mut s = spec();
        s.devices = vec!["/dev/fuse".into(), "/dev/kvm".into()];
        assert_eq!(
            get(&properties(&s), "DeviceAllow"),
            &Value::from(vec![
                pair("char-pts", "rw"),
                pair("/dev/net/tun", "rwm"),
                pair("/dev/fuse", "rwm"),
                pair("/dev/kvm", "rwm")
            ])
        );
    }

    #[test]
    fn set_limits_lifts_the_limits_not_set() {
        let props = limit_properties(&spec());
        assert_eq!(get(&props, "MemoryMax"), &Value::from(u64::MAX));
        assert_eq!(get(&props, "CPUQuotaPerSecUSec"), &Value::from(u64::MAX));
        assert_eq!(get(&props, "TasksMax"), &Value::from(DEFAULT_TASKS_MAX));
        let mut s = spec();
        s.memory_max = Some(1 << 20);
        assert_eq!(get(&limit_properties(&s), "MemoryMax"), &Value::from(1u64 << 20));
    }

    #[test]
    fn running_means_any_state_with_processes() {
        let s = |a: &str| UnitState { active: a.into(), main_pid: None, control_group: None, active_since_usec: None };
        assert!(s("active").is_running());
        assert!(s("activating").is_running());
        assert!(s("deactivating").is_running());
        assert!(!s("inactive").is_running());
        assert!(!s("failed").is_running());
    }
}

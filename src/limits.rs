//! Resource limits of a container: memory, CPU time and processes.
//!
//! Kept in the conf as `MEMORY_MAX`, `CPU_QUOTA` and `PIDS_MAX`, in the
//! syntax of systemd's `MemoryMax=`, `CPUQuota=` and `TasksMax=` (so a
//! systemd unit can take them as they are), and written into the
//! container's cgroup: at start, once the cgroup exists and before anything
//! runs in it, and by `set-limits` on a running container. Each limit goes
//! to the cgroup2 file where the cgroup2 tree has the controller
//! (`memory.max`, `cpu.max`, `pids.max`), else to the v1 controller's
//! (`memory.limit_in_bytes`, `cpu.cfs_quota_us`, `pids.max`): hybrid hosts
//! keep these controllers in v1. The kernel enforces them inside the
//! container: a guest past its memory limit meets the OOM killer in its own
//! cgroup, not the host's.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cgroup::{ContainerCgroup, Kind};
use crate::error::{Error, Result};

/// The CFS period the CPU quota is expressed in (systemd's default).
const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Bytes of memory (RAM; swap as the host allows).
    pub memory_max: Option<u64>,
    /// Percent of one CPU's time (200 = two CPUs).
    pub cpu_quota: Option<u32>,
    /// Processes and threads.
    pub pids_max: Option<u64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// These limits changed by `change` (`Some(None)` removes one).
    pub fn with(mut self, change: &Change) -> Limits {
        if let Some(v) = change.memory_max {
            self.memory_max = v;
        }
        if let Some(v) = change.cpu_quota {
            self.cpu_quota = v;
        }
        if let Some(v) = change.pids_max {
            self.pids_max = v;
        }
        self
    }

    /// The limits as `KEY=VALUE` conf pairs (only those that are set).
    pub fn conf_pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(m) = self.memory_max {
            out.push(("MEMORY_MAX", format_bytes(m)));
        }
        if let Some(c) = self.cpu_quota {
            out.push(("CPU_QUOTA", format!("{c}%")));
        }
        if let Some(p) = self.pids_max {
            out.push(("PIDS_MAX", p.to_string()));
        }
        out
    }
}

/// What `set-limits` changes: `None` leaves a limit, `Some(None)` removes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Change {
    pub memory_max: Option<Option<u64>>,
    pub cpu_quota: Option<Option<u32>>,
    pub pids_max: Option<Option<u64>>,
}

impl Change {
    pub fn is_empty(&self) -> bool {
        *self == Change::default()
    }
}

fn unlimited(s: &str) -> bool {
    matches!(s, "" | "infinity" | "max" | "none")
}

/// A memory size as systemd takes it: bytes, or a number with K, M, G or T
/// (powers of 1024; `512M`, `1.5G`, `512MiB` too); `infinity`/`none` for no limit.
pub fn parse_memory(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if unlimited(t) {
        return Ok(None);
    }
    let t = t.strip_suffix("iB").or_else(|| t.strip_suffix('B')).unwrap_or(t);
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let factor: u64 = match unit {
        "" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        "T" | "t" => 1 << 40,
        _ => return Err(format!("'{s}' is not a memory size (e.g. 512M, 2G, or infinity)")),
    };
    let value: f64 = num.parse().map_err(|_| format!("'{s}' is not a memory size (e.g. 512M, 2G, or infinity)"))?;
    let bytes = value * factor as f64;
    // Less than a MiB cannot boot anything; it is a typo (512 for 512M).
    if !bytes.is_finite() || bytes < (1 << 20) as f64 || bytes > u64::MAX as f64 / 2.0 {
        return Err(format!("'{s}' is not a usable memory limit (at least 1M; e.g. 512M, 2G)"));
    }
    Ok(Some(bytes as u64))
}

/// CPU time as systemd's CPUQuota= (`150%`: one and a half CPUs), or as
/// docker's `--cpus` when `cpus` (`1.5`).
pub fn parse_cpu(s: &str, cpus: bool) -> std::result::Result<Option<u32>, String> {
    let t = s.trim();
    if unlimited(t) {
        return Ok(None);
    }
    let percent = if cpus {
        t.parse::<f64>().ok().map(|c| c * 100.0)
    } else {
        t.strip_suffix('%').and_then(|p| p.trim().parse::<f64>().ok())
    };
    let example = if cpus { "a number of CPUs, e.g. 0.5 or 2" } else { "a percentage of one CPU, e.g. 50% or 200%" };
    match percent {
        Some(p) if (1.0..=100_000.0).contains(&p) => Ok(Some(p.round() as u32)),
        _ => Err(format!("'{s}' is not {example}")),
    }
}

/// A number of processes; `infinity`/`none` for no limit.
pub fn parse_pids(s: &str) -> std::result::Result<Option<u64>, String> {
    let t = s.trim();
    if unlimited(t) {
        return Ok(None);
    }
    match t.parse::<u64>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(format!("'{s}' is not a number of processes (e.g. 512, or infinity)")),
    }
}

/// Bytes in the largest unit that shows them exactly (`512M`, `1536M`).
pub fn format_bytes(b: u64) -> String {
    for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
        if b >= 1 << shift && b.is_multiple_of(1 << shift) {
            return format!("{}{unit}", b >> shift);
        }
    }
    b.to_string()
}

/// Where each controller's files are: the container's cgroup2 directory
/// when cgroup2 has the controller, else its v1 directory.
#[derive(Debug, Default, PartialEq, Eq)]
struct Places {
    memory: Option<(bool, PathBuf)>,
    cpu: Option<(bool, PathBuf)>,
    pids: Option<(bool, PathBuf)>,
}

/// Reads which controllers the cgroup2 tree offers to `dir`'s parent.
fn unified_controllers(dir: &Path) -> Vec<String> {
    dir.parent()
        .and_then(|p| fs::read_to_string(p.join("cgroup.subtree_control")).ok())
        .map(|s| s.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn places(cgroup: &ContainerCgroup) -> Places {
    let unified = cgroup.dir(Kind::Unified).map(|d| (unified_controllers(d), d.to_path_buf()));
    let pick = |controller: &str, v1: Kind| {
        if let Some((ctrls, d)) = &unified
            && ctrls.iter().any(|c| c == controller)
        {
            return Some((true, d.clone()));
        }
        cgroup.dir(v1).map(|d| (false, d.to_path_buf()))
    };
    Places { memory: pick("memory", Kind::MemoryV1), cpu: pick("cpu", Kind::CpuV1), pids: pick("pids", Kind::PidsV1) }
}

/// On a cgroup2 host, makes the controllers of the limits that are set
/// available to the containers' cgroups (the root and `nixos-containers`
/// hand them down); hosts booted by systemd have this done already.
fn enable_unified_controllers(cgroup: &ContainerCgroup, limits: &Limits) {
    let Some(dir) = cgroup.dir(Kind::Unified) else { return };
    let wanted: Vec<&str> = [
        (limits.memory_max.is_some(), "memory"),
        (limits.cpu_quota.is_some(), "cpu"),
        (limits.pids_max.is_some(), "pids"),
    ]
    .into_iter()
    .filter_map(|(set, c)| set.then_some(c))
    .collect();
    let (Some(parent), Some(mount)) = (dir.parent(), dir.parent().and_then(Path::parent)) else { return };
    for c in wanted {
        let offered = fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
        if !offered.split_whitespace().any(|o| o == c) {
            continue;
        }
        for level in [mount, parent] {
            let _ = fs::write(level.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

/// The file writes that put `limits` in force, in order. A limit that is
/// not set is written as "no limit", so removing one takes effect too.
fn writes(limits: &Limits, places: &Places) -> Vec<(PathBuf, String, bool)> {
    let mut out = Vec::new();
    if let Some((v2, d)) = &places.memory {
        let (file, none) = if *v2 { ("memory.max", "max") } else { ("memory.limit_in_bytes", "-1") };
        let value = limits.memory_max.map(|m| m.to_string()).unwrap_or_else(|| none.into());
        out.push((d.join(file), value, limits.memory_max.is_some()));
    }
    if let Some((v2, d)) = &places.cpu {
        let quota = limits.cpu_quota.map(|p| u64::from(p) * CPU_PERIOD_US / 100);
        if *v2 {
            let q = quota.map(|q| q.to_string()).unwrap_or_else(|| "max".into());
            out.push((d.join("cpu.max"), format!("{q} {CPU_PERIOD_US}"), quota.is_some()));
        } else {
            out.push((d.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string(), quota.is_some()));
            let q = quota.map(|q| q.to_string()).unwrap_or_else(|| "-1".into());
            out.push((d.join("cpu.cfs_quota_us"), q, quota.is_some()));
        }
    }
    if let Some((_, d)) = &places.pids {
        let value = limits.pids_max.map(|p| p.to_string()).unwrap_or_else(|| "max".into());
        out.push((d.join("pids.max"), value, limits.pids_max.is_some()));
    }
    out
}

/// Puts `limits` in force on the container's (existing) cgroup. Fails when
/// a limit that is set cannot be applied: a container must not run
/// unlimited when its conf says otherwise.
pub fn apply(cgroup: &ContainerCgroup, limits: &Limits) -> Result<()> {
    enable_unified_controllers(cgroup, limits);
    let places = places(cgroup);
    for (what, set, place) in [
        ("memory", limits.memory_max.is_some(), &places.memory),
        ("cpu", limits.cpu_quota.is_some(), &places.cpu),
        ("pids", limits.pids_max.is_some(), &places.pids),
    ] {
        if set && place.is_none() {
            return Err(Error::other(format!(
                "this host has no '{what}' cgroup controller for the container's {what} limit; remove the limit with 'nixos-container set-limits NAME --{}'",
                match what {
                    "memory" => "memory-max infinity",
                    "cpu" => "cpu-quota infinity",
                    _ => "pids-max infinity",
                }
            )));
        }
    }
    for (file, value, required) in writes(limits, &places) {
        tracing::debug!("writing {value} to {}", file.display());
        match fs::write(&file, &value) {
            Ok(()) => {}
            Err(e) if required => {
                return Err(Error::Io {
                    context: format!("setting a limit: writing {value} to {}", file.display()),
                    source: e,
                });
            }
            Err(_) => {}
        }
    }
    Ok(())
}

/// The limits the kernel enforces now on a running container (what its
/// cgroup files say), for `info`.
pub fn in_force(cgroup: &ContainerCgroup) -> Limits {
    let places = places(cgroup);
    let read = |p: PathBuf| fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    let mut l = Limits::default();
    if let Some((v2, d)) = places.memory {
        let file = if v2 { "memory.max" } else { "memory.limit_in_bytes" };
        // v1 says "no limit" with a huge page-aligned number.
        l.memory_max = read(d.join(file)).and_then(|v| v.parse::<u64>().ok()).filter(|m| *m < 1 << 60);
    }
    if let Some((v2, d)) = places.cpu {
        let (quota, period) = if v2 {
            let v = read(d.join("cpu.max")).unwrap_or_default();
            let mut it = v.split_whitespace();
            (it.next().and_then(|q| q.parse::<i64>().ok()), it.next().and_then(|p| p.parse::<i64>().ok()))
        } else {
            (
                read(d.join("cpu.cfs_quota_us")).and_then(|q| q.parse().ok()),
                read(d.join("cpu.cfs_period_us")).and_then(|p| p.parse().ok()),
            )
        };
        if let (Some(q), Some(p)) = (quota, period)
            && q > 0
            && p > 0
        {
            l.cpu_quota = Some((q * 100 / p) as u32);
        }
    }
    if let Some((_, d)) = places.pids {
        l.pids_max = read(d.join("pids.max")).and_then(|v| v.parse().ok());
    }
    l
}

/// Changes a container's limits: in its cgroup first when it runs (so a
/// value the kernel refuses changes nothing), then in its conf. Returns the
/// limits now set and whether the container runs.
pub fn set(paths: &crate::paths::Paths, name: &str, change: &Change) -> Result<(Limits, bool)> {
    let (mut c, _lock) = crate::lifecycle::open_locked(paths, name)?;
    crate::lifecycle::refuse_declarative(&c)?;
    let limits = c.conf.limits.with(change);
    let running = c.state()? == crate::container::State::Up;
    if running && crate::supervision::units_run_containers() {
        // The unit's cgroup is systemd's: its limits are unit properties.
        let conf = crate::conf::Conf { limits, ..crate::conf::Conf::default() };
        let spec = crate::unit::spec(name, &conf, Path::new("/"), std::time::Duration::ZERO);
        crate::unit::bus()?.set_limits(&spec.unit, &spec)?;
    } else if running {
        apply(&c.cgroup()?, &limits)?;
    }
    c.conf.limits = limits;
    c.conf.save(&c.paths.conf)?;
    Ok((limits, running))
}

/// How many times the kernel's OOM killer acted in the container's cgroup,
/// where the host tells.
pub fn oom_kills(cgroup: &ContainerCgroup) -> Option<u64> {
    let places = places(cgroup);
    let (v2, d) = places.memory?;
    let (file, key) = if v2 { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
    let text = fs::read_to_string(d.join(file)).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_as_systemd_writes_them() {
        assert_eq!(parse_memory("512M"), Ok(Some(512 << 20)));
        assert_eq!(parse_memory("1.5G"), Ok(Some(3 << 29)));
        assert_eq!(parse_memory("2GiB"), Ok(Some(2 << 30)));
        assert_eq!(parse_memory("1073741824"), Ok(Some(1 << 30)));
        assert_eq!(parse_memory("infinity"), Ok(None));
        assert!(parse_memory("512").unwrap_err().contains("at least 1M"));
        assert!(parse_memory("lots").unwrap_err().contains("not a memory size"));
        assert!(parse_memory("5X").is_err());
        assert!(parse_memory("-1G").is_err());
        for b in [512u64 << 20, 3 << 29, 1 << 30, 1234567 << 20, 4097] {
            assert_eq!(parse_memory(&format_bytes(b)).unwrap_or(Some(b)), Some(b), "{b}");
        }
        assert_eq!(format_bytes(3 << 29), "1536M");
    }

    #[test]
    fn cpu_as_a_quota_or_a_number_of_cpus() {
        assert_eq!(parse_cpu("150%", false), Ok(Some(150)));
        assert_eq!(parse_cpu("1.5", true), Ok(Some(150)));
        assert_eq!(parse_cpu("0.25", true), Ok(Some(25)));
        assert!(parse_cpu("150", false).unwrap_err().contains("percentage"));
        assert!(parse_cpu("0%", false).is_err());
        assert!(parse_cpu("two", true).unwrap_err().contains("number of CPUs"));
        assert_eq!(parse_pids("512"), Ok(Some(512)));
        assert!(parse_pids("0").is_err());
    }

    #[test]
    fn writes_go_to_v2_files_where_cgroup2_has_the_controller_else_v1() {
        let l = Limits { memory_max: Some(64 << 20), cpu_quota: Some(50), pids_max: None };
        let v1 = Places {
            memory: Some((false, "/m".into())),
            cpu: Some((false, "/c".into())),
            pids: Some((false, "/p".into())),
        };
        let w: Vec<(String, String, bool)> =
            writes(&l, &v1).into_iter().map(|(f, v, r)| (f.display().to_string(), v, r)).collect();
        assert_eq!(
            w,
            [
                ("/m/memory.limit_in_bytes".into(), "67108864".into(), true),
                ("/c/cpu.cfs_period_us".into(), "100000".into(), true),
                ("/c/cpu.cfs_quota_us".into(), "50000".into(), true),
                ("/p/pids.max".into(), "max".into(), false),
            ]
        );
        let v2 = Places {
            memory: Some((true, "/u".into())),
            cpu: Some((true, "/u".into())),
            pids: Some((true, "/u".into())),
        };
        let w: Vec<(String, String)> = writes(&Limits { cpu_quota: None, pids_max: Some(10), ..l }, &v2)
            .into_iter()
            .map(|(f, v, _)| (f.display().to_string(), v))
            .collect();
        assert_eq!(
            w,
            [
                ("/u/memory.max".into(), "67108864".into()),
                ("/u/cpu.max".into(), "max 100000".into()),
                ("/u/pids.max".into(), "10".into()),
            ]
        );
    }

    #[test]
    fn a_change_sets_and_removes_limits() {
        let l = Limits { memory_max: Some(1 << 30), cpu_quota: Some(100), pids_max: None };
        let c = Change { memory_max: Some(None), pids_max: Some(Some(64)), ..Change::default() };
        assert_eq!(l.with(&c), Limits { memory_max: None, cpu_quota: Some(100), pids_max: Some(64) });
        assert_eq!(
            Limits { memory_max: Some(512 << 20), cpu_quota: Some(150), pids_max: Some(64) }.conf_pairs(),
            [("MEMORY_MAX", "512M".to_string()), ("CPU_QUOTA", "150%".into()), ("PIDS_MAX", "64".into())]
        );
    }
}

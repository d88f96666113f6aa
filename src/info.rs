//! Everything known about one container, for `info` and `list -o`: what
//! `Summary` has, plus since when it runs, both addresses, its system, its
//! limits and the end of its console. Read from the conf, the profile, the
//! supervisor's state file and the cgroup: no Nix, no guest.

use serde::Serialize;

use crate::cgroup::{ContainerCgroup, Hierarchy};
use crate::container::{Container, State, Summary};
use crate::limits::{self, Limits};

#[derive(Debug, Clone, Serialize)]
pub struct Details {
    /// The fields of `list --json`, unchanged.
    #[serde(flatten)]
    pub summary: Summary,
    /// The container's addresses (without prefix), and the host side's.
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
    pub host_ipv4: Option<String>,
    pub host_ipv6: Option<String>,
    /// When it was started (seconds since the epoch), while it runs.
    pub started_at: Option<u64>,
    pub uptime_seconds: Option<u64>,
    /// The system store path it runs, or boots at its next start.
    pub system: Option<String>,
    /// The limits in its conf.
    pub limits: Limits,
    /// The limits its cgroup has now, while it runs.
    pub limits_in_force: Option<Limits>,
    /// Kills by the kernel's OOM killer in this run, where the host tells.
    pub oom_kills: Option<u64>,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub fn details(c: &Container, hierarchies: &[Hierarchy]) -> Details {
    let summary = c.summary(hierarchies);
    let up = summary.state == State::Up;
    let run = if up { c.run_state() } else { None };
    let cgroup = ContainerCgroup::in_hierarchies(hierarchies, &c.name);
    let system = run.as_ref().map(|r| r.system.clone()).filter(|s| !s.is_empty()).or_else(|| {
        let link = c.conf.system_path.clone().unwrap_or_else(|| c.paths.system_profile());
        std::fs::canonicalize(link).ok().map(|p| p.to_string_lossy().into_owned())
    });
    let started_at = run.as_ref().map(|r| r.started_at);
    Details {
        ipv4: c.conf.local_address.map(|a| a.addr.to_string()),
        ipv6: c.conf.local_address6.map(|a| a.addr.to_string()),
        host_ipv4: c.conf.host_address.map(|a| a.addr.to_string()),
        host_ipv6: c.conf.host_address6.map(|a| a.addr.to_string()),
        started_at,
        uptime_seconds: started_at.map(|s| now().saturating_sub(s)),
        system,
        limits: c.conf.limits,
        limits_in_force: up.then(|| limits::in_force(&cgroup)),
        oom_kills: if up { limits::oom_kills(&cgroup) } else { None },
        summary,
    }
}

/// `3d 4h`, `2h 5m`, `5m 3s`, `42s`: the two largest units.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Bytes for people, in powers of 1024 (`24.5M`).
pub fn format_size(b: u64) -> String {
    let units = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{b}B") } else { format!("{v:.1}{}", units[i]) }
}

/// Seconds since the epoch as local time, `2026-12-03 16:55:02 UTC`.
pub fn format_time(epoch: u64) -> String {
    match local_time(epoch as i64) {
        Some((time, Some(zone))) => format!("{time} {zone}"),
        Some((time, None)) => time,
        None => epoch.to_string(),
    }
}

/// Seconds since the epoch as local time, `2026-12-03 16:55:02`, with the
/// zone's name when the C library knows it.
pub fn local_time(secs: i64) -> Option<(String, Option<String>)> {
    let t = secs as libc::time_t;
    // SAFETY: tm is plain integers and a pointer; all zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r only writes the tm we pass; tm_zone points to static data.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    let zone = (!tm.tm_zone.is_null()).then(|| {
        // SAFETY: a NUL-terminated string owned by libc.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }.to_string_lossy().into_owned()
    });
    let time = format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    Some((time, zone))
}

/// The columns `list -o` knows, with their headers.
pub const COLUMNS: &[(&str, &str)] = &[
    ("name", "NAME"),
    ("state", "STATE"),
    ("address", "ADDRESS"),
    ("ipv4", "IPV4"),
    ("ipv6", "IPV6"),
    ("generation", "GENERATION"),
    ("auto-start", "AUTO-START"),
    ("processes", "PROCESSES"),
    ("memory", "MEMORY"),
    ("uptime", "UPTIME"),
    ("since", "SINCE"),
    ("memory-max", "MEMORY-MAX"),
    ("cpu-quota", "CPU-QUOTA"),
    ("pids-max", "PIDS-MAX"),
    ("system", "SYSTEM"),
];

/// The columns chosen with `list -o`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns(pub Vec<String>);

/// Parses `-o name,state,...`: known column names, at least one.
pub fn parse_columns(s: &str) -> std::result::Result<Columns, String> {
    let cols: Vec<String> = s.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect();
    if cols.is_empty() {
        return Err("no columns given".into());
    }
    for c in &cols {
        if !COLUMNS.iter().any(|(n, _)| n == c) {
            let known: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
            return Err(format!("unknown column '{c}' (known: {})", known.join(",")));
        }
    }
    Ok(Columns(cols))
}

/// One cell of `list -o`; `-` where there is no value.
pub fn cell(d: &Details, column: &str) -> String {
    let dash = || "-".to_string();
    let limits = d.limits_in_force.unwrap_or(d.limits);
    match column {
        "name" => d.summary.name.clone(),
        "state" => d.summary.state.as_str().into(),
        "address" => d.summary.address.clone().unwrap_or_else(dash),
        "ipv4" => d.ipv4.clone().unwrap_or_else(dash),
        "ipv6" => d.ipv6.clone().unwrap_or_else(dash),
        "generation" => d.summary.generation.map(|g| g.to_string()).unwrap_or_else(dash),
        "auto-start" => if d.summary.auto_start { "yes" } else { "no" }.into(),
        "processes" => d.summary.processes.map(|p| p.to_string()).unwrap_or_else(dash),
        "memory" => d.summary.memory_bytes.map(format_size).unwrap_or_else(dash),
        "uptime" => d.uptime_seconds.map(format_duration).unwrap_or_else(dash),
        "since" => d.started_at.map(format_time).unwrap_or_else(dash),
        "memory-max" => limits.memory_max.map(limits::format_bytes).unwrap_or_else(dash),
        "cpu-quota" => limits.cpu_quota.map(|c| format!("{c}%")).unwrap_or_else(dash),
        "pids-max" => limits.pids_max.map(|p| p.to_string()).unwrap_or_else(dash),
        "system" => d.system.clone().unwrap_or_else(dash),
        _ => dash(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_for_people() {
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(303), "5m 3s");
        assert_eq!(format_duration(7500), "2h 5m");
        assert_eq!(format_duration(3 * 86400 + 4 * 3600 + 5), "3d 4h");
        assert_eq!(format_size(512), "512B");
        assert_eq!(format_size(25 << 20), "25.0M");
        assert_eq!(format_size(3 << 29), "1.5G");
    }

    #[test]
    fn local_time_has_the_generations_shape() {
        let (time, _) = local_time(86_400 * 365).unwrap();
        assert_eq!(time.len(), "1971-01-01 00:00:00".len(), "{time}");
        assert!(time.starts_with("197"), "{time}");
        assert!(format_time(86_400 * 365).starts_with(&time));
    }

    #[test]
    fn columns_are_checked() {
        assert_eq!(parse_columns("name,IPv6, uptime").unwrap().0, ["name", "ipv6", "uptime"]);
        assert!(parse_columns("name,colour").unwrap_err().starts_with("unknown column 'colour' (known: name,state,"));
        assert!(parse_columns(",").is_err());
    }

    #[test]
    fn list_json_keeps_its_fields_and_adds_the_new_ones() {
        let d = Details {
            summary: Summary::example(),
            ipv4: Some("10.233.1.2".into()),
            ipv6: Some("fd6e::2".into()),
            host_ipv4: Some("10.233.1.1".into()),
            host_ipv6: None,
            started_at: Some(1000),
            uptime_seconds: Some(60),
            system: Some("/nix/store/x-system".into()),
            limits: Limits { memory_max: Some(1 << 30), cpu_quota: None, pids_max: None },
            limits_in_force: None,
            oom_kills: None,
        };
        let json = serde_json::to_string(&d).unwrap();
        assert!(
            json.starts_with(r#"{"name":"web","state":"up","address":"10.233.1.2","generation":3,"auto_start":true,"processes":5,"memory_bytes":8388608,"ipv4":"10.233.1.2","ipv6":"fd6e::2","#),
            "{json}"
        );
        assert!(json.contains(r#""limits":{"memory_max":1073741824,"cpu_quota":null,"pids_max":null}"#), "{json}");
        assert_eq!(cell(&d, "memory-max"), "1G");
        assert_eq!(cell(&d, "uptime"), "1m 0s");
        assert_eq!(cell(&d, "host"), "-");
    }
}

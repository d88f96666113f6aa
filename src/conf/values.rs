//! The conf's value types and their syntax checks (addresses, port
//! forwards, binds, capabilities, ...), shared with the CLI's flags.

use std::ffi::{OsStr, OsString};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An address with an optional prefix length, as the conf writes it
/// (`10.233.1.2` or `10.0.0.2/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrSpec<A> {
    pub addr: A,
    pub prefix: Option<u8>,
}

impl<A: FromStr + Copy> AddrSpec<A> {
    fn parse(value: &str, max_prefix: u8) -> std::result::Result<Self, String> {
        let (addr, prefix) = match value.split_once('/') {
            Some((a, p)) => {
                let p: u8 = p
                    .parse()
                    .ok()
                    .filter(|p| *p <= max_prefix)
                    .ok_or_else(|| format!("prefix length must be 0..{max_prefix}"))?;
                (a, Some(p))
            }
            None => (value, None),
        };
        let addr = addr.parse().map_err(|_| "not an IP address".to_string())?;
        Ok(AddrSpec { addr, prefix })
    }
}

impl<A: std::fmt::Display> std::fmt::Display for AddrSpec<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix {
            Some(p) => write!(f, "{}/{p}", self.addr),
            None => write!(f, "{}", self.addr),
        }
    }
}

pub type Addr4 = AddrSpec<Ipv4Addr>;
pub type Addr6 = AddrSpec<Ipv6Addr>;

pub fn parse_addr4(value: &str) -> std::result::Result<Addr4, String> {
    Addr4::parse(value, 32)
}

pub fn parse_addr6(value: &str) -> std::result::Result<Addr6, String> {
    Addr6::parse(value, 128)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The name nspawn's `--port`, the conf and nft use.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn from_name(name: &str) -> Option<Protocol> {
        [Protocol::Tcp, Protocol::Udp].into_iter().find(|p| p.name() == name)
    }
}

/// A forwarded port, in systemd-nspawn's `--port` syntax:
/// `[tcp:|udp:]HOSTPORT[:CONTAINERPORT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    pub protocol: Protocol,
    pub host: u16,
    pub container: u16,
}

impl FromStr for PortForward {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut parts: Vec<&str> = s.split(':').collect();
        let protocol = if let Some(protocol) = parts.first().and_then(|p| Protocol::from_name(p)) {
            parts.remove(0);
            protocol
        } else if let Some(p) =
            parts.first().filter(|p| parts.len() > 1 && p.starts_with(|c: char| c.is_ascii_alphabetic()))
        {
            // A word where a protocol goes: name the protocol as the problem.
            return Err(format!("'{p}' is not a protocol for port forwards: use tcp or udp"));
        } else {
            Protocol::Tcp
        };
        let port = |p: &str| -> std::result::Result<u16, String> {
            p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("'{p}' is not a port number (1-65535)"))
        };
        match parts.as_slice() {
            [host] => {
                let host = port(host)?;
                Ok(PortForward { protocol, host, container: host })
            }
            [host, container] => Ok(PortForward { protocol, host: port(host)?, container: port(container)? }),
            _ => Err("expected [tcp:|udp:]HOSTPORT[:CONTAINERPORT]".to_string()),
        }
    }
}

impl std::fmt::Display for PortForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.protocol.name(), self.host, self.container)
    }
}

/// A bind mount in systemd-nspawn's syntax `SRC[:DST[:OPTIONS]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    pub target: PathBuf,
    pub options: Option<String>,
    pub read_only: bool,
}

impl Bind {
    /// Parses `SRC[:DST[:OPTIONS]]`. Both paths must be absolute; the source
    /// may start with `+` (relative to the container root) as in nspawn.
    pub fn parse(spec: &str, read_only: bool) -> std::result::Result<Bind, String> {
        Bind::parse_bytes(spec.as_bytes(), read_only)
    }

    /// `parse` for a spec read from a conf: Linux paths are bytes, and need
    /// not be UTF-8 (a Latin-1 file name, say).
    pub fn parse_bytes(spec: &[u8], read_only: bool) -> std::result::Result<Bind, String> {
        if spec.iter().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
            return Err("bind paths must not contain whitespace".into());
        }
        // nspawn reads backslashes as escapes (`\:`); keep them out.
        if spec.contains(&b'\\') {
            return Err("bind paths must not contain '\\'".into());
        }
        let mut parts = spec.splitn(3, |c| *c == b':');
        let source = parts.next().unwrap_or_default();
        let target = parts.next().filter(|t| !t.is_empty()).unwrap_or(source);
        let options = parts
            .next()
            .map(|o| String::from_utf8(o.to_vec()).map_err(|_| "bind options must be UTF-8".to_string()))
            .transpose()?;
        let show = |p: &[u8]| String::from_utf8_lossy(p).into_owned();
        if !(source.starts_with(b"/") || source.starts_with(b"+/")) {
            return Err(format!("source '{}' must be an absolute path", show(source)));
        }
        if !target.starts_with(b"/") {
            return Err(format!("target '{}' must be an absolute path", show(target)));
        }
        let dotdot = |p: &[u8]| p.split(|c| *c == b'/').any(|c| c == b"..");
        if dotdot(target) || dotdot(source) {
            return Err("bind paths must not contain '..'".into());
        }
        let path = |p: &[u8]| PathBuf::from(OsStr::from_bytes(p));
        Ok(Bind { source: path(source), target: path(target), options, read_only })
    }

    /// Checks the OPTIONS of a bind against those systemd-nspawn knows, so
    /// that a typo fails at create, not at every start.
    pub fn check_options(&self) -> std::result::Result<(), String> {
        const KNOWN: &[&str] = &["rbind", "norbind", "idmap", "noidmap", "rootidmap", "owneridmap"];
        for o in self.options.iter().flat_map(|o| o.split(',')) {
            if !KNOWN.contains(&o) {
                return Err(format!("unknown bind option '{o}' (systemd-nspawn knows {})", KNOWN.join(", ")));
            }
        }
        Ok(())
    }

    /// The nspawn flag for this bind.
    pub fn nspawn_flag(&self) -> OsString {
        let mut flag = OsString::from(if self.read_only { "--bind-ro=" } else { "--bind=" });
        flag.push(self.spec());
        flag
    }

    pub(super) fn spec(&self) -> OsString {
        let mut s = self.source.as_os_str().to_os_string();
        s.push(":");
        s.push(&self.target);
        if let Some(o) = &self.options {
            s.push(":");
            s.push(o);
        }
        s
    }
}

/// A unicast MAC address, `xx:xx:xx:xx:xx:xx`.
pub fn validate_mac(mac: &str) -> std::result::Result<[u8; 6], String> {
    let bad = || "not a MAC address (e.g. 02:00:00:00:00:01)".to_string();
    let parts: Vec<&str> = mac.split(':').collect();
    if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
        return Err(bad());
    }
    let mut out = [0u8; 6];
    for (o, p) in out.iter_mut().zip(&parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if out[0] & 1 == 1 {
        return Err("a multicast address cannot name an interface".into());
    }
    if out == [0; 6] {
        return Err(bad());
    }
    Ok(out)
}

/// The capabilities Linux knows, as systemd-nspawn names them.
const CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// A capability name (`CAP_NET_ADMIN`; `net_admin` is accepted and normalised).
pub fn validate_capability(name: &str) -> std::result::Result<String, String> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    if CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err("not a Linux capability (e.g. CAP_NET_ADMIN, CAP_SYS_TIME)".into())
    }
}

/// A --system-call-filter token: `name`, `@group`, or either prefixed by `~`
/// to deny it.
pub fn validate_syscall_filter(token: &str) -> std::result::Result<String, String> {
    let body = token.strip_prefix('~').unwrap_or(token);
    let (group, body) = match body.strip_prefix('@') {
        Some(b) => (true, b),
        None => (false, body),
    };
    // Group names have dashes (@system-service); system calls do not.
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (group && c == '-');
    if body.starts_with(|c: char| c.is_ascii_lowercase()) && body.chars().all(valid_char) {
        Ok(token.to_string())
    } else {
        Err("expected a system call or @group, optionally prefixed with ~ (e.g. @clock, ~chroot)".into())
    }
}

/// A device node path under /dev.
/// Normalised (`/dev//fuse` and `/dev/./fuse` are `/dev/fuse`), as systemd's
/// `DeviceAllow=` requires; no whitespace, `:` or control characters,
/// which neither `DeviceAllow=` nor nspawn's `--bind=SRC:DST` can carry.
pub fn validate_device_path(path: &str) -> std::result::Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.starts_with("/dev/") || p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err("devices are paths under /dev (e.g. /dev/fuse)".into());
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control() || c == ':') {
        return Err("a device path cannot hold spaces, ':' or control characters".into());
    }
    Ok(p.components().collect())
}

/// PRIVATE_USERS as systemd-nspawn takes it: no, yes, pick, identity, or a UID base.
pub fn validate_private_users(v: &str) -> std::result::Result<(), String> {
    let ok = matches!(v, "no" | "yes" | "pick" | "identity" | "0" | "1")
        || v.split(':').all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    if ok { Ok(()) } else { Err("expected no, yes, pick, identity or a UID base".into()) }
}

/// Whether the guest's root is a user other than host root: a user
/// namespace that maps its uid 0 elsewhere (`identity`, or a base of 0,
/// keeps it host root).
pub fn guest_root_is_unprivileged(private_users: Option<&str>) -> bool {
    match private_users {
        None | Some("no" | "0" | "identity" | "false") => false,
        Some("yes" | "pick" | "1" | "true") => true,
        Some(base) => base.split(':').next().and_then(|b| b.parse::<u64>().ok()).is_some_and(|b| b != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_paths_are_normalised_for_device_allow() {
        for (given, want) in [("/dev/fuse", "/dev/fuse"), ("/dev//fuse", "/dev/fuse"), ("/dev/./dri/", "/dev/dri")] {
            assert_eq!(validate_device_path(given).unwrap(), Path::new(want), "{given}");
        }
        for bad in ["/etc/passwd", "/dev/../etc/shadow", "dev/fuse", "/dev/a b", "/dev/fuse:/dev/x", "/dev/a\u{7}"] {
            assert!(validate_device_path(bad).is_err(), "{bad}");
        }
    }
}

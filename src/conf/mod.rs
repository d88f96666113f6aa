//! The container's conf file, `/etc/nixos-containers/NAME.conf`.
//!
//! The format is the anchor's: shell-style `KEY=VALUE` lines that systemd can
//! also read as an `EnvironmentFile`. Files written by nixpkgs (imperative or
//! declarative containers) must load; keys we do not know are kept when we
//! rewrite the file, so nothing a user or another tool wrote is lost.
//!
//! `format` is the file's syntax, `values` the value types and their
//! checks; here are the key table (`KEYS`) and `Conf`, which reads and
//! writes the keys.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::net::names;

mod format;
mod values;

pub use format::parse_pairs;
use format::{quote, shorten, valid_key};
pub use values::*;

/// The parsed conf file. Unknown keys are kept in `extra`, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conf {
    pub private_network: bool,
    pub host_address: Option<Addr4>,
    pub local_address: Option<Addr4>,
    pub host_address6: Option<Addr6>,
    pub local_address6: Option<Addr6>,
    pub host_bridge: Option<String>,
    pub host_port: Vec<PortForward>,
    pub auto_start: bool,
    /// `REF#ATTR` as given; the attr defaults to `container`.
    pub flake: Option<String>,
    /// The NixOS expression builds use (default `<nixpkgs/nixos>`).
    pub nixos_path: Option<String>,
    /// A fixed system path (declarative containers): used instead of the profile.
    pub system_path: Option<PathBuf>,
    pub binds: Vec<Bind>,
    /// Extra systemd-nspawn flags, split on whitespace as the anchor's
    /// service does.
    pub extra_nspawn_flags: Vec<String>,
    pub private_users: Option<String>,
    /// `NIX_DAEMON=1`: give the guest the host's Nix daemon socket even
    /// though its root is host root (a trusted Nix user). See
    /// `nix_daemon_in_guest`.
    pub nix_daemon: bool,
    /// Capabilities on top of nspawn's default set.
    pub capabilities: Vec<String>,
    /// systemd-nspawn --system-call-filter tokens (`name`, `@group`, `~deny`).
    pub system_call_filter: Vec<String>,
    /// Device nodes made available in the container (e.g. /dev/fuse).
    pub devices: Vec<PathBuf>,
    pub network_namespace_path: Option<PathBuf>,
    pub interfaces: Vec<String>,
    pub macvlans: Vec<String>,
    /// MEMORY_MAX, CPU_QUOTA, PIDS_MAX (see `limits`).
    pub limits: crate::limits::Limits,
    /// `system.stateVersion` of the configuration.nix create writes: the
    /// NixOS release the container was created with, kept for updates.
    pub state_version: Option<String>,
    /// The MAC address of the container's side of the veth pair (nixpkgs'
    /// declarative `localMacAddress`).
    pub local_mac_address: Option<String>,
    /// Copy the host's /etc/resolv.conf into the container at start.
    pub copy_resolv_conf: bool,
    /// HOST_ADDRESS/LOCAL_ADDRESS held the IPv6 addresses (as nixpkgs
    /// writes them for an IPv6-only container): written back there.
    pub ipv6_in_address_keys: bool,
    /// Keys we do not know, with their values as read (bytes: not
    /// necessarily UTF-8).
    pub extra: Vec<(String, OsString)>,
}

/// What the tool knows about one conf key.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    /// A running container was started with its value: the nspawn command
    /// line or the network setup depend on it, so a change takes effect
    /// only when the container is restarted.
    pub restart: bool,
    /// The value is a path or a list of paths: bytes, not necessarily UTF-8.
    pub bytes: bool,
    /// No other container may have the same value (addresses, host ports):
    /// create reads these keys, and only these, from every other conf.
    pub reserved: bool,
}

const fn key(name: &'static str, restart: bool, bytes: bool) -> Key {
    Key { name, restart, bytes, reserved: false }
}

impl Key {
    const fn reserved(self) -> Key {
        Key { reserved: true, ..self }
    }
}

/// Every key this tool reads, in the order `render` writes them (the
/// anchor's keys first, in the anchor's order, then ours). Other keys are
/// kept as they are. `Conf::from_pairs` and `Conf::pairs` handle each of
/// these; the tests check both against this table.
pub const KEYS: &[Key] = &[
    key("PRIVATE_NETWORK", true, false),
    key("HOST_ADDRESS", true, false).reserved(),
    key("LOCAL_ADDRESS", true, false).reserved(),
    key("HOST_ADDRESS6", true, false).reserved(),
    key("LOCAL_ADDRESS6", true, false).reserved(),
    key("HOST_BRIDGE", true, false),
    key("HOST_PORT", true, false).reserved(),
    key("AUTO_START", false, false),
    key("FLAKE", false, false),
    key("NIXOS_PATH", false, false),
    key("SYSTEM_PATH", false, true),
    key("BINDS", true, true),
    key("BINDS_RO", true, true),
    key("EXTRA_NSPAWN_FLAGS", true, false),
    key("PRIVATE_USERS", true, false),
    key("NIX_DAEMON", true, false),
    key("CAPABILITIES", true, false),
    key("SYSTEM_CALL_FILTER", true, false),
    key("DEVICES", true, false),
    key("NETWORK_NAMESPACE_PATH", true, true),
    key("INTERFACES", true, false),
    key("MACVLANS", true, false),
    key("LOCAL_MAC_ADDRESS", true, false),
    key("COPY_RESOLV_CONF", true, false),
    key("STATE_VERSION", false, false),
    // Limits are applied to the running container's cgroup (`set-limits`).
    key("MEMORY_MAX", false, false),
    key("CPU_QUOTA", false, false),
    key("PIDS_MAX", false, false),
];

fn known(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.name == name)
}

/// The keys whose values no two containers may share.
pub fn reserved_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().filter(|k| k.reserved).map(|k| k.name)
}

/// The keys whose values a running container was started with.
pub fn restart_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().filter(|k| k.restart).map(|k| k.name)
}

impl Conf {
    /// The host's Nix daemon socket goes into the guest only where guest
    /// root cannot be a trusted Nix user (its uid is not host root's), or
    /// where the admin asked for it (NIX_DAEMON=1, `create --nix-daemon`):
    /// the daemon trusts root, who may then add unsigned paths to the
    /// host's store.
    pub fn nix_daemon_in_guest(&self) -> bool {
        self.nix_daemon || guest_root_is_unprivileged(self.private_users.as_deref())
    }
}

fn parse_bool(key: &str, value: &str) -> std::result::Result<bool, String> {
    match value {
        "1" | "yes" | "true" => Ok(true),
        "0" | "no" | "false" | "" => Ok(false),
        _ => Err(format!("{key} must be 0 or 1, found '{}'", shorten(value))),
    }
}

/// A path key's value: empty, or an absolute path (nspawn and Nix would
/// read a relative one from wherever the command happens to run).
fn absolute_path(key: &str, value: &OsStr) -> std::result::Result<Option<PathBuf>, String> {
    if value.is_empty() {
        return Ok(None);
    }
    if !value.as_bytes().starts_with(b"/") {
        return Err(format!("{key}='{}': must be an absolute path", shorten(&value.to_string_lossy())));
    }
    Ok(Some(PathBuf::from(value)))
}

/// A value without control characters: Unicode's in text, ASCII's in a
/// value that is not UTF-8 (a path's bytes).
fn control_free(key: &str, value: &OsStr) -> std::result::Result<(), String> {
    let found = match value.to_str() {
        Some(v) => v.chars().find(|c| c.is_control()),
        None => value.as_bytes().iter().find(|b| b.is_ascii_control()).map(|b| char::from(*b)),
    };
    match found {
        Some(c) => Err(format!("{key} contains the control character {c:?}; remove it")),
        None => Ok(()),
    }
}

fn words(value: &str) -> impl Iterator<Item = &str> {
    value.split_whitespace()
}

impl Conf {
    /// Interprets parsed pairs. Later keys win, as in a shell.
    pub fn from_pairs(pairs: Vec<(String, OsString)>) -> std::result::Result<(Conf, Vec<String>), String> {
        let mut conf = Conf::default();
        let mut warnings = Vec::new();
        let nonempty = |v: &str| (!v.is_empty()).then(|| v.to_string());
        // IPv6 addresses nixpkgs writes into HOST_ADDRESS/LOCAL_ADDRESS.
        let (mut host6_in_v4_key, mut local6_in_v4_key) = (None, None);
        for (key, value) in pairs {
            if !valid_key(&key) {
                return Err(format!("'{}' is not a valid key", shorten(&key)));
            }
            // Every value reaches a command line, Nix, nft or a file read
            // line by line; none of them has a use for control characters.
            control_free(&key, &value)?;
            // A key outside the table is kept as it is.
            let Some(spec) = known(&key) else {
                warnings.push(format!("unknown key {key} ignored"));
                conf.extra.retain(|(k, _)| *k != key);
                conf.extra.push((key, value));
                continue;
            };
            // Paths are bytes; every other value we read is text.
            let v = match value.to_str() {
                Some(v) => v,
                None if spec.bytes => "",
                None => return Err(format!("{key} is not UTF-8 text ('{}')", shorten(&value.to_string_lossy()))),
            };
            match key.as_str() {
                "PRIVATE_NETWORK" => conf.private_network = parse_bool(&key, v)?,
                "AUTO_START" => conf.auto_start = parse_bool(&key, v)?,
                "NIX_DAEMON" => conf.nix_daemon = parse_bool(&key, v)?,
                "HOST_ADDRESS" | "LOCAL_ADDRESS" => {
                    let (mut a4, mut a6) = (None, None);
                    if !v.is_empty() {
                        match parse_addr4(v) {
                            Ok(a) => a4 = Some(a),
                            // nixpkgs puts an IPv6-only container's addresses here.
                            Err(e) => a6 = Some(parse_addr6(v).map_err(|_| format!("{key}='{}': {e}", shorten(v)))?),
                        }
                    }
                    if key == "HOST_ADDRESS" {
                        (conf.host_address, host6_in_v4_key) = (a4, a6);
                    } else {
                        (conf.local_address, local6_in_v4_key) = (a4, a6);
                    }
                }
                "HOST_ADDRESS6" | "LOCAL_ADDRESS6" => {
                    let a = if v.is_empty() {
                        None
                    } else {
                        Some(parse_addr6(v).map_err(|e| format!("{key}='{}': {e}", shorten(v)))?)
                    };
                    if key == "HOST_ADDRESS6" { conf.host_address6 = a } else { conf.local_address6 = a }
                }
                "HOST_BRIDGE" => {
                    conf.host_bridge = nonempty(v);
                    if let Some(b) = &conf.host_bridge {
                        names::validate_ifname(b).map_err(|e| format!("HOST_BRIDGE='{}': {e}", shorten(b)))?;
                    }
                }
                "HOST_PORT" => {
                    conf.host_port = v
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(|s| s.parse().map_err(|e| format!("HOST_PORT entry '{}': {e}", shorten(s))))
                        .collect::<std::result::Result<_, _>>()?
                }
                "FLAKE" => conf.flake = nonempty(v),
                "NIXOS_PATH" => conf.nixos_path = nonempty(v),
                "SYSTEM_PATH" => conf.system_path = absolute_path(&key, &value)?,
                "BINDS" | "BINDS_RO" => {
                    let ro = key == "BINDS_RO";
                    conf.binds.retain(|b| b.read_only != ro);
                    for spec in value.as_bytes().split(u8::is_ascii_whitespace).filter(|w| !w.is_empty()) {
                        conf.binds.push(
                            Bind::parse_bytes(spec, ro).map_err(|e| {
                                format!("{key} entry '{}': {e}", shorten(&String::from_utf8_lossy(spec)))
                            })?,
                        );
                    }
                }
                "EXTRA_NSPAWN_FLAGS" => conf.extra_nspawn_flags = words(v).map(str::to_string).collect(),
                "PRIVATE_USERS" => {
                    conf.private_users = nonempty(v);
                    if let Some(p) = &conf.private_users {
                        validate_private_users(p).map_err(|e| format!("PRIVATE_USERS='{}': {e}", shorten(p)))?;
                    }
                }
                "CAPABILITIES" => {
                    conf.capabilities = words(v)
                        .map(|c| {
                            validate_capability(c).map_err(|e| format!("CAPABILITIES entry '{}': {e}", shorten(c)))
                        })
                        .collect::<std::result::Result<_, _>>()?
                }
                "SYSTEM_CALL_FILTER" => {
                    conf.system_call_filter = words(v)
                        .map(|t| {
                            validate_syscall_filter(t)
                                .map_err(|e| format!("SYSTEM_CALL_FILTER entry '{}': {e}", shorten(t)))
                        })
                        .collect::<std::result::Result<_, _>>()?
                }
                "DEVICES" => {
                    conf.devices = words(v)
                        .map(|d| validate_device_path(d).map_err(|e| format!("DEVICES entry '{}': {e}", shorten(d))))
                        .collect::<std::result::Result<_, _>>()?
                }
                "NETWORK_NAMESPACE_PATH" => conf.network_namespace_path = absolute_path(&key, &value)?,
                "INTERFACES" | "MACVLANS" => {
                    let list = words(v)
                        .map(|i| {
                            names::validate_ifname(i).map_err(|e| format!("{key} entry '{}': {e}", shorten(i)))?;
                            Ok(i.to_string())
                        })
                        .collect::<std::result::Result<_, String>>()?;
                    if key == "INTERFACES" { conf.interfaces = list } else { conf.macvlans = list }
                }
                "MEMORY_MAX" => {
                    conf.limits.memory_max = crate::limits::parse_memory(v).map_err(|e| format!("MEMORY_MAX: {e}"))?
                }
                "CPU_QUOTA" => {
                    conf.limits.cpu_quota = crate::limits::parse_cpu(v, false).map_err(|e| format!("CPU_QUOTA: {e}"))?
                }
                "PIDS_MAX" => {
                    conf.limits.pids_max = crate::limits::parse_pids(v).map_err(|e| format!("PIDS_MAX: {e}"))?
                }
                "STATE_VERSION" => {
                    conf.state_version = nonempty(v);
                    if !conf.state_version.as_deref().is_none_or(crate::profile::is_release) {
                        return Err(format!("STATE_VERSION='{}': not a NixOS release (e.g. 20.09)", shorten(v)));
                    }
                }
                "COPY_RESOLV_CONF" => conf.copy_resolv_conf = parse_bool(&key, v)?,
                "LOCAL_MAC_ADDRESS" => {
                    conf.local_mac_address = nonempty(v);
                    if let Some(m) = &conf.local_mac_address {
                        validate_mac(m).map_err(|e| format!("LOCAL_MAC_ADDRESS='{}': {e}", shorten(m)))?;
                    }
                }
                // The test `every_key_of_the_table_is_read_and_written_in_its_order`
                // keeps the table and these arms together.
                _ => return Err(format!("{key}: in the key table but not read (a bug)")),
            }
        }
        let ipv6_in = |key: &str, in_v4_key: Option<Addr6>, own: &mut Option<Addr6>| match (in_v4_key, *own) {
            (Some(a), Some(b)) if a != b => {
                Err(format!("{key} holds {a} and {key}6 holds {b}: give the IPv6 address once"))
            }
            (Some(a), _) => {
                *own = Some(a);
                Ok(true)
            }
            (None, _) => Ok(false),
        };
        let host6 = ipv6_in("HOST_ADDRESS", host6_in_v4_key, &mut conf.host_address6)?;
        let local6 = ipv6_in("LOCAL_ADDRESS", local6_in_v4_key, &mut conf.local_address6)?;
        if host6 || local6 {
            if conf.host_address.is_some() || conf.local_address.is_some() {
                return Err(
                    "HOST_ADDRESS and LOCAL_ADDRESS hold one IPv4 and one IPv6 address: give both of one kind \
                            (IPv6 may also go into HOST_ADDRESS6 and LOCAL_ADDRESS6)"
                        .into(),
                );
            }
            conf.ipv6_in_address_keys = true;
        }
        // BINDS before BINDS_RO, as written (the two keys have no order
        // between them; nspawn mounts in this order).
        conf.binds.sort_by_key(|b| b.read_only);
        if conf.host_address.is_some() != conf.local_address.is_some() && conf.host_bridge.is_none() {
            warnings.push("HOST_ADDRESS and LOCAL_ADDRESS should be set together".into());
        }
        Ok((conf, warnings))
    }

    /// Parses the text of a conf file; `path` only names the file in errors.
    pub fn parse(text: &[u8], path: &Path) -> Result<(Conf, Vec<String>)> {
        let pairs = parse_pairs(text).map_err(|(line, message)| Error::ConfSyntax {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        Conf::from_pairs(pairs).map_err(|message| Error::ConfValue { path: path.to_path_buf(), message })
    }

    pub fn load(path: &Path) -> Result<Conf> {
        let text = std::fs::read(path).context(|| format!("reading {}", path.display()))?;
        let (conf, warnings) = Conf::parse(&text, path)?;
        for w in warnings {
            tracing::warn!("{}: {w}", path.display());
        }
        Ok(conf)
    }

    /// Whether the container gets a network of ours (a namespace and a veth
    /// pair), rather than the host's or a namespace named in the conf.
    pub fn has_own_network(&self) -> bool {
        self.private_network && self.network_namespace_path.is_none()
    }

    /// The values of the `restart_keys` as the conf renders them (absent
    /// keys as empty), to record what a container was started with.
    pub fn launch_settings(&self) -> BTreeMap<String, String> {
        let pairs = self.pairs();
        restart_keys()
            .map(|k| {
                let v = pairs.iter().find(|(pk, _)| *pk == k).map(|(_, v)| v.to_string_lossy().into_owned());
                (k.to_string(), v.unwrap_or_default())
            })
            .collect()
    }

    /// Writes the conf atomically (temporary file, fsync, rename). A conf
    /// that would not read back as it is (a control character, a bad key
    /// or interface name) is refused and the file left as it was.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.check_writable().map_err(|message| Error::ConfValue {
            path: path.to_path_buf(),
            message: format!("not written: {message}"),
        })?;
        fsutil::write_atomic(path, &self.render(), 0o644)
    }

    /// Whether `render` gives a file that `parse` reads back as this conf.
    pub fn check_writable(&self) -> std::result::Result<(), String> {
        let known = self.pairs().into_iter().map(|(k, v)| (k.to_string(), v));
        for (key, value) in known.chain(self.extra.iter().cloned()) {
            if !valid_key(&key) {
                return Err(format!("'{}' is not a valid key", shorten(&key)));
            }
            control_free(&key, &value)?;
        }
        if let Some(b) = &self.host_bridge {
            names::validate_ifname(b).map_err(|e| format!("HOST_BRIDGE='{}': {e}", shorten(b)))?;
        }
        Ok(())
    }

    /// The file's text: the anchor's keys in the anchor's order, then ours,
    /// then unknown keys as they were.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let known = self.pairs().into_iter().map(|(k, v)| (k.to_string(), v));
        for (key, value) in known.chain(self.extra.iter().cloned()) {
            out.extend_from_slice(key.as_bytes());
            out.push(b'=');
            out.extend(quote(value.as_bytes()));
            out.push(b'\n');
        }
        out
    }

    /// The known keys with their values, in the order of `KEYS`; optional
    /// keys only when set.
    fn pairs(&self) -> Vec<(&'static str, OsString)> {
        let mut out: Vec<(&'static str, OsString)> = Vec::new();
        let mut put = |key: &'static str, value: OsString| out.push((key, value));
        let addr4 = |a: &Option<Addr4>| OsString::from(a.map(|a| a.to_string()).unwrap_or_default());
        let addr6 = |a: &Option<Addr6>| OsString::from(a.map(|a| a.to_string()).unwrap_or_default());
        let flag = |b: bool| OsString::from(if b { "1" } else { "0" });
        let joined = |l: &[String]| (!l.is_empty()).then(|| OsString::from(l.join(" ")));
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.as_os_str().to_os_string());
        let text = |t: &Option<String>| t.as_ref().map(OsString::from);
        put("PRIVATE_NETWORK", flag(self.private_network));
        if self.ipv6_in_address_keys {
            // Where nixpkgs put them, for an IPv6-only container.
            put("HOST_ADDRESS", addr6(&self.host_address6));
            put("LOCAL_ADDRESS", addr6(&self.local_address6));
        } else {
            put("HOST_ADDRESS", addr4(&self.host_address));
            put("LOCAL_ADDRESS", addr4(&self.local_address));
            if self.host_address6.is_some() || self.local_address6.is_some() {
                put("HOST_ADDRESS6", addr6(&self.host_address6));
                put("LOCAL_ADDRESS6", addr6(&self.local_address6));
            }
        }
        put("HOST_BRIDGE", self.host_bridge.clone().unwrap_or_default().into());
        put("HOST_PORT", self.host_port.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(",").into());
        put("AUTO_START", flag(self.auto_start));
        let binds = |ro: bool| {
            let specs: Vec<OsString> = self.binds.iter().filter(|b| b.read_only == ro).map(Bind::spec).collect();
            (!specs.is_empty()).then(|| specs.join(OsStr::new(" ")))
        };
        let devices: Vec<String> = self.devices.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        let optional = [
            ("FLAKE", text(&self.flake)),
            ("NIXOS_PATH", text(&self.nixos_path)),
            ("SYSTEM_PATH", path(&self.system_path)),
            ("BINDS", binds(false)),
            ("BINDS_RO", binds(true)),
            ("EXTRA_NSPAWN_FLAGS", joined(&self.extra_nspawn_flags)),
            ("PRIVATE_USERS", text(&self.private_users)),
            ("NIX_DAEMON", self.nix_daemon.then(|| flag(true))),
            ("CAPABILITIES", joined(&self.capabilities)),
            ("SYSTEM_CALL_FILTER", joined(&self.system_call_filter)),
            ("DEVICES", joined(&devices)),
            ("NETWORK_NAMESPACE_PATH", path(&self.network_namespace_path)),
            ("INTERFACES", joined(&self.interfaces)),
            ("MACVLANS", joined(&self.macvlans)),
            ("LOCAL_MAC_ADDRESS", text(&self.local_mac_address)),
            ("COPY_RESOLV_CONF", self.copy_resolv_conf.then(|| flag(true))),
            ("STATE_VERSION", text(&self.state_version)),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                put(key, v);
            }
        }
        for (key, value) in self.limits.conf_pairs() {
            put(key, value.into());
        }
        // The file's order is the table's (a stable sort: the order above
        // only has to put each key somewhere).
        out.sort_by_key(|(key, _)| KEYS.iter().position(|k| k.name == *key));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_bytes(text: &[u8]) -> Result<Conf> {
        Conf::parse(text, Path::new("/etc/nixos-containers/t.conf")).map(|(c, _)| c)
    }

    fn parse(text: &str) -> Result<Conf> {
        Conf::parse(text.as_bytes(), Path::new("/etc/nixos-containers/t.conf")).map(|(c, _)| c)
    }

    #[test]
    fn reads_a_conf_written_by_nixpkgs_create() {
        let text = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
        let c = parse(text).unwrap();
        assert!(c.private_network);
        assert_eq!(c.host_address.unwrap().to_string(), "10.233.1.1");
        assert_eq!(c.local_address.unwrap().to_string(), "10.233.1.2");
        assert_eq!(c.host_bridge, None);
        assert!(c.host_port.is_empty());
        assert!(!c.auto_start);
        assert_eq!(c.render(), text.as_bytes());
    }

    #[test]
    fn reads_a_declarative_conf() {
        let text = r#"SYSTEM_PATH=/nix/store/abc-nixos-system
PRIVATE_NETWORK=1
HOST_ADDRESS=10.0.0.1
LOCAL_ADDRESS=10.0.0.2/24
HOST_ADDRESS6=fc00::1
LOCAL_ADDRESS6=fc00::2/64
HOST_PORT="tcp:8080:80,udp:53"
INTERFACES=""
MACVLANS="mv1 mv2"
AUTO_START=1
EXTRA_NSPAWN_FLAGS="--bind=/data:/data --capability=CAP_NET_ADMIN"
PRIVATE_USERS=no
COPY_RESOLV_CONF=1
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.system_path.as_deref(), Some(Path::new("/nix/store/abc-nixos-system")));
        assert_eq!(c.local_address.unwrap().prefix, Some(24));
        assert_eq!(c.local_address6.unwrap().to_string(), "fc00::2/64");
        assert_eq!(
            c.host_port,
            vec![
                PortForward { protocol: Protocol::Tcp, host: 8080, container: 80 },
                PortForward { protocol: Protocol::Udp, host: 53, container: 53 },
            ]
        );
        assert_eq!(c.macvlans, ["mv1", "mv2"]);
        assert_eq!(c.extra_nspawn_flags, ["--bind=/data:/data", "--capability=CAP_NET_ADMIN"]);
        assert_eq!(c.private_users.as_deref(), Some("no"));
        assert!(c.copy_resolv_conf);
        assert!(c.extra.is_empty());
        assert!(c.auto_start);
    }

    #[test]
    fn keeps_unknown_keys_and_round_trips() {
        let mut c = parse("PRIVATE_NETWORK=1\nMY_NOTE=\"keep me\"\n").unwrap();
        c.binds.push(Bind::parse("/srv/data:/data", false).unwrap());
        c.binds.push(Bind::parse("/etc/ssl", true).unwrap());
        c.flake = Some("/src/flake#web".into());
        let again = parse_bytes(&c.render()).unwrap();
        assert_eq!(again, c);
        assert!(String::from_utf8(c.render()).unwrap().contains("MY_NOTE=\"keep me\"\n"));
    }

    #[test]
    fn renders_the_anchors_keys_first_then_ours_then_unknown_ones() {
        let text = "MY_NOTE=x\nMACVLANS=eth1\nBINDS_RO=/etc/ssl:/etc/ssl\nFLAKE=/f#web\nAUTO_START=1\n\
                    PRIVATE_NETWORK=1\nLOCAL_ADDRESS=10.233.1.2\nHOST_ADDRESS=10.233.1.1\nBINDS=/srv:/data\n\
                    HOST_PORT=8080:80\nCAPABILITIES=CAP_NET_ADMIN\n";
        assert_eq!(
            String::from_utf8(parse(text).unwrap().render()).unwrap(),
            "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nHOST_BRIDGE=\nHOST_PORT=tcp:8080:80\n\
             AUTO_START=1\nFLAKE=/f#web\nBINDS=/srv:/data\nBINDS_RO=/etc/ssl:/etc/ssl\nCAPABILITIES=CAP_NET_ADMIN\n\
             MACVLANS=eth1\nMY_NOTE=x\n"
        );
    }

    /// The table is the one list of keys: every key in it is read (no
    /// "unknown key" warning) and written back, in the table's order.
    #[test]
    fn every_key_of_the_table_is_read_and_written_in_its_order() {
        let value = |name: &str| match name {
            "PRIVATE_NETWORK" | "AUTO_START" | "NIX_DAEMON" | "COPY_RESOLV_CONF" => "1",
            "HOST_ADDRESS" => "10.233.1.1",
            "LOCAL_ADDRESS" => "10.233.1.2",
            "HOST_ADDRESS6" => "fc00::1",
            "LOCAL_ADDRESS6" => "fc00::2",
            "HOST_BRIDGE" => "br0",
            "HOST_PORT" => "tcp:8080:80",
            "FLAKE" => "/f#web",
            "NIXOS_PATH" => "/n",
            "SYSTEM_PATH" | "NETWORK_NAMESPACE_PATH" => "/p",
            "BINDS" | "BINDS_RO" => "/srv:/data",
            "EXTRA_NSPAWN_FLAGS" => "--quiet",
            "PRIVATE_USERS" => "pick",
            "CAPABILITIES" => "CAP_NET_ADMIN",
            "SYSTEM_CALL_FILTER" => "@mount",
            "DEVICES" => "/dev/fuse",
            "INTERFACES" | "MACVLANS" => "eth1",
            "LOCAL_MAC_ADDRESS" => "02:00:00:00:00:01",
            "STATE_VERSION" => "24.05",
            "MEMORY_MAX" => "512M",
            "CPU_QUOTA" => "150%",
            "PIDS_MAX" => "64",
            other => panic!("no test value for {other}: add one"),
        };
        // Written in reverse, to see the writer put them in order.
        let text: String = KEYS.iter().rev().map(|k| format!("{}={}\n", k.name, value(k.name))).collect();
        let (conf, warnings) = Conf::from_pairs(parse_pairs(text.as_bytes()).unwrap()).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        let written: Vec<String> = conf.pairs().into_iter().map(|(k, _)| k.to_string()).collect();
        assert_eq!(written, KEYS.iter().map(|k| k.name).collect::<Vec<_>>());
        for (key, v) in conf.pairs() {
            assert_eq!(v.to_str().unwrap(), value(key), "{key}");
        }
    }

    #[test]
    fn binds_round_trip_whatever_the_key_order() {
        // Found by the fuzzer: BINDS_RO written before BINDS.
        let c = parse("BINDS_RO=/a\nBINDS=/b\n").unwrap();
        assert_eq!(parse_bytes(&c.render()).unwrap(), c);
        assert!(!c.binds[0].read_only && c.binds[1].read_only);
    }

    #[test]
    fn quoting_survives_special_characters() {
        let mut c = Conf::default();
        c.extra.push(("X".into(), "a \"b\" $c `d` \\e 'f'".into()));
        c.extra.push(("TRAILING".into(), "space ".into()));
        let again = parse_bytes(&c.render()).unwrap();
        assert_eq!(again.extra, c.extra);
        // As sh reads it: quoted whitespace is part of the value.
        assert_eq!(
            parse("X=\"a \"\nY='b  '\n").unwrap().extra,
            [("X".into(), OsString::from("a ")), ("Y".into(), OsString::from("b  "))]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("PRIVATE_NETWORK=1\nthis is garbage\n").unwrap_err().to_string();
        assert_eq!(err, "/etc/nixos-containers/t.conf:2: expected KEY=VALUE, found 'this is garbage'");
        let err = parse("HOST_ADDRESS=10.1.2\n").unwrap_err().to_string();
        assert!(err.contains("HOST_ADDRESS='10.1.2': not an IP address"), "{err}");
        let err = parse("AUTO_START=maybe\n").unwrap_err().to_string();
        assert!(err.contains("AUTO_START must be 0 or 1"), "{err}");
        let err = parse("X=\"open\n").unwrap_err().to_string();
        assert!(err.contains(":1: unterminated double quote"), "{err}");
        let err = parse("HOST_PORT=tcp:99999\n").unwrap_err().to_string();
        assert!(err.contains("not a port number"), "{err}");
    }

    #[test]
    fn the_state_version_round_trips_and_is_checked() {
        let c = parse("PRIVATE_NETWORK=1\nSTATE_VERSION=20.09\n").unwrap();
        assert_eq!(c.state_version.as_deref(), Some("20.09"));
        assert_eq!(parse_bytes(&c.render()).unwrap(), c);
        assert!(parse("STATE_VERSION='1\"; x = \"'\n").unwrap_err().to_string().contains("not a NixOS release"));
    }

    #[test]
    fn values_are_bytes_and_need_not_be_utf8() {
        use std::os::unix::ffi::OsStrExt;
        let text = b"PRIVATE_NETWORK=1\nBINDS=\"/srv/caf\xe9:/data /a\"\nNOTE=\"caf\xe9 \xff\"\n# comment \xfe\n";
        let c = parse_bytes(text).unwrap();
        assert_eq!(c.binds[0].source.as_os_str().as_bytes(), b"/srv/caf\xe9");
        assert_eq!(c.extra[0].1.as_bytes(), b"caf\xe9 \xff");
        assert_eq!(parse_bytes(&c.render()).unwrap(), c);
        // Text values must be text, and say which key is not.
        let err = parse_bytes(b"HOST_BRIDGE=br\xe9\n").unwrap_err().to_string();
        assert!(err.contains("HOST_BRIDGE is not UTF-8 text"), "{err}");
    }

    #[test]
    fn ipv6_in_the_address_keys_as_nixpkgs_writes_it() {
        let text = "PRIVATE_NETWORK=1\nHOST_ADDRESS=fc00::1\nLOCAL_ADDRESS=fc00::2/64\nHOST_BRIDGE=\nHOST_PORT=\nAUTO_START=0\n";
        let c = parse(text).unwrap();
        assert_eq!((c.host_address, c.local_address), (None, None));
        assert_eq!(c.host_address6.unwrap().to_string(), "fc00::1");
        assert_eq!(c.local_address6.unwrap().to_string(), "fc00::2/64");
        assert_eq!(c.render(), text.as_bytes());
        // The same address in both places is fine; two are not, nor a mix.
        assert!(parse("HOST_ADDRESS=fc00::1\nHOST_ADDRESS6=fc00::1\nLOCAL_ADDRESS=fc00::2\n").is_ok());
        assert!(parse("HOST_ADDRESS=fc00::1\nHOST_ADDRESS6=fc00::9\n").unwrap_err().to_string().contains("once"));
        assert!(parse("HOST_ADDRESS=fc00::1\nLOCAL_ADDRESS=10.0.0.2\n").unwrap_err().to_string().contains("one IPv4"));
        assert!(parse("HOST_ADDRESS=nonsense\n").unwrap_err().to_string().contains("not an IP address"));
    }

    #[test]
    fn mac_address_and_resolv_conf_keys() {
        let c = parse("LOCAL_MAC_ADDRESS=02:aa:bb:cc:dd:ee\nCOPY_RESOLV_CONF=1\n").unwrap();
        assert_eq!(c.local_mac_address.as_deref(), Some("02:aa:bb:cc:dd:ee"));
        assert!(c.copy_resolv_conf && c.extra.is_empty());
        assert_eq!(parse_bytes(&c.render()).unwrap(), c);
        assert_eq!(validate_mac("02:aa:bb:cc:dd:ee").unwrap(), [2, 0xaa, 0xbb, 0xcc, 0xdd, 0xee]);
        for bad in ["01:00:00:00:00:01", "00:00:00:00:00:00", "2:aa:bb:cc:dd:ee", "zz:aa:bb:cc:dd:ee", "02:aa:bb:cc:dd"]
        {
            assert!(validate_mac(bad).is_err(), "{bad}");
        }
        let (_, warnings) =
            Conf::parse(b"LOCAL_MAC_ADDRESS=02:00:00:00:00:01\nCOPY_RESOLV_CONF=0\n", Path::new("x")).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn unknown_keys_warn() {
        let (_, warnings) = Conf::parse(b"AUTOSTART=1\n", Path::new("x")).unwrap();
        assert_eq!(warnings, ["unknown key AUTOSTART ignored"]);
    }

    #[test]
    fn isolation_keys_round_trip_and_are_checked() {
        let c = parse("CAPABILITIES=\"CAP_NET_ADMIN sys_time\"\nSYSTEM_CALL_FILTER=\"@clock ~chroot\"\nDEVICES=/dev/fuse\nPRIVATE_USERS=pick\n").unwrap();
        assert_eq!(c.capabilities, ["CAP_NET_ADMIN", "CAP_SYS_TIME"]);
        assert_eq!(c.system_call_filter, ["@clock", "~chroot"]);
        assert_eq!(c.devices, [PathBuf::from("/dev/fuse")]);
        assert_eq!(parse_bytes(&c.render()).unwrap(), c);
        assert!(parse("CAPABILITIES=CAP_FLY\n").unwrap_err().to_string().contains("not a Linux capability"));
        assert!(parse("SYSTEM_CALL_FILTER='rm -rf'\n").is_err());
        assert!(parse("DEVICES=/etc/passwd\n").unwrap_err().to_string().contains("under /dev"));
        assert!(parse("DEVICES=/dev/../etc\n").is_err());
        assert!(parse("PRIVATE_USERS=maybe\n").is_err());
    }

    #[test]
    fn launch_settings_cover_what_nspawn_and_the_network_use() {
        let mut c =
            parse("PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nLOCAL_ADDRESS=10.233.1.2\nAUTO_START=0\n").unwrap();
        let before = c.launch_settings();
        assert_eq!(before.len(), restart_keys().count());
        assert_eq!(before["LOCAL_ADDRESS"], "10.233.1.2");
        assert_eq!(before["BINDS"], "");
        // Keys that need no restart do not count.
        c.auto_start = true;
        c.flake = Some("/f#web".into());
        assert_eq!(c.launch_settings(), before);
        c.binds.push(Bind::parse("/srv/a:/a", false).unwrap());
        c.extra_nspawn_flags.push("--capability=CAP_NET_ADMIN".into());
        let after = c.launch_settings();
        let changed: Vec<&String> = after.keys().filter(|k| after[*k] != before[*k]).collect();
        assert_eq!(changed, ["BINDS", "EXTRA_NSPAWN_FLAGS"]);
        assert_eq!(after["BINDS"], "/srv/a:/a");
    }

    #[test]
    fn limits_round_trip_in_systemd_syntax() {
        let c = parse("MEMORY_MAX=512M\nCPU_QUOTA=150%\nPIDS_MAX=100\n").unwrap();
        assert_eq!(c.limits.memory_max, Some(512 << 20));
        assert_eq!(c.limits.cpu_quota, Some(150));
        assert_eq!(c.limits.pids_max, Some(100));
        let text = String::from_utf8(c.render()).unwrap();
        assert!(text.ends_with("MEMORY_MAX=512M\nCPU_QUOTA=150%\nPIDS_MAX=100\n"), "{text}");
        assert_eq!(parse(&text).unwrap(), c);
        assert!(
            parse("MEMORY_MAX=lots\n").unwrap_err().to_string().contains("MEMORY_MAX: 'lots' is not a memory size")
        );
        // Limits apply live: a change needs no restart.
        assert!(!restart_keys().any(|k| k.ends_with("_MAX") || k == "CPU_QUOTA"));
    }

    #[test]
    fn a_newline_in_a_value_is_refused_and_the_file_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.conf");
        std::fs::write(&path, "PRIVATE_NETWORK=1\n").unwrap();
        for conf in [
            Conf { host_bridge: Some("br0\nHOST_PORT=1".into()), ..Conf::default() },
            Conf { flake: Some("/f#web\rX".into()), ..Conf::default() },
            Conf { extra: vec![("NOTE".into(), "a\x1b]0;pwned\x07".into())], ..Conf::default() },
            Conf { extra: vec![("BAD KEY".into(), "x".into())], ..Conf::default() },
            Conf { host_bridge: Some("a-bridge-name-too-long".into()), ..Conf::default() },
        ] {
            let err = conf.save(&path).unwrap_err().to_string();
            assert!(err.contains("not written"), "{err}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), "PRIVATE_NETWORK=1\n");
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn the_reader_refuses_control_characters_and_bad_names() {
        let err = parse("HOST_BRIDGE=\"br0\rX\"\n").unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        let err = parse("NOTE=\"a\x1b[2Jb\"\n").unwrap_err().to_string();
        assert!(err.contains("NOTE contains the control character '\\u{1b}'"), "{err}");
        assert!(!err.contains('\x1b'), "the message itself stays printable: {err:?}");
        let err = parse("HOST_BRIDGE=\"br 0\"\n").unwrap_err().to_string();
        assert!(err.contains("HOST_BRIDGE='br 0': interface names cannot contain a space"), "{err}");
        assert!(parse("HOST_BRIDGE=abcdefghijklmnop\n").unwrap_err().to_string().contains("at most 15 bytes"));
        assert!(parse("INTERFACES=\"eth1 ../x\"\n").unwrap_err().to_string().contains("INTERFACES entry '../x'"));
        assert!(parse("MACVLANS=a:b\n").is_err());
        let err = parse("SYSTEM_PATH=result\n").unwrap_err().to_string();
        assert!(err.contains("SYSTEM_PATH='result': must be an absolute path"), "{err}");
        assert!(parse("NETWORK_NAMESPACE_PATH=netns/x\n").is_err());
        assert_eq!(parse("HOST_BRIDGE=br-lan.10\n").unwrap().host_bridge.as_deref(), Some("br-lan.10"));
    }

    /// A small deterministic generator (xorshift), for the round trip below.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    #[test]
    fn writer_and_reader_agree_on_any_value() {
        // Characters that matter to sh, systemd, the line format and terminals.
        let alphabet: Vec<char> = "aZ09 \t\n\r\x00\x1b\x7f\u{85}\u{2028}\"'\\$`#=;:,/.-_é€".chars().collect();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut written, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let len = (rng.next() % 12) as usize;
            let value: String = (0..len).map(|_| rng.pick(&alphabet)).collect();
            let conf = Conf {
                private_network: true,
                host_bridge: rng.next().is_multiple_of(4).then(|| value.clone()).filter(|v| !v.is_empty()),
                extra: vec![("NOTE".into(), value.clone().into())],
                ..Conf::default()
            };
            match conf.check_writable() {
                Ok(()) => {
                    written += 1;
                    let text = String::from_utf8(conf.render()).unwrap();
                    assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
                    assert_eq!(text.lines().count(), conf.pairs().len() + 1, "one line per key: {text:?}");
                    assert_eq!(parse(&text).unwrap(), conf, "{text:?}");
                }
                Err(_) => {
                    refused += 1;
                    assert!(value.chars().any(|c| c.is_control()) || conf.host_bridge.is_some(), "{value:?}");
                }
            }
        }
        assert!(written > 1000 && refused > 1000, "both paths taken: {written} {refused}");
    }

    #[test]
    fn port_specs() {
        assert_eq!("8080".parse::<PortForward>().unwrap().to_string(), "tcp:8080:8080");
        assert_eq!("udp:53:5353".parse::<PortForward>().unwrap().to_string(), "udp:53:5353");
        assert!("tcp:0".parse::<PortForward>().is_err());
        assert_eq!(
            "sctp:80".parse::<PortForward>().unwrap_err(),
            "'sctp' is not a protocol for port forwards: use tcp or udp"
        );
        assert_eq!("80x".parse::<PortForward>().unwrap_err(), "'80x' is not a port number (1-65535)");
        assert!("1:2:3".parse::<PortForward>().is_err());
    }

    #[test]
    fn bind_specs() {
        let b = Bind::parse("/srv/a", true).unwrap();
        assert_eq!(b.nspawn_flag(), "--bind-ro=/srv/a:/srv/a");
        let b = Bind::parse("/srv/a:/data:norbind", false).unwrap();
        assert_eq!(b.nspawn_flag(), "--bind=/srv/a:/data:norbind");
        assert!(Bind::parse("relative", false).is_err());
        assert!(Bind::parse("/a:rel", false).is_err());
        assert!(Bind::parse("/a b", false).is_err());
        assert!(Bind::parse("/a/../b", false).is_err());
        // Found by the fuzzer: a source ending in '\' rendered as "\:".
        assert!(Bind::parse("/x\\", false).is_err());
        assert!(Bind::parse("/a\\:b", false).is_err());
        assert!(Bind::parse("/a:/b:norbind,idmap", false).unwrap().check_options().is_ok());
        let e = Bind::parse("/a:/b:ro", false).unwrap().check_options().unwrap_err();
        assert!(e.starts_with("unknown bind option 'ro' (systemd-nspawn knows rbind, norbind"), "{e}");
    }
}

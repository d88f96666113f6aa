//! The systemd-nspawn command line of a container.
//!
//! It follows the seed and the anchor's container@.service, made safe
//! against a hostile guest: the host's Nix store and database read-only,
//! the daemon socket only where guest root is not a trusted Nix user (or
//! the admin asks), the container's profiles and GC roots read-only (the
//! anchor bound them read-write), then the conf's binds and flags. Under
//! our own supervisor, `--keep-unit --register=no` keep nspawn away from
//! systemd and machined, which the host may not run, and the supervisor puts
//! nspawn into the container's cgroup; as a systemd unit (`Mode::Unit`),
//! `--keep-unit --register=yes` run it in the unit's cgroup and register it
//! with machined.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::conf::{Bind, Conf};
use crate::error::{Error, Result};
use crate::paths::ContainerPaths;

/// Who runs nspawn (see [`crate::supervision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Our own supervisor, on a host without systemd as PID 1.
    Own,
    /// The container's systemd unit, whose main process nspawn is.
    Unit,
}

/// Everything the command line depends on.
pub struct Launch<'a> {
    pub mode: Mode,
    pub name: &'a str,
    pub paths: &'a ContainerPaths,
    pub conf: &'a Conf,
    /// nspawn runs inside the container's own network namespace (private
    /// networking): the supervisor enters it before exec.
    pub in_own_netns: bool,
    /// Which of the host's Nix paths exist (the daemon socket may not).
    pub host_has: &'a dyn Fn(&Path) -> bool,
}

/// Inside the container, the profile dir is mounted here.
pub const GUEST_PROFILES: &str = "/nix/var/nix/profiles";
pub const GUEST_GCROOTS: &str = "/nix/var/nix/gcroots";
/// The host's Nix daemon socket directory (see `Conf::nix_daemon_in_guest`).
pub const NIX_DAEMON_SOCKET_DIR: &str = "/nix/var/nix/daemon-socket";

/// The init the container boots: the conf's SYSTEM_PATH (declarative
/// containers), else the profile's current generation.
pub fn init_path(conf: &Conf) -> PathBuf {
    match &conf.system_path {
        Some(p) => p.join("init"),
        None => PathBuf::from(GUEST_PROFILES).join("system/init"),
    }
}

/// Fails with an error that says what to install when systemd-nspawn is not
/// on PATH, before anything is set up for a start.
pub fn require_installed() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| is_executable(&dir.join("systemd-nspawn"))) {
        return Ok(());
    }
    Err(Error::MissingProgram {
        program: "systemd-nspawn",
        hint: "install systemd-container (the same version as systemd)",
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The network namespace nspawn runs in, by a path that needs no mount.
pub const OWN_NETNS: &str = "/proc/self/ns/net";

/// A command line as a shell would need it, for logs.
pub fn display(argv: &[OsString]) -> String {
    let quote = |a: &OsString| {
        let a = a.to_string_lossy();
        let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=+./:,@%".contains(&b));
        if plain { a.into_owned() } else { format!("'{}'", a.replace('\'', "'\\''")) }
    };
    argv.iter().map(quote).collect::<Vec<_>>().join(" ")
}

pub fn command_line(l: &Launch<'_>) -> Vec<OsString> {
    let private_users = l.conf.private_users.as_deref().filter(|u| *u != "no");
    // In a user namespace, the host's Nix paths are mapped to the guest's
    // root (idmapped mounts) instead of showing up as nobody's.
    let idmap = if private_users.is_some() { ":idmap" } else { "" };
    let mut argv: Vec<String> = vec![
        "systemd-nspawn".into(),
        "--keep-unit".into(),
        if l.mode == Mode::Unit { "--register=yes" } else { "--register=no" }.into(),
        format!("--machine={}", l.name),
        format!("--directory={}", l.paths.root.display()),
        "--notify-ready=yes".into(),
        "--kill-signal=SIGRTMIN+3".into(),
        "--console=read-only".into(),
        if l.mode == Mode::Unit { "--link-journal=try-guest" } else { "--link-journal=no" }.into(),
    ];
    for p in ["/nix/store", "/nix/var/nix/db", NIX_DAEMON_SOCKET_DIR] {
        let wanted = p != NIX_DAEMON_SOCKET_DIR || l.conf.nix_daemon_in_guest();
        if wanted && (p == "/nix/store" || (l.host_has)(Path::new(p))) {
            argv.push(format!("--bind-ro={p}:{p}{idmap}"));
        }
    }
    // Read-only: the profiles and GC roots are the host's (host root runs
    // nix-env on them, and they are host paths a local user could reach).
    argv.push(format!("--bind-ro={}:{GUEST_PROFILES}{idmap}", l.paths.profile_dir.display()));
    argv.push(format!("--bind-ro={}:{GUEST_GCROOTS}{idmap}", l.paths.gcroots.display()));
    if let Some(u) = private_users {
        argv.push(format!("--private-users={u}"));
        // Shift the root's ownership on first start (idmapped mounts where
        // the kernel and file system can, chown otherwise).
        argv.push("--private-users-ownership=auto".into());
    }
    if l.in_own_netns {
        // The supervisor starts nspawn inside this namespace already, where
        // /run/netns is not mounted: nspawn joins it by its own handle. In
        // a user namespace nspawn could not join it again (the namespace
        // belongs to the host's user namespace), so it just stays there.
        if private_users.is_none() {
            argv.push(format!("--network-namespace-path={OWN_NETNS}"));
        }
    } else if let Some(ns) = &l.conf.network_namespace_path {
        argv.push(format!("--network-namespace-path={}", ns.display()));
    }
    // With a namespace of our own, the host interfaces named in INTERFACES
    // were moved into it, and the MACVLANS made in it, by `net::start`
    // (nspawn's --network-interface and --network-macvlan would make a
    // namespace of their own, which --network-namespace-path excludes).
    if !l.in_own_netns {
        for i in &l.conf.interfaces {
            argv.push(format!("--network-interface={i}"));
        }
        for m in &l.conf.macvlans {
            argv.push(format!("--network-macvlan={m}"));
        }
    }
    let mut caps = l.conf.capabilities.clone();
    // nspawn keeps CAP_NET_ADMIN for a guest with --private-network, the
    // network being its own; joining a namespace by path it does not. Ours
    // is the guest's alone, so it gets the same.
    if l.in_own_netns && !caps.iter().any(|c| c.eq_ignore_ascii_case("CAP_NET_ADMIN")) {
        caps.push("CAP_NET_ADMIN".into());
    }
    if !caps.is_empty() {
        argv.push(format!("--capability={}", caps.join(",")));
    }
    if !l.conf.system_call_filter.is_empty() {
        argv.push(format!("--system-call-filter={}", l.conf.system_call_filter.join(" ")));
    }
    for d in &l.conf.devices {
        argv.push(format!("--bind={}", d.display()));
    }
    let mut argv: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
    // A bind's paths need not be UTF-8 (a Latin-1 file name): passed as bytes.
    argv.extend(l.conf.binds.iter().map(Bind::nspawn_flag));
    argv.extend(l.conf.extra_nspawn_flags.iter().map(OsString::from));
    argv.push(init_path(l.conf).into_os_string());
    argv
}

/// The command line as one line of text, for logs.
/// Where systemd-nspawn keeps its runtime files. It does not remove the
/// mount-propagation directory of a machine when it exits, nor its lock on
/// the root's inode when it is killed; /run is not always a tmpfs that a
/// reboot empties, so they would pile up with every start.
const NSPAWN_RUN: &str = "/run/systemd/nspawn";

/// nspawn's leftovers of container `name` whose root is `root`: its
/// propagation directory and its lock on the root's inode.
pub fn runtime_leftovers(name: &str, root: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![Path::new(NSPAWN_RUN).join("propagate").join(name)];
    if let Ok(m) = std::fs::symlink_metadata(root) {
        paths.push(Path::new(NSPAWN_RUN).join("locks").join(format!("inode-{}:{}", m.dev(), m.ino())));
    }
    paths
}

/// Removes them, once nspawn is gone. The propagation directory only
/// while it is empty (nothing is mounted there then).
pub fn remove_runtime_leftovers(name: &str, root: &Path) {
    for p in runtime_leftovers(name, root) {
        let _ = std::fs::remove_dir(&p).or_else(|_| std::fs::remove_file(&p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The own supervisor's command line for container `web`, on a host
    /// that has every path.
    fn own_line(paths: &ContainerPaths, conf: &Conf, in_own_netns: bool) -> Vec<OsString> {
        command_line(&Launch { mode: Mode::Own, name: "web", paths, conf, in_own_netns, host_has: &|_: &Path| true })
    }
    use crate::paths::Paths;

    #[test]
    fn the_seeds_binds_then_the_confs() {
        let paths = Paths::under(Path::new("/x")).container("web");
        let mut conf = Conf::default();
        conf.binds.push(Bind::parse("/srv/data:/data", false).unwrap());
        conf.extra_nspawn_flags = vec!["--capability=CAP_NET_ADMIN".into()];
        let no_daemon = |p: &Path| p != Path::new("/nix/var/nix/daemon-socket");
        let argv = command_line(&Launch {
            mode: Mode::Own,
            name: "web",
            paths: &paths,
            conf: &conf,
            in_own_netns: true,
            host_has: &no_daemon,
        });
        assert_eq!(
            display(&argv),
            "systemd-nspawn --keep-unit --register=no --machine=web --directory=/x/state/web \
             --notify-ready=yes --kill-signal=SIGRTMIN+3 --console=read-only --link-journal=no \
             --bind-ro=/nix/store:/nix/store --bind-ro=/nix/var/nix/db:/nix/var/nix/db \
             --bind-ro=/x/profiles/web:/nix/var/nix/profiles --bind-ro=/x/gcroots/web:/nix/var/nix/gcroots \
             --network-namespace-path=/proc/self/ns/net --capability=CAP_NET_ADMIN \
             --bind=/srv/data:/data --capability=CAP_NET_ADMIN /nix/var/nix/profiles/system/init"
        );
    }

    #[test]
    fn user_namespaces_get_idmapped_nix_binds_and_the_confs_isolation() {
        let paths = Paths::under(Path::new("/x")).container("web");
        let conf = Conf {
            private_users: Some("pick".into()),
            capabilities: vec!["CAP_NET_ADMIN".into(), "CAP_SYS_TIME".into()],
            system_call_filter: vec!["@clock".into(), "~chroot".into()],
            devices: vec!["/dev/fuse".into()],
            ..Conf::default()
        };
        let argv = own_line(&paths, &conf, false);
        for flag in [
            "--bind-ro=/nix/store:/nix/store:idmap",
            "--bind-ro=/nix/var/nix/daemon-socket:/nix/var/nix/daemon-socket:idmap",
            "--bind-ro=/x/profiles/web:/nix/var/nix/profiles:idmap",
            "--private-users=pick",
            "--private-users-ownership=auto",
            "--capability=CAP_NET_ADMIN,CAP_SYS_TIME",
            "--system-call-filter=@clock ~chroot",
            "--bind=/dev/fuse",
        ] {
            assert!(argv.iter().any(|a| a == flag), "{flag} missing from {argv:?}");
        }
        let no = Conf { private_users: Some("no".into()), ..Conf::default() };
        let argv = own_line(&paths, &no, false);
        assert!(!display(&argv).contains("idmap") && !display(&argv).contains("--private-users"));
    }

    #[test]
    fn bind_paths_that_are_not_utf8_reach_nspawn_unchanged() {
        use std::os::unix::ffi::OsStrExt;
        let paths = Paths::under(Path::new("/x")).container("web");
        let mut conf = Conf::default();
        conf.binds.push(Bind::parse_bytes(b"/srv/caf\xe9:/data", true).unwrap());
        let argv = own_line(&paths, &conf, false);
        assert!(argv.iter().any(|a| a.as_bytes() == b"--bind-ro=/srv/caf\xe9:/data"), "{argv:?}");
    }

    #[test]
    fn the_daemon_socket_only_where_guest_root_is_not_trusted_or_asked_for() {
        let paths = Paths::under(Path::new("/x")).container("web");
        let all = |_: &Path| true;
        let socket = |conf: &Conf| {
            command_line(&Launch {
                mode: Mode::Own,
                name: "web",
                paths: &paths,
                conf,
                in_own_netns: false,
                host_has: &all,
            })
            .iter()
            .any(|a| a.to_string_lossy().contains("daemon-socket"))
        };
        assert!(!socket(&Conf::default()), "guest root is host root: no socket by default");
        assert!(socket(&Conf { nix_daemon: true, ..Conf::default() }));
        for (mode, given) in [
            ("pick", true),
            ("yes", true),
            ("65536", true),
            ("65536:65536", true),
            ("identity", false),
            ("0", false),
            ("no", false),
        ] {
            assert_eq!(socket(&Conf { private_users: Some(mode.into()), ..Conf::default() }), given, "{mode}");
        }
    }

    #[test]
    fn a_private_network_is_joined_by_the_handle_nspawn_runs_in() {
        // The one command line that runs and that `-v start` shows: nspawn
        // is started inside the namespace, where /run/netns is not mounted.
        let paths = Paths::under(Path::new("/x")).container("web");
        let conf = Conf::default();
        let argv = own_line(&paths, &conf, true);
        let joins: Vec<&OsString> =
            argv.iter().filter(|a| a.to_string_lossy().starts_with("--network-namespace-path=")).collect();
        assert_eq!(joins, ["--network-namespace-path=/proc/self/ns/net"]);
        // The guest keeps CAP_NET_ADMIN, as with nspawn's --private-network,
        // and INTERFACES were moved into the namespace, MACVLANS made in it,
        // by us.
        let ifs = Conf {
            interfaces: vec!["eth7".into()],
            macvlans: vec!["eth8".into(), "eth9".into()],
            capabilities: vec!["CAP_SYS_TIME".into()],
            ..Conf::default()
        };
        let argv = own_line(&paths, &ifs, true);
        assert!(argv.contains(&"--capability=CAP_SYS_TIME,CAP_NET_ADMIN".into()), "{argv:?}");
        assert!(
            !argv.iter().any(|a| {
                let a = a.to_string_lossy();
                a.starts_with("--network-interface") || a.starts_with("--network-macvlan")
            }),
            "{argv:?}"
        );
        // Where nspawn makes the namespace itself, it does both.
        let argv = own_line(&paths, &ifs, false);
        let net: Vec<String> =
            argv.iter().map(|a| a.to_string_lossy().into_owned()).filter(|a| a.starts_with("--network-")).collect();
        assert_eq!(net, ["--network-interface=eth7", "--network-macvlan=eth8", "--network-macvlan=eth9"]);
        assert!(argv.contains(&"--capability=CAP_SYS_TIME".into()));
        let users = Conf { private_users: Some("pick".into()), ..Conf::default() };
        let argv = own_line(&paths, &users, true);
        assert!(!argv.iter().any(|a| a.to_string_lossy().starts_with("--network-namespace-path")), "{argv:?}");
    }

    #[test]
    fn logged_command_lines_can_be_pasted_into_a_shell() {
        let argv: Vec<OsString> =
            ["systemd-nspawn", "--bind=/srv/my data:/d", "--machine=web", "it's", ""].map(OsString::from).into();
        assert_eq!(display(&argv), "systemd-nspawn '--bind=/srv/my data:/d' --machine=web 'it'\\''s' ''");
    }

    #[test]
    fn in_a_unit_nspawn_registers_it_with_machined_and_links_the_journal() {
        let paths = Paths::under(Path::new("/x")).container("web");
        let all = |_: &Path| true;
        let conf = Conf::default();
        let line = |mode| {
            display(&command_line(&Launch {
                mode,
                name: "web",
                paths: &paths,
                conf: &conf,
                in_own_netns: true,
                host_has: &all,
            }))
        };
        let unit = line(Mode::Unit);
        assert!(
            unit.starts_with(
                "systemd-nspawn --keep-unit --register=yes --machine=web --directory=/x/state/web \
                 --notify-ready=yes --kill-signal=SIGRTMIN+3 --console=read-only --link-journal=try-guest "
            ),
            "{unit}"
        );
        // Everything else is the same line.
        assert_eq!(unit.replace("--register=yes", "--register=no").replace("try-guest", "no"), line(Mode::Own));
    }

    #[test]
    fn declarative_system_path_wins() {
        let conf = Conf { system_path: Some("/nix/store/abc-system".into()), ..Conf::default() };
        assert_eq!(init_path(&conf), PathBuf::from("/nix/store/abc-system/init"));
    }
}

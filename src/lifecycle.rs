//! The container lifecycle: create, start, stop, terminate, destroy.
//!
//! Each operation takes the container's lock for its whole run, so two
//! commands never change one container at the same time; create also takes
//! the global lock while it picks a name and addresses.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::addr::{Pool4, Pool6};
use crate::cgroup::ContainerCgroup;
use crate::conf::Conf;
use crate::container::Container;
use crate::error::{Error, IoContext, Lingering, Result};
use crate::faults::crash_point;
use crate::fsutil;
use crate::lock::Lock;
use crate::name;
use crate::net;
use crate::nixos_config::{self, UserConfig};
use crate::paths::{ContainerPaths, Paths};
use crate::profile::{self, BuildOutput, NixFlags, SystemSource};
use crate::rootfs;
use crate::supervision::{self, Phase, RunStatus};

/// Where a new container's system comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// Build `nixos_path` with a generated configuration.nix.
    Config { nixos_path: String, user: UserConfig },
    /// An already built system.
    SystemPath(PathBuf),
    /// `REF#ATTR`.
    Flake(String),
}

pub struct CreateRequest {
    pub name: String,
    pub ensure_unique_name: bool,
    pub source: Source,
    /// The conf to write; addresses are filled in when left empty on a
    /// private network without a bridge.
    pub conf: Conf,
    pub output: BuildOutput,
    /// Nix flags for the build (not stored).
    pub nix: NixFlags,
}

#[derive(Debug)]
pub struct Created {
    pub name: String,
    pub conf: Conf,
}

/// The conf of a container whose create has not finished yet.
fn creating_marker(p: &ContainerPaths) -> PathBuf {
    let mut s = p.conf.clone().into_os_string();
    s.push(".creating");
    PathBuf::from(s)
}

/// Whether `candidate` can be used for a new container. A create that died
/// half-way (its marker is there but nobody holds the lock) is cleaned up
/// here, so the name becomes free again.
fn name_is_free(paths: &Paths, candidate: &str, skip_stray_roots: bool) -> Result<bool> {
    let p = paths.container(candidate);
    if p.conf.exists() {
        return Ok(false);
    }
    let marker = creating_marker(&p);
    if marker.exists() {
        match Lock::try_exclusive(&p.lock)? {
            None => return Ok(false),
            Some(_held) => {
                tracing::warn!("removing the remains of an unfinished create of '{candidate}'");
                remove_container_files(&p)?;
                return Ok(true);
            }
        }
    }
    if p.root.exists() {
        // A root without a conf belongs to nobody we know: never reuse it.
        if !skip_stray_roots {
            return Err(Error::other(format!(
                "{} exists but container '{candidate}' does not; move it away or choose another name",
                p.root.display()
            )));
        }
        return Ok(false);
    }
    Ok(true)
}

/// The lines of a conf that set one of `conf::reserved_keys()`. Every create reads
/// every other conf, so nothing else of them is parsed (and a broken line
/// elsewhere in a conf no longer hides its addresses).
fn taken_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    let wanted = |raw: &&[u8]| {
        let line = raw.trim_ascii();
        let line = line.strip_prefix(b"export ").map(<[u8]>::trim_ascii_start).unwrap_or(line);
        let key = line.iter().position(|c| *c == b'=').map(|eq| &line[..eq]);
        key.is_some_and(|key| crate::conf::reserved_keys().any(|k| k.as_bytes() == key))
    };
    text.split(|c| *c == b'\n').filter(wanted)
}

/// Names, addresses and host ports of every other container (created or
/// being created).
fn taken_by_others(paths: &Paths, except: &str) -> Result<net::Taken> {
    let mut taken = net::Taken::default();
    for e in fsutil::read_dir_or_empty(&paths.conf_dir)? {
        let fname = e.file_name();
        let fname = fname.to_string_lossy();
        let Some(other) = fname.strip_suffix(".conf").or_else(|| fname.strip_suffix(".conf.creating")) else {
            continue;
        };
        if other == except {
            continue;
        }
        // Bytes: a value that is not UTF-8 elsewhere must not hide these.
        let Ok(text) = std::fs::read(e.path()) else { continue };
        // A broken conf must not stop others from being created; its
        // values are read line by line as far as they parse, and a later
        // line wins, as in a shell.
        let mut conf = Conf::default();
        for line in taken_lines(&text) {
            let Ok(pairs) = crate::conf::parse_pairs(line) else { continue };
            let Ok((c, _)) = Conf::from_pairs(pairs) else { continue };
            conf.host_address = c.host_address.or(conf.host_address);
            conf.local_address = c.local_address.or(conf.local_address);
            conf.host_address6 = c.host_address6.or(conf.host_address6);
            conf.local_address6 = c.local_address6.or(conf.local_address6);
            if !c.host_port.is_empty() {
                conf.host_port = c.host_port;
            }
        }
        taken.add(other, &conf);
    }
    Ok(taken)
}

/// Checks a new container's network against other containers and the
/// host, and picks the addresses left to pick.
fn plan_network(paths: &Paths, name: &str, conf: &mut Conf) -> Result<()> {
    let taken = taken_by_others(paths, name)?;
    net::check_new(name, conf, &taken)?;
    if conf.has_own_network() {
        let mut nl = net::netlink::RtNetlink::new()?;
        let pools = (Pool4::from_env()?, Pool6::from_env()?);
        net::assign(conf, &taken, &mut nl, pools, net::host_has_ipv6())?;
    }
    Ok(())
}

pub fn create(paths: &Paths, mut req: CreateRequest) -> Result<Created> {
    name::validate(&req.name)?;
    fsutil::create_dir(&paths.conf_dir, 0o755)?;
    if !paths.state_dir.exists() {
        fsutil::create_dir(&paths.state_dir, 0o700)?;
    }
    if !paths.profiles_dir.exists() {
        fsutil::create_dir(&paths.profiles_dir, 0o700)?;
    }

    // Pick a name and addresses and reserve them, under the global lock.
    let global = Lock::exclusive(&paths.global_lock(), "the global lock")?;
    let mut chosen = None;
    for candidate in name::unique_candidates(&req.name) {
        name::validate(&candidate)?;
        if name_is_free(paths, &candidate, req.ensure_unique_name)? {
            chosen = Some(candidate);
            break;
        }
        if !req.ensure_unique_name {
            return Err(Error::AlreadyExists(candidate));
        }
    }
    let name = chosen.expect("candidates never end");
    let p = paths.container(&name);
    let conf = &mut req.conf;
    plan_network(paths, &name, conf)?;
    if let (Some(h), Some(l)) = (conf.host_address, conf.local_address) {
        tracing::info!("creating '{name}' with host address {h} and container address {l}");
    }
    let container_lock = Lock::exclusive(&p.lock, "the container's lock")?;
    let marker = creating_marker(&p);
    conf.save(&marker)?;
    drop(global);
    crash_point("create-reserved");

    match build_new(&name, &p, &req.source, req.output, &req.nix) {
        Ok(state_version) => {
            if state_version.is_some() {
                req.conf.state_version = state_version;
                req.conf.save(&marker)?;
            }
        }
        Err(e) => {
            if let Err(cleanup) = remove_container_files(&p) {
                tracing::error!("cleaning up after the failed create: {cleanup}");
            }
            return Err(e);
        }
    }
    crash_point("create-built");
    {
        // Under the global lock: a create reading the directory while the
        // marker is renamed could see neither name, and so reuse our
        // addresses.
        let _global = Lock::exclusive(&paths.global_lock(), "the global lock")?;
        std::fs::rename(&marker, &p.conf).context(|| format!("writing {}", p.conf.display()))?;
    }
    add_host_name(paths, &name, &req.conf);
    drop(container_lock);
    Ok(Created { name, conf: req.conf })
}

/// `NAME.containers` resolves on the host while the container exists. The
/// container works without it, so a hosts file we cannot write is only a
/// warning.
fn add_host_name(paths: &Paths, name: &str, conf: &Conf) {
    let addrs: Vec<std::net::IpAddr> =
        [conf.local_address.map(|a| a.addr.into()), conf.local_address6.map(|a| a.addr.into())]
            .into_iter()
            .flatten()
            .collect();
    if addrs.is_empty() {
        return;
    }
    if let Err(e) = net::hosts::add(&paths.hosts_file, &paths.hosts_lock(), name, &addrs) {
        tracing::warn!("{name}.containers will not resolve: {e}");
    }
}

/// Builds a new container's system; returns the release written as its
/// `system.stateVersion`, for a configuration.nix.
fn build_new(
    name: &str,
    p: &ContainerPaths,
    source: &Source,
    output: BuildOutput,
    nix: &NixFlags,
) -> Result<Option<String>> {
    fsutil::create_dir(&p.root, 0o755)?;
    profile::prepare_dirs(p)?;
    if let (Some(flag), false) = (nix.flake_only(), matches!(source, Source::Flake(_))) {
        return Err(profile::flake_only_error(flag));
    }
    let mut release = None;
    let build = match source {
        Source::Config { nixos_path, user } => {
            let r = profile::nixos_release(nixos_path, nix);
            let dir = nixos_config::ConfigDir::open_host(&p.config_dir, true)?;
            dir.replace(name, user, r.as_ref().ok().map(String::as_str))?;
            nixos_config::copy_to_guest(&dir, &p.root);
            release = Some((nixos_path, r));
            SystemSource::NixosConfig { nixos_path: nixos_path.clone(), config: dir.config_path() }
        }
        Source::SystemPath(path) => SystemSource::Path(path.clone()),
        Source::Flake(f) => SystemSource::flake(f),
    };
    profile::build(&p.system_profile(), &build, output, nix)?;
    Ok(release.and_then(|(nixos_path, r)| known_release(nixos_path, r)))
}

/// The release for a stateVersion, or a warning why there is none (only
/// once the build worked: a NixOS that does not evaluate says so there).
pub fn known_release(nixos_path: &str, release: Result<String>) -> Option<String> {
    match release {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!("system.stateVersion is not set: the release of {nixos_path} is unknown: {e}");
            None
        }
    }
}

/// Removes everything of a container but its lock.
fn remove_container_files(p: &ContainerPaths) -> Result<()> {
    fsutil::unmount_below(&p.root)?;
    fsutil::remove_tree(&p.root)?;
    fsutil::remove_tree(&p.profile_dir)?;
    fsutil::remove_tree(&p.gcroots)?;
    fsutil::remove_tree(&p.run)?;
    fsutil::remove_tree(&p.config_dir)?;
    let _ = std::fs::remove_file(creating_marker(p));
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Nothing to do: already running for start, already stopped for stop.
    AlreadyThere,
}

/// Opens a container under its lock, which every command that changes the
/// container holds for its whole run. The conf is read once the lock is
/// held, so it is the one the command acts on.
pub fn open_locked(paths: &Paths, name: &str) -> Result<(Container, Lock)> {
    name::validate_existing(name)?;
    let p = paths.container(name);
    if !p.conf.exists() {
        return Err(Error::NoSuchContainer(name.to_string()));
    }
    let lock = Lock::exclusive(&p.lock, &format!("container '{name}'"))?;
    Ok((Container::open(paths, name)?, lock))
}

/// Starts a container and returns when it is ready for commands.
pub fn start(paths: &Paths, name: &str, timeout: Duration) -> Result<Outcome> {
    let (c, _lock) = open_locked(paths, name)?;
    crash_point("start-locked");
    start_locked(&c, timeout)
}

/// Stops and starts a container under one hold of its lock, so that no
/// other command comes in between.
pub fn restart(paths: &Paths, name: &str, stop_timeout: Duration, start_timeout: Duration) -> Result<()> {
    let (c, _lock) = open_locked(paths, name)?;
    stop_locked(&c, stop_timeout)?;
    start_locked(&c, start_timeout)?;
    Ok(())
}

/// `start` for a caller that holds the container's lock.
pub fn start_locked(c: &Container, timeout: Duration) -> Result<Outcome> {
    let name = &c.name;
    name::check_startable(name)?;
    let cgroup = c.cgroup()?;
    match c.status()? {
        // Its guest is gone and it is cleaning up: let it finish, then start anew.
        RunStatus::Supervised { phase: Phase::Stopping, .. } => supervision_gone_or_busy(c)?,
        RunStatus::Supervised { phase: Phase::Running, .. } => return Ok(Outcome::AlreadyThere),
        // Being started by a start that died: wait for it, as for our own.
        RunStatus::Supervised { phase: Phase::Starting, .. } => {
            if wait_while_starting(c, timeout) {
                return Ok(Outcome::AlreadyThere);
            }
            supervision_gone_or_busy(c)?;
        }
        RunStatus::Unsupervised => return Ok(Outcome::AlreadyThere),
        RunStatus::Gone => {}
    }
    release_runtime(c, &cgroup);

    if c.conf.system_path.is_none() && !c.paths.system_profile().exists() {
        return Err(Error::NoSystem { name: name.to_string() });
    }
    crate::nspawn::require_installed()?;
    rootfs::require_host_root_mounted()?;
    crate::hostlimits::ensure_inotify_headroom(crate::cgroup::container_count())?;
    // A guest in the host's UID space: the host's Nix builds may kill its
    // system services.
    if !crate::conf::guest_root_is_unprivileged(c.conf.private_users.as_deref()) {
        crate::buildusers::warn_if_clashing();
    }
    if let Err(e) = supervision::for_host().launch(c, timeout) {
        // A supervisor releases what it can on its way out, but one that
        // failed early, or never ran, has not: once it is gone, make sure.
        if supervision::for_host().wait_ended(c, Duration::from_secs(15)) {
            release_runtime(c, &cgroup);
        }
        return Err(e);
    }
    Ok(Outcome::Done)
}

/// Prepares on the host what the guest needs to boot: its root, resolv.conf
/// and network. Returns the network namespace nspawn is to run in. The
/// supervision calls it (a unit at each of its starts); `release_runtime`
/// undoes it.
pub fn prepare_host(c: &Container) -> Result<Option<PathBuf>> {
    tracing::info!("preparing the root {}", c.paths.root.display());
    rootfs::prepare(&c.paths)?;
    if c.conf.copy_resolv_conf {
        rootfs::copy_resolv_conf(&c.paths.root)?;
    }
    let netns = net::start(&c.name, &c.conf, &c.paths.nft_marker(), &c.paths.moved_interfaces())?;
    crash_point("start-prepared");
    Ok(netns)
}

/// Waits for a supervision on its way out; the runtime state is not ours to
/// release while it lives.
fn supervision_gone_or_busy(c: &Container) -> Result<()> {
    if supervision::for_host().wait_ended(c, Duration::from_secs(15)) {
        Ok(())
    } else {
        Err(Error::StillRunning { name: c.name.clone(), what: Lingering::SupervisorBusy })
    }
}

/// Waits while the supervision starts the guest; true once it runs.
fn wait_while_starting(c: &Container, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match c.status().ok().and_then(|s| s.phase()) {
            Some(Phase::Running) => return true,
            Some(Phase::Starting) => std::thread::sleep(Duration::from_millis(10)),
            _ => return false,
        }
    }
    false
}

fn sigrtmin3_to_guest_init(cgroup: &ContainerCgroup, c: &Container) {
    if let Some(leader) = cgroup.leader() {
        tracing::info!("sending SIGRTMIN+3 to {} (PID {leader})", c.name);
        // SAFETY: plain kill(2).
        unsafe { libc::kill(leader.as_raw(), libc::SIGRTMIN() + 3) };
    }
}

/// Halts the guest cleanly and kills whatever is left after `timeout`.
/// When it returns, no process of the container exists.
///
/// The halt request goes to the supervisor (which passes it to nspawn, and
/// which also understands it before nspawn runs), then SIGRTMIN+3 to the
/// guest's init every second: an init in early boot has no handler yet.
pub fn stop(paths: &Paths, name: &str, timeout: Duration) -> Result<Outcome> {
    let (c, _lock) = open_locked(paths, name)?;
    stop_locked(&c, timeout)
}

/// `stop` for a caller that holds the container's lock.
pub fn stop_locked(c: &Container, timeout: Duration) -> Result<Outcome> {
    let name = &c.name;
    let cgroup = c.cgroup()?;
    let gone = || c.status().is_ok_and(|s| s == RunStatus::Gone);
    if gone() {
        release_runtime(c, &cgroup);
        return Ok(Outcome::AlreadyThere);
    }
    tracing::info!("waiting up to {} s for {name} to halt", timeout.as_secs_f32());
    let deadline = Instant::now() + timeout;
    let mut told_supervisor = false;
    let mut next_signal = Instant::now();
    while !gone() && Instant::now() < deadline {
        if !told_supervisor && supervision::for_host().request_halt(c, &c.status()?) {
            told_supervisor = true;
            next_signal = Instant::now() + Duration::from_secs(1);
        }
        if Instant::now() >= next_signal {
            sigrtmin3_to_guest_init(&cgroup, c);
            next_signal = Instant::now() + Duration::from_secs(1);
        }
        crash_point("stop-signalled");
        std::thread::sleep(Duration::from_millis(10));
    }
    if !gone() {
        tracing::warn!("{name} did not halt within {} s; killing it", timeout.as_secs_f32());
    }
    finish_off(c, &cgroup)?;
    Ok(Outcome::Done)
}

/// Kills every process of the container at once.
pub fn terminate(paths: &Paths, name: &str) -> Result<Outcome> {
    let (c, _lock) = open_locked(paths, name)?;
    let cgroup = c.cgroup()?;
    let was_up = c.status()?.is_up();
    finish_off(&c, &cgroup)?;
    Ok(if was_up { Outcome::Done } else { Outcome::AlreadyThere })
}

/// Kills every process of the container at once, lets the supervisor reap
/// them and exit (killing it if it does not), and removes the runtime state,
/// which a killed supervisor may not have done.
fn finish_off(c: &Container, cgroup: &ContainerCgroup) -> Result<()> {
    supervision::for_host().terminate(c, cgroup)?;
    // Something the supervisor launched just before it died.
    if !cgroup.kill_all(Duration::from_secs(5)) {
        let pids = cgroup.pids().iter().map(|p| p.as_raw()).collect();
        return Err(Error::StillRunning { name: c.name.clone(), what: Lingering::Processes(pids) });
    }
    release_runtime(c, cgroup);
    Ok(())
}

/// Removes what a run of the container set up on the host. Safe to call
/// more than once, and on leftovers of a run whose supervisor died.
pub fn release_runtime(c: &Container, cgroup: &ContainerCgroup) {
    net::release(&c.name, &c.paths.nft_marker(), &c.paths.moved_interfaces());
    cgroup.remove();
    let _ = std::fs::remove_file(c.paths.state_file());
    let _ = std::fs::remove_file(c.paths.run.join("notify"));
    // Called once nspawn is gone: its lock files are nobody's any more.
    let _ = std::fs::remove_file(c.paths.nspawn_image_lock());
    crate::nspawn::remove_runtime_leftovers(&c.name, &c.paths.root);
}

/// Declarative containers belong to the host's NixOS configuration.
pub fn refuse_declarative(c: &Container) -> Result<()> {
    if c.is_declarative() {
        return Err(Error::Declarative { name: c.name.clone(), conf: c.paths.conf.clone(), fixed_system: None });
    }
    Ok(())
}

/// Stops the container if it runs, then removes its root (never what is
/// mounted into it), profile, GC roots, runtime state and conf, in that
/// order: until the conf is gone, a failed destroy can be run again.
pub fn destroy(paths: &Paths, name: &str) -> Result<()> {
    let p = paths.container(name);
    let marker = creating_marker(&p);
    if !p.conf.exists() && marker.exists() {
        // The remains of a create that died half-way.
        let Some(_lock) = Lock::try_exclusive(&p.lock)? else {
            return Err(Error::Busy { name: name.to_string() });
        };
        // The create may have finished in between: then it is a container.
        if !p.conf.exists() {
            return remove_container_files(&p);
        }
    }
    name::validate_existing(name)?;
    if !p.conf.exists() {
        return Err(Error::NoSuchContainer(name.to_string()));
    }
    let _lock = Lock::exclusive(&p.lock, &format!("container '{name}'"))?;
    let (c, unreadable) = Container::open_to_destroy(paths, name)?;
    refuse_declarative(&c)?;
    if let Some(e) = unreadable {
        tracing::warn!("{e}; destroying container '{name}' without reading its conf");
    }
    let cgroup = c.cgroup()?;
    finish_off(&c, &cgroup)?;
    crash_point("destroy-stopped");
    tracing::info!(
        "removing {}, {}, {} and {}",
        c.paths.root.display(),
        c.paths.profile_dir.display(),
        c.paths.gcroots.display(),
        c.paths.conf.display()
    );
    remove_container_files(&c.paths)?;
    if let Err(e) = net::hosts::remove(&paths.hosts_file, &paths.hosts_lock(), name) {
        tracing::warn!("removing {name}.containers from {}: {e}", paths.hosts_file.display());
    }
    crash_point("destroy-files");
    std::fs::remove_file(&c.paths.conf).context(|| format!("removing {}", c.paths.conf.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_containers_addresses_and_ports_are_taken_whatever_else_their_confs_say() {
        let base = tempfile::tempdir().unwrap();
        let paths = Paths::under(base.path());
        std::fs::create_dir_all(&paths.conf_dir).unwrap();
        let conf = "PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.1.1\nexport LOCAL_ADDRESS=10.233.1.2\n\
                    HOST_ADDRESS6=fd6e::1\nLOCAL_ADDRESS6='fd6e::2'\nHOST_PORT=tcp:8080:80\n\
                    EXTRA_NSPAWN_FLAGS=\"--foo\"\nthis line is broken\nHOST_ADDRESS_X=1\n";
        std::fs::write(paths.conf_dir.join("web.conf"), conf).unwrap();
        std::fs::write(paths.conf_dir.join("db.conf.creating"), "LOCAL_ADDRESS=10.233.2.2\n").unwrap();
        std::fs::write(paths.conf_dir.join("me.conf"), "LOCAL_ADDRESS=10.233.3.2\n").unwrap();
        let taken = taken_by_others(&paths, "me").unwrap();
        let mut names = taken.names.clone();
        names.sort();
        assert_eq!(names, ["db", "web"]);
        let mut addrs: Vec<String> = taken.addrs.iter().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["10.233.1.1", "10.233.1.2", "10.233.2.2", "fd6e::1", "fd6e::2"]);
        assert_eq!(taken.ports.len(), 1);
        assert_eq!(taken.ports[0].0, "web");

        // As a shell reads it: the last HOST_ADDRESS counts, and a line with
        // a broken quote hides only itself.
        let conf = "HOST_ADDRESS=10.233.5.1\nHOST_ADDRESS=10.233.6.1\nLOCAL_ADDRESS=\"10.233.6.2\nHOST_PORT=8081\n";
        std::fs::write(paths.conf_dir.join("web.conf"), conf).unwrap();
        let taken = taken_by_others(&paths, "me").unwrap();
        let mut addrs: Vec<String> = taken.addrs.iter().map(|a| a.to_string()).collect();
        addrs.sort();
        assert_eq!(addrs, ["10.233.2.2", "10.233.6.1"]);
        assert_eq!(taken.ports.len(), 1);
    }
}

//! The container lifecycle: create, start, stop, terminate, destroy.
//!
//! Each operation takes the container's lock for its whole run, so two
//! commands never change one container at the same time; create also takes
//! the global lock while it picks a name and addresses.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::addr::Pool4;
use crate::cgroup::ContainerCgroup;
use crate::conf::{Addr4, Conf};
use crate::container::Container;
use crate::error::{Error, IoContext, Result};
use crate::faults::crash_point;
use crate::fsutil;
use crate::lock::Lock;
use crate::name;
use crate::nixos_config::{self, UserConfig};
use crate::paths::{ContainerPaths, Paths};
use crate::profile::{self, BuildOutput, SystemSource};
use crate::rootfs;
use crate::supervisor::{self, Phase, Record};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

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

/// Addresses in use by any container (created or being created).
fn used_addresses(paths: &Paths) -> Result<HashSet<Ipv4Addr>> {
    let mut used = HashSet::new();
    let entries = match std::fs::read_dir(&paths.conf_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(used),
        Err(e) => return Err(e).context(|| format!("reading {}", paths.conf_dir.display())),
    };
    for e in entries.flatten() {
        let fname = e.file_name();
        let fname = fname.to_string_lossy();
        if !(fname.ends_with(".conf") || fname.ends_with(".conf.creating")) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        // A broken conf must not stop others from being created; its
        // addresses are read line by line as far as they parse.
        if let Ok(pairs) = crate::conf::parse_pairs(&text) {
            for (k, v) in pairs {
                if k == "HOST_ADDRESS" || k == "LOCAL_ADDRESS" {
                    if let Ok(a) = crate::conf::parse_addr4(&v) {
                        used.insert(a.addr);
                    }
                }
            }
        }
    }
    Ok(used)
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
    if conf.private_network && conf.host_bridge.is_none() && conf.host_address.is_none() {
        let used = used_addresses(paths)?;
        let (host, local) = Pool4::from_env()?.allocate(&used)?;
        conf.host_address = Some(Addr4 { addr: host, prefix: None });
        conf.local_address = Some(Addr4 { addr: local, prefix: None });
    }
    if let (Some(h), Some(l)) = (conf.host_address, conf.local_address) {
        tracing::info!("creating '{name}' with host address {h} and container address {l}");
    }
    let container_lock = Lock::exclusive(&p.lock, "the container's lock")?;
    let marker = creating_marker(&p);
    conf.save(&marker)?;
    drop(global);
    crash_point("create-reserved");

    match build_new(&name, &p, &req.source, req.output) {
        Ok(()) => {}
        Err(e) => {
            if let Err(cleanup) = remove_container_files(&p) {
                tracing::error!("cleaning up after the failed create: {cleanup}");
            }
            return Err(e);
        }
    }
    crash_point("create-built");
    // Under the global lock, so that allocation never sees neither file.
    let global = Lock::exclusive(&paths.global_lock(), "the global lock")?;
    std::fs::rename(&marker, &p.conf).context(|| format!("writing {}", p.conf.display()))?;
    drop(global);
    drop(container_lock);
    Ok(Created { name, conf: req.conf })
}

fn build_new(name: &str, p: &ContainerPaths, source: &Source, output: BuildOutput) -> Result<()> {
    fsutil::create_dir(&p.root, 0o755)?;
    fsutil::create_dir(&p.profile_dir, 0o755)?;
    fsutil::create_dir(&p.gcroots, 0o755)?;
    let build = match source {
        Source::Config { nixos_path, user } => {
            let config = nixos_config::write(&p.root.join("etc/nixos"), name, user)?;
            SystemSource::NixosConfig { nixos_path: nixos_path.clone(), config }
        }
        Source::SystemPath(path) => SystemSource::Path(path.clone()),
        Source::Flake(f) => {
            let (reference, attr) = crate::conf::split_flake(f);
            SystemSource::Flake { reference: reference.into(), attr: attr.into() }
        }
    };
    profile::build(&p.system_profile(), &build, output)?;
    Ok(())
}

/// Removes everything of a container but its lock.
fn remove_container_files(p: &ContainerPaths) -> Result<()> {
    fsutil::unmount_below(&p.root)?;
    fsutil::remove_tree(&p.root)?;
    fsutil::remove_tree(&p.profile_dir)?;
    fsutil::remove_tree(&p.gcroots)?;
    fsutil::remove_tree(&p.run)?;
    let _ = std::fs::remove_file(creating_marker(p));
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Nothing to do: already running for start, already stopped for stop.
    AlreadyThere,
}

/// Takes the container's lock, which every command that changes the
/// container holds for its whole run.
pub fn lock_container(c: &Container) -> Result<Lock> {
    Lock::exclusive(&c.paths.lock, &format!("container '{}'", c.name))
}

/// Starts a container and returns when it is ready for commands.
pub fn start(paths: &Paths, name: &str, timeout: Duration) -> Result<Outcome> {
    let c = Container::open(paths, name)?;
    let _lock = lock_container(&c)?;
    crash_point("start-locked");
    // Re-read under the lock: another command may have changed it.
    let c = Container::open(paths, name)?;
    start_locked(&c, timeout)
}

/// `start` for a caller that holds the container's lock.
pub fn start_locked(c: &Container, timeout: Duration) -> Result<Outcome> {
    let name = &c.name;
    let cgroup = c.cgroup()?;
    match Record::of_live_supervisor(c) {
        // Its guest is gone and it is cleaning up: let it finish, then start anew.
        Some(r) if r.phase == Phase::Stopping => {
            wait_for_supervisor_exit(c, Duration::from_secs(15));
        }
        Some(r) if r.phase == Phase::Running => return Ok(Outcome::AlreadyThere),
        // Being started by a start that died: wait for it, as for our own.
        Some(_) => {
            if wait_while_starting(c, timeout) {
                return Ok(Outcome::AlreadyThere);
            }
            wait_for_supervisor_exit(c, Duration::from_secs(15));
        }
        None if cgroup.is_populated() => return Ok(Outcome::AlreadyThere),
        None => {}
    }
    release_runtime(c, &cgroup);

    if c.conf.system_path.is_none() && !c.paths.system_profile().exists() {
        return Err(Error::other(format!(
            "container '{name}' has no system (its create did not finish); run 'nixos-container update {name}' to build one"
        )));
    }
    crate::nspawn::require_installed()?;
    crate::hostlimits::ensure_inotify_headroom(crate::cgroup::container_count())?;
    tracing::info!("preparing the root {}", c.paths.root.display());
    rootfs::prepare(&c.paths)?;
    crash_point("start-prepared");
    supervisor::launch(c, timeout, None)?;
    Ok(Outcome::Done)
}

/// Waits while the supervisor starts the guest; true once it runs.
fn wait_while_starting(c: &Container, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match Record::of_live_supervisor(c) {
            Some(r) if r.phase == Phase::Running => return true,
            Some(r) if r.phase == Phase::Starting => std::thread::sleep(Duration::from_millis(10)),
            _ => return false,
        }
    }
    false
}

/// Waits until a supervisor that is tearing down has finished.
fn wait_for_supervisor_exit(c: &Container, wait: Duration) -> bool {
    matches!(Lock::exclusive_within(&c.paths.supervisor_lock(), wait), Ok(Some(_)))
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
    let c = Container::open(paths, name)?;
    let _lock = lock_container(&c)?;
    stop_locked(&c, timeout)
}

/// `stop` for a caller that holds the container's lock.
pub fn stop_locked(c: &Container, timeout: Duration) -> Result<Outcome> {
    let name = &c.name;
    let cgroup = c.cgroup()?;
    let gone = || !cgroup.is_populated() && !c.supervisor_alive();
    if gone() {
        release_runtime(c, &cgroup);
        return Ok(Outcome::AlreadyThere);
    }
    tracing::info!("waiting up to {} s for {name} to halt", timeout.as_secs_f32());
    let deadline = Instant::now() + timeout;
    let mut told_supervisor = false;
    let mut next_signal = Instant::now();
    while !gone() && Instant::now() < deadline {
        if !told_supervisor {
            if let Some(pid) = Record::of_live_supervisor(c).map(|r| r.pid).filter(|p| *p > 0) {
                tracing::info!("asking the supervisor of {name} (PID {pid}) to halt it");
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
                told_supervisor = true;
                next_signal = Instant::now() + Duration::from_secs(1);
            }
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
    let c = Container::open(paths, name)?;
    let _lock = lock_container(&c)?;
    let cgroup = c.cgroup()?;
    let was_up = cgroup.is_populated() || c.supervisor_alive();
    finish_off(&c, &cgroup)?;
    Ok(if was_up { Outcome::Done } else { Outcome::AlreadyThere })
}

/// Kills the supervisor (so it launches nothing more) and every process of
/// the container, and removes the runtime state, which the dead supervisor
/// may not have done.
fn finish_off(c: &Container, cgroup: &ContainerCgroup) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(record) = Record::of_live_supervisor(c) {
        if record.pid > 0 {
            let _ = kill(Pid::from_raw(record.pid), Signal::SIGKILL);
        }
        if Instant::now() >= deadline {
            return Err(Error::other(format!("the supervisor of container '{}' does not exit", c.name)));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if !cgroup.kill_all(Duration::from_secs(5)) {
        let pids: Vec<String> = cgroup.pids().iter().map(|p| p.to_string()).collect();
        return Err(Error::other(format!(
            "processes of container '{}' survive SIGKILL (PIDs {}); they may be stuck in the kernel (D state)",
            c.name,
            pids.join(" ")
        )));
    }
    release_runtime(c, cgroup);
    Ok(())
}

/// Removes what a run of the container set up on the host. Safe to call
/// more than once, and on leftovers of a run whose supervisor died.
pub fn release_runtime(c: &Container, cgroup: &ContainerCgroup) {
    cgroup.remove();
    let _ = std::fs::remove_file(c.paths.state_file());
    let _ = std::fs::remove_file(c.paths.run.join("notify"));
}

/// Stops the container if it runs, then removes its root (never what is
/// mounted into it), profile, GC roots, runtime state and conf, in that
/// order: until the conf is gone, a failed destroy can be run again.
pub fn destroy(paths: &Paths, name: &str) -> Result<()> {
    name::validate(name)?;
    let p = paths.container(name);
    let marker = creating_marker(&p);
    if !p.conf.exists() && marker.exists() {
        // The remains of a create that died half-way.
        let Some(_lock) = Lock::try_exclusive(&p.lock)? else {
            return Err(crate::lock::busy(name));
        };
        return remove_container_files(&p);
    }
    let c = Container::open(paths, name)?;
    if c.is_declarative() {
        return Err(Error::other(format!(
            "container '{name}' is declarative ({} is read-only); remove it from your NixOS configuration instead",
            c.paths.conf.display()
        )));
    }
    let _lock = lock_container(&c)?;
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
    crash_point("destroy-files");
    std::fs::remove_file(&c.paths.conf).context(|| format!("removing {}", c.paths.conf.display()))?;
    Ok(())
}

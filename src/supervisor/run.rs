//! The supervisor process (`nixos-container __supervise NAME`): runs nspawn
//! in the container's cgroup, reports readiness, restarts the guest on a
//! reboot, and cleans up when it is gone.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::console::Console;
use super::readiness::{self, Notifications, Ready, Report, Reporter};
use super::record::Record;
use super::{LOCK_FD, REPORT_FD};
use crate::cgroup::ContainerCgroup;
use crate::container::{Container, RunState, log_tail};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::Lock;
use crate::net::netlink::NETNS_DIR;
use crate::nspawn;
use crate::supervision::Phase;

/// nspawn's exit status when the guest asked for a reboot.
pub const EXIT_REBOOT: i32 = 133;

/// The supervisor's command line arguments (after `__supervise`).
pub struct SuperviseArgs {
    pub timeout: Duration,
    /// The container's network namespace, which nspawn runs in.
    pub netns: Option<PathBuf>,
}

static NSPAWN_PID: AtomicI32 = AtomicI32::new(0);
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// SIGTERM asks for a clean halt: nspawn turns its first SIGTERM into
/// SIGRTMIN+3 for the guest's init, and a second one into an immediate kill,
/// so only the first is passed on.
extern "C" fn forward_stop(_: libc::c_int) {
    if STOP_REQUESTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let pid = NSPAWN_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The supervisor's main; returns its exit code.
pub fn supervise(c: &Container, args: &SuperviseArgs) -> i32 {
    // Whatever else the caller of `start` had open (a script's lock file,
    // say) must not stay open for the container's lifetime.
    // SAFETY: closes descriptors above ours (0-2, report, lock); no Rust
    // object owns any of them.
    unsafe { libc::syscall(libc::SYS_close_range, LOCK_FD as libc::c_uint + 1, libc::c_uint::MAX, 0) };
    let mut report = Reporter::from_fd(REPORT_FD);
    let console = match Console::take_over(&c.paths.console_log()) {
        Ok(console) => Some(console),
        Err(e) => {
            // The console then goes to the file unbounded, as it was opened.
            eprintln!("nixos-container supervisor: the console log will not be bounded: {e}");
            None
        }
    };
    let code = match supervise_inner(c, args, &mut report, console.as_ref()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nixos-container supervisor: {e}");
            report.send(&Report::Failed(e.to_string()));
            1
        }
    };
    flush(console.as_ref());
    code
}

/// Gets what was written to the console into the log, before its last
/// lines are quoted or the process ends.
fn flush(console: Option<&Console>) {
    if let Some(console) = console {
        console.flush(Duration::from_secs(1));
    }
}

/// Takes over the supervisor lock `launch` handed us (or takes it, when run
/// by hand). nspawn must not inherit it: the lock means "the supervisor lives".
fn adopt_lock(c: &Container) -> Result<File> {
    // SAFETY: fd 4 is ours if `launch` started us; checked before use.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(LOCK_FD) };
    if nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok() {
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        // SAFETY: as above; we own it from here on.
        return Ok(unsafe { File::from_raw_fd(LOCK_FD) });
    }
    match Lock::try_exclusive(&c.paths.supervisor_lock())? {
        Some(lock) => Ok(lock.into_file()),
        None => Err(Error::other("another supervisor runs this container")),
    }
}

fn set_phase(lock: &File, phase: Phase) {
    let _ = Record { pid: Some(Pid::this()), phase }.write(lock);
}

fn supervise_inner(
    c: &Container,
    args: &SuperviseArgs,
    report: &mut Reporter,
    console: Option<&Console>,
) -> Result<()> {
    // Held until the process is gone (never dropped): whoever waits for the
    // supervisor's exit must not see it released a moment before.
    let alive = std::mem::ManuallyDrop::new(adopt_lock(c)?);
    // Before our PID is published: a stop that finds it must not kill us
    // before we could clean up.
    // SAFETY: installing handlers; forward_stop only calls kill.
    unsafe {
        for s in [Signal::SIGINT, Signal::SIGHUP, Signal::SIGPIPE] {
            let _ = signal::signal(s, SigHandler::SigIgn);
        }
        let _ = signal::signal(Signal::SIGTERM, SigHandler::Handler(forward_stop));
    }
    set_phase(&alive, Phase::Starting);

    let cgroup = c.cgroup()?;
    let result = nix::sys::prctl::set_child_subreaper(true)
        .context(|| "becoming a subreaper".into())
        .and_then(|()| cgroup.create())
        .and_then(|()| crate::limits::apply(&cgroup, &c.conf.limits))
        .and_then(|()| restrict_devices(c, &cgroup))
        .and_then(|()| run_container(c, args, &cgroup, report, &alive, console));
    set_phase(&alive, Phase::Stopping);
    if let Err(e) = &result {
        report.send(&Report::Failed(e.to_string()));
    }
    // Whatever happened, nothing of the container may outlive us.
    if !cgroup.kill_all(Duration::from_secs(10)) {
        eprintln!("nixos-container supervisor: processes of {} would not die", c.name);
    }
    reap_all();
    crate::lifecycle::release_runtime(c, &cgroup);
    result
}

/// The guest's device policy, on its cgroup before nspawn joins it.
fn restrict_devices(c: &Container, cgroup: &ContainerCgroup) -> Result<()> {
    let nodes = crate::devices::nodes(&c.conf.devices)?;
    if !cgroup.restrict_devices(&crate::devices::rules(&nodes))? {
        eprintln!(
            "nixos-container supervisor: this host has no cgroup2 tree: {} gets no device policy, \
             its root may open any host device (see SECURITY.md)",
            c.name
        );
    }
    Ok(())
}

fn run_container(
    c: &Container,
    args: &SuperviseArgs,
    cgroup: &ContainerCgroup,
    report: &mut Reporter,
    alive: &File,
    console: Option<&Console>,
) -> Result<()> {
    let notify_path = c.paths.run.join("notify");
    let _ = std::fs::remove_file(&notify_path);
    let notify =
        socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
            .context(|| "creating the notify socket".into())?;
    bind(notify.as_raw_fd(), &UnixAddr::new(&notify_path).map_err(|e| Error::other(e.to_string()))?)
        .context(|| format!("binding {}", notify_path.display()))?;
    let notes = Notifications::drain(notify)?;

    let argv = nspawn::command_line(&nspawn::Launch {
        mode: nspawn::Mode::Own,
        name: &c.name,
        paths: &c.paths,
        conf: &c.conf,
        in_own_netns: args.netns.is_some(),
        host_has: &|p: &Path| p.exists(),
    });
    eprintln!("nixos-container supervisor: {}", nspawn::display(&argv));
    report.send(&Report::Runs(nspawn::display(&argv)));
    // A namespace of the user's under /run/netns must stay reachable.
    let keep_run_netns = c.conf.network_namespace_path.as_ref().is_some_and(|p| p.starts_with(NETNS_DIR));
    let system =
        std::fs::canonicalize(c.paths.system_profile()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut first_boot = true;
    loop {
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            return Err(Error::other("stopped before the guest was launched"));
        }
        let seen = notes.count();
        let child = spawn_nspawn(&argv, cgroup, &notify_path, args.netns.as_deref(), keep_run_netns)?;
        let pid = Pid::from_raw(child as i32);
        NSPAWN_PID.store(pid.as_raw(), Ordering::SeqCst);
        // A stop that came between the check above and now.
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            let _ = signal::kill(pid, Signal::SIGTERM);
        }
        let state = RunState {
            supervisor_pid: std::process::id() as i32,
            nspawn_pid: pid.as_raw(),
            started_at: now(),
            system: system.clone(),
            started_with: Some(c.conf.launch_settings()),
        };
        let json = serde_json::to_vec(&state).expect("state serialises");
        fsutil::write_atomic(&c.paths.state_file(), &json, 0o644)?;

        if first_boot {
            first_boot = false;
            match readiness::wait_ready(c, cgroup, pid, &notes, seen, args.timeout) {
                Ready::Yes => {
                    set_phase(alive, Phase::Running);
                    report.send(&Report::Ready(None))
                }
                Ready::ByShell => {
                    set_phase(alive, Phase::Running);
                    eprintln!("nixos-container supervisor: {}", readiness::BY_SHELL);
                    report.send(&Report::Ready(Some(readiness::BY_SHELL.into())))
                }
                Ready::Exited(_) if STOP_REQUESTED.load(Ordering::SeqCst) => {
                    return Err(Error::other("stopped while it was starting"));
                }
                failed => {
                    // What the console said when the wait ended: taken before
                    // the halt below, whose own lines would hide the start
                    // job that hung.
                    flush(console);
                    let tail = log_tail(&c.paths.console_log(), 8);
                    if !matches!(failed, Ready::Exited(_)) {
                        stop_nspawn(pid, cgroup);
                    }
                    return Err(Error::other(readiness::failure(&failed, args.timeout, &tail)));
                }
            }
        }
        let code = wait_for(pid);
        NSPAWN_PID.store(0, Ordering::SeqCst);
        if code != EXIT_REBOOT {
            return Ok(());
        }
        eprintln!("nixos-container supervisor: {} asked for a reboot", c.name);
        // The old boot's sockets must not count as the new boot's readiness.
        let _ = crate::guest::remove_sockets(&c.paths.root);
    }
}

/// Gives the calling process a mount namespace of its own without the
/// network namespaces mounted under /run/netns. Between fork and exec.
///
/// Every mount namespace that nspawn makes for a guest keeps hidden copies
/// of the mounts nspawn's own namespace had, and receives the host's new
/// /run/netns mounts by propagation: with N containers, each guest holds N
/// invisible mounts, reading its mountinfo costs O(N), and every start (one
/// more mount) makes all N guests' systemd read theirs again: O(N²) per
/// start. Measured: a guest's 43-line mountinfo took 110 µs to read, 586 µs
/// after 300 namespaces were added on the host; starts at N=1000 took 3x
/// as long as at N=100.
fn leave_netns_mounts_behind() -> std::io::Result<()> {
    // SAFETY: plain syscalls on static C strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Nothing done here or by nspawn reaches the host's namespace.
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_SLAVE,
            std::ptr::null(),
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // Not a mount point when no container has a private network: fine.
        libc::umount2(c"/run/netns".as_ptr(), libc::MNT_DETACH);
    }
    Ok(())
}

fn spawn_nspawn(
    argv: &[std::ffi::OsString],
    cgroup: &ContainerCgroup,
    notify: &Path,
    netns: Option<&Path>,
    keep_run_netns: bool,
) -> Result<u32> {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env("NOTIFY_SOCKET", notify).stdin(Stdio::null());
    // On a hybrid host nspawn would give the guest the legacy v1 layout,
    // where its systemd misses "cgroup empty" events (units hang in
    // "deactivating" until their stop timeout). Where the host has a cgroup2
    // tree, the guest gets a unified hierarchy of its own instead.
    if cgroup.has_unified() {
        cmd.env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1");
    }
    let procs_files = cgroup.procs_files();
    // nspawn itself runs in the container's network namespace (besides
    // --network-namespace-path): the sysfs it mounts for the guest then
    // lists the guest's interfaces, not the host's. Its mount namespace is
    // a plain copy of ours less /run/netns; `ip netns exec` would also
    // remount /sys and hide the host's cgroups from nspawn.
    let netns_fd = match netns {
        Some(p) => Some(File::open(p).context(|| format!("opening {}", p.display()))?),
        None => None,
    };
    let netns_raw = netns_fd.as_ref().map(|f| f.as_raw_fd());
    // SAFETY: only system calls between fork and exec (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            if let Some(fd) = netns_raw
                && libc::setns(fd, libc::CLONE_NEWNET) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if !keep_run_netns {
                leave_netns_mounts_behind()?;
            }
            crate::cgroup::join_self(&procs_files)
        });
    }
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingProgram {
            program: "systemd-nspawn",
            hint: "install systemd-container (the same version as systemd)",
        },
        _ => Error::Io { context: "starting systemd-nspawn".into(), source: e },
    })?;
    Ok(child.id())
}

/// Waits for nspawn to exit (reaping orphans meanwhile); returns its exit code.
fn wait_for(pid: Pid) -> i32 {
    loop {
        match waitpid(None, None) {
            Ok(WaitStatus::Exited(p, code)) if p == pid => return code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return 128 + sig as i32,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => return -1,
        }
    }
}

/// Asks nspawn to halt the guest, then kills what remains.
fn stop_nspawn(pid: Pid, cgroup: &ContainerCgroup) {
    let _ = signal::kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cgroup.kill_all(Duration::from_secs(5));
}

/// Reaps the container's processes that came to us (we are their
/// subreaper), once the cgroup is empty. A process leaves the cgroup before
/// the kernel hands its orphans on, so more zombies can reach us a moment
/// after the cgroup looks empty: we keep reaping until nothing has come for
/// 100 ms (at most 2 s), or they would be left to the host's init, which
/// may never reap them.
fn reap_all() {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(100) {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => std::thread::sleep(Duration::from_millis(5)),
            Err(Errno::EINTR) => {}
            Ok(_) => quiet_since = Instant::now(),
            Err(_) => return,
        }
    }
}

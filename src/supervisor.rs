//! Launch and supervision of a running container.
//!
//! There may be no systemd on the host to keep a container running after the
//! CLI exits, so `start` forks a small supervisor of our own
//! (`nixos-container __supervise NAME`, in a session of its own). The
//! supervisor:
//! - puts systemd-nspawn into the container's cgroup and runs it;
//! - tells `start` through a pipe when the guest is ready (its root-shell
//!   socket appeared, or nspawn forwarded the guest's READY=1), or why not;
//! - restarts nspawn when the guest reboots (nspawn exits with 133);
//! - when the guest is gone, kills what is left in the cgroup and removes
//!   everything `start` set up, then exits.
//!
//! Its flock on `RUN/NAME/supervisor.lock` tells others that it lives.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::signal::{self, SigHandler, Signal};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, bind, socket};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup::ContainerCgroup;
use crate::container::{Container, RunState, log_tail};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::lock::Lock;
use crate::net::netlink::NETNS_DIR;
use crate::nspawn;

/// The file descriptor on which the supervisor reports to `start`.
const REPORT_FD: RawFd = 3;
/// The supervisor lock, taken by `start` and inherited.
const LOCK_FD: RawFd = 4;

/// What the supervisor is doing, recorded in its lock file with its PID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Launching nspawn and waiting for the guest.
    Starting,
    Running,
    /// The guest is gone; cleaning up.
    Stopping,
}

/// The content of the supervisor lock file: `PID PHASE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    pub pid: i32,
    pub phase: Phase,
}

impl Record {
    fn render(&self) -> String {
        let phase = match self.phase {
            Phase::Starting => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
        };
        format!("{} {phase}\n", self.pid)
    }

    pub fn parse(text: &str) -> Option<Record> {
        let (pid, phase) = text.trim().split_once(' ')?;
        let phase = match phase {
            "starting" => Phase::Starting,
            "running" => Phase::Running,
            "stopping" => Phase::Stopping,
            _ => return None,
        };
        Some(Record { pid: pid.parse().ok()?, phase })
    }

    fn write(&self, file: &File) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let text = self.render();
        file.set_len(0)
            .and_then(|()| file.write_all_at(text.as_bytes(), 0))
            .context(|| "recording the supervisor's state".into())
    }

    /// The record of a live supervisor, if one holds the lock.
    pub fn of_live_supervisor(c: &Container) -> Option<Record> {
        let path = c.paths.supervisor_lock();
        if !crate::lock::is_held(&path) {
            return None;
        }
        // Just launched, not written yet: starting, PID unknown.
        Some(
            std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| Record::parse(&t))
                .unwrap_or(Record { pid: 0, phase: Phase::Starting }),
        )
    }
}
/// nspawn's exit status when the guest asked for a reboot.
const EXIT_REBOOT: i32 = 133;

/// The supervisor's command line arguments (after `__supervise`).
pub struct SuperviseArgs {
    pub timeout: Duration,
    pub netns: Option<PathBuf>,
}

/// Starts the supervisor for `c` and waits until the container is ready or
/// has failed. Called by `start` with the container's lock held.
pub fn launch(c: &Container, timeout: Duration, netns: Option<&Path>) -> Result<()> {
    fsutil::create_dir(&c.paths.run, 0o755)?;
    let log = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o640)
        .open(c.paths.console_log())
        .context(|| format!("creating {}", c.paths.console_log().display()))?;
    let (read_end, write_end) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context(|| "creating a pipe".into())?;
    // Taken here and inherited by the supervisor, so that from this moment
    // on everybody sees that a supervisor runs, even if we die right away.
    // (Within a moment: `status` may be holding a shared lock to look.)
    let Some(alive) = Lock::exclusive_within(&c.paths.supervisor_lock(), Duration::from_secs(2))? else {
        return Err(Error::other(format!("a supervisor of container '{}' is still running", c.name)));
    };
    Record { pid: 0, phase: Phase::Starting }.write(alive.file())?;

    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("nixos-container")
        .arg("__supervise")
        .arg(&c.name)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string());
    if let Some(ns) = netns {
        cmd.arg("--netns").arg(ns);
    }
    let log2 = log.try_clone().context(|| "duplicating the log".into())?;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
    let report = write_end.as_raw_fd();
    let lock = alive.as_fd().as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Both are first moved above the targets: one may already sit
            // on the other's target, or on its own (where dup2 does nothing
            // and close-on-exec would stay set). The copies left above are
            // closed by the supervisor.
            let high = [report, lock].map(|fd| libc::fcntl(fd, libc::F_DUPFD, LOCK_FD + 1));
            for (from, to) in [(high[0], REPORT_FD), (high[1], LOCK_FD)] {
                if from < 0 || libc::dup2(from, to) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    tracing::info!("launching the supervisor of {}, which runs:", c.name);
    let argv = nspawn::command_line(&nspawn::Launch {
        name: &c.name,
        paths: &c.paths,
        conf: &c.conf,
        netns: netns.map(Path::to_path_buf),
        host_has: &|p: &Path| p.exists(),
    });
    tracing::info!("{}", nspawn::display(&argv));
    cmd.spawn().context(|| "starting the supervisor".into())?;
    drop(write_end);
    drop(alive); // the supervisor holds it now
    crate::faults::crash_point("start-launched");

    // The supervisor applies the timeout itself; this margin only covers a
    // supervisor that hangs.
    let verdict = read_report(read_end, timeout + Duration::from_secs(15));
    match verdict {
        Some(line) if line == "ready" => Ok(()),
        Some(line) => Err(Error::StartFailed {
            name: c.name.clone(),
            reason: line.strip_prefix("error ").unwrap_or(&line).to_string(),
        }),
        None => {
            let tail = log_tail(&c.paths.console_log(), 8);
            Err(Error::StartFailed {
                name: c.name.clone(),
                reason: if tail.is_empty() {
                    "the supervisor exited without a word".into()
                } else {
                    format!("the supervisor exited; the console said:\n{tail}")
                },
            })
        }
    }
}

/// Reads the supervisor's one-line verdict; None on EOF or timeout.
fn read_report(fd: OwnedFd, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(fd);
    let mut buf = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return None,
            Ok(0) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {}
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.split('\n').next().unwrap_or("").replace('\x1f', "\n");
    (!line.is_empty()).then_some(line)
}

/// Writes the verdict for `start`, once.
struct Reporter(Option<File>);

impl Reporter {
    fn from_fd() -> Reporter {
        // SAFETY: fd 3 was set up by `launch` for us alone.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(REPORT_FD) };
        let valid = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        // nspawn must not inherit it, or `start` would wait for nspawn's end.
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        Reporter(valid.then(|| unsafe { File::from_raw_fd(REPORT_FD) }))
    }

    fn send(&mut self, line: &str) {
        if let Some(mut f) = self.0.take() {
            // Newlines inside a message travel as \x1f.
            let _ = writeln!(f, "{}", line.replace('\n', "\x1f"));
        }
    }
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
    let mut report = Reporter::from_fd();
    match supervise_inner(c, args, &mut report) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("nixos-container supervisor: {e}");
            report.send(&format!("error {e}"));
            1
        }
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
    let _ = Record { pid: std::process::id() as i32, phase }.write(lock);
}

fn supervise_inner(c: &Container, args: &SuperviseArgs, report: &mut Reporter) -> Result<()> {
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
        .and_then(|()| run_container(c, args, &cgroup, report, &alive));
    set_phase(&alive, Phase::Stopping);
    if let Err(e) = &result {
        report.send(&format!("error {e}"));
    }
    // Whatever happened, nothing of the container may outlive us.
    if !cgroup.kill_all(Duration::from_secs(10)) {
        eprintln!("nixos-container supervisor: processes of {} would not die", c.name);
    }
    reap_all();
    crate::lifecycle::release_runtime(c, &cgroup);
    result
}

fn run_container(
    c: &Container,
    args: &SuperviseArgs,
    cgroup: &ContainerCgroup,
    report: &mut Reporter,
    alive: &File,
) -> Result<()> {
    let notify_path = c.paths.run.join("notify");
    let _ = std::fs::remove_file(&notify_path);
    let notify =
        socket(AddressFamily::Unix, SockType::Datagram, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)
            .context(|| "creating the notify socket".into())?;
    bind(notify.as_raw_fd(), &UnixAddr::new(&notify_path).map_err(|e| Error::other(e.to_string()))?)
        .context(|| format!("binding {}", notify_path.display()))?;

    let argv = nspawn::command_line(&nspawn::Launch {
        name: &c.name,
        paths: &c.paths,
        conf: &c.conf,
        // nspawn runs in the namespace already (see spawn_nspawn), where
        // /run/netns is not mounted: it joins it by its own handle.
        netns: args.netns.as_ref().map(|_| PathBuf::from(OWN_NETNS)),
        host_has: &|p: &Path| p.exists(),
    });
    // A namespace of the user's under /run/netns must stay reachable.
    let keep_run_netns = c.conf.network_namespace_path.as_ref().is_some_and(|p| p.starts_with(NETNS_DIR));
    let system =
        std::fs::canonicalize(c.paths.system_profile()).map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let mut first_boot = true;
    loop {
        if STOP_REQUESTED.load(Ordering::SeqCst) {
            return Err(Error::other("stopped before the guest was launched"));
        }
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
            match wait_ready(c, pid, &notify, args.timeout) {
                Ready::Yes => {
                    set_phase(alive, Phase::Running);
                    report.send("ready")
                }
                Ready::Exited(_) if STOP_REQUESTED.load(Ordering::SeqCst) => {
                    return Err(Error::other("stopped while it was starting"));
                }
                Ready::Exited(status) => {
                    let tail = log_tail(&c.paths.console_log(), 8);
                    return Err(Error::other(format!("systemd-nspawn exited ({status}); the console said:\n{tail}")));
                }
                Ready::Failed(why) => {
                    stop_nspawn(pid, cgroup);
                    return Err(Error::other(why));
                }
                Ready::TimedOut => {
                    stop_nspawn(pid, cgroup);
                    let tail = log_tail(&c.paths.console_log(), 8);
                    return Err(Error::other(format!(
                        "not ready after {} s; the console said:\n{tail}",
                        args.timeout.as_secs_f32()
                    )));
                }
            }
        }
        drop_notify_backlog(&notify);
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

/// The network namespace nspawn runs in, by a path that needs no mount.
const OWN_NETNS: &str = "/proc/self/ns/net";

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
    eprintln!("nixos-container supervisor: {}", nspawn::display(argv));
    let child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::MissingProgram {
            program: "systemd-nspawn",
            hint: "install systemd-container (the same version as systemd)",
        },
        _ => Error::Io { context: "starting systemd-nspawn".into(), source: e },
    })?;
    Ok(child.id())
}

enum Ready {
    Yes,
    /// We could not watch for readiness.
    Failed(String),
    Exited(String),
    TimedOut,
}

fn watch_var_lib(c: &Container) -> Result<Inotify> {
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).context(|| "inotify".into())?;
    let var_lib = c.paths.root.join("var/lib");
    inotify
        .add_watch(&var_lib, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
        .context(|| format!("watching {}", var_lib.display()))?;
    Ok(inotify)
}

/// Waits until the guest's root-shell socket exists or nspawn forwards the
/// guest's READY=1, while watching for nspawn's death.
fn wait_ready(c: &Container, pid: Pid, notify: &OwnedFd, timeout: Duration) -> Ready {
    let deadline = Instant::now() + timeout;
    // Only while waiting: every instance counts against the host's limit.
    let inotify = match watch_var_lib(c) {
        Ok(i) => i,
        Err(e) => return Ready::Failed(e.to_string()),
    };
    let socket = crate::guest::ROOT_SHELL_SOCKET;
    loop {
        // The file appears at bind(), but connections work only after
        // listen(): try one (the guest's shell sees EOF and exits).
        if crate::guest::connect_once(&c.paths.root, socket).is_ok() {
            return Ready::Yes;
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Ready::Exited(describe(status)),
            Err(e) => return Ready::Exited(e.to_string()),
        }
        if read_ready(notify) {
            return Ready::Yes;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ready::TimedOut;
        }
        // Wake on a new file in var/lib or a notification; at least every
        // 50 ms to notice nspawn's exit.
        let ms = left.min(Duration::from_millis(50)).as_millis() as u16;
        let mut fds = [PollFd::new(notify.as_fd(), PollFlags::POLLIN), PollFd::new(inotify.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(ms));
        while inotify.read_events().map(|e| !e.is_empty()).unwrap_or(false) {}
    }
}

/// Reads pending notifications; true when one says READY=1.
fn read_ready(notify: &OwnedFd) -> bool {
    let mut ready = false;
    let mut buf = [0u8; 4096];
    loop {
        match nix::sys::socket::recv(notify.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty()) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]);
                ready |= msg.lines().any(|l| l == "READY=1");
            }
            Err(_) => return ready,
        }
    }
}

/// After readiness nobody reads the socket; drain what is queued so that
/// nspawn never blocks on a full buffer.
fn drop_notify_backlog(notify: &OwnedFd) {
    read_ready(notify);
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        other => format!("{other:?}"),
    }
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

fn reap_all() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

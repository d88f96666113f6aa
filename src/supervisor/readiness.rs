//! When is a guest ready, and how the supervisor tells `start`.
//!
//! A guest is ready when its systemd has booted: multi-user.target (or
//! whatever its default target is) reached, which systemd announces with
//! `READY=1`, forwarded by nspawn (`--notify-ready=yes`) to the supervisor's
//! notify socket. A guest whose init is not systemd never says so; for it,
//! the root-shell socket accepting a connection is the best sign there is,
//! and `start` says that it went by that.
//!
//! The notify socket is read for the container's whole life (a thread of
//! the supervisor): nspawn blocks in `sendmsg` once the socket's queue is
//! full, and a blocked nspawn does not pass on a halt.
//!
//! The supervisor writes lines to `start` on a pipe (fd 3 in the
//! supervisor): first what it runs, then one verdict. Newlines inside a
//! message travel as `\x1f`.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::cgroup::ContainerCgroup;
use crate::container::Container;
use crate::error::{IoContext, Result};

/// One line from the supervisor to `start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// The nspawn command line it runs (for `-v`), shell-quoted.
    Runs(String),
    /// The guest is ready; with a note on how that was decided, when it
    /// was not by the guest's READY=1.
    Ready(Option<String>),
    /// It is not, and why (with the console's last lines).
    Failed(String),
}

impl Report {
    pub fn line(&self) -> String {
        let (word, text) = match self {
            Report::Runs(argv) => ("runs", argv.as_str()),
            Report::Ready(None) => return "ready\n".into(),
            Report::Ready(Some(note)) => ("ready", note.as_str()),
            Report::Failed(why) => ("error", why.as_str()),
        };
        format!("{word} {}\n", text.replace('\n', "\x1f"))
    }

    pub fn parse(line: &str) -> Option<Report> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        if line == "ready" {
            return Some(Report::Ready(None));
        }
        let (word, text) = line.split_once(' ')?;
        let text = text.replace('\x1f', "\n");
        match word {
            "runs" => Some(Report::Runs(text)),
            "ready" => Some(Report::Ready(Some(text))),
            "error" => Some(Report::Failed(text)),
            _ => None,
        }
    }

    /// Whether `start` waits for more after this one.
    pub fn is_verdict(&self) -> bool {
        !matches!(self, Report::Runs(_))
    }
}

/// The supervisor's end of the pipe.
pub struct Reporter(Option<File>);

impl Reporter {
    /// The pipe `launch` set up at `fd`; none when the supervisor was
    /// started some other way.
    pub fn from_fd(fd: RawFd) -> Reporter {
        // SAFETY: the fd was set up by `launch` for us alone; checked below.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let valid = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        // nspawn must not inherit it, or `start` would wait for nspawn's end.
        let _ = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
        // SAFETY: as above; owned from here on.
        Reporter(valid.then(|| unsafe { File::from_raw_fd(fd) }))
    }

    /// Sends `report`; after a verdict nothing more is sent.
    pub fn send(&mut self, report: &Report) {
        let verdict = report.is_verdict();
        if let Some(f) = self.0.as_mut() {
            let _ = f.write_all(report.line().as_bytes());
        }
        if verdict {
            self.0 = None;
        }
    }
}

/// Reads reports until a verdict, passing the others to `seen`. None on EOF
/// (the supervisor died) or after `timeout`.
pub fn read_verdict(fd: OwnedFd, timeout: Duration, mut seen: impl FnMut(Report)) -> Option<Report> {
    let deadline = Instant::now() + timeout;
    let mut file = File::from(fd);
    let mut buf = Vec::new();
    loop {
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            match Report::parse(&String::from_utf8_lossy(&line)) {
                Some(r) if r.is_verdict() => return Some(r),
                Some(r) => seen(r),
                None => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(0) if left.is_zero() => return None,
            Ok(0) | Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {}
        }
        let mut chunk = [0u8; 4096];
        match file.read(&mut chunk) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// How the wait for a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Its systemd said READY=1.
    Yes,
    /// Its init is not systemd (never says READY=1), and its root shell
    /// answers.
    ByShell,
    /// We could not watch for readiness.
    Failed(String),
    /// nspawn exited (how).
    Exited(String),
    /// No READY=1 within the timeout; whether the root shell answered.
    TimedOut { shell_answers: bool },
}

/// What `start` is told about a guest that is ready by its shell only.
pub const BY_SHELL: &str =
    "its init is not systemd, which would report when the boot is done; ready as its root-shell socket answers";

/// The message `start` shows for a guest that did not get ready; `tail` is
/// the console's last lines.
pub fn failure(ready: &Ready, timeout: Duration, tail: &str) -> String {
    let said = |what: String| {
        if tail.is_empty() {
            format!("{what}; the console said nothing")
        } else {
            format!("{what}; the console said:\n{tail}")
        }
    };
    let secs = timeout.as_secs_f32();
    match ready {
        Ready::Yes | Ready::ByShell => "ready".into(),
        Ready::Failed(why) => why.clone(),
        Ready::Exited(status) => said(format!("systemd-nspawn exited ({status})")),
        Ready::TimedOut { shell_answers: false } => said(format!("not ready after {secs} s")),
        Ready::TimedOut { shell_answers: true } => said(format!(
            "not ready after {secs} s: its root shell answers, but its systemd did not finish booting (a unit that never finishes starting? a longer --timeout?)"
        )),
    }
}

/// How a process ended, in words.
pub fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by {sig}"),
        other => format!("{other:?}"),
    }
}

/// An inotify watch on the guest's /var/lib (where its sockets appear), or
/// None if there is none to be had: then readiness is polled. The
/// directory is opened with the root as `/` (a guest's /var/lib may be a
/// symlink, say to /persist/var/lib, that means a path inside its root) and
/// watched through the descriptor, so the watch never lands on a host path.
fn watch_var_lib(root: &Path) -> Option<Inotify> {
    let dir = match crate::rootfs::open_in_root(root, "var/lib", OFlag::O_PATH | OFlag::O_DIRECTORY) {
        Ok(dir) => dir,
        Err(e) => {
            tracing::debug!("not watching var/lib: {e}");
            return None;
        }
    };
    let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
        .inspect_err(|e| tracing::debug!("not watching var/lib: inotify: {e}"))
        .ok()?;
    // The magic link leads to the opened directory itself.
    let proc = format!("/proc/self/fd/{}", dir.as_raw_fd());
    let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_ONLYDIR;
    match inotify.add_watch(proc.as_str(), flags) {
        Ok(_) => Some(inotify),
        Err(e) => {
            tracing::debug!("not watching {}/var/lib: {e}", root.display());
            None
        }
    }
}

/// READY=1 notifications as the supervisor's notify thread counts them.
pub struct Notifications {
    count: Arc<AtomicU64>,
    /// Readable after each READY=1.
    wake: OwnedFd,
}

impl Notifications {
    /// Reads `notify` on a thread of its own for as long as the process
    /// lives, counting READY=1.
    pub fn drain(notify: OwnedFd) -> Result<Notifications> {
        let (wake, woken) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .context(|| "creating a pipe".into())?;
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        std::thread::Builder::new()
            .name("notify".into())
            .spawn(move || {
                loop {
                    let mut fds = [PollFd::new(notify.as_fd(), PollFlags::POLLIN)];
                    if let Err(e) = poll(&mut fds, PollTimeout::NONE)
                        && e != Errno::EINTR
                    {
                        return;
                    }
                    if read_ready(&notify) {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = nix::unistd::write(&woken, b"r");
                    }
                }
            })
            .context(|| "starting the notify thread".into())?;
        Ok(Notifications { count, wake })
    }

    /// How many READY=1 came so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

/// Whether the guest's init (the leader of its PID namespace) is systemd.
/// None while it cannot be told.
fn init_is_systemd(cgroup: &ContainerCgroup) -> Option<bool> {
    let leader = cgroup.leader()?;
    let comm = std::fs::read_to_string(format!("/proc/{leader}/comm")).ok()?;
    Some(comm.trim_end() == "systemd")
}

/// Waits until the guest's systemd says READY=1 (a READY beyond `seen`), or
/// for a guest without systemd until its root-shell socket accepts, while
/// watching for nspawn's death.
pub fn wait_ready(
    c: &Container,
    cgroup: &ContainerCgroup,
    pid: Pid,
    notes: &Notifications,
    seen: u64,
    timeout: Duration,
) -> Ready {
    let deadline = Instant::now() + timeout;
    // Only while waiting: every instance counts against the host's limit.
    let inotify = watch_var_lib(&c.paths.root);
    let socket = crate::guest::ROOT_SHELL_SOCKET;
    let mut shell_answers = false;
    let mut systemd = None;
    loop {
        if notes.count() > seen {
            return Ready::Yes;
        }
        // The file appears at bind(), but connections work only after
        // listen(): try one (the guest's shell sees EOF and exits). Once
        // it answered, it is not tried again: each try starts a shell.
        if !shell_answers {
            shell_answers = crate::guest::connect_once(&c.paths.root, socket).is_ok();
        }
        if shell_answers && systemd.is_none() {
            systemd = init_is_systemd(cgroup);
            if systemd == Some(false) {
                return Ready::ByShell;
            }
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::EINTR) => {}
            Ok(status) => return Ready::Exited(describe(status)),
            Err(e) => return Ready::Exited(e.to_string()),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ready::TimedOut { shell_answers };
        }
        // Wake on READY=1 or a new file in var/lib; at least every 50 ms to
        // notice nspawn's exit.
        let ms = left.min(Duration::from_millis(50)).as_millis() as u16;
        let mut fds = vec![PollFd::new(notes.wake.as_fd(), PollFlags::POLLIN)];
        fds.extend(inotify.as_ref().map(|i| PollFd::new(i.as_fd(), PollFlags::POLLIN)));
        let _ = poll(&mut fds, PollTimeout::from(ms));
        let mut drained = [0u8; 64];
        while nix::unistd::read(&notes.wake, &mut drained).is_ok_and(|n| n > 0) {}
        if let Some(i) = &inotify {
            while i.read_events().map(|e| !e.is_empty()).unwrap_or(false) {}
        }
    }
}

/// Reads pending notifications; true when one says READY=1.
pub fn read_ready(notify: &OwnedFd) -> bool {
    let mut ready = false;
    let mut buf = [0u8; 4096];
    loop {
        match nix::sys::socket::recv(notify.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty()) {
            Ok(n) => ready |= says_ready(&buf[..n]),
            Err(_) => return ready,
        }
    }
}

/// Whether an sd_notify datagram holds `READY=1`.
pub fn says_ready(msg: &[u8]) -> bool {
    msg.split(|b| *b == b'\n').any(|l| l == b"READY=1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_lib_is_watched_inside_the_root_or_not_at_all() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        // The guest's /var/lib: a link to /persist/var/lib, which exists
        // only inside its root.
        std::fs::create_dir_all(root.join("persist/var/lib")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/persist/var/lib", root.join("var/lib")).unwrap();
        let inotify = watch_var_lib(&root).expect("a watch");
        std::fs::write(root.join("persist/var/lib/root-shell.socket"), "").unwrap();
        let events = inotify.read_events().unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].name.as_deref(), Some(std::ffi::OsStr::new("root-shell.socket")));
        // A link that leads nowhere inside the root (whatever it means on
        // the host): no watch, and no error.
        let root2 = base.path().join("root2");
        std::fs::create_dir_all(root2.join("var")).unwrap();
        std::os::unix::fs::symlink("/tmp", root2.join("var/lib")).unwrap();
        assert!(watch_var_lib(&root2).is_none());
    }

    #[test]
    fn reports_round_trip_with_newlines_inside() {
        for r in [
            Report::Ready(None),
            Report::Ready(Some(BY_SHELL.into())),
            Report::Runs("systemd-nspawn --machine=web '/x y/init'".into()),
            Report::Failed("systemd-nspawn exited (exit status 1); the console said:\nline 1\nline 2".into()),
        ] {
            let line = r.line();
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert_eq!(Report::parse(&line), Some(r));
        }
        assert_eq!(Report::parse("maybe\n"), None);
        assert_eq!(Report::Ready(None).line(), "ready\n");
        assert!(Report::Ready(None).is_verdict() && !Report::Runs(String::new()).is_verdict());
    }

    #[test]
    fn start_reads_what_runs_then_the_verdict() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = File::from(w);
        w.write_all(Report::Runs("nspawn a".into()).line().as_bytes()).unwrap();
        w.write_all(b"garbage\n").unwrap();
        w.write_all(Report::Failed("no\nway".into()).line().as_bytes()).unwrap();
        let mut seen = Vec::new();
        assert_eq!(read_verdict(r, Duration::from_secs(5), |r| seen.push(r)), Some(Report::Failed("no\nway".into())));
        assert_eq!(seen, [Report::Runs("nspawn a".into())]);

        // A supervisor that dies without a verdict.
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut w = File::from(w);
        w.write_all(Report::Runs("nspawn a".into()).line().as_bytes()).unwrap();
        drop(w);
        assert_eq!(read_verdict(r, Duration::from_secs(5), |_| {}), None);
    }

    #[test]
    fn the_failure_report_says_what_happened_and_what_the_console_said() {
        let t = Duration::from_secs(30);
        assert_eq!(
            failure(&Ready::Exited("exit status 1".into()), t, "Failed to mount\nbye"),
            "systemd-nspawn exited (exit status 1); the console said:\nFailed to mount\nbye"
        );
        let timed_out = Ready::TimedOut { shell_answers: false };
        assert_eq!(failure(&timed_out, t, "Starting x..."), "not ready after 30 s; the console said:\nStarting x...");
        assert_eq!(failure(&timed_out, t, ""), "not ready after 30 s; the console said nothing");
        let booting = failure(&Ready::TimedOut { shell_answers: true }, t, "A start job is running for slow.service");
        assert!(
            booting.starts_with("not ready after 30 s: its root shell answers, but its systemd did not finish booting")
        );
        assert!(booting.ends_with("the console said:\nA start job is running for slow.service"), "{booting}");
        assert_eq!(
            failure(&Ready::Failed("watching /r/var/lib: No such file".into()), t, "x"),
            "watching /r/var/lib: No such file"
        );
    }

    #[test]
    fn ready_is_a_line_of_its_own() {
        assert!(says_ready(b"READY=1"));
        assert!(says_ready(b"STATUS=Container running.\nREADY=1\n"));
        assert!(!says_ready(b"READY=10"));
        assert!(!says_ready(b"STATUS=READY=1"));
        assert!(!says_ready(b"X_NSPAWN_LEADER_PID=12"));
    }
}

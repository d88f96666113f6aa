//! Running commands in a running guest.
//!
//! Two routes, chosen per call (`--verbose` says which), both through the
//! guest's root-shell socket, so that what runs is started by the guest:
//! - **agent** (the normal one): connect to the guest's root-shell socket,
//!   exec the static agent from the shared Nix store with one line, and
//!   speak the framed protocol (`protocol`, implemented by the
//!   `nixos-container-agent` crate): exact argv, separate stdout/stderr,
//!   binary-safe stdin with EOF, exit status and signals, a guest pty,
//!   another user. The agent is a child of the guest's root-shell service,
//!   so it and the command are inside the container and its cgroup.
//! - **plain** (`plain`): a root-shell socket that cannot exec the agent
//!   (the guest does not share our store, or `NIXOS_CONTAINER_AGENT=off`):
//!   the command runs from one quoted shell line; stdout and stderr arrive
//!   merged.
//!
//! A guest without a working socket gets an error naming it. Nothing is
//! ever run by entering the container's namespaces from the host: such a
//! process would keep host powers the guest could take (SECURITY.md).

pub mod agent;
pub mod client;
pub mod login;
pub mod plain;
pub mod pty;
pub mod store_path;

/// The signals a session forwards to the guest's command, as a local
/// command would receive them (the agent's sessions also forward SIGWINCH).
pub const FORWARDED_SIGNALS: [std::ffi::c_int; 4] = {
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
};

use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

pub use nixos_container_agent::protocol;
pub use protocol::{ExitStatus, Winsize};

use crate::container::{Container, State};
use crate::error::{Error, IoContext, Result};
use crate::rootfs;

/// The guest's sockets, relative to its root (guest/container-login.nix).
pub const ROOT_SHELL_SOCKET: &str = "var/lib/root-shell.socket";
pub const LOGIN_SOCKET: &str = "var/lib/login.socket";

/// Removes the sockets of a previous boot: start waits for the new boot's
/// root-shell socket, and an old one must not count as its readiness.
pub fn remove_sockets(root: &Path) -> Result<()> {
    for rel in [ROOT_SHELL_SOCKET, LOGIN_SOCKET] {
        let (dir, name) = rel.rsplit_once('/').expect("a guest socket lies in a directory");
        rootfs::remove_file(root, dir, name)?;
    }
    Ok(())
}

/// Connects to the unix socket at `rel` inside the container root. The path
/// is resolved with the root as `/`, so a guest cannot point the host at one
/// of the host's own sockets with a symlink. A socket that exists but does
/// not accept yet (the guest's systemd is still setting it up) is retried
/// for a moment.
pub fn connect(root: &Path, rel: &str) -> Result<UnixStream> {
    connect_within(root, rel, Duration::from_secs(5))
}

/// One attempt, for a caller that polls on its own (start's readiness).
pub fn connect_once(root: &Path, rel: &str) -> Result<UnixStream> {
    connect_within(root, rel, Duration::ZERO)
}

fn connect_within(root: &Path, rel: &str, patience: Duration) -> Result<UnixStream> {
    let fd: OwnedFd = rootfs::open_in_root(root, rel, OFlag::O_PATH)?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let deadline = Instant::now() + patience;
    loop {
        match UnixStream::connect(&proc_path) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            r => return r.context(|| format!("connecting to {}", root.join(rel).display())),
        }
    }
}

/// What to run in the guest.
#[derive(Debug, Clone, Default)]
pub struct Command {
    /// The command and its arguments; empty for the user's login shell.
    pub argv: Vec<OsString>,
    /// `NAME=VALUE` settings.
    pub env: Vec<OsString>,
    pub cwd: Option<OsString>,
    /// A user name or uid; root when None.
    pub user: Option<String>,
    /// Run on a pty of this size.
    pub pty: Option<Winsize>,
    /// TERM for the command.
    pub term: Option<OsString>,
}

impl Command {
    pub fn new<S: AsRef<OsStr>>(argv: impl IntoIterator<Item = S>) -> Command {
        Command { argv: argv.into_iter().map(|a| a.as_ref().to_os_string()).collect(), ..Command::default() }
    }

    fn request(&self) -> protocol::Request {
        let b = |s: &OsStr| s.as_bytes().to_vec();
        protocol::Request {
            argv: self.argv.iter().map(|a| b(a)).collect(),
            env: self.env.iter().map(|e| b(e)).collect(),
            cwd: self.cwd.as_deref().map(b),
            user: self.user.as_ref().map(|u| u.as_bytes().to_vec()),
            pty: self.pty,
            term: self.term.as_deref().map(b),
        }
    }
}

/// Where the command's input comes from and its output goes.
pub struct Io {
    /// None: the command sees the end of its input at once.
    pub stdin: Option<Box<dyn Read + Send>>,
    pub stdout: Box<dyn Write + Send>,
    /// Merged into stdout on a pty and on the plain route.
    pub stderr: Box<dyn Write + Send>,
    /// Forward SIGINT, SIGTERM, SIGHUP and SIGQUIT of this process to the
    /// command (and SIGWINCH as a resize, with `winsize_from`).
    pub signals: bool,
    /// The terminal whose size the guest pty follows.
    pub winsize_from: Option<i32>,
    /// Put the caller's terminal (stdin) in raw mode for the session: the
    /// guest's pty does the line editing and signals. Entered only once
    /// signals are forwarded, and restored however the session ends.
    pub raw_terminal: bool,
}

/// Runs `cmd` in running container `c`; returns how it ended.
///
/// Only through the guest's root-shell socket: what runs is started by the
/// guest's own root-shell service, with the guest's credentials. There is
/// no way in from the host side (a process entering the namespaces from
/// the host keeps host powers, see SECURITY.md), so a guest without a
/// working socket gets an error that names it.
pub fn run(c: &Container, cmd: &Command, io: Io) -> Result<ExitStatus> {
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name.clone()));
    }
    let req = cmd.request();
    let needs_agent = req.pty.is_some() || req.user.is_some();
    let conn = connect(&c.paths.root, ROOT_SHELL_SOCKET).map_err(|e| no_root_shell(c, &e))?;
    let agent = match agent::Choice::from_env() {
        agent::Choice::Off => None,
        agent::Choice::Path(p) => Some(p),
        agent::Choice::BuiltIn => match agent::ensure_installed(&c.paths.gcroots) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!("cannot use the guest agent ({e}); using the plain root shell");
                None
            }
        },
    };
    if agent.is_none() && needs_agent {
        return Err(needs_the_agent(c, "the agent is turned off or cannot be installed"));
    }
    let (answer, leftover) = negotiate(&conn, agent.as_deref())?;
    match answer {
        protocol::Answer::Agent => {
            tracing::info!("running in '{}' through the guest agent", c.name);
            client::session(conn, leftover, &req, io)
        }
        protocol::Answer::Plain if !needs_agent => {
            tracing::info!(
                "running in '{}' through the plain root shell (no agent in the guest): stdout and stderr are merged",
                c.name
            );
            plain::session(conn, leftover, &req, io, c.paths.root.clone())
        }
        protocol::Answer::Plain => Err(needs_the_agent(c, "its root shell could not start the agent")),
    }
}

/// The error for a guest whose root-shell socket cannot be reached, with
/// what is wrong with it.
fn no_root_shell(c: &Container, e: &Error) -> Error {
    let problem = socket_problem(&c.paths.root, ROOT_SHELL_SOCKET).unwrap_or_else(|| match e {
        Error::Io { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused => {
            "nothing listens on it".to_string()
        }
        Error::Io { source, .. } => source.to_string(),
        e => e.to_string(),
    });
    Error::NoRootShell {
        name: c.name.clone(),
        socket: ROOT_SHELL_SOCKET,
        on_host: c.paths.root.join(ROOT_SHELL_SOCKET),
        problem,
    }
}

fn needs_the_agent(c: &Container, why: &'static str) -> Error {
    Error::NeedsAgent { name: c.name.clone(), why }
}

/// Whether `run` failed because a pty or another user needed the agent
/// (`login` then falls back to the guest's login socket).
pub fn is_needs_the_agent(e: &Error) -> bool {
    matches!(e, Error::NeedsAgent { .. })
}

/// What is wrong on the way to `rel` inside the root, looked at one
/// component at a time with the root as `/` (a link never leads out of
/// it): a missing or dangling directory, a socket that is not one. None
/// when every component looks right.
pub fn socket_problem(root: &Path, rel: &str) -> Option<String> {
    use nix::sys::stat::SFlag;
    let parts: Vec<&str> = rel.split('/').collect();
    let mut prefix = String::new();
    for (i, part) in parts.iter().enumerate() {
        prefix.push('/');
        prefix.push_str(part);
        let last = i + 1 == parts.len();
        let st = match rootfs::lstat_in_root(root, &prefix) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Some(format!("{prefix} does not exist")),
            Err(e) => return Some(format!("{prefix}: {e}")),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
        if kind == SFlag::S_IFLNK {
            let target = rootfs::read_link_in_root(root, &prefix).map(|t| t.display().to_string()).unwrap_or_default();
            let resolved = rootfs::open_in_root(root, &prefix, OFlag::O_PATH).is_ok();
            if !resolved {
                return Some(format!("{prefix} is a symlink to {target}, which does not exist in the container"));
            }
            if last {
                return Some(format!("{prefix} is a symlink to {target}, not a socket"));
            }
        } else if last && kind != SFlag::S_IFSOCK {
            return Some(format!("{prefix} is not a socket"));
        } else if !last && kind != SFlag::S_IFDIR {
            return Some(format!("{prefix} is not a directory"));
        }
    }
    None
}

/// Sends the offer line and reads the guest's answer.
fn negotiate(conn: &UnixStream, agent: Option<&str>) -> Result<(protocol::Answer, Vec<u8>)> {
    let mut w = conn;
    w.write_all(&protocol::offer_line(agent)).context(|| "talking to the root shell".into())?;
    read_answer(conn)
}

/// Reads until the agent's magic or the plain mark; skips what a login
/// shell printed before it.
fn read_answer(conn: &UnixStream) -> Result<(protocol::Answer, Vec<u8>)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let mut r = conn;
    conn.set_read_timeout(Some(Duration::from_secs(30))).context(|| "socket".into())?;
    let found = loop {
        if let Some((answer, at)) = protocol::find_answer(&seen) {
            break (answer, seen.split_off(at));
        }
        if seen.len() > 1 << 20 {
            return Err(Error::other("the root shell printed a megabyte without answering"));
        }
        match r.read(&mut buf) {
            Ok(0) => {
                return Err(Error::other(format!(
                    "the root shell closed the connection without answering{}",
                    if seen.is_empty() { String::new() } else { format!(": {}", shown(&seen)) }
                )));
            }
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(|| "waiting for the root shell".into()),
        }
    };
    conn.set_read_timeout(None).context(|| "socket".into())?;
    Ok(found)
}

/// What a root shell printed before it hung up, for an error message:
/// its last KiB, cleaned of terminal escapes.
fn shown(seen: &[u8]) -> String {
    const MAX: usize = 1024;
    let cut = seen.len() > MAX;
    let text = crate::logs::sanitize(&seen[seen.len().saturating_sub(MAX)..]);
    let text = text.trim();
    if cut { format!("...{text}") } else { text.to_string() }
}

/// A command's result with its output captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    /// The status as a shell reports it (128 + N for signal N).
    pub fn code(&self) -> i32 {
        self.status.shell_code()
    }
}

/// How much of each of a command's streams `exec` keeps: the last part
/// (the guest decides how much it prints; host root holds it in memory).
const CAPTURE_LIMIT: usize = 256 << 10;

/// A writer into a shared buffer, for captured output: keeps the last
/// `limit` bytes, and says how many went before them.
#[derive(Clone)]
struct Capture {
    inner: std::sync::Arc<std::sync::Mutex<Captured>>,
    limit: usize,
}

#[derive(Default)]
struct Captured {
    data: Vec<u8>,
    dropped: u64,
}

impl Capture {
    fn new(limit: usize) -> Capture {
        Capture { inner: Default::default(), limit }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Captured> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What was kept; with a note first when the start was cut.
    fn take(&self) -> Vec<u8> {
        let mut c = self.lock();
        let mut data = std::mem::take(&mut c.data);
        if data.len() > self.limit {
            c.dropped += (data.len() - self.limit) as u64;
            data.drain(..data.len() - self.limit);
        }
        let dropped = std::mem::take(&mut c.dropped);
        if dropped == 0 {
            return data;
        }
        let mut out = format!("[{dropped} bytes of output cut]\n").into_bytes();
        out.extend(data);
        out
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut c = self.lock();
        c.data.extend_from_slice(buf);
        // Cut back to the limit once twice as much is held.
        if c.data.len() > 2 * self.limit {
            let cut = c.data.len() - self.limit;
            c.data.drain(..cut);
            c.dropped += cut as u64;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `cmd` in container `c` as root without input and returns its exit
/// status with stdout and stderr. E.g. for
/// `exec(&c, &Command::new(["/nix/var/nix/profiles/system/bin/switch-to-configuration", "test"]))`.
pub fn exec(c: &Container, cmd: &Command) -> Result<Output> {
    let (out, err) = (Capture::new(CAPTURE_LIMIT), Capture::new(CAPTURE_LIMIT));
    let io = Io {
        stdin: None,
        stdout: Box::new(out.clone()),
        stderr: Box::new(err.clone()),
        signals: false,
        winsize_from: None,
        raw_terminal: false,
    };
    let status = run(c, cmd, io)?;
    Ok(Output { status, stdout: out.take(), stderr: err.take() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::protocol::{Request, Winsize};

    #[test]
    fn what_a_shell_printed_is_shown_short_and_clean() {
        assert_eq!(shown(b"  bash: no such file\x1b]0;x\x07\n"), "bash: no such file");
        let long = [vec![b'a'; 1 << 20], b"\x1b[2Jend\n".to_vec()].concat();
        let s = shown(&long);
        assert!(s.starts_with("...aaa") && s.ends_with("aend") && s.len() < 1100, "{}", s.len());
    }

    #[test]
    fn captured_output_keeps_only_its_last_part() {
        let mut c = Capture::new(10);
        c.write_all(b"short").unwrap();
        assert_eq!(c.take(), b"short");
        for _ in 0..1000 {
            c.write_all(b"0123456789abc").unwrap();
        }
        assert!(c.lock().data.len() <= 20);
        assert_eq!(String::from_utf8(c.take()).unwrap(), "[12990 bytes of output cut]\n3456789abc");
        assert_eq!(c.take(), b"");
    }

    #[test]
    fn a_broken_socket_path_is_described() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path();
        let problem = |r: &Path| socket_problem(r, ROOT_SHELL_SOCKET);
        assert_eq!(problem(root).as_deref(), Some("/var does not exist"));
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("var/lib")).unwrap();
        assert_eq!(
            problem(root).as_deref(),
            Some("/var/lib is a symlink to /nowhere, which does not exist in the container")
        );
        std::fs::remove_file(root.join("var/lib")).unwrap();
        std::fs::create_dir(root.join("var/lib")).unwrap();
        assert_eq!(problem(root).as_deref(), Some("/var/lib/root-shell.socket does not exist"));
        std::fs::write(root.join("var/lib/root-shell.socket"), "").unwrap();
        assert_eq!(problem(root).as_deref(), Some("/var/lib/root-shell.socket is not a socket"));
        std::fs::remove_file(root.join("var/lib/root-shell.socket")).unwrap();
        let _listener = std::os::unix::net::UnixListener::bind(root.join("var/lib/root-shell.socket")).unwrap();
        assert_eq!(problem(root), None);
    }

    fn own_user() -> Vec<u8> {
        nix::unistd::getuid().as_raw().to_string().into_bytes()
    }

    /// The agent's code and the client's, over a socketpair, with local
    /// commands run as the current user: the framed path without a guest.
    fn through_agent(req: Request, stdin: Option<Vec<u8>>) -> (ExitStatus, Vec<u8>, Vec<u8>) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let out = theirs.try_clone().unwrap();
        std::thread::spawn(move || nixos_container_agent::serve(theirs.into(), out.into()));
        let (answer, leftover) = read_answer(&ours).unwrap();
        assert_eq!(answer, protocol::Answer::Agent);
        let (o, e) = (Capture::new(64 << 20), Capture::new(64 << 20));
        let io = Io {
            stdin: stdin.map(|d| Box::new(io::Cursor::new(d)) as Box<dyn Read + Send>),
            stdout: Box::new(o.clone()),
            stderr: Box::new(e.clone()),
            signals: false,
            winsize_from: None,
            raw_terminal: false,
        };
        let status = client::session(ours, leftover, &req, io).unwrap();
        (status, o.take(), e.take())
    }

    fn req(argv: &[&str]) -> Request {
        Request {
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            user: Some(own_user()),
            ..Request::default()
        }
    }

    #[test]
    fn agent_separates_streams_and_returns_the_status() {
        let (s, o, e) = through_agent(req(&["sh", "-c", "echo out; echo err >&2; exit 7"]), None);
        assert_eq!((s, o.as_slice(), e.as_slice()), (ExitStatus::Code(7), &b"out\n"[..], &b"err\n"[..]));
    }

    #[test]
    fn agent_keeps_argv_and_reports_missing_commands_and_signals() {
        let (_, o, _) = through_agent(req(&["printf", "%s|", "a b", "$HOME", "it's", "\"q\"", "*", ""]), None);
        assert_eq!(o, b"a b|$HOME|it's|\"q\"|*||");
        let (s, _, e) = through_agent(req(&["no-such-command-here"]), None);
        assert_eq!(s, ExitStatus::Code(127));
        assert_eq!(e, b"no-such-command-here: command not found\n");
        let (s, _, _) = through_agent(req(&["sh", "-c", "kill -TERM $$"]), None);
        assert_eq!(s.shell_code(), 143);
    }

    #[test]
    fn agent_stdin_is_binary_safe_and_ends() {
        let data: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let (s, o, _) = through_agent(req(&["cat"]), Some(data.clone()));
        assert_eq!(s, ExitStatus::Code(0));
        assert!(o == data, "3 MiB through cat changed");
        // No stdin at all: EOF at once.
        let (_, o, _) = through_agent(req(&["wc", "-c"]), None);
        assert_eq!(String::from_utf8_lossy(&o).trim(), "0");
    }

    #[test]
    fn agent_env_cwd_and_pty() {
        let mut r = req(&["sh", "-c", "echo \"$PWD $K\"; tty; stty size"]);
        r.env = vec![b"K=v=w".to_vec()];
        r.cwd = Some(b"/".to_vec());
        let (_, o, _) = through_agent(r.clone(), None);
        let text = String::from_utf8_lossy(&o).into_owned();
        assert!(text.starts_with("/ v=w\nnot a tty\n"), "{text}");
        r.pty = Some(Winsize { rows: 27, cols: 91 });
        let (_, o, _) = through_agent(r, None);
        let text = String::from_utf8_lossy(&o).into_owned();
        assert!(text.contains("/dev/pts/"), "{text}");
        assert!(text.contains("27 91"), "{text}");
    }

    #[test]
    fn agent_errors_are_errors() {
        let mut r = req(&["true"]);
        r.cwd = Some(b"/nonexistent-dir".to_vec());
        let (ours, theirs) = UnixStream::pair().unwrap();
        let out = theirs.try_clone().unwrap();
        std::thread::spawn(move || nixos_container_agent::serve(theirs.into(), out.into()));
        let (_, leftover) = read_answer(&ours).unwrap();
        let io = Io {
            stdin: None,
            stdout: Box::new(io::sink()),
            stderr: Box::new(io::sink()),
            signals: false,
            winsize_from: None,
            raw_terminal: false,
        };
        let e = client::session(ours, leftover, &r, io).unwrap_err();
        assert!(e.to_string().contains("cannot change to '/nonexistent-dir'"), "{e}");
    }
}

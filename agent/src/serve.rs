//! The agent's side of one session: read the request, run the command (on
//! pipes, or on a pty it allocates in the guest), pump frames both ways,
//! report how the command ended.
//!
//! Threads, each blocking on one thing: the connection reader (stdin data,
//! signals, window sizes; its EOF means the client is gone), a stdin
//! writer (so a command that does not read its input never blocks the
//! reader), and one reader per output stream. The main thread waits for the
//! command. Frames are written whole under one lock.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid};

use crate::protocol::{self, ExitStatus, Request, Winsize, kind};
use crate::users::{self, User};

type Writer = Arc<Mutex<File>>;

/// Serves one session on `input`/`output` (the same socket twice, or the
/// two ends the agent was exec'd with). Returns the agent's exit code.
pub fn serve(input: OwnedFd, output: OwnedFd) -> i32 {
    let writer: Writer = Arc::new(Mutex::new(File::from(output)));
    let mut reader = File::from(input);
    if send(&writer, 0, protocol::MAGIC).is_err() {
        return 1;
    }
    let req = match protocol::read_request(&mut reader) {
        Ok(Some(payload)) => match Request::decode(&payload) {
            Ok(r) => r,
            Err(e) => return fail(&writer, &format!("bad request: {e}")),
        },
        Ok(None) => return 1,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return fail(&writer, &format!("bad request: {e}")),
        Err(_) => return 1,
    };
    match run(req, reader, &writer) {
        Ok(status) => {
            let _ = send_frame(&writer, kind::EXIT, &protocol::encode_exit(status));
            0
        }
        Err(msg) => fail(&writer, &msg),
    }
}

fn fail(w: &Writer, msg: &str) -> i32 {
    let _ = send_frame(w, kind::ERROR, msg.as_bytes());
    1
}

/// Raw bytes (kind 0) or one frame.
fn send(w: &Writer, k: u8, data: &[u8]) -> io::Result<()> {
    let mut f = w.lock().unwrap_or_else(|e| e.into_inner());
    if k == 0 { f.write_all(data) } else { protocol::write_data(&mut *f, k, data) }
}

fn send_frame(w: &Writer, k: u8, data: &[u8]) -> io::Result<()> {
    let mut f = w.lock().unwrap_or_else(|e| e.into_inner());
    protocol::write_frame(&mut *f, k, data)
}

/// Everything decided before the fork.
struct Plan {
    program: OsString,
    arg0: OsString,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: CString,
    user: User,
    switch_user: bool,
}

/// The PATH a command starts with when no login shell of its user set one
/// up: NixOS's system-wide directories, then the usual ones.
pub const SYSTEM_PATH: &str = "/run/wrappers/bin:/run/current-system/sw/bin:/run/current-system/sw/sbin:\
/nix/var/nix/profiles/default/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin";

/// What another user's command starts from: not root's login environment
/// (root's profile directories in PATH, and NixOS's marker that the
/// environment is set up, which would keep the user's own login shell from
/// setting up theirs), only the terminal and locale settings.
fn env_for_other_user(root_env: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    let kept = |k: &OsStr| {
        let k = k.as_bytes();
        matches!(k, b"TERM" | b"LANG" | b"LANGUAGE" | b"TZ" | b"LOCALE_ARCHIVE") || k.starts_with(b"LC_")
    };
    let mut env: Vec<(OsString, OsString)> = root_env.filter(|(k, _)| kept(k)).collect();
    env.push(("PATH".into(), SYSTEM_PATH.into()));
    env
}

fn plan(req: &Request) -> Result<Plan, String> {
    let read = |p: &str| std::fs::read(p).unwrap_or_default();
    let who = req.user.clone().unwrap_or_else(|| b"root".to_vec());
    let user = users::lookup(&who, &read("/etc/passwd"), &read("/etc/group")).map_err(|e| e.to_string())?;
    let switch_user = user.uid != nix::unistd::getuid().as_raw();

    let mut env: Vec<(OsString, OsString)> =
        if switch_user { env_for_other_user(std::env::vars_os()) } else { std::env::vars_os().collect() };
    let mut set = |k: &[u8], v: &[u8]| {
        let k = OsStr::from_bytes(k).to_os_string();
        env.retain(|(ek, _)| *ek != k);
        env.push((k, OsStr::from_bytes(v).to_os_string()));
    };
    set(b"HOME", &user.home);
    set(b"USER", &user.name);
    set(b"LOGNAME", &user.name);
    set(b"SHELL", &user.shell);
    if let Some(t) = &req.term {
        set(b"TERM", t);
    }
    for kv in &req.env {
        let eq = kv.iter().position(|&b| b == b'=').ok_or("environment settings must be NAME=VALUE")?;
        set(&kv[..eq], &kv[eq + 1..]);
    }

    let home_ok = std::fs::metadata(OsStr::from_bytes(&user.home)).map(|m| m.is_dir()).unwrap_or(false);
    let cwd = match &req.cwd {
        Some(c) => {
            match std::fs::metadata(OsStr::from_bytes(c)) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("cannot change to '{}': not a directory", String::from_utf8_lossy(c))),
                Err(e) => return Err(format!("cannot change to '{}': {e}", String::from_utf8_lossy(c))),
            }
            c.clone()
        }
        None if home_ok => user.home.clone(),
        None => b"/".to_vec(),
    };
    let cwd = CString::new(cwd).map_err(|_| "the directory contains a NUL byte".to_string())?;

    let (program, arg0, args) = if req.argv.is_empty() {
        // The user's login shell, named "-sh" style so that it reads its profile.
        let shell = OsString::from_vec(user.shell.clone());
        let base = user.shell.rsplit(|&b| b == b'/').next().unwrap_or(b"sh");
        let mut arg0 = b"-".to_vec();
        arg0.extend_from_slice(base);
        (shell, OsString::from_vec(arg0), vec![])
    } else {
        let program = OsString::from_vec(req.argv[0].clone());
        let args = req.argv[1..].iter().map(|a| OsString::from_vec(a.clone())).collect();
        (program.clone(), program, args)
    };
    Ok(Plan { program, arg0, args, env, cwd, user, switch_user })
}

fn cloexec(fd: RawFd) {
    // SAFETY: fd is open for the duration of the call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let _ = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC));
}

fn spawn(plan: &Plan, pty_slave: Option<&OwnedFd>) -> io::Result<Child> {
    let mut cmd = Command::new(&plan.program);
    cmd.arg0(&plan.arg0).args(&plan.args).env_clear().envs(plan.env.iter().map(|(k, v)| (k, v)));
    match pty_slave {
        Some(slave) => {
            cmd.stdin(Stdio::from(slave.try_clone()?))
                .stdout(Stdio::from(slave.try_clone()?))
                .stderr(Stdio::from(slave.try_clone()?));
        }
        None => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    let on_pty = pty_slave.is_some();
    let groups: Vec<Gid> = plan.user.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    let (uid, gid, switch) = (Uid::from_raw(plan.user.uid), Gid::from_raw(plan.user.gid), plan.switch_user);
    let cwd = plan.cwd.clone();
    // SAFETY: only system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if on_pty {
                nix::unistd::setsid()?;
                if libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else {
                // Its own process group, so that signals reach all of it.
                nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            }
            if switch {
                nix::unistd::setgroups(&groups)?;
                nix::unistd::setgid(gid)?;
                nix::unistd::setuid(uid)?;
            }
            nix::unistd::chdir(cwd.as_c_str())?;
            Ok(())
        });
    }
    cmd.spawn()
}

/// Whether `program` names a file, as the shell looks it up: a path as is,
/// a bare name in the command's PATH.
fn exists_in_path(program: &OsStr, env: &[(OsString, OsString)]) -> bool {
    let bytes = program.as_bytes();
    if bytes.contains(&b'/') {
        return std::path::Path::new(program).exists();
    }
    let path = env.iter().find(|(k, _)| k == "PATH").map(|(_, v)| v.as_bytes()).unwrap_or(b"");
    path.split(|&b| b == b':')
        .map(|dir| if dir.is_empty() { b".".as_slice() } else { dir })
        .any(|dir| std::path::Path::new(OsStr::from_bytes(dir)).join(program).is_file())
}

/// What a shell says and returns when it cannot run a command. Only a
/// program that is not there is "not found": a failure in the steps before
/// exec (switching user, changing directory) is said as what it is.
fn not_started(program: &OsStr, found: bool, e: &io::Error) -> (String, i32) {
    let name = program.to_string_lossy();
    match e.kind() {
        io::ErrorKind::NotFound if !found => (format!("{name}: command not found\n"), 127),
        io::ErrorKind::PermissionDenied if found => (format!("{name}: permission denied\n"), 126),
        _ => (format!("cannot start {name}: {e}\n"), 126),
    }
}

enum Input {
    Data(Vec<u8>),
    Eof,
}

fn run(req: Request, reader: File, w: &Writer) -> Result<ExitStatus, String> {
    let plan = plan(&req)?;
    let pty = match req.pty {
        Some(size) => {
            let ws = libc::winsize { ws_row: size.rows, ws_col: size.cols, ws_xpixel: 0, ws_ypixel: 0 };
            let p = nix::pty::openpty(Some(&ws), None).map_err(|e| format!("allocating a pty: {e}"))?;
            cloexec(p.master.as_raw_fd());
            cloexec(p.slave.as_raw_fd());
            Some(p)
        }
        None => None,
    };
    let mut child = match spawn(&plan, pty.as_ref().map(|p| &p.slave)) {
        Ok(c) => c,
        Err(e) => {
            let (msg, code) = not_started(&plan.program, exists_in_path(&plan.program, &plan.env), &e);
            let _ = send(w, kind::STDERR, msg.as_bytes());
            return Ok(ExitStatus::Code(code));
        }
    };
    let pid = child.id() as i32;
    let exited = Arc::new(AtomicBool::new(false));
    let master: Option<Arc<File>> = pty.map(|p| {
        drop(p.slave);
        Arc::new(File::from(p.master))
    });

    // Input to the command. The queue holds at most STDIN_WINDOW bytes: the
    // client sends more only as write_input grants credit, so the
    // connection's reader never waits and always sees signals and hang-ups.
    let (tx, rx) = channel::<Input>();
    let stdin_sink: Box<dyn Write + Send> = match (&master, child.stdin.take()) {
        (Some(m), _) => Box::new(SharedFile(m.clone())),
        (None, Some(s)) => Box::new(s),
        (None, None) => Box::new(io::sink()),
    };
    let on_pty = master.is_some();
    let credit_to = w.clone();
    std::thread::spawn(move || write_input(rx, stdin_sink, on_pty, &credit_to));

    let control_fd = master.as_ref().map(|m| m.as_raw_fd());
    let master_for_control = master.clone();
    let exited_c = exited.clone();
    std::thread::spawn(move || {
        let _keep = master_for_control;
        read_connection(reader, tx, pid, control_fd, &exited_c)
    });

    let mut pumps = Vec::new();
    match &master {
        Some(m) => {
            let (m, w, ex) = (m.clone(), w.clone(), exited.clone());
            pumps.push(std::thread::spawn(move || pump_pty(&m, &w, &ex)));
        }
        None => {
            if let Some(out) = child.stdout.take() {
                let w = w.clone();
                pumps.push(std::thread::spawn(move || pump(out, kind::STDOUT, &w)));
            }
            if let Some(err) = child.stderr.take() {
                let w = w.clone();
                pumps.push(std::thread::spawn(move || pump(err, kind::STDERR, &w)));
            }
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for the command: {e}"))?;
    exited.store(true, Ordering::SeqCst);
    for p in pumps {
        let _ = p.join();
    }
    Ok(match (status.code(), status.signal()) {
        (Some(c), _) => ExitStatus::Code(c),
        (None, Some(s)) => ExitStatus::Signal(s),
        _ => ExitStatus::Code(255),
    })
}

/// A shared pty master, written by the input thread.
struct SharedFile(Arc<File>);

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn write_input(rx: Receiver<Input>, mut sink: Box<dyn Write + Send>, on_pty: bool, w: &Writer) {
    let mut broken = false;
    while let Ok(msg) = rx.recv() {
        match msg {
            Input::Data(d) => {
                // A command that exits or closes its input: drop the rest.
                if !broken {
                    broken = sink.write_all(&d).is_err();
                }
                let _ = send_frame(w, kind::CREDIT, &(d.len() as u32).to_be_bytes());
            }
            Input::Eof => {
                if on_pty {
                    // A pty cannot be half-closed; ^D is its end of input.
                    let _ = sink.write_all(&[4]);
                } else {
                    sink = Box::new(io::sink());
                }
            }
        }
    }
}

fn read_connection(
    mut reader: File,
    tx: std::sync::mpsc::Sender<Input>,
    pid: i32,
    master: Option<RawFd>,
    exited: &AtomicBool,
) {
    let group = Pid::from_raw(-pid);
    // Until the client is gone (EOF or a broken connection): then the
    // command must not outlive it.
    while let Ok(Some(frame)) = protocol::read_frame(&mut reader) {
        match frame {
            (kind::STDIN, data) => match tx.send(Input::Data(data)) {
                Ok(()) => {}
                Err(_) => break,
            },
            (kind::STDIN_EOF, _) => {
                let _ = tx.send(Input::Eof);
            }
            (kind::SIGNAL, p) if p.len() == 4 => {
                let n = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as i32;
                if let Ok(sig) = Signal::try_from(n) {
                    // On a pty the signal goes where the keyboard's would:
                    // the terminal's foreground process group.
                    // SAFETY: `master` is the raw fd of the pty master that
                    // the caller keeps open (`_keep`) while this loop runs.
                    let target = master
                        .and_then(|m| nix::unistd::tcgetpgrp(unsafe { std::os::fd::BorrowedFd::borrow_raw(m) }).ok())
                        .map(|pg| Pid::from_raw(-pg.as_raw()))
                        .unwrap_or(group);
                    let _ = kill(target, sig);
                }
            }
            (kind::WINSIZE, p) => {
                if let (Some(m), Ok(ws)) = (master, protocol::decode_winsize(&p)) {
                    set_winsize(m, ws);
                }
            }
            _ => {}
        }
    }
    if exited.load(Ordering::SeqCst) {
        return;
    }
    for sig in [Signal::SIGHUP, Signal::SIGTERM, Signal::SIGCONT] {
        let _ = kill(group, sig);
    }
    for _ in 0..50 {
        if exited.load(Ordering::SeqCst) {
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(group, Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    std::process::exit(1);
}

fn set_winsize(fd: RawFd, ws: Winsize) {
    let w = libc::winsize { ws_row: ws.rows, ws_col: ws.cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
    unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &w) };
}

fn pump(mut from: impl Read, k: u8, w: &Writer) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if send(w, k, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Copies the pty's output until the slave side is closed by everyone, or
/// until the command has exited and nothing more came for a moment (a
/// background job may keep the slave open forever).
fn pump_pty(master: &File, w: &Writer, exited: &AtomicBool) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => {
                if exited.load(Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        match (&*master).read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if send(w, kind::STDOUT, &buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // EIO: every slave fd is closed.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_missing_program_is_command_not_found() {
        let env = vec![(OsString::from("PATH"), OsString::from("/nonexistent:/bin:/usr/bin"))];
        assert!(exists_in_path(OsStr::new("sh"), &env));
        assert!(exists_in_path(OsStr::new("/bin/sh"), &env));
        assert!(!exists_in_path(OsStr::new("no-such-command-here"), &env));
        assert!(!exists_in_path(OsStr::new("sh"), &[]));
        let enoent = io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(not_started(OsStr::new("nope"), false, &enoent), ("nope: command not found\n".into(), 127));
        // The program is there: chdir or setuid failed before exec.
        let (msg, code) = not_started(OsStr::new("ls"), true, &enoent);
        assert!(msg.starts_with("cannot start ls: "), "{msg}");
        assert_eq!(code, 126);
    }

    #[test]
    fn another_user_gets_terminal_and_locale_settings_not_roots_environment() {
        let root_env = [
            ("PATH", "/root/.nix-profile/bin:/run/current-system/sw/bin"),
            ("__NIXOS_SET_ENVIRONMENT_DONE", "1"),
            ("NIX_PROFILES", "/root/.nix-profile"),
            ("TERM", "xterm-256color"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = env_for_other_user(root_env.into_iter());
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.to_str().unwrap()).collect();
        assert_eq!(keys, ["TERM", "LANG", "LC_TIME", "PATH"]);
        assert_eq!(env[3].1, SYSTEM_PATH);
    }
}

use std::io::IsTerminal;
use std::os::fd::AsFd;

use crate::cli::RunArgs;
use crate::commands::pick::{self, Which};
use crate::commands::{Ctx, require_root};
use std::time::{Duration, Instant};

use nixos_container::container::{Container, State};
use nixos_container::error::{Error, Result};
use nixos_container::guest::{self, ExitStatus, Io, Winsize, pty};

/// The size a pty gets when the caller has no terminal to copy it from.
pub const DEFAULT_SIZE: Winsize = Winsize { rows: 24, cols: 80 };

pub fn run(ctx: &Ctx, args: &RunArgs) -> Result<i32> {
    require_root()?;
    if args.command.is_empty() {
        return Err(Error::Usage(
            "'nixos-container run' needs a COMMAND after NAME, e.g. 'nixos-container run web -- uptime'".into(),
        ));
    }
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "run")?;
    let c = Container::open(&ctx.paths, &name)?;
    let stdin_tty = std::io::stdin().is_terminal();
    let stdout_tty = std::io::stdout().is_terminal();
    // As incus exec: a pty when both ends are terminals, unless told.
    let on_pty = args.tty || (!args.no_tty && stdin_tty && stdout_tty);
    let mut cmd = guest::Command::new(&args.command);
    cmd.env = args.env.clone();
    cmd.cwd = args.cwd.clone();
    cmd.user = args.user.clone();
    if on_pty {
        with_callers_terminal(&mut cmd);
    }
    let status = ended_session(&c, interactive_session(&c, &cmd, on_pty && stdin_tty))?;
    Ok(status.shell_code())
}

/// At a terminal, says how to get out, as machinectl does.
pub fn connected_note(ctx: &Ctx, c: &Container, interactive: bool) {
    if interactive {
        ctx.note(&format!("Connected to container '{}'. Press ^] three times within 1s to disconnect.", c.name));
    }
}

/// How a session that did not end with its command's status ends: on a
/// line of its own (the guest may have left the cursor mid-line), and
/// saying that the container was stopped when that is why.
pub fn ended_session(c: &Container, result: Result<ExitStatus>) -> Result<ExitStatus> {
    let e = match result {
        Ok(status) => return Ok(status),
        Err(e) => e,
    };
    let lost = guest::client::is_lost_connection(&e);
    if (lost || matches!(e, Error::Cancelled(_))) && std::io::stderr().is_terminal() {
        eprintln!();
    }
    if !lost {
        return Err(e);
    }
    // A halting guest closes its sessions a moment before it is gone.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match c.state() {
            Ok(State::Down) => {
                return Err(Error::other(format!("container '{}' was stopped; the session ended", c.name)));
            }
            _ if Instant::now() >= deadline => return Err(e),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// A pty of the caller's terminal's size (else DEFAULT_SIZE) and its TERM.
pub fn with_callers_terminal(cmd: &mut guest::Command) {
    cmd.pty = Some(
        pty::winsize(std::io::stdout().as_fd())
            .or_else(|| pty::winsize(std::io::stdin().as_fd()))
            .unwrap_or(DEFAULT_SIZE),
    );
    cmd.term = std::env::var_os("TERM");
}

/// Runs `cmd` with this process's stdin, stdout and stderr; with `raw`, the
/// caller's terminal is in raw mode for the session (see `Io::raw_terminal`).
pub fn interactive_session(c: &Container, cmd: &guest::Command, raw: bool) -> Result<guest::ExitStatus> {
    let winsize_from = cmd.pty.map(|_| if std::io::stdout().is_terminal() { 1 } else { 0 });
    let io = Io {
        stdin: Some(Box::new(std::io::stdin())),
        stdout: Box::new(std::io::stdout()),
        stderr: Box::new(std::io::stderr()),
        signals: true,
        winsize_from,
        raw_terminal: raw,
    };
    guest::run(c, cmd, io)
}

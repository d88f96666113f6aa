use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::run::{connected_note, ended_session, interactive_session, with_callers_terminal};
use crate::commands::{Ctx, require_root};
use nixos_container::container::{Container, State};
use nixos_container::error::{Error, Result};
use nixos_container::guest::{self, ExitStatus, pty};
use nixos_container::rootfs;

/// The guest's login prompt (its `login` program) on a pty of the caller's
/// size that follows resizes, as root-login's shell, through the guest
/// agent. A guest without the agent gets its login socket instead (the
/// seed's way: a pty of the guest's own size).
pub fn run(ctx: &Ctx, args: &RunningNameArg) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "login")?;
    let c = Container::open(&ctx.paths, &name)?;
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name));
    }
    let mut cmd = guest::Command::new(["login"]);
    with_callers_terminal(&mut cmd);
    let interactive = std::io::stdin().is_terminal();
    connected_note(ctx, &c, interactive);
    let status = match interactive_session(&c, &cmd, interactive) {
        Err(e) if guest::is_needs_the_agent(&e) && rootfs::exists(&c.paths.root, guest::LOGIN_SOCKET) => {
            tracing::info!("no guest agent in '{}': using its login socket (the pty keeps its own size)", c.name);
            through_login_socket(&c, interactive)
        }
        other => other,
    };
    Ok(ended_session(&c, status)?.shell_code())
}

/// The login socket, relayed byte for byte with the local terminal raw.
fn through_login_socket(c: &Container, interactive: bool) -> Result<ExitStatus> {
    let conn = guest::connect(&c.paths.root, guest::LOGIN_SOCKET)?;
    {
        let _raw = if interactive { Some(pty::RawMode::enter(std::io::stdin().as_fd())?) } else { None };
        guest::login::relay(conn, std::io::stdin(), &mut std::io::stdout())?;
    }
    // The socket ends the same way for a logout and for a halt: the
    // container's state tells them apart.
    let deadline = Instant::now() + Duration::from_millis(500);
    while Instant::now() < deadline {
        if c.state()? == State::Down {
            return Err(guest::client::closed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(ExitStatus::Code(0))
}

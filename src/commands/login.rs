use std::io::IsTerminal;
use std::os::fd::AsFd;

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::{Ctx, require_root};
use crate::container::{Container, State};
use crate::error::{Error, Result};
use crate::guest::{self, pty};
use crate::rootfs;

/// The guest's login prompt, relayed with the local terminal in raw mode.
pub fn run(ctx: &Ctx, args: &RunningNameArg) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "login")?;
    let c = Container::open(&ctx.paths, &name)?;
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name));
    }
    if !rootfs::exists(&c.paths.root, guest::LOGIN_SOCKET) {
        return Err(Error::other(format!(
            "container '{0}' has no login socket (/{1}): its configuration does not import the nixos-container guest module; 'nixos-container root-login {0}' works without it",
            c.name,
            guest::LOGIN_SOCKET
        )));
    }
    let conn = guest::connect(&c.paths.root, guest::LOGIN_SOCKET)?;
    let _raw = if std::io::stdin().is_terminal() { Some(pty::RawMode::enter(std::io::stdin().as_fd())?) } else { None };
    guest::login::relay(conn, std::io::stdin(), &mut std::io::stdout())?;
    Ok(0)
}

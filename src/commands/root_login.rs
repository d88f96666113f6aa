use std::io::IsTerminal;
use std::os::fd::AsFd;

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::run::{DEFAULT_SIZE, interactive_session};
use crate::commands::{Ctx, require_root};
use crate::container::Container;
use crate::error::Result;
use crate::guest::{self, pty};

/// root's login shell on a pty in the guest, with the caller's terminal
/// size and TERM.
pub fn run(ctx: &Ctx, args: &RunningNameArg) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "root-login")?;
    let c = Container::open(&ctx.paths, &name)?;
    let cmd = guest::Command {
        pty: Some(
            pty::winsize(std::io::stdout().as_fd())
                .or_else(|| pty::winsize(std::io::stdin().as_fd()))
                .unwrap_or(DEFAULT_SIZE),
        ),
        term: std::env::var_os("TERM"),
        ..guest::Command::default()
    };
    let status = interactive_session(&c, &cmd, std::io::stdin().is_terminal())?;
    Ok(status.shell_code())
}

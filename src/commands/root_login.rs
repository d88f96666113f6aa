use std::io::IsTerminal;

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::run::{connected_note, ended_session, interactive_session, with_callers_terminal};
use crate::commands::{Ctx, require_root};
use nixos_container::container::Container;
use nixos_container::error::Result;
use nixos_container::guest;

/// root's login shell in the guest: on a pty with the caller's terminal
/// size and TERM when stdin is a terminal; otherwise, as nixpkgs' `su -l`
/// through nsenter, on plain pipes, so that `echo CMD | root-login NAME`
/// runs CMD and ends at the end of its input (a pty has no end of input
/// but ^D, which a shell switching its terminal modes can lose), and the
/// signals forwarded reach a shell that is not interactive (an interactive
/// one ignores SIGTERM).
pub fn run(ctx: &Ctx, args: &RunningNameArg) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "root-login")?;
    let c = Container::open(&ctx.paths, &name)?;
    let mut cmd = guest::Command::default();
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        with_callers_terminal(&mut cmd);
    }
    connected_note(ctx, &c, interactive);
    let status = ended_session(&c, interactive_session(&c, &cmd, interactive))?;
    Ok(status.shell_code())
}

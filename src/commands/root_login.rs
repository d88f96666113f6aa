use std::io::IsTerminal;

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::run::{connected_note, ended_session, interactive_session, with_callers_terminal};
use crate::commands::{Ctx, require_root};
use crate::container::Container;
use crate::error::Result;
use crate::guest;

/// root's login shell on a pty in the guest, with the caller's terminal
/// size and TERM.
pub fn run(ctx: &Ctx, args: &RunningNameArg) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "root-login")?;
    let c = Container::open(&ctx.paths, &name)?;
    let mut cmd = guest::Command::default();
    with_callers_terminal(&mut cmd);
    let interactive = std::io::stdin().is_terminal();
    connected_note(ctx, &c, interactive);
    let status = ended_session(&c, interactive_session(&c, &cmd, interactive))?;
    Ok(status.shell_code())
}

use std::io::IsTerminal;

use crate::cli::RunningNameArg;
use crate::commands::pick::{self, Which};
use crate::commands::run::{connected_note, ended_session, interactive_session, with_callers_terminal};
use crate::commands::{Ctx, require_root};
use crate::container::{Container, State};
use crate::error::{Error, Result};
use crate::guest;

/// The guest's login prompt (its `login` program) on a pty of the caller's
/// size that follows resizes, as root-login's shell: through the guest
/// agent, or from the host into the container's namespaces.
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
    let status = ended_session(&c, interactive_session(&c, &cmd, interactive))?;
    Ok(status.shell_code())
}

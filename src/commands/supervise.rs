use std::time::Duration;

use crate::cli::SuperviseArgs;
use crate::commands::Ctx;
use nixos_container::container::Container;
use nixos_container::error::Result;
use nixos_container::supervisor;

/// The hidden `__supervise` command that `start` forks.
pub fn run(ctx: &Ctx, args: &SuperviseArgs) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    Ok(supervisor::supervise(
        &c,
        &supervisor::SuperviseArgs { timeout: Duration::from_millis(args.timeout_ms), netns: args.netns.clone() },
    ))
}

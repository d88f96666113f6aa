//! The hidden entry points of a container's systemd unit (`crate::unit`).

use crate::cli::InternalName;
use crate::commands::Ctx;
use crate::error::Result;

/// `__run-unit NAME`: the unit's ExecStart; becomes systemd-nspawn.
pub fn run_unit(ctx: &Ctx, args: &InternalName) -> Result<i32> {
    crate::unit::run_unit(&ctx.paths, &args.name)
}

/// `__release NAME`: the unit's ExecStopPost.
pub fn release(ctx: &Ctx, args: &InternalName) -> Result<i32> {
    crate::unit::release(&ctx.paths, &args.name)
}

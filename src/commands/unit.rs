//! The hidden entry points of a container's systemd unit (`nixos_container::unit`).

use crate::cli::InternalName;
use crate::commands::Ctx;
use nixos_container::error::Result;

/// `__run-unit NAME`: the unit's ExecStart; becomes systemd-nspawn.
pub fn run_unit(ctx: &Ctx, args: &InternalName) -> Result<i32> {
    nixos_container::unit::run_unit(&ctx.paths, &args.name)
}

/// `__release NAME`: the unit's ExecStopPost.
pub fn release(ctx: &Ctx, args: &InternalName) -> Result<i32> {
    nixos_container::unit::release(&ctx.paths, &args.name)
}

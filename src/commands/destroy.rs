use crate::cli::NameArg;
use crate::commands::{require_root, Ctx};
use crate::error::Result;
use crate::lifecycle;

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    require_root()?;
    lifecycle::destroy(&ctx.paths, &args.name)?;
    Ok(0)
}

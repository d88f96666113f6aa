use crate::cli::StartArgs;
use crate::commands::{require_root, Ctx};
use crate::error::Result;
use crate::lifecycle::{self, Outcome};

pub fn run(ctx: &Ctx, args: &StartArgs) -> Result<i32> {
    require_root()?;
    if lifecycle::start(&ctx.paths, &args.name, args.timeout)? == Outcome::AlreadyThere {
        ctx.note(&format!("container '{}' is already running", args.name));
    }
    Ok(0)
}

use crate::cli::StopArgs;
use crate::commands::{require_root, Ctx};
use crate::error::Result;
use crate::lifecycle::{self, Outcome};

pub fn run(ctx: &Ctx, args: &StopArgs) -> Result<i32> {
    require_root()?;
    if lifecycle::stop(&ctx.paths, &args.name, args.timeout)? == Outcome::AlreadyThere {
        ctx.note(&format!("container '{}' is not running", args.name));
    }
    Ok(0)
}

use crate::cli::NameArg;
use crate::commands::{Ctx, require_root};
use nixos_container::error::Result;
use nixos_container::lifecycle::{self, Outcome};

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    require_root()?;
    if lifecycle::terminate(&ctx.paths, &args.name)? == Outcome::AlreadyThere {
        ctx.note(&format!("container '{}' is not running", args.name));
    }
    Ok(0)
}

use crate::cli::RestartArgs;
use crate::commands::progress::Spinner;
use crate::commands::{Ctx, require_root};
use nixos_container::error::Result;
use nixos_container::lifecycle;

pub fn run(ctx: &Ctx, args: &RestartArgs) -> Result<i32> {
    require_root()?;
    let _spinner = Spinner::new(ctx, format!("restarting {}", args.name));
    lifecycle::restart(&ctx.paths, &args.name, args.stop_timeout, args.timeout)?;
    Ok(0)
}

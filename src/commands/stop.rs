use crate::cli::StopArgs;
use crate::commands::pick::{self, Which};
use crate::commands::progress::Spinner;
use crate::commands::{Ctx, many, require_root};
use nixos_container::error::Result;
use nixos_container::lifecycle::{self, Outcome};

pub fn run(ctx: &Ctx, args: &StopArgs) -> Result<i32> {
    require_root()?;
    if args.all {
        let names: Vec<String> = pick::candidates(&ctx.paths, Which::Running)?.into_iter().map(|c| c.name).collect();
        let _spinner = Spinner::new(ctx, format!("stopping {} containers", names.len()));
        many::for_each(&names, "stop", |name| lifecycle::stop(&ctx.paths, name, args.timeout).map(|_| ()))?;
        return Ok(0);
    }
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "stop")?;
    let spinner = Spinner::new(ctx, format!("stopping {name}"));
    let outcome = lifecycle::stop(&ctx.paths, &name, args.timeout)?;
    drop(spinner);
    if outcome == Outcome::AlreadyThere {
        ctx.note(&format!("container '{name}' is not running"));
    }
    Ok(0)
}

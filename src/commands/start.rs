use crate::cli::StartArgs;
use crate::commands::pick::{self, Which};
use crate::commands::progress::Spinner;
use crate::commands::{Ctx, many, require_root};
use nixos_container::container::Container;
use nixos_container::error::Result;
use nixos_container::lifecycle::{self, Outcome};

pub fn run(ctx: &Ctx, args: &StartArgs) -> Result<i32> {
    require_root()?;
    if args.all || args.auto {
        let mut names = Container::list(&ctx.paths)?;
        if args.auto {
            // A conf that does not load is kept, so that its error is reported.
            names.retain(|n| Container::open(&ctx.paths, n).map(|c| c.conf.auto_start).unwrap_or(true));
        }
        let _spinner = Spinner::new(ctx, format!("starting {} containers", names.len()));
        many::for_each(&names, "start", |name| lifecycle::start(&ctx.paths, name, args.timeout).map(|_| ()))?;
        return Ok(0);
    }
    let name = pick::name(ctx, args.name.as_deref(), Which::Stopped, "start")?;
    let spinner = Spinner::new(ctx, format!("starting {name}"));
    let outcome = lifecycle::start(&ctx.paths, &name, args.timeout)?;
    drop(spinner);
    if outcome == Outcome::AlreadyThere {
        ctx.note(&format!("container '{name}' is already running"));
    }
    Ok(0)
}

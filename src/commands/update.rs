use crate::cli::{START_TIMEOUT, STOP_TIMEOUT, UpdateArgs, default_timeout};
use crate::commands::{Ctx, require_root};
use nixos_container::error::Result;
use nixos_container::update::{self, Applied, ApplyOptions, Updated};

pub fn run(ctx: &Ctx, args: &UpdateArgs) -> Result<i32> {
    nixos_container::name::validate_existing(&args.name)?;
    require_root()?;
    // The same defaults as `stop` and `start`.
    let opts = ApplyOptions {
        restart: args.restart,
        stop_timeout: default_timeout(STOP_TIMEOUT),
        start_timeout: default_timeout(START_TIMEOUT),
    };
    let updated = if args.rollback || args.switch_generation.is_some() {
        update::switch_generation(&ctx.paths, &args.name, args.switch_generation, opts)?
    } else {
        let source = args.source.source()?;
        update::update(&ctx.paths, &args.name, source, ctx.build_output(), &args.nix.flags(), opts)?
    };
    report(ctx, &args.name, &updated);
    Ok(0)
}

fn report(ctx: &Ctx, name: &str, u: &Updated) {
    let which = match u.generation {
        Some(g) => format!("generation {g} ({})", u.system.display()),
        None => u.system.display().to_string(),
    };
    match &u.applied {
        Applied::NotRunning => {
            ctx.note(&format!("container '{name}' now has {which}; it is not running, its next start boots it"))
        }
        Applied::Activated { output } => {
            let output = output.trim_end();
            if !output.is_empty() {
                ctx.note(output);
            }
            ctx.note(&format!("container '{name}' switched to {which}"));
        }
        Applied::Restarted => {
            ctx.note(&format!("container '{name}' was restarted into {which} to apply the changes to its settings"))
        }
    }
    if !u.restart_needed.is_empty() {
        ctx.note(&format!(
            "container '{name}' needs a restart for its changed {} to take effect: run 'nixos-container update {name} --restart' or 'nixos-container restart {name}'",
            u.restart_needed.join(", ")
        ));
    }
}

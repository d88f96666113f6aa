use crate::cli::SetLimitsArgs;
use crate::commands::{Ctx, require_root};
use nixos_container::error::{Error, Result};
use nixos_container::limits::{self, Limits};

pub fn run(ctx: &Ctx, args: &SetLimitsArgs) -> Result<i32> {
    nixos_container::name::validate(&args.name)?;
    require_root()?;
    let change = args.limits.change();
    if change.is_empty() {
        return Err(Error::Usage(
            "nothing to change: give --memory-max, --cpu-quota (or --cpus) or --pids-max (infinity removes a limit)"
                .into(),
        ));
    }
    let (now, running) = limits::set(&ctx.paths, &args.name, &change)?;
    let when = if running { "in force now" } else { "from its next start" };
    ctx.note(&format!("container '{}': {} ({when})", args.name, describe(&now)));
    Ok(0)
}

/// `memory 512M, cpu 150%, processes no limit`.
pub fn describe(l: &Limits) -> String {
    let none = || "no limit".to_string();
    format!(
        "memory {}, cpu {}, processes {}",
        l.memory_max.map(limits::format_bytes).unwrap_or_else(none),
        l.cpu_quota.map(|c| format!("{c}%")).unwrap_or_else(none),
        l.pids_max.map(|p| p.to_string()).unwrap_or_else(none)
    )
}

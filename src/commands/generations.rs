use crate::cli::NameArg;
use crate::commands::Ctx;
use nixos_container::container::Container;
use nixos_container::error::Result;
use nixos_container::profile::{self, Generation};

/// A local date and time as `nix-env --list-generations` prints it.
fn local_time(secs: i64) -> String {
    nixos_container::info::local_time(secs).map(|(time, _)| time).unwrap_or_else(|| secs.to_string())
}

/// One line: number, date, store path, and `(current)` for the selected one.
pub fn line(g: &Generation, date: &str) -> String {
    let current = if g.current { "   (current)" } else { "" };
    format!("{:4}   {date}   {}{current}", g.number, g.system.display())
}

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    for g in profile::generations(&c.paths.system_profile())? {
        println!("{}", line(&g, &local_time(g.created)));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_look_like_nix_envs() {
        let g = Generation { number: 2, created: 0, system: "/nix/store/abc-system".into(), current: true };
        assert_eq!(line(&g, "2024-05-01 12:00:00"), "   2   2024-05-01 12:00:00   /nix/store/abc-system   (current)");
        let g = Generation { current: false, number: 10, ..g };
        assert_eq!(line(&g, "d"), "  10   d   /nix/store/abc-system");
        assert_eq!(local_time(0).len(), "1970-01-01 00:00:00".len());
    }
}

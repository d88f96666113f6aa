use crate::cli::StatusArgs;
use crate::commands::Ctx;
use nixos_container::cgroup;
use nixos_container::container::Container;
use nixos_container::error::{Error, Result};

pub fn run(ctx: &Ctx, args: &StatusArgs) -> Result<i32> {
    let c = match Container::open(&ctx.paths, &args.name) {
        Ok(c) => c,
        // As nixpkgs: `gone` on stdout, and still an error.
        Err(e @ Error::NoSuchContainer(_)) => {
            if !args.json {
                println!("gone");
            }
            return Err(e);
        }
        Err(e) => return Err(e),
    };
    if args.json {
        let details = nixos_container::info::details(&c, cgroup::host_hierarchies()?);
        println!("{}", serde_json::to_string_pretty(&details).expect("details serialise"));
    } else {
        println!("{}", c.state()?.as_str());
    }
    Ok(0)
}

use crate::cli::CpArgs;
use crate::commands::{Ctx, require_root};
use nixos_container::container::Container;
use nixos_container::copy::{self, Copied, Location, Options};
use nixos_container::error::{Error, Result};
use nixos_container::info::format_size;

pub fn run(ctx: &Ctx, args: &CpArgs) -> Result<i32> {
    require_root()?;
    let opts = Options { archive: args.archive };
    let (copied, to) = match (Location::parse(&args.src), Location::parse(&args.dst)) {
        (Location::Host(src), Location::Container { name, path }) => {
            let c = Container::open(&ctx.paths, &name)?;
            (copy::copy_in(&c.paths.root, &src, &path, opts)?, format!("{name}:{path}"))
        }
        (Location::Container { name, path }, Location::Host(dst)) => {
            let c = Container::open(&ctx.paths, &name)?;
            (copy::copy_out(&c.paths.root, &path, &dst, opts)?, dst.display().to_string())
        }
        (Location::Container { .. }, Location::Container { .. }) => {
            return Err(Error::Usage(
                "cp copies between the host and a container: give NAME:PATH on one side only".into(),
            ));
        }
        (Location::Host(_), Location::Host(_)) => {
            return Err(Error::Usage(
                "cp needs NAME:PATH on one side, e.g. 'nixos-container cp ./site web:/var/www' (a host path with ':' can be written ./a:b)"
                    .into(),
            ));
        }
    };
    ctx.note(&format!("copied {} to {to}", describe(&copied)));
    Ok(0)
}

fn describe(c: &Copied) -> String {
    let mut parts = vec![format!("{} file{} ({})", c.files, if c.files == 1 { "" } else { "s" }, format_size(c.bytes))];
    if c.dirs > 0 {
        parts.push(format!("{} director{}", c.dirs, if c.dirs == 1 { "y" } else { "ies" }));
    }
    if c.links > 0 {
        parts.push(format!("{} link{}", c.links, if c.links == 1 { "" } else { "s" }));
    }
    if c.skipped > 0 {
        parts.push(format!("{} special file{} skipped", c.skipped, if c.skipped == 1 { "" } else { "s" }));
    }
    parts.join(", ")
}

use crate::cli::NameArg;
use crate::commands::Ctx;
use nixos_container::container::Container;
use nixos_container::error::{Error, Result};

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    let addr = c.address().ok_or_else(|| Error::NoAddress { name: c.name.clone() })?;
    println!("{addr}");
    Ok(0)
}

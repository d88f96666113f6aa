use crate::cli::NameArg;
use crate::commands::Ctx;
use crate::container::Container;
use crate::error::{Error, Result};

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    let addr = c
        .address()
        .ok_or_else(|| Error::other(format!("container '{}' has no IP address (LOCAL_ADDRESS is not set)", c.name)))?;
    println!("{addr}");
    Ok(0)
}

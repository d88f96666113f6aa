use crate::cli::NameArg;
use crate::commands::Ctx;
use crate::container::Container;
use crate::error::Result;

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    println!("{}", c.state()?.as_str());
    Ok(0)
}

use crate::commands::Ctx;
use crate::container::Container;
use crate::error::Result;

pub fn run(ctx: &Ctx) -> Result<i32> {
    for name in Container::list(&ctx.paths)? {
        println!("{name}");
    }
    Ok(0)
}

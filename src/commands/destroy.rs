use crate::cli::DestroyArgs;
use crate::commands::{pick, require_root, Ctx};
use crate::container::Container;
use crate::error::{Error, Result};
use crate::lifecycle;

pub fn run(ctx: &Ctx, args: &DestroyArgs) -> Result<i32> {
    require_root()?;
    let c = Container::open(&ctx.paths, &args.name)?;
    // Only a person is asked; scripts without a terminal go on as with the
    // anchor, which never asked.
    if !args.yes && ctx.can_prompt() {
        let question = format!(
            "Destroy container '{}' and all its data ({})?",
            c.name,
            c.paths.root.display()
        );
        if !pick::confirm(&question)? {
            return Err(Error::Cancelled(format!("container '{}' is kept", c.name)));
        }
    }
    let _spinner = super::progress::Spinner::new(ctx, format!("destroying {}", c.name));
    lifecycle::destroy(&ctx.paths, &c.name)?;
    Ok(0)
}

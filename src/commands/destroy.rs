use crate::cli::DestroyArgs;
use crate::commands::{Ctx, pick, require_root};
use crate::error::{Error, Result};
use crate::lifecycle;

pub fn run(ctx: &Ctx, args: &DestroyArgs) -> Result<i32> {
    require_root()?;
    let name = crate::name::validate(&args.name)?;
    let paths = ctx.paths.container(name);
    // Only a person is asked, and only about a container that exists (the
    // remains of an unfinished create, or a name that does not exist, are
    // lifecycle's to handle); scripts without a terminal go on as with the
    // anchor, which never asked.
    if !args.yes && ctx.can_prompt() && paths.conf.exists() {
        // Not asked about what would be refused anyway.
        lifecycle::refuse_declarative(&crate::container::Container::open(&ctx.paths, name)?)?;
        let question = format!("Destroy container '{name}' and all its data ({})?", paths.root.display());
        if !pick::confirm(&question)? {
            return Err(Error::Cancelled(format!("container '{name}' is kept")));
        }
    }
    let _spinner = super::progress::Spinner::new(ctx, format!("destroying {name}"));
    lifecycle::destroy(&ctx.paths, name)?;
    Ok(0)
}

use crate::cli::DestroyArgs;
use crate::commands::{Ctx, pick, require_root};
use nixos_container::error::{Error, Result};
use nixos_container::lifecycle;

pub fn run(ctx: &Ctx, args: &DestroyArgs) -> Result<i32> {
    require_root()?;
    let name = nixos_container::name::validate_existing(&args.name)?;
    let paths = ctx.paths.container(name);
    // Only a person is asked, and only about a container that exists (the
    // remains of an unfinished create, or a name that does not exist, are
    // lifecycle's to handle); scripts without a terminal go on as with the
    // anchor, which never asked.
    if !args.yes && ctx.can_prompt() && paths.conf.exists() {
        // Not asked about what would be refused anyway.
        lifecycle::refuse_declarative(&nixos_container::container::Container::open_to_destroy(&ctx.paths, name)?.0)?;
        let question = format!("Destroy container '{name}' and all its data ({})?", paths.root.display());
        if !pick::confirm(&question)? {
            return Err(Error::Cancelled(format!("container '{name}' is kept")));
        }
    }
    let _spinner = super::progress::Spinner::new(ctx, format!("destroying {name}"));
    match lifecycle::destroy(&ctx.paths, name) {
        // As nixpkgs: what does not exist is destroyed already (cleanup
        // scripts, NixOS tests and NixOps rely on it), with a note.
        Err(Error::NoSuchContainer(_)) => {
            ctx.note(&format!("container '{name}' does not exist; nothing to destroy"));
            Ok(0)
        }
        other => other.map(|()| 0),
    }
}

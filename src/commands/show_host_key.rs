use crate::cli::NameArg;
use crate::commands::{Ctx, require_root};
use crate::container::{Container, State};
use crate::error::{Error, Result};
use crate::rootfs;

/// The guest's public host keys, in the anchor's order of preference.
const KEYS: &[&str] = &["etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_ecdsa_key.pub"];

pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    require_root()?;
    let c = Container::open(&ctx.paths, &args.name)?;
    // The key is the running guest's; a stopped one may not have made it yet.
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name));
    }
    for key in KEYS {
        if let Ok(fd) = rootfs::open_in_root(&c.paths.root, key, nix::fcntl::OFlag::O_RDONLY) {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
                .map_err(|e| Error::other(format!("reading {key}: {e}")))?;
            // As a line, even if the file lacks its final newline.
            println!("{}", text.strip_suffix('\n').unwrap_or(&text));
            return Ok(0);
        }
    }
    Err(Error::other(format!(
        "container '{}' has no SSH host key (/{} is missing; is services.openssh enabled in it?)",
        c.name, KEYS[0]
    )))
}

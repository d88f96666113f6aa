use std::io::Read;

use crate::cli::NameArg;
use crate::commands::{Ctx, require_root};
use nixos_container::container::{Container, State};
use nixos_container::error::{Error, IoContext, Result};
use nixos_container::hostkey::{self, PublicKey};
use nixos_container::{fsutil, rootfs};

/// The guest's public host keys, in the anchor's order of preference.
const KEYS: &[&str] = &["etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/ssh_host_ecdsa_key.pub"];

/// Prints the running guest's host key as a known_hosts line for
/// `NAME.containers` and the container's addresses. The file is the
/// guest's: opened inside its root, read only if it is a regular file
/// (never a fifo or a device), at most `hostkey::MAX_LEN` bytes, and
/// printed only if it is one well-formed key line.
pub fn run(ctx: &Ctx, args: &NameArg) -> Result<i32> {
    require_root()?;
    let c = Container::open(&ctx.paths, &args.name)?;
    // The key is the running guest's; a stopped one may not have made it yet.
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name));
    }
    for key in KEYS {
        let flags = nix::fcntl::OFlag::O_PATH;
        let Ok(found) = rootfs::open_in_root(&c.paths.root, key, flags) else { continue };
        let bad =
            |reason: String| Error::other(format!("container '{}': /{key} is not a public key: {reason}", c.name));
        let file = fsutil::reopen_regular(&found)
            .map_err(|e| Error::other(format!("opening /{key} of container '{}': {e}", c.name)))?
            .ok_or_else(|| bad("not a regular file".into()))?;
        let mut text = Vec::new();
        std::fs::File::from(file)
            .take(hostkey::MAX_LEN as u64 + 1)
            .read_to_end(&mut text)
            .context(|| format!("reading /{key} of container '{}'", c.name))?;
        let parsed = PublicKey::parse(&text).map_err(bad)?;
        let mut hosts = vec![format!("{}.containers", c.name)];
        let conf = &c.conf;
        hosts.extend(conf.local_address.map(|a| a.addr.to_string()));
        hosts.extend(conf.local_address6.map(|a| a.addr.to_string()));
        println!("{}", parsed.known_hosts_line(&hosts));
        return Ok(0);
    }
    Err(Error::NoHostKey { name: c.name, key: KEYS[0] })
}

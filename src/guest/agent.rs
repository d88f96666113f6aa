//! The agent on the host side: the static binary embedded in the CLI, put
//! into the Nix store (which every guest shares read-only) the first time a
//! command needs it, and kept from garbage collection by a GC root in the
//! container's GC roots directory.
//!
//! Cost: when the agent is in the store already, one stat(2) (its store
//! path is computed at build time) and one readlink(2) for the root. The
//! first `run` after an upgrade or a garbage collection runs
//! `nix-store --add` once (tens of milliseconds).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, IoContext, Result};

/// The agent program, built statically by build.rs.
pub const BINARY: &[u8] = include_bytes!(env!("NIXOS_CONTAINER_AGENT_BIN"));
/// Where `nix-store --add` puts [`BINARY`] (computed by build.rs).
pub const STORE_PATH: &str = env!("NIXOS_CONTAINER_AGENT_STORE_PATH");
pub const NAME: &str = "nixos-container-agent";

/// Chooses the agent for this run. `NIXOS_CONTAINER_AGENT=off` disables
/// it (the plain shell protocol is used); any other value is taken as the
/// agent's path in the guest instead of the built-in one (for tests and
/// debugging; it is not installed then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Off,
    BuiltIn,
    Path(String),
}

impl Choice {
    pub fn from_env() -> Choice {
        match std::env::var("NIXOS_CONTAINER_AGENT") {
            Ok(v) if v == "off" => Choice::Off,
            Ok(v) if !v.is_empty() => Choice::Path(v),
            _ => Choice::BuiltIn,
        }
    }
}

/// Makes sure the built-in agent is in the store and rooted in `gcroots`
/// (the container's GC roots directory); returns its store path.
pub fn ensure_installed(gcroots: &Path) -> Result<String> {
    if !Path::new(STORE_PATH).exists() {
        let added = add_to_store()?;
        if added != STORE_PATH {
            return Err(Error::other(format!(
                "nix-store --add put the agent at {added}, not at the expected {STORE_PATH}"
            )));
        }
    }
    let root = gcroots.join(NAME);
    if std::fs::read_link(&root).ok().as_deref() != Some(Path::new(STORE_PATH)) && gcroots.is_dir() {
        let tmp = gcroots.join(format!(".{NAME}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(STORE_PATH, &tmp).context(|| format!("creating {}", tmp.display()))?;
        std::fs::rename(&tmp, &root).context(|| format!("creating {}", root.display()))?;
    }
    Ok(STORE_PATH.to_string())
}

fn add_to_store() -> Result<String> {
    // nix-store --add names the store path after the file.
    let dir = tempfile::Builder::new()
        .prefix("nixos-container-agent.")
        .tempdir()
        .context(|| "creating a temporary directory".into())?;
    let file = dir.path().join(NAME);
    let result = (|| {
        std::fs::write(&file, BINARY).context(|| format!("writing {}", file.display()))?;
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o555))
            .context(|| format!("chmod {}", file.display()))?;
        tracing::info!("adding the guest agent to the Nix store");
        let out = Command::new("nix-store").arg("--add").arg(&file).output().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::MissingProgram { program: "nix-store", hint: "install Nix" },
            _ => Error::Io { context: "running nix-store --add".into(), source: e },
        })?;
        if !out.status.success() {
            return Err(Error::other(format!(
                "nix-store --add of the guest agent failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })();
    drop(dir);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::store_path::*;

    #[test]
    fn store_paths_are_the_ones_nix_store_add_gives() {
        // `printf '#!/bin/sh\necho hi\n' > nixos-container-agent; chmod +x ...;
        // nix-store --add ./nixos-container-agent` with Nix 2.8.
        let nar = nar_sha256_executable(b"#!/bin/sh\necho hi\n");
        assert_eq!(nix_base32(&nar), "183p8jhjfcpk6kac6hxwp4gzp9brkvkibylz27jfbvgd5kqcq2jy");
        assert_eq!(
            source_store_path("/nix/store", NAME, &nar),
            "/nix/store/0ryvsfs4c6szc9cpcaj2lf1frpf94qay-nixos-container-agent"
        );
    }

    // STORE_PATH is computed by build.rs with the functions tested above;
    // that `nix-store --add` agrees is shown by the guest tests, which run
    // commands through the agent at that path.
    #[test]
    fn the_embedded_agent_is_an_executable() {
        assert!(BINARY.starts_with(b"\x7fELF"));
    }
}

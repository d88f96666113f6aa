//! The container's `etc/nixos/configuration.nix`, written by create/update.
//!
//! The form is the anchor's (boot.isContainer, a default host name, no DHCP,
//! the user's configuration), with one addition: the guest module that
//! serves the root-shell and login sockets is imported beside the user's
//! configuration. The user's inline `--config` goes into its own module in
//! the `imports` list, so that it may define `imports` itself.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

/// The in-container module shipped with the project (the seed's
/// container-login.nix). A copy is written beside every configuration.nix.
pub const GUEST_MODULE: &str = include_str!("../guest/container-login.nix");
pub const GUEST_MODULE_FILE: &str = "nixos-container-guest.nix";

/// Where the user's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserConfig {
    /// `--config STR`: Nix attribute definitions.
    Inline(String),
    /// `--config-file F`, made absolute.
    File(PathBuf),
    /// Neither: only the defaults.
    None,
}

impl UserConfig {
    /// Checks a `--config-file` argument and makes it absolute.
    pub fn file(path: &Path) -> Result<UserConfig> {
        let abs = std::fs::canonicalize(path).map_err(|e| Error::InvalidValue {
            what: "config file",
            value: path.display().to_string(),
            reason: io_reason(&e),
        })?;
        if !abs.is_file() {
            return Err(Error::InvalidValue {
                what: "config file",
                value: path.display().to_string(),
                reason: "not a regular file".into(),
            });
        }
        let s = abs.to_string_lossy();
        if s.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '$' | '#' | ';')) {
            return Err(Error::InvalidValue {
                what: "config file",
                value: s.into_owned(),
                reason: "Nix path literals cannot contain this path's characters; move or rename the file".into(),
            });
        }
        Ok(UserConfig::File(abs))
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The text of configuration.nix for container `name`.
pub fn render(name: &str, user: &UserConfig) -> String {
    let extra = match user {
        UserConfig::Inline(s) => format!(" {{ {s} }}"),
        UserConfig::File(p) => format!(" {}", p.display()),
        UserConfig::None => String::new(),
    };
    format!(
        "{{ config, lib, pkgs, ... }}:\n\n\
         {{ boot.isContainer = true;\n  \
         networking.hostName = lib.mkDefault \"{name}\";\n  \
         networking.useDHCP = false;\n  \
         imports = [ ./{GUEST_MODULE_FILE}{extra} ];\n\
         }}\n"
    )
}

/// Writes configuration.nix and the guest module into `etc_nixos`.
pub fn write(etc_nixos: &Path, name: &str, user: &UserConfig) -> Result<PathBuf> {
    fsutil::create_dir(etc_nixos, 0o755)?;
    fsutil::write_atomic(&etc_nixos.join(GUEST_MODULE_FILE), GUEST_MODULE.as_bytes(), 0o644)?;
    let file = etc_nixos.join("configuration.nix");
    fsutil::write_atomic(&file, render(name, user).as_bytes(), 0o644)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_form() {
        let text = render("foo", &UserConfig::File("/srv/foo.nix".into()));
        assert_eq!(
            text,
            "{ config, lib, pkgs, ... }:\n\n{ boot.isContainer = true;\n  networking.hostName = lib.mkDefault \"foo\";\n  networking.useDHCP = false;\n  imports = [ ./nixos-container-guest.nix /srv/foo.nix ];\n}\n"
        );
    }

    #[test]
    fn inline_config_is_its_own_module() {
        let text = render("foo", &UserConfig::Inline("services.x.enable = true;".into()));
        assert!(text.contains("imports = [ ./nixos-container-guest.nix { services.x.enable = true; } ];"));
        let text = render("foo", &UserConfig::None);
        assert!(text.contains("imports = [ ./nixos-container-guest.nix ];"));
    }

    #[test]
    fn config_file_must_exist() {
        let err = UserConfig::file(Path::new("/nonexistent/x.nix")).unwrap_err().to_string();
        assert_eq!(err, "invalid config file '/nonexistent/x.nix': no such file");
    }
}

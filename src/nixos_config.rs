//! The container's `etc/nixos/configuration.nix`, written by create/update.
//!
//! The form is the anchor's (boot.isContainer, a default host name, no DHCP,
//! the user's configuration), with one addition: the guest module that
//! serves the root-shell and login sockets is imported beside the user's
//! configuration. The user's inline `--config` goes into its own module in
//! the `imports` list, so that it may define `imports` itself.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, IoContext, Result};
use crate::rootfs;

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

/// The `etc/nixos` of a container whose guest has run, opened with the
/// root as `/`: the guest owns that directory and may have put symlinks in
/// it, so it is only ever entered through this handle.
pub struct EtcNixos {
    dir: OwnedFd,
    /// Where the directory really is (inside the root), for Nix to read.
    real: PathBuf,
}

/// A file's content before `EtcNixos::replace` changed it.
#[derive(Debug)]
pub struct Previous {
    file: &'static str,
    content: Option<(Vec<u8>, u32)>,
}

impl EtcNixos {
    /// Opens (and with `create`, makes) `ROOT/etc/nixos`.
    pub fn open(root: &Path, create: bool) -> Result<EtcNixos> {
        if create {
            rootfs::ensure_dir(root, "etc/nixos", 0o755)?;
        }
        let dir = rootfs::open_in_root(root, "etc/nixos", OFlag::O_DIRECTORY | OFlag::O_PATH)?;
        let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .context(|| format!("resolving {}/etc/nixos", root.display()))?;
        Ok(EtcNixos { dir, real })
    }

    /// The path of configuration.nix for Nix.
    pub fn config_path(&self) -> PathBuf {
        self.real.join("configuration.nix")
    }

    pub fn has_config(&self) -> bool {
        self.stat("configuration.nix").is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    fn stat(&self, file: &str) -> Option<nix::sys::stat::FileStat> {
        fstatat(self.dir.as_fd(), file, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
    }

    fn read(&self, file: &'static str) -> Result<Option<(Vec<u8>, u32)>> {
        let what = || format!("reading {}", self.real.join(file).display());
        let Some(st) = self.stat(file) else { return Ok(None) };
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::other(format!(
                "{} is not a regular file; move it away and try again",
                self.real.join(file).display()
            )));
        }
        let fd = openat(self.dir.as_fd(), file, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .context(what)?;
        let mut data = Vec::new();
        std::fs::File::from(fd).read_to_end(&mut data).context(what)?;
        Ok(Some((data, st.st_mode & 0o7777)))
    }

    /// Replaces `file` atomically (temporary file, fsync, rename).
    fn write(&self, file: &str, data: &[u8], mode: u32) -> Result<()> {
        let what = || format!("writing {}", self.real.join(file).display());
        let tmp = format!(".{file}.tmp{}", std::process::id());
        let _ = unlinkat(self.dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        let fd = openat(
            self.dir.as_fd(),
            tmp.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(mode),
        )
        .context(what)?;
        let mut f = std::fs::File::from(fd);
        let result = (|| {
            nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(mode))?;
            f.write_all(data)?;
            f.sync_all()?;
            nix::fcntl::renameat(self.dir.as_fd(), tmp.as_str(), self.dir.as_fd(), file)?;
            Ok::<(), std::io::Error>(())
        })();
        if result.is_err() {
            let _ = unlinkat(self.dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
        }
        result.context(what)
    }

    /// Writes configuration.nix for `user` and the guest module beside it;
    /// returns what they held before, for `restore`.
    pub fn replace(&self, name: &str, user: &UserConfig) -> Result<Vec<Previous>> {
        let mut previous = Vec::new();
        for (file, text) in [(GUEST_MODULE_FILE, GUEST_MODULE.to_string()), ("configuration.nix", render(name, user))] {
            let before = self.read(file)?;
            if before.as_ref().is_some_and(|(data, _)| data == text.as_bytes()) {
                continue;
            }
            previous.push(Previous { file, content: before });
            if let Err(e) = self.write(file, text.as_bytes(), 0o644) {
                self.restore(previous);
                return Err(e);
            }
        }
        Ok(previous)
    }

    /// Puts back what `replace` changed (after a failed build).
    pub fn restore(&self, previous: Vec<Previous>) {
        for p in previous.into_iter().rev() {
            let result = match &p.content {
                Some((data, mode)) => self.write(p.file, data, *mode),
                None => unlinkat(self.dir.as_fd(), p.file, UnlinkatFlags::NoRemoveDir)
                    .context(|| format!("removing {}", self.real.join(p.file).display())),
            };
            if let Err(e) = result {
                tracing::error!("putting back {}: {e}", self.real.join(p.file).display());
            }
        }
    }
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
    fn replace_then_restore_gives_back_the_old_files() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        EtcNixos::open(&root, true).unwrap().replace("c1", &UserConfig::Inline("a = 1;".into())).unwrap();
        let config = root.join("etc/nixos/configuration.nix");
        let old = std::fs::read(&config).unwrap();
        let etc = EtcNixos::open(&root, false).unwrap();
        assert!(etc.has_config());
        assert_eq!(etc.config_path(), config);
        let previous = etc.replace("c1", &UserConfig::Inline("b = 2;".into())).unwrap();
        assert_eq!(previous.len(), 1, "the guest module was already current");
        assert!(std::fs::read_to_string(&config).unwrap().contains("{ b = 2; }"));
        etc.restore(previous);
        assert_eq!(std::fs::read(&config).unwrap(), old);
        let leftovers: Vec<_> =
            std::fs::read_dir(root.join("etc/nixos")).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    }

    #[test]
    fn guest_symlinks_cannot_redirect_the_writes() {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("host-etc");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("configuration.nix"), "host file").unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        // The guest points its /etc/nixos at a host directory.
        std::os::unix::fs::symlink(&outside, root.join("etc/nixos")).unwrap();
        match EtcNixos::open(&root, true) {
            // Resolved inside the root, where the link's target does not exist.
            Err(_) => {}
            Ok(etc) => {
                assert!(etc.config_path().starts_with(&root), "{}", etc.config_path().display());
                etc.replace("c1", &UserConfig::None).unwrap();
            }
        }
        assert_eq!(std::fs::read_to_string(outside.join("configuration.nix")).unwrap(), "host file");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

        // A configuration.nix that is a symlink is refused, not followed.
        let root2 = base.path().join("root2");
        std::fs::create_dir_all(root2.join("etc/nixos")).unwrap();
        std::os::unix::fs::symlink(outside.join("configuration.nix"), root2.join("etc/nixos/configuration.nix"))
            .unwrap();
        let etc = EtcNixos::open(&root2, false).unwrap();
        assert!(!etc.has_config());
        let err = etc.replace("c2", &UserConfig::None).unwrap_err().to_string();
        assert!(err.contains("is not a regular file"), "{err}");
        assert_eq!(std::fs::read_to_string(outside.join("configuration.nix")).unwrap(), "host file");
    }

    #[test]
    fn config_file_must_exist() {
        let err = UserConfig::file(Path::new("/nonexistent/x.nix")).unwrap_err().to_string();
        assert_eq!(err, "invalid config file '/nonexistent/x.nix': no such file");
    }
}

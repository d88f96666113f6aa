//! A container's NixOS configuration, written by create/update.
//!
//! The form is the anchor's (boot.isContainer, a default host name, no DHCP,
//! the user's configuration), with one addition: the guest module that
//! serves the root-shell and login sockets is imported beside the user's
//! configuration. The user's inline `--config` goes into its own module in
//! the `imports` list, so that it may define `imports` itself.
//!
//! The configuration that is built lives outside the container's root, in
//! `CONF_DIR/NAME/` (host root's): Nix evaluates it as root, so the guest
//! must not be able to change it. The guest's `/etc/nixos` gets a copy to
//! read, which nothing on the host ever reads back. A `--config-file` is
//! read once and its content copied in (`config-file.nix`): what is built is
//! what was read, and nobody can change it between the check and the build.
use std::io::Read;
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

/// The largest configuration file read (the guest's copy may be anything).
const MAX_FILE: u64 = 8 << 20;

/// Where the user's configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserConfig {
    /// `--config STR`: Nix attribute definitions.
    Inline(String),
    /// `--config-file F`: its content, read once.
    File { path: PathBuf, content: Vec<u8> },
    /// Neither: only the defaults.
    None,
}

/// The copy of a `--config-file` beside configuration.nix.
pub const USER_FILE: &str = "config-file.nix";

/// The files of a configuration directory, in the order they are written.
const FILES: [&str; 3] = [USER_FILE, GUEST_MODULE_FILE, "configuration.nix"];

impl UserConfig {
    /// Reads a `--config-file` argument, once.
    pub fn file(path: &Path) -> Result<UserConfig> {
        let invalid =
            |reason: String| Error::InvalidValue { what: "config file", value: path.display().to_string(), reason };
        let mut f = std::fs::File::open(path).map_err(|e| invalid(io_reason(&e)))?;
        if !f.metadata().map_err(|e| invalid(io_reason(&e)))?.is_file() {
            return Err(invalid("not a regular file".into()));
        }
        let mut content = Vec::new();
        f.read_to_end(&mut content).map_err(|e| invalid(io_reason(&e)))?;
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Ok(UserConfig::File { path: abs, content })
    }
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The text of configuration.nix for container `name`. `state_version` is
/// the NixOS release the container was created with (as
/// nixos-generate-config writes it), kept across updates; a definition in
/// the user's configuration wins over it.
pub fn render(name: &str, user: &UserConfig, state_version: Option<&str>) -> String {
    let imports = match user {
        // On lines of its own, so that a trailing `# comment` cannot
        // swallow the brackets that close it.
        UserConfig::Inline(s) => format!("imports = [\n    ./{GUEST_MODULE_FILE}\n    {{\n{s}\n    }}\n  ];"),
        UserConfig::File { .. } => format!("imports = [ ./{GUEST_MODULE_FILE} ./{USER_FILE} ];"),
        UserConfig::None => format!("imports = [ ./{GUEST_MODULE_FILE} ];"),
    };
    let state_version = state_version
        .map(|v| {
            format!(
                "  # The NixOS release this container was created with; read the\n  \
                 # description of system.stateVersion before changing it.\n  \
                 system.stateVersion = lib.mkDefault \"{v}\";\n"
            )
        })
        .unwrap_or_default();
    format!(
        "{{ config, lib, pkgs, ... }}:\n\n\
         {{ boot.isContainer = true;\n  \
         networking.hostName = lib.mkDefault \"{name}\";\n  \
         networking.useDHCP = false;\n\
         {state_version}  \
         {imports}\n\
         }}\n"
    )
}

/// A directory holding a configuration: the authoritative one on the host
/// (`open_host`), or the copy in the guest's `etc/nixos` (`open_in_root`),
/// which the guest owns and may have put symlinks in. Either is only
/// entered through this handle, and no file in it is followed.
pub struct ConfigDir {
    dir: OwnedFd,
    /// Where the directory really is, for messages and for Nix.
    real: PathBuf,
}

/// A file's content before `ConfigDir::replace` changed it.
#[derive(Debug)]
pub struct Previous {
    file: &'static str,
    content: Option<(Vec<u8>, u32)>,
}

impl ConfigDir {
    /// Opens (and with `create`, makes, mode 0700) the host's `dir`.
    pub fn open_host(dir: &Path, create: bool) -> Result<ConfigDir> {
        if create {
            crate::fsutil::create_dir(dir, 0o700)?;
        }
        let fd = nix::fcntl::open(
            dir,
            OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .context(|| format!("opening {}", dir.display()))?;
        Ok(ConfigDir { dir: fd, real: dir.to_path_buf() })
    }

    /// Opens (and with `create`, makes) `ROOT/etc/nixos`, with the root as `/`.
    pub fn open_in_root(root: &Path, create: bool) -> Result<ConfigDir> {
        if create {
            rootfs::ensure_dir(root, "etc/nixos", 0o755)?;
        }
        let dir = rootfs::open_in_root(root, "etc/nixos", OFlag::O_DIRECTORY | OFlag::O_PATH)?;
        let real = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
            .context(|| format!("resolving {}/etc/nixos", root.display()))?;
        Ok(ConfigDir { dir, real })
    }

    /// The path of configuration.nix for Nix.
    pub fn config_path(&self) -> PathBuf {
        self.real.join("configuration.nix")
    }

    /// Where the directory is.
    pub fn path(&self) -> &Path {
        &self.real
    }

    pub fn has_config(&self) -> bool {
        self.stat("configuration.nix").is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    fn stat(&self, file: &str) -> Option<nix::sys::stat::FileStat> {
        fstatat(self.dir.as_fd(), file, AtFlags::AT_SYMLINK_NOFOLLOW).ok()
    }

    /// Reads `file` (None: there is none). In the guest's copy the file is
    /// the guest's: it is opened as a path, never followed, and read only
    /// when it is a regular file (so never a FIFO or device, never blocking)
    /// of at most `MAX_FILE` bytes.
    fn read(&self, file: &'static str) -> Result<Option<(Vec<u8>, u32)>> {
        let what = || format!("reading {}", self.real.join(file).display());
        let not_regular = || {
            Error::other(format!(
                "{} is not a regular file; move it away and try again",
                self.real.join(file).display()
            ))
        };
        let path_fd =
            match openat(self.dir.as_fd(), file, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty()) {
                Ok(fd) => fd,
                Err(nix::errno::Errno::ENOENT) => return Ok(None),
                Err(e) => return Err(e).context(what),
            };
        let fd = crate::fsutil::reopen_regular(&path_fd).context(what)?;
        let Some(fd) = fd else { return Err(not_regular()) };
        let st = nix::sys::stat::fstat(&fd).context(what)?;
        let too_large = || {
            Error::other(format!(
                "{} is larger than {} MiB; move it away and try again",
                self.real.join(file).display(),
                MAX_FILE >> 20
            ))
        };
        if st.st_size as u64 > MAX_FILE {
            return Err(too_large());
        }
        let mut data = Vec::new();
        std::fs::File::from(fd).take(MAX_FILE + 1).read_to_end(&mut data).context(what)?;
        if data.len() as u64 > MAX_FILE {
            return Err(too_large());
        }
        // Permission bits only: a set-uid bit a guest put on its copy must not
        // come back on a file host root writes (restore).
        Ok(Some((data, st.st_mode & 0o777)))
    }

    /// Replaces `file` atomically (temporary file, fsync, rename).
    fn write(&self, file: &str, data: &[u8], mode: u32) -> Result<()> {
        let what = || format!("writing {}", self.real.join(file).display());
        let tmp = format!(".{file}.tmp{}", std::process::id());
        crate::fsutil::write_atomic_at(self.dir.as_fd(), file, &tmp, data, mode, what)
    }

    /// Writes configuration.nix for `user`, the guest module and the copy
    /// of a `--config-file` beside it (removing an old copy when there is
    /// none now); returns what they held before, for `restore`.
    pub fn replace(&self, name: &str, user: &UserConfig, state_version: Option<&str>) -> Result<Vec<Previous>> {
        let user_file = match user {
            UserConfig::File { content, .. } => Some(content.clone()),
            _ => None,
        };
        let wanted =
            [user_file, Some(GUEST_MODULE.as_bytes().to_vec()), Some(render(name, user, state_version).into_bytes())];
        self.put(&wanted)
    }

    /// Makes `other` hold the same configuration as this directory (the
    /// guest's copy of the host's).
    pub fn mirror_into(&self, other: &ConfigDir) -> Result<()> {
        let mut wanted: [Option<Vec<u8>>; 3] = Default::default();
        for (i, file) in FILES.iter().enumerate() {
            wanted[i] = self.read(file)?.map(|(data, _)| data);
        }
        other.put(&wanted).map(|_| ())
    }

    /// Gives each of `FILES` the content in `wanted` (None: no such file).
    fn put(&self, wanted: &[Option<Vec<u8>>; 3]) -> Result<Vec<Previous>> {
        let mut previous = Vec::new();
        for (&file, want) in FILES.iter().zip(wanted) {
            // What is not a regular file (a guest's symlink) is replaced.
            let before = self.read(file).ok().flatten();
            if before.as_ref().map(|(data, _)| data) == want.as_ref() {
                continue;
            }
            previous.push(Previous { file, content: before });
            let result = match want {
                Some(data) => self.write(file, data, 0o644),
                None => unlinkat(self.dir.as_fd(), file, UnlinkatFlags::NoRemoveDir)
                    .context(|| format!("removing {}", self.real.join(file).display())),
            };
            if let Err(e) = result {
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

/// Refreshes the guest's read-only copy in `ROOT/etc/nixos` from `host`.
/// Only a convenience for the guest (nothing reads it back), so a guest
/// that broke its /etc/nixos gets a warning, not a failure.
pub fn copy_to_guest(host: &ConfigDir, root: &Path) {
    let result = ConfigDir::open_in_root(root, true).and_then(|guest| host.mirror_into(&guest));
    if let Err(e) = result {
        tracing::warn!("the guest's copy of its configuration in {}/etc/nixos is not up to date: {e}", root.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_form() {
        let text = render("foo", &UserConfig::File { path: "/srv/foo.nix".into(), content: b"{ }".to_vec() }, None);
        assert_eq!(
            text,
            "{ config, lib, pkgs, ... }:\n\n{ boot.isContainer = true;\n  networking.hostName = lib.mkDefault \"foo\";\n  networking.useDHCP = false;\n  imports = [ ./nixos-container-guest.nix ./config-file.nix ];\n}\n"
        );
    }

    #[test]
    fn inline_config_is_its_own_module_on_its_own_lines() {
        let text = render("foo", &UserConfig::Inline("services.x.enable = true; # on\n# comment".into()), None);
        assert!(
            text.ends_with(
                "  imports = [\n    ./nixos-container-guest.nix\n    {\nservices.x.enable = true; # on\n# comment\n    }\n  ];\n}\n"
            ),
            "{text}"
        );
        let text = render("foo", &UserConfig::None, None);
        assert!(text.contains("  imports = [ ./nixos-container-guest.nix ];\n}\n"), "{text}");
    }

    #[test]
    fn the_state_version_is_written_when_known() {
        let text = render("foo", &UserConfig::None, Some("20.09"));
        assert!(text.contains("\n  system.stateVersion = lib.mkDefault \"20.09\";\n  imports = [ ./"), "{text}");
        assert!(!render("foo", &UserConfig::None, None).contains("stateVersion"));
    }

    #[test]
    fn replace_then_restore_gives_back_the_old_files() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        ConfigDir::open_in_root(&root, true)
            .unwrap()
            .replace("c1", &UserConfig::Inline("a = 1;".into()), None)
            .unwrap();
        let config = root.join("etc/nixos/configuration.nix");
        let old = std::fs::read(&config).unwrap();
        let etc = ConfigDir::open_in_root(&root, false).unwrap();
        assert!(etc.has_config());
        assert_eq!(etc.config_path(), config);
        let previous = etc.replace("c1", &UserConfig::Inline("b = 2;".into()), None).unwrap();
        assert_eq!(previous.len(), 1, "the guest module was already current");
        assert!(std::fs::read_to_string(&config).unwrap().contains("{\nb = 2;\n    }"));
        etc.restore(previous);
        assert_eq!(std::fs::read(&config).unwrap(), old);
        // A set-uid bit the guest put on its copy does not come back.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o4755)).unwrap();
        let previous = etc.replace("c1", &UserConfig::Inline("c = 3;".into()), None).unwrap();
        etc.restore(previous);
        assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o7777, 0o755);
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
        match ConfigDir::open_in_root(&root, true) {
            // Resolved inside the root, where the link's target does not exist.
            Err(_) => {}
            Ok(etc) => {
                assert!(etc.config_path().starts_with(&root), "{}", etc.config_path().display());
                etc.replace("c1", &UserConfig::None, None).unwrap();
            }
        }
        assert_eq!(std::fs::read_to_string(outside.join("configuration.nix")).unwrap(), "host file");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1);

        // A configuration.nix that is a symlink is replaced, not followed.
        let root2 = base.path().join("root2");
        std::fs::create_dir_all(root2.join("etc/nixos")).unwrap();
        let link = root2.join("etc/nixos/configuration.nix");
        std::os::unix::fs::symlink(outside.join("configuration.nix"), &link).unwrap();
        let etc = ConfigDir::open_in_root(&root2, false).unwrap();
        assert!(!etc.has_config());
        etc.replace("c2", &UserConfig::None, None).unwrap();
        assert!(link.symlink_metadata().unwrap().is_file());
        assert_eq!(std::fs::read_to_string(outside.join("configuration.nix")).unwrap(), "host file");
    }

    #[test]
    fn the_host_copy_is_mirrored_into_the_guest_and_a_config_file_is_copied() {
        let base = tempfile::tempdir().unwrap();
        let host = ConfigDir::open_host(&base.path().join("conf/c1"), true).unwrap();
        let user = UserConfig::File { path: "/srv/web.nix".into(), content: b"{ a = 1; }".to_vec() };
        host.replace("c1", &user, None).unwrap();
        assert_eq!(std::fs::read(base.path().join("conf/c1/config-file.nix")).unwrap(), b"{ a = 1; }");
        let root = base.path().join("root");
        std::fs::create_dir(&root).unwrap();
        copy_to_guest(&host, &root);
        for f in FILES {
            assert_eq!(
                std::fs::read(root.join("etc/nixos").join(f)).unwrap(),
                std::fs::read(base.path().join("conf/c1").join(f)).unwrap(),
                "{f}"
            );
        }
        // Inline now: the copy of the old file goes, in both.
        host.replace("c1", &UserConfig::Inline("b = 2;".into()), None).unwrap();
        copy_to_guest(&host, &root);
        assert!(!base.path().join("conf/c1/config-file.nix").exists());
        assert!(!root.join("etc/nixos/config-file.nix").exists());
        let mode = std::fs::metadata(base.path().join("conf/c1")).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o700);
    }

    #[test]
    fn guest_fifos_devices_and_huge_files_are_replaced_without_being_read() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path().join("root");
        std::fs::create_dir_all(root.join("etc/nixos")).unwrap();
        let etc_nixos = root.join("etc/nixos");
        let config = etc_nixos.join("configuration.nix");
        nix::unistd::mkfifo(&config, Mode::from_bits_truncate(0o644)).unwrap();
        // A character device (/dev/null's numbers), when root may make one.
        let module = etc_nixos.join(GUEST_MODULE_FILE);
        let dev = nix::sys::stat::mknod(
            &module,
            nix::sys::stat::SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o644),
            nix::sys::stat::makedev(1, 3),
        );
        // A sparse file far larger than any configuration.
        let huge = std::fs::File::create(etc_nixos.join("config-file.nix")).unwrap();
        huge.set_len(1 << 40).unwrap();
        drop(huge);
        let etc = ConfigDir::open_in_root(&root, false).unwrap();
        for f in FILES {
            let err = etc.read(f).unwrap_err().to_string();
            assert!(err.contains("not a regular file") || err.contains("larger than"), "{f}: {err}");
        }
        assert!(dev.is_err() || etc.read(GUEST_MODULE_FILE).unwrap_err().to_string().contains("not a regular"));
        // Mirroring replaces all three (the read would block on the FIFO).
        let host = ConfigDir::open_host(&base.path().join("conf/c1"), true).unwrap();
        host.replace("c1", &UserConfig::File { path: "/f.nix".into(), content: b"{ }".to_vec() }, None).unwrap();
        copy_to_guest(&host, &root);
        for f in FILES {
            assert!(etc_nixos.join(f).symlink_metadata().unwrap().is_file(), "{f}");
        }
        assert_eq!(std::fs::read(etc_nixos.join("config-file.nix")).unwrap(), b"{ }");
    }

    #[test]
    fn a_config_file_is_read_once() {
        let base = tempfile::tempdir().unwrap();
        let f = base.path().join("web.nix");
        std::fs::write(&f, "{ first = 1; }").unwrap();
        let user = UserConfig::file(&f).unwrap();
        std::fs::write(&f, "{ second = 2; }").unwrap();
        assert_eq!(user, UserConfig::File { path: f.clone(), content: b"{ first = 1; }".to_vec() });
        let err = UserConfig::file(base.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn config_file_must_exist() {
        let err = UserConfig::file(Path::new("/nonexistent/x.nix")).unwrap_err().to_string();
        assert_eq!(err, "invalid config file '/nonexistent/x.nix': no such file");
    }
}

//! `cp`: files and directories between the host and a container's root.
//!
//! The guest owns its root and may change it while we copy, so on its side
//! every step is taken relative to directory descriptors: the container
//! path given is resolved with the root as `/` (`RESOLVE_IN_ROOT`: a guest
//! symlink never leads out to the host), and below it nothing is followed
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`); symbolic links are copied as
//! links. Files are written under a temporary name and renamed into place,
//! so a guest link in the way is replaced, never written through.
//!
//! Ownership, as `docker cp` does it: files copied in belong to the guest's
//! root, or with `archive` keep the numeric owner of the source (in the
//! guest's numbering); files copied out belong to the user running `cp`, or
//! with `archive` keep the guest's numeric owner. With private users
//! (`PRIVATE_USERS`), the guest's numbers are shifted by the owner of the
//! container's root directory, as systemd-nspawn does. Modes are kept; on
//! the way out setuid and setgid bits are dropped (a guest must not plant
//! a setuid program on the host). Device nodes, FIFOs and sockets are
//! skipped.
//!
//! Only the container's own root is seen: what nspawn binds into the guest
//! (`--bind`, the Nix store) is on the host already.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

use crate::error::{Error, IoContext, Result};

/// One side of a copy, as given: `NAME:PATH` or a host path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Host(PathBuf),
    Container { name: String, path: String },
}

impl Location {
    /// `NAME:PATH` when the part before the first ':' is a valid container
    /// name (a host path with a ':' can be given as `./a:b`).
    pub fn parse(arg: &OsStr) -> Location {
        if let Some(text) = arg.to_str()
            && let Some((name, path)) = text.split_once(':')
            && crate::name::validate(name).is_ok()
        {
            return Location::Container { name: name.to_string(), path: path.to_string() };
        }
        Location::Host(PathBuf::from(arg))
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Keep the source's numeric owners.
    pub archive: bool,
}

/// What was copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub dirs: u64,
    pub links: u64,
    pub bytes: u64,
    pub skipped: u64,
}

/// Who owns what is written, from the source's owner.
#[derive(Debug, Clone, Copy)]
enum Owners {
    /// Everything to this uid/gid.
    Fixed(u32, u32),
    /// The source's numbers plus `shift` (copy in), or minus (copy out).
    Shifted { shift: i64 },
}

impl Owners {
    fn of(self, st: &FileStat) -> (u32, u32) {
        match self {
            Owners::Fixed(u, g) => (u, g),
            Owners::Shifted { shift } => {
                let map = |id: u32| u32::try_from(i64::from(id) + shift).unwrap_or(id);
                (map(st.st_uid), map(st.st_gid))
            }
        }
    }
}

struct Walk {
    owners: Owners,
    /// Mode bits kept.
    mode_mask: u32,
    copied: Copied,
}

fn errno_ctx<T>(r: nix::Result<T>, what: impl FnOnce() -> String) -> Result<T> {
    r.map_err(|e| Error::Io { context: what(), source: io::Error::from(e) })
}

fn in_root_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Splits a path into its parent and last component; `.` and `/` have no
/// last component.
fn split(path: &str) -> (String, Option<OsString>) {
    let p = Path::new(path);
    match p.file_name() {
        Some(name) if !path.ends_with("/.") && path != "." => {
            let parent = p.parent().map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
            (if parent.is_empty() { ".".into() } else { parent }, Some(name.to_os_string()))
        }
        _ => (path.to_string(), None),
    }
}

/// The uid the guest's root has on the host: 0, or the base nspawn chose
/// for private users (it owns the container's root directory).
fn uid_shift(root: &Path) -> Result<i64> {
    let st = errno_ctx(nix::sys::stat::stat(root), || format!("reading {}", root.display()))?;
    Ok(i64::from(st.st_uid))
}

/// Copies host path `src` into container root `root` at `dst` (a path in
/// the guest).
pub fn copy_in(root: &Path, src: &Path, dst: &str, opts: Options) -> Result<Copied> {
    let shift = uid_shift(root)?;
    let owners = if opts.archive { Owners::Shifted { shift } } else { Owners::Fixed(shift as u32, shift as u32) };
    let src_str = src.to_string_lossy();
    let (src_name, contents_only) = match split(&src_str) {
        (_, Some(n)) => (n, false),
        (_, None) => (OsString::from("."), true),
    };
    let source = errno_ctx(nix::fcntl::open(src, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()), || {
        format!("reading {}", src.display())
    })?;
    let st = errno_ctx(fstat(&source), || format!("reading {}", src.display()))?;
    let root_fd = errno_ctx(
        nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()),
        || format!("opening {}", root.display()),
    )?;
    let in_guest = |path: &str, flags: OFlag| {
        openat2(root_fd.as_fd(), relative(path), in_root_how(flags))
            .map_err(|e| Error::Io { context: format!("{path} in the container"), source: io::Error::from(e) })
    };
    let dst_path = if dst.is_empty() { "/" } else { dst };
    let is_dir = |path: &str| in_guest(path, OFlag::O_PATH | OFlag::O_DIRECTORY).is_ok();
    let (dir, name) = if !contents_only && is_dir(dst_path) {
        (in_guest(dst_path, OFlag::O_PATH | OFlag::O_DIRECTORY)?, src_name)
    } else {
        match split(dst_path) {
            (parent, Some(n)) => (in_guest(&parent, OFlag::O_PATH | OFlag::O_DIRECTORY)?, n),
            (_, None) => return Err(Error::other(format!("cannot copy onto '{dst_path}' in the container"))),
        }
    };
    let mut walk = Walk { owners, mode_mask: 0o7777, copied: Copied::default() };
    walk.node(source, &st, dir.as_fd(), &name, &src_str)?;
    Ok(walk.copied)
}

/// Copies `src` (a path in the guest) from container root `root` to host
/// path `dst`.
pub fn copy_out(root: &Path, src: &str, dst: &Path, opts: Options) -> Result<Copied> {
    let shift = uid_shift(root)?;
    let owners = if opts.archive {
        Owners::Shifted { shift: -shift }
    } else {
        Owners::Fixed(nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw())
    };
    let root_fd = errno_ctx(
        nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()),
        || format!("opening {}", root.display()),
    )?;
    let src_path = if src.is_empty() { "/" } else { src };
    let (src_name, contents_only) = match split(src_path) {
        (_, Some(n)) => (n, false),
        (_, None) => (OsString::from("."), true),
    };
    // The path given may pass through the guest's links, inside its root.
    let source = openat2(root_fd.as_fd(), relative(src_path), in_root_how(OFlag::O_PATH))
        .map_err(|e| Error::Io { context: format!("{src_path} in the container"), source: io::Error::from(e) })?;
    let st = errno_ctx(fstat(&source), || format!("{src_path} in the container"))?;
    let (dir, name) = if !contents_only && dst.is_dir() {
        (open_host_dir(dst)?, src_name)
    } else {
        let parent = match dst.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let name = dst
            .file_name()
            .ok_or_else(|| Error::other(format!("cannot copy onto '{}'", dst.display())))?
            .to_os_string();
        (open_host_dir(parent)?, name)
    };
    let mut walk = Walk { owners, mode_mask: 0o1777, copied: Copied::default() };
    walk.node(source, &st, dir.as_fd(), &name, src_path)?;
    Ok(walk.copied)
}

/// A guest path relative to its root ("." for the root itself).
fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() { "." } else { rel }
}

fn open_host_dir(p: &Path) -> Result<OwnedFd> {
    errno_ctx(nix::fcntl::open(p, OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()), || {
        format!("opening directory {}", p.display())
    })
}

/// Opens what an O_PATH descriptor refers to, for reading.
fn reopen(fd: &OwnedFd, flags: OFlag) -> nix::Result<OwnedFd> {
    let proc = format!("/proc/self/fd/{}", fd.as_raw_fd());
    // The magic link leads to the very inode the descriptor holds.
    nix::fcntl::open(proc.as_str(), flags | OFlag::O_CLOEXEC, Mode::empty())
}

/// A name for a file being written, beside its final name.
fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".nixos-container-cp-{}", std::process::id()));
    t
}

impl Walk {
    fn node(&mut self, src: OwnedFd, st: &FileStat, dst_dir: BorrowedFd, name: &OsStr, shown: &str) -> Result<()> {
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let mode = Mode::from_bits_truncate(st.st_mode & self.mode_mask);
        let (uid, gid) = self.owners.of(st);
        let (uid, gid) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        if kind == SFlag::S_IFREG {
            let input = errno_ctx(reopen(&src, OFlag::O_RDONLY | OFlag::O_NONBLOCK), || format!("reading {shown}"))?;
            let tmp = temp_name(name);
            let out = errno_ctx(
                openat(
                    dst_dir,
                    tmp.as_os_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                ),
                || format!("creating {}", name.to_string_lossy()),
            )?;
            let write = || -> Result<u64> {
                let (mut i, mut o) = (File::from(input), File::from(out));
                let n = io::copy(&mut i, &mut o).context(|| format!("copying {shown}"))?;
                errno_ctx(fchown(o.as_fd(), uid, gid), || format!("setting the owner of {shown}"))?;
                errno_ctx(fchmod(o.as_fd(), mode), || format!("setting the mode of {shown}"))?;
                errno_ctx(nix::fcntl::renameat(dst_dir, tmp.as_os_str(), dst_dir, name), || {
                    format!("writing {}", name.to_string_lossy())
                })?;
                Ok(n)
            };
            match write() {
                Ok(n) => {
                    self.copied.files += 1;
                    self.copied.bytes += n;
                }
                Err(e) => {
                    let _ = nix::unistd::unlinkat(dst_dir, tmp.as_os_str(), nix::unistd::UnlinkatFlags::NoRemoveDir);
                    return Err(e);
                }
            }
        } else if kind == SFlag::S_IFDIR {
            match fstatat(dst_dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(existing) if SFlag::from_bits_truncate(existing.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR => {}
                Ok(_) => {
                    return Err(Error::other(format!(
                        "cannot copy directory {shown} onto '{}': it exists and is not a directory",
                        name.to_string_lossy()
                    )));
                }
                Err(Errno::ENOENT) => errno_ctx(mkdirat(dst_dir, name, Mode::from_bits_truncate(0o700)), || {
                    format!("creating directory {}", name.to_string_lossy())
                })?,
                Err(e) => return errno_ctx(Err(e), || format!("looking at {}", name.to_string_lossy())),
            }
            let out = errno_ctx(
                openat(
                    dst_dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ),
                || format!("opening directory {}", name.to_string_lossy()),
            )?;
            let input = errno_ctx(reopen(&src, OFlag::O_RDONLY | OFlag::O_DIRECTORY), || format!("reading {shown}"))?;
            let mut entries: Vec<OsString> = {
                let mut d = errno_ctx(nix::dir::Dir::from_fd(input.try_clone().context(|| "dup".into())?), || {
                    format!("reading {shown}")
                })?;
                d.iter()
                    .flatten()
                    .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
                    .filter(|n| n != "." && n != "..")
                    .collect()
            };
            entries.sort();
            for entry in entries {
                let child_shown = format!("{}/{}", shown.trim_end_matches('/'), entry.to_string_lossy());
                let child = match openat(
                    input.as_fd(),
                    entry.as_os_str(),
                    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(c) => c,
                    // Gone meanwhile (a running guest).
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return errno_ctx(Err(e), || format!("reading {child_shown}")),
                };
                let cst = errno_ctx(fstat(&child), || format!("reading {child_shown}"))?;
                self.node(child, &cst, out.as_fd(), &entry, &child_shown)?;
            }
            errno_ctx(fchown(out.as_fd(), uid, gid), || format!("setting the owner of {shown}"))?;
            errno_ctx(fchmod(out.as_fd(), mode), || format!("setting the mode of {shown}"))?;
            self.copied.dirs += 1;
        } else if kind == SFlag::S_IFLNK {
            let target = errno_ctx(nix::fcntl::readlinkat(src.as_fd(), ""), || format!("reading link {shown}"))?;
            let tmp = temp_name(name);
            errno_ctx(symlinkat(target.as_os_str(), dst_dir, tmp.as_os_str()), || {
                format!("creating link {}", name.to_string_lossy())
            })?;
            let _ = fchownat(dst_dir, tmp.as_os_str(), uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW);
            errno_ctx(nix::fcntl::renameat(dst_dir, tmp.as_os_str(), dst_dir, name), || {
                format!("creating link {}", name.to_string_lossy())
            })?;
            self.copied.links += 1;
        } else {
            tracing::warn!("skipping {shown}: not a file, directory or symbolic link");
            self.copied.skipped += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn locations() {
        assert_eq!(
            Location::parse(OsStr::new("web:/etc/hosts")),
            Location::Container { name: "web".into(), path: "/etc/hosts".into() }
        );
        assert_eq!(Location::parse(OsStr::new("./web:x")), Location::Host("./web:x".into()));
        assert_eq!(Location::parse(OsStr::new("/tmp/a")), Location::Host("/tmp/a".into()));
        assert_eq!(Location::parse(OsStr::new("bad_name:/x")), Location::Host("bad_name:/x".into()));
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split("/etc/hosts"), ("/etc".into(), Some("hosts".into())));
        assert_eq!(split("hosts"), (".".into(), Some("hosts".into())));
        assert_eq!(split("/etc/."), ("/etc/.".into(), None));
        assert_eq!(split("/"), ("/".into(), None));
    }

    fn tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        (t, root, outside)
    }

    #[test]
    fn copying_in_keeps_modes_and_never_follows_guest_links_out() {
        let (t, root, outside) = tree();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("sub")).unwrap();
        std::fs::write(src.join("run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(src.join("run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(src.join("sub/data"), "data").unwrap();
        std::os::unix::fs::symlink("run.sh", src.join("link")).unwrap();
        // The guest links /srv out to the host, and a file name to a host file.
        std::os::unix::fs::symlink(&outside, root.join("srv")).unwrap();
        std::fs::write(outside.join("victim"), "host").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("etc/victim")).unwrap();

        // /srv resolves inside the root, where its target does not exist.
        assert!(copy_in(&root, &src, "/srv/app", Options::default()).is_err());
        let c = copy_in(&root, &src.join("run.sh"), "/etc/victim", Options::default()).unwrap();
        assert_eq!(c.files, 1);
        assert_eq!(std::fs::read_to_string(outside.join("victim")).unwrap(), "host", "the host file is untouched");
        assert!(root.join("etc/victim").symlink_metadata().unwrap().is_file(), "the guest's link was replaced");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing written outside");

        // Into an existing directory: under the source's name.
        let c = copy_in(&root, &src, "/etc", Options::default()).unwrap();
        assert_eq!((c.files, c.dirs, c.links), (2, 2, 1));
        let copied = root.join("etc/src");
        assert_eq!(std::fs::metadata(copied.join("run.sh")).unwrap().permissions().mode() & 0o7777, 0o750);
        assert_eq!(std::fs::read_to_string(copied.join("sub/data")).unwrap(), "data");
        assert_eq!(std::fs::read_link(copied.join("link")).unwrap(), Path::new("run.sh"));
        // The contents of a directory with "/.".
        let dot = format!("{}/.", src.join("sub").display());
        copy_in(&root, Path::new(&dot), "/opt", Options::default()).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("opt/data")).unwrap(), "data");
    }

    #[test]
    fn copying_out_drops_setuid_and_reads_inside_the_root() {
        let (t, root, outside) = tree();
        std::fs::write(root.join("etc/tool"), "x").unwrap();
        std::fs::set_permissions(root.join("etc/tool"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::write(outside.join("secret"), "host secret").unwrap();
        // An absolute guest link: read as the guest sees it, inside its root.
        std::os::unix::fs::symlink(outside.join("secret"), root.join("etc/secret")).unwrap();
        let dst = t.path().join("out");
        std::fs::create_dir_all(&dst).unwrap();
        copy_out(&root, "/etc/tool", &dst, Options::default()).unwrap();
        let m = std::fs::metadata(dst.join("tool")).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o755, "setuid dropped");
        assert_eq!(m.uid(), nix::unistd::geteuid().as_raw());
        assert!(copy_out(&root, "/etc/secret", &dst.join("s"), Options::default()).is_err());
        // Inside a directory, the link is copied as a link.
        let c = copy_out(&root, "/etc", &dst.join("etc"), Options::default()).unwrap();
        assert_eq!((c.files, c.links), (1, 1));
        assert!(dst.join("etc/secret").symlink_metadata().unwrap().file_type().is_symlink());
    }
}

//! File system helpers: atomic writes and the careful removal `destroy` needs.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{Error, IoContext, Result};

/// Replaces `path` with `data` so that readers see the old or the new file,
/// never a part: write a temporary file beside it, fsync, rename, fsync the
/// directory.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.context(|| format!("writing {}", path.display()))
}

/// Creates a directory (and parents) with the given mode for the last part.
pub fn create_dir(path: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(path).context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .context(|| format!("setting the mode of {}", path.display()))
}

/// Decodes the octal escapes (`\040`) of /proc/self/mountinfo fields.
fn unescape_mount_path(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// Mount points at or below `dir`, deepest first, from mountinfo text.
pub fn mounts_below(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// Detaches every mount at or below `dir` (deepest first). Bind-mounted data
/// is only detached, never touched.
pub fn unmount_below(dir: &Path) -> Result<()> {
    for _ in 0..8 {
        let info = fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".into())?;
        let mounts = mounts_below(&info, dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            match nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e).context(|| format!("unmounting {}", m.display())),
            }
        }
    }
    Err(Error::other(format!("mounts below {} keep coming back; not removing it", dir.display())))
}

const FS_IMMUTABLE_FL: libc::c_long = 0x10;
const FS_APPEND_FL: libc::c_long = 0x20;

nix::ioctl_read!(fs_ioc_getflags, b'f', 1, libc::c_long);
nix::ioctl_write_ptr!(fs_ioc_setflags, b'f', 2, libc::c_long);

/// Clears the immutable and append-only flags (chattr -ia) of an open file.
fn clear_immutable(fd: BorrowedFd<'_>) -> bool {
    let mut flags: libc::c_long = 0;
    // SAFETY: the ioctls read/write one c_long through a valid pointer.
    unsafe {
        if fs_ioc_getflags(fd.as_raw_fd(), &mut flags).is_err() {
            return false;
        }
        if flags & (FS_IMMUTABLE_FL | FS_APPEND_FL) == 0 {
            return false;
        }
        flags &= !(FS_IMMUTABLE_FL | FS_APPEND_FL);
        fs_ioc_setflags(fd.as_raw_fd(), &flags).is_ok()
    }
}

fn open_entry(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    openat(dir, name, flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// Removes the directory tree at `path` without following symlinks and
/// without crossing into other file systems: a directory on another device
/// (a mount that is still there) is left alone and reported. Immutable and
/// append-only flags are cleared where they block removal.
pub fn remove_tree(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).context(|| format!("inspecting {}", path.display())),
    };
    if !meta.is_dir() {
        return fs::remove_file(path).context(|| format!("removing {}", path.display()));
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| Error::other(format!("refusing to remove {}", path.display())))?;
    let parent_fd = nix::fcntl::open(parent, OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| format!("opening {}", parent.display()))?;
    let dir_fd = open_entry(parent_fd.as_fd(), name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .context(|| format!("opening {}", path.display()))?;
    let dev = fstat(dir_fd.as_fd()).context(|| format!("inspecting {}", path.display()))?.st_dev;
    let mut skipped = Vec::new();
    empty_dir(dir_fd.as_fd(), path, dev, &mut skipped)?;
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::other(format!(
            "left {} in place: on another file system (a mount?); unmount it and run again",
            list.join(", ")
        )));
    }
    drop(dir_fd);
    remove_entry(parent_fd.as_fd(), name, true, path)
}

fn remove_entry(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool, path: &Path) -> Result<()> {
    let flag = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
    match unlinkat(dir, name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EPERM) | Err(Errno::EACCES) => {
            // An immutable entry, or an immutable/append-only directory.
            let mut cleared = clear_immutable(dir);
            if let Ok(fd) = open_entry(dir, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
                cleared |= clear_immutable(fd.as_fd());
            }
            if !cleared {
                return Err(Errno::EPERM).context(|| format!("removing {}", path.display()));
            }
            unlinkat(dir, name, flag).context(|| format!("removing {}", path.display()))
        }
        Err(e) => Err(e).context(|| format!("removing {}", path.display())),
    }
}

fn empty_dir(fd: BorrowedFd<'_>, path: &Path, dev: u64, skipped: &mut Vec<PathBuf>) -> Result<()> {
    let names: Vec<std::ffi::OsString> = {
        // A close-on-exec copy: other threads may fork and exec meanwhile.
        let dup = fd.try_clone_to_owned().context(|| format!("reading {}", path.display()))?;
        let mut dir = nix::dir::Dir::from_fd(dup).context(|| format!("reading {}", path.display()))?;
        dir.iter()
            .filter_map(|e| e.ok())
            .map(|e| std::ffi::OsString::from(OsStr::from_bytes(e.file_name().to_bytes())))
            .filter(|n| n != "." && n != "..")
            .collect()
    };
    for name in names {
        let child = path.join(&name);
        let st = match fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).context(|| format!("inspecting {}", child.display())),
        };
        let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
        if is_dir {
            if st.st_dev != dev {
                skipped.push(child);
                continue;
            }
            let sub = open_entry(fd, &name, OFlag::O_DIRECTORY | OFlag::O_RDONLY)
                .context(|| format!("opening {}", child.display()))?;
            // Re-check after opening: the entry may have been swapped.
            if fstat(sub.as_fd()).context(|| format!("inspecting {}", child.display()))?.st_dev != dev {
                skipped.push(child);
                continue;
            }
            let before = skipped.len();
            empty_dir(sub.as_fd(), &child, dev, skipped)?;
            if skipped.len() != before {
                continue; // keep the parents of what we left in place
            }
            drop(sub);
            remove_entry(fd, &name, true, &child)?;
        } else {
            remove_entry(fd, &name, false, &child)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped_and_sorted_deepest_first() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/vda rw
30 22 0:30 / /var/lib/nixos-containers/a rw - tmpfs tmpfs rw
31 30 0:31 / /var/lib/nixos-containers/a/srv/my\\040data rw - ext4 /dev/vdb rw
32 22 0:32 / /var/lib/nixos-containers/ab rw - tmpfs tmpfs rw
";
        let got = mounts_below(info, Path::new("/var/lib/nixos-containers/a"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/var/lib/nixos-containers/a/srv/my data"),
                PathBuf::from("/var/lib/nixos-containers/a"),
            ]
        );
    }

    #[test]
    fn remove_tree_does_not_follow_symlinks() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "data").unwrap();
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("a/b/f"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/link")).unwrap();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        assert_eq!(std::fs::read_to_string(outside.path().join("keep")).unwrap(), "data");
    }

    #[test]
    fn atomic_write_replaces_and_sets_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.conf");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

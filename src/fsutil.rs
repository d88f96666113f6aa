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

/// Replaces `name` in the directory `dir` atomically: a temporary file
/// `tmp` (created afresh, never through a link), fsync, rename. A symlink
/// at `name` is replaced, never followed. `what` names the file in errors.
pub fn write_atomic_at(
    dir: BorrowedFd<'_>,
    name: &str,
    tmp: &str,
    data: &[u8],
    mode: u32,
    what: impl Fn() -> String,
) -> Result<()> {
    let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        dir,
        tmp,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    )
    .context(&what)?;
    let mut f = fs::File::from(fd);
    let result = (|| {
        // The umask must not narrow the mode.
        nix::sys::stat::fchmod(f.as_fd(), Mode::from_bits_truncate(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        nix::fcntl::renameat(dir, tmp, dir, name)?;
        Ok::<(), std::io::Error>(())
    })();
    if result.is_err() {
        let _ = unlinkat(dir, tmp, UnlinkatFlags::NoRemoveDir);
    }
    result.context(what)
}

/// The entries of a directory; a missing directory has none (nothing
/// created yet). Entries that fail to read are skipped.
pub fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.flatten().collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).context(|| format!("reading {}", dir.display())),
    }
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

/// Opens a regular file found as an `O_PATH` descriptor, for reading,
/// without opening anything else: the type is checked on the inode the
/// descriptor holds, which is then reopened through /proc (no name is
/// looked up again, so nothing can be swapped in between). None when it is
/// not a regular file (a fifo, socket, device node, directory, symlink).
pub fn reopen_regular(path_fd: &OwnedFd) -> nix::Result<Option<OwnedFd>> {
    reopen_as(path_fd.as_fd(), SFlag::S_IFREG)
}

fn reopen_as(path_fd: BorrowedFd<'_>, kind: SFlag) -> nix::Result<Option<OwnedFd>> {
    let st = fstat(path_fd)?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != kind {
        return Ok(None);
    }
    let extra = if kind == SFlag::S_IFDIR { OFlag::O_DIRECTORY } else { OFlag::empty() };
    let proc = format!("/proc/self/fd/{}", path_fd.as_raw_fd());
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC | extra;
    nix::fcntl::open(proc.as_str(), flags, Mode::empty()).map(Some)
}

fn kind_of(st: &nix::sys::stat::FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Opens the directory `name` in `dir` (never a symlink, never blocking).
fn open_dir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    openat(dir, name, flags, Mode::empty())
}

/// Whether an open directory is the root of a mount: another file system,
/// or a bind mount of the same one (same device number).
fn is_mount_root(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: statx fills the zeroed struct it is given; the path is "".
    unsafe {
        let mut stx: libc::statx = std::mem::zeroed();
        let rc = libc::statx(fd.as_raw_fd(), c"".as_ptr(), libc::AT_EMPTY_PATH, libc::STATX_BASIC_STATS, &mut stx);
        let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
        rc == 0 && stx.stx_attributes_mask & bit != 0 && stx.stx_attributes & bit != 0
    }
}

/// One directory on the path from the top of the tree being removed down
/// to the current one: how to recognise it when coming back up through
/// `..`, its name in its parent, the subdirectories still to remove.
struct Level {
    dev: u64,
    ino: u64,
    name: std::ffi::OsString,
    pending: Vec<std::ffi::OsString>,
    /// Something below it was left in place, so it stays too.
    kept: bool,
}

/// The path of the current directory, for messages (built only then).
fn path_of(top: &Path, levels: &[Level], name: Option<&OsStr>) -> PathBuf {
    let mut p = top.to_path_buf();
    for l in levels.iter().skip(1) {
        p.push(&l.name);
    }
    if let Some(n) = name {
        p.push(n);
    }
    p
}

/// Removes the directory tree at `path`, whatever the guest made in it
/// (very deep or very wide trees, fifos, sockets, device nodes, immutable
/// or append-only files and directories):
/// - it walks iteratively, holding a few descriptors whatever the depth
///   (it goes back up through `..`, checked against the device and inode
///   it came from);
/// - it never follows symlinks and never opens anything but directories
///   and regular files (only to clear `chattr +i/+a`, and only after the
///   type was checked on the inode itself);
/// - it never crosses into another mount, also a bind mount of the same
///   file system: those are left in place and reported.
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
    let mut cur = open_dir(parent_fd.as_fd(), name).context(|| format!("opening {}", path.display()))?;
    let st = fstat(cur.as_fd()).context(|| format!("inspecting {}", path.display()))?;
    let dev = st.st_dev;
    let mut skipped = Vec::new();
    let mut levels = vec![Level { dev, ino: st.st_ino, name: name.to_os_string(), pending: Vec::new(), kept: false }];
    levels[0].pending = scan(cur.as_fd(), &|| path.to_path_buf())?;
    loop {
        let here = levels.len() - 1;
        if let Some(child) = levels[here].pending.pop() {
            let sub = match open_dir(cur.as_fd(), &child) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => continue,
                // Swapped for something else since the scan: not a directory now.
                Err(Errno::ENOTDIR) | Err(Errno::ELOOP) => {
                    remove_entry(cur.as_fd(), &child, false, &|| path_of(path, &levels, Some(&child)))?;
                    continue;
                }
                Err(e) => {
                    return Err(e).context(|| format!("opening {}", path_of(path, &levels, Some(&child)).display()));
                }
            };
            let st = fstat(sub.as_fd())
                .context(|| format!("inspecting {}", path_of(path, &levels, Some(&child)).display()))?;
            if st.st_dev != dev || is_mount_root(sub.as_fd()) {
                skipped.push(path_of(path, &levels, Some(&child)));
                levels[here].kept = true;
                continue;
            }
            levels.push(Level { dev: st.st_dev, ino: st.st_ino, name: child, pending: Vec::new(), kept: false });
            cur = sub;
            let pending = scan(cur.as_fd(), &|| path_of(path, &levels, None))?;
            levels.last_mut().expect("just pushed").pending = pending;
            continue;
        }
        // Everything below this directory is gone (or kept): go up.
        let done = levels.pop().expect("not empty");
        let Some(up) = levels.last_mut() else { break };
        let parent = open_dir(cur.as_fd(), OsStr::new("..")).context(|| format!("opening {}", path.display()))?;
        let st = fstat(parent.as_fd()).context(|| format!("inspecting {}", path.display()))?;
        if (st.st_dev, st.st_ino) != (up.dev, up.ino) {
            return Err(Error::other(format!("{} changed while it was being removed; run again", path.display())));
        }
        cur = parent;
        if done.kept {
            up.kept = true;
        } else {
            remove_entry(cur.as_fd(), &done.name, true, &|| path_of(path, &levels, Some(&done.name)))?;
        }
    }
    drop(cur);
    if !skipped.is_empty() {
        let list: Vec<String> = skipped.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::other(format!(
            "left {} in place: a mount (another file system or a bind mount); unmount it and run again",
            list.join(", ")
        )));
    }
    remove_entry(parent_fd.as_fd(), name, true, &|| path.to_path_buf())
}

/// Removes every entry of the directory `fd` but its subdirectories, whose
/// names it returns.
/// `path` gives the directory's path, for messages only (building it for
/// every directory of a deep tree would cost O(depth²)).
fn scan(fd: BorrowedFd<'_>, path: &dyn Fn() -> PathBuf) -> Result<Vec<std::ffi::OsString>> {
    let names: Vec<std::ffi::OsString> = {
        // An open file of its own, so reading does not move `fd`'s offset.
        let own = openat(fd, ".", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .context(|| format!("reading {}", path().display()))?;
        let mut dir = nix::dir::Dir::from_fd(own).context(|| format!("reading {}", path().display()))?;
        let mut names = Vec::new();
        for e in dir.iter() {
            let e = e.context(|| format!("reading {}", path().display()))?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(std::ffi::OsString::from(OsStr::from_bytes(n)));
            }
        }
        names
    };
    let mut dirs = Vec::new();
    for name in names {
        let st = match fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e).context(|| format!("inspecting {}", path().join(&name).display())),
        };
        if kind_of(&st) == SFlag::S_IFDIR {
            dirs.push(name);
        } else {
            remove_entry(fd, &name, false, &|| path().join(&name))?;
        }
    }
    Ok(dirs)
}

/// Clears `chattr +i/+a` of entry `name` of `dir` if it is a directory or
/// a regular file; other kinds are not opened at all.
fn clear_entry_flags(dir: BorrowedFd<'_>, name: &OsStr) -> bool {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let Ok(found) = openat(dir, name, flags, Mode::empty()) else { return false };
    let Ok(st) = fstat(found.as_fd()) else { return false };
    let kind = kind_of(&st);
    if kind != SFlag::S_IFREG && kind != SFlag::S_IFDIR {
        return false;
    }
    match reopen_as(found.as_fd(), kind) {
        Ok(Some(fd)) => clear_immutable(fd.as_fd()),
        _ => false,
    }
}

fn remove_entry(dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool, path: &dyn Fn() -> PathBuf) -> Result<()> {
    let flag = if is_dir { UnlinkatFlags::RemoveDir } else { UnlinkatFlags::NoRemoveDir };
    match unlinkat(dir, name, flag) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EPERM) | Err(Errno::EACCES) => {
            // An immutable entry, or an immutable/append-only directory.
            let mut cleared = clear_immutable(dir);
            cleared |= clear_entry_flags(dir, name);
            if !cleared {
                return Err(Errno::EPERM).context(|| format!("removing {}", path().display()));
            }
            unlinkat(dir, name, flag).context(|| format!("removing {}", path().display()))
        }
        Err(e) => Err(e).context(|| format!("removing {}", path().display())),
    }
}

/// Helpers for the tests of code that must not open a guest's special files.
#[cfg(test)]
pub mod testing {
    use std::path::Path;
    use std::time::Duration;

    /// Makes a FIFO at `path` with a writer blocked in open(2) until a
    /// reader opens it, runs `f`, and says whether `f` opened it for
    /// reading. The FIFO is left in place.
    pub fn fifo_opened_by(path: &Path, f: impl FnOnce()) -> bool {
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let writer = {
            let path = path.to_path_buf();
            std::thread::spawn(move || drop(std::fs::OpenOptions::new().write(true).open(path)))
        };
        std::thread::sleep(Duration::from_millis(200));
        f();
        std::thread::sleep(Duration::from_millis(200));
        let opened = writer.is_finished();
        if !opened {
            // Release the writer.
            drop(std::fs::File::open(path));
        }
        writer.join().unwrap();
        opened
    }

    /// Makes a character device with /dev/null's numbers at `path`; false
    /// where that is not allowed (not root, or nodev).
    pub fn mknod_null(path: &Path) -> bool {
        use nix::sys::stat::{Mode, SFlag, makedev, mknod};
        mknod(path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o644), makedev(1, 3)).is_ok()
    }
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

    /// Makes `depth` nested directories `d` below `top`, one descriptor at a time.
    fn deep_tree(top: &Path, depth: usize) {
        let mut fd = nix::fcntl::open(top, OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            nix::sys::stat::mkdirat(fd.as_fd(), "d", Mode::from_bits_truncate(0o755)).unwrap();
            fd = open_dir(fd.as_fd(), OsStr::new("d")).unwrap();
        }
        nix::sys::stat::mknodat(fd.as_fd(), "fifo", SFlag::S_IFIFO, Mode::from_bits_truncate(0o644), 0).unwrap();
    }

    #[test]
    fn a_very_deep_tree_is_removed_with_few_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // Deeper than a recursive walk survives on a test thread's 2 MiB
        // stack (tests/security_host.rs has a guest make 100 000 levels).
        deep_tree(&root, 30_000);
        let fds_before = std::fs::read_dir("/proc/self/fd").unwrap().count();
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        // Other tests run in parallel threads: allow for their files.
        assert!(std::fs::read_dir("/proc/self/fd").unwrap().count() < fds_before + 50);
    }

    #[test]
    fn a_very_wide_directory_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        for i in 0..20_000 {
            let p = root.join(format!("e{i}"));
            if i % 2 == 0 { std::fs::create_dir(&p).unwrap() } else { std::fs::write(&p, "").unwrap() }
        }
        remove_tree(&root).unwrap();
        assert!(!root.exists());
    }

    fn set_flags(path: &Path, flags: libc::c_long) {
        let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()).unwrap();
        // SAFETY: the ioctl reads one c_long.
        unsafe { fs_ioc_setflags(fd.as_raw_fd(), &flags) }.unwrap();
    }

    #[test]
    fn special_files_are_removed_without_being_opened() {
        use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
        // Setting chattr flags and making device nodes needs root.
        if !nix::unistd::geteuid().is_root() {
            panic!("this test needs root (CAP_LINUX_IMMUTABLE, CAP_MKNOD), as the integration tests do");
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let locked = root.join("locked");
        let appending = root.join("appending");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::create_dir_all(&appending).unwrap();
        let mk = |p: &Path, kind: SFlag, dev: u64| {
            nix::sys::stat::mknod(p, kind, Mode::from_bits_truncate(0o666), dev).unwrap();
        };
        let specials = [
            (locked.join("fifo"), SFlag::S_IFIFO, 0),
            (locked.join("null"), SFlag::S_IFCHR, nix::sys::stat::makedev(1, 3)),
            (locked.join("sock"), SFlag::S_IFSOCK, 0),
            (appending.join("loop"), SFlag::S_IFBLK, nix::sys::stat::makedev(7, 200)),
            (appending.join("fifo"), SFlag::S_IFIFO, 0),
        ];
        for (p, kind, dev) in &specials {
            mk(p, *kind, *dev);
        }
        std::fs::write(locked.join("file"), "x").unwrap();
        std::fs::write(appending.join("file"), "x").unwrap();
        set_flags(&locked.join("file"), FS_IMMUTABLE_FL);
        set_flags(&appending.join("file"), FS_APPEND_FL);
        set_flags(&locked, FS_IMMUTABLE_FL);
        set_flags(&appending, FS_APPEND_FL);
        let watch = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
        for (p, _, _) in &specials {
            watch.add_watch(p, AddWatchFlags::IN_OPEN).unwrap();
        }
        remove_tree(&root).unwrap();
        assert!(!root.exists());
        let opened: Vec<_> = watch
            .read_events()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.mask.contains(AddWatchFlags::IN_OPEN))
            .collect();
        assert!(opened.is_empty(), "special files were opened: {opened:?}");
    }

    #[test]
    fn a_regular_file_is_reopened_only_if_it_is_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "key").unwrap();
        nix::unistd::mkfifo(&dir.path().join("p"), Mode::from_bits_truncate(0o644)).unwrap();
        let path_fd =
            |n: &str| nix::fcntl::open(&dir.path().join(n), OFlag::O_PATH | OFlag::O_NOFOLLOW, Mode::empty()).unwrap();
        let f = reopen_regular(&path_fd("f")).unwrap().unwrap();
        assert_eq!(std::io::read_to_string(std::fs::File::from(f)).unwrap(), "key");
        // A fifo would block a reader forever; it is not even opened.
        assert!(reopen_regular(&path_fd("p")).unwrap().is_none());
        std::os::unix::fs::symlink("f", dir.path().join("l")).unwrap();
        assert!(reopen_regular(&path_fd("l")).unwrap().is_none());
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

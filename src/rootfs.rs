//! The container's root directory as the host sees it.
//!
//! The guest owns what is inside its root and may have put symlinks there,
//! so every path inside it is resolved with the root as `/`
//! (`openat2(RESOLVE_IN_ROOT)`): a guest's `var -> /etc` can never send the
//! host to its own /etc.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::paths::ContainerPaths;

fn in_root() -> ResolveFlag {
    ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| format!("opening {}", root.display()))
}

/// Opens `rel` (a path inside the container) with the container root as `/`.
pub fn open_in_root(root: &Path, rel: &str, flags: OFlag) -> Result<OwnedFd> {
    let root_fd = open_root(root)?;
    openat2(
        root_fd.as_fd(),
        rel.trim_start_matches('/'),
        OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(in_root()),
    )
    .context(|| format!("opening {} in {}", rel, root.display()))
}

/// The parent directory of `rel` (opened with the root as `/`) and its
/// last component.
fn parent_in_root(root: &Path, rel: &str) -> std::io::Result<(OwnedFd, String)> {
    let rel = rel.trim_matches('/');
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let root_fd = open_root(root).map_err(std::io::Error::other)?;
    let dir_fd = openat2(
        root_fd.as_fd(),
        if dir.is_empty() { "." } else { dir },
        OpenHow::new().flags(OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(in_root()),
    )?;
    Ok((dir_fd, name.to_string()))
}

/// lstat(2) of `rel` inside the root: its parents resolved with the root
/// as `/`, the last component itself not followed.
pub fn lstat_in_root(root: &Path, rel: &str) -> std::io::Result<nix::sys::stat::FileStat> {
    let (dir, name) = parent_in_root(root, rel)?;
    Ok(nix::sys::stat::fstatat(dir.as_fd(), name.as_str(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)?)
}

/// The target of symlink `rel` inside the root, as the guest wrote it.
pub fn read_link_in_root(root: &Path, rel: &str) -> std::io::Result<PathBuf> {
    let (dir, name) = parent_in_root(root, rel)?;
    Ok(PathBuf::from(nix::fcntl::readlinkat(dir.as_fd(), name.as_str())?))
}

/// Creates directory `rel` and its parents inside the root.
pub fn ensure_dir(root: &Path, rel: &str, mode: u32) -> Result<()> {
    let root_fd = open_root(root)?;
    let mut prefix = PathBuf::new();
    // A close-on-exec copy: other threads may fork and exec meanwhile.
    let mut parent = root_fd.try_clone().context(|| "dup".into())?;
    for comp in Path::new(rel.trim_start_matches('/')).components() {
        prefix.push(comp);
        let how = OpenHow::new().flags(OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(in_root());
        parent = match openat2(root_fd.as_fd(), &prefix, how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let name = comp.as_os_str();
                match nix::sys::stat::mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(e).context(|| format!("creating {}/{}", root.display(), prefix.display())),
                }
                match openat2(root_fd.as_fd(), &prefix, how) {
                    Ok(fd) => fd,
                    Err(e) => return Err(not_a_dir(root, &prefix, e)),
                }
            }
            Err(e) => return Err(not_a_dir(root, &prefix, e)),
        };
    }
    Ok(())
}

/// A readable error for a directory the host needs in the root that the
/// guest made into something else (a dangling symlink, a file).
fn not_a_dir(root: &Path, prefix: &Path, e: Errno) -> crate::error::Error {
    let rel = format!("/{}", prefix.display());
    let what = match lstat_in_root(root, &rel) {
        Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
            let target = read_link_in_root(root, &rel).map(|t| t.display().to_string()).unwrap_or_default();
            format!("is a symlink to {target}, which is not a directory in the container")
        }
        Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => "is not a directory".to_string(),
        _ => format!("cannot be opened ({})", std::io::Error::from(e)),
    };
    crate::error::Error::other(format!(
        "{rel} in container root {} {what}; the guest changed it: make it a directory again (e.g. remove {})",
        root.display(),
        root.join(prefix).display()
    ))
}

/// Removes file `name` in directory `dir_rel` inside the root, if present.
pub fn remove_file(root: &Path, dir_rel: &str, name: &str) -> Result<()> {
    let dir = match open_in_root(root, dir_rel, OFlag::O_DIRECTORY | OFlag::O_PATH) {
        Ok(d) => d,
        Err(crate::error::Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    match unlinkat(dir.as_fd(), name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e).context(|| format!("removing {}/{dir_rel}/{name}", root.display())),
    }
}

/// Writes file `name` in directory `dir_rel` inside the root (made if
/// missing), replacing what was there (a symlink is replaced, never
/// followed: `cp --remove-destination` as nixpkgs does it, without the
/// guest's links in the way). Atomic: a temporary file renamed over it.
pub fn replace_file(root: &Path, dir_rel: &str, name: &str, data: &[u8], mode: u32) -> Result<()> {
    ensure_dir(root, dir_rel, 0o755)?;
    let dir = open_in_root(root, dir_rel, OFlag::O_DIRECTORY | OFlag::O_PATH)?;
    let what = || format!("writing {}/{}/{name}", root.display(), dir_rel.trim_matches('/'));
    let tmp = format!(".{name}.nixos-container.{}", std::process::id());
    crate::fsutil::write_atomic_at(dir.as_fd(), name, &tmp, data, mode, what)
}

/// Copies the host's /etc/resolv.conf into the container (COPY_RESOLV_CONF).
/// A host without one is only a warning: the guest may bring its own.
pub fn copy_resolv_conf(root: &Path) -> Result<()> {
    let data = match std::fs::read("/etc/resolv.conf") {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("COPY_RESOLV_CONF: the host's /etc/resolv.conf cannot be read ({e}); not copied");
            return Ok(());
        }
    };
    replace_file(root, "etc", "resolv.conf", &data, 0o644)
}

/// systemd-nspawn (and the supervisor's mount namespace) need the host's
/// `/` to be a mount point; inside a plain chroot it is not, and both fail
/// with a bare "Invalid argument". Said clearly before anything is set up.
pub fn require_host_root_mounted() -> Result<()> {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(info) if !root_is_mounted(&info) => Err(crate::error::Error::other(
            "the host's / is not a mount point (inside a chroot?), and systemd-nspawn needs it to be one: \
             enter the new root with pivot_root instead (unshare -m; mount --bind ROOT ROOT; cd ROOT; \
             pivot_root . mnt), or bind-mount ROOT onto itself before chroot",
        )),
        // Without /proc nspawn will say what it misses.
        _ => Ok(()),
    }
}

/// Whether mountinfo (which lists only what is visible from this
/// process's root) has a mount at `/`.
fn root_is_mounted(mountinfo: &str) -> bool {
    mountinfo.lines().any(|l| l.split(' ').nth(4) == Some("/"))
}

/// Whether `rel` exists inside the root (without following symlinks out of it).
pub fn exists(root: &Path, rel: &str) -> bool {
    open_in_root(root, rel, OFlag::O_PATH).is_ok()
}

/// The guest's users as (name, uid), from its /etc/passwd, opened inside
/// its root; at most the first MiB is read, and lines that do not parse
/// are skipped (the file is the guest's).
pub fn guest_users(root: &Path) -> Vec<(String, u32)> {
    use std::io::Read;
    // Opened as a path, read only if it is a regular file: a guest's FIFO
    // or device is never opened by host root.
    let Ok(path_fd) = open_in_root(root, "etc/passwd", OFlag::O_PATH) else { return Vec::new() };
    let Ok(Some(fd)) = fsutil::reopen_regular(&path_fd) else { return Vec::new() };
    let mut text = Vec::new();
    if std::fs::File::from(fd).take(1 << 20).read_to_end(&mut text).is_err() {
        return Vec::new();
    }
    String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
            plain.then(|| (name.to_string(), uid))
        })
        .collect()
}

/// Makes the root bootable by systemd-nspawn, as the seed's service did: the
/// mount points and files nspawn insists on, and no sockets left from a
/// previous boot (start waits for the new ones to appear).
pub fn prepare(paths: &ContainerPaths) -> Result<()> {
    if let Some(state) = paths.root.parent()
        && !state.exists()
    {
        fsutil::create_dir(state, 0o700)?;
    }
    if !paths.root.exists() {
        fsutil::create_dir(&paths.root, 0o755)?;
    }
    for dir in ["etc", "usr", "var/lib", "nix/var/nix"] {
        ensure_dir(&paths.root, dir, 0o755)?;
    }
    // nspawn wants an os-release; the guest's activation replaces it.
    if !exists(&paths.root, "etc/os-release") {
        let fd = open_in_root(&paths.root, "etc", OFlag::O_DIRECTORY | OFlag::O_PATH)?;
        nix::fcntl::openat(
            fd.as_fd(),
            "os-release",
            OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .context(|| format!("creating {}/etc/os-release", paths.root.display()))?;
    }
    crate::guest::remove_sockets(&paths.root)?;
    crate::profile::prepare_dirs(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_users_never_opens_a_fifo_or_device() {
        let base = tempfile::tempdir().unwrap();
        let root = base.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let passwd = root.join("etc/passwd");
        std::fs::write(&passwd, "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n").unwrap();
        assert_eq!(guest_users(root), [("root".to_string(), 0), ("alice".to_string(), 1000)]);
        std::fs::remove_file(&passwd).unwrap();
        assert!(!fsutil::testing::fifo_opened_by(&passwd, || assert!(guest_users(root).is_empty())));
        std::fs::remove_file(&passwd).unwrap();
        // A character device (/dev/null's numbers): skipped, not read.
        if fsutil::testing::mknod_null(&passwd) {
            assert!(guest_users(root).is_empty());
        }
    }

    #[test]
    fn a_root_that_is_not_a_mount_point_is_recognised() {
        let host = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
                    23 22 0:5 / /proc rw shared:2 - proc proc rw\n";
        assert!(root_is_mounted(host));
        // In a chroot, only the mounts below its root show, none at /.
        let chroot = "30 22 0:5 / /proc rw shared:2 - proc proc rw\n31 22 0:6 / /usr ro - ext4 /dev/sda1 rw\n";
        assert!(!root_is_mounted(chroot));
        assert!(require_host_root_mounted().is_ok(), "this host's / is a mount point");
    }

    #[test]
    fn replace_file_never_follows_the_guests_links() {
        let base = tempfile::tempdir().unwrap();
        let (root, host) = (base.path().join("root"), base.path().join("host"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("resolv.conf"), "host's own").unwrap();
        // The guest's resolv.conf points at a host file, by absolute path.
        std::os::unix::fs::symlink(host.join("resolv.conf"), root.join("etc/resolv.conf")).unwrap();
        replace_file(&root, "etc", "resolv.conf", b"nameserver 10.0.0.1\n", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(host.join("resolv.conf")).unwrap(), "host's own");
        let meta = std::fs::symlink_metadata(root.join("etc/resolv.conf")).unwrap();
        assert!(meta.is_file());
        assert_eq!(std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(), "nameserver 10.0.0.1\n");
        // An /etc that is a link out of the root resolves inside it.
        let root2 = base.path().join("root2");
        std::fs::create_dir_all(&root2).unwrap();
        std::os::unix::fs::symlink(&host, root2.join("etc")).unwrap();
        let _ = replace_file(&root2, "etc", "resolv.conf", b"x", 0o644);
        assert_eq!(std::fs::read_to_string(host.join("resolv.conf")).unwrap(), "host's own");
        assert_eq!(std::fs::read_dir(&host).unwrap().count(), 1);
    }

    #[test]
    fn guest_symlinks_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let outside = host.path().join("outside");
        std::fs::create_dir_all(outside.join("lib")).unwrap();
        std::fs::write(outside.join("lib/root-shell.socket"), "host file").unwrap();
        let root = host.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        // The guest points its /var at a host directory.
        std::os::unix::fs::symlink(&outside, root.join("var")).unwrap();
        remove_file(&root, "var/lib", "root-shell.socket").unwrap();
        assert!(outside.join("lib/root-shell.socket").exists(), "host file untouched");
        // The link resolves inside the root, where its target does not exist.
        assert!(ensure_dir(&root, "var/lib", 0o755).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 1, "nothing created outside");
    }

    #[test]
    fn guest_users_come_from_its_own_passwd() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:100::/home/alice:/bin/sh\n\x1b[2J:x:1:1\nbroken\n",
        )
        .unwrap();
        assert_eq!(guest_users(&root), [("root".to_string(), 0), ("alice".to_string(), 1000)]);
        // A link to the host's passwd is read inside the root: nothing.
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("etc/passwd")).unwrap();
        assert_eq!(guest_users(&root), []);
    }

    #[test]
    fn prepare_makes_an_os_tree_and_clears_old_sockets() {
        let base = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::under(base.path()).container("c1");
        std::fs::create_dir_all(paths.root.join("var/lib")).unwrap();
        std::fs::write(paths.root.join("var/lib/root-shell.socket"), "").unwrap();
        prepare(&paths).unwrap();
        for p in ["etc/os-release", "usr", "var/lib"] {
            assert!(paths.root.join(p).exists(), "{p}");
        }
        assert!(!paths.root.join("var/lib/root-shell.socket").exists());
        assert!(paths.profile_dir.is_dir() && paths.gcroots.is_dir());
    }
}

//! One cgroup per running container, made by us where no systemd does it.
//!
//! The supervisor launches systemd-nspawn inside `nixos-containers/NAME` of
//! every cgroup hierarchy that nspawn uses (the cgroup2 tree, and on hybrid
//! hosts also the v1 `name=systemd` tree), plus the v1 memory controller
//! where it exists, for status, and the v1 cpu and pids controllers, for
//! limits (`limits`). nspawn then makes `supervisor/` and
//! `payload/` below it. Everything of the container is found, counted and
//! killed through this cgroup; our own supervisor stays outside it.
//!
//! Where containers are systemd units (`crate::unit`), the container's
//! cgroup is its unit's, `machine.slice/nixos-container@NAME.service`:
//! systemd makes and removes it, nspawn manages below it, and we only read
//! it (and kill through it).

use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::fcntl::{OFlag, openat};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::{Pid, UnlinkatFlags, unlinkat};

use crate::error::{IoContext, Result};

pub const PARENT: &str = "nixos-containers";
/// Where systemd puts the containers' units.
pub const UNIT_SLICE: &str = "machine.slice";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The cgroup2 tree.
    Unified,
    /// The v1 `name=systemd` tree (hybrid and legacy hosts).
    SystemdV1,
    /// The v1 memory controller (hybrid and legacy hosts).
    MemoryV1,
    /// The v1 cpu and pids controllers (hybrid and legacy hosts), for limits.
    CpuV1,
    PidsV1,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub kind: Kind,
    pub mount: PathBuf,
}

/// The hierarchies of interest, from /proc/self/mountinfo text.
pub fn hierarchies_from(mountinfo: &str) -> Vec<Hierarchy> {
    let mut found = Vec::new();
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else { continue };
        let (Some(fstype), Some(opts)) = (fields.get(sep + 1), fields.get(sep + 3)) else { continue };
        let Some(mount) = fields.get(4) else { continue };
        let kind = match *fstype {
            "cgroup2" => Kind::Unified,
            "cgroup" if opts.split(',').any(|o| o == "name=systemd") => Kind::SystemdV1,
            "cgroup" if opts.split(',').any(|o| o == "memory") => Kind::MemoryV1,
            "cgroup" if opts.split(',').any(|o| o == "cpu") => Kind::CpuV1,
            "cgroup" if opts.split(',').any(|o| o == "pids") => Kind::PidsV1,
            _ => continue,
        };
        if !found.iter().any(|h: &Hierarchy| h.kind == kind) {
            found.push(Hierarchy { kind, mount: PathBuf::from(mount) });
        }
    }
    found
}

/// Where systemd (and so nspawn) expects the hierarchies: found with a few
/// statfs calls. None when the host mounts them elsewhere.
fn standard_hierarchies() -> Option<Vec<Hierarchy>> {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
    let root = Path::new("/sys/fs/cgroup");
    let kind_of = |p: &Path| statfs(p).ok().map(|s| s.filesystem_type());
    match kind_of(root)? {
        t if t == CGROUP2_SUPER_MAGIC => return Some(vec![Hierarchy { kind: Kind::Unified, mount: root.into() }]),
        t if t == TMPFS_MAGIC => {}
        _ => return None,
    }
    let mut found = Vec::new();
    for (kind, dir, magic) in [
        (Kind::Unified, "unified", CGROUP2_SUPER_MAGIC),
        (Kind::SystemdV1, "systemd", CGROUP_SUPER_MAGIC),
        (Kind::MemoryV1, "memory", CGROUP_SUPER_MAGIC),
        (Kind::CpuV1, "cpu", CGROUP_SUPER_MAGIC),
        (Kind::PidsV1, "pids", CGROUP_SUPER_MAGIC),
    ] {
        let mount = root.join(dir);
        if kind_of(&mount) == Some(magic) {
            found.push(Hierarchy { kind, mount });
        }
    }
    (!found.is_empty()).then_some(found)
}

/// The host's hierarchies, found once per process. /proc/self/mountinfo is
/// read only when they are not at the standard places: its length grows
/// with every running container (each adds /run/netns/NAME), and commands
/// like `status` and `start` asked for it several times.
pub fn host_hierarchies() -> Result<&'static [Hierarchy]> {
    static FOUND: OnceLock<Vec<Hierarchy>> = OnceLock::new();
    if let Some(h) = FOUND.get() {
        return Ok(h);
    }
    let found = match standard_hierarchies() {
        Some(h) => h,
        None => {
            let info = fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".into())?;
            hierarchies_from(&info)
        }
    };
    Ok(FOUND.get_or_init(|| found))
}

/// How many containers have a cgroup now (running, or being started).
pub fn container_count() -> u64 {
    let Ok(hierarchies) = host_hierarchies() else { return 0 };
    let Some(tracking) = hierarchies.iter().find(|h| h.kind == Kind::Unified).or(hierarchies.first()) else {
        return 0;
    };
    let units = crate::supervision::units_run_containers();
    let dir = if units { tracking.mount.join(UNIT_SLICE) } else { tracking.mount.join(PARENT) };
    let prefix = crate::systemd::unit_name("");
    let prefix = prefix.split('@').next().unwrap_or_default();
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter(|e| !units || e.file_name().to_string_lossy().starts_with(&format!("{prefix}@")))
                .count() as u64
        })
        .unwrap_or(0)
}

/// The cgroup of one container across the host's hierarchies.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    dirs: Vec<(Kind, PathBuf)>,
    /// Made (and removed) by us; a systemd unit's cgroup is systemd's.
    owned: bool,
}

impl ContainerCgroup {
    pub fn new(name: &str) -> Result<ContainerCgroup> {
        Ok(Self::in_hierarchies(host_hierarchies()?, name))
    }

    /// The container's cgroup as this host's supervision places it: ours
    /// under `nixos-containers/`, or its systemd unit's.
    pub fn in_hierarchies(hierarchies: &[Hierarchy], name: &str) -> ContainerCgroup {
        if crate::supervision::units_run_containers() {
            return Self::of_unit(hierarchies, name);
        }
        ContainerCgroup {
            dirs: hierarchies.iter().map(|h| (h.kind.clone(), h.mount.join(PARENT).join(name))).collect(),
            owned: true,
        }
    }

    /// The cgroup of the container's systemd unit (`machine.slice` is a
    /// top-level slice, so its path needs no D-Bus call): systemd makes and
    /// removes it, nspawn manages what is below it.
    pub fn of_unit(hierarchies: &[Hierarchy], name: &str) -> ContainerCgroup {
        let unit = crate::systemd::unit_name(name);
        ContainerCgroup {
            dirs: hierarchies.iter().map(|h| (h.kind.clone(), h.mount.join(UNIT_SLICE).join(&unit))).collect(),
            owned: false,
        }
    }

    /// Whether the host has a cgroup2 tree (pure or hybrid layout).
    pub fn has_unified(&self) -> bool {
        self.dir(Kind::Unified).is_some()
    }

    /// The container's directory in the hierarchy of `kind`, if the host has it.
    pub fn dir(&self, kind: Kind) -> Option<&Path> {
        self.dirs.iter().find(|(k, _)| *k == kind).map(|(_, d)| d.as_path())
    }

    /// The tree that tracks processes: cgroup2 if there is one.
    fn tracking(&self) -> Option<&Path> {
        self.dir(Kind::Unified).or_else(|| self.dir(Kind::SystemdV1))
    }

    /// Creates the directories.
    pub fn create(&self) -> Result<()> {
        for (_, d) in &self.dirs {
            fs::create_dir_all(d).context(|| format!("creating cgroup {}", d.display()))?;
        }
        Ok(())
    }

    /// Lets the guest open only the devices of `rules` (see
    /// `crate::devices`): a device program on the cgroup2 directory, which
    /// covers everything below it. Before anything joins the cgroup. Only
    /// for a cgroup of ours: a unit's policy is a unit property. Returns
    /// false where the host has no cgroup2 tree (no policy then).
    pub fn restrict_devices(&self, rules: &[crate::devices::Rule]) -> Result<bool> {
        match self.dir(Kind::Unified) {
            Some(d) if self.owned => crate::devices::attach(d, rules).map(|()| true),
            _ => Ok(false),
        }
    }

    /// The `cgroup.procs` files a process writes "0" to, to join the
    /// container's cgroup in every hierarchy (see `join_self`).
    pub fn procs_files(&self) -> Vec<std::ffi::CString> {
        use std::os::unix::ffi::OsStrExt;
        self.dirs
            .iter()
            .filter_map(|(_, d)| std::ffi::CString::new(d.join("cgroup.procs").as_os_str().as_bytes()).ok())
            .collect()
    }

    /// All processes in the container's cgroup tree.
    pub fn pids(&self) -> Vec<Pid> {
        let mut pids = Vec::new();
        if let Some(d) = self.tracking() {
            collect_pids(d, &mut pids);
        }
        pids
    }

    /// Whether any process is left in the cgroup.
    pub fn is_populated(&self) -> bool {
        match self.dir(Kind::Unified) {
            Some(d) => match fs::read_to_string(d.join("cgroup.events")) {
                Ok(ev) => ev.lines().any(|l| l == "populated 1"),
                Err(_) => false,
            },
            None => !self.pids().is_empty(),
        }
    }

    /// The container's init: the process that is PID 1 in a PID namespace
    /// one level below ours (not the init of a container in the container).
    pub fn leader(&self) -> Option<Pid> {
        let nspids = |pid: &str| -> Option<Vec<String>> {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
            Some(line.split_whitespace().map(str::to_string).collect())
        };
        let depth = nspids("self")?.len();
        self.pids().into_iter().find(|pid| {
            nspids(&pid.to_string()).is_some_and(|ids| ids.len() == depth + 1 && ids.last().is_some_and(|l| l == "1"))
        })
    }

    /// Memory used by the container, in bytes, where the host tells.
    pub fn memory_bytes(&self) -> Option<u64> {
        let read = |p: PathBuf| fs::read_to_string(p).ok()?.trim().parse().ok();
        if let Some(d) = self.dir(Kind::MemoryV1)
            && let Some(v) = read(d.join("memory.usage_in_bytes"))
        {
            return Some(v);
        }
        self.dir(Kind::Unified).and_then(|d| read(d.join("memory.current")))
    }

    /// Kills every process of the container and waits up to `wait` for them
    /// to be gone. Returns whether the cgroup is empty.
    pub fn kill_all(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        loop {
            if !self.is_populated() {
                return true;
            }
            let killed_by_kernel =
                self.dir(Kind::Unified).map(|d| fs::write(d.join("cgroup.kill"), "1").is_ok()).unwrap_or(false);
            if !killed_by_kernel {
                for pid in self.pids() {
                    let _ = kill(pid, Signal::SIGKILL);
                }
            }
            if Instant::now() >= deadline {
                return !self.is_populated();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Removes the (empty) cgroup directories, deepest first; not a unit's,
    /// which systemd removes when the unit stops.
    pub fn remove(&self) {
        if !self.owned {
            return;
        }
        for (_, d) in &self.dirs {
            remove_tree(d);
        }
    }
}

/// Moves the calling process into the cgroups of `procs_files`. Only
/// system calls, no allocation: safe between fork and exec.
pub fn join_self(procs_files: &[std::ffi::CString]) -> std::io::Result<()> {
    for file in procs_files {
        // SAFETY: plain system calls on a valid C string and a 1-byte buffer.
        unsafe {
            let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, c"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(err);
            }
        }
    }
    Ok(())
}

fn collect_pids(dir: &Path, pids: &mut Vec<Pid>) {
    walk(
        dir,
        |fd| {
            let Ok(procs) = openat(fd, "cgroup.procs", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) else {
                return;
            };
            let mut text = String::new();
            if std::io::Read::read_to_string(&mut fs::File::from(procs), &mut text).is_ok() {
                pids.extend(text.lines().filter_map(|l| l.trim().parse().ok()).map(Pid::from_raw));
            }
        },
        |_, _| {},
    );
}

/// Removes a cgroup and every one below it, deepest first (a cgroup goes
/// only with rmdir, and only once it has no children and no processes);
/// what cannot go stays. Whatever the depth: see `walk`.
pub fn remove_tree(dir: &Path) {
    walk(
        dir,
        |_| {},
        |parent, name| {
            let _ = unlinkat(parent, name, UnlinkatFlags::RemoveDir);
        },
    );
    let _ = fs::remove_dir(dir);
}

const DIR_FLAGS: OFlag = OFlag::O_DIRECTORY.union(OFlag::O_RDONLY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

/// Walks the directories of the tree at `top`, depth first, on directory
/// descriptors, holding one at a time: a guest can make its cgroup tree
/// deeper than PATH_MAX (or than there are descriptors), which no path
/// reaches. `enter` sees each directory (`top` too) before the ones below
/// it; `leave` gets each one below `top` after the ones below it, as its
/// parent's descriptor and its name there. It goes back up through `..`,
/// which is the directory it came from: a cgroup can be renamed only within
/// its parent. Unreadable parts are skipped.
fn walk(top: &Path, mut enter: impl FnMut(BorrowedFd<'_>), mut leave: impl FnMut(BorrowedFd<'_>, &OsStr)) {
    let Ok(mut cur) = nix::fcntl::open(top, DIR_FLAGS, Mode::empty()) else { return };
    enter(cur.as_fd());
    // The names from `top` down to `cur`, each with the subdirectories
    // still to visit.
    let mut levels: Vec<(OsString, Vec<OsString>)> = vec![(OsString::new(), subdirs(cur.as_fd()))];
    loop {
        let here = levels.last_mut().expect("the top level stays until the end");
        if let Some(child) = here.1.pop() {
            let Ok(sub) = openat(cur.as_fd(), child.as_os_str(), DIR_FLAGS, Mode::empty()) else { continue };
            enter(sub.as_fd());
            let below = subdirs(sub.as_fd());
            levels.push((child, below));
            cur = sub;
            continue;
        }
        let (name, _) = levels.pop().expect("not empty");
        if levels.is_empty() {
            return;
        }
        let Ok(parent) = openat(cur.as_fd(), "..", DIR_FLAGS, Mode::empty()) else { return };
        cur = parent;
        leave(cur.as_fd(), &name);
    }
}

/// The names of the subdirectories of `dir`.
fn subdirs(dir: BorrowedFd<'_>) -> Vec<OsString> {
    use std::os::unix::ffi::OsStrExt;
    // An open file of its own: reading moves its offset, not `dir`'s.
    let Ok(own) = openat(dir, ".", DIR_FLAGS, Mode::empty()) else { return Vec::new() };
    let Ok(mut entries) = nix::dir::Dir::from_fd(own) else { return Vec::new() };
    let mut names = Vec::new();
    for e in entries.iter().flatten() {
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let is_dir = match e.file_type() {
            Some(t) => t == nix::dir::Type::Directory,
            None => nix::sys::stat::fstatat(dir, e.file_name(), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
                .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR),
        };
        if is_dir {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    #[test]
    fn finds_the_hybrid_layout() {
        let h = hierarchies_from(HYBRID);
        assert_eq!(
            h,
            vec![
                Hierarchy { kind: Kind::Unified, mount: "/sys/fs/cgroup/unified".into() },
                Hierarchy { kind: Kind::SystemdV1, mount: "/sys/fs/cgroup/systemd".into() },
                Hierarchy { kind: Kind::MemoryV1, mount: "/sys/fs/cgroup/memory".into() },
                Hierarchy { kind: Kind::PidsV1, mount: "/sys/fs/cgroup/pids".into() },
            ]
        );
        let cg = ContainerCgroup::in_hierarchies(&h, "web");
        assert_eq!(cg.tracking(), Some(Path::new("/sys/fs/cgroup/unified/nixos-containers/web")));
    }

    #[test]
    fn the_standard_places_agree_with_mountinfo_on_this_host() {
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mut from_mountinfo = hierarchies_from(&info);
        let mut fast = standard_hierarchies().expect("this host mounts cgroups under /sys/fs/cgroup");
        from_mountinfo.sort_by_key(|h| h.mount.clone());
        fast.sort_by_key(|h| h.mount.clone());
        assert_eq!(fast, from_mountinfo);
    }

    #[test]
    fn finds_the_unified_layout() {
        let h = hierarchies_from("30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let cg = ContainerCgroup::in_hierarchies(&h, "web");
        assert_eq!(cg.tracking(), Some(Path::new("/sys/fs/cgroup/nixos-containers/web")));
        assert_eq!(cg.dirs.len(), 1);
    }

    #[test]
    fn a_units_cgroup_is_found_under_machine_slice_and_never_removed_by_us() {
        let base = tempfile::tempdir().unwrap();
        let h = vec![Hierarchy { kind: Kind::Unified, mount: base.path().into() }];
        let cg = ContainerCgroup::of_unit(&h, "web");
        let dir = base.path().join("machine.slice/nixos-container@web.service");
        assert_eq!(cg.tracking(), Some(dir.as_path()));
        fs::create_dir_all(dir.join("payload")).unwrap();
        cg.remove();
        assert!(dir.join("payload").is_dir(), "systemd's and nspawn's cgroups are theirs to remove");
    }

    /// Makes `depth` nested directories of 255-character names below `top`
    /// on descriptors (their paths are longer than PATH_MAX), each with a
    /// sibling, and `cgroup.procs` files with `pid` at the bottom; returns
    /// the descriptor of the deepest one.
    fn deep_tree(top: &Path, depth: usize, pid: &str) -> std::os::fd::OwnedFd {
        use nix::sys::stat::mkdirat;
        let name = "c".repeat(255);
        let mut cur = nix::fcntl::open(top, DIR_FLAGS, Mode::empty()).unwrap();
        for _ in 0..depth {
            mkdirat(cur.as_fd(), "sibling", Mode::from_bits_truncate(0o755)).unwrap();
            mkdirat(cur.as_fd(), name.as_str(), Mode::from_bits_truncate(0o755)).unwrap();
            cur = openat(cur.as_fd(), name.as_str(), DIR_FLAGS, Mode::empty()).unwrap();
        }
        let procs =
            openat(cur.as_fd(), "cgroup.procs", OFlag::O_WRONLY | OFlag::O_CREAT, Mode::from_bits_truncate(0o644))
                .unwrap();
        nix::unistd::write(&procs, format!("{pid}\n").as_bytes()).unwrap();
        cur
    }

    #[test]
    fn a_tree_deeper_than_path_max_is_walked_and_removed() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("NAME");
        fs::create_dir(&top).unwrap();
        fs::write(top.join("cgroup.procs"), "7\n8\n").unwrap();
        let depth = 20;
        assert!(depth * 256 > libc::PATH_MAX as usize);
        let bottom = deep_tree(&top, depth, "4242");
        let mut pids = Vec::new();
        collect_pids(&top, &mut pids);
        pids.sort();
        assert_eq!(pids, [Pid::from_raw(7), Pid::from_raw(8), Pid::from_raw(4242)]);

        // cgroupfs's control files go with their directory; here the test's
        // are removed first, as a cgroup directory has nothing to unlink.
        fs::remove_file(top.join("cgroup.procs")).unwrap();
        unlinkat(bottom.as_fd(), "cgroup.procs", UnlinkatFlags::NoRemoveDir).unwrap();
        drop(bottom);
        remove_tree(&top);
        assert!(!top.exists(), "{:?}", fs::read_dir(&top).map(|d| d.count()));
    }

    #[test]
    fn what_cannot_go_stays_with_its_parents_and_the_rest_goes() {
        let base = tempfile::tempdir().unwrap();
        let top = base.path().join("NAME");
        fs::create_dir_all(top.join("a/busy")).unwrap();
        fs::create_dir_all(top.join("a/empty/deeper")).unwrap();
        fs::create_dir_all(top.join("b/c")).unwrap();
        // Like a cgroup with processes: rmdir fails on it.
        fs::write(top.join("a/busy/cgroup.procs"), "1\n").unwrap();
        remove_tree(&top);
        assert!(top.join("a/busy/cgroup.procs").exists());
        assert!(!top.join("a/empty").exists());
        assert!(!top.join("b").exists());
    }
}

//! The host-side fallback: for a guest without a root-shell socket (or when
//! a pty or another user is needed and the guest has no agent), the CLI
//! forks a process that joins the container's cgroup and enters the
//! namespaces of its init, forks once more to be inside its PID namespace,
//! and serves the agent's protocol there over a socketpair. The client side
//! is the same as over the socket.
//!
//! Unlike the anchor's `nsenter --all`, the process joins the cgroups of the
//! container's init first, so everything it starts is inside the container
//! and `stop` ends it; and the middle process exits at once, so that the
//! agent's parent is the container's init, not the CLI. Nor does it keep
//! the host's powers: its capability bounding set becomes that of the
//! container's init (so what it runs as root has no more than the guest's
//! root), it is not dumpable, and it keeps no descriptor of the CLI's.

use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::{CloneFlags, setns};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};

use crate::cgroup::{Hierarchy, Kind};
use crate::error::{Error, IoContext, Result};

/// The namespaces entered, in order (the user namespace only when the
/// container has its own).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The `cgroup.procs` files of the container's cgroups that `pid` is in,
/// from its /proc/PID/cgroup: the hierarchies of ours (the cgroup2 tree, and
/// v1 `name=systemd` and memory), where the container's cgroup is. Where it
/// sits at the root, or in another v1 controller, there is nothing to join.
pub fn cgroup_procs_files(proc_cgroup: &str, hierarchies: &[Hierarchy]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if path == "/" || path.is_empty() {
            continue;
        }
        let kind = match controllers {
            "" => Kind::Unified,
            c if c.split(',').any(|c| c == "name=systemd") => Kind::SystemdV1,
            c if c.split(',').any(|c| c == "memory") => Kind::MemoryV1,
            _ => continue,
        };
        if let Some(h) = hierarchies.iter().find(|h| h.kind == kind) {
            files.push(h.mount.join(path.trim_start_matches('/')).join("cgroup.procs"));
        }
    }
    files
}

/// Starts an agent inside the container whose init is `leader`; returns
/// the client's end of its connection.
pub fn spawn_agent(leader: Pid) -> Result<UnixStream> {
    let proc_dir = PathBuf::from(format!("/proc/{leader}"));
    let cgroup_text =
        fs::read_to_string(proc_dir.join("cgroup")).context(|| format!("reading {}/cgroup", proc_dir.display()))?;
    let procs_files = cgroup_procs_files(&cgroup_text, crate::cgroup::host_hierarchies()?);
    if procs_files.is_empty() {
        return Err(Error::other(format!("found no cgroup of the container's init (PID {leader})")));
    }

    let mut ns_fds: Vec<(OwnedFd, CloneFlags)> = Vec::new();
    let own_user = fs::metadata("/proc/self/ns/user").map(|m| m.ino()).ok();
    let their_user = fs::metadata(proc_dir.join("ns/user")).map(|m| m.ino()).ok();
    if own_user != their_user {
        let f = fs::File::open(proc_dir.join("ns/user")).context(|| "opening the container's user namespace".into())?;
        ns_fds.push((f.into(), CloneFlags::CLONE_NEWUSER));
    }
    for (name, flag) in NAMESPACES {
        let p = proc_dir.join("ns").join(name);
        let f = fs::File::open(&p).context(|| format!("opening {}", p.display()))?;
        ns_fds.push((f.into(), *flag));
    }
    let status =
        fs::read_to_string(proc_dir.join("status")).context(|| format!("reading {}/status", proc_dir.display()))?;
    let bounding =
        cap_bounding_set(&status).ok_or_else(|| Error::other(format!("no CapBnd in {}/status", proc_dir.display())))?;
    let last_cap: u32 =
        fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(63);
    let (ours, theirs) = UnixStream::pair().context(|| "creating a socket pair".into())?;

    // SAFETY: the CLI is single-threaded here; the child only makes system
    // calls until it has entered the container, then runs the agent.
    match unsafe { fork() }.context(|| "forking".into())? {
        ForkResult::Parent { child } => {
            drop(theirs);
            // The middle process exits as soon as the agent is forked.
            let _ = waitpid(child, None);
            Ok(ours)
        }
        ForkResult::Child => {
            drop(ours);
            let code = match limit_capabilities(bounding, last_cap).and_then(|()| enter(&procs_files, &ns_fds)) {
                Ok(()) => match unsafe { fork() } {
                    Ok(ForkResult::Parent { .. }) => 0,
                    Ok(ForkResult::Child) => unsafe { libc::_exit(run_agent(theirs)) },
                    Err(_) => 1,
                },
                Err(e) => {
                    let mut w = &theirs;
                    let _ = crate::guest::protocol::write_frame(
                        &mut w,
                        crate::guest::protocol::kind::ERROR,
                        format!("entering the container: {e}").as_bytes(),
                    );
                    1
                }
            };
            // SAFETY: leave without running the CLI's exit handlers twice.
            unsafe { libc::_exit(code) }
        }
    }
}

/// The capability bounding set in a /proc/PID/status text.
fn cap_bounding_set(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Drops from the bounding set every capability not in `keep` (while we
/// still have CAP_SETPCAP on the host), and makes the process undumpable.
fn limit_capabilities(keep: u64, last_cap: u32) -> std::io::Result<()> {
    for cap in (0..=last_cap.min(63)).filter(|c| keep & (1 << c) == 0) {
        // SAFETY: plain prctl calls.
        if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn enter(procs_files: &[PathBuf], ns_fds: &[(OwnedFd, CloneFlags)]) -> std::io::Result<()> {
    for f in procs_files {
        fs::write(f, "0")?;
    }
    for (fd, flag) in ns_fds {
        setns(fd.as_fd(), *flag)?;
    }
    Ok(())
}

/// In the container: a clean environment, the CLI's terminal let go, then
/// the agent's protocol on the socket.
fn run_agent(conn: UnixStream) -> i32 {
    if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: plain dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    // The CLI's terminal, locks and namespace handles stay with the CLI.
    let conn_fd = conn.as_raw_fd() as libc::c_uint;
    // SAFETY: closes descriptors no Rust object here owns (conn is kept).
    unsafe {
        libc::syscall(libc::SYS_close_range, 3 as libc::c_uint, conn_fd - 1, 0);
        libc::syscall(libc::SYS_close_range, conn_fd + 1, libc::c_uint::MAX, 0);
    }
    let _ = std::env::set_current_dir("/");
    let keep: Vec<(String, String)> = std::env::vars().filter(|(k, _)| k == "LANG").collect();
    // SAFETY: single-threaded (freshly forked) process.
    unsafe {
        for (k, _) in std::env::vars_os() {
            std::env::remove_var(k);
        }
        std::env::set_var("PATH", nixos_container_agent::serve::SYSTEM_PATH);
        std::env::set_var("TERM", "dumb");
        for (k, v) in keep {
            std::env::set_var(k, v);
        }
    }
    let Ok(out) = conn.try_clone() else { return 1 };
    nixos_container_agent::serve(conn.into(), out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounding_set_is_read_from_status() {
        let status =
            "Name:\tsystemd\nCapPrm:\t000001ffffffffff\nCapBnd:\t00000000a80425fb\nCapAmb:\t0000000000000000\n";
        assert_eq!(cap_bounding_set(status), Some(0xa80425fb));
        assert_eq!(cap_bounding_set("Name:\tx\n"), None);
    }

    const MOUNTINFO: &str = "\
25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn joins_where_the_init_is_in_each_hierarchy() {
        let init = "\
9:name=systemd:/nixos-containers/web/payload/init.scope
4:memory:/nixos-containers/web
2:cpu,cpuacct:/
0::/nixos-containers/web/payload
";
        assert_eq!(
            cgroup_procs_files(init, &crate::cgroup::hierarchies_from(MOUNTINFO)),
            [
                PathBuf::from("/sys/fs/cgroup/systemd/nixos-containers/web/payload/init.scope/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/memory/nixos-containers/web/cgroup.procs"),
                PathBuf::from("/sys/fs/cgroup/unified/nixos-containers/web/payload/cgroup.procs"),
            ]
        );
    }

    #[test]
    fn a_unified_host() {
        let mi = "30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_procs_files("0::/nixos-containers/web/payload/init.scope\n", &crate::cgroup::hierarchies_from(mi)),
            [PathBuf::from("/sys/fs/cgroup/nixos-containers/web/payload/init.scope/cgroup.procs")]
        );
    }
}

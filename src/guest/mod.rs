//! Talking to a running guest through the sockets in its root.

pub mod shell;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::fcntl::OFlag;

use crate::error::{IoContext, Result};
use crate::rootfs;

/// Connects to the unix socket at `rel` inside the container root. The path
/// is resolved with the root as `/`, so a guest cannot point the host at one
/// of the host's own sockets with a symlink.
pub fn connect(root: &Path, rel: &str) -> Result<UnixStream> {
    let fd: OwnedFd = rootfs::open_in_root(root, rel, OFlag::O_PATH)?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    UnixStream::connect(&proc_path).context(|| format!("connecting to {}", root.join(rel.trim_start_matches('/')).display()))
}

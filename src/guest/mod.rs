//! Talking to a running guest through the sockets in its root.

pub mod shell;

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use crate::error::{IoContext, Result};
use crate::rootfs;

/// Connects to the unix socket at `rel` inside the container root. The path
/// is resolved with the root as `/`, so a guest cannot point the host at one
/// of the host's own sockets with a symlink.
///
/// Readiness is the socket file appearing; the guest's systemd listens on
/// it a moment after binding, so a refused connection is retried briefly.
pub fn connect(root: &Path, rel: &str) -> Result<UnixStream> {
    let fd: OwnedFd = rootfs::open_in_root(root, rel, OFlag::O_PATH)?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match UnixStream::connect(&proc_path) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.context(|| format!("connecting to {}", root.join(rel).display())),
        }
    }
}

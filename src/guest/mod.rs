//! Talking to a running guest through the sockets in its root.

use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use crate::error::{IoContext, Result};
use crate::rootfs;

/// How long a socket that exists may refuse connections. The guest's
/// systemd creates the file (bind) a few milliseconds before it listens,
/// and `start` reports readiness when the file appears; under load that
/// gap has been seen to reach several milliseconds.
const LISTEN_GRACE: Duration = Duration::from_secs(5);

/// Connects to the unix socket at `rel` inside the container root. The path
/// is resolved with the root as `/`, so a guest cannot point the host at one
/// of the host's own sockets with a symlink.
pub fn connect(root: &Path, rel: &str) -> Result<UnixStream> {
    let fd: OwnedFd = rootfs::open_in_root(root, rel, OFlag::O_PATH)?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let deadline = Instant::now() + LISTEN_GRACE;
    loop {
        match UnixStream::connect(&proc_path) {
            Err(e) if e.kind() == ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                return other.context(|| format!("connecting to {}", root.join(rel.trim_start_matches('/')).display()));
            }
        }
    }
}

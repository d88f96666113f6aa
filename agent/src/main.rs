//! The agent program: exec'd by the guest's root shell with the connection
//! on stdin and stdout (and stderr).

use std::os::fd::{FromRawFd, OwnedFd};

fn main() {
    // stderr is the connection too: nothing may be written there but frames.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stderr(null);
    }
    // SAFETY: fds 0 and 1 are the connection, handed to us by the shell.
    let (input, output) = unsafe { (OwnedFd::from_raw_fd(0), OwnedFd::from_raw_fd(1)) };
    std::process::exit(nixos_container_agent::serve(input, output));
}

//! The in-guest agent of nixos-container, and the protocol it speaks.
//!
//! `nixos-container run`/`root-login` exec this program (a static binary in
//! the host's Nix store, which guests share) from the guest's root-shell
//! socket, and it runs the command with exact argv, separate stdout and
//! stderr, binary-safe stdin with a real end, the exit status or signal, and
//! optionally a pty of its own (see `protocol` for the wire format). The
//! same code also serves the host-side fallback, run in a process that has
//! entered the container's namespaces.

pub mod protocol;
pub mod serve;
pub mod users;

pub use serve::serve;

//! Fault injection for the crash-safety tests.
//!
//! With `NIXOS_CONTAINER_CRASH_AT=POINT` in its environment, the process
//! kills itself with SIGKILL when it reaches `crash_point(POINT)`, exactly as
//! an admin's `kill -9` would, so tests can stop a command at a precise step
//! and check that the next command repairs what was left. Without the
//! variable this costs one environment lookup per point.

pub const ENV: &str = "NIXOS_CONTAINER_CRASH_AT";

pub fn crash_point(point: &str) {
    if std::env::var_os(ENV).is_some_and(|v| v == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

//! Typed errors of the library, and the exit codes they map to.
//!
//! Each kind of failure that recurs, or that a caller (a script, by its
//! exit code or message; the code, by `matches!`) may want to tell apart,
//! has its own variant here, which words its message. `Other` is for
//! one-off failures whose text is all a caller needs. The CLI turns every
//! error into a one-line message and an exit code in `main.rs` and nowhere
//! else; [`Error::exit_code`] is the one mapping onto [`exit`].

use std::io;
use std::path::{Path, PathBuf};

/// Exit codes are part of the CLI's contract with scripts (see README).
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const FAILURE: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NO_SUCH_CONTAINER: i32 = 3;
    pub const NOT_RUNNING: i32 = 4;
    /// A panic: Rust's own exit status for one (the hook in main.rs prints
    /// one line).
    pub const BUG: i32 = 101;

    /// Every status with a short name (`--help`) and a longer meaning (the
    /// man pages' EXIT STATUS).
    pub const TABLE: &[(i32, &str, &str)] = &[
        (
            SUCCESS,
            "success",
            "success (also: start of a running container, stop of a stopped one, destroy of one that does not exist)",
        ),
        (FAILURE, "failure", "failure"),
        (USAGE, "usage error", "usage error: unknown option, invalid name or value, missing NAME without a terminal"),
        (NO_SUCH_CONTAINER, "no such container", "no such container"),
        (NOT_RUNNING, "container not running", "the container is not running (run, show-host-key, ...)"),
        (BUG, "internal error", "internal error: a bug in nixos-container (one line on stderr; please report it)"),
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The request: refused as misuse (exit::USAGE), by the user, or for want
    // of root or a program.
    /// A container name that is not a DNS label (exit::USAGE).
    #[error("invalid container name '{name}': {reason}")]
    InvalidName { name: String, reason: String },

    /// A value of an option or argument that is refused (exit::USAGE).
    #[error("invalid {what} '{}': {reason}", printable(value))]
    InvalidValue { what: &'static str, value: String, reason: String },

    /// Any other misuse of the command line, already worded (exit::USAGE).
    #[error("{0}")]
    Usage(String),

    /// The person at the terminal said no.
    #[error("cancelled: {0}")]
    Cancelled(String),

    /// Not run as root, and the command needs it.
    #[error("this command needs root: run it as root (e.g. with sudo)")]
    NotRoot,

    /// A program the command needs is not installed.
    #[error("{program} not found: {hint}")]
    MissingProgram { program: &'static str, hint: &'static str },

    // The container, and the state it is in.
    /// No container by that name (exit::NO_SUCH_CONTAINER).
    #[error("container '{0}' does not exist (see 'nixos-container list')")]
    NoSuchContainer(String),

    /// `create` of a name that is taken.
    #[error("container '{0}' already exists")]
    AlreadyExists(String),

    /// The command needs the guest running, and it is not
    /// (exit::NOT_RUNNING).
    #[error("container '{0}' is not running (start it with 'nixos-container start {0}')")]
    NotRunning(String),

    /// Another nixos-container command holds the container's lock (the
    /// remains of an unfinished create being destroyed, say).
    #[error("container '{name}' is busy: another nixos-container command is changing it")]
    Busy { name: String },

    /// The container belongs to the host's NixOS configuration: its conf is
    /// read-only (`destroy`, `set-limits`, ...), or it boots the fixed
    /// system of its `SYSTEM_PATH` (`update`).
    #[error("{}", declarative_message(name, conf, fixed_system.as_deref()))]
    Declarative { name: String, conf: PathBuf, fixed_system: Option<PathBuf> },

    /// `start` of a container without a system to boot (its create did not
    /// finish).
    #[error(
        "container '{name}' has no system (its create did not finish); run 'nixos-container update {name}' to build one"
    )]
    NoSystem { name: String },

    /// `update --rollback` with nothing to go back to: no generation is
    /// selected (`current` None), or none is older than the current one.
    #[error("{}", no_rollback_message(name, *current))]
    NothingToRollBack { name: String, current: Option<u64> },

    /// The container's supervision, or processes of it, did not end when
    /// they should have (`what` says which): before a start, or when
    /// terminating it.
    #[error("{}", still_running_message(name, what))]
    StillRunning { name: String, what: Lingering },

    /// `show-ip` of a container without `LOCAL_ADDRESS`.
    #[error("container '{name}' has no IP address (LOCAL_ADDRESS is not set)")]
    NoAddress { name: String },

    /// `show-host-key` of a running guest that has no SSH host key (yet);
    /// `key` is the one looked for first, relative to the root.
    #[error("container '{name}' has no SSH host key (/{key} is missing; is services.openssh enabled in it?)")]
    NoHostKey { name: String, key: &'static str },

    // Settings and what they refer to.
    /// A line of a conf file that is not `KEY=VALUE`.
    #[error("{path}:{line}: {message}")]
    ConfSyntax { path: PathBuf, line: usize, message: String },

    /// A conf file's value that is refused.
    #[error("{path}: {message}")]
    ConfValue { path: PathBuf, message: String },

    /// No free address pair left in the pool.
    #[error("out of addresses: all {0} address pairs of the pool are in use")]
    PoolExhausted(usize),

    /// `update` without --config, --config-file or --flake of a container
    /// whose configuration (`config`) is not on the host. `only_in_root`:
    /// the root whose guest has one in its /etc/nixos, never built as root
    /// because the guest can change it.
    #[error("{}", no_host_config_message(name, config, only_in_root.as_deref()))]
    NoHostConfig { name: String, config: PathBuf, only_in_root: Option<PathBuf> },

    /// A network interface is missing: one that the conf's `key` of
    /// container `container` names on the host (`wanted_by`), or one looked
    /// up by name (`wanted_by` None).
    #[error("{}", no_interface_message(ifname, wanted_by))]
    NoInterface { ifname: String, wanted_by: Option<(&'static str, String)> },

    // Building, starting and running.
    /// A Nix build failed; the message says how.
    #[error("{0}")]
    Build(String),

    /// The new system is selected but did not take effect in the running
    /// guest.
    #[error("{}", activation_message(name, *generation, failure, output, back))]
    Activation {
        name: String,
        generation: Option<u64>,
        /// What went wrong ("switch-to-configuration exited with status 4").
        failure: String,
        /// What switch-to-configuration printed.
        output: String,
        /// The generation selected before, and the command that selects it again.
        back: Option<(u64, String)>,
    },

    /// The guest did not come up; `reason` says why.
    #[error("container '{name}' failed to start: {reason}")]
    StartFailed { name: String, reason: String },

    /// Some containers of a `--all`/`--auto` run failed; `failures` says
    /// why, one error per container.
    #[error("{} of {total} containers failed to {action}", failures.len())]
    SomeFailed { failures: Vec<Error>, total: usize, action: &'static str },

    // Talking to the guest.
    /// The guest's root-shell socket cannot be reached; `problem` says what
    /// is wrong with it. `socket` is its path in the guest (relative to the
    /// root), `on_host` where the host sees it.
    #[error(
        "container '{name}' has no usable root-shell socket /{socket} (on the host {}): {problem}; \
         the guest module guest/container-login.nix provides it (README: \"Guest socket contract\")",
        on_host.display()
    )]
    NoRootShell { name: String, socket: &'static str, on_host: PathBuf, problem: String },

    /// A pty or another user needs the guest agent, and the guest cannot
    /// run it (`why`). `login` then falls back to the login socket.
    #[error(
        "a pty or another user in container '{name}' needs the guest agent, and {why}; run the command as root without -t instead"
    )]
    NeedsAgent { name: String, why: &'static str },

    /// The connection to the guest broke (the guest halting, say).
    #[error("lost the connection to the container: {0}")]
    ConnectionLost(#[source] io::Error),

    /// The guest closed the connection before the session's end.
    #[error("the container closed the connection before the command ended")]
    ConnectionClosed,

    // The host.
    /// A system call or file operation failed; `context` says what was
    /// being done ("writing /etc/foo").
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    /// systemd (over D-Bus) refused or failed a request.
    #[error("{what}: {message}")]
    Systemd { what: String, message: String },

    /// A one-off failure whose text is all a caller needs: nothing matches
    /// on it. A failure that recurs, or that a script could act on, gets a
    /// variant above instead.
    #[error("{0}")]
    Other(String),
}

/// What of a container did not end in time ([`Error::StillRunning`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lingering {
    /// `start` (own supervision): a supervisor of an earlier run still
    /// holds its lock.
    Supervisor,
    /// `start`: the supervision of the last run (stopping, or a start that
    /// died) does not end within its wait.
    SupervisorBusy,
    /// Terminating (`terminate`, `stop` at its timeout, `destroy`; own
    /// supervision): the supervisor does not exit after SIGKILL.
    SupervisorAfterKill,
    /// Terminating on a systemd host: the container's unit does not stop.
    Unit(String),
    /// Terminating: processes in the container's cgroup survive SIGKILL.
    Processes(Vec<i32>),
}

fn declarative_message(name: &str, conf: &Path, fixed_system: Option<&Path>) -> String {
    match fixed_system {
        None => format!(
            "container '{name}' is declarative ({} is read-only); remove it from your NixOS configuration instead",
            conf.display()
        ),
        Some(system) => format!(
            "container '{name}' boots the fixed system {} (SYSTEM_PATH in {}); it is declarative: change it in its NixOS configuration",
            system.display(),
            conf.display()
        ),
    }
}

fn no_rollback_message(name: &str, current: Option<u64>) -> String {
    match current {
        None => format!("container '{name}' has no system generation selected"),
        Some(n) => format!(
            "container '{name}' has no generation before {n} to roll back to (see 'nixos-container generations {name}')"
        ),
    }
}

fn still_running_message(name: &str, what: &Lingering) -> String {
    match what {
        Lingering::Supervisor => format!("a supervisor of container '{name}' is still running"),
        Lingering::SupervisorBusy => format!(
            "the supervisor of container '{name}' is still busy; try again, or 'nixos-container terminate {name}'"
        ),
        Lingering::SupervisorAfterKill => format!("the supervisor of container '{name}' does not exit"),
        Lingering::Unit(unit) => format!("the unit {unit} of container '{name}' does not stop"),
        Lingering::Processes(pids) => {
            let pids: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
            format!(
                "processes of container '{name}' survive SIGKILL (PIDs {}); they may be stuck in the kernel (D state)",
                pids.join(" ")
            )
        }
    }
}

fn no_host_config_message(name: &str, config: &Path, only_in_root: Option<&Path>) -> String {
    match only_in_root {
        Some(root) => format!(
            "container '{name}' has its configuration only inside its root ({}/etc/nixos/configuration.nix), where its guest can change it, \
             so it is not built as root: copy it out, review it, and adopt it with \
             'nixos-container update {name} --config-file FILE' (or give --config or --flake)",
            root.display()
        ),
        None => format!(
            "container '{name}' has no {} to rebuild from; give --config, --config-file or --flake",
            config.display()
        ),
    }
}

fn no_interface_message(ifname: &str, wanted_by: &Option<(&'static str, String)>) -> String {
    match wanted_by {
        None => format!("network interface {ifname} does not exist"),
        Some(("HOST_BRIDGE", container)) => {
            format!("bridge {ifname} does not exist (HOST_BRIDGE of container '{container}')")
        }
        Some((key, container)) => {
            format!("network interface {ifname} does not exist on the host ({key} of container '{container}')")
        }
    }
}

/// `s` with its control characters escaped (`\n`, `\u{1b}`): values
/// that come from users or guests never drive the terminal.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect()
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::NoSuchContainer(_) => exit::NO_SUCH_CONTAINER,
            Error::NotRunning(_) => exit::NOT_RUNNING,
            Error::Usage(_) | Error::InvalidName { .. } | Error::InvalidValue { .. } => exit::USAGE,
            _ => exit::FAILURE,
        }
    }

    pub fn other(msg: impl Into<String>) -> Self {
        Error::Other(msg.into())
    }
}

fn activation_message(
    name: &str,
    generation: Option<u64>,
    failure: &str,
    output: &str,
    back: &Option<(u64, String)>,
) -> String {
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = &lines[lines.len().saturating_sub(40)..];
    let mut msg = format!("activating the new system in container '{name}' failed: {failure}");
    if !shown.is_empty() {
        msg.push_str(":\n");
        msg.push_str(&shown.join("\n"));
    }
    let which = generation.map(|g| format!("generation {g}")).unwrap_or_else(|| "the new system".into());
    msg.push_str(&format!("\n{which} stays selected"));
    match back {
        Some((g, command)) => msg.push_str(&format!("; to go back to generation {g}, run '{command}'")),
        None => msg.push_str(&format!("; 'nixos-container generations {name}' lists the others")),
    }
    msg
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a human context ("writing /etc/foo") to I/O errors.
pub trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { context: what(), source })
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io { context: what(), source: io::Error::from(errno) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The messages and exit codes of the typed failures, as they were when
    /// they were `Other`: scripts may match on either.
    #[test]
    fn typed_failures_keep_their_messages_and_exit_codes() {
        let name = || "web".to_string();
        let cases: Vec<(Error, &str)> = vec![
            (Error::Busy { name: name() }, "container 'web' is busy: another nixos-container command is changing it"),
            (
                Error::Declarative { name: name(), conf: "/etc/nixos-containers/web.conf".into(), fixed_system: None },
                "container 'web' is declarative (/etc/nixos-containers/web.conf is read-only); \
                 remove it from your NixOS configuration instead",
            ),
            (
                Error::Declarative {
                    name: name(),
                    conf: "/etc/nixos-containers/web.conf".into(),
                    fixed_system: Some("/nix/store/abc-system".into()),
                },
                "container 'web' boots the fixed system /nix/store/abc-system \
                 (SYSTEM_PATH in /etc/nixos-containers/web.conf); it is declarative: change it in its NixOS configuration",
            ),
            (
                Error::NoSystem { name: name() },
                "container 'web' has no system (its create did not finish); run 'nixos-container update web' to build one",
            ),
            (
                Error::NothingToRollBack { name: name(), current: None },
                "container 'web' has no system generation selected",
            ),
            (
                Error::NothingToRollBack { name: name(), current: Some(1) },
                "container 'web' has no generation before 1 to roll back to (see 'nixos-container generations web')",
            ),
            (
                Error::StillRunning { name: name(), what: Lingering::Supervisor },
                "a supervisor of container 'web' is still running",
            ),
            (
                Error::StillRunning { name: name(), what: Lingering::SupervisorBusy },
                "the supervisor of container 'web' is still busy; try again, or 'nixos-container terminate web'",
            ),
            (
                Error::StillRunning { name: name(), what: Lingering::SupervisorAfterKill },
                "the supervisor of container 'web' does not exit",
            ),
            (
                Error::StillRunning { name: name(), what: Lingering::Unit("nixos-container@web.service".into()) },
                "the unit nixos-container@web.service of container 'web' does not stop",
            ),
            (
                Error::StillRunning { name: name(), what: Lingering::Processes(vec![12, 345]) },
                "processes of container 'web' survive SIGKILL (PIDs 12 345); they may be stuck in the kernel (D state)",
            ),
            (Error::NoAddress { name: name() }, "container 'web' has no IP address (LOCAL_ADDRESS is not set)"),
            (
                Error::NoHostKey { name: name(), key: "etc/ssh/ssh_host_ed25519_key.pub" },
                "container 'web' has no SSH host key (/etc/ssh/ssh_host_ed25519_key.pub is missing; \
                 is services.openssh enabled in it?)",
            ),
            (Error::NoInterface { ifname: "eth9".into(), wanted_by: None }, "network interface eth9 does not exist"),
            (
                Error::NoInterface { ifname: "eth9".into(), wanted_by: Some(("INTERFACES", name())) },
                "network interface eth9 does not exist on the host (INTERFACES of container 'web')",
            ),
            (
                Error::NoInterface { ifname: "eth9".into(), wanted_by: Some(("MACVLANS", name())) },
                "network interface eth9 does not exist on the host (MACVLANS of container 'web')",
            ),
            (
                Error::NoInterface { ifname: "br9".into(), wanted_by: Some(("HOST_BRIDGE", name())) },
                "bridge br9 does not exist (HOST_BRIDGE of container 'web')",
            ),
            (
                Error::NoRootShell {
                    name: name(),
                    socket: "var/lib/root-shell.socket",
                    on_host: "/var/lib/nixos-containers/web/var/lib/root-shell.socket".into(),
                    problem: "nothing listens on it".into(),
                },
                "container 'web' has no usable root-shell socket /var/lib/root-shell.socket \
                 (on the host /var/lib/nixos-containers/web/var/lib/root-shell.socket): nothing listens on it; \
                 the guest module guest/container-login.nix provides it (README: \"Guest socket contract\")",
            ),
            (
                Error::NeedsAgent { name: name(), why: "its root shell could not start the agent" },
                "a pty or another user in container 'web' needs the guest agent, and its root shell could not \
                 start the agent; run the command as root without -t instead",
            ),
            (
                Error::NoHostConfig {
                    name: name(),
                    config: "/etc/nixos-containers/web/configuration.nix".into(),
                    only_in_root: None,
                },
                "container 'web' has no /etc/nixos-containers/web/configuration.nix to rebuild from; \
                 give --config, --config-file or --flake",
            ),
            (
                Error::NoHostConfig {
                    name: name(),
                    config: "/etc/nixos-containers/web/configuration.nix".into(),
                    only_in_root: Some("/var/lib/nixos-containers/web".into()),
                },
                "container 'web' has its configuration only inside its root \
                 (/var/lib/nixos-containers/web/etc/nixos/configuration.nix), where its guest can change it, \
                 so it is not built as root: copy it out, review it, and adopt it with \
                 'nixos-container update web --config-file FILE' (or give --config or --flake)",
            ),
        ];
        for (e, message) in cases {
            assert_eq!(e.to_string(), message);
            assert_eq!(e.exit_code(), exit::FAILURE, "{e}");
        }
    }

    #[test]
    fn a_failed_activation_says_how_to_roll_back() {
        let e = Error::Activation {
            name: "web".into(),
            generation: Some(3),
            failure: "switch-to-configuration exited with status 4".into(),
            output: "activating the configuration...\n\nwarning: the following units failed: x.service\n".into(),
            back: Some((2, "nixos-container update web --rollback".into())),
        };
        assert_eq!(
            e.to_string(),
            "activating the new system in container 'web' failed: switch-to-configuration exited with status 4:\n\
             activating the configuration...\n\
             warning: the following units failed: x.service\n\
             generation 3 stays selected; to go back to generation 2, run 'nixos-container update web --rollback'"
        );
        assert_eq!(e.exit_code(), exit::FAILURE);
    }
}

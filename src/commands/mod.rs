//! One module per subcommand; each is a thin layer over the library.

pub mod cp;
pub mod create;
pub mod destroy;
pub mod generations;
pub mod info;
pub mod list;
pub mod login;
pub mod logs;
pub mod many;
pub mod pick;
pub mod progress;
pub mod restart;
pub mod root_login;
pub mod run;
pub mod set_limits;
pub mod show_host_key;
pub mod show_ip;
pub mod start;
pub mod status;
pub mod stop;
pub mod supervise;
pub mod terminate;
pub mod unit;
pub mod update;

use nixos_container::error::{Error, Result};
use nixos_container::paths::Paths;

/// What every command gets from the CLI layer.
pub struct Ctx {
    pub paths: Paths,
    pub quiet: bool,
    pub verbose: u8,
    /// stderr is a terminal: a person is watching.
    pub interactive: bool,
}

impl Ctx {
    /// A person can answer a prompt: stdin and stderr are terminals.
    pub fn can_prompt(&self) -> bool {
        use std::io::IsTerminal;
        std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
    }

    /// Builds show Nix's progress when a person watches or -v was given.
    pub fn build_output(&self) -> nixos_container::profile::BuildOutput {
        if self.interactive && !self.quiet || self.verbose > 0 {
            nixos_container::profile::BuildOutput::Show
        } else {
            nixos_container::profile::BuildOutput::Capture
        }
    }

    /// Prints a note for the user on stderr unless --quiet.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Commands that change containers need root.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() { Ok(()) } else { Err(Error::NotRoot) }
}

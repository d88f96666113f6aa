//! One module per subcommand; each is a thin layer over the library.

pub mod create;
pub mod destroy;
pub mod list;
pub mod login;
pub mod restart;
pub mod root_login;
pub mod run;
pub mod show_host_key;
pub mod show_ip;
pub mod start;
pub mod status;
pub mod stop;
pub mod supervise;
pub mod terminate;

use crate::error::{Error, Result};
use crate::paths::Paths;

/// What every command gets from the CLI layer.
pub struct Ctx {
    pub paths: Paths,
    pub quiet: bool,
    pub verbose: u8,
    /// stderr is a terminal: a person is watching.
    pub interactive: bool,
}

impl Ctx {
    /// Prints a note for the user on stderr unless --quiet.
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("{msg}");
        }
    }
}

/// Commands that change containers need root.
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot)
    }
}

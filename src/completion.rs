//! Shell completion through clap's dynamic completion: the scripts in
//! `completions/` (what `COMPLETE=bash|zsh|fish nixos-container` prints)
//! call `nixos-container` back at each TAB, which answers from the clap
//! definitions and, for container names, from the live state
//! (`commands::pick`). So a new container completes at once, and
//! subcommands and flags can never drift from the binary.

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::CompleteEnv;
use clap_complete::env::{Bash, EnvCompleter, Fish, Shells, Zsh};

use crate::cli::Cli;

/// clap's zsh script, made to work both when sourced and when autoloaded
/// from `$fpath` as `_nixos-container`: clap's version only registers
/// itself, so an autoloaded copy would complete nothing on the first TAB.
struct ZshFile;

impl EnvCompleter for ZshFile {
    fn name(&self) -> &'static str {
        Zsh.name()
    }

    fn is(&self, name: &str) -> bool {
        Zsh.is(name)
    }

    fn write_registration(
        &self,
        var: &str,
        name: &str,
        bin: &str,
        completer: &str,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        let mut script = Vec::new();
        Zsh.write_registration(var, name, bin, completer, &mut script)?;
        let script = String::from_utf8_lossy(&script);
        let func = format!("_clap_dynamic_completer_{}", name.replace('-', "_"));
        let register = format!("compdef {func} {bin}");
        let both =
            format!("if [ \"${{funcstack[1]}}\" = \"_{bin}\" ]; then\n    {func} \"$@\"\nelse\n    {register}\nfi");
        if !script.contains(&register) {
            return Err(std::io::Error::other("clap's zsh script changed: update src/completion.rs"));
        }
        buf.write_all(script.replace(&register, &both).as_bytes())
    }

    fn write_complete(
        &self,
        cmd: &mut clap::Command,
        args: Vec<OsString>,
        current_dir: Option<&Path>,
        buf: &mut dyn Write,
    ) -> std::io::Result<()> {
        Zsh.write_complete(cmd, args, current_dir, buf)
    }
}

const SHELLS: Shells<'static> = Shells(&[&Bash, &ZshFile, &Fish]);

/// The words of the command line being completed, for completers that
/// depend on an earlier word (`run NAME --user <TAB>`).
pub fn words() -> Vec<String> {
    // The completing shell passes them after `--`.
    std::env::args().skip_while(|a| a != "--").skip(1).collect()
}

/// Answers a completion request and exits, if this run is one (the
/// COMPLETE variable is set); returns otherwise.
pub fn answer_if_asked() {
    CompleteEnv::with_factory(Cli::command)
        .shells(SHELLS)
        // The scripts find the binary on PATH, wherever it was installed.
        .completer("nixos-container")
        .complete();
}

//! Shell completion through clap's dynamic completion: the scripts in
//! `completions/` (what `COMPLETE=bash|zsh|fish nixos-container` prints)
//! call `nixos-container` back at each TAB, which answers from the clap
//! definitions and, for container names, from the live state
//! (`container::candidates`, as `commands::pick` offers them). So a new container completes at once, and
//! subcommands and flags can never drift from the binary.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::Path;

use clap::CommandFactory;
use clap_complete::CompleteEnv;
use clap_complete::engine::CompletionCandidate;
use clap_complete::env::{Bash, EnvCompleter, Fish, Shells, Zsh};

use crate::cli::Cli;
use nixos_container::container::{Container, Which, candidates};
use nixos_container::paths::Paths;

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

/// Completion of container names: those `which` admits that start with
/// `current`, with their state and address as help.
fn complete(current: &OsStr, which: Which) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else { return Vec::new() };
    // Completion must never fail loudly: no names is the answer to errors.
    let Ok(paths) = Paths::from_env() else { return Vec::new() };
    let Ok(found) = candidates(&paths, which) else { return Vec::new() };
    found
        .into_iter()
        .filter(|c| c.name.starts_with(prefix))
        .map(|c| {
            let help = c.describe();
            CompletionCandidate::new(c.name).help(Some(help.into()))
        })
        .collect()
}

/// Shell completion of NAME for commands that act on any container.
pub fn complete_any(current: &OsStr) -> Vec<CompletionCandidate> {
    complete(current, Which::All)
}

/// Shell completion of NAME for commands that need a running container.
pub fn complete_running(current: &OsStr) -> Vec<CompletionCandidate> {
    complete(current, Which::Running)
}

/// Shell completion of NAME for `start`: the stopped containers, as its
/// picker offers.
pub fn complete_stopped(current: &OsStr) -> Vec<CompletionCandidate> {
    complete(current, Which::Stopped)
}

/// The container a `run`/`exec` command line being completed names: its
/// first word after the subcommand that is neither an option nor an
/// option's value.
pub fn container_in_command_line(words: &[String]) -> Option<String> {
    let at = words.iter().position(|w| w == "run" || w == "exec")?;
    let mut rest = words[at + 1..].iter();
    while let Some(w) = rest.next() {
        match w.as_str() {
            "--" => return None,
            "--env" | "--cwd" | "--user" => {
                rest.next();
            }
            w if w.starts_with('-') => {}
            w => return Some(w.to_string()),
        }
    }
    None
}

/// Shell completion of `run --user`: the user names of the container named
/// on the command line, from its /etc/passwd (read inside its root).
pub fn complete_guest_user(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(prefix) = current.to_str() else { return Vec::new() };
    let Some(name) = container_in_command_line(&words()) else { return Vec::new() };
    let Ok(paths) = Paths::from_env() else { return Vec::new() };
    let Ok(c) = Container::open(&paths, &name) else { return Vec::new() };
    nixos_container::rootfs::guest_users(&c.paths.root)
        .into_iter()
        .filter(|(user, _)| user.starts_with(prefix))
        .map(|(user, uid)| CompletionCandidate::new(user).help(Some(format!("uid {uid}").into())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_of_a_run_command_line() {
        let w = |s: &str| s.split(' ').map(str::to_string).collect::<Vec<_>>();
        assert_eq!(container_in_command_line(&w("nixos-container run -t web --user ")), Some("web".into()));
        assert_eq!(
            container_in_command_line(&w("nixos-container exec --env A=b --cwd /x web --user a")),
            Some("web".into())
        );
        assert_eq!(container_in_command_line(&w("nixos-container run --user ")), None);
        assert_eq!(container_in_command_line(&w("nixos-container start web")), None);
    }
}

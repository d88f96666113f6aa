//! Choosing a container: the names a shell completes (from the live state,
//! at each TAB), and the selection offered when NAME is omitted at a
//! terminal. Every command that takes a NAME goes through here.

use std::ffi::OsStr;

use clap_complete::engine::CompletionCandidate;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::cgroup;
use crate::commands::Ctx;
use crate::container::{self, Container, State};
use crate::error::{Error, Result};
use crate::paths::Paths;

/// Which containers a command can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    Running,
    Stopped,
}

impl Which {
    fn admits(self, state: State) -> bool {
        match self {
            Which::All => true,
            Which::Running => state == State::Up,
            Which::Stopped => state == State::Down,
        }
    }
}

/// A container that matched, with what is known of it (no address when its
/// conf does not load).
pub struct Candidate {
    pub name: String,
    pub state: State,
    pub address: Option<String>,
}

impl Candidate {
    /// "up 10.233.1.2": the help shown beside the name.
    fn describe(&self) -> String {
        match self.address.as_deref() {
            Some(addr) => format!("{} {addr}", self.state.as_str()),
            None => self.state.as_str().to_string(),
        }
    }
}

/// The containers `which` admits, sorted by name. Cheap: a directory
/// listing, and per container one cgroup file, the supervisor lock and,
/// for those admitted, the conf. Up and down as `status` says.
pub fn candidates(paths: &Paths, which: Which) -> Result<Vec<Candidate>> {
    let hierarchies = cgroup::host_hierarchies()?;
    let mut out = Vec::new();
    for name in Container::list(paths)? {
        let state = container::state_of(&name, &paths.container(&name), hierarchies);
        if !which.admits(state) {
            continue;
        }
        let address = Container::open(paths, &name).ok().and_then(|c| c.address());
        out.push(Candidate { name, state, address });
    }
    Ok(out)
}

/// The container a command acts on: the NAME given, or, at a terminal, the
/// one the person picks from those `which` admits. Without a terminal a
/// missing NAME is a usage error, so scripts never hang on a prompt.
pub fn name(ctx: &Ctx, given: Option<&str>, which: Which, command: &str) -> Result<String> {
    if let Some(name) = given {
        return Ok(name.to_string());
    }
    if !ctx.can_prompt() {
        return Err(Error::Usage(format!(
            "'nixos-container {command}' needs a container NAME ('nixos-container list' shows them)"
        )));
    }
    let found = candidates(&ctx.paths, which)?;
    if found.is_empty() {
        let what = match which {
            Which::All => "there are no containers",
            Which::Running => "no container is running",
            Which::Stopped => "every container is running",
        };
        return Err(Error::other(format!("{what}; nothing to {command}")));
    }
    let width = found.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let items: Vec<String> = found.iter().map(|c| format!("{:width$}  {}", c.name, c.describe())).collect();
    let chosen = {
        let _restore = CursorOnInterrupt::install();
        dialoguer::Select::new()
            .with_prompt(format!("Which container to {command}? (arrows choose, Enter takes it, Esc cancels)"))
            .items(&items)
            // No container is preselected: on a shared host the first name
            // is as likely someone else's; Enter takes one only once chosen.
            .default(usize::MAX)
            .interact_opt()
            .map_err(prompt_error)?
    };
    match chosen {
        Some(i) => Ok(found[i].name.clone()),
        None => Err(Error::Cancelled("no container chosen".into())),
    }
}

/// Asks a yes/no question at the terminal; the default answer is No.
pub fn confirm(question: &str) -> Result<bool> {
    let _restore = CursorOnInterrupt::install();
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact_opt()
        .map(|answer| answer.unwrap_or(false))
        .map_err(prompt_error)
}

/// While a prompt has hidden the cursor, Ctrl-C shows it again before the
/// program dies as usual (exit 130); the shell would keep it hidden otherwise.
struct CursorOnInterrupt(Option<SigAction>);

extern "C" fn show_cursor_and_exit(_: libc::c_int) {
    const SHOW: &[u8] = b"\x1b[?25h\n";
    // SAFETY: write(2) and _exit(2) are async-signal-safe.
    unsafe {
        libc::write(libc::STDERR_FILENO, SHOW.as_ptr().cast(), SHOW.len());
        libc::_exit(130);
    }
}

impl CursorOnInterrupt {
    fn install() -> CursorOnInterrupt {
        let action = SigAction::new(SigHandler::Handler(show_cursor_and_exit), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler only makes async-signal-safe calls.
        CursorOnInterrupt(unsafe { sigaction(Signal::SIGINT, &action) }.ok())
    }
}

impl Drop for CursorOnInterrupt {
    fn drop(&mut self) {
        if let Some(previous) = self.0.take() {
            // SAFETY: puts back the disposition that was there before.
            let _ = unsafe { sigaction(Signal::SIGINT, &previous) };
        }
    }
}

fn prompt_error(e: dialoguer::Error) -> Error {
    match e {
        dialoguer::Error::IO(source) => Error::Io { context: "asking at the terminal".into(), source },
    }
}

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
    let Some(name) = container_in_command_line(&crate::completion::words()) else { return Vec::new() };
    let Ok(paths) = Paths::from_env() else { return Vec::new() };
    let Ok(c) = Container::open(&paths, &name) else { return Vec::new() };
    crate::rootfs::guest_users(&c.paths.root)
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

//! Choosing a container: the selection offered when NAME is omitted at a
//! terminal (the names a shell completes are in `completion`, from the same
//! `container::candidates`). Every command that takes a NAME goes through
//! here.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::commands::Ctx;
pub use nixos_container::container::{Which, candidates};
use nixos_container::error::{Error, Result};

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

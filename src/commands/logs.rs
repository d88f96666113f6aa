use std::io::IsTerminal;

use crate::cli::LogsArgs;
use crate::commands::{Ctx, require_root};
use nixos_container::container::{Container, State};
use nixos_container::error::Result;
use nixos_container::guest::{self, Io};
use nixos_container::logs;

pub fn run(ctx: &Ctx, args: &LogsArgs) -> Result<i32> {
    require_root()?;
    let c = Container::open(&ctx.paths, &args.name)?;
    if !args.journal && nixos_container::supervision::units_run_containers() {
        nixos_container::unit::console(&c.name, args.lines, args.follow, &mut std::io::stdout().lock())?;
        return Ok(0);
    }
    if !args.journal {
        logs::console(&c.paths.console_log(), args.lines, args.follow, &mut std::io::stdout().lock())?;
        return Ok(0);
    }
    let jargs = logs::journalctl_args(args.lines, args.follow, &args.journalctl);
    if c.state()? != State::Up {
        return logs::journal_from_files(&c.paths.root, &jargs);
    }
    let mut argv = vec!["journalctl".to_string()];
    argv.extend(jargs);
    // The guest's journalctl is the guest's program: at a terminal, its
    // output is cleaned of escapes like the console's.
    let stdout: Box<dyn std::io::Write + Send> = if std::io::stdout().is_terminal() {
        Box::new(logs::Sanitizing::new(std::io::stdout()))
    } else {
        Box::new(std::io::stdout())
    };
    let io = Io {
        stdin: None,
        stdout,
        stderr: Box::new(logs::Sanitizing::new(std::io::stderr())),
        signals: true,
        winsize_from: None,
        raw_terminal: false,
    };
    let status = guest::run(&c, &guest::Command::new(&argv), io)?;
    Ok(status.shell_code())
}

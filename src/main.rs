//! The binary: the command line (`cli`), one function per subcommand
//! (`commands`), shell completion, the examples and the man pages, on top of
//! the library's domain modules (`nixos_container`, see its lib.rs). Nothing
//! in the library reaches back into these.

mod cli;
mod commands;
mod completion;
mod examples;
mod manpages;

use std::io::IsTerminal;

use cli::{Cli, Command};
use commands::Ctx;
use nixos_container::error::{Error, exit};
use nixos_container::paths::Paths;

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(cli::LOG_ENV)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("nixos_container={level}"))),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person; logs and scripts get plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .init();
}

fn dispatch(ctx: &Ctx, command: &Command) -> Result<i32, Error> {
    match command {
        Command::List(a) => commands::list::run(ctx, a),
        Command::Create(a) => commands::create::run(ctx, a),
        Command::Destroy(a) => commands::destroy::run(ctx, a),
        Command::Start(a) => commands::start::run(ctx, a),
        Command::Stop(a) => commands::stop::run(ctx, a),
        Command::Terminate(a) => commands::terminate::run(ctx, a),
        Command::Restart(a) => commands::restart::run(ctx, a),
        Command::Update(a) => commands::update::run(ctx, a),
        Command::Generations(a) => commands::generations::run(ctx, a),
        Command::Status(a) => commands::status::run(ctx, a),
        Command::Info(a) => commands::info::run(ctx, a),
        Command::Logs(a) => commands::logs::run(ctx, a),
        Command::Run(a) => commands::run::run(ctx, a),
        Command::Login(a) => commands::login::run(ctx, a),
        Command::RootLogin(a) => commands::root_login::run(ctx, a),
        Command::Cp(a) => commands::cp::run(ctx, a),
        Command::SetLimits(a) => commands::set_limits::run(ctx, a),
        Command::ShowIp(a) => commands::show_ip::run(ctx, a),
        Command::ShowHostKey(a) => commands::show_host_key::run(ctx, a),
        Command::Supervise(a) => commands::supervise::run(ctx, a),
        Command::RunUnit(a) => commands::unit::run_unit(ctx, a),
        Command::Release(a) => commands::unit::release(ctx, a),
        Command::ManPages(a) => manpages::write(&a.dir).map(|()| 0),
    }
}

/// Clap's usage errors in our error style: the message (with clap's tip, if
/// any) on one line, the usage on a second. Help and version print as clap
/// renders them.
fn usage_error(mut e: clap::Error) -> ! {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !e.use_stderr()
        || matches!(
            e.kind(),
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        )
    {
        e.exit();
    }
    // clap lists similar names from the least to the most similar: the
    // best match first, where the eye lands (`strat`: 'start', 'restart').
    if let Some(ContextValue::Strings(names)) = e.get(ContextKind::SuggestedSubcommand) {
        let best_first: Vec<String> = names.iter().rev().cloned().collect();
        e.insert(ContextKind::SuggestedSubcommand, ContextValue::Strings(best_first));
    }
    let text = e.render().to_string();
    let mut message = String::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage:") {
            usage = Some(u.trim().to_string());
        } else if line.starts_with("For more information") {
            continue;
        } else if message.is_empty() {
            message = line.to_string();
        } else if let Some(tip) = line.strip_prefix("tip:") {
            message.push_str(&format!(" ({})", tip.trim()));
        } else {
            message.push(' ');
            message.push_str(line);
        }
    }
    eprintln!("{message}");
    if let Some(usage) = usage {
        eprintln!("usage: {usage} (see --help)");
    }
    std::process::exit(exit::USAGE);
}

/// A bug must still end in one line on stderr; the backtrace only when
/// asked for with RUST_BACKTRACE.
fn install_panic_hook() {
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        nixos_container::guest::pty::restore_now();
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("error: internal error: {what}{place} (a bug: please report it; RUST_BACKTRACE=1 shows more)");
    }));
}

fn main() {
    // Completion requests from the shell scripts in completions/ (COMPLETE=bash
    // etc.) are answered here, before anything else is printed.
    completion::answer_if_asked();
    install_panic_hook();

    let cli = Cli::parse_args().unwrap_or_else(|e| usage_error(e));
    // Writing into a closed pipe (`list | head`) ends the program quietly,
    // as for other Unix tools, instead of failing on EPIPE. Not for the
    // commands that talk to a guest over a socket: a guest closing its end
    // must come back as an error to handle (EPIPE), not kill the CLI; `run`
    // itself ends like a local command when its own stdout is closed.
    let talks_to_guest = matches!(
        cli.command,
        Command::Run(_)
            | Command::Login(_)
            | Command::RootLogin(_)
            | Command::Update(_)
            | Command::Supervise(_)
            | Command::Logs(_)
    );
    if !talks_to_guest {
        // SAFETY: resetting a signal disposition at startup, before any thread.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    init_logging(&cli);
    let paths = Paths::from_env().unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code())
    });
    // A misspelt override must not silently pick the other kind of supervision.
    if let Err(e) = nixos_container::supervision::parse_choice(
        std::env::var(nixos_container::supervision::SUPERVISION_VAR).ok().as_deref(),
    ) {
        eprintln!("error: {e}");
        std::process::exit(exit::FAILURE);
    }
    let ctx = Ctx { paths, quiet: cli.quiet, verbose: cli.verbose, interactive: std::io::stderr().is_terminal() };
    let code = match dispatch(&ctx, &cli.command) {
        Ok(code) => code,
        Err(e) => {
            // The one place where errors become messages: on a terminal
            // that no session left raw.
            nixos_container::guest::pty::restore_now();
            if let Error::SomeFailed { failures, .. } = &e {
                for f in failures {
                    eprintln!("error: {f}");
                }
            }
            match &e {
                // A person said no: not an error, but nothing was done.
                Error::Cancelled(_) => eprintln!("{e}"),
                _ => eprintln!("error: {e}"),
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}

use std::io::IsTerminal;

use clap::Parser;

use nixos_container::cli::{Cli, Command};
use nixos_container::commands::{self, Ctx};
use nixos_container::error::Error;
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
            tracing_subscriber::EnvFilter::try_from_env("NIXOS_CONTAINER_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("nixos_container={level}"))),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

fn dispatch(ctx: &Ctx, command: &Command) -> Result<i32, Error> {
    match command {
        Command::List => commands::list::run(ctx),
        Command::Create(a) => commands::create::run(ctx, a),
        Command::Destroy(a) => commands::destroy::run(ctx, a),
        Command::Start(a) => commands::start::run(ctx, a),
        Command::Stop(a) => commands::stop::run(ctx, a),
        Command::Terminate(a) => commands::terminate::run(ctx, a),
        Command::Restart(a) => commands::restart::run(ctx, a),
        Command::Status(a) => commands::status::run(ctx, a),
        Command::Run(a) => commands::run::run(ctx, a),
        Command::Login(a) => commands::login::run(ctx, a),
        Command::RootLogin(a) => commands::root_login::run(ctx, a),
        Command::ShowIp(a) => commands::show_ip::run(ctx, a),
        Command::ShowHostKey(a) => commands::show_host_key::run(ctx, a),
        Command::Supervise(a) => commands::supervise::run(ctx, a),
    }
}

fn main() {
    let cli = Cli::parse();
    init_logging(&cli);
    let ctx = Ctx {
        paths: Paths::from_env(),
        quiet: cli.quiet,
        verbose: cli.verbose,
        interactive: std::io::stderr().is_terminal(),
    };
    let code = match dispatch(&ctx, &cli.command) {
        Ok(code) => code,
        Err(e) => {
            // The one place where errors become messages.
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

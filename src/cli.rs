//! The command line, as clap definitions. Also the source of the shell
//! completions and man pages.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCompleter;

use crate::completion::{complete_any, complete_guest_user, complete_running, complete_stopped};

/// The environment variables besides the paths' (`paths::ENV_VARS`): the
/// name, its form for `--help` (empty: not listed there), and its meaning
/// for the man page.
pub const OTHER_ENV_VARS: &[(&str, &str, &str)] = &[
    (
        nixos_container::addr::POOL_ENV,
        "A.B.0.0/16",
        "The IPv4 range new containers take addresses from (A.B.0.0/16; default 10.233.0.0/16).",
    ),
    (
        nixos_container::addr::POOL6_ENV,
        "a /48",
        "The IPv6 range new containers take addresses from (a /48; default fd6e:6978:6f73::/48).",
    ),
    (
        nixos_container::supervision::SUPERVISION_VAR,
        "",
        "own or systemd: what runs a container (default: its systemd unit nixos-container@NAME.service \
         where systemd is PID 1, else the tool itself).",
    ),
    (LOG_ENV, "", "A tracing filter for the messages on stderr (e.g. nixos_container=debug)."),
];

/// The tracing filter's variable (read in main.rs).
pub const LOG_ENV: &str = "NIXOS_CONTAINER_LOG";

/// Words joined into lines of at most `width` characters; `KEEP` joins
/// words that stay on one line.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if line_len > 0 && line_len + 1 + word.chars().count() > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += word.chars().count();
    }
    out.replace(KEEP, " ")
}

const KEEP: char = '\u{a0}';

/// The end of `--help`: the exit statuses (`error::exit::TABLE`) and the
/// environment variables (`paths::ENV_VARS`, `OTHER_ENV_VARS`).
pub fn after_help() -> String {
    let codes: Vec<String> = nixos_container::error::exit::TABLE
        .iter()
        .map(|(code, short, _)| format!("{code} {short}").replace(' ', &KEEP.to_string()))
        .collect();
    let exit = format!(
        "Exit status: {}; `run` and `root-login` exit with the status of the command or shell they ran.",
        codes.join(", ")
    );
    let state_default = nixos_container::paths::default_of(nixos_container::paths::STATE_DIR_VAR).unwrap_or_default();
    let path_vars: Vec<&str> = nixos_container::paths::ENV_VARS.iter().map(|(var, _)| *var).collect();
    let (last, first) = path_vars.split_last().expect("there are path variables");
    let pools: Vec<String> = OTHER_ENV_VARS
        .iter()
        .filter(|(_, form, _)| !form.is_empty())
        .map(|(var, form, _)| format!("{var} ({form})"))
        .collect();
    let paths = format!(
        "Confs are read from {EXTRA_CONTAINER_MARKER}, roots kept in {state_default}, as nixpkgs does for \
         stateVersion 22.05 and later. Paths can be moved with {} and {last}; address pools with {}.",
        first.join(", "),
        pools.join(" and ")
    );
    let supervision = format!(
        "Where systemd is PID 1, a running container is the systemd unit nixos-container@NAME.service \
         (machinectl and journalctl -M know it); elsewhere the tool supervises it itself. \
         {}=own or =systemd overrides the choice.",
        nixos_container::supervision::SUPERVISION_VAR
    );
    format!("{}\n\n{}\n\n{}", wrap(&exit, 78), wrap(&paths, 78), wrap(&supervision, 78))
}

/// extra-container picks its layout by grepping the nixos-container program
/// for this string, quotes included (it means nixpkgs' 22.05 layout, which
/// is ours); `after_help` carries it, so it is in the binary.
pub const EXTRA_CONTAINER_MARKER: &str = "\"/etc/nixos-containers\"";

/// Create, run, update and destroy lightweight NixOS containers.
#[derive(Debug, Parser)]
#[command(name = "nixos-container", version, after_help = after_help(), after_long_help = format!("{}\n{}", crate::examples::help("nixos-container"), after_help()), propagate_version = true)]
pub struct Cli {
    /// Explain what is done (commands run, nspawn command line); twice for more
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// List containers: a table at a terminal, one name per line in a pipe
    #[command(after_long_help = crate::examples::help("list"))]
    List(ListArgs),
    /// Create a container and build its system (does not start it)
    #[command(after_long_help = crate::examples::help("create"))]
    Create(Box<CreateArgs>),
    /// Stop a container if it runs and remove it with all its state
    #[command(after_long_help = crate::examples::help("destroy"))]
    Destroy(DestroyArgs),
    /// Start a container and wait until it is ready for commands
    #[command(after_long_help = crate::examples::help("start"))]
    Start(StartArgs),
    /// Halt a container cleanly, killing what is left after a timeout
    #[command(after_long_help = crate::examples::help("stop"))]
    Stop(StopArgs),
    /// Kill all processes of a container at once
    #[command(after_long_help = crate::examples::help("terminate"))]
    Terminate(NameArg),
    /// Stop a container, then start it again
    #[command(after_long_help = crate::examples::help("restart"))]
    Restart(RestartArgs),
    /// Build a new generation of a container's system and activate it live
    #[command(after_long_help = crate::examples::help("update"))]
    Update(UpdateArgs),
    /// List the generations of a container's system (number, date, store path)
    #[command(after_long_help = crate::examples::help("generations"))]
    Generations(NameArg),
    /// Print whether a container is up or down
    #[command(after_long_help = crate::examples::help("status"))]
    Status(StatusArgs),
    /// Show a container's console log, or its guest's journal (--journal)
    #[command(after_long_help = crate::examples::help("logs"))]
    Logs(LogsArgs),
    /// Show a container in detail: state, addresses, system, resources, limits, console
    #[command(after_long_help = crate::examples::help("info"))]
    Info(InfoArgs),
    /// Run a command in a container (as root unless --user)
    #[command(visible_alias = "exec")]
    #[command(after_long_help = crate::examples::help("run"))]
    Run(RunArgs),
    /// Log in to a container at its login prompt
    #[command(after_long_help = crate::examples::help("login"))]
    Login(RunningNameArg),
    /// Open an interactive root shell in a container, on a pty
    #[command(visible_alias = "shell")]
    #[command(after_long_help = crate::examples::help("root-login"))]
    RootLogin(RunningNameArg),
    /// Copy files and directories between the host and a container (NAME:PATH on one side)
    #[command(after_long_help = crate::examples::help("cp"))]
    Cp(CpArgs),
    /// Change a container's memory, CPU and process limits (at once if it runs)
    #[command(after_long_help = crate::examples::help("set-limits"))]
    SetLimits(SetLimitsArgs),
    /// Print the container's IP address
    #[command(after_long_help = crate::examples::help("show-ip"))]
    ShowIp(NameArg),
    /// Print the container's SSH host key as a known_hosts line
    #[command(after_long_help = crate::examples::help("show-host-key"))]
    ShowHostKey(NameArg),
    /// (internal) supervise a running container
    #[command(name = "__supervise", hide = true)]
    Supervise(SuperviseArgs),
    /// (internal) the main process of a container's systemd unit
    #[command(name = "__run-unit", hide = true)]
    RunUnit(InternalName),
    /// (internal) release what a container's systemd unit set up
    #[command(name = "__release", hide = true)]
    Release(InternalName),
    /// (internal) write the man pages into DIR (for tests/generated.rs and
    /// scripts/regenerate, as the library has no CLI definition)
    #[command(name = "__man-pages", hide = true)]
    ManPages(DirArg),
}

#[derive(Debug, Args)]
pub struct DirArg {
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct InternalName {
    pub name: String,
}

/// A running container's name, asked for at a terminal when omitted.
#[derive(Debug, Args)]
pub struct RunningNameArg {
    /// The container's name (at a terminal, asked for when omitted)
    #[arg(add = ArgValueCompleter::new(complete_running))]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct NameArg {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array of {name, state, address, generation, auto_start, processes, memory_bytes, ipv4, ipv6, uptime_seconds, system, limits, ...}
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// The columns to show, comma-separated: name, state, address, ipv4, ipv6, generation, auto-start,
    /// processes, memory, uptime, since, memory-max, cpu-quota, pids-max, system
    #[arg(short = 'o', long, value_name = "COLUMNS", value_parser = nixos_container::info::parse_columns)]
    pub format: Option<nixos_container::info::Columns>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    /// Show only the last N lines (entries, with --journal)
    #[arg(short = 'n', long, value_name = "N")]
    pub lines: Option<usize>,
    /// Keep showing what is added, until interrupted
    #[arg(short, long)]
    pub follow: bool,
    /// The guest's journal instead of the console: through the running guest,
    /// or from its files (/var/log/journal) when it is stopped
    #[arg(short, long)]
    pub journal: bool,
    /// More journalctl options, with --journal (after --), e.g. -- -u nginx -p err
    #[arg(last = true, value_name = "JOURNALCTL-OPTIONS", requires = "journal")]
    pub journalctl: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    /// Print it as JSON: list --json's fields, plus the console's last lines
    #[arg(long)]
    pub json: bool,
    /// How many lines of the console to show
    #[arg(short = 'n', long, value_name = "N", default_value = "10")]
    pub lines: usize,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    /// Print {name, state, address, generation, auto_start, processes, memory_bytes} as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    /// Do not ask for confirmation (only asked at a terminal)
    #[arg(short, long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
// create has no configuration to keep: it builds <nixpkgs/nixos> unless told.
#[command(mut_arg("nixos_path", |a| a.default_value(nixos_container::profile::DEFAULT_NIXOS_PATH)))]
pub struct CreateArgs {
    /// The container's name (letters, digits and '-', at most 63 characters)
    pub name: String,

    #[command(flatten)]
    pub source: SourceArgs,

    /// If NAME is taken, try NAME-0, NAME-1, ... and print the name chosen
    #[arg(long)]
    pub ensure_unique_name: bool,

    /// Start the container with 'start --auto' (at boot)
    #[arg(long)]
    pub auto_start: bool,

    /// Attach the container's interface to this host bridge instead of routing
    #[arg(long, value_name = "IFACE")]
    pub bridge: Option<String>,

    /// Forward a host port: [tcp:|udp:]HOSTPORT[:CONTAINERPORT] (repeatable, or comma-separated)
    #[arg(long, value_name = "SPEC", value_delimiter = ',')]
    pub port: Vec<String>,

    /// The host side's IPv4 address (with --local-address)
    #[arg(long, value_name = "ADDR", requires = "local_address")]
    pub host_address: Option<String>,

    /// The container's IPv4 address (with --host-address; with --bridge alone is enough)
    #[arg(long, value_name = "ADDR")]
    pub local_address: Option<String>,

    /// The host side's IPv6 address (with --local-address6; default: a pair from fd6e:6978:6f73::/48)
    #[arg(long, value_name = "ADDR", requires = "local_address6")]
    pub host_address6: Option<String>,

    /// The container's IPv6 address (with --host-address6)
    #[arg(long, value_name = "ADDR", requires = "host_address6")]
    pub local_address6: Option<String>,

    /// Bind-mount a host path into the container: SRC[:DST[:OPTIONS]] (repeatable)
    #[arg(long, value_name = "SRC[:DST]", value_hint = clap::ValueHint::AnyPath)]
    pub bind: Vec<String>,

    /// Bind-mount a host path read-only: SRC[:DST[:OPTIONS]] (repeatable)
    #[arg(long, value_name = "SRC[:DST]", value_hint = clap::ValueHint::AnyPath)]
    pub bind_ro: Vec<String>,

    /// Give the container a capability beyond nspawn's default set (repeatable, or comma-separated)
    #[arg(long, value_name = "CAP", value_delimiter = ',')]
    pub capability: Vec<String>,

    /// Allow (NAME, @GROUP) or deny (~NAME) system calls, as systemd-nspawn does (repeatable)
    #[arg(long, value_name = "FILTER")]
    pub system_call_filter: Vec<String>,

    /// Make a host device node available in the container, e.g. /dev/fuse (repeatable)
    #[arg(long, value_name = "DEVICE", value_hint = clap::ValueHint::FilePath)]
    pub device: Vec<String>,

    /// Run the container in a user namespace: pick (default), yes, identity or a UID base
    #[arg(long, value_name = "MODE", num_args = 0..=1, default_missing_value = "pick")]
    pub private_users: Option<String>,

    /// Give the guest the host's Nix daemon socket although its root is host root (a trusted Nix user: it can add unsigned paths to the host's store); with --private-users it gets the socket anyway
    #[arg(long)]
    pub nix_daemon: bool,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub nix: NixArgs,
}

/// A limit as given: `Some(n)`, or `None` for "no limit" (`infinity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitValue<T>(pub Option<T>);

/// Resource limits, for create and set-limits (see `limits`).
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Memory the container may use, e.g. 512M or 2G (infinity: no limit)
    #[arg(long, value_name = "SIZE", value_parser = |s: &str| nixos_container::limits::parse_memory(s).map(LimitValue))]
    pub memory_max: Option<LimitValue<u64>>,
    /// CPU time, as a percentage of one CPU, e.g. 50% or 200% (infinity: no limit)
    #[arg(long, value_name = "PERCENT", value_parser = |s: &str| nixos_container::limits::parse_cpu(s, false).map(LimitValue))]
    pub cpu_quota: Option<LimitValue<u32>>,
    /// CPU time as a number of CPUs, e.g. 1.5 (docker's form of --cpu-quota 150%)
    #[arg(long, value_name = "N", conflicts_with = "cpu_quota", value_parser = |s: &str| nixos_container::limits::parse_cpu(s, true).map(LimitValue))]
    pub cpus: Option<LimitValue<u32>>,
    /// Processes and threads the container may have, e.g. 512 (infinity: no limit)
    #[arg(long, value_name = "N", value_parser = |s: &str| nixos_container::limits::parse_pids(s).map(LimitValue))]
    pub pids_max: Option<LimitValue<u64>>,
}

impl LimitArgs {
    pub fn change(&self) -> nixos_container::limits::Change {
        nixos_container::limits::Change {
            memory_max: self.memory_max.map(|v| v.0),
            cpu_quota: self.cpu_quota.or(self.cpus).map(|v| v.0),
            pids_max: self.pids_max.map(|v| v.0),
        }
    }
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a host path, or NAME:PATH in a container (PATH/. copies a directory's contents)
    #[arg(value_name = "SRC", value_hint = clap::ValueHint::AnyPath)]
    pub src: OsString,
    /// Where to: a host path, or NAME:PATH (into it, if it is a directory)
    #[arg(value_name = "DST", value_hint = clap::ValueHint::AnyPath)]
    pub dst: OsString,
    /// Keep the numeric owners of the source (default: the guest's root when
    /// copying in, you when copying out)
    #[arg(short, long)]
    pub archive: bool,
}

#[derive(Debug, Args)]
pub struct SetLimitsArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// Nix flags passed through to the build, as nixpkgs' nixos-container
/// does (for this build only; not remembered).
#[derive(Debug, Args, Default)]
#[command(next_help_heading = "Nix options")]
pub struct NixArgs {
    /// Set a Nix option for the build: --option NAME VALUE (repeatable)
    #[arg(long = "option", value_names = ["NAME", "VALUE"], num_args = 2, action = clap::ArgAction::Append)]
    pub option: Vec<String>,
    /// How Nix shows the build's progress and logs
    #[arg(long, value_name = "FORMAT", value_parser = ["raw", "raw-with-logs", "internal-json", "bar", "bar-with-logs"])]
    pub log_format: Option<String>,
    /// Allow impure evaluation of a flake
    #[arg(long)]
    pub impure: bool,
    /// Update this input of the flake (repeatable)
    #[arg(long, value_name = "INPUT")]
    pub update_input: Vec<String>,
    /// Override an input of the flake: --override-input INPUT FLAKEREF (repeatable)
    #[arg(long, value_names = ["INPUT", "FLAKEREF"], num_args = 2, action = clap::ArgAction::Append)]
    pub override_input: Vec<String>,
    /// Do not write the flake's lock file
    #[arg(long)]
    pub no_write_lock_file: bool,
    /// Recreate the flake's lock file from scratch
    #[arg(long)]
    pub recreate_lock_file: bool,
    /// Commit changes to the flake's lock file
    #[arg(long)]
    pub commit_lock_file: bool,
    /// Do not look flakes up in the flake registries
    #[arg(long)]
    pub no_registries: bool,
    /// Do not change the flake's lock file (fail if it must change)
    #[arg(long)]
    pub no_update_lock_file: bool,
    /// Refuse to build a flake from a dirty Git tree
    #[arg(long)]
    pub no_allow_dirty: bool,
}

impl NixArgs {
    /// The flags for the library.
    pub fn flags(&self) -> nixos_container::profile::NixFlags {
        let pairs = |v: &[String]| v.chunks(2).map(|p| (p[0].clone(), p.get(1).cloned().unwrap_or_default())).collect();
        nixos_container::profile::NixFlags {
            options: pairs(&self.option),
            log_format: self.log_format.clone(),
            impure: self.impure,
            update_input: self.update_input.clone(),
            override_input: pairs(&self.override_input),
            no_write_lock_file: self.no_write_lock_file,
            recreate_lock_file: self.recreate_lock_file,
            commit_lock_file: self.commit_lock_file,
            no_registries: self.no_registries,
            no_update_lock_file: self.no_update_lock_file,
            no_allow_dirty: self.no_allow_dirty,
        }
    }
}

/// Where the system comes from, for create and update: a configuration
/// (`--config`/`--config-file`, built with `--nixos-path`), a flake, or a
/// built system. Given none, create builds the default configuration
/// (`--nixos-path` defaults to `<nixpkgs/nixos>` there) and update rebuilds
/// what the container has (`NewSource::Stored`).
#[derive(Debug, Args)]
pub struct SourceArgs {
    /// Build configuration.nix with this NixOS expression (remembered)
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::AnyPath)]
    pub nixos_path: Option<String>,

    /// Use an already built NixOS system instead of building one
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::DirPath, conflicts_with_all = ["config", "config_file", "flake"])]
    pub system_path: Option<PathBuf>,

    /// NixOS configuration as Nix attribute definitions (replaces any earlier one)
    #[arg(long, value_name = "STRING", conflicts_with_all = ["config_file", "flake"])]
    pub config: Option<String>,

    /// A NixOS configuration file (module): its content is read now and kept with the container (replaces any earlier configuration)
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath, conflicts_with = "flake")]
    pub config_file: Option<PathBuf>,

    /// Build nixosConfigurations.ATTR of a flake (ATTR defaults to 'container'; remembered)
    #[arg(long, value_name = "REF[#ATTR]")]
    pub flake: Option<String>,
}

impl SourceArgs {
    /// The source for the library: a built system, else a flake, else a
    /// configuration; `Stored` when no option says anything.
    pub fn source(&self) -> nixos_container::error::Result<nixos_container::update::NewSource> {
        use nixos_container::update::NewSource;
        if let Some(p) = &self.system_path {
            return Ok(NewSource::SystemPath(p.clone()));
        }
        if let Some(f) = &self.flake {
            return Ok(NewSource::Flake(nixos_container::profile::normalize_flake(f)?));
        }
        let user = match (&self.config, &self.config_file) {
            (Some(s), _) => Some(nixos_container::nixos_config::UserConfig::Inline(s.clone())),
            (None, Some(f)) => Some(nixos_container::nixos_config::UserConfig::file(f)?),
            (None, None) => None,
        };
        let nixos_path = self.nixos_path.as_deref().map(nixos_container::profile::normalize_nixos_path).transpose()?;
        if user.is_none() && nixos_path.is_none() {
            return Ok(NewSource::Stored);
        }
        Ok(NewSource::Config { user, nixos_path })
    }
}

/// Without a source option, update rebuilds from what create stored: the
/// flake (with its attr), else the container's configuration.nix.
#[derive(Debug, Args)]
// A --nixos-path beside a flake or a built system would be ignored; create
// accepts it (as nixpkgs' create does), update refuses it.
#[command(mut_arg("nixos_path", |a| a.conflicts_with_all(["system_path", "flake"])))]
pub struct UpdateArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,

    #[command(flatten)]
    pub source: SourceArgs,

    /// Select the generation before the current one instead of building
    #[arg(long, conflicts_with_all = ["nixos_path", "system_path", "config", "config_file", "flake"])]
    pub rollback: bool,

    /// Select generation N (see 'generations') instead of building
    #[arg(long, value_name = "N", conflicts_with_all = ["rollback", "nixos_path", "system_path", "config", "config_file", "flake"])]
    pub switch_generation: Option<u64>,

    /// Restart a running container whose nspawn or network settings changed
    /// since it started, instead of only saying that it needs a restart
    #[arg(long)]
    pub restart: bool,

    #[command(flatten)]
    pub nix: NixArgs,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The container's name (at a terminal, asked for when omitted)
    #[arg(add = ArgValueCompleter::new(complete_stopped))]
    pub name: Option<String>,
    /// Start every container
    #[arg(long, conflicts_with_all = ["name", "auto"])]
    pub all: bool,
    /// Start the containers created with --auto-start (AUTO_START=1), as at boot
    #[arg(long, conflicts_with = "name")]
    pub auto: bool,
    /// Seconds to wait for the container to be ready
    #[arg(long, value_name = "SECONDS", default_value = START_TIMEOUT, value_parser = parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The container's name (at a terminal, asked for when omitted)
    #[arg(add = ArgValueCompleter::new(complete_running))]
    pub name: Option<String>,
    /// Stop every running container
    #[arg(long, conflicts_with = "name")]
    pub all: bool,
    /// Seconds to wait for a clean halt before killing
    #[arg(long, value_name = "SECONDS", default_value = STOP_TIMEOUT, value_parser = parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// The container's name
    #[arg(add = ArgValueCompleter::new(complete_any))]
    pub name: String,
    /// Seconds to wait for a clean halt before killing
    #[arg(long, value_name = "SECONDS", default_value = STOP_TIMEOUT, value_parser = parse_seconds)]
    pub stop_timeout: Duration,
    /// Seconds to wait for the container to be ready
    #[arg(long, value_name = "SECONDS", default_value = START_TIMEOUT, value_parser = parse_seconds)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The container's name (at a terminal, asked for when omitted)
    #[arg(add = ArgValueCompleter::new(complete_running))]
    pub name: Option<String>,
    /// Run the command on a pty (default: when stdin and stdout are terminals)
    #[arg(short = 't', long = "tty", conflicts_with = "no_tty")]
    pub tty: bool,
    /// Never allocate a pty
    #[arg(short = 'T', long = "no-tty")]
    pub no_tty: bool,
    /// Set an environment variable for the command (repeatable)
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub env: Vec<OsString>,
    /// The directory to run the command in (default: the user's home)
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<OsString>,
    /// The user to run the command as (a name or uid; default: root)
    #[arg(long, value_name = "USER", add = ArgValueCompleter::new(complete_guest_user))]
    pub user: Option<String>,
    /// The command and its arguments, after NAME (as with nixpkgs, a `--`
    /// before them is optional; it keeps a command's own options apart)
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl Cli {
    /// Parses the program's arguments (see `parse_from_args`).
    pub fn parse_args() -> Result<Cli, clap::Error> {
        Cli::parse_from_args(std::env::args_os().collect())
    }

    /// Parses `raw` (argv[0] first). `run NAME CMD...` and `run NAME -- CMD...`
    /// both name the container first; `run -- CMD...` names none (chosen at
    /// a terminal), which clap alone cannot tell from `run NAME`: the `--`
    /// decides.
    pub fn parse_from_args(raw: Vec<OsString>) -> Result<Cli, clap::Error> {
        let mut cli = Cli::try_parse_from(&raw)?;
        if let Command::Run(r) = &mut cli.command
            && run_command_follows_dashes(&raw)
            && let Some(first) = r.name.take()
        {
            r.command.insert(0, first.into());
        }
        Ok(cli)
    }
}

/// Whether, in a `run` command line, `--` comes before the first positional
/// argument (so there is no NAME). Options that take a separate value are
/// read from the clap definition, so the scan follows it.
fn run_command_follows_dashes(raw: &[OsString]) -> bool {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let Some(run) = cmd.find_subcommand("run") else { return false };
    let takes_value = |a: &clap::Arg| !a.is_positional() && a.get_action().takes_values();
    let value_longs: Vec<&str> = run.get_arguments().filter(|a| takes_value(a)).filter_map(|a| a.get_long()).collect();
    let value_shorts: Vec<char> =
        run.get_arguments().filter(|a| takes_value(a)).filter_map(|a| a.get_short()).collect();
    let mut tokens = raw.iter().skip(1).map(|t| t.to_string_lossy());
    // Global flags (-v, -q) may come before the subcommand; none takes a value.
    match tokens.by_ref().find(|t| !t.starts_with('-')) {
        Some(sub) if sub == "run" || run.get_all_aliases().any(|a| a == sub) => {}
        _ => return false,
    }
    while let Some(t) = tokens.next() {
        if t == "--" {
            return true;
        }
        if let Some(long) = t.strip_prefix("--") {
            if !long.contains('=') && value_longs.contains(&long) {
                tokens.next();
            }
        } else if let Some(shorts) = t.strip_prefix('-').filter(|s| !s.is_empty()) {
            // In a cluster (-tv), a value-taking option takes the rest, or
            // the next token when it comes last.
            if let Some(i) = shorts.find(|c| value_shorts.contains(&c))
                && i + 1 == shorts.len()
            {
                tokens.next();
            }
        } else {
            return false;
        }
    }
    false
}

#[derive(Debug, Args)]
pub struct SuperviseArgs {
    pub name: String,
    #[arg(long)]
    pub timeout_ms: u64,
    #[arg(long)]
    pub netns: Option<PathBuf>,
}

/// Checks an `--env` value: NAME=VALUE, NAME without '=' and not empty.
pub fn parse_env(s: &str) -> Result<OsString, String> {
    match s.split_once('=') {
        Some((k, _)) if !k.is_empty() && !k.contains('\0') => Ok(OsString::from(s)),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

/// Parses a number of seconds (fractions allowed) into a Duration.
/// Seconds `start` and `restart` wait for the container to be ready (and
/// `update`, when it restarts one).
pub const START_TIMEOUT: &str = "60";
/// Seconds `stop` and `restart` wait for a clean halt (and `update`, when it
/// restarts one).
pub const STOP_TIMEOUT: &str = "90";

/// One of the defaults above, for callers without a flag.
pub fn default_timeout(default: &'static str) -> Duration {
    parse_seconds(default).expect("the timeout defaults are numbers (tested)")
}

pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("'{s}' is not a usable number of seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_timeout_defaults_are_numbers() {
        assert_eq!(default_timeout(START_TIMEOUT), Duration::from_secs(60));
        assert_eq!(default_timeout(STOP_TIMEOUT), Duration::from_secs(90));
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_help_carries_what_extra_container_looks_for() {
        assert!(after_help().contains(EXTRA_CONTAINER_MARKER));
        let conf_default = nixos_container::paths::default_of(nixos_container::paths::CONF_DIR_VAR).unwrap();
        assert_eq!(format!("\"{conf_default}\""), EXTRA_CONTAINER_MARKER);
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_seconds("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("soon").is_err());
    }

    #[test]
    fn nix_flags_are_taken_on_create_and_update() {
        let args = [
            "--option",
            "cores",
            "2",
            "--option",
            "sandbox",
            "false",
            "--impure",
            "--update-input",
            "nixpkgs",
            "--override-input",
            "nixpkgs",
            "/src/np",
            "--no-write-lock-file",
            "--recreate-lock-file",
            "--commit-lock-file",
        ];
        for cmd in ["create", "update"] {
            let cli =
                Cli::try_parse_from([&["nixos-container", cmd, "c", "--flake", "/f"], &args[..]].concat()).unwrap();
            let nix = match cli.command {
                Command::Create(a) => a.nix,
                Command::Update(a) => a.nix,
                other => panic!("{other:?}"),
            };
            let f = nix.flags();
            assert_eq!(f.options, [("cores".to_string(), "2".to_string()), ("sandbox".into(), "false".into())]);
            assert_eq!(f.override_input, [("nixpkgs".to_string(), "/src/np".to_string())]);
            assert_eq!(f.update_input, ["nixpkgs"]);
            assert!(f.impure && f.no_write_lock_file && f.recreate_lock_file && f.commit_lock_file);
        }
        assert!(Cli::try_parse_from(["nixos-container", "create", "c", "--option", "cores"]).is_err());
    }

    #[test]
    fn update_sources_exclude_each_other() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["nixos-container", "update", "c"], args].concat());
        assert!(parse(&[]).is_ok());
        assert!(parse(&["--config-file", "x.nix", "--nixos-path", "/n"]).is_ok());
        assert!(parse(&["--flake", "/f#a", "--restart"]).is_ok());
        for bad in [
            &["--flake", "/f", "--config", "{}"][..],
            &["--system-path", "/s", "--config-file", "x"],
            &["--rollback", "--flake", "/f"],
            &["--rollback", "--nixos-path", "/n"],
            &["--rollback", "--switch-generation", "1"],
            &["--switch-generation", "1", "--config", "{}"],
            &["--flake", "/f", "--nixos-path", "/n"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn create_and_update_differ_only_where_said() {
        let source = |args: &[&str]| match Cli::try_parse_from([&["nixos-container"], args].concat()).unwrap().command {
            Command::Create(a) => a.source,
            Command::Update(a) => a.source,
            other => panic!("{other:?}"),
        };
        // create builds <nixpkgs/nixos> unless told; update keeps what it has.
        let created = source(&["create", "c"]);
        assert_eq!(created.nixos_path.as_deref(), Some(nixos_container::profile::DEFAULT_NIXOS_PATH));
        assert!(matches!(created.source().unwrap(), nixos_container::update::NewSource::Config { user: None, .. }));
        assert!(matches!(source(&["update", "c"]).source().unwrap(), nixos_container::update::NewSource::Stored));
        // create takes (and ignores) --nixos-path beside a flake, as nixpkgs does.
        assert!(matches!(
            source(&["create", "c", "--flake", "github:o/r#web", "--nixos-path", "/n"]).source().unwrap(),
            nixos_container::update::NewSource::Flake(_)
        ));
        assert!(
            Cli::try_parse_from(["nixos-container", "update", "c", "--flake", "/f", "--nixos-path", "/n"]).is_err()
        );
    }

    #[test]
    fn run_options() {
        let cli = Cli::try_parse_from([
            "nixos-container",
            "run",
            "c",
            "-t",
            "--env",
            "A=b=c",
            "--cwd",
            "/tmp",
            "--user",
            "alice",
            "--",
            "ls",
        ])
        .unwrap();
        match cli.command {
            Command::Run(r) => {
                assert!(r.tty && !r.no_tty);
                assert_eq!(r.env, ["A=b=c"]);
                assert_eq!(r.cwd.as_deref(), Some(std::ffi::OsStr::new("/tmp")));
                assert_eq!(r.user.as_deref(), Some("alice"));
            }
            other => panic!("{other:?}"),
        }
        assert!(Cli::try_parse_from(["nixos-container", "run", "c", "-t", "-T", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["nixos-container", "run", "c", "--env", "=x", "--", "ls"]).is_err());
        assert!(Cli::try_parse_from(["nixos-container", "run", "c", "--env", "novalue", "--", "ls"]).is_err());
    }

    fn run_of(args: &[&str]) -> (Option<String>, Vec<String>) {
        let raw: Vec<OsString> = ["nixos-container"].iter().chain(args).map(OsString::from).collect();
        match Cli::parse_from_args(raw).unwrap().command {
            Command::Run(r) => (r.name, r.command.iter().map(|c| c.to_string_lossy().into_owned()).collect()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn run_takes_the_command_with_or_without_dashes() {
        let named = |n: &str, c: &[&str]| (Some(n.to_string()), c.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        // As nixpkgs: no `--` needed; the command's own options stay its own.
        assert_eq!(run_of(&["run", "c", "ls", "-l", "--user", "x"]), named("c", &["ls", "-l", "--user", "x"]));
        assert_eq!(run_of(&["run", "c", "grep", "--", "-x"]), named("c", &["grep", "--", "-x"]));
        assert_eq!(run_of(&["run", "c", "--", "ls", "-l"]), named("c", &["ls", "-l"]));
        // Options before NAME, and between NAME and the command.
        assert_eq!(run_of(&["-v", "run", "-t", "--user", "alice", "c", "id"]), named("c", &["id"]));
        assert_eq!(run_of(&["run", "c", "--env", "A=1", "-T", "env"]), named("c", &["env"]));
        assert_eq!(run_of(&["run", "--user=alice", "c", "id"]), named("c", &["id"]));
        // Without NAME (chosen at a terminal): `--` comes first.
        assert_eq!(run_of(&["run", "--", "true"]), (None, vec!["true".to_string()]));
        assert_eq!(run_of(&["exec", "--", "true"]), (None, vec!["true".to_string()]));
        assert_eq!(run_of(&["exec", "c", "true"]), named("c", &["true"]));
        assert_eq!(run_of(&["run", "-t", "--user", "root", "--", "sh", "-i"]), (None, vec!["sh".into(), "-i".into()]));
        assert_eq!(run_of(&["-q", "run", "--cwd", "/", "--", "ls", "-l"]), (None, vec!["ls".into(), "-l".into()]));
        // An unknown option before the command is still refused.
        assert!(
            Cli::parse_from_args(["nixos-container", "run", "c", "--bogus", "ls"].map(OsString::from).to_vec())
                .is_err()
        );
    }

    #[test]
    fn run_takes_everything_after_the_double_dash() {
        let cli = Cli::try_parse_from(["nixos-container", "run", "c", "--", "ls", "-l", "--", "x"]).unwrap();
        match cli.command {
            Command::Run(r) => assert_eq!(r.command, ["ls", "-l", "--", "x"]),
            other => panic!("{other:?}"),
        }
    }
}

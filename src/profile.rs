//! The container's Nix profile, `PROFILES/NAME/system`, and the builds that
//! fill it. Every build goes through `nix-env --set`, so a failed build
//! leaves the profile's current generation selected.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::os::unix::fs::DirBuilderExt;

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::paths::ContainerPaths;

/// Makes the container's profile and GC-roots directories the host's own:
/// mode 0700, in parents of mode 0700, so that no local user can reach what
/// is in them (a guest could once leave set-uid files there). The guest
/// sees them read-only (`nspawn`); the empty `per-user` directories keep a
/// NixOS guest's activation (`install -d` of them) from trying to write.
pub fn prepare_dirs(paths: &ContainerPaths) -> Result<()> {
    for dir in [&paths.profile_dir, &paths.gcroots] {
        if let Some(parent) = dir.parent() {
            fsutil::create_dir(parent, 0o700)?;
        }
        fsutil::create_dir(dir, 0o700)?;
        let per_user = dir.join("per-user");
        match std::fs::DirBuilder::new().mode(0o755).create(&per_user) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).context(|| format!("creating {}", per_user.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A profile's lock file as Nix opens it (`PROFILE.lock`, with O_CREAT, so
/// following a symlink): anything there that is not a plain file (a guest
/// of an older version could write this directory) is removed first.
fn clear_stray_lock(profile: &Path) -> Result<()> {
    let mut lock = profile.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    if let Ok(m) = std::fs::symlink_metadata(&lock)
        && !m.file_type().is_file()
    {
        tracing::warn!("removing {}: not a lock file Nix made", lock.display());
        std::fs::remove_file(&lock)
            .or_else(|_| std::fs::remove_dir(&lock))
            .context(|| format!("removing {}", lock.display()))?;
    }
    Ok(())
}

/// What a system is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemSource {
    /// `nix-env -f NIXOS_PATH -I nixos-config=CONFIG --set -A system`.
    NixosConfig { nixos_path: String, config: PathBuf },
    /// A system that is already built (`--system-path`).
    Path(PathBuf),
    /// `REF#nixosConfigurations.ATTR.config.system.build.toplevel`.
    Flake { reference: String, attr: String },
}

impl SystemSource {
    /// From a conf's FLAKE value, `REF[#ATTR]`.
    pub fn flake(flake: &str) -> SystemSource {
        let (reference, attr) = split_flake(flake);
        SystemSource::Flake { reference: reference.into(), attr: attr.into() }
    }
}

/// How a build shows Nix's own output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildOutput {
    /// Pass Nix's progress through to our stderr (a person is watching).
    Show,
    /// Keep it, and show only the part that explains a failure.
    Capture,
}

pub const DEFAULT_NIXOS_PATH: &str = "<nixpkgs/nixos>";

/// Nix flags passed through to the build, as nixpkgs' nixos-container does.
/// They are given for one build and not stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NixFlags {
    /// `--option NAME VALUE`, for every kind of build.
    pub options: Vec<(String, String)>,
    /// `--log-format FORMAT`, for every kind of build.
    pub log_format: Option<String>,
    /// `--impure`: for flakes (a `nix-env` evaluation is impure anyway).
    pub impure: bool,
    /// The flake-only flags: `--update-input`, `--override-input`,
    /// `--no-write-lock-file`, `--recreate-lock-file`, `--commit-lock-file`,
    /// `--no-registries`, `--no-update-lock-file`, `--no-allow-dirty`.
    pub update_input: Vec<String>,
    pub override_input: Vec<(String, String)>,
    pub no_write_lock_file: bool,
    pub recreate_lock_file: bool,
    pub commit_lock_file: bool,
    pub no_registries: bool,
    pub no_update_lock_file: bool,
    pub no_allow_dirty: bool,
}

impl NixFlags {
    /// The flags every kind of build takes.
    fn options(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.options.iter().flat_map(|(n, v)| ["--option".to_string(), n.clone(), v.clone()]).collect();
        if let Some(format) = &self.log_format {
            out.extend(["--log-format".to_string(), format.clone()]);
        }
        out
    }

    fn for_flake(&self) -> Vec<String> {
        let mut out = self.options();
        let mut flag = |on: bool, f: &str| {
            if on {
                out.push(f.to_string());
            }
        };
        flag(self.impure, "--impure");
        flag(self.no_write_lock_file, "--no-write-lock-file");
        flag(self.recreate_lock_file, "--recreate-lock-file");
        flag(self.commit_lock_file, "--commit-lock-file");
        flag(self.no_registries, "--no-registries");
        flag(self.no_update_lock_file, "--no-update-lock-file");
        flag(self.no_allow_dirty, "--no-allow-dirty");
        for i in &self.update_input {
            out.extend(["--update-input".to_string(), i.clone()]);
        }
        for (i, f) in &self.override_input {
            out.extend(["--override-input".to_string(), i.clone(), f.clone()]);
        }
        out
    }

    /// The first flag given that only a flake build can use.
    pub fn flake_only(&self) -> Option<&'static str> {
        [
            (!self.update_input.is_empty(), "--update-input"),
            (!self.override_input.is_empty(), "--override-input"),
            (self.no_write_lock_file, "--no-write-lock-file"),
            (self.recreate_lock_file, "--recreate-lock-file"),
            (self.commit_lock_file, "--commit-lock-file"),
            (self.no_registries, "--no-registries"),
            (self.no_update_lock_file, "--no-update-lock-file"),
            (self.no_allow_dirty, "--no-allow-dirty"),
        ]
        .into_iter()
        .find_map(|(given, name)| given.then_some(name))
    }
}

/// `--nixos-path` as it should be stored: `<...>` search paths unchanged,
/// file paths made absolute so later updates find them from anywhere.
pub fn normalize_nixos_path(arg: &str) -> Result<String> {
    no_control_characters("NixOS path", arg)?;
    if arg.starts_with('<') && arg.ends_with('>') {
        return Ok(arg.to_string());
    }
    std::fs::canonicalize(arg).map(|p| p.to_string_lossy().into_owned()).map_err(|e| Error::InvalidValue {
        what: "NixOS path",
        value: arg.to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "no such file or directory".into()
        } else {
            e.to_string()
        },
    })
}

/// `--flake REF[#ATTR]` as it should be stored: a local path (`/...`,
/// `./...`, `.`) made absolute, so later updates find it from anywhere;
/// other references (`path:`, `git+file:`, `github:` ...) unchanged.
pub fn normalize_flake(arg: &str) -> Result<String> {
    no_control_characters("flake", arg)?;
    let (reference, attr) = match arg.split_once('#') {
        Some((r, a)) => (r, Some(a)),
        None => (arg, None),
    };
    let local = reference.starts_with('/') || reference.starts_with('.');
    if !local {
        if reference.is_empty() {
            return Err(Error::InvalidValue {
                what: "flake",
                value: arg.to_string(),
                reason: "expected REF[#ATTR], e.g. /srv/flake#web".into(),
            });
        }
        return Ok(arg.to_string());
    }
    let abs = std::fs::canonicalize(reference).map_err(|e| Error::InvalidValue {
        what: "flake",
        value: arg.to_string(),
        reason: if e.kind() == std::io::ErrorKind::NotFound { "no such directory".into() } else { e.to_string() },
    })?;
    let mut out = abs.to_string_lossy().into_owned();
    if let Some(a) = attr {
        out.push('#');
        out.push_str(a);
    }
    Ok(out)
}

/// Both values are kept in the conf, which has no room for them.
fn no_control_characters(what: &'static str, arg: &str) -> Result<()> {
    match arg.chars().find(|c| c.is_control()) {
        Some(c) => Err(Error::InvalidValue {
            what,
            value: arg.to_string(),
            reason: format!("it contains the control character {c:?}"),
        }),
        None => Ok(()),
    }
}

fn missing(program: &'static str) -> Error {
    Error::MissingProgram { program, hint: "install Nix (on Debian: apt-get install nix-bin) or put it on PATH" }
}

/// The command line that builds `source` for `profile`: for a system path
/// or a NixOS configuration it also selects it (`nix-env --set`); a flake
/// is built by `nix build`, whose result is then selected as a system path.
///
/// Every one runs with `--option sandbox true`: builds for a container run
/// in Nix's sandbox whatever nix.conf says (a nix.conf with
/// `sandbox = false` is overridden; a host where Nix cannot sandbox cannot
/// build containers, see SECURITY.md).
pub fn command(profile: &Path, source: &SystemSource, flags: &NixFlags) -> Vec<String> {
    let mut argv = unsandboxed_command(profile, source, flags);
    // After the anchor's own words (what -v shows starts as the anchor's
    // command) and after the user's --option flags, which cannot turn it
    // off; before a flake's `-- INSTALLABLE`, which stays last.
    let at = if matches!(source, SystemSource::Flake { .. }) { argv.len() - 2 } else { argv.len() };
    argv.splice(at..at, SANDBOX.iter().map(|s| s.to_string()));
    argv
}

/// The options that keep a build in Nix's sandbox.
pub const SANDBOX: [&str; 3] = ["--option", "sandbox", "true"];

fn unsandboxed_command(profile: &Path, source: &SystemSource, flags: &NixFlags) -> Vec<String> {
    let p = profile.to_string_lossy().into_owned();
    let mut argv = match source {
        SystemSource::NixosConfig { nixos_path, config } => vec![
            "nix-env".into(),
            "-p".into(),
            p,
            "-I".into(),
            format!("nixos-config={}", config.display()),
            "-f".into(),
            nixos_path.clone(),
            "--set".into(),
            "-A".into(),
            "system".into(),
        ],
        SystemSource::Path(path) => {
            vec!["nix-env".into(), "-p".into(), p, "--set".into(), path.to_string_lossy().into_owned()]
        }
        SystemSource::Flake { reference, attr } => {
            let mut argv: Vec<String> = vec![
                "nix".into(),
                "--extra-experimental-features".into(),
                "nix-command flakes".into(),
                "build".into(),
                "--no-link".into(),
                // Nix 2.8 has no --print-out-paths yet.
                "--json".into(),
            ];
            argv.extend(flags.for_flake());
            // After `--`, a reference starting with '-' is not an option.
            argv.push("--".into());
            argv.push(format!("{reference}#nixosConfigurations.\"{attr}\".config.system.build.toplevel"));
            return argv;
        }
    };
    argv.extend(flags.options());
    argv
}

/// Builds the system and makes it the profile's new generation. Returns the
/// system's store path. A build that fails, or whose result is not a NixOS
/// system, leaves the profile's current generation selected.
pub fn build(profile: &Path, source: &SystemSource, output: BuildOutput, flags: &NixFlags) -> Result<PathBuf> {
    if let (Some(flag), false) = (flags.flake_only(), matches!(source, SystemSource::Flake { .. })) {
        return Err(flake_only_error(flag));
    }
    if let Some(dir) = profile.parent() {
        std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
    }
    clear_stray_lock(profile)?;
    match source {
        SystemSource::Flake { .. } => {
            let argv = &command(profile, source, flags);
            let out = run(argv, output)?;
            let path = built_out_path(&out)
                .ok_or_else(|| Error::Build(format!("nix build printed no store path (got '{}')", out.trim())))?;
            check_system(Path::new(&path))?;
            let set = SystemSource::Path(PathBuf::from(&path));
            run(&command(profile, &set, &NixFlags::default()), output)?;
            Ok(PathBuf::from(path))
        }
        SystemSource::Path(path) => {
            check_system(path)?;
            run(&command(profile, source, flags), output)?;
            current_system(profile)
        }
        SystemSource::NixosConfig { .. } => {
            // nix-env builds and selects in one step (the anchor's command),
            // so a result that is no system is taken back afterwards.
            let before = current_generation(profile)?;
            run(&command(profile, source, flags), output)?;
            let system = current_system(profile)?;
            if let Err(e) = check_system(&system) {
                let after = current_generation(profile)?;
                if after != before {
                    undo_generation(profile, before, after)?;
                }
                return Err(e);
            }
            Ok(system)
        }
    }
}

pub fn flake_only_error(flag: &str) -> Error {
    Error::Usage(format!("{flag} applies to flake builds only (--flake, or a container created from one)"))
}

/// The release of the NixOS at `nixos_path` (`config.system.nixos.release`,
/// as nixos-generate-config reads it), for a new container's
/// `system.stateVersion`. Costs one evaluation of the module system.
pub fn nixos_release(nixos_path: &str, flags: &NixFlags) -> Result<String> {
    let mut argv: Vec<String> = ["nix-instantiate", "--eval", "--strict"].map(String::from).to_vec();
    argv.extend(flags.options());
    argv.extend([nixos_path, "--arg", "configuration", "{ }", "-A", "config.system.nixos.release"].map(String::from));
    let out = run(&argv, BuildOutput::Capture)?;
    parse_release(&out).ok_or_else(|| {
        Error::Build(format!("{nixos_path} gave no usable config.system.nixos.release (got '{}')", out.trim()))
    })
}

/// A release as Nix prints it (`"20.09"`), checked to be a version: it is
/// written into configuration.nix.
pub fn parse_release(printed: &str) -> Option<String> {
    let r = printed.trim().strip_prefix('"')?.strip_suffix('"')?;
    is_release(r).then(|| r.to_string())
}

/// Splits `REF#ATTR`; the attribute defaults to `container` as in the anchor.
pub fn split_flake(flake: &str) -> (&str, &str) {
    match flake.rsplit_once('#') {
        Some((r, attr)) if !attr.is_empty() => (r, attr),
        Some((r, _)) => (r, "container"),
        None => (flake, "container"),
    }
}

/// A NixOS release as stateVersion takes it: `20.09`, `20.09pre-git`.
pub fn is_release(r: &str) -> bool {
    r.starts_with(|c: char| c.is_ascii_digit())
        && r.len() <= 32
        && r.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The `out` path in `nix build --json`'s answer.
pub fn built_out_path(json: &str) -> Option<String> {
    let built: serde_json::Value = serde_json::from_str(json.trim()).ok()?;
    let out = built.get(0)?.get("outputs")?.get("out")?.as_str()?;
    out.starts_with('/').then(|| out.to_string())
}

/// A NixOS system has an `init` to boot.
fn check_system(system: &Path) -> Result<()> {
    if system.join("init").exists() {
        return Ok(());
    }
    Err(Error::Build(format!("{} has no 'init': it is not a NixOS system", system.display())))
}

/// Selects `before` again (or no generation) and deletes `bad`.
fn undo_generation(profile: &Path, before: Option<u64>, bad: Option<u64>) -> Result<()> {
    match before {
        Some(n) => switch_generation(profile, n)?,
        None => {
            let _ = std::fs::remove_file(profile);
        }
    }
    if let Some(n) = bad {
        let _ = std::fs::remove_file(generation_link(profile, n));
    }
    Ok(())
}

/// The store path the profile points to now.
pub fn current_system(profile: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(profile).context(|| format!("resolving {}", profile.display()))
}

/// One generation of a profile: its `NAME-N-link`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub number: u64,
    /// When the link was made, in seconds since the epoch (what
    /// `nix-env --list-generations` shows).
    pub created: i64,
    /// The store path it selects.
    pub system: PathBuf,
    pub current: bool,
}

fn generation_link(profile: &Path, n: u64) -> PathBuf {
    let name = profile.file_name().unwrap_or_default().to_string_lossy();
    profile.with_file_name(format!("{name}-{n}-link"))
}

/// The number in a generation link's name `PROFILE-N-link`.
pub fn generation_number(profile_name: &str, link_name: &str) -> Option<u64> {
    let n = link_name.strip_prefix(profile_name)?.strip_prefix('-')?.strip_suffix("-link")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The generation the profile selects, if any.
pub fn current_generation(profile: &Path) -> Result<Option<u64>> {
    let target = match std::fs::read_link(profile) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading {}", profile.display())),
    };
    let name = profile.file_name().unwrap_or_default().to_string_lossy();
    let link = target.file_name().unwrap_or_default().to_string_lossy();
    Ok(generation_number(&name, &link))
}

/// The profile's generations, oldest first, read from its links (the same
/// data `nix-env --list-generations` reads).
pub fn generations(profile: &Path) -> Result<Vec<Generation>> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = profile.parent() else { return Ok(Vec::new()) };
    let name = profile.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let current = current_generation(profile)?;
    let mut gens = Vec::new();
    for e in crate::fsutil::read_dir_or_empty(dir)? {
        let Some(number) = generation_number(&name, &e.file_name().to_string_lossy()) else { continue };
        let Ok(system) = std::fs::read_link(e.path()) else { continue };
        let created = std::fs::symlink_metadata(e.path()).map(|m| m.mtime()).unwrap_or(0);
        gens.push(Generation { number, created, system, current: current == Some(number) });
    }
    gens.sort_by_key(|g| g.number);
    Ok(gens)
}

/// The generation a rollback selects: the newest one older than the current.
pub fn previous_generation(gens: &[Generation]) -> Option<&Generation> {
    let current = gens.iter().find(|g| g.current)?.number;
    gens.iter().filter(|g| g.number < current).max_by_key(|g| g.number)
}

/// Selects generation `n` (`nix-env --switch-generation`).
pub fn switch_generation(profile: &Path, n: u64) -> Result<()> {
    clear_stray_lock(profile)?;
    let argv: Vec<String> = vec![
        "nix-env".into(),
        "-p".into(),
        profile.to_string_lossy().into_owned(),
        "--switch-generation".into(),
        n.to_string(),
    ];
    run(&argv, BuildOutput::Capture).map(|_| ())
}

/// Runs a Nix command; returns its stdout. On failure the error carries what
/// Nix said, so the user sees the evaluation's message, not just "exit 1".
fn run(argv: &[String], output: BuildOutput) -> Result<String> {
    tracing::info!("running {}", shell_words(argv));
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_remove("NIXOS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => missing(match argv[0].as_str() {
                "nix" => "nix",
                "nix-instantiate" => "nix-instantiate",
                _ => "nix-env",
            }),
            _ => Error::Io { context: format!("running {}", argv[0]), source: e },
        })?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stdout), &mut s);
        s
    });
    let mut said = Vec::new();
    for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        // Nix suggests a flag of its own that our commands do not take.
        if is_show_trace_hint(&line) {
            continue;
        }
        if output == BuildOutput::Show {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        said.push(line);
    }
    let status = child.wait().context(|| format!("waiting for {}", argv[0]))?;
    let stdout = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(stdout);
    }
    // What Nix said is on the screen already: not a second time.
    if output == BuildOutput::Show && said.iter().any(|l| l.trim_start().starts_with("error:")) {
        return Err(Error::Build(format!("{} failed ({status}); its error is above", argv[0])));
    }
    Err(Error::Build(explain_failure(&argv[0], &said, status)))
}

/// Nix's `(use '--show-trace' to show detailed location information)`.
fn is_show_trace_hint(line: &str) -> bool {
    let l = line.trim();
    l.starts_with("(use '--show-trace'") || l.starts_with("(use --show-trace")
}

/// Picks the lines of Nix's output that explain a failure: from the first
/// `error:` on (the evaluation's message), else the last few lines.
pub fn explain_failure(program: &str, said: &[String], status: std::process::ExitStatus) -> String {
    let useful: Vec<&str> =
        said.iter().map(|l| l.trim_end()).filter(|l| !l.is_empty() && !is_show_trace_hint(l)).collect();
    let start =
        useful.iter().position(|l| l.trim_start().starts_with("error:")).unwrap_or(useful.len().saturating_sub(8));
    let mut msg: Vec<String> = useful[start..].iter().map(|l| l.to_string()).collect();
    msg.truncate(20);
    if msg.is_empty() {
        return format!("{program} failed ({status}) without saying why");
    }
    // Legacy commands print a failed builder's log before the error; quote
    // its end under the error, as `nix build` does.
    let log = builder_log(&useful[..start], &msg[0]);
    if !log.is_empty() {
        let quoted = log.iter().map(|l| format!("> {l}"));
        msg.splice(1..1, std::iter::once(format!("last {} log lines:", log.len())).chain(quoted));
    }
    format!("build failed: {}", msg.join("\n"))
}

/// The last lines a failed builder printed: those after its
/// `building '<drv>'...` line, when `error` is `error: builder for '<drv>' failed ...`.
fn builder_log<'a>(before: &[&'a str], error: &str) -> Vec<&'a str> {
    let Some(drv) = error.trim_start().strip_prefix("error: builder for '").and_then(|r| r.split('\'').next()) else {
        return Vec::new();
    };
    let building = format!("building '{drv}'");
    let Some(at) = before.iter().rposition(|l| l.starts_with(&building)) else {
        return Vec::new();
    };
    let log = &before[at + 1..];
    log[log.len().saturating_sub(10)..].to_vec()
}

fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if a.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:<>@".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_dirs_are_private_and_a_stray_lock_goes() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let paths = crate::paths::Paths::under(base.path()).container("c1");
        std::fs::create_dir_all(&paths.gcroots).unwrap();
        std::fs::set_permissions(&paths.gcroots, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare_dirs(&paths).unwrap();
        for d in [&paths.profile_dir, &paths.gcroots, &base.path().join("profiles"), &base.path().join("gcroots")] {
            assert_eq!(std::fs::metadata(d).unwrap().permissions().mode() & 0o7777, 0o700, "{}", d.display());
        }
        assert!(paths.profile_dir.join("per-user").is_dir() && paths.gcroots.join("per-user").is_dir());
        // A guest of an older version left the lock as a symlink to a host path.
        let target = base.path().join("host-file");
        std::os::unix::fs::symlink(&target, paths.profile_dir.join("system.lock")).unwrap();
        clear_stray_lock(&paths.system_profile()).unwrap();
        assert!(paths.profile_dir.join("system.lock").symlink_metadata().is_err());
        assert!(!target.exists());
        // Nix's own lock file stays.
        std::fs::write(paths.profile_dir.join("system.lock"), "").unwrap();
        clear_stray_lock(&paths.system_profile()).unwrap();
        assert!(paths.profile_dir.join("system.lock").is_file());
    }
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn nixos_config_build_is_the_anchors_command_line() {
        let src = SystemSource::NixosConfig {
            nixos_path: "<nixpkgs/nixos>".into(),
            config: "/etc/nixos-containers/foo/configuration.nix".into(),
        };
        let cmd = command(Path::new("/nix/var/nix/profiles/per-container/foo/system"), &src, &NixFlags::default());
        assert_eq!(
            shell_words(&cmd),
            "nix-env -p /nix/var/nix/profiles/per-container/foo/system -I nixos-config=/etc/nixos-containers/foo/configuration.nix -f <nixpkgs/nixos> --set -A system --option sandbox true"
        );
        // Every build is sandboxed.
        let none = NixFlags::default();
        let path = command(Path::new("/p/system"), &SystemSource::Path("/nix/store/x".into()), &none);
        assert_eq!(path[path.len() - 3..], SANDBOX, "{path:?}");
        let flake = command(Path::new("/p/system"), &SystemSource::flake("/f#web"), &none);
        assert_eq!(flake[flake.len() - 5..flake.len() - 2], SANDBOX, "{flake:?}");
    }

    #[test]
    fn flake_build_keeps_the_attr() {
        let src = SystemSource::Flake { reference: "/src/f".into(), attr: "web".into() };
        let cmd = command(Path::new("/p/system"), &src, &NixFlags::default());
        assert_eq!(cmd.last().unwrap(), "/src/f#nixosConfigurations.\"web\".config.system.build.toplevel");
    }

    /// The user's flags come before the sandbox option: Nix takes the last
    /// value, so `--option sandbox false` cannot turn the sandbox off.
    #[test]
    fn nix_flags_pass_through_as_nixpkgs_does() {
        let flags = NixFlags {
            options: vec![("cores".into(), "2".into()), ("sandbox".into(), "false".into())],
            log_format: Some("bar-with-logs".into()),
            impure: true,
            update_input: vec!["nixpkgs".into()],
            override_input: vec![("nixpkgs".into(), "/src/nixpkgs".into())],
            no_write_lock_file: true,
            recreate_lock_file: true,
            commit_lock_file: true,
            no_registries: true,
            no_update_lock_file: true,
            no_allow_dirty: true,
        };
        let flake = SystemSource::Flake { reference: "/src/f".into(), attr: "web".into() };
        assert_eq!(
            shell_words(&command(Path::new("/p/system"), &flake, &flags)),
            "nix --extra-experimental-features 'nix-command flakes' build --no-link --json --option cores 2 \
             --option sandbox false --log-format bar-with-logs --impure --no-write-lock-file --recreate-lock-file \
             --commit-lock-file --no-registries --no-update-lock-file --no-allow-dirty --update-input nixpkgs --override-input nixpkgs /src/nixpkgs --option sandbox true -- \
             '/src/f#nixosConfigurations.\"web\".config.system.build.toplevel'"
        );
        let config = SystemSource::NixosConfig { nixos_path: "<nixpkgs/nixos>".into(), config: "/c.nix".into() };
        let nix_env = NixFlags {
            options: flags.options.clone(),
            log_format: flags.log_format.clone(),
            impure: true,
            ..NixFlags::default()
        };
        assert_eq!(
            shell_words(&command(Path::new("/p/system"), &config, &nix_env)),
            "nix-env -p /p/system -I nixos-config=/c.nix -f <nixpkgs/nixos> --set -A system --option cores 2 --option sandbox false --log-format bar-with-logs --option sandbox true"
        );
        assert_eq!(nix_env.flake_only(), None);
        for only in ["--no-registries", "--no-update-lock-file", "--no-allow-dirty"] {
            let one = NixFlags {
                no_registries: only == "--no-registries",
                no_update_lock_file: only == "--no-update-lock-file",
                no_allow_dirty: only == "--no-allow-dirty",
                ..NixFlags::default()
            };
            assert_eq!(one.flake_only(), Some(only));
        }
        assert_eq!(flags.flake_only(), Some("--update-input"));
        let err = build(Path::new("/nonexistent/p/system"), &config, BuildOutput::Capture, &flags).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
        assert!(err.to_string().contains("--update-input applies to flake builds only"), "{err}");
    }

    #[test]
    fn releases_are_checked_before_they_go_into_a_configuration() {
        assert_eq!(parse_release("\"20.09\"\n").as_deref(), Some("20.09"));
        assert_eq!(parse_release("\"20.09pre-git\"").as_deref(), Some("20.09pre-git"));
        for bad in ["20.09", "\"\"", "\"x\"", "\"1\"; evil = \"\"", "\"2${x}\""] {
            assert_eq!(parse_release(bad), None, "{bad}");
        }
    }

    #[test]
    fn nix_builds_json_answer_names_the_output() {
        let json = r#"[{"drvPath":"/nix/store/a.drv","outputs":{"out":"/nix/store/b-system"}}]"#;
        assert_eq!(built_out_path(json).as_deref(), Some("/nix/store/b-system"));
        assert_eq!(built_out_path("[]"), None);
        assert_eq!(built_out_path("not json"), None);
    }

    #[test]
    fn local_flakes_are_made_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let abs = std::fs::canonicalize(dir.path()).unwrap();
        let rel = format!("{}/./", abs.display());
        assert_eq!(normalize_flake(&format!("{rel}#web")).unwrap(), format!("{}#web", abs.display()));
        assert_eq!(normalize_flake(&rel).unwrap(), abs.display().to_string());
        assert_eq!(normalize_flake("github:o/r#x").unwrap(), "github:o/r#x");
        assert_eq!(normalize_flake("path:/srv/f").unwrap(), "path:/srv/f");
        let err = normalize_flake("/nonexistent/flake#x").unwrap_err().to_string();
        assert_eq!(err, "invalid flake '/nonexistent/flake#x': no such directory");
        assert!(normalize_flake("#x").is_err());
    }

    #[test]
    fn generation_links_are_recognised() {
        assert_eq!(generation_number("system", "system-12-link"), Some(12));
        assert_eq!(generation_number("system", "system-link"), None);
        assert_eq!(generation_number("system", "system-1x-link"), None);
        assert_eq!(generation_number("system", "other-1-link"), None);
        assert_eq!(generation_number("system", "system"), None);
    }

    #[test]
    fn generations_are_read_from_the_links() {
        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("system");
        assert_eq!(generations(&profile).unwrap(), vec![]);
        assert_eq!(current_generation(&profile).unwrap(), None);
        for n in [1, 2, 10] {
            std::os::unix::fs::symlink(format!("/nix/store/s{n}"), dir.path().join(format!("system-{n}-link")))
                .unwrap();
        }
        std::os::unix::fs::symlink("system-2-link", &profile).unwrap();
        std::fs::write(dir.path().join("system-x-link"), "").unwrap();
        let gens = generations(&profile).unwrap();
        let summary: Vec<(u64, String, bool)> =
            gens.iter().map(|g| (g.number, g.system.display().to_string(), g.current)).collect();
        assert_eq!(
            summary,
            vec![
                (1, "/nix/store/s1".to_string(), false),
                (2, "/nix/store/s2".to_string(), true),
                (10, "/nix/store/s10".to_string(), false),
            ]
        );
        assert!(gens[0].created > 0);
        assert_eq!(previous_generation(&gens).map(|g| g.number), Some(1));
        assert_eq!(previous_generation(&gens[..1]), None);
    }

    #[test]
    fn failures_quote_the_evaluation_error() {
        let said: Vec<String> = [
            "building '/nix/store/x.drv'...",
            "error: Failed assertions:",
            "- the answer must be 42",
            "(use '--show-trace' to show detailed location information)",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let msg = explain_failure("nix-env", &said, std::process::ExitStatus::from_raw(256));
        assert_eq!(msg, "build failed: error: Failed assertions:\n- the answer must be 42");
        let msg = explain_failure("nix-env", &[], std::process::ExitStatus::from_raw(256));
        assert!(msg.contains("without saying why"));
    }

    #[test]
    fn builder_failures_quote_the_builders_log() {
        let said: Vec<String> = [
            "these 2 derivations will be built:",
            "building '/nix/store/a-boom.drv'...",
            "boom-from-builder",
            "line2",
            "error: builder for '/nix/store/a-boom.drv' failed with exit code 1",
            "error: 1 dependencies of derivation '/nix/store/b-etc.drv' failed to build",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let msg = explain_failure("nix-env", &said, std::process::ExitStatus::from_raw(256));
        assert_eq!(
            msg,
            "build failed: error: builder for '/nix/store/a-boom.drv' failed with exit code 1\n\
             last 2 log lines:\n> boom-from-builder\n> line2\n\
             error: 1 dependencies of derivation '/nix/store/b-etc.drv' failed to build"
        );
    }

    #[test]
    fn flake_attr_defaults_to_container() {
        assert_eq!(split_flake("/src/f"), ("/src/f", "container"));
        assert_eq!(split_flake("/src/f#web"), ("/src/f", "web"));
        assert_eq!(split_flake("github:a/b#"), ("github:a/b", "container"));
    }
}

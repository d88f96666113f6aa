//! `update`: build a new generation of a container's system and make it take
//! effect, or go back to the previous generation.
//!
//! The order makes failures safe:
//! 1. under the container's lock (never the global one, so builds of other
//!    containers go on), write the new configuration.nix if one was given,
//!    keeping the old files;
//! 2. build into the profile (`profile::build`: a failed build selects
//!    nothing); on failure put the old configuration.nix back and stop;
//! 3. record the new source in the conf (FLAKE with its attr, NIXOS_PATH);
//! 4. when the container runs, activate the profile's system inside it with
//!    `switch-to-configuration test` over the root-shell socket, or restart
//!    it when settings it was started with changed and `--restart` was given.
//!
//! A failed activation leaves the new generation selected (the guest may be
//! half-switched; rolling back is the way out) and says so.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::container::Container;
use crate::error::{Error, Result};
use crate::guest;
use crate::lifecycle;
use crate::nixos_config::{self, ConfigDir, UserConfig};
use crate::paths::Paths;
use crate::profile::{self, BuildOutput, DEFAULT_NIXOS_PATH, NixFlags, SystemSource};

/// Where the new system comes from.
#[derive(Debug, Clone)]
pub enum NewSource {
    /// What create stored: the conf's FLAKE (with its attr), else the
    /// container's configuration.nix built with the conf's NIXOS_PATH.
    Stored,
    /// The container's configuration.nix, rewritten for `user` when given,
    /// built with `nixos_path` when given (else the stored one).
    Config { user: Option<UserConfig>, nixos_path: Option<String> },
    /// `REF[#ATTR]`; remembered in the conf.
    Flake(String),
    /// An already built system (this update only).
    SystemPath(PathBuf),
}

/// What to do with a running container once its new generation is selected.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Restart the container when settings it was started with changed.
    pub restart: bool,
    pub stop_timeout: Duration,
    pub start_timeout: Duration,
}

/// The command `update` runs inside the guest, as the seed's reload did.
pub const ACTIVATE: [&str; 2] = ["/nix/var/nix/profiles/system/bin/switch-to-configuration", "test"];

#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// The container is down; its next start boots the new generation.
    NotRunning,
    /// Activated in the running guest; what switch-to-configuration said.
    Activated { output: String },
    /// Restarted to apply changed settings (`--restart`).
    Restarted,
}

#[derive(Debug)]
pub struct Updated {
    pub generation: Option<u64>,
    pub system: PathBuf,
    pub applied: Applied,
    /// Conf keys changed since the running container was started: they take
    /// effect only with a restart (empty after a restart).
    pub restart_needed: Vec<String>,
}

fn open_locked(paths: &Paths, name: &str) -> Result<(Container, crate::lock::Lock)> {
    let (c, lock) = lifecycle::open_locked(paths, name)?;
    if let Some(system) = &c.conf.system_path {
        return Err(Error::Declarative {
            name: name.to_string(),
            conf: c.paths.conf.clone(),
            fixed_system: Some(system.clone()),
        });
    }
    Ok((c, lock))
}

/// Builds a new generation from `source` and applies it.
pub fn update(
    paths: &Paths,
    name: &str,
    source: NewSource,
    output: BuildOutput,
    nix: &NixFlags,
    opts: ApplyOptions,
) -> Result<Updated> {
    let (c, _lock) = open_locked(paths, name)?;
    let profile_path = c.paths.system_profile();
    let before = profile::current_generation(&profile_path)?;
    let mut conf = c.conf.clone();
    let mut rewritten = None;
    let mut new_release = None;
    if let (Some(flag), false) = (nix.flake_only(), builds_a_flake(&source, &conf)) {
        return Err(profile::flake_only_error(flag));
    }
    let build = match source {
        NewSource::SystemPath(p) => SystemSource::Path(p),
        NewSource::Flake(f) => {
            conf.flake = Some(f.clone());
            SystemSource::flake(&f)
        }
        NewSource::Stored if conf.flake.is_some() => SystemSource::flake(conf.flake.as_deref().unwrap_or_default()),
        NewSource::Stored | NewSource::Config { .. } => {
            let (user, nixos_path) = match source {
                NewSource::Config { user, nixos_path } => (user, nixos_path),
                _ => (None, None),
            };
            if let Some(np) = nixos_path {
                conf.nixos_path = (np != DEFAULT_NIXOS_PATH).then_some(np);
            }
            // From now on the container is built from configuration.nix.
            conf.flake = None;
            let dir = ConfigDir::open_host(&c.paths.config_dir, user.is_some())
                .ok()
                .filter(|d| user.is_some() || d.has_config());
            let Some(dir) = dir else { return Err(no_host_config(&c)) };
            let previous = match &user {
                Some(u) => {
                    // Frozen at create; a container created before this
                    // was kept gets the release it is built with now.
                    if conf.state_version.is_none() {
                        let nixos = conf.nixos_path.as_deref().unwrap_or(DEFAULT_NIXOS_PATH);
                        new_release = Some((nixos.to_string(), profile::nixos_release(nixos, nix)));
                        conf.state_version = new_release.as_ref().and_then(|(_, r)| r.as_ref().ok().cloned());
                    }
                    dir.replace(name, u, conf.state_version.as_deref())?
                }
                None => Vec::new(),
            };
            let config = dir.config_path();
            let nixos_path = conf.nixos_path.clone().unwrap_or_else(|| DEFAULT_NIXOS_PATH.to_string());
            rewritten = Some((dir, previous));
            SystemSource::NixosConfig { nixos_path, config }
        }
    };

    let system = match profile::build(&profile_path, &build, output, nix) {
        Ok(system) => system,
        Err(e) => {
            if let Some((dir, previous)) = rewritten {
                dir.restore(previous);
            }
            return Err(e);
        }
    };
    if let Some((dir, _)) = &rewritten {
        nixos_config::copy_to_guest(dir, &c.paths.root);
    }
    if let Some((nixos, Err(e))) = new_release {
        crate::lifecycle::known_release(&nixos, Err(e));
    }
    if conf != c.conf {
        conf.save(&c.paths.conf)?;
    }
    let c = Container { conf, ..c };
    let generation = profile::current_generation(&profile_path)?;
    apply(&c, generation, system, before, opts)
}

/// The error for a rebuild without a configuration on the host. One that
/// exists only in the guest's /etc/nixos (a container made by an older
/// version, or by nixpkgs' tool) is never built: Nix would evaluate what
/// the guest wrote as host root. The admin reviews it and adopts it.
fn no_host_config(c: &Container) -> Error {
    let guest_has_one = crate::rootfs::lstat_in_root(&c.paths.root, "etc/nixos/configuration.nix").is_ok();
    Error::NoHostConfig {
        name: c.name.clone(),
        config: c.paths.nixos_config(),
        only_in_root: guest_has_one.then(|| c.paths.root.clone()),
    }
}

fn builds_a_flake(source: &NewSource, conf: &crate::conf::Conf) -> bool {
    match source {
        NewSource::Flake(_) => true,
        NewSource::Stored => conf.flake.is_some(),
        _ => false,
    }
}

/// Selects generation `to`, or without it the one before the current
/// (`nix-env --rollback`), and applies it.
pub fn switch_generation(paths: &Paths, name: &str, to: Option<u64>, opts: ApplyOptions) -> Result<Updated> {
    let (c, _lock) = open_locked(paths, name)?;
    let profile_path = c.paths.system_profile();
    let gens = profile::generations(&profile_path)?;
    let Some(current) = gens.iter().find(|g| g.current) else {
        return Err(Error::NothingToRollBack { name: name.to_string(), current: None });
    };
    let target = match to {
        Some(n) => gens.iter().find(|g| g.number == n).ok_or_else(|| Error::InvalidValue {
            what: "generation",
            value: n.to_string(),
            reason: format!("container '{name}' has no such generation (see 'nixos-container generations {name}')"),
        })?,
        None => profile::previous_generation(&gens)
            .ok_or_else(|| Error::NothingToRollBack { name: name.to_string(), current: Some(current.number) })?,
    };
    let before = Some(current.number);
    profile::switch_generation(&profile_path, target.number)?;
    let system = profile::current_system(&profile_path)?;
    apply(&c, Some(target.number), system, before, opts)
}

/// Makes the selected generation take effect in the container if it runs.
/// `before` is the generation that was selected before, for the way back.
fn apply(
    c: &Container,
    generation: Option<u64>,
    system: PathBuf,
    before: Option<u64>,
    opts: ApplyOptions,
) -> Result<Updated> {
    if !c.status()?.guest_runs() {
        return Ok(Updated { generation, system, applied: Applied::NotRunning, restart_needed: Vec::new() });
    }
    let changed = match c.run_state().and_then(|st| st.started_with) {
        Some(then) => changed_keys(&then, &c.conf.launch_settings()),
        None => Vec::new(),
    };
    if opts.restart && !changed.is_empty() {
        lifecycle::stop_locked(c, opts.stop_timeout)?;
        lifecycle::start_locked(c, opts.start_timeout)?;
        return Ok(Updated { generation, system, applied: Applied::Restarted, restart_needed: Vec::new() });
    }
    let output = activate(c, generation, before)?;
    Ok(Updated { generation, system, applied: Applied::Activated { output }, restart_needed: changed })
}

/// Runs switch-to-configuration in the guest; an error unless it exits 0.
fn activate(c: &Container, generation: Option<u64>, before: Option<u64>) -> Result<String> {
    let failed = |failure: String, output: String| Error::Activation {
        name: c.name.clone(),
        generation,
        failure,
        output,
        back: way_back(c, generation, before),
    };
    tracing::info!("activating in {}: {}", c.name, ACTIVATE.join(" "));
    let done = guest::exec(c, &guest::Command::new(ACTIVATE))
        .map_err(|e| failed(format!("switch-to-configuration could not be run in the guest ({e})"), String::new()))?;
    // The guest's text, for the admin's terminal.
    let output = format!("{}{}", crate::logs::sanitize(&done.stdout), crate::logs::sanitize(&done.stderr));
    if done.code() != 0 {
        return Err(failed(format!("switch-to-configuration exited with status {}", done.code()), output));
    }
    Ok(output)
}

/// The generation selected before this command and the command that
/// selects it again: `--rollback` when that is where it leads (Nix rolls back
/// to the next lower number, which after an earlier rollback is not always
/// the one that ran before).
fn way_back(c: &Container, generation: Option<u64>, before: Option<u64>) -> Option<(u64, String)> {
    let before = before.filter(|b| Some(*b) != generation)?;
    let gens = profile::generations(&c.paths.system_profile()).ok()?;
    let by_rollback = profile::previous_generation(&gens).map(|g| g.number);
    let command = if by_rollback == Some(before) {
        format!("nixos-container update {} --rollback", c.name)
    } else {
        format!("nixos-container update {} --switch-generation {before}", c.name)
    };
    Some((before, command))
}

/// Keys whose values differ between two sets of launch settings.
pub fn changed_keys(then: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = then.keys().chain(now.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| then.get(*k).map(String::as_str).unwrap_or("") != now.get(*k).map(String::as_str).unwrap_or(""))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn opts() -> ApplyOptions {
        ApplyOptions { restart: false, stop_timeout: Duration::from_secs(1), start_timeout: Duration::from_secs(1) }
    }

    #[test]
    fn declarative_containers_are_refused_before_anything_is_built() {
        let base = tempfile::tempdir().unwrap();
        let paths = Paths::under(base.path());
        std::fs::create_dir_all(&paths.conf_dir).unwrap();
        std::fs::write(paths.conf_dir.join("decl.conf"), "SYSTEM_PATH=/nix/store/abc-system\n").unwrap();
        let err = update(&paths, "decl", NewSource::Stored, BuildOutput::Capture, &NixFlags::default(), opts())
            .unwrap_err()
            .to_string();
        assert!(err.contains("boots the fixed system /nix/store/abc-system"), "{err}");
        let err = switch_generation(&paths, "decl", None, opts()).unwrap_err().to_string();
        assert!(err.contains("it is declarative"), "{err}");
        assert!(!paths.profiles_dir.exists());
    }

    #[test]
    fn a_rebuild_needs_a_configuration_or_a_flake() {
        let base = tempfile::tempdir().unwrap();
        let paths = Paths::under(base.path());
        std::fs::create_dir_all(&paths.conf_dir).unwrap();
        std::fs::write(paths.conf_dir.join("bare.conf"), "PRIVATE_NETWORK=0\n").unwrap();
        let err = update(&paths, "bare", NewSource::Stored, BuildOutput::Capture, &NixFlags::default(), opts())
            .unwrap_err()
            .to_string();
        assert!(err.contains("has no") && err.contains("give --config, --config-file or --flake"), "{err}");
        let err = switch_generation(&paths, "bare", None, opts()).unwrap_err().to_string();
        assert_eq!(err, "container 'bare' has no system generation selected");
        assert!(!paths.profiles_dir.exists() && !paths.state_dir.exists());
    }

    #[test]
    fn only_changed_settings_need_a_restart() {
        let then = settings(&[("BINDS", ""), ("HOST_PORT", "tcp:80:80"), ("PRIVATE_NETWORK", "1")]);
        assert!(changed_keys(&then, &then).is_empty());
        let now = settings(&[("BINDS", "/a:/a"), ("HOST_PORT", "tcp:80:80"), ("PRIVATE_NETWORK", "1")]);
        assert_eq!(changed_keys(&then, &now), ["BINDS"]);
        // A key one side does not know counts as empty there.
        let now = settings(&[("BINDS", ""), ("HOST_PORT", "tcp:80:80"), ("PRIVATE_NETWORK", "1"), ("NEW_KEY", "")]);
        assert!(changed_keys(&then, &now).is_empty());
        let now = settings(&[("BINDS", ""), ("PRIVATE_NETWORK", "0"), ("NEW_KEY", "x")]);
        assert_eq!(changed_keys(&then, &now), ["HOST_PORT", "NEW_KEY", "PRIVATE_NETWORK"]);
    }
}

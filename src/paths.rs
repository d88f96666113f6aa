//! Where things live on the host.
//!
//! The defaults are the anchor's (nixpkgs' nixos-container), so both tools
//! see the same containers. Each can be moved with an environment variable,
//! which is how the tests run side by side without touching the host's own
//! containers.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Host paths shared by all containers.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `NAME.conf` files.
    pub conf_dir: PathBuf,
    /// Container roots, `STATE/NAME`.
    pub state_dir: PathBuf,
    /// Nix profiles, `PROFILES/NAME/system`.
    pub profiles_dir: PathBuf,
    /// GC roots, `GCROOTS/NAME`.
    pub gcroots_dir: PathBuf,
    /// Runtime state of running containers and the locks (tmpfs).
    pub run_dir: PathBuf,
    /// The hosts file that gets `NAME.containers` entries.
    pub hosts_file: PathBuf,
}

/// The environment variables that move the paths.
pub const CONF_DIR_VAR: &str = "NIXOS_CONTAINER_CONF_DIR";
pub const STATE_DIR_VAR: &str = "NIXOS_CONTAINER_STATE_DIR";
pub const PROFILES_DIR_VAR: &str = "NIXOS_CONTAINER_PROFILES_DIR";
pub const GCROOTS_DIR_VAR: &str = "NIXOS_CONTAINER_GCROOTS_DIR";
pub const RUN_DIR_VAR: &str = "NIXOS_CONTAINER_RUN_DIR";
pub const HOSTS_FILE_VAR: &str = "NIXOS_CONTAINER_HOSTS_FILE";

/// The environment variables that move the paths, with their defaults.
pub const ENV_VARS: &[(&str, &str)] = &[
    (CONF_DIR_VAR, "/etc/nixos-containers"),
    (STATE_DIR_VAR, "/var/lib/nixos-containers"),
    (PROFILES_DIR_VAR, "/nix/var/nix/profiles/per-container"),
    (GCROOTS_DIR_VAR, "/nix/var/nix/gcroots/per-container"),
    (RUN_DIR_VAR, "/run/nixos-containers"),
    (HOSTS_FILE_VAR, "/etc/hosts"),
];

/// A path variable's default.
pub fn default_of(var: &str) -> Option<&'static str> {
    ENV_VARS.iter().find(|(name, _)| *name == var).map(|(_, default)| *default)
}

/// The directory of the locks, beside the containers' run directories:
/// its name starts with '.', which container names never do, so no
/// container's run directory can be it.
const LOCK_DIR: &str = ".locks";

/// A path variable's value, or its default when unset or empty. Only
/// absolute paths: a relative one would name other files in every working
/// directory (a destroy elsewhere would remove nothing and succeed).
fn path_var(var: &'static str, value: Option<std::ffi::OsString>) -> Result<PathBuf> {
    let default = default_of(var).expect("every path variable has a default");
    let path = match value {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => return Ok(PathBuf::from(default)),
    };
    let bad = |reason: &str| Error::InvalidValue {
        what: "environment variable",
        value: format!("{var}={}", path.display()),
        reason: reason.to_string(),
    };
    if !path.is_absolute() {
        return Err(bad("must be an absolute path (e.g. /srv/containers)"));
    }
    if path.to_string_lossy().chars().any(|c| c.is_control()) {
        return Err(bad("must not contain control characters"));
    }
    Ok(path)
}

impl Paths {
    /// The paths, moved by the environment variables where set.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(|var| std::env::var_os(var))
    }

    fn from_vars(get: impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self> {
        let var = |name: &'static str| path_var(name, get(name));
        Ok(Paths {
            conf_dir: var(CONF_DIR_VAR)?,
            state_dir: var(STATE_DIR_VAR)?,
            profiles_dir: var(PROFILES_DIR_VAR)?,
            gcroots_dir: var(GCROOTS_DIR_VAR)?,
            run_dir: var(RUN_DIR_VAR)?,
            hosts_file: var(HOSTS_FILE_VAR)?,
        })
    }

    /// The environment that makes `from_env` give these paths (the tests
    /// point the CLI at their own directories with it).
    pub fn env(&self) -> [(&'static str, &Path); 6] {
        [
            (CONF_DIR_VAR, &self.conf_dir),
            (STATE_DIR_VAR, &self.state_dir),
            (PROFILES_DIR_VAR, &self.profiles_dir),
            (GCROOTS_DIR_VAR, &self.gcroots_dir),
            (RUN_DIR_VAR, &self.run_dir),
            (HOSTS_FILE_VAR, &self.hosts_file),
        ]
    }

    /// All paths under one directory; for tests.
    pub fn under(base: &Path) -> Self {
        Paths {
            conf_dir: base.join("conf"),
            state_dir: base.join("state"),
            profiles_dir: base.join("profiles"),
            gcroots_dir: base.join("gcroots"),
            run_dir: base.join("run"),
            hosts_file: base.join("hosts"),
        }
    }

    pub fn container(&self, name: &str) -> ContainerPaths {
        ContainerPaths {
            lock: self.run_dir.join(LOCK_DIR).join(format!("{name}.lock")),
            conf: self.conf_dir.join(format!("{name}.conf")),
            config_dir: self.conf_dir.join(name),
            root: self.state_dir.join(name),
            profile_dir: self.profiles_dir.join(name),
            gcroots: self.gcroots_dir.join(name),
            run: self.run_dir.join(name),
        }
    }

    /// Global lock around name and address allocation.
    pub fn global_lock(&self) -> PathBuf {
        self.run_dir.join(LOCK_DIR).join(".global.lock")
    }

    /// Serialises edits of the hosts file.
    pub fn hosts_lock(&self) -> PathBuf {
        self.run_dir.join(LOCK_DIR).join(".hosts.lock")
    }
}

/// The paths of one container.
#[derive(Debug, Clone)]
pub struct ContainerPaths {
    pub conf: PathBuf,
    /// The NixOS configuration builds use, `CONF_DIR/NAME/configuration.nix`
    /// and the files beside it: host root's, outside the container's root
    /// (whose `etc/nixos` only gets a copy).
    pub config_dir: PathBuf,
    /// The container's root directory (its `/`).
    pub root: PathBuf,
    /// Holds the `system` profile and its generations.
    pub profile_dir: PathBuf,
    pub gcroots: PathBuf,
    /// Runtime directory of a running container: supervisor state, console log.
    pub run: PathBuf,
    /// Serialises commands that change this container. Lives outside `run`
    /// and is never deleted, so that every waiter locks the same inode.
    pub lock: PathBuf,
}

impl ContainerPaths {
    pub fn system_profile(&self) -> PathBuf {
        self.profile_dir.join("system")
    }

    pub fn nixos_config(&self) -> PathBuf {
        self.config_dir.join("configuration.nix")
    }

    /// Held by the supervisor for as long as it runs.
    pub fn supervisor_lock(&self) -> PathBuf {
        self.run.join("supervisor.lock")
    }

    pub fn console_log(&self) -> PathBuf {
        self.run.join("console.log")
    }

    pub fn state_file(&self) -> PathBuf {
        self.run.join("state.json")
    }

    /// systemd-nspawn's lock on the root directory, `STATE/.#NAME.lck`
    /// beside it; left behind when nspawn is killed (terminate, destroy).
    pub fn nspawn_image_lock(&self) -> PathBuf {
        let name = self.root.file_name().unwrap_or_default().to_string_lossy();
        self.root.with_file_name(format!(".#{name}.lck"))
    }

    /// Present while the container may have an nftables table: written
    /// before the table is loaded, removed after it is deleted.
    pub fn nft_marker(&self) -> PathBuf {
        self.run.join("nft-table")
    }

    /// The host interfaces (`INTERFACES`) moved into the container's
    /// network namespace, to be given back when it stops.
    pub fn moved_interfaces(&self) -> PathBuf {
        self.run.join("interfaces")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn with(vars: &[(&str, &str)]) -> Result<Paths> {
        let vars: Vec<(String, OsString)> = vars.iter().map(|(k, v)| (k.to_string(), OsString::from(v))).collect();
        Paths::from_vars(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn unset_or_empty_variables_give_the_anchors_paths() {
        let p = with(&[("NIXOS_CONTAINER_STATE_DIR", "")]).unwrap();
        assert_eq!(p.state_dir, Path::new("/var/lib/nixos-containers"));
        assert_eq!(p.conf_dir, Path::new("/etc/nixos-containers"));
        let p = with(&[("NIXOS_CONTAINER_STATE_DIR", "/srv/c")]).unwrap();
        assert_eq!(p.state_dir, Path::new("/srv/c"));
    }

    #[test]
    fn env_gives_back_the_paths() {
        let p = Paths::under(Path::new("/r"));
        let vars: Vec<(&str, String)> = p.env().iter().map(|(k, v)| (*k, v.to_string_lossy().into_owned())).collect();
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let back = with(&vars).unwrap();
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
        assert_eq!(p.env().len(), ENV_VARS.len());
    }

    #[test]
    fn relative_paths_are_refused_by_name() {
        for var in ENV_VARS.iter().map(|(v, _)| *v) {
            for bad in ["state", "./state", "../x", "~/c"] {
                let err = with(&[(var, bad)]).unwrap_err();
                assert!(matches!(err, Error::InvalidValue { .. }), "{var}={bad}");
                let msg = err.to_string();
                assert!(msg.contains(&format!("'{var}={bad}'")) && msg.contains("absolute path"), "{msg}");
            }
        }
        let msg = with(&[("NIXOS_CONTAINER_RUN_DIR", "/run/x\ny")]).unwrap_err().to_string();
        assert!(msg.contains("control characters") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn no_container_name_meets_the_lock_directory() {
        let p = Paths::under(Path::new("/r"));
        assert_eq!(p.global_lock(), Path::new("/r/run/.locks/.global.lock"));
        // `locks` is a valid name: its run directory is its own.
        crate::name::validate("locks").unwrap();
        let c = p.container("locks");
        assert_eq!(c.run, Path::new("/r/run/locks"));
        assert!(!p.global_lock().starts_with(&c.run) && !c.lock.starts_with(&c.run));
        assert!(crate::name::validate(LOCK_DIR).is_err());
    }
}

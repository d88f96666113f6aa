//! Where things live on the host.
//!
//! The defaults are the anchor's (nixpkgs' nixos-container), so both tools
//! see the same containers. Each can be moved with an environment variable,
//! which is how the tests run side by side without touching the host's own
//! containers.

use std::path::{Path, PathBuf};

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

/// The environment variables that move the paths, with their defaults.
pub const ENV_VARS: &[(&str, &str)] = &[
    ("NIXOS_CONTAINER_CONF_DIR", "/etc/nixos-containers"),
    ("NIXOS_CONTAINER_STATE_DIR", "/var/lib/nixos-containers"),
    ("NIXOS_CONTAINER_PROFILES_DIR", "/nix/var/nix/profiles/per-container"),
    ("NIXOS_CONTAINER_GCROOTS_DIR", "/nix/var/nix/gcroots/per-container"),
    ("NIXOS_CONTAINER_RUN_DIR", "/run/nixos-containers"),
    ("NIXOS_CONTAINER_HOSTS_FILE", "/etc/hosts"),
];

fn from_env(var: &str) -> PathBuf {
    let default = ENV_VARS
        .iter()
        .find(|(name, _)| *name == var)
        .map(|(_, default)| *default)
        .expect("every path variable has a default");
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => PathBuf::from(default),
    }
}

impl Paths {
    pub fn from_env() -> Self {
        Paths {
            conf_dir: from_env("NIXOS_CONTAINER_CONF_DIR"),
            state_dir: from_env("NIXOS_CONTAINER_STATE_DIR"),
            profiles_dir: from_env("NIXOS_CONTAINER_PROFILES_DIR"),
            gcroots_dir: from_env("NIXOS_CONTAINER_GCROOTS_DIR"),
            run_dir: from_env("NIXOS_CONTAINER_RUN_DIR"),
            hosts_file: from_env("NIXOS_CONTAINER_HOSTS_FILE"),
        }
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
            lock: self.run_dir.join("locks").join(format!("{name}.lock")),
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
        self.run_dir.join("locks").join(".global.lock")
    }

    /// Serialises edits of the hosts file.
    pub fn hosts_lock(&self) -> PathBuf {
        self.run_dir.join("locks").join(".hosts.lock")
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

//! A container: its name, paths and conf, and what is known of it at runtime.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::cgroup::{ContainerCgroup, Hierarchy};
use crate::conf::Conf;
use crate::error::{Error, Result};
use crate::name;
use crate::paths::{ContainerPaths, Paths};
use crate::supervision::RunStatus;

#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub paths: ContainerPaths,
    pub conf: Conf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// A container at a glance; `list --json` and `status --json` print this.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub name: String,
    pub state: State,
    /// What `show-ip` prints, if the container has an address.
    pub address: Option<String>,
    /// The system profile's generation number.
    pub generation: Option<u64>,
    pub auto_start: bool,
    /// Processes in the container's cgroup, while it runs.
    pub processes: Option<usize>,
    /// Memory charged to the container's cgroup, while it runs, where the
    /// host accounts it (the v1 memory controller, or cgroup2's memory.current).
    pub memory_bytes: Option<u64>,
}

impl Summary {
    /// A running container with every field set: the tests' one example
    /// (also the binary's, which cannot see the library's `cfg(test)`).
    #[doc(hidden)]
    pub fn example() -> Summary {
        Summary {
            name: "web".into(),
            state: State::Up,
            address: Some("10.233.1.2".into()),
            generation: Some(3),
            auto_start: true,
            processes: Some(5),
            memory_bytes: Some(8 << 20),
        }
    }
}

/// What the supervisor records about a running container
/// (`RUN/NAME/state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunState {
    pub supervisor_pid: i32,
    pub nspawn_pid: i32,
    /// Seconds since the epoch.
    pub started_at: u64,
    /// The system store path the container booted.
    pub system: String,
    /// The values of the conf's `restart_keys()` as they were at start (`Conf::launch_settings`),
    /// so that `update` can tell when a change needs a restart. Absent in
    /// state written by an older supervisor.
    #[serde(default)]
    pub started_with: Option<BTreeMap<String, String>>,
}

/// Whether a container runs, from its supervision and cgroup alone (no conf
/// needed: also for a container whose conf does not load).
pub fn status_of(name: &str, paths: &ContainerPaths, hierarchies: &[Hierarchy]) -> RunStatus {
    crate::supervision::for_host().status(name, paths, hierarchies)
}

/// `up` or `down`, as `status` prints it.
pub fn state_of(name: &str, paths: &ContainerPaths, hierarchies: &[Hierarchy]) -> State {
    status_of(name, paths, hierarchies).state()
}

/// Whether `path` is, after every link (NixOS's /etc -> /etc/static ->
/// /nix/store chain), a file in `store`.
fn resolves_into(path: &Path, store: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|t| t.starts_with(store))
}

impl Container {
    /// Opens an existing container; fails with `NoSuchContainer` when its
    /// conf file is missing.
    pub fn open(paths: &Paths, name: &str) -> Result<Container> {
        name::validate_existing(name)?;
        let cpaths = paths.container(name);
        if !cpaths.conf.exists() {
            return Err(Error::NoSuchContainer(name.to_string()));
        }
        let conf = Conf::load(&cpaths.conf)?;
        Ok(Container { name: name.to_string(), paths: cpaths, conf })
    }

    /// Opens an existing container to remove it: a conf that cannot be read
    /// or parsed (a damaged file) must not keep a container from being
    /// destroyed, since destroying needs nothing from it. The conf's error
    /// comes back beside a container with an empty conf.
    pub fn open_to_destroy(paths: &Paths, name: &str) -> Result<(Container, Option<Error>)> {
        match Container::open(paths, name) {
            Ok(c) => Ok((c, None)),
            Err(e @ (Error::NoSuchContainer(_) | Error::InvalidName { .. })) => Err(e),
            Err(e) => {
                let c = Container { name: name.to_string(), paths: paths.container(name), conf: Conf::default() };
                Ok((c, Some(e)))
            }
        }
    }

    /// Names of all containers, sorted.
    pub fn list(paths: &Paths) -> Result<Vec<String>> {
        let mut names: Vec<String> = crate::fsutil::read_dir_or_empty(&paths.conf_dir)?
            .into_iter()
            .filter_map(|e| {
                let file = e.file_name();
                let file = file.to_str()?;
                let name = file.strip_suffix(".conf")?;
                name::validate_existing(name).ok().map(str::to_string)
            })
            .collect();
        names.sort();
        Ok(names)
    }

    pub fn cgroup(&self) -> Result<ContainerCgroup> {
        ContainerCgroup::new(&self.name)
    }

    /// Whether it runs: see [`RunStatus`].
    pub fn status(&self) -> Result<RunStatus> {
        Ok(status_of(&self.name, &self.paths, crate::cgroup::host_hierarchies()?))
    }

    /// Up while any process of the container exists, supervised or not, or
    /// while its supervision lives (starting it, or cleaning up after it).
    pub fn state(&self) -> Result<State> {
        Ok(self.status()?.state())
    }

    /// Like `state`, with the host's hierarchies read once by the caller.
    pub fn state_in(&self, hierarchies: &[Hierarchy]) -> State {
        state_of(&self.name, &self.paths, hierarchies)
    }

    /// The profile generation the container boots (`system-N-link`), if it
    /// has a profile (declarative containers with SYSTEM_PATH have none).
    pub fn generation(&self) -> Option<u64> {
        if self.conf.system_path.is_some() {
            return None;
        }
        crate::profile::current_generation(&self.paths.system_profile()).ok().flatten()
    }

    /// What `list` and `status` show. Costs one conf (already read), one
    /// cgroup file and one readlink, and for a running container its
    /// cgroup's process list and memory: no Nix, no guest.
    pub fn summary(&self, hierarchies: &[Hierarchy]) -> Summary {
        let state = self.state_in(hierarchies);
        let cgroup = ContainerCgroup::in_hierarchies(hierarchies, &self.name);
        let up = state == State::Up;
        Summary {
            name: self.name.clone(),
            state,
            address: self.address(),
            generation: self.generation(),
            auto_start: self.conf.auto_start,
            processes: up.then(|| cgroup.pids().len()),
            memory_bytes: if up { cgroup.memory_bytes() } else { None },
        }
    }

    pub fn run_state(&self) -> Option<RunState> {
        let text = std::fs::read_to_string(self.paths.state_file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether this conf is managed declaratively (a read-only file or a
    /// link into the Nix store): such containers are not ours to destroy.
    pub fn is_declarative(&self) -> bool {
        let conf = &self.paths.conf;
        resolves_into(conf, Path::new("/nix/store"))
            || nix::unistd::access(conf.as_path(), nix::unistd::AccessFlags::W_OK).is_err()
    }

    /// The container's address as `show-ip` prints it: IPv4 without prefix,
    /// else IPv6.
    pub fn address(&self) -> Option<String> {
        self.conf
            .local_address
            .map(|a| a.addr.to_string())
            .or_else(|| self.conf.local_address6.map(|a| a.addr.to_string()))
    }
}

/// The last lines of a console log, without terminal escapes, for errors.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let Ok(current) = std::fs::read(path) else {
        return String::new();
    };
    // Just after the log started anew, its last lines are in the old file.
    let mut bytes = std::fs::read(crate::supervisor::console::previous(path)).unwrap_or_default();
    bytes.extend_from_slice(&current);
    let text = crate::logs::sanitize(&bytes);
    let clean: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    clean[clean.len().saturating_sub(lines)..].join("\n")
}

/// Which containers a command can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    All,
    Running,
    Stopped,
}

impl Which {
    pub fn admits(self, state: State) -> bool {
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
    pub fn describe(&self) -> String {
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
    let hierarchies = crate::cgroup::host_hierarchies()?;
    let mut out = Vec::new();
    for name in Container::list(paths)? {
        let state = state_of(&name, &paths.container(&name), hierarchies);
        if !which.admits(state) {
            continue;
        }
        let address = Container::open(paths, &name).ok().and_then(|c| c.address());
        out.push(Candidate { name, state, address });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_tail_is_cleaned_of_escapes_and_controls() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        std::fs::write(
            &log,
            b"[\x1b[0;32m  OK  \x1b[0m] Started x.\r\n\x1b]0;t\x07\n\xc2\x9d8;;u\xc2\x9cy\x07\x08\xc2\x9b2Jz\n",
        )
        .unwrap();
        assert_eq!(log_tail(&log, 5), "[  OK  ] Started x.\nyz");
        assert_eq!(log_tail(&log, 1), "yz");
    }

    #[test]
    fn generations_come_from_the_profile_link() {
        let parse_generation = |link: &str| crate::profile::generation_number("system", link);
        assert_eq!(parse_generation("system-12-link"), Some(12));
        assert_eq!(parse_generation("system-x-link"), None);
        assert_eq!(parse_generation("/nix/store/abc-system"), None);
    }

    #[test]
    fn a_conf_linked_into_the_store_through_etc_static_is_declarative() {
        let dir = tempfile::tempdir().unwrap();
        let (store, etc) = (dir.path().join("store"), dir.path().join("etc"));
        std::fs::create_dir_all(store.join("abc-etc/nixos-containers")).unwrap();
        std::fs::create_dir_all(etc.join("nixos-containers")).unwrap();
        std::fs::write(store.join("abc-etc/nixos-containers/web.conf"), "").unwrap();
        std::os::unix::fs::symlink(store.join("abc-etc"), etc.join("static")).unwrap();
        let conf = etc.join("nixos-containers/web.conf");
        std::os::unix::fs::symlink(etc.join("static/nixos-containers/web.conf"), &conf).unwrap();
        assert!(resolves_into(&conf, &store));
        std::fs::write(etc.join("nixos-containers/db.conf"), "").unwrap();
        assert!(!resolves_into(&etc.join("nixos-containers/db.conf"), &store));
    }

    #[test]
    fn summaries_serialise_with_stable_field_names() {
        let s = Summary::example();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"name":"web","state":"up","address":"10.233.1.2","generation":3,"auto_start":true,"processes":5,"memory_bytes":8388608}"#
        );
    }

    #[test]
    fn lists_only_valid_conf_names() {
        let base = tempfile::tempdir().unwrap();
        let paths = Paths::under(base.path());
        std::fs::create_dir_all(&paths.conf_dir).unwrap();
        for f in ["b.conf", "a.conf", "nix_pkgs.conf", "bad name.conf", ".x.conf", "notes.txt", "c.conf.creating"] {
            std::fs::write(paths.conf_dir.join(f), "").unwrap();
        }
        // nixpkgs' create allowed '_': such containers are listed.
        assert_eq!(Container::list(&paths).unwrap(), ["a", "b", "nix_pkgs"]);
    }

    #[test]
    fn opening_an_unknown_container_fails_cleanly() {
        let base = tempfile::tempdir().unwrap();
        let paths = Paths::under(base.path());
        let err = Container::open(&paths, "ghost").unwrap_err();
        assert!(matches!(err, Error::NoSuchContainer(_)));
        assert_eq!(err.exit_code(), crate::error::exit::NO_SUCH_CONTAINER);
        assert!(!paths.conf_dir.exists(), "nothing written");
    }
}

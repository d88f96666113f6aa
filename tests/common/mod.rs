//! Shared harness of the integration tests.
//!
//! Every test gets an `Env`: its own conf/state/profile/run directories and
//! hosts file under a temporary directory, its own IPv4 pool, and container
//! names that no other test uses. Dropping the `Env` (also when the test
//! panics) terminates and destroys every container the test made and then
//! removes anything that is still left of them: processes (through their
//! cgroups), mounts and files.
//!
//! These tests use the real thing: systemd-nspawn, Nix, and a guest booting
//! real systemd from the project's NixOS stand-in (`nixos/`). They need root.

#![allow(dead_code)]

pub mod systemd_host;
pub mod tmux;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nixos_container::net::names;

pub const BIN: &str = env!("CARGO_BIN_EXE_nixos-container");
pub const OFFLINE_NIX: &str = "substituters =";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in NixOS used as `--nixos-path`.
pub fn nixos_path() -> PathBuf {
    repo().join("nixos")
}

/// Writes a flake into `dir` over the project's NixOS (`nixos_path()`):
/// the guest module as `guest.nix`, and one `nixosConfigurations.ATTR` per
/// `(ATTR, MODULES)`, MODULES being Nix list items after `./guest.nix`.
pub fn write_flake(dir: &Path, configurations: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    fs::copy(repo().join("guest/container-login.nix"), dir.join("guest.nix")).unwrap();
    let systems: String = configurations
        .iter()
        .map(|(attr, modules)| {
            format!(
                "    nixosConfigurations.{attr} = nixpkgs.lib.nixosSystem {{\n      system = \"x86_64-linux\";\n      \
                 modules = [ ./guest.nix {modules} ];\n    }};\n"
            )
        })
        .collect();
    let text = format!(
        "{{\n  inputs.nixpkgs.url = \"path:{}\";\n  outputs = {{ self, nixpkgs }}: {{\n{systems}  }};\n}}\n",
        nixos_path().display()
    );
    fs::write(dir.join("flake.nix"), text).unwrap();
}

pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// Not root: the whole test binary stops at its first test with one line
/// and a failing status (not one panic per test, and never a skip that
/// would pass).
fn require_root() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if nix::unistd::geteuid().is_root() {
        return;
    }
    ONCE.call_once(|| {
        // Straight to stderr: the test harness captures eprintln!.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "error: the integration tests drive real containers and must run as root \
             (see README; `cargo test --workspace --lib --bins` needs no root)"
        );
        std::process::exit(1);
    });
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `n` in base 36 (digits and lower-case letters).
fn base36(mut n: u32) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit(n % 36, 36).unwrap());
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

/// A /16 pool that no other running test uses: pools are numbered, and a
/// test holds the flock of its pool's file for as long as it lives. A pool
/// with addresses or routes on the host (left by a run that was killed, or
/// the host's own) is skipped, since create would not hand out those
/// addresses and the tests expect the pool's first ones.
fn claim_pool() -> (u8, Flock<File>) {
    let dir = Path::new("/tmp/nixos-container-test-pools");
    fs::create_dir_all(dir).unwrap();
    for n in 0..120u8 {
        let f = File::create(dir.join(format!("{n}.lock"))).unwrap();
        if let Ok(lock) = Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            let pool = 100 + n;
            if !pool_used_on_host(pool) {
                return (pool, lock);
            }
            eprintln!("test pool 10.{pool}.0.0/16 has addresses or routes on the host; skipping it");
        }
    }
    panic!("no free test address pool");
}

/// Whether the host has an address or a route in IPv4 pool 10.N.0.0/16 or
/// IPv6 pool fd6e:6978:N::/48.
fn pool_used_on_host(n: u8) -> bool {
    let mut seen = String::new();
    for args in [&["-o", "addr", "show"][..], &["-4", "route", "show"], &["-6", "route", "show"]] {
        let out = Command::new("ip").args(args).output().expect("running ip (iproute2)");
        assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        seen.push_str(&String::from_utf8_lossy(&out.stdout));
        seen.push('\n');
    }
    let v4 = format!("10.{n}.");
    let v6 = format!("fd6e:6978:{n:x}:");
    seen.split(|c: char| c.is_whitespace() || c == '/').any(|word| word.starts_with(&v4) || word.starts_with(&v6))
}

pub struct Env {
    pub base: PathBuf,
    pub pool: u8,
    _pool_lock: Flock<File>,
    prefix: String,
    names: Mutex<Vec<String>>,
    _tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        require_root();
        let tmp = tempfile::Builder::new().prefix("nc-test-").tempdir_in("/tmp").unwrap();
        let (pool, lock) = claim_pool();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("t{}-{n}", base36(std::process::id()));
        let env = Env {
            base: tmp.path().to_path_buf(),
            pool,
            _pool_lock: lock,
            prefix,
            names: Mutex::new(Vec::new()),
            _tmp: tmp,
        };
        fs::write(env.base.join("hosts"), "127.0.0.1 localhost\n").unwrap();
        env
    }

    /// A container name unique to this test run, `{prefix}-{short}`, where
    /// the prefix is `t{PID}-{N}`: the test process's PID in base 36 (no
    /// other live process has it; at most 5 characters for any pid_max up
    /// to 2^22) and the Env's number in the process. No digit of either is
    /// a '-', so two prefixes never run into each other. Names become
    /// host-wide objects (netns, interfaces, cgroups) that Env's drop
    /// removes by name: another test's name must never be ours.
    ///
    /// With `short` of up to 2 characters the name has at most 12
    /// (`t` + 5 + `-` + 2 + `-` + 2), and so the `ve-NAME` interface form.
    pub fn name(&self, short: &str) -> String {
        let name = format!("{}-{short}", self.prefix);
        self.track(&name);
        name
    }

    /// Registers a name (e.g. one chosen by --ensure-unique-name) for cleanup.
    pub fn track(&self, name: &str) {
        let mut names = self.names.lock().unwrap();
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
        }
    }

    /// The environment that points the CLI at this test's directories and
    /// pool (also for shells started in tmux).
    pub fn vars(&self) -> Vec<(String, String)> {
        let b = &self.base;
        let paths = nixos_container::paths::Paths::under(b);
        let mut vars: Vec<(String, String)> =
            paths.env().iter().map(|(k, v)| (k.to_string(), v.to_string_lossy().into_owned())).collect();
        vars.extend([
            ("NIXOS_CONTAINER_IPV4_POOL".into(), format!("10.{}.0.0/16", self.pool)),
            ("NIXOS_CONTAINER_IPV6_POOL".into(), self.pool6()),
            // These machines have no binary cache; asking for one costs seconds.
            ("NIX_CONFIG".into(), OFFLINE_NIX.into()),
            // These tests check our own supervisor (its lock, its cgroups),
            // also on a developer's host where systemd is PID 1; the unit
            // backend has its own tests on a booted systemd host
            // (tests/systemd_host.rs).
            ("NIXOS_CONTAINER_SUPERVISION".into(), "own".into()),
        ]);
        vars
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.envs(self.vars()).stdin(Stdio::null());
        cmd
    }

    /// The CLI as a shell command line (for tmux): `env K=V... BIN args`.
    pub fn shell_command(&self, args: &[&str]) -> String {
        let q = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut parts = vec!["env".to_string()];
        parts.extend(self.vars().iter().map(|(k, v)| q(&format!("{k}={v}"))));
        parts.push(q(BIN));
        parts.extend(args.iter().map(|a| q(a)));
        parts.join(" ")
    }

    /// Runs the CLI and returns its output, whatever the exit code.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command().args(args).output().expect("running nixos-container")
    }

    /// Runs the CLI and fails the test unless it exits 0; returns stdout.
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "nixos-container {:?} failed ({}):\nstdout: {}\nstderr: {}",
            args,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `create NAME --nixos-path <stand-in> --bind-ro /usr ...extra`.
    pub fn create(&self, name: &str, extra: &[&str]) -> String {
        let nixos = nixos_path();
        let mut args: Vec<&OsStr> = vec![
            "create".as_ref(),
            name.as_ref(),
            "--nixos-path".as_ref(),
            nixos.as_os_str(),
            "--bind-ro".as_ref(),
            "/usr".as_ref(),
        ];
        args.extend(extra.iter().map(|s| s.as_ref() as &OsStr));
        self.ok(args)
    }

    /// This test's IPv6 pool, beside its IPv4 pool.
    pub fn pool6(&self) -> String {
        format!("fd6e:6978:{:x}::/48", self.pool)
    }

    pub fn hosts_file(&self) -> PathBuf {
        self.base.join("hosts")
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.base.join("conf")
    }

    pub fn root(&self, name: &str) -> PathBuf {
        self.base.join("state").join(name)
    }

    pub fn profile_dir(&self, name: &str) -> PathBuf {
        self.base.join("profiles").join(name)
    }

    pub fn gcroots(&self, name: &str) -> PathBuf {
        self.base.join("gcroots").join(name)
    }

    pub fn run_dir(&self, name: &str) -> PathBuf {
        self.base.join("run").join(name)
    }

    /// What is left of container `name` on the host (empty when nothing):
    /// its conf (also an unfinished create's), configuration, root, profile, GC roots and
    /// run directory, its lines in the hosts file, processes, cgroups,
    /// mounts and network. (Only its lock file stays, by design.)
    pub fn leftovers(&self, name: &str) -> Vec<String> {
        let mut left = Vec::new();
        for p in [
            self.conf_dir().join(format!("{name}.conf")),
            self.conf_dir().join(format!("{name}.conf.creating")),
            self.conf_dir().join(name),
            self.root(name),
            self.profile_dir(name),
            self.gcroots(name),
            self.run_dir(name),
            // systemd-nspawn's mount-propagation directory of the machine.
            PathBuf::from("/run/systemd/nspawn/propagate").join(name),
        ] {
            // symlink_metadata: a dangling link is something left too.
            if p.symlink_metadata().is_ok() {
                left.push(format!("path {}", p.display()));
            }
        }
        let host = format!("{name}.containers");
        let hosts = fs::read_to_string(self.hosts_file()).unwrap_or_default();
        left.extend(
            hosts
                .lines()
                .filter(|l| l.split('#').next().unwrap_or("").split_whitespace().any(|w| w == host))
                .map(|l| format!("hosts line {l}")),
        );
        left.extend(processes_of(name).iter().map(|p| format!("process {p}")));
        left.extend(cgroup_dirs(name).iter().map(|p| format!("cgroup {}", p.display())));
        left.extend(mounts_under(&self.base.join("state").join(name)).iter().map(|m| format!("mount {m}")));
        left.extend(network_leftovers(name));
        left
    }
}

/// What is left of container `name`'s network on the host: its namespace,
/// its host interface (by name or altname), any route or address on it,
/// its nftables table.
pub fn network_leftovers(name: &str) -> Vec<String> {
    let mut left = Vec::new();
    let netns = Path::new("/run/netns").join(names::netns(name));
    if netns.exists() {
        left.push(format!("netns {}", netns.display()));
    }
    for ifname in [names::host_ifname(name), names::host_altname(name)] {
        if cmd_ok("ip", &["link", "show", "dev", &ifname]) {
            left.push(format!("interface {ifname}"));
        }
    }
    let ifname = names::host_ifname(name);
    for args in [
        &["-4", "route", "show", "table", "all"][..],
        &["-6", "route", "show", "table", "all"],
        &["-o", "addr", "show"],
    ] {
        let out = Command::new("ip").args(args).output().expect("ip");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.split_whitespace().any(|w| w == ifname) {
                left.push(format!("ip {}: {line}", args.join(" ")));
            }
        }
    }
    for family in ["inet", "netdev"] {
        if cmd_ok("nft", &["list", "table", family, &names::nft_table(name)]) {
            left.push(format!("nft table {family} {}", names::nft_table(name)));
        }
    }
    left
}

/// Routes and addresses that mention `addr` (for addresses a container had).
pub fn routes_and_addresses_of(addr: &str) -> Vec<String> {
    let mut found = Vec::new();
    let fam = if addr.contains(':') { "-6" } else { "-4" };
    for args in [vec![fam, "route", "show", "table", "all"], vec![fam, "-o", "addr", "show"]] {
        let out = Command::new("ip").args(&args).output().expect("ip");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.split_whitespace().any(|w| w == addr || w.split('/').next() == Some(addr)) {
                found.push(line.to_string());
            }
        }
    }
    found
}

/// Whether `program args` runs and exits 0 (its output discarded).
pub fn cmd_ok(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Removes whatever the CLI left of a container's network.
fn force_network_cleanup(name: &str) {
    let _ = cmd_ok("nft", &["delete", "table", "inet", &names::nft_table(name)]);
    let ifname = names::host_ifname(name);
    // Only ever our own: the interface must carry this container's alias.
    let alias = fs::read_to_string(format!("/sys/class/net/{ifname}/ifalias")).unwrap_or_default();
    if alias.trim() == names::host_alias(name) {
        let _ = cmd_ok("ip", &["link", "del", "dev", &ifname]);
    }
    let netns = names::netns(name);
    if Path::new("/run/netns").join(&netns).exists() {
        let _ = cmd_ok("ip", &["netns", "del", &netns]);
    }
}

/// Cgroup directories of container `name` that exist.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    ["unified", "systemd", "memory", "cpu", "pids", ""]
        .iter()
        .map(|h| Path::new("/sys/fs/cgroup").join(h).join("nixos-containers").join(name))
        .filter(|p| p.exists())
        .collect()
}

/// PIDs in container `name`'s cgroup tree.
pub fn processes_of(name: &str) -> Vec<u32> {
    fn walk(dir: &Path, out: &mut Vec<u32>) {
        if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.parse::<u32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in cgroup_dirs(name) {
        walk(&d, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// Whether process `pid` exists and is a zombie (exited, not reaped).
pub fn is_zombie(pid: u32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

/// Fetches `/` from `addr` over plain HTTP/1.0.
pub fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// The value of `key` in container `name`'s conf (quotes removed).
pub fn conf_value(env: &Env, name: &str, key: &str) -> String {
    let conf = fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap();
    conf.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} not in {conf}"))
        .trim_matches('"')
        .to_string()
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| Path::new(m).starts_with(dir))
        .map(str::to_string)
        .collect()
}

fn force_cleanup(name: &str) {
    for d in cgroup_dirs(name) {
        let _ = fs::write(d.join("cgroup.kill"), "1");
    }
    for pid in processes_of(name) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    // A cgroup with processes cannot be removed: wait until they are gone
    // (without a panic: this runs in a drop).
    wait_for(Duration::from_secs(60), || processes_of(name).is_empty().then_some(()));
    for d in cgroup_dirs(name) {
        nixos_container::cgroup::remove_tree(&d);
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        for name in &names {
            let _ = self.command().args(["terminate", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            let _ = self.command().args(["destroy", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
            force_cleanup(name);
            force_network_cleanup(name);
        }
        // Mounts under our base that the CLI did not remove: detach them so
        // that removing the temporary directory cannot reach into them.
        let mut mounts = mounts_under(&self.base);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A spawned child (a CLI run the test waits for later) that is killed and
/// reaped when dropped, so that a test that panics leaves no CLI behind
/// (Env's drop then cleans up what that CLI made).
pub struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    pub fn new(child: Child) -> KillOnDrop {
        KillOnDrop(Some(child))
    }

    /// Spawns `cmd`; panics if it cannot be started.
    pub fn spawn(cmd: &mut Command) -> KillOnDrop {
        KillOnDrop::new(cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}")))
    }

    /// `Child::wait_with_output`.
    pub fn wait_with_output(mut self) -> std::io::Result<Output> {
        self.0.take().expect("a child").wait_with_output()
    }

    /// The child's piped stdout, to read while it runs.
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.0.as_mut().expect("a child").stdout.take().expect("stdout piped")
    }

    /// Waits up to `timeout` for the child to exit; None if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_for(timeout, || self.try_wait().expect("waiting for a child"))
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a child")
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child")
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            // Harmless for a child that has exited (and been waited for).
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Builds a stand-in system with the guest module and `modules` (Nix
/// expressions), for tests that use `--system-path`. Returns its store path.
pub fn build_system(modules: &[&str]) -> String {
    let out = Command::new("nix-build")
        .env("NIX_CONFIG", OFFLINE_NIX)
        .args(["--no-out-link", "-E"])
        .arg(format!(
            "(import {} {{ configuration = {{ imports = [ {} {} ]; }}; }}).system",
            nixos_path().display(),
            repo().join("guest/container-login.nix").display(),
            modules.join(" ")
        ))
        .output()
        .expect("running nix-build");
    assert!(out.status.success(), "nix-build: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

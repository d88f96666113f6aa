//! A host where systemd is PID 1, booted nested for the tests.
//!
//! Our machines have no systemd as PID 1, but one can be booted in a
//! container: a minimal Debian 12 (systemd, logind, machined, D-Bus, nspawn,
//! Nix; built by `scripts/systemd-host-root` and cached as a tarball under
//! /var/cache) runs under
//! `systemd-nspawn -b --keep-unit --register=no --private-network`, with
//! `SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` so that it sees a cgroup2 tree of its
//! own, in a host cgroup of its own (cgroup2, plus the v1 `name=systemd`
//! hierarchy on a hybrid host). Inside it behaves as a real host: the tool's
//! containers nest, logind sessions come and go, it reboots and powers off.
//!
//! The project's binary and repository (the stand-in NixOS in `nixos/`) are
//! bound read-only at the same paths as outside, so `BIN` and `repo()` work
//! inside; the outer root's `/usr` (Debian with systemd) serves the stand-in's
//! containers the way the host's does. Its Nix store is its own.
//!
//! Every `SystemdHost` gets a fresh copy of the root. Dropping it (also when
//! the test panics) kills everything in its cgroup (the outer systemd, and
//! with it every process and namespace inside) and removes its cgroups, its
//! nspawn leftovers under /run/systemd/nspawn and its files.
//!
//! ```ignore
//! let mut host = SystemdHost::boot();          // fresh root, booted to `running`
//! host.install();                              // scripts/install: binary, units
//! host.tool_ok(&["create", "web", "--nixos-path", NIXOS, "--bind-ro", "/usr"]);
//! host.sh_ok("systemctl start nixos-container@web");   // as root at a shell
//! let s = host.session_command("nixos-container start web").output();  // a login session
//! host.reboot();                               // waits for the new boot
//! assert!(host.poweroff().success());
//! // dropped: killed, unmounted, removed
//! ```

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sha2::{Digest, Sha256};

use super::{BIN, mounts_under, repo};

/// Where the root tarball is cached between runs.
pub const CACHE_DIR: &str = "/var/cache/nixos-container-tests";
/// Where the hosts' copies of the root live while they run.
pub const HOSTS_DIR: &str = "/var/tmp/nixos-container-systemd-hosts";
/// The PATH commands inside get (the environment is not inherited).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a boot (or reboot) may take before the harness gives up.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a poweroff may take.
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(90);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The script that builds the root; its hash names the tarball.
fn build_script() -> PathBuf {
    repo().join("scripts/systemd-host-root")
}

/// The cached root tarball, built (once, under a lock shared by all tests)
/// when missing. Panics, saying why, when it cannot be built.
pub fn root_tarball() -> PathBuf {
    let script = fs::read(build_script()).expect("reading scripts/systemd-host-root");
    let hash = Sha256::digest(&script);
    let hex: String = hash.iter().take(6).map(|b| format!("{b:02x}")).collect();
    let tarball = Path::new(CACHE_DIR).join(format!("systemd-host-{hex}.tar.zst"));
    if tarball.exists() {
        return tarball;
    }
    fs::create_dir_all(CACHE_DIR).expect("creating the tarball cache directory");
    let lock = File::create(Path::new(CACHE_DIR).join("systemd-host.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).expect("locking the tarball cache");
    if !tarball.exists() {
        eprintln!("building the systemd host's root {} (debootstrap; about 80 s)", tarball.display());
        let started = Instant::now();
        let out =
            Command::new("bash").arg(build_script()).arg(&tarball).stdin(Stdio::null()).output().unwrap_or_else(|e| {
                panic!("cannot boot a systemd host: running scripts/systemd-host-root failed: {e}")
            });
        assert!(
            out.status.success(),
            "cannot boot a systemd host: its root could not be built (scripts/systemd-host-root {}: {}); \
             it needs debootstrap, zstd and a Debian mirror (scripts/setup):\n{}{}",
            tarball.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("built {} in {:.1} s", tarball.display(), started.elapsed().as_secs_f64());
    }
    tarball
}

/// The cached root unpacked (beside its tarball), which every host uses
/// read-only as the lower layer of an overlay: a fresh copy costs nothing,
/// where unpacking 360 MB took 2 s on a quiet machine and 20 s on a busy one.
fn unpacked_root(tarball: &Path) -> PathBuf {
    let dir = tarball.with_extension("").with_extension("");
    if dir.join("usr").exists() {
        return dir;
    }
    let lock = File::create(Path::new(CACHE_DIR).join("systemd-host.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).expect("locking the tarball cache");
    if !dir.join("usr").exists() {
        let tmp = dir.with_extension("unpacking");
        let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(&tmp).status();
        unpack(tarball, &tmp);
        let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(&dir).status();
        fs::rename(&tmp, &dir).unwrap();
    }
    dir
}

fn unpack(tarball: &Path, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let out = Command::new("sh")
        .args(["-c", "zstd -dcq \"$1\" | tar -C \"$2\" --numeric-owner -xf -", "sh"])
        .arg(tarball)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cannot boot a systemd host: unpacking {} failed: {} (delete it to have it built again)",
        tarball.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The host cgroup directories a systemd host named `name` gets: cgroup2
/// (`/sys/fs/cgroup/unified` on a hybrid host, `/sys/fs/cgroup` on a pure
/// one) and, where mounted, the v1 `name=systemd` hierarchy, which systemd in
/// the container also expects to be its own.
pub fn host_cgroups(name: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = Vec::new();
    if base.join("cgroup.controllers").exists() {
        dirs.push(base.join(name));
    } else {
        assert!(
            base.join("unified/cgroup.controllers").exists(),
            "cannot boot a systemd host: no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
        );
        dirs.push(base.join("unified").join(name));
        if base.join("systemd/tasks").exists() {
            dirs.push(base.join("systemd").join(name));
        }
    }
    dirs
}

/// PIDs in the cgroup trees `dirs`.
fn cgroup_pids(dirs: &[PathBuf]) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// A login session in a systemd host (see `SystemdHost::open_session`).
pub struct Session {
    /// logind's session ID (`loginctl terminate-session ID`).
    pub id: String,
    /// Its scope in the host's cgroup tree, e.g. `/user.slice/user-1000.slice/session-3.scope`.
    pub cgroup: String,
    _su: super::KillOnDrop,
}

/// The nspawn process's state, shared with the thread that runs it.
#[derive(Default)]
struct Run {
    /// systemd-nspawn's PID while it runs.
    nspawn: Option<i32>,
    /// How many times nspawn was started (1 + reboots).
    boots: u32,
    /// How nspawn ended for good (anything but a reboot's exit 133).
    exited: Option<ExitStatus>,
    /// Set by the guard: do not start nspawn again.
    stopping: bool,
}

/// A booted host where systemd is PID 1 (see the module's documentation).
pub struct SystemdHost {
    pub name: String,
    /// The host's directory: `root/` and `console.log`.
    pub dir: PathBuf,
    pub root: PathBuf,
    cgroups: Vec<PathBuf>,
    /// `/run/systemd/nspawn/locks/inode-DEV:INO`: nspawn's lock on the root.
    nspawn_lock: PathBuf,
    run: Arc<(Mutex<Run>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    /// How long unpacking the root and booting to `running` took.
    pub unpack_time: Duration,
    pub boot_time: Duration,
    /// `systemctl is-system-running` once booted: `running` or `degraded`.
    pub boot_state: String,
}

impl SystemdHost {
    /// Unpacks a fresh root, boots it and waits until systemd reports the
    /// system `running` or `degraded`. Panics, saying why, when it cannot.
    pub fn boot() -> SystemdHost {
        assert!(nix::unistd::geteuid().is_root(), "cannot boot a systemd host: the tests must run as root");
        for tool in ["systemd-nspawn", "nsenter", "zstd", "tar"] {
            assert!(
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .unwrap()
                    .success(),
                "cannot boot a systemd host: {tool} not found (run scripts/setup)"
            );
        }
        let tarball = root_tarball();
        // The outer systemd, its logind, journald, machined and the guests
        // nested in it all take inotify instances from root's budget.
        nixos_container::hostlimits::ensure_inotify_headroom(8)
            .unwrap_or_else(|e| panic!("cannot boot a systemd host: {e}"));

        sweep_stale_hosts();
        let name = format!("nc-host-{}-{}", super::base36(std::process::id()), COUNTER.fetch_add(1, Ordering::SeqCst));
        let mut host = SystemdHost::named(&name);
        // No live process has our PID, so anything by this name is left
        // from a run that was killed: clear it first.
        if host.dir.exists() || host.cgroups.iter().any(|c| c.exists()) {
            host.clean_up();
            *host.run.0.lock().unwrap() = Run::default();
        }

        let started = Instant::now();
        host.make_root(&tarball);
        // A machine ID of its own (the cached root has none).
        let uuid = fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap();
        fs::write(host.root.join("etc/machine-id"), format!("{}\n", uuid.trim().replace('-', ""))).unwrap();
        let md = fs::metadata(&host.root).unwrap();
        host.nspawn_lock = PathBuf::from(format!("/run/systemd/nspawn/locks/inode-{}:{}", md.dev(), md.ino()));
        host.unpack_time = started.elapsed();

        for c in &host.cgroups {
            fs::create_dir_all(c)
                .unwrap_or_else(|e| panic!("cannot boot a systemd host: creating cgroup {}: {e}", c.display()));
        }
        host.start_thread();
        let started = Instant::now();
        host.boot_state = host.wait_booted(1);
        host.boot_time = started.elapsed();
        eprintln!(
            "systemd host {}: unpacked in {:.1} s, {} after {:.1} s",
            host.name,
            host.unpack_time.as_secs_f64(),
            host.boot_state,
            host.boot_time.as_secs_f64()
        );
        host
    }

    /// The host called `name`, not started: its paths and cgroups.
    fn named(name: &str) -> SystemdHost {
        let dir = Path::new(HOSTS_DIR).join(name);
        let root = dir.join("root");
        // nspawn's lock on the root, by its device and inode (known once
        // the root exists).
        let nspawn_lock = fs::metadata(&root)
            .map(|md| PathBuf::from(format!("/run/systemd/nspawn/locks/inode-{}:{}", md.dev(), md.ino())))
            .unwrap_or_default();
        SystemdHost {
            name: name.to_string(),
            cgroups: host_cgroups(name),
            root,
            dir,
            nspawn_lock,
            run: Arc::new((Mutex::new(Run::default()), Condvar::new())),
            thread: None,
            unpack_time: Duration::ZERO,
            boot_time: Duration::ZERO,
            boot_state: String::new(),
        }
    }

    /// A fresh copy of the cached root at `self.root`: an overlay on the
    /// unpacked cache, or, where overlayfs cannot be mounted, an unpacked copy.
    fn make_root(&self, tarball: &Path) {
        let lower = unpacked_root(tarball);
        for d in ["upper", "work", "root"] {
            fs::create_dir_all(self.dir.join(d)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let mounted = nix::mount::mount(
            Some("overlay"),
            &self.root,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(opts.as_str()),
        );
        if let Err(e) = mounted {
            eprintln!("systemd host {}: no overlayfs ({e}); unpacking a copy instead", self.name);
            unpack(tarball, &self.root);
        }
    }

    /// The nspawn command line (see the module's documentation).
    fn nspawn_command(&self) -> Command {
        let mut binds = vec![repo()];
        let bin_dir = Path::new(BIN).parent().unwrap().to_path_buf();
        if !bin_dir.starts_with(repo()) {
            binds.push(bin_dir);
        }
        // Join our own cgroups first, then become nspawn (a shell in
        // between, so nothing runs between fork and exec in the test).
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg("for c in $CGROUPS; do echo $$ > \"$c/cgroup.procs\" || exit 1; done; exec \"$@\"").arg("sh");
        cmd.arg("systemd-nspawn")
            .args(["-b", "-D"])
            .arg(&self.root)
            .args([
                "--capability=all",
                "--register=no",
                "--keep-unit",
                "--link-journal=no",
                "--private-network",
                "--console=read-only",
                "-M",
                &self.name,
            ])
            .args(binds.iter().map(|b| format!("--bind-ro={}", b.display())));
        cmd.env("CGROUPS", self.cgroups.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" "))
            // Its seccomp filter is not needed for a test host and stops
            // nested nspawn from setting up its own.
            .env("SYSTEMD_SECCOMP", "0")
            // Give the outer systemd a pure cgroup2 tree, as on a current host.
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs nspawn in a thread, starting it again when the host reboots
    /// (with `--keep-unit`, nspawn exits 133 on a reboot and expects its
    /// service manager to restart it, as systemd-nspawn@.service does).
    fn start_thread(&mut self) {
        let console = self.dir.join("console.log");
        let mut cmd = self.nspawn_command();
        let run = self.run.clone();
        let name = self.name.clone();
        self.thread = Some(std::thread::spawn(move || {
            loop {
                let log = OpenOptions::new().create(true).append(true).open(&console).unwrap();
                cmd.stdout(log.try_clone().unwrap()).stderr(log);
                let (lock, cvar) = &*run;
                let mut child = {
                    let mut r = lock.lock().unwrap();
                    if r.stopping {
                        r.exited = Some(ExitStatus::default());
                        cvar.notify_all();
                        return;
                    }
                    let child = match cmd.spawn() {
                        Ok(c) => c,
                        Err(e) => {
                            eprintln!("systemd host {name}: cannot start systemd-nspawn: {e}");
                            r.exited = Some(ExitStatus::default());
                            cvar.notify_all();
                            return;
                        }
                    };
                    r.nspawn = Some(child.id() as i32);
                    r.boots += 1;
                    cvar.notify_all();
                    child
                };
                let status = child.wait().expect("waiting for systemd-nspawn");
                let mut r = lock.lock().unwrap();
                r.nspawn = None;
                if status.code() != Some(133) || r.stopping {
                    r.exited = Some(status);
                    cvar.notify_all();
                    return;
                }
                cvar.notify_all();
            }
        }));
    }

    /// How many times nspawn was started: 1, plus one per reboot.
    pub fn boots(&self) -> u32 {
        self.run.0.lock().unwrap().boots
    }

    /// How nspawn ended, once it has for good.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.run.0.lock().unwrap().exited
    }

    /// The PID (on our side) of the host's init: the child of nspawn that is
    /// PID 1 in its own PID namespace.
    pub fn init_pid(&self) -> Option<i32> {
        let nspawn = self.run.0.lock().unwrap().nspawn?;
        let children = fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
        children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).find(|pid| {
            fs::read_to_string(format!("/proc/{pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .is_some_and(|ids| ids.split_whitespace().count() == 2 && ids.split_whitespace().last() == Some("1"))
        })
    }

    /// The last `n` lines of the host's console (for failure messages).
    pub fn console_tail(&self, n: usize) -> String {
        let text = fs::read(self.dir.join("console.log")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Waits until boot number `boot` has systemd report the system
    /// `running` or `degraded`, and returns which.
    fn wait_booted(&self, boot: u32) -> String {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut last = String::new();
        loop {
            if let Some(status) = self.exited() {
                panic!(
                    "cannot boot a systemd host: systemd-nspawn exited ({status}) before the system ran; its console:\n{}",
                    self.console_tail(40)
                );
            }
            if self.boots() >= boot && self.init_pid().is_some() {
                let out = self.raw_command("systemctl").arg("is-system-running").output().unwrap();
                last = String::from_utf8_lossy(&out.stdout).trim().to_string();
                match last.as_str() {
                    "running" => return last,
                    "degraded" => {
                        let failed = self.raw_command("systemctl").args(["--failed", "--no-pager"]).output().unwrap();
                        eprintln!(
                            "systemd host {}: booted degraded; failed units:\n{}",
                            self.name,
                            String::from_utf8_lossy(&failed.stdout)
                        );
                        return last;
                    }
                    _ => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "cannot boot a systemd host: not running after {} s (last state {last:?}); its console:\n{}",
                BOOT_TIMEOUT.as_secs(),
                self.console_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `program` in the host's namespaces (nsenter), with a clean
    /// environment, but in no unit of the host's systemd: for looking at
    /// the host even while its systemd does not answer. Processes it leaves
    /// behind are in the host's PID namespace and die with it.
    pub fn raw_command(&self, program: impl AsRef<OsStr>) -> Command {
        let init = self.init_pid().unwrap_or_else(|| panic!("systemd host {} is not running", self.name));
        let mut cmd = Command::new("nsenter");
        cmd.arg("-t").arg(init.to_string()).arg("-a").arg("--").arg(program);
        cmd.env_clear().env("PATH", PATH).env("HOME", "/root").env("LANG", "C.UTF-8").stdin(Stdio::null());
        cmd
    }

    /// `program` run as root in the host like an admin's command: in a
    /// transient scope of the host's systemd (`systemd-run --scope`), so
    /// that what it leaves running stays in a unit systemd knows, as with a
    /// command typed into a shell. Its stdout, stderr and exit code are the
    /// program's own.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.raw_command("systemd-run");
        cmd.args(["--scope", "--quiet", "--collect", "--"]).arg(program);
        cmd
    }

    /// `script` in a login session of its own (`su -l root -c`, through
    /// pam_systemd: a `session-N.scope` of logind, as an admin's login gets).
    pub fn session_command(&self, script: &str) -> Command {
        self.session_command_as("root", script)
    }

    /// `script` as `user` in a login session of its own.
    pub fn session_command_as(&self, user: &str, script: &str) -> Command {
        let mut cmd = self.raw_command("su");
        cmd.args(["-l", user, "-c", script]);
        cmd
    }

    /// Adds a user with a home directory (an admin who is not root).
    pub fn add_user(&self, user: &str) {
        self.sh_ok(&format!("useradd --create-home --shell /bin/bash {user}"));
    }

    /// Sets logind options (e.g. `KillUserProcesses=yes`) in a drop-in and
    /// restarts logind, which reads them only when it starts.
    pub fn set_logind(&self, settings: &[&str]) {
        self.sh_ok(&format!(
            "mkdir -p /etc/systemd/logind.conf.d && printf '[Login]\\n{}' > /etc/systemd/logind.conf.d/test.conf \
             && systemctl restart systemd-logind",
            settings.iter().map(|s| format!("{s}\\n")).collect::<String>()
        ));
    }

    /// Opens a login session of `user` (as `su -l` does) that lasts until
    /// it is ended (terminate-session, logout) or the `Session` is dropped.
    pub fn open_session(&self, user: &str) -> Session {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let marker = format!("/run/nc-test-session-{n}");
        assert!(user.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "user name {user:?}");
        // On a terminal (script's pty), as an admin logs in: logind then
        // makes it a `user` session, not a `background` one. The session ID
        // reaches a root-owned file through script's output.
        let script = format!("/var/lib/nc-test/session-{n}");
        let on_host = self.root.join(script.trim_start_matches('/'));
        fs::create_dir_all(on_host.parent().unwrap()).unwrap();
        fs::write(
            &on_host,
            format!("#!/bin/sh\nexec su -l {user} -c 'echo \"$XDG_SESSION_ID\"; exec sleep infinity'\n"),
        )
        .unwrap();
        fs::set_permissions(&on_host, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let child = super::KillOnDrop::spawn(
            self.raw_command("sh")
                .args(["-c", "exec script -qec \"$1\" /dev/null > \"$2\"", "sh", &script, &marker])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let id = super::wait_for(Duration::from_secs(60), || {
            let id =
                String::from_utf8_lossy(&self.raw_command("cat").arg(&marker).output().ok()?.stdout).trim().to_string();
            (!id.is_empty()).then_some(id)
        })
        .unwrap_or_else(|| panic!("systemd host {}: no login session for {user} within 60 s", self.name));
        let cgroup = self
            .sh_ok(&format!(
                "systemctl show -p ControlGroup --value \"$(loginctl show-session {id} -p Scope --value)\""
            ))
            .trim()
            .to_string();
        assert!(cgroup.ends_with(&format!("/session-{id}.scope")), "session {id} lives in {cgroup}");
        Session { id, cgroup, _su: child }
    }

    /// Logs `session` out: its shell ends, so su closes the PAM session
    /// (what logind then does with the session's other processes depends
    /// on KillUserProcesses=).
    pub fn logout(&self, session: &Session) {
        self.sh_ok(&format!("pkill -TERM -P \"$(loginctl show-session {} -p Leader --value)\"", session.id));
    }

    /// `program` as root inside `session` (its processes join the
    /// session's scope, as a command run with su or sudo from that login
    /// does), so that the session's end reaches it.
    pub fn command_in_session(&self, session: &Session, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = self.raw_command("sh");
        cmd.args(["-c", "echo $$ > \"/sys/fs/cgroup$0/cgroup.procs\" && exec \"$@\""])
            .arg(&session.cgroup)
            .arg(program);
        cmd
    }

    /// Runs `sh -c script` with `command` and returns its output.
    pub fn sh(&self, script: &str) -> Output {
        self.command("sh").args(["-c", script]).output().expect("running a command in the systemd host")
    }

    /// Runs `sh -c script` and fails the test unless it exits 0; returns stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in systemd host {}: `{script}` failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The project's binary, run in the host with `command`.
    pub fn tool(&self, args: &[&str]) -> Output {
        self.command(BIN).args(args).output().expect("running nixos-container in the systemd host")
    }

    /// Runs the project's binary and fails the test unless it exits 0; returns stdout.
    pub fn tool_ok(&self, args: &[&str]) -> String {
        let out = self.tool(args);
        assert!(
            out.status.success(),
            "in systemd host {}: nixos-container {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installs the project's binary, man pages, completions and units with
    /// `scripts/install` (into /usr/local; systemd reloaded, the boot-time
    /// auto-start enabled), as an admin would; returns the files it lists.
    pub fn install(&self) -> String {
        let out = self
            .command("bash")
            .arg(repo().join("scripts/install"))
            .env("NIXOS_CONTAINER_BIN", BIN)
            .output()
            .expect("running scripts/install in the systemd host");
        assert!(
            out.status.success(),
            "in systemd host {}: scripts/install failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Reboots the host (`systemctl reboot` inside) and waits until it runs
    /// again; checks that it really went down (a new init, /run emptied).
    pub fn reboot(&mut self) {
        let boots = self.boots();
        let old_init = self.init_pid();
        let started = Instant::now();
        self.sh_ok("echo before-reboot > /run/nixos-container-test-marker");
        // The command may die with the system it stops.
        let _ = self.raw_command("systemctl").arg("reboot").output();
        let (lock, cvar) = &*self.run;
        let r = cvar
            .wait_timeout_while(lock.lock().unwrap(), POWEROFF_TIMEOUT, |r| r.boots <= boots && r.exited.is_none())
            .unwrap()
            .0;
        let (rebooted, exited) = (r.boots > boots, r.exited);
        drop(r);
        assert!(
            exited.is_none(),
            "systemd host {}: nspawn exited ({exited:?}) instead of rebooting; console:\n{}",
            self.name,
            self.console_tail(30)
        );
        assert!(
            rebooted,
            "systemd host {}: no reboot within {} s; console:\n{}",
            self.name,
            POWEROFF_TIMEOUT.as_secs(),
            self.console_tail(30)
        );
        self.boot_state = self.wait_booted(boots + 1);
        assert_ne!(self.init_pid(), old_init, "the rebooted host has the old init");
        let marker = self.raw_command("test").args(["-e", "/run/nixos-container-test-marker"]).status().unwrap();
        assert!(!marker.success(), "/run survived the reboot: it did not happen");
        eprintln!(
            "systemd host {}: rebooted, {} after {:.1} s",
            self.name,
            self.boot_state,
            started.elapsed().as_secs_f64()
        );
    }

    /// Powers the host off (`systemctl poweroff` inside), waits until nspawn
    /// has exited and returns its exit status (0 for a clean poweroff).
    pub fn poweroff(&mut self) -> ExitStatus {
        let started = Instant::now();
        let _ = self.raw_command("systemctl").arg("poweroff").output();
        let status = self.wait_exit(POWEROFF_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "systemd host {}: still running {} s after poweroff; console:\n{}",
                self.name,
                POWEROFF_TIMEOUT.as_secs(),
                self.console_tail(30)
            )
        });
        eprintln!("systemd host {}: powered off ({status}) after {:.1} s", self.name, started.elapsed().as_secs_f64());
        status
    }

    /// Waits until nspawn has exited for good (not a reboot).
    pub fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let (lock, cvar) = &*self.run;
        cvar.wait_timeout_while(lock.lock().unwrap(), timeout, |r| r.exited.is_none()).unwrap().0.exited
    }

    /// What is left of this host on our side (empty once it is cleaned up):
    /// processes in its cgroups, the cgroups, mounts under and files of its
    /// directory, and nspawn's leftovers under /run/systemd/nspawn.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers(&self.name, &self.dir, &self.cgroups, &self.nspawn_lock)
    }

    /// Kills everything of the host and removes what it left (the guard).
    fn clean_up(&mut self) {
        {
            let mut r = self.run.0.lock().unwrap();
            r.stopping = true;
            if let Some(pid) = r.nspawn {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        // Everything of the host is in its cgroups: the outer systemd and
        // with it each of its processes, the nested guests too. Once its
        // init dies, the kernel kills the rest of its PID namespace.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for c in &self.cgroups {
                let _ = fs::write(c.join("cgroup.kill"), "1");
            }
            let pids = cgroup_pids(&self.cgroups);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for c in &self.cgroups {
            nixos_container::cgroup::remove_tree(c);
        }
        // nspawn's own leftovers: it does not remove these when killed.
        let _ = fs::remove_dir_all(Path::new("/run/systemd/nspawn/propagate").join(&self.name));
        if !self.nspawn_lock.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.nspawn_lock);
        }
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        if self.dir.exists() {
            // --one-file-system: never into a mount we failed to detach.
            let _ = Command::new("rm").arg("-rf").arg("--one-file-system").arg(&self.dir).status();
        }
    }
}

/// Removes what hosts of test processes that no longer run left behind
/// (a test binary killed with SIGKILL cannot run its guards). Hosts are
/// named `nc-host-PID-N` (PID in base 36); a host whose PID is alive is
/// left alone.
fn sweep_stale_hosts() {
    let mut names: Vec<String> = Vec::new();
    let roots = host_cgroups("x").into_iter().filter_map(|c| c.parent().map(Path::to_path_buf));
    for dir in roots.chain([PathBuf::from(HOSTS_DIR)]) {
        if let Ok(rd) = fs::read_dir(&dir) {
            names.extend(rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()));
        }
    }
    names.sort();
    names.dedup();
    for name in names {
        let Some(pid) = name.strip_prefix("nc-host-").and_then(|r| r.split('-').next()) else { continue };
        let Ok(pid) = u32::from_str_radix(pid, 36) else { continue };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        eprintln!("removing systemd host {name}, left by process {pid} which is gone");
        drop(SystemdHost::named(&name)); // its guard cleans up
    }
}

/// What is left of the systemd host `name` (see `SystemdHost::leftovers`).
pub fn leftovers(name: &str, dir: &Path, cgroups: &[PathBuf], nspawn_lock: &Path) -> Vec<String> {
    let mut left = Vec::new();
    left.extend(cgroup_pids(cgroups).iter().map(|p| format!("process {p}")));
    left.extend(cgroups.iter().filter(|c| c.exists()).map(|c| format!("cgroup {}", c.display())));
    left.extend(mounts_under(dir).into_iter().map(|m| format!("mount {m}")));
    if dir.symlink_metadata().is_ok() {
        left.push(format!("path {}", dir.display()));
    }
    let propagate = Path::new("/run/systemd/nspawn/propagate").join(name);
    if propagate.exists() {
        left.push(format!("path {}", propagate.display()));
    }
    if !nspawn_lock.as_os_str().is_empty() && nspawn_lock.exists() {
        left.push(format!("path {}", nspawn_lock.display()));
    }
    left
}

impl SystemdHost {
    /// What `leftovers` needs, to check after the host is dropped.
    pub fn trace(&self) -> (String, PathBuf, Vec<PathBuf>, PathBuf) {
        (self.name.clone(), self.dir.clone(), self.cgroups.clone(), self.nspawn_lock.clone())
    }
}

impl Drop for SystemdHost {
    fn drop(&mut self) {
        self.clean_up();
        let left = self.leftovers();
        if !left.is_empty() {
            let _ = writeln!(std::io::stderr(), "systemd host {}: left behind: {left:?}", self.name);
        }
    }
}

//! A hostile guest: real containers whose root attacks the host through
//! what the host does for it (issue 12; SECURITY.md is the threat model).
//! Each test performs one attack through `run` as the guest's root would,
//! then checks that the host gave nothing away.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn started(env: &Env, short: &str, extra: &[&str]) -> String {
    let name = env.name(short);
    env.create(&name, extra);
    env.ok(["start", &name]);
    name
}

/// Runs a shell script as the guest's root; fails the test unless it exits 0.
fn as_guest_root(env: &Env, name: &str, script: &str) -> String {
    env.ok(["run", name, "--", "sh", "-c", script])
}

/// Runs `argv` on the host as user nobody (a local user without privileges).
fn as_nobody(argv: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .output()
        .unwrap()
}

/// The test's base directory traversable by everyone, as /nix/var/nix and
/// /var/lib are on a real host, so that only the tool's own modes stand
/// between a local user and what is inside.
fn world_traversable(env: &Env) {
    std::fs::set_permissions(&env.base, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Class 1: a guest that removes or breaks its root-shell socket must not
/// make the host run anything in it with host powers (on main, `run`,
/// `root-login` and `update` then entered the namespaces from the host,
/// with host root's capabilities, no seccomp filter, the CLI's own
/// /proc/PID/exe, ...). Now they fail with an error that names the socket.
#[test]
fn a_guest_without_its_socket_gets_nothing_run_from_the_host() {
    let env = Env::new();
    let name = started(&env, "s1", &[]);
    let root = env.root(&name);
    // The guest breaks the way in.
    as_guest_root(&env, &name, "rm /var/lib/root-shell.socket");
    let attack = "touch /ran-from-host; grep -E '^(CapEff|Seccomp)' /proc/self/status";
    let out = env.run(["run", &name, "--", "sh", "-c", attack]);
    assert_eq!(out.status.code(), Some(1), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("/var/lib/root-shell.socket") && err.contains("guest/container-login.nix"), "{err}");
    assert!(err.contains("does not exist"), "says what is wrong: {err}");
    assert!(!root.join("ran-from-host").exists(), "nothing ran");

    // Broken rather than removed: a plain file where the socket was.
    std::fs::write(root.join("var/lib/root-shell.socket"), "").unwrap();
    let out = env.run(["root-login", &name]);
    assert_eq!(out.status.code(), Some(1), "stdout: {} stderr: {}", stdout(&out), stderr(&out));
    assert!(stderr(&out).contains("is not a socket"), "{}", stderr(&out));

    // update builds, then cannot activate: it says why, and ran nothing.
    let out = env.run(["update", &name]);
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("root-shell socket"), "{}", stderr(&out));
    assert!(!root.join("ran-from-host").exists());
    env.ok(["stop", &name]);
}

/// Class 1, the other door: a guest that keeps its socket but stops its
/// root shell from starting the agent (here: covering the agent's store
/// path with a file that is not executable) made `run --user` and `run -t`
/// take the host-side route on main. Now they are refused.
#[test]
fn a_guest_that_blocks_the_agent_gets_no_host_side_pty_or_user() {
    let env = Env::new();
    let name = started(&env, "s2", &[]);
    // The first run installs the agent; then the guest hides it.
    let agent = nixos_container::guest::agent::STORE_PATH;
    as_guest_root(
        &env,
        &name,
        &format!("touch /agent-cover && mount --bind /agent-cover {agent} && test ! -x {agent}"),
    );
    for args in [vec!["run", &name, "--user", "nobody", "--", "id", "-u"], vec!["run", &name, "-t", "--", "tty"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stdout: {} stderr: {}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains("needs the guest agent"), "{}", stderr(&out));
    }
    // Plain root commands still work, through the guest's root shell.
    assert_eq!(env.ok(["run", &name, "--", "echo", "plain"]), "plain\n");
    env.ok(["stop", &name]);
}

/// Class 2: a plain `update` must not evaluate a configuration.nix the
/// guest wrote (Nix code run as host root: it could read root-only host
/// files or run builders on the host). On main it built the guest's copy.
#[test]
fn update_never_evaluates_what_the_guest_wrote() {
    let env = Env::new();
    let secret = env.base.join("host-secret");
    std::fs::write(&secret, "HOST-SECRET-42").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let name = started(&env, "s3", &[]);
    let evil = format!(
        "{{ ... }}: {{ imports = [ ./nixos-container-guest.nix ]; boot.isContainer = true; \
         environment.etc.\"stolen\".text = builtins.readFile {}; }}",
        secret.display()
    );
    as_guest_root(&env, &name, &format!("cat > /etc/nixos/configuration.nix <<'EOF'\n{evil}\nEOF"));
    let out = env.run(["update", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains("HOST-SECRET"), "{all}");
    let stolen = env.run(["run", &name, "--", "cat", "/etc/stolen"]);
    assert!(!stdout(&stolen).contains("HOST-SECRET"), "the guest got the host's secret");

    // A container whose only configuration is the one inside its root
    // (made by an older version, or nixpkgs): refused, with the way out.
    std::fs::remove_dir_all(env.conf_dir().join(&name)).ok();
    let out = env.run(["update", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).contains("HOST-SECRET"), "{}", stderr(&out));
    assert!(stderr(&out).contains("--config-file"), "says how to adopt it: {}", stderr(&out));
    env.ok(["stop", &name]);
}

/// Class 2: `update --config-file F` reads F once and builds what it read;
/// a later change of F (say by the user who owns its directory) is not
/// evaluated by the next plain `update`. On main the configuration
/// imported F by path, and every later build read it again.
#[test]
fn a_config_file_is_read_once() {
    let env = Env::new();
    let name = env.name("s4");
    let file = env.base.join("web.nix");
    std::fs::write(&file, "{ environment.etc.\"which\".text = \"first\"; }\n").unwrap();
    env.create(&name, &["--config-file", file.to_str().unwrap()]);
    std::fs::write(&file, "{ environment.etc.\"which\".text = throw \"EVALUATED-THE-CHANGED-FILE\"; }\n").unwrap();
    let out = env.run(["update", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("EVALUATED-THE-CHANGED-FILE"));
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "--", "cat", "/etc/which"]), "first");
    env.ok(["stop", &name]);
}

/// Class 2: the profile and GC-roots directories are the host's. On main
/// they were bound read-write into the guest: a `system.lock` symlink made
/// host root create a file wherever it pointed at the next update, and a
/// set-uid binary left in the GC roots gave any local user euid 0.
#[test]
fn profiles_and_gc_roots_are_out_of_the_guests_reach() {
    let env = Env::new();
    world_traversable(&env);
    let name = started(&env, "s5", &[]);
    let target = env.base.join("created-by-host-root");
    let planted = as_guest_root(
        &env,
        &name,
        &format!(
            "r=''; ln -s {} /nix/var/nix/profiles/system.lock 2>/dev/null && r=lock; \
             cp /usr/bin/id /nix/var/nix/gcroots/id 2>/dev/null && chmod 4755 /nix/var/nix/gcroots/id && r=$r+suid; echo \"[$r]\"",
            target.display()
        ),
    );
    assert_eq!(planted, "[]\n", "the guest could write its profile or GC-roots directory");
    env.ok(["update", &name]);
    assert!(!target.exists(), "host root followed a guest's symlink");
    let suid = env.gcroots(&name).join("id");
    let out = as_nobody(&[suid.to_str().unwrap()]);
    assert!(!stdout(&out).contains("euid=0"), "{}", stdout(&out));
    for dir in [env.gcroots(&name), env.profile_dir(&name), env.base.join("gcroots"), env.base.join("profiles")] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
    env.ok(["stop", &name]);
}

/// Class 2: builds run in Nix's sandbox even when the admin's nix.conf
/// turned it off: a builder cannot see the host's files. On main the
/// tool left the setting to nix.conf.
#[test]
fn builds_are_sandboxed_whatever_nix_conf_says() {
    let env = Env::new();
    let marker = env.base.join("visible-to-builders");
    std::fs::write(&marker, "x").unwrap();
    let name = env.name("s6");
    let config = format!(
        "environment.etc.\"probe\".source = pkgs.runCommand \"probe\" {{}} ''if [ -e {} ]; then echo UNSANDBOXED-BUILD >&2; exit 1; fi; echo sandboxed > $out'';",
        marker.display()
    );
    let nixos = nixos_path();
    let out = env
        .command()
        .env("NIX_CONFIG", "substituters =\nsandbox = false\n")
        .args(["create", &name, "--nixos-path", nixos.to_str().unwrap(), "--bind-ro", "/usr", "--config", &config])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("UNSANDBOXED-BUILD"), "{}", stderr(&out));
}

/// A `nix-daemon` on the host's standard socket for one test, if the host
/// runs none (these machines do not): started here, stopped on drop.
struct HostDaemon(Option<KillOnDrop>);

impl HostDaemon {
    fn start() -> HostDaemon {
        let socket = Path::new("/nix/var/nix/daemon-socket/socket");
        if socket.exists() {
            return HostDaemon(None);
        }
        let child = KillOnDrop::spawn(
            Command::new("nix-daemon").stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()),
        );
        wait_for(std::time::Duration::from_secs(60), || socket.exists().then_some(())).expect("nix-daemon listens");
        HostDaemon(Some(child))
    }
}

impl Drop for HostDaemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file("/nix/var/nix/daemon-socket/socket");
            let _ = std::fs::remove_dir("/nix/var/nix/daemon-socket");
        }
    }
}

/// Class 6: the host's Nix daemon trusts root; a guest whose root is host
/// root must not get its socket (on main every guest did, and could add
/// paths to the host's store as a trusted user). With --private-users
/// (guest root is another uid to the daemon) or --nix-daemon it is there.
#[test]
fn the_nix_daemon_is_only_for_guests_whose_root_it_does_not_trust() {
    let env = Env::new();
    let _daemon = HostDaemon::start();
    let name = started(&env, "s9", &[]);
    let attack = "echo from-the-guest-$$ > /tmp/evil && NIX_REMOTE=daemon nix-store --add /tmp/evil";
    let out = env.run(["run", &name, "--", "sh", "-c", attack]);
    assert!(!stdout(&out).contains("/nix/store/"), "the guest added {} to the host's store", stdout(&out));
    assert_ne!(out.status.code(), Some(0));
    assert_eq!(as_guest_root(&env, &name, "test -e /nix/var/nix/daemon-socket/socket || echo none"), "none\n");
    env.ok(["stop", &name]);

    for (short, flag) in [("sa", "--nix-daemon"), ("sb", "--private-users")] {
        let name = started(&env, short, &[flag]);
        assert_eq!(
            as_guest_root(&env, &name, "test -S /nix/var/nix/daemon-socket/socket && echo there"),
            "there\n",
            "{flag}"
        );
        env.ok(["stop", &name]);
    }
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{}.conf", env.name("sa")))).unwrap();
    assert!(conf.contains("NIX_DAEMON=1\n"), "{conf}");
}

/// Path of a host file `rel` inside container `name`'s root.
fn in_root(env: &Env, name: &str, rel: &str) -> std::path::PathBuf {
    env.root(name).join(rel)
}

/// Class 5 (the broken-guest part): errors that say what the guest broke.
#[test]
fn a_broken_guest_gets_errors_that_say_what_is_wrong() {
    let env = Env::new();
    let name = started(&env, "s7", &[]);
    // /var/lib made a dangling symlink while the guest runs.
    as_guest_root(&env, &name, "mv /var/lib /var/lib.away && ln -s /nowhere /var/lib");
    let out = env.run(["run", &name, "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("/var/lib is a symlink to /nowhere, which does not exist"), "{}", stderr(&out));
    env.ok(["stop", &name]);
    // And at the next start.
    let out = env.run(["start", &name]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("/var/lib") && stderr(&out).contains("symlink to /nowhere"), "{}", stderr(&out));
    assert!(Path::new(&in_root(&env, &name, "var/lib.away")).exists());
}

/// Class 5: a --private-users guest without its socket gets the same
/// clear error (on main: a host-side entry that failed with EPERM).
#[test]
fn a_private_users_guest_without_its_socket_is_named() {
    let env = Env::new();
    let name = started(&env, "s8", &["--private-users"]);
    as_guest_root(&env, &name, "rm /var/lib/root-shell.socket");
    let out = env.run(["run", &name, "--", "true"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("/var/lib/root-shell.socket does not exist"), "{}", stderr(&out));
    env.ok(["stop", &name]);
}

/// The guest's /etc/nixos is the guest's: `update` (which holds the
/// container's lock) writes its copy there, and must neither block on a
/// FIFO nor open a device the guest swaps in for a configuration file
/// between any check and the open. Here the files flip between a FIFO and
/// a regular file all through the update.
#[test]
fn a_guest_fifo_in_etc_nixos_does_not_hang_update() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let env = Env::new();
    let name = env.name("s9");
    env.create(&name, &[]);
    let etc = env.root(&name).join("etc/nixos");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let flipper = {
        let (etc, stop) = (etc.clone(), stop.clone());
        std::thread::spawn(move || {
            let mode = nix::sys::stat::Mode::from_bits_truncate(0o644);
            while !stop.load(Ordering::Relaxed) {
                for f in ["configuration.nix", "nixos-container-guest.nix", "config-file.nix"] {
                    let (fifo, file) = (etc.join(".fifo"), etc.join(".file"));
                    let _ = std::fs::write(&file, "{ }");
                    let _ = std::fs::rename(&file, etc.join(f));
                    let _ = nix::unistd::mkfifo(&fifo, mode);
                    let _ = std::fs::rename(&fifo, etc.join(f));
                }
            }
        })
    };
    let mut child =
        KillOnDrop::spawn(env.command().args(["update", &name, "--config", "environment.etc.\"x\".text = \"1\";"]));
    let status = child.wait_timeout(std::time::Duration::from_secs(300));
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    let status = status.expect("update hung on the guest's /etc/nixos");
    assert!(status.success(), "{status}");
}

/// A guest whose /var/lib is a symlink that means a path inside its root
/// (here /persist/var/lib, as impermanence setups do) starts: the
/// readiness watch is put on the directory inside the root, never on what
/// the link names on the host (where /persist/var/lib need not exist).
#[test]
fn a_guest_whose_var_lib_is_a_symlink_inside_its_root_starts() {
    let env = Env::new();
    let name = env.name("sa");
    env.create(&name, &[]);
    let root = env.root(&name);
    std::fs::create_dir_all(root.join("persist/var")).unwrap();
    std::fs::create_dir_all(root.join("var")).unwrap();
    if root.join("var/lib").exists() {
        std::fs::rename(root.join("var/lib"), root.join("persist/var/lib")).unwrap();
    } else {
        std::fs::create_dir(root.join("persist/var/lib")).unwrap();
    }
    std::os::unix::fs::symlink("/persist/var/lib", root.join("var/lib")).unwrap();
    assert!(!Path::new("/persist/var/lib").exists(), "the host has /persist/var/lib: the test proves nothing");
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "--", "readlink", "/var/lib"]), "/persist/var/lib\n");
    env.ok(["stop", &name]);
}

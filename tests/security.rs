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
    as_guest_root(&env, &name, &format!("touch /agent-cover && mount --bind /agent-cover {agent} && test ! -x {agent}"));
    for args in [vec!["run", &name, "--user", "nobody", "--", "id", "-u"], vec!["run", &name, "-t", "--", "tty"]] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: stdout: {} stderr: {}", stdout(&out), stderr(&out));
        assert!(stderr(&out).contains("needs the guest agent"), "{}", stderr(&out));
    }
    // Plain root commands still work, through the guest's root shell.
    assert_eq!(env.ok(["run", &name, "--", "echo", "plain"]), "plain\n");
    env.ok(["stop", &name]);
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

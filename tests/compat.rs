//! What nixpkgs' scripts, tests and clients rely on: exit codes and output
//! for containers that do not exist, names nixpkgs allowed, confs nixpkgs
//! (or a damaged disk) wrote, nspawn's leftovers.

mod common;

use common::*;

#[test]
fn destroying_a_missing_container_succeeds_and_its_status_is_gone() {
    let env = Env::new();
    let out = env.run(["destroy", "ghost"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "container 'ghost' does not exist; nothing to destroy\n");
    assert_eq!(env.run(["-q", "destroy", "--yes", "ghost"]).stderr, b"");

    let out = env.run(["status", "ghost"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "gone\n");
    assert_eq!(stderr(&out), "error: container 'ghost' does not exist (see 'nixos-container list')\n");
}

#[test]
fn run_takes_its_command_without_dashes() {
    let env = Env::new();
    let name = env.name("run");
    env.create(&name, &["--system-path", &build_system(&[])]);
    // Parsed as NAME then COMMAND: the container is found, and is down.
    let out = env.run(["run", &name, "ls", "-l"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = env.run(["run", &name]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs a COMMAND after NAME"), "{}", stderr(&out));
}

/// A container as nixpkgs' create makes it: a conf and a profile, under a
/// name with '_' that our create refuses.
#[test]
fn a_container_with_an_underscore_is_listed_inspected_and_destroyed() {
    let env = Env::new();
    let valid = env.name("u");
    let name = valid.replace('-', "_");
    env.track(&name);
    let out = env.run(["create", &name, "--system-path", &build_system(&[])]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'_' (systemd-nspawn refuses it in machine names; use '-')"), "{}", stderr(&out));

    // Made by hand as nixpkgs would: conf, profile, root.
    env.create(&valid, &["--system-path", &build_system(&[])]);
    for (from, to) in [
        (env.conf_dir().join(format!("{valid}.conf")), env.conf_dir().join(format!("{name}.conf"))),
        (env.root(&valid), env.root(&name)),
        (env.profile_dir(&valid), env.profile_dir(&name)),
        (env.gcroots(&valid), env.gcroots(&name)),
    ] {
        std::fs::rename(from, to).unwrap();
    }
    let listed = env.ok(["list"]);
    assert!(listed.lines().any(|l| l == name), "{listed}");
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert_eq!(env.ok(["show-ip", &name]), format!("10.{}.1.2\n", env.pool));
    assert!(env.ok(["generations", &name]).contains("(current)"));

    let out = env.run(["start", &name]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("systemd-nspawn refuses '_' in machine names, so this container cannot start"));
    assert!(processes_of(&name).is_empty());

    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
    assert_eq!(env.ok(["list"]), "");
}

#[test]
fn terminate_and_destroy_leave_no_nspawn_lock() {
    let env = Env::new();
    let name = env.name("lck");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let lck = env.base.join("state").join(format!(".#{name}.lck"));
    env.ok(["start", &name]);
    env.ok(["terminate", &name]);
    assert!(!lck.exists(), "terminate left {}", lck.display());
    env.ok(["start", &name]);
    env.ok(["destroy", &name]);
    assert!(!lck.exists(), "destroy left {}", lck.display());
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

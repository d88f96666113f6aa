//! Races, crashes and hung guests, against real containers.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;

/// The supervisors (`nixos-container __supervise NAME`) of a container.
fn supervisors_of(name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.len() > 2 && args[1] == b"__supervise" && args[2] == name.as_bytes() {
            found.push(pid);
        }
    }
    found
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
}

fn nspawns_of(name: &str) -> usize {
    processes_of(name).into_iter().filter(|p| comm(*p) == "systemd-nspawn").count()
}

#[test]
fn parallel_creates_never_share_a_name_or_an_address() {
    let env = Env::new();
    let base = env.name("par");
    let system = build_system(&[]);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            KillOnDrop::spawn(
                env.command()
                    .args(["create", &base, "--ensure-unique-name", "--system-path", &system])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped()),
            )
        })
        .collect();
    let mut names = HashSet::new();
    for h in handles {
        let out = h.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let name = stdout(&out).trim().to_string();
        env.track(&name);
        assert!(names.insert(name.clone()), "{name} chosen twice");
    }
    assert_eq!(names.len(), 8);
    let addresses: HashSet<String> = names.iter().map(|n| env.ok(["show-ip", n])).collect();
    assert_eq!(addresses.len(), 8, "{addresses:?}");
    let hosts: HashSet<String> = names
        .iter()
        .map(|n| {
            let conf = std::fs::read_to_string(env.conf_dir().join(format!("{n}.conf"))).unwrap();
            conf.lines().find(|l| l.starts_with("HOST_ADDRESS=")).unwrap().to_string()
        })
        .collect();
    assert_eq!(hosts.len(), 8);
}

#[test]
fn parallel_starts_give_one_container() {
    let env = Env::new();
    let name = env.name("race");
    env.create(&name, &[]);
    let starts: Vec<_> = (0..4)
        .map(|_| KillOnDrop::spawn(env.command().args(["start", &name]).stderr(std::process::Stdio::piped())))
        .collect();
    for s in starts {
        let out = s.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(nspawns_of(&name), 1);
    assert_eq!(supervisors_of(&name).len(), 1);
    assert_eq!(env.ok(["run", &name, "--", "echo", "one"]), "one\n");
    env.ok(["stop", &name]);
    assert!(supervisors_of(&name).is_empty());
}

#[test]
fn destroy_during_start_waits_and_cleans_up() {
    let env = Env::new();
    let name = env.name("dds");
    env.create(&name, &[]);
    let start = KillOnDrop::spawn(
        env.command().args(["start", &name]).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()),
    );
    wait_for(Duration::from_secs(60), || (!processes_of(&name).is_empty()).then_some(()))
        .expect("the container's processes appear");
    env.ok(["destroy", &name]);
    // start holds the container's lock until the guest is up, and destroy
    // waits for that lock: start succeeds (quietly), then destroy removes it.
    let started = start.wait_with_output().unwrap();
    assert!(started.status.success(), "start: {}: {}", started.status, stderr(&started));
    assert_eq!((stdout(&started), stderr(&started)), (String::new(), String::new()));
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
    assert!(supervisors_of(&name).is_empty());
}

/// Kills the CLI with SIGKILL at `point` during `args`.
fn crash(env: &Env, point: &str, args: &[&str]) {
    let out = env.command().env("NIXOS_CONTAINER_CRASH_AT", point).args(args).output().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(9), "{point}: the CLI should have died there: {}", stderr(&out));
}

#[test]
fn a_start_killed_at_any_point_is_repaired_by_the_next_command() {
    let env = Env::new();
    let name = env.name("kill");
    env.create(&name, &[]);
    for point in ["start-locked", "start-prepared", "start-launched"] {
        crash(&env, point, &["start", &name]);
        // stop repairs whatever is there, then start works.
        env.ok(["stop", &name]);
        assert!(processes_of(&name).is_empty(), "{point}: processes after stop");
        assert!(supervisors_of(&name).is_empty(), "{point}: supervisor after stop");
        env.ok(["start", &name]);
        assert_eq!(env.ok(["run", &name, "--", "echo", point]), format!("{point}\n"));
        assert_eq!(nspawns_of(&name), 1);
        env.ok(["stop", &name]);
        assert!(processes_of(&name).is_empty());
        assert!(cgroup_dirs(&name).is_empty(), "{point}: cgroups left");
    }
    // A start killed while waiting leaves a booting container that a second
    // start recognises as running.
    crash(&env, "start-launched", &["start", &name]);
    env.ok(["start", &name]);
    assert_eq!(nspawns_of(&name), 1);
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

#[test]
fn a_killed_supervisor_does_not_lose_the_container() {
    let env = Env::new();
    let name = env.name("orphan");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    for pid in supervisors_of(&name) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    }
    wait_for(Duration::from_secs(60), || supervisors_of(&name).is_empty().then_some(()))
        .expect("the killed supervisor is gone");
    // Still up: its processes live on; stop takes them down all the same.
    assert_eq!(env.ok(["status", &name]), "up\n");
    env.ok(["stop", &name]);
    assert!(processes_of(&name).is_empty());
    assert!(cgroup_dirs(&name).is_empty());
    env.ok(["start", &name]);
    assert_eq!(supervisors_of(&name).len(), 1);
}

#[test]
fn a_create_killed_half_way_is_repaired() {
    let env = Env::new();
    for point in ["create-reserved", "create-built"] {
        let name = env.name(point);
        crash(&env, point, &["create", &name, "--nixos-path", nixos_path().to_str().unwrap(), "--bind-ro", "/usr"]);
        assert_eq!(env.ok(["list"]), "", "{point}: an unfinished container is not listed");
        // The same create again repairs and succeeds.
        env.create(&name, &[]);
        assert_eq!(env.ok(["list"]), format!("{name}\n"));
        env.ok(["destroy", &name]);
        assert_eq!(env.leftovers(&name), Vec::<String>::new());
        // destroy alone also removes the remains.
        crash(&env, point, &["create", &name, "--nixos-path", nixos_path().to_str().unwrap(), "--bind-ro", "/usr"]);
        env.ok(["destroy", &name]);
        assert_eq!(env.leftovers(&name), Vec::<String>::new());
        assert!(!env.conf_dir().join(format!("{name}.conf.creating")).exists());
    }
}

#[test]
fn a_destroy_or_stop_killed_half_way_is_finished_by_the_next() {
    let env = Env::new();
    let name = env.name("halfd");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    crash(&env, "stop-signalled", &["stop", &name]);
    env.ok(["stop", &name]);
    assert!(processes_of(&name).is_empty());
    for point in ["destroy-stopped", "destroy-files"] {
        env.ok(["start", &name]);
        crash(&env, point, &["destroy", &name]);
        assert!(processes_of(&name).is_empty(), "{point}");
        env.ok(["destroy", &name]);
        assert_eq!(env.leftovers(&name), Vec::<String>::new());
        env.create(&name, &[]);
    }
}

#[test]
fn stop_timeout_holds_against_a_guest_that_will_not_halt() {
    let env = Env::new();
    let name = env.name("stub");
    env.create(&name, &["--config-file", fixture("stubborn.nix").to_str().unwrap()]);
    env.ok(["start", &name]);
    // Let the stubborn service start.
    let up = wait_for(Duration::from_secs(60), || {
        let o = env.run(["run", &name, "--", "systemctl", "is-active", "stubborn"]);
        (stdout(&o) == "active\n").then_some(())
    });
    assert!(up.is_some(), "the stubborn service runs");
    let t = Instant::now();
    env.ok(["stop", &name, "--timeout", "5"]);
    let took = t.elapsed();
    // (Without the timeout it would wait forever: the bound leaves room
    // for a busy machine.)
    assert!(took < Duration::from_secs(45), "stop --timeout 5 took {took:?}");
    // The guest was given its 5 s to halt before it was killed.
    assert!(took >= Duration::from_millis(4500), "stop --timeout 5 killed after {took:?}");
    assert!(processes_of(&name).is_empty());
    assert_eq!(env.ok(["status", &name]), "down\n");
}

#[test]
fn a_garbage_conf_line_names_the_file() {
    let env = Env::new();
    let name = env.name("garbage");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let conf = env.conf_dir().join(format!("{name}.conf"));
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("this is not a conf line\n");
    std::fs::write(&conf, &text).unwrap();
    for cmd in ["status", "start", "show-ip"] {
        let out = env.run([cmd, &name]);
        assert_eq!(out.status.code(), Some(1), "{cmd}");
        let line_no = text.lines().count();
        assert_eq!(
            stderr(&out),
            format!("error: {}:{line_no}: expected KEY=VALUE, found 'this is not a conf line'\n", conf.display())
        );
    }
    assert!(processes_of(&name).is_empty());
}

#[test]
fn soak_start_run_stop_leaks_nothing() {
    let env = Env::new();
    let name = env.name("soak");
    env.create(&name, &[]);
    let cycles: usize = std::env::var("SOAK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut supervisor_fds = None;
    for i in 0..cycles {
        env.ok(["start", &name]);
        assert_eq!(env.ok(["run", &name, "--", "echo", &i.to_string()]), format!("{i}\n"));
        let sup = supervisors_of(&name);
        assert_eq!(sup.len(), 1, "cycle {i}");
        let fds = std::fs::read_dir(format!("/proc/{}/fd", sup[0])).unwrap().count();
        assert_eq!(*supervisor_fds.get_or_insert(fds), fds, "cycle {i}: the supervisor's fds grow");
        env.ok(["stop", &name]);
        assert!(processes_of(&name).is_empty(), "cycle {i}");
        assert!(supervisors_of(&name).is_empty(), "cycle {i}");
        assert!(cgroup_dirs(&name).is_empty(), "cycle {i}");
        assert!(mounts_under(&env.base).is_empty(), "cycle {i}: {:?}", mounts_under(&env.base));
    }
}

#[test]
fn start_does_not_keep_the_callers_files_open() {
    let env = Env::new();
    let name = env.name("fds");
    env.create(&name, &[]);
    let lock = env.base.join("script.lock");
    // A script that holds a lock on fd 9 while it starts the container.
    let script = format!("exec 9>{}; flock 9; {}", lock.display(), env.shell_command(&["start", &name]));
    let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(env.ok(["status", &name]), "up\n");
    // The script is gone; its lock must be free, not held by the supervisor.
    let free = std::process::Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap();
    assert!(free.success(), "the supervisor kept the caller's lock file open");
    env.ok(["stop", &name]);
}

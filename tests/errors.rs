//! The wording and exit codes of the common failures: what an admin sees.

mod common;

use std::process::Command;

use common::*;

/// Runs the CLI as the unprivileged user nobody.
fn as_nobody(env: &Env, args: &[&str]) -> std::process::Output {
    // The test's directories are private to root, and so may be the build
    // directory: give nobody a copy of the binary it can execute.
    let bin = env.base.join("nobody-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let copy = bin.join("nixos-container");
    if !copy.exists() {
        std::fs::copy(BIN, &copy).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&env.base, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Another test's fork may briefly hold the copy open for writing
    // ("Text file busy"): try again, for as long as a busy machine may
    // take to get that fork to its exec.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(&copy)
            .args(args)
            .envs(env.vars())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        if !stderr(&out).contains("Text file busy") || std::time::Instant::now() >= deadline {
            return out;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Asserts the exit code and the exact stderr.
fn expect(out: &std::process::Output, code: i32, message: &str) {
    assert_eq!((out.status.code(), stderr(out).as_str()), (Some(code), message), "stdout: {}", stdout(out));
}

#[test]
fn unknown_container() {
    let env = Env::new();
    let msg = "error: container 'ghost' does not exist (see 'nixos-container list')\n";
    for args in [
        &["start", "ghost"][..],
        &["stop", "ghost"],
        &["terminate", "ghost"],
        &["restart", "ghost"],
        &["status", "ghost", "--json"],
        &["show-ip", "ghost"],
        &["show-host-key", "ghost"],
        &["run", "ghost", "--", "true"],
        &["run", "ghost", "true"],
        &["update", "ghost"],
        &["generations", "ghost"],
    ] {
        expect(&env.run(args), 3, msg);
    }
}

#[test]
fn not_root() {
    let env = Env::new();
    let msg = "error: this command needs root: run it as root (e.g. with sudo)\n";
    for args in [
        &["start", "web"][..],
        &["stop", "web"],
        &["start", "--all"],
        &["destroy", "--yes", "web"],
        &["create", "web"],
        &["run", "web", "--", "true"],
    ] {
        expect(&as_nobody(&env, args), 1, msg);
    }
}

#[test]
fn bad_names() {
    let env = Env::new();
    expect(
        &env.run(["create", "a_b"]),
        2,
        "error: invalid container name 'a_b': it contains '_' (systemd-nspawn refuses it in machine names; use '-'); use letters, digits and '-'\n",
    );
    expect(
        &env.run(["status", "a.b"]),
        2,
        "error: invalid container name 'a.b': it contains '.'; use letters, digits and '-'\n",
    );
    expect(
        &env.run(["create", "web-", "--config", ""]),
        2,
        "error: invalid container name 'web-': it must start and end with a letter or digit\n",
    );
}

#[test]
fn usage_errors_are_two_lines() {
    let env = Env::new();
    expect(
        &env.run(["frobnicate"]),
        2,
        "error: unrecognized subcommand 'frobnicate' (a similar subcommand exists: 'terminate')\n\
         usage: nixos-container [OPTIONS] <COMMAND> (see --help)\n",
    );
    // The best match first (clap lists it last), and the names incus and
    // machinectl users type are understood.
    expect(
        &env.run(["strat"]),
        2,
        "error: unrecognized subcommand 'strat' (some similar subcommands exist: 'start', 'restart', 'status', 'terminate', 'create')\n\
         usage: nixos-container [OPTIONS] <COMMAND> (see --help)\n",
    );
    for args in [&["exec", "ghost", "--", "true"][..], &["shell", "ghost"]] {
        let out = env.run(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
    }
    expect(
        &env.run(["start", "--tiemout", "3", "web"]),
        2,
        "error: unexpected argument '--tiemout' found (a similar argument exists: '--timeout')\n\
         usage: nixos-container start --timeout <SECONDS> [NAME] (see --help)\n",
    );
    expect(
        &env.run(["create", "web", "--host-address", "10.1.1.1"]),
        2,
        "error: the following required arguments were not provided: --local-address <ADDR>\n\
         usage: nixos-container create --local-address <ADDR> --host-address <ADDR> <NAME> (see --help)\n",
    );
    expect(
        &env.run(["stop", "--timeout", "soon", "web"]),
        2,
        "error: invalid value 'soon' for '--timeout <SECONDS>': 'soon' is not a number of seconds\n",
    );
    // Without a terminal nobody can be asked for a missing NAME.
    for args in [&["start"][..], &["stop"], &["run", "--", "true"]] {
        expect(
            &env.run(args),
            2,
            &format!(
                "error: 'nixos-container {}' needs a container NAME ('nixos-container list' shows them)\n",
                args[0]
            ),
        );
    }
    // Help and version are not errors.
    let help = env.run(["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(stdout(&help).contains("Exit status"), "{}", stdout(&help));
    assert_eq!(env.run(["--version"]).status.code(), Some(0));
}

#[test]
fn missing_programs_and_stopped_containers() {
    let env = Env::new();
    let name = env.name("err");
    env.create(&name, &[]);
    let empty = env.base.join("empty-path");
    std::fs::create_dir_all(&empty).unwrap();

    // systemd-nspawn not on PATH: said before anything is set up.
    let out = env.command().env("PATH", &empty).args(["start", &name]).output().unwrap();
    expect(&out, 1, "error: systemd-nspawn not found: install systemd-container (the same version as systemd)\n");
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty());

    // Nix not on PATH: create fails and leaves nothing.
    let other = env.name("nonix");
    let out = env.command().env("PATH", &empty).args(["create", &other, "--config", ""]).output().unwrap();
    expect(&out, 1, "error: nix-env not found: install Nix (on Debian: apt-get install nix-bin) or put it on PATH\n");
    assert_eq!(env.leftovers(&other), Vec::<String>::new());

    // Commands that need a running guest.
    let not_running =
        format!("error: container '{name}' is not running (start it with 'nixos-container start {name}')\n");
    expect(&env.run(["run", &name, "--", "true"]), 4, &not_running);
    expect(&env.run(["show-host-key", &name]), 4, &not_running);

    // Start of a running container and stop of a stopped one succeed.
    let out = env.run(["stop", &name]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), format!("container '{name}' is not running\n"));
    assert_eq!(env.run(["-q", "stop", &name]).stderr, b"");
}

#[test]
fn a_closed_pipe_ends_list_quietly() {
    // `nixos-container list | head -1` with many containers: no error about
    // the pipe, as with other Unix tools.
    let env = Env::new();
    std::fs::create_dir_all(env.conf_dir()).unwrap();
    for i in 0..5000 {
        std::fs::write(env.conf_dir().join(format!("c{i}.conf")), "PRIVATE_NETWORK=0\n").unwrap();
    }
    let mut child = env
        .command()
        .arg("list")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(stderr(&out), "");
}

#[test]
fn bad_settings_are_refused_by_create_not_at_start() {
    let env = Env::new();
    let name = env.name("bad");
    let nixos = nixos_path();
    let create = |extra: &[&str]| {
        let mut args = vec!["create", name.as_str(), "--nixos-path", nixos.to_str().unwrap()];
        args.extend_from_slice(extra);
        env.run(args)
    };
    let h = format!("10.{}.9.1", env.pool);
    for (extra, message) in [
        (
            vec!["--port", "sctp:80"],
            "error: invalid port 'sctp:80': 'sctp' is not a protocol for port forwards: use tcp or udp\n".to_string(),
        ),
        (
            vec!["--port", "8080:80", "--port", "tcp:8080:81"],
            "error: invalid port 'tcp:8080:81': host port 8080 is forwarded twice (tcp:8080:80 and tcp:8080:81); forward each host port once\n".into(),
        ),
        (
            vec!["--host-address", &h, "--local-address", &h],
            format!("error: invalid local address '{h}': it is the host side's address too; the two ends need different addresses (e.g. {h} and another)\n"),
        ),
        (
            vec!["--bridge", "nxbr-none"],
            "error: invalid bridge 'nxbr-none': no such interface on this host; create the bridge first (ip link add NAME type bridge) or see 'ip link show type bridge'\n".into(),
        ),
        (
            vec!["--bridge", "lo"],
            "error: invalid bridge 'lo': this interface is not a bridge (see 'ip link show type bridge')\n".into(),
        ),
        (
            vec!["--bind", "/tmp:/srv:ro"],
            "error: invalid bind '/tmp:/srv:ro': unknown bind option 'ro' (systemd-nspawn knows rbind, norbind, idmap, noidmap, rootidmap, owneridmap)\n".into(),
        ),
        (
            vec!["--memory-max", "512"],
            "error: invalid value '512' for '--memory-max <SIZE>': '512' is not a usable memory limit (at least 1M; e.g. 512M, 2G)\n".into(),
        ),
    ] {
        let out = create(&extra);
        assert_eq!((out.status.code(), stderr(&out)), (Some(2), message.clone()), "{extra:?}");
        assert!(!env.conf_dir().join(format!("{name}.conf")).exists(), "{extra:?}: nothing written");
        assert!(!env.root(&name).exists(), "{extra:?}: nothing written");
    }
}

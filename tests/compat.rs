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

fn conf_text(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap()
}

fn configuration_nix(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.root(name).join("etc/nixos/configuration.nix")).unwrap()
}

/// A copy of the stand-in NixOS that says it is release `release`.
fn stand_in_of_release(env: &Env, release: &str) -> std::path::PathBuf {
    let dir = env.base.join(format!("nixos-{release}"));
    assert!(cmd_ok("cp", &["-r", nixos_path().to_str().unwrap(), dir.to_str().unwrap()]));
    let version = dir.join("modules/misc/version.nix");
    let text = std::fs::read_to_string(&version).unwrap();
    assert!(text.contains("default = \"25.05\";"));
    std::fs::write(&version, text.replace("default = \"25.05\";", &format!("default = \"{release}\";"))).unwrap();
    dir
}

#[test]
fn a_config_with_a_comment_builds_and_the_state_version_stays_frozen() {
    let env = Env::new();
    let name = env.name("sv");
    env.create(&name, &["--config", "environment.etc.flavour.text = \"one\"; # a trailing comment"]);
    let flavour = || std::fs::read_to_string(env.profile_dir(&name).join("system/etc/flavour")).unwrap();
    assert_eq!(flavour(), "one");
    // The stand-in's release, as nixos-generate-config would write it.
    let line = "  system.stateVersion = lib.mkDefault \"25.05\";\n";
    assert!(configuration_nix(&env, &name).contains(line), "{}", configuration_nix(&env, &name));
    assert!(conf_text(&env, &name).contains("\nSTATE_VERSION=25.05\n"), "{}", conf_text(&env, &name));

    // Built with a newer NixOS, the container keeps the release it was created with.
    let newer = stand_in_of_release(&env, "26.11");
    env.ok([
        "update",
        &name,
        "--nixos-path",
        newer.to_str().unwrap(),
        "--option",
        "cores",
        "1",
        "--config",
        "environment.etc.flavour.text = \"two\"; # another comment",
    ]);
    assert_eq!(flavour(), "two");
    assert!(configuration_nix(&env, &name).contains(line), "{}", configuration_nix(&env, &name));
    assert!(conf_text(&env, &name).contains("\nSTATE_VERSION=25.05\n"));

    // A new container built with it gets its release.
    let other = env.name("sv2");
    env.ok(["create", &other, "--nixos-path", newer.to_str().unwrap(), "--bind-ro", "/usr"]);
    assert!(configuration_nix(&env, &other).contains("system.stateVersion = lib.mkDefault \"26.11\";"));
}

#[test]
fn nix_flags_pass_through_to_the_build() {
    let env = Env::new();
    let name = env.name("nf");
    let flake = env.base.join("flake");
    write_flake(&flake, &[("container", "{ boot.isContainer = true; }")]);
    let flake_arg = flake.to_str().unwrap();
    let out = env.run([
        "create",
        &name,
        "--flake",
        flake_arg,
        "--no-write-lock-file",
        "--impure",
        "--option",
        "cores",
        "1",
        "--option",
        "max-jobs",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!flake.join("flake.lock").exists(), "--no-write-lock-file reached nix build");

    // --override-input: the container's nixpkgs replaced by another release.
    let newer = stand_in_of_release(&env, "26.11");
    let out = env.run([
        "update",
        &name,
        "--override-input",
        "nixpkgs",
        &format!("path:{}", newer.display()),
        "--no-write-lock-file",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let release = std::fs::read_to_string(env.profile_dir(&name).join("system/etc/os-release")).unwrap();
    assert!(release.contains("VERSION_ID=\"26.11\""), "{release}");
    assert!(!flake.join("flake.lock").exists());

    // The other flags reach nix build as given (`-v` shows what runs), and
    // --log-format has its effect: Nix's JSON log lines.
    let out = env.run([
        "update",
        &name,
        "-v",
        "--no-write-lock-file",
        "--no-registries",
        "--no-allow-dirty",
        "--log-format",
        "internal-json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--log-format internal-json --no-write-lock-file --no-registries --no-allow-dirty"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("@nix {"), "{}", stderr(&out));
    let out = env.run(["update", &name, "-v", "--no-update-lock-file", "--no-write-lock-file"]);
    assert!(stderr(&out).contains(" --no-write-lock-file --no-update-lock-file "), "{}", stderr(&out));

    // Flake-only flags on a build that is not from a flake.
    let out = env.run(["create", &env.name("nf2"), "--config", "", "--update-input", "nixpkgs"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "error: --update-input applies to flake builds only (--flake, or a container created from one)\n"
    );
}
/// A byte that is not UTF-8 (a damaged file, or a Latin-1 path) in a conf.
#[test]
fn a_conf_that_is_not_utf8_or_does_not_parse_can_still_be_destroyed() {
    let env = Env::new();
    let name = env.name("bin");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let conf = env.conf_dir().join(format!("{name}.conf"));
    let mut text = std::fs::read(&conf).unwrap();
    text.extend_from_slice(b"# caf\xe9\nNOTE=\"caf\xe9\"\n");
    std::fs::write(&conf, &text).unwrap();
    // Read as bytes: nothing fails, the byte is kept when the conf is rewritten.
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(env.ok(["list"]).contains(&name));
    env.ok(["update", &name, "--system-path", &build_system(&[])]);
    let needle = b"NOTE=\"caf\xe9\"\n";
    assert!(std::fs::read(&conf).unwrap().windows(needle.len()).any(|w| w == needle));

    // A conf that does not parse at all: destroy still removes the container.
    std::fs::write(&conf, b"PRIVATE_NETWORK=1\n\xff\xfe garbage\n").unwrap();
    let out = env.run(["status", &name]);
    assert_eq!(out.status.code(), Some(1));
    let out = env.run(["destroy", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("{name}.conf:2")) && err.contains("without reading its conf"), "{err}");
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

/// A Latin-1 directory name is a valid Linux path: bound into a guest.
#[test]
fn a_bind_whose_path_is_not_utf8_is_mounted() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let name = env.name("l1");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let dir = env.base.join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("menu"), "espresso\n").unwrap();
    let conf = env.conf_dir().join(format!("{name}.conf"));
    let mut text = std::fs::read(&conf).unwrap();
    text.extend_from_slice(b"BINDS=\"");
    text.extend_from_slice(dir.as_os_str().as_bytes());
    text.extend_from_slice(b":/data\"\n");
    std::fs::write(&conf, &text).unwrap();
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "cat", "/data/menu"]), "espresso\n");
    env.ok(["destroy", &name]);
    assert_eq!(std::fs::read_to_string(dir.join("menu")).unwrap(), "espresso\n", "bound data survives destroy");
}

/// Network objects a test makes for itself; removed on drop.
#[derive(Default)]
struct Made {
    netns: Vec<String>,
    links: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = std::process::Command::new("ip").args(["link", "del", l]).status();
        }
        for n in &self.netns {
            let _ = std::process::Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

fn sh(args: &[&str]) -> String {
    let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

#[test]
fn a_bridged_container_needs_no_host_address() {
    let env = Env::new();
    let mut made = Made::default();
    let bridge = format!("ncbr{}", env.pool);
    sh(&["ip", "link", "add", &bridge, "type", "bridge"]);
    made.links.push(bridge.clone());
    let gw = format!("10.{}.253.1", env.pool);
    let local = format!("10.{}.253.7", env.pool);
    sh(&["ip", "addr", "add", &format!("{gw}/24"), "dev", &bridge]);
    sh(&["ip", "link", "set", &bridge, "up"]);
    let name = env.name("br");
    let sys = build_system(&[]);
    env.create(&name, &["--system-path", &sys, "--bridge", &bridge, "--local-address", &format!("{local}/24")]);
    let conf = conf_text(&env, &name);
    assert!(conf.contains("\nHOST_ADDRESS=\n") && conf.contains(&format!("\nLOCAL_ADDRESS={local}/24\n")), "{conf}");
    env.ok(["start", &name]);
    sh(&["ping", "-c", "1", "-W", "5", &local]);
    env.ok(["stop", &name]);
    // Routed, the host side still needs its address.
    let out = env.run(["create", &env.name("nb"), "--system-path", &sys, "--local-address", "10.9.9.2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--local-address needs --host-address"), "{}", stderr(&out));
}

/// What nixpkgs' declarative module writes: an IPv6-only pair in
/// HOST_ADDRESS/LOCAL_ADDRESS, LOCAL_MAC_ADDRESS, COPY_RESOLV_CONF.
#[test]
fn ipv6_addresses_a_mac_address_and_the_hosts_resolv_conf_from_the_conf() {
    let env = Env::new();
    let name = env.name("v6");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let conf = env.conf_dir().join(format!("{name}.conf"));
    let (host6, local6) = (format!("fd6e:6978:{:x}:77::1", env.pool), format!("fd6e:6978:{:x}:77::2", env.pool));
    let text: String = conf_text(&env, &name)
        .lines()
        .filter(|l| !l.contains("ADDRESS"))
        .map(|l| format!("{l}\n"))
        .chain([
            format!("HOST_ADDRESS={host6}\nLOCAL_ADDRESS={local6}\n"),
            "LOCAL_MAC_ADDRESS=02:6e:63:00:00:07\nCOPY_RESOLV_CONF=1\n".into(),
        ])
        .collect();
    std::fs::write(&conf, &text).unwrap();
    let out = env.run(["status", &name]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("down\n", ""), "no warning about the keys");
    assert_eq!(env.ok(["show-ip", &name]), format!("{local6}\n"));
    // The guest's own resolv.conf is a link out of its root: replaced, not followed.
    let decoy = env.base.join("decoy");
    std::fs::write(&decoy, "decoy\n").unwrap();
    std::fs::create_dir_all(env.root(&name).join("etc")).unwrap();
    std::os::unix::fs::symlink(&decoy, env.root(&name).join("etc/resolv.conf")).unwrap();

    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "cat", "/sys/class/net/eth0/address"]), "02:6e:63:00:00:07\n");
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    assert_eq!(env.ok(["run", &name, "cat", "/etc/resolv.conf"]), host_resolv);
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "decoy\n");
    sh(&["ping", "-6", "-c", "1", "-W", "5", &local6]);
    env.ok(["stop", &name]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), text, "the conf is not rewritten");
}

/// A host whose IPv6 is disabled, made by running start and stop in a
/// network namespace of the test's with IPv6 disabled there: the automatic
/// IPv6 pair must not keep the container from starting.
#[test]
fn a_host_with_ipv6_disabled_still_starts_containers() {
    let env = Env::new();
    let mut made = Made::default();
    let ns = format!("nc-noipv6-{}", env.pool);
    sh(&["ip", "netns", "add", &ns]);
    made.netns.push(ns.clone());
    for key in ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"] {
        sh(&["ip", "netns", "exec", &ns, "sysctl", "-q", "-w", key]);
    }
    sh(&["ip", "netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
    let name = env.name("no6");
    env.create(&name, &["--system-path", &build_system(&[])]);
    assert!(conf_text(&env, &name).contains("LOCAL_ADDRESS6="), "the host has IPv6: a pair is assigned");
    let local = env.ok(["show-ip", &name]).trim().to_string();
    // nsenter, not `ip netns exec`, which would remount /sys under nspawn.
    let in_ns = |args: &[&str]| {
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{ns}"))
            .arg("--")
            .arg(BIN)
            .args(args)
            .envs(env.vars())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let out = in_ns(&["start", &name]);
    assert!(out.status.success(), "start: {}", stderr(&out));
    assert!(stderr(&out).contains("IPv6 is disabled on this host"), "{}", stderr(&out));
    sh(&["ip", "netns", "exec", &ns, "ping", "-c", "1", "-W", "5", &local]);
    let out = in_ns(&["stop", &name]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
}

/// extra-container (erikarvstedt/extra-container) chooses where to put its
/// confs with `grep -q '"/etc/nixos-containers"' "$(type -p nixos-container)"`;
/// without a match it uses /etc/containers, which this tool does not read.
#[test]
fn extra_container_recognises_the_layout_in_the_binary() {
    let status = std::process::Command::new("grep").args(["-q", "\"/etc/nixos-containers\"", BIN]).status().unwrap();
    assert!(status.success(), "the binary lacks the string extra-container greps for");
}

/// extra-container's destroy replaces the container's conf (a link into
/// the store) with an empty file, then runs `nixos-container destroy NAME`.
#[test]
fn extra_containers_destroy_removes_a_container_whose_conf_it_emptied() {
    let env = Env::new();
    let name = env.name("xc");
    env.create(&name, &["--system-path", &build_system(&[])]);
    env.ok(["start", &name]);
    let conf = env.conf_dir().join(format!("{name}.conf"));
    std::fs::remove_file(&conf).unwrap();
    std::fs::write(&conf, "").unwrap();
    let out = env.run(["destroy", &name]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

fn quickstart(env: &Env, name: &str, extra_env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new("bash")
        .arg(repo().join("scripts/quickstart"))
        .envs(env.vars())
        .env("NIXOS_CONTAINER_BIN", BIN)
        .env("NIXOS_CONTAINER_QUICKSTART_NAME", name)
        .envs(extra_env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_quick_start_says_what_it_does_and_removes_what_a_failure_left() {
    let env = Env::new();
    let name = env.name("qs");
    // A start that dies half-way: the container it created goes again.
    let out = quickstart(&env, &name, &[("NIXOS_CONTAINER_CRASH_AT", "start-locked")]);
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("==> creating a container") && err.contains("==> starting"), "{err}");
    assert!(err.contains(&format!("removing container '{name}'")), "{err}");
    assert!(!err.contains("+ name="), "{err}");
    assert_eq!(env.ok(["list"]), "", "the failed quick start's container is gone");
    assert_eq!(env.leftovers(&name), Vec::<String>::new());

    // The next one succeeds under the same name, not NAME-0.
    let out = quickstart(&env, &name, &[]);
    let (out_text, err) = (stdout(&out), stderr(&out));
    assert!(out.status.success(), "{out_text}{err}");
    assert!(out_text.contains(&format!("hello from {name}, systemd is running")), "{out_text}");
    assert!(out_text.contains(&format!("Container '{name}' is created and stopped")), "{out_text}");
    assert!(!err.contains("+ name="), "{err}");
    assert_eq!(env.ok(["list"]), format!("{name}\n"));
}

/// `start` inside a plain chroot (its root not a mount point), as on a
/// freshly debootstrapped root entered with chroot: a clear error, not a
/// bare "Invalid argument".
#[test]
fn start_inside_a_chroot_says_why_it_cannot() {
    let env = Env::new();
    let name = env.name("ch");
    env.create(&name, &["--system-path", &build_system(&[])]);
    let root = env.base.join("chroot");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(BIN, root.join("nixos-container")).unwrap();
    let vars: Vec<String> = env.vars().iter().map(|(k, v)| format!("{k}={v}")).collect();
    // In a mount namespace of its own: every mount here goes with it.
    let script = r#"set -e
R=$1; shift
for d in usr nix proc sys dev etc tmp run; do mkdir -p "$R/$d"; done
for d in bin lib lib64 sbin; do [ -e "$R/$d" ] || ln -s "usr/$d" "$R/$d"; done
mount --rbind /usr "$R/usr"; mount --rbind /nix "$R/nix"; mount -t proc proc "$R/proc"
mount --rbind /sys "$R/sys"; mount --rbind /dev "$R/dev"; mount --bind /etc "$R/etc"
mount --rbind /tmp "$R/tmp"; mount --rbind /run "$R/run"
exec chroot "$R" /usr/bin/env "$@"
"#;
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&root)
        .args(&vars)
        .args(["PATH=/usr/sbin:/usr/bin", "/nixos-container", "start", &name])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("the host's / is not a mount point (inside a chroot?)"), "{}", stderr(&out));
    assert!(processes_of(&name).is_empty());
    assert_eq!(network_leftovers(&name), Vec::<String>::new());
    assert_eq!(env.ok(["status", &name]), "down\n");
}

/// `echo CMD | nixos-container root-login NAME`, as scripts and nixpkgs'
/// tests use it: CMD runs, and the session ends at the end of the input;
/// SIGTERM ends a session whose input stays open.
#[test]
fn root_login_with_piped_input_ends_with_it_and_on_sigterm() {
    use std::io::Write;
    let env = Env::new();
    let name = env.name("rl");
    env.create(&name, &["--system-path", &build_system(&[])]);
    env.ok(["start", &name]);
    for i in 0..8 {
        let mut child = KillOnDrop::spawn(
            env.command()
                .args(["root-login", &name])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped()),
        );
        let mut input = child.stdin.take().unwrap();
        input.write_all(format!("echo round-$(( {i} + 1 ))\n").as_bytes()).unwrap();
        drop(input);
        let status = child.wait_timeout(std::time::Duration::from_secs(60));
        assert!(status.is_some(), "round {i}: root-login did not end at the end of its input");
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "round {i}: {}", stderr(&out));
        assert!(stdout(&out).contains(&format!("round-{}\n", i + 1)), "round {i}: {}", stdout(&out));
    }

    let mut child = KillOnDrop::spawn(
        env.command()
            .args(["root-login", &name])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    );
    let mut input = child.stdin.take().unwrap();
    input.write_all(b"echo ready-$((6*7))\n").unwrap();
    // The session is up (the shell ran the line) before the SIGTERM.
    let (out_tx, out) = std::sync::mpsc::channel();
    let mut stdout = child.take_stdout();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = stdout.read(&mut buf) {
            let _ = out_tx.send(buf[..n].to_vec());
        }
    });
    let mut seen = Vec::new();
    while let Ok(chunk) = out.recv_timeout(std::time::Duration::from_secs(60)) {
        seen.extend(chunk);
        if String::from_utf8_lossy(&seen).contains("ready-42") {
            break;
        }
    }
    assert!(String::from_utf8_lossy(&seen).contains("ready-42"), "the session never ran its input: {seen:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait_timeout(std::time::Duration::from_secs(60)).is_some(), "SIGTERM did not end root-login");
    drop(input);
}

/// A target a container is still reaching (as multi-user.target while the
/// guest boots) when an update adds a unit it wants: the unit starts. The
/// cause of `rollback_returns_to_the_old_generation` failing once: its
/// update ran while the guest was still booting (start returns when the
/// root shell answers), and the new extra.service was never started.
#[test]
fn an_update_starts_units_wanted_by_a_target_still_being_reached() {
    let env = Env::new();
    let name = env.name("act");
    let config = |extra: bool| {
        let mut nix = String::from(
            r#"{ pkgs, ... }: {
  systemd.targets.app = { description = "a target reached slowly"; };
  systemd.services.slow = {
    wantedBy = [ "app.target" ];
    before = [ "app.target" ];
    serviceConfig = { Type = "oneshot"; ExecStart = "${pkgs.busybox}/bin/busybox sleep 300"; };
  };
"#,
        );
        if extra {
            nix.push_str(
                r#"  environment.etc."extra/file".text = "extra\n";
  systemd.services.extra = {
    wantedBy = [ "app.target" ];
    serviceConfig.ExecStart = "${pkgs.busybox}/bin/busybox httpd -f -p 127.0.0.1:8081 -h /etc/extra";
  };
"#,
            );
        }
        nix.push_str("}\n");
        let path = env.base.join(if extra { "v2.nix" } else { "v1.nix" });
        std::fs::write(&path, nix).unwrap();
        path
    };
    let (v1, v2) = (config(false), config(true));
    env.create(&name, &["--config-file", v1.to_str().unwrap()]);
    env.ok(["start", &name]);
    env.ok(["run", &name, "systemctl", "start", "--no-block", "app.target"]);
    // A target being reached is inactive, with a start job waiting.
    let waiting = wait_for(std::time::Duration::from_secs(60), || {
        let out = env.run(["run", &name, "systemctl", "list-jobs", "--no-legend"]);
        stdout(&out).lines().any(|l| l.split_whitespace().skip(1).take(2).eq(["app.target", "start"])).then_some(())
    });
    assert!(waiting.is_some(), "app.target is being reached");
    let out = env.run(["update", &name, "--config-file", v2.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let state = stdout(&env.run(["run", &name, "systemctl", "is-active", "extra.service"]));
    assert_eq!(state.trim(), "active", "{}", stderr(&out));
}

/// `create --host-address fd..::1 --local-address fd..::2`, as nixpkgs
/// passes them on: an IPv6-only container, its addresses where nixpkgs
/// writes them.
#[test]
fn create_takes_ipv6_in_the_address_flags() {
    let env = Env::new();
    let name = env.name("c6");
    let (h, l) = (format!("fd6e:6978:{:x}:66::1", env.pool), format!("fd6e:6978:{:x}:66::2", env.pool));
    env.create(&name, &["--system-path", &build_system(&[]), "--host-address", &h, "--local-address", &l]);
    let conf = conf_text(&env, &name);
    assert!(conf.contains(&format!("\nHOST_ADDRESS={h}\nLOCAL_ADDRESS={l}\n")), "{conf}");
    assert!(!conf.contains("ADDRESS6") && !conf.contains("=10."), "IPv6 only: {conf}");
    assert_eq!(env.ok(["show-ip", &name]), format!("{l}\n"));
    env.ok(["start", &name]);
    sh(&["ping", "-6", "-c", "1", "-W", "5", &l]);
    env.ok(["stop", &name]);
    let out = env.run(["create", &env.name("c7"), "--host-address", &h, "--local-address", "10.1.2.3"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

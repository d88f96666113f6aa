//! update: new configurations take effect live, failed builds change
//! nothing, generations and rollback, stopped containers, flakes, restarts
//! and the per-container lock. Real guests, real Nix.
//!
//! The guests serve HTTP (busybox httpd) on their own loopback and the
//! tests fetch from inside the guest: every container has a network
//! namespace of its own (create's default is a private network), so no
//! port is shared with the host or with another test's guest.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;

/// The port the guest's web service listens on, on the guest's own
/// loopback (see above: any port would do).
const PORT: u16 = 8080;

/// A configuration serving `/etc/www/file` (= `text`) on `port`; with
/// `extra`, a second service serves `/etc/extra/file` on `port + 1`; with
/// `broken`, a oneshot service that fails.
fn http_config(env: &Env, file: &str, port: u16, text: &str, extra: bool, broken: bool) -> PathBuf {
    let mut nix = format!(
        r#"{{ pkgs, ... }}: {{
  environment.etc."www/file".text = "{text}\n";
  systemd.services.web = {{
    wantedBy = [ "multi-user.target" ];
    serviceConfig.ExecStart = "${{pkgs.busybox}}/bin/busybox httpd -f -p 127.0.0.1:{port} -h /etc/www";
  }};
"#
    );
    if extra {
        nix.push_str(&format!(
            r#"  environment.etc."extra/file".text = "extra\n";
  systemd.services.extra = {{
    wantedBy = [ "multi-user.target" ];
    serviceConfig.ExecStart = "${{pkgs.busybox}}/bin/busybox httpd -f -p 127.0.0.1:{} -h /etc/extra";
  }};
"#,
            port + 1
        ));
    }
    if broken {
        nix.push_str(
            r#"  systemd.services.broken = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig = { Type = "oneshot"; ExecStart = "/bin/false"; };
  };
"#,
        );
    }
    nix.push_str("}\n");
    let path = env.base.join(file);
    std::fs::write(&path, nix).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// What the guest serves on `port` (or wget's complaint).
fn fetch(env: &Env, name: &str, port: u16, file: &str) -> String {
    let url = format!("http://127.0.0.1:{port}/{file}");
    stdout(&env.run(["run", name, "--", "busybox", "wget", "-qO-", &url]))
}

/// Waits until the guest serves `expected` on `port`; returns what it served last.
fn served(env: &Env, name: &str, port: u16, expected: &str) -> String {
    let mut last = String::new();
    wait_for(Duration::from_secs(60), || {
        last = fetch(env, name, port, "file");
        (last == expected).then_some(())
    });
    last
}

/// Runs a command in the guest; retried while the guest does not answer
/// yet (see `pid1_start`).
fn guest(env: &Env, name: &str, cmd: &[&str]) -> String {
    let args = [&["run", name, "--"][..], cmd].concat();
    wait_for(Duration::from_secs(60), || {
        let out = env.run(&args);
        out.status.success().then(|| stdout(&out))
    })
    .unwrap_or_else(|| panic!("the guest does not answer {cmd:?}"))
}

/// The guest's PID 1 start time (clock ticks since boot, /proc/1/stat field 22).
fn pid1_start(env: &Env, name: &str) -> String {
    // Right after start the root shell's socket may exist a moment before
    // the guest listens on it (a readiness race outside update): retry.
    let stat = guest(env, name, &["cat", "/proc/1/stat"]);
    let after_comm = stat.rsplit_once(')').expect("a stat line").1;
    // Field 3 (state) is the first after the command name.
    after_comm.split_whitespace().nth(22 - 3).expect("starttime").to_string()
}

/// The profile link and every generation link with its target.
fn profile_state(env: &Env, name: &str) -> Vec<(String, String)> {
    let mut links: Vec<(String, String)> = std::fs::read_dir(env.profile_dir(name))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            Some((e.file_name().to_string_lossy().into_owned(), target.display().to_string()))
        })
        .collect();
    links.sort();
    links
}

fn current_link(env: &Env, name: &str) -> String {
    std::fs::read_link(env.profile_dir(name).join("system")).unwrap().display().to_string()
}

fn unit_state(env: &Env, name: &str, unit: &str) -> String {
    stdout(&env.run(["run", name, "--", "systemctl", "is-active", unit])).trim().to_string()
}

/// How long a test waits for an update that runs in the background.
const BOUND: Duration = Duration::from_secs(180);

/// The lines `r` gives, read on a thread of their own so that the test can
/// wait for them with a timeout; the channel closes at the end of `r`.
fn lines_of(r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A running container serving "v1" from `v1.nix` on `PORT`.
struct ServingV1 {
    name: String,
    port: u16,
    /// When the guest's PID 1 started: an update must not change it.
    boot: String,
}

fn start_serving_v1(env: &Env, tag: &str) -> ServingV1 {
    let name = env.name(tag);
    let port = PORT;
    let v1 = http_config(env, "v1.nix", port, "v1", false, false);
    env.create(&name, &["--config-file", s(&v1)]);
    env.ok(["start", &name]);
    assert_eq!(served(env, &name, port, "v1\n"), "v1\n");
    let boot = pid1_start(env, &name);
    ServingV1 { name, port, boot }
}

#[test]
fn a_live_update_serves_the_new_file_and_service_without_a_reboot() {
    let env = Env::new();
    let ServingV1 { name, port: p, boot } = start_serving_v1(&env, "live");
    let v2 = http_config(&env, "v2.nix", p, "v2", true, false);

    let out = env.run(["update", &name, "--config-file", s(&v2)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("switched to generation 2"), "{}", stderr(&out));
    assert_eq!(served(&env, &name, p, "v2\n"), "v2\n");
    assert_eq!(served(&env, &name, p + 1, "extra\n"), "extra\n");
    assert_eq!(unit_state(&env, &name, "extra.service"), "active");
    assert_eq!(pid1_start(&env, &name), boot, "PID 1 is the same process: no reboot");
    assert_eq!(env.ok(["status", &name]), "up\n");

    let config = std::fs::read(env.conf_dir().join(&name).join("config-file.nix")).unwrap();
    assert_eq!(config, std::fs::read(&v2).unwrap());
    let guest_copy = std::fs::read(env.root(&name).join("etc/nixos/config-file.nix")).unwrap();
    assert_eq!(guest_copy, config);
    let gens = env.ok(["generations", &name]);
    let lines: Vec<&str> = gens.lines().collect();
    assert_eq!(lines.len(), 2, "{gens}");
    assert!(lines[0].trim_start().starts_with("1   ") && !lines[0].ends_with("(current)"), "{gens}");
    assert!(lines[1].trim_start().starts_with("2   ") && lines[1].ends_with("(current)"), "{gens}");
    let system = std::fs::canonicalize(env.profile_dir(&name).join("system")).unwrap();
    assert!(lines[1].contains(s(&system)), "{gens}");
}

#[test]
fn a_failed_build_changes_nothing() {
    let env = Env::new();
    let name = env.name("fail");
    let p = PORT;
    let v1 = http_config(&env, "v1.nix", p, "v1", false, false);
    env.create(&name, &["--config-file", s(&v1)]);
    env.ok(["start", &name]);
    assert_eq!(served(&env, &name, p, "v1\n"), "v1\n");
    let boot = pid1_start(&env, &name);
    let profile = profile_state(&env, &name);
    let config_path = env.conf_dir().join(&name).join("configuration.nix");
    let copied_path = env.conf_dir().join(&name).join("config-file.nix");
    let copied = std::fs::read(&copied_path).unwrap();
    let config = std::fs::read(&config_path).unwrap();
    let conf_path = env.conf_dir().join(format!("{name}.conf"));
    let conf = std::fs::read(&conf_path).unwrap();

    let assertion = fixture("failing-assertion.nix");
    let builder = r#"environment.etc.boom.source = pkgs.runCommand "boom" {} "echo boom-from-builder; exit 1";"#;
    for (args, says) in [
        (vec!["--config-file", s(&assertion)], "this container must be called nope"),
        (vec!["--config", "this is not nix"], "syntax error"),
        (vec!["--config", builder], "boom-from-builder"),
    ] {
        let out = env.run([&["update", name.as_str()][..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: the build's own message is shown: {}", stderr(&out));
        assert_eq!(profile_state(&env, &name), profile, "{args:?}: the profile is untouched");
        assert_eq!(std::fs::read(&config_path).unwrap(), config, "{args:?}: configuration.nix is put back");
        assert_eq!(std::fs::read(&copied_path).unwrap(), copied, "{args:?}: the config file's copy is put back");
        assert_eq!(std::fs::read(&conf_path).unwrap(), conf, "{args:?}: the conf is untouched");
        let leftovers: Vec<_> =
            std::fs::read_dir(env.conf_dir().join(&name)).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 3, "{args:?}: no temporary files: {leftovers:?}");
    }
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert_eq!(pid1_start(&env, &name), boot, "the running container was not touched");
    assert_eq!(fetch(&env, &name, p, "file"), "v1\n");
}

#[test]
fn rollback_returns_to_the_old_generation() {
    let env = Env::new();
    let ServingV1 { name, port: p, boot } = start_serving_v1(&env, "back");
    let v2 = http_config(&env, "v2.nix", p, "v2", true, false);
    env.ok(["update", &name, "--config-file", s(&v2)]);
    assert_eq!(served(&env, &name, p + 1, "extra\n"), "extra\n");
    assert_eq!(current_link(&env, &name), "system-2-link");

    let out = env.run(["update", &name, "--rollback"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("switched to generation 1"), "{}", stderr(&out));
    assert_eq!(current_link(&env, &name), "system-1-link");
    assert_eq!(fetch(&env, &name, p, "file"), "v1\n", "the old file is served again");
    assert_eq!(unit_state(&env, &name, "extra.service"), "inactive", "the added service is stopped");
    assert!(!fetch(&env, &name, p + 1, "file").contains("extra"));
    assert_eq!(pid1_start(&env, &name), boot);
    let gens = env.ok(["generations", &name]);
    assert!(gens.lines().next().unwrap().ends_with("(current)"), "{gens}");
    assert_eq!(gens.lines().count(), 2, "{gens}");

    // Nothing older than generation 1.
    let out = env.run(["update", &name, "--rollback"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no generation before 1"), "{}", stderr(&out));
    // And forward again by number.
    env.ok(["update", &name, "--switch-generation", "2"]);
    assert_eq!(served(&env, &name, p + 1, "extra\n"), "extra\n");
    assert_eq!(fetch(&env, &name, p, "file"), "v2\n");
}

#[test]
fn a_stopped_container_is_updated_without_being_started() {
    let env = Env::new();
    let name = env.name("cold");
    let p = PORT;
    let v1 = http_config(&env, "v1.nix", p, "v1", false, false);
    let v2 = http_config(&env, "v2.nix", p, "v2", true, false);
    env.create(&name, &["--config-file", s(&v1)]);
    let out = env.run(["update", &name, "--config-file", s(&v2)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("not running"), "{}", stderr(&out));
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty(), "update did not start it");
    assert!(!env.run_dir(&name).join("state.json").exists());
    assert_eq!(current_link(&env, &name), "system-2-link");

    env.ok(["start", &name]);
    assert_eq!(served(&env, &name, p, "v2\n"), "v2\n");
    assert_eq!(served(&env, &name, p + 1, "extra\n"), "extra\n");
}

#[test]
fn a_failing_activation_is_reported_and_keeps_the_new_generation() {
    let env = Env::new();
    let ServingV1 { name, port: p, boot } = start_serving_v1(&env, "actfail");
    let bad = http_config(&env, "bad.nix", p, "v2", false, true);

    let out = env.run(["update", &name, "--config-file", s(&bad)]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("switch-to-configuration exited with status 4"), "{err}");
    assert!(err.contains("the following units failed: broken.service"), "the activation's output is shown: {err}");
    assert!(
        err.contains(&format!(
            "generation 2 stays selected; to go back to generation 1, run 'nixos-container update {name} --rollback'"
        )),
        "{err}"
    );
    assert_eq!(current_link(&env, &name), "system-2-link");
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert_eq!(pid1_start(&env, &name), boot);
    assert_eq!(fetch(&env, &name, p, "file"), "v2\n", "the rest of the new system is active");

    env.ok(["update", &name, "--rollback"]);
    assert_eq!(current_link(&env, &name), "system-1-link");
    assert_eq!(fetch(&env, &name, p, "file"), "v1\n");
}

#[test]
fn a_flakes_attr_is_built_and_remembered() {
    let env = Env::new();
    let name = env.name("flake");
    let flake = env.base.join("flake");
    write_flake(
        &flake,
        &[
            ("container", r#"{ boot.isContainer = true; environment.etc.flavour.text = "container"; }"#),
            ("web", "./web.nix"),
        ],
    );
    let web = |flavour: &str| {
        std::fs::write(
            flake.join("web.nix"),
            format!("{{ boot.isContainer = true; environment.etc.flavour.text = \"{flavour}\"; }}\n"),
        )
        .unwrap()
    };
    web("web-1");
    let flavour = || std::fs::read_to_string(env.profile_dir(&name).join("system/etc/flavour")).unwrap_or_default();

    env.create(&name, &[]);
    let out = env.run(["update", &name, "--flake", &format!("{}#web", flake.display())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(flavour(), "web-1");
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap();
    assert!(conf.contains(&format!("FLAKE={}#web\n", flake.display())), "{conf}");

    // A later update without flags rebuilds the same attr from the flake.
    web("web-2");
    let out = env.run(["update", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(flavour(), "web-2");
    assert_eq!(current_link(&env, &name), "system-3-link");

    // The flake's system boots and is what the guest runs.
    env.ok(["start", &name]);
    assert_eq!(guest(&env, &name, &["cat", "/etc/flavour"]), "web-2");
}

#[test]
fn changed_nspawn_settings_need_a_restart() {
    let env = Env::new();
    let name = env.name("restart");
    let p = PORT;
    let v1 = http_config(&env, "v1.nix", p, "v1", false, false);
    env.create(&name, &["--config-file", s(&v1)]);
    env.ok(["start", &name]);
    let boot = pid1_start(&env, &name);
    let data = env.base.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("x"), "bound").unwrap();
    // The user edits the conf: a new bind mount.
    let conf_path = env.conf_dir().join(format!("{name}.conf"));
    let mut conf = std::fs::read_to_string(&conf_path).unwrap();
    conf.push_str(&format!("BINDS={}:/srv/data\n", data.display()));
    std::fs::write(&conf_path, conf).unwrap();

    let out = env.run(["update", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "needs a restart for its changed BINDS to take effect: run 'nixos-container update {name} --restart'"
        )),
        "{}",
        stderr(&out)
    );
    assert_eq!(pid1_start(&env, &name), boot, "not restarted without --restart");
    assert!(!guest(&env, &name, &["ls", "/srv"]).contains("data"));

    let out = env.run(["update", &name, "--restart"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("was restarted"), "{}", stderr(&out));
    assert_eq!(guest(&env, &name, &["cat", "/srv/data/x"]), "bound");
    assert_ne!(pid1_start(&env, &name), boot, "a new boot");
    assert_eq!(served(&env, &name, p, "v1\n"), "v1\n");

    let out = env.run(["update", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("needs a restart"), "{}", stderr(&out));
}

#[test]
fn update_waits_for_its_containers_lock_and_never_for_others() {
    let env = Env::new();
    let a = env.name("lock-a");
    let b = env.name("lock-b");
    let p = PORT;
    let v1 = http_config(&env, "v1.nix", p, "v1", false, false);
    let v2 = http_config(&env, "v2.nix", p, "v2", true, false);
    env.create(&a, &["--config-file", s(&v1)]);
    env.create(&b, &["--config-file", s(&v1)]);

    // Another command (here: the test) holds a's lock.
    let lock_file = std::fs::File::open(env.base.join(format!("run/.locks/{a}.lock"))).unwrap();
    let held = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive).unwrap();
    let mut waiting =
        KillOnDrop::spawn(env.command().args(["update", "-v", &a, "--config-file", s(&v2)]).stderr(Stdio::piped()));
    let lines = lines_of(waiting.stderr.take().unwrap());
    let deadline = Instant::now() + BOUND;
    let mut said = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        let waits = line.contains(&format!("waiting for container '{a}'"));
        said.push(line);
        if waits {
            break;
        }
    }
    assert!(said.last().is_some_and(|l| l.contains("waiting for")), "update says it waits: {said:?}");
    // Meanwhile another container updates freely (no global lock).
    env.ok(["update", &b, "--config-file", s(&v2)]);
    assert_eq!(current_link(&env, &b), "system-2-link");
    assert_eq!(current_link(&env, &a), "system-1-link", "a's update has not run");

    drop(held);
    let deadline = Instant::now() + BOUND;
    let mut rest = Vec::new();
    // Until update closes its stderr (it ends) or the time is up.
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        rest.push(line);
    }
    let status = waiting
        .wait_timeout(deadline.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|| panic!("update still runs {BOUND:?} after its lock was freed: {rest:?}"));
    assert!(status.success(), "{rest:?}");
    assert_eq!(current_link(&env, &a), "system-2-link");
}

#[test]
fn bad_update_input_gets_one_line_and_changes_nothing() {
    let env = Env::new();
    let name = env.name("badupd");
    env.create(&name, &[]);
    let profile = profile_state(&env, &name);
    let conf_path = env.conf_dir().join(format!("{name}.conf"));
    let conf = std::fs::read(&conf_path).unwrap();
    for (args, code, says) in [
        (vec!["update", "ghost"], 3, "error: container 'ghost' does not exist".to_string()),
        (
            vec!["update", &name, "--config-file", "/nonexistent/x.nix"],
            2,
            "error: invalid config file '/nonexistent/x.nix'".into(),
        ),
        (
            vec!["update", &name, "--flake", "/nonexistent/flake#x"],
            2,
            "error: invalid flake '/nonexistent/flake#x': no such directory".into(),
        ),
        (vec!["update", &name, "--switch-generation", "7"], 2, "error: invalid generation '7'".into()),
        (vec!["update", &name, "--rollback"], 1, format!("error: container '{name}' has no generation before 1")),
        (vec!["update", &name, "--rollback", "--config", "{}"], 2, "cannot be used with".into()),
    ] {
        let out = env.run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(&says), "{args:?}: {err}");
        if code != 2 || !err.contains("cannot be used with") {
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(profile_state(&env, &name), profile);
    assert_eq!(std::fs::read(&conf_path).unwrap(), conf);
}

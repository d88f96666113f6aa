//! Supervision: when `start` returns, guest reboots, `stop`'s duration, what
//! a private network gives the guest, and the console log.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Writes a configuration file for `create --config-file` from Nix text.
fn config(env: &Env, file: &str, nix: &str) -> String {
    let path = env.base.join(file);
    std::fs::write(&path, nix).unwrap();
    path.to_string_lossy().into_owned()
}

/// `RUN/NAME/state.json`'s field `key` (a number), while the container runs.
fn state_number(env: &Env, name: &str, key: &str) -> Option<i64> {
    let text = std::fs::read_to_string(env.run_dir(name).join("state.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get(key)?.as_i64()
}

#[test]
fn a_guest_reboot_brings_the_container_back() {
    let env = Env::new();
    let name = env.name("boot");
    env.create(&name, &[]);
    // `-v` shows the nspawn command line that runs (built once, by the
    // supervisor): nspawn joins the namespace it was started in.
    let out = env.run(["-v", "start", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let shown: Vec<String> =
        stderr(&out).lines().filter(|l| l.contains("systemd-nspawn --")).map(String::from).collect();
    assert_eq!(shown.len(), 1, "{}", stderr(&out));
    assert!(shown[0].contains("--network-namespace-path=/proc/self/ns/net"), "{}", shown[0]);
    assert!(console(&env, &name).contains(shown[0].split_once("systemd-nspawn --").unwrap().1));
    let supervisor = state_number(&env, &name, "supervisor_pid").expect("a supervisor");
    let nspawn = state_number(&env, &name, "nspawn_pid").expect("an nspawn");
    // The guest's reboot makes nspawn exit with 133; the supervisor runs it
    // again. (The command may lose its connection as the guest goes down.)
    let _ = env.run(["run", &name, "--", "systemctl", "reboot"]);
    let rebooted = wait_for(Duration::from_secs(60), || {
        let again = state_number(&env, &name, "nspawn_pid").filter(|p| *p != nspawn)?;
        let out = env.run(["run", &name, "--", "echo", "back"]);
        (stdout(&out) == "back\n").then_some(again)
    });
    assert!(rebooted.is_some(), "the guest did not come back; console:\n{}", console(&env, &name));
    assert_eq!(state_number(&env, &name, "supervisor_pid"), Some(supervisor), "the same supervisor");
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert!(console(&env, &name).contains("asked for a reboot"));
    env.ok(["stop", &name]);
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty());
}

fn console(env: &Env, name: &str) -> String {
    std::fs::read_to_string(env.run_dir(name).join("console.log")).unwrap_or_default()
}

#[test]
fn a_boot_that_hangs_is_reported_with_what_it_waits_for() {
    let env = Env::new();
    let name = env.name("hang");
    // multi-user.target waits for this service forever.
    let cfg = config(
        &env,
        "hang-boot.nix",
        r#"{ pkgs, ... }: {
  systemd.services.never-done = {
    description = "Never done starting";
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      TimeoutStartSec = "infinity";
      ExecStart = "${pkgs.busybox}/bin/busybox sleep 1000000";
    };
  };
}
"#,
    );
    env.create(&name, &["--config-file", &cfg]);
    // Time enough, also on a busy machine, for the boot to get to the
    // service that never ends.
    let out = env.run(["start", &name, "--timeout", "30"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The console's lines from when the wait ended, not the halt's after it.
    assert!(err.contains("never-done.service"), "{err}");
    assert!(!err.contains("Halting system"), "{err}");
    assert_eq!(env.ok(["status", &name]), "down\n");
}

#[test]
fn start_returns_once_the_guest_has_booted() {
    let env = Env::new();
    let name = env.name("ready");
    // A service wanted by multi-user.target that takes a while: the guest's
    // root shell answers long before it is done, READY=1 comes after.
    let cfg = config(
        &env,
        "slow-boot.nix",
        r#"{ pkgs, ... }: {
  systemd.services.slow = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "${pkgs.busybox}/bin/busybox sh -c 'sleep 3; echo done > /run/slow-done'";
    };
  };
}
"#,
    );
    env.create(&name, &["--config-file", &cfg]);
    env.ok(["start", &name]);
    let state = env.run(["run", &name, "--", "systemctl", "is-system-running"]);
    assert!(
        ["running\n", "degraded\n"].contains(&stdout(&state).as_str()),
        "right after start the guest is {:?}",
        stdout(&state)
    );
    assert_eq!(env.ok(["run", &name, "--", "cat", "/run/slow-done"]), "done\n");
    env.ok(["stop", &name]);
}

#[test]
fn stop_takes_as_long_as_the_guests_shutdown() {
    let env = Env::new();
    let name = env.name("slow");
    let cfg = config(
        &env,
        "slow-stop.nix",
        r#"{ pkgs, ... }: {
  systemd.services.slowstop = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      ExecStart = "${pkgs.busybox}/bin/busybox sleep 100000";
      ExecStop = "${pkgs.busybox}/bin/busybox sleep 5";
    };
  };
}
"#,
    );
    env.create(&name, &["--config-file", &cfg]);
    env.ok(["start", &name]);
    // Let the guest's systemd talk to nspawn for a while, as a long-running
    // guest does (each notification goes through the supervisor's socket).
    for _ in 0..20 {
        env.ok(["run", &name, "--", "systemctl", "daemon-reload"]);
    }
    let t = Instant::now();
    let out = env.run(["stop", &name, "--timeout", "60"]);
    let took = t.elapsed();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("killing"), "{}", stderr(&out));
    assert!(took >= Duration::from_millis(4500), "stop took only {took:?}: the service's ExecStop did not run");
    // Well below the 60 s timeout, with room for a busy machine.
    assert!(took < Duration::from_secs(45), "stop took {took:?} for a 5 s shutdown");
    assert!(processes_of(&name).is_empty());
}

#[test]
fn a_private_network_guest_can_configure_its_network() {
    let env = Env::new();
    let name = env.name("cap");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    let out = env.run(["run", &name, "--", "ip", "addr", "add", "10.1.2.3/32", "dev", "lo"]);
    assert!(out.status.success(), "ip addr add in the guest: {}{}", stdout(&out), stderr(&out));
    assert!(env.ok(["run", &name, "--", "ip", "addr", "show", "dev", "lo"]).contains("10.1.2.3/32"));
    env.ok(["stop", &name]);
}

/// A veth pair on the host (this kernel has no dummy interfaces), deleted
/// on drop wherever it is left.
struct HostVeth(String);

impl HostVeth {
    fn new(name: &str, peer: &str) -> HostVeth {
        assert!(cmd_ok("ip", &["link", "add", name, "type", "veth", "peer", "name", peer]), "creating veth {name}");
        HostVeth(name.to_string())
    }
}

impl Drop for HostVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

#[test]
fn host_interfaces_move_into_a_private_network_and_back() {
    let env = Env::new();
    let name = env.name("ifs");
    // Unique on the host: the test process's PID.
    let ifname = format!("ncd{}", std::process::id());
    let peer = format!("ncp{}", std::process::id());
    let veth = HostVeth::new(&ifname, &peer);
    env.create(&name, &[]);
    // What nixpkgs' declarative module writes for `interfaces = [ ... ]`.
    let conf_path = env.conf_dir().join(format!("{name}.conf"));
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(conf.contains("PRIVATE_NETWORK=1"), "{conf}");
    std::fs::write(&conf_path, format!("{conf}INTERFACES=\"{ifname}\"\n")).unwrap();
    for round in 0..2 {
        env.ok(["start", &name]);
        assert!(!cmd_ok("ip", &["link", "show", &ifname]), "round {round}: {ifname} left the host");
        let inside = env.run(["run", &name, "--", "ip", "link", "show", &ifname]);
        assert!(inside.status.success(), "round {round}: {ifname} in the guest: {}", stderr(&inside));
        // The guest's own interface is there too.
        assert!(env.ok(["run", &name, "--", "ip", "-o", "link"]).contains("eth0"));
        env.ok(["stop", &name]);
        assert!(cmd_ok("ip", &["link", "show", &ifname]), "round {round}: {ifname} is back on the host");
        assert!(cmd_ok("ip", &["link", "show", &peer]), "round {round}: and so its peer");
    }
    drop(veth);
}

#[test]
fn the_console_log_stays_bounded_and_keeps_its_last_lines() {
    let env = Env::new();
    let name = env.name("log");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    // 24 MiB of console output, then one last line.
    let flood = "yes 'a line the guest writes to its console, over and over' | head -c 25165824 > /dev/console; \
                 echo the-last-line > /dev/console";
    env.ok(["run", &name, "--", "sh", "-c", flood]);
    let log = env.run_dir(&name).join("console.log");
    let tail = wait_for(Duration::from_secs(30), || {
        let text = std::fs::read(&log).ok()?;
        let text = String::from_utf8_lossy(&text).into_owned();
        text.contains("the-last-line").then_some(text)
    });
    let old = env.run_dir(&name).join("console.log.old");
    let size = std::fs::metadata(&log).unwrap().len() + std::fs::metadata(&old).map(|m| m.len()).unwrap_or(0);
    assert!(tail.is_some(), "the last line reached the log ({size} bytes)");
    // Two files of at most 2 MiB (and a pipe's read) each.
    assert!(size <= (4 << 20) + (128 << 10), "the console log holds {size} bytes");
    assert!(old.exists(), "the log started anew, keeping the old one");
    env.ok(["stop", &name]);
    // The next run starts with a log of its own.
    env.ok(["start", &name]);
    assert!(!old.exists());
    assert!(!std::fs::read_to_string(&log).unwrap().contains("the-last-line"));
    env.ok(["stop", &name]);
}

/// A system whose init is not systemd: it only listens on the root-shell
/// socket (the host's socat, through the container's /usr) and never sends
/// READY=1.
fn system_without_systemd() -> String {
    let nix = format!(
        r#"let pkgs = import {}/pkgs {{ }}; in
pkgs.writeTextFile {{
  name = "no-systemd-system";
  executable = true;
  destination = "/init";
  text = ''
    #!${{pkgs.busybox}}/bin/sh
    PATH=${{pkgs.busybox}}/bin
    ln -sfn usr/lib /lib; ln -sfn usr/lib64 /lib64; ln -sfn usr/bin /bin
    mkdir -p /var/lib
    exec /usr/bin/socat UNIX-LISTEN:/var/lib/root-shell.socket,fork,mode=600 EXEC:/usr/bin/sh
  '';
}}
"#,
        nixos_path().display()
    );
    let out = Command::new("nix-build")
        .env("NIX_CONFIG", OFFLINE_NIX)
        .args(["--no-out-link", "-E", &nix])
        .output()
        .expect("running nix-build");
    assert!(out.status.success(), "nix-build: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

#[test]
fn a_guest_without_systemd_is_ready_by_its_root_shell() {
    let env = Env::new();
    let name = env.name("plain");
    env.create(&name, &["--system-path", &system_without_systemd()]);
    let t = Instant::now();
    let out = env.run(["start", &name, "--timeout", "120"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Ready by its shell, long before the timeout (with room for a busy
    // machine).
    assert!(t.elapsed() < Duration::from_secs(60), "start took {:?}", t.elapsed());
    assert!(stderr(&out).contains("its init is not systemd"), "{}", stderr(&out));
    assert_eq!(env.ok(["status", &name]), "up\n");
    env.ok(["stop", &name, "--timeout", "10"]);
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty());
}

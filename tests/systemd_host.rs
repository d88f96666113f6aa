//! The nested systemd host (tests/common/systemd_host.rs): it boots, its
//! systemd, machined and logind answer, the tool's containers nest in it,
//! sessions can be ended, it reboots and powers off under the test's eye,
//! and its guard leaves nothing behind, also when a test fails.
//!
//! These prove the harness that the systemd backend's tests (issue 11) use.

mod common;

use std::time::Duration;

use common::systemd_host::{self, SystemdHost};
use common::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

#[test]
fn boots_with_systemd_as_pid_1_and_machinectl_answers() {
    let host = SystemdHost::boot();
    assert_eq!(host.boot_state, "running", "the host booted {}; see the failed units above", host.boot_state);
    assert_eq!(host.sh_ok("readlink /proc/1/exe").trim(), "/usr/lib/systemd/systemd");
    // sd_booted(): what the tool will test to choose its backend.
    assert!(host.sh("test -d /run/systemd/system").status.success());
    // machined starts on demand over D-Bus and knows the host itself.
    let list = host.command("machinectl").args(["list", "--no-legend", "--all"]).output().unwrap();
    assert!(list.status.success(), "machinectl list: {}", text(&list));
    let status = host.command("machinectl").args(["show", ".host", "-p", "Name", "-p", "Class"]).output().unwrap();
    assert_eq!(stdout(&status), "Name=.host\nClass=host\n", "{}", text(&status));
    assert_eq!(host.sh_ok("systemctl is-active systemd-machined dbus systemd-logind"), "active\nactive\nactive\n");
    // The tool's commands run in a unit the host's systemd knows.
    let cgroup = host.sh_ok("grep ^0:: /proc/self/cgroup");
    assert!(cgroup.starts_with("0::/system.slice/run-") && cgroup.trim_end().ends_with(".scope"), "{cgroup}");
    // The outer's cgroup tree is its own: delegated cgroup2, no v1 inside.
    assert_eq!(host.sh_ok("stat -f -c %T /sys/fs/cgroup"), "cgroup2fs\n");
}

#[test]
fn the_tool_runs_a_nested_container_from_start_to_destroy() {
    let host = SystemdHost::boot();
    let nixos = nixos_path();
    let nixos = nixos.to_str().unwrap();
    host.tool_ok(&["create", "web", "--nixos-path", nixos, "--bind-ro", "/usr"]);
    assert_eq!(host.tool_ok(&["status", "web"]), "down\n");
    host.tool_ok(&["start", "web"]);
    assert_eq!(host.tool_ok(&["status", "web"]), "up\n");
    assert_eq!(host.tool_ok(&["run", "web", "--", "uname", "-n"]), "web\n");
    assert_eq!(host.tool_ok(&["run", "web", "--", "readlink", "/proc/1/exe"]), "/usr/lib/systemd/systemd\n");
    let run = host.tool(&["run", "web", "--", "sh", "-c", "exit 7"]);
    assert_eq!(run.status.code(), Some(7), "{}", text(&run));
    // The console is the unit's journal here: info and logs show the boot.
    let info = host.tool_ok(&["info", "web", "-n", "200"]);
    assert!(info.contains("Reached target"), "{info}");
    let logs = host.tool_ok(&["logs", "web"]);
    assert!(logs.contains("Reached target"), "{logs}");
    host.tool_ok(&["stop", "web"]);
    assert_eq!(host.tool_ok(&["status", "web"]), "down\n");
    host.tool_ok(&["destroy", "web"]);
    assert_eq!(host.tool_ok(&["list"]), "");
    assert!(!host.sh("test -e /var/lib/nixos-containers/web").status.success());
}

#[test]
fn login_sessions_can_be_terminated_and_logged_out() {
    let host = SystemdHost::boot();
    host.add_user("alice");
    host.set_logind(&["KillUserProcesses=yes"]);
    let session = host.open_session("alice");
    let show = host.sh_ok(&format!("loginctl show-session {} -p Name -p State -p Class", session.id));
    assert!(show.contains("Name=alice\n") && show.contains("Class=user\n"), "{show}");
    assert!(session.cgroup.starts_with("/user.slice/user-"), "{}", session.cgroup);

    // A root command run from her session (as with su or sudo) is in its
    // scope; one run at a root shell elsewhere is not.
    let mut inside = KillOnDrop::spawn(host.command_in_session(&session, "sleep").arg("1000"));
    let mut outside = KillOnDrop::spawn(host.command("sleep").arg("1000"));
    wait_in_scope(&host, &session, "sleep 1000");

    host.sh_ok(&format!("loginctl terminate-session {}", session.id));
    let status = inside.wait_timeout(Duration::from_secs(60)).expect("the session's processes end");
    assert!(!status.success(), "killed with the session: {status}");
    assert!(outside.try_wait().unwrap().is_none(), "a process outside the session survives");
    let gone = wait_for(Duration::from_secs(60), || {
        (!host.sh(&format!("loginctl show-session {}", session.id)).status.success()).then_some(())
    });
    assert!(gone.is_some(), "session {} is gone after terminate-session", session.id);

    // Logout with KillUserProcesses=yes ends what was started in the session.
    let session = host.open_session("alice");
    let mut inside = KillOnDrop::spawn(host.command_in_session(&session, "sleep").arg("1000"));
    // In the scope before the logout, or the logout cannot reach it.
    wait_in_scope(&host, &session, "sleep 1000");
    host.logout(&session);
    let status = inside.wait_timeout(Duration::from_secs(60)).expect("logout ends the session's processes");
    assert!(!status.success(), "killed at logout: {status}");
    assert!(outside.try_wait().unwrap().is_none(), "a process outside the session survives");
}

/// Waits until a process with command line `args` (space-separated) is in
/// `session`'s scope: `command_in_session` moves it there only once it runs.
/// (By its whole command line: the session's own `sleep infinity` is there
/// too.)
fn wait_in_scope(host: &SystemdHost, session: &systemd_host::Session, args: &str) {
    let script = format!(
        "for p in $(cat /sys/fs/cgroup{}/cgroup.procs); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done",
        session.cgroup
    );
    let in_scope = wait_for(Duration::from_secs(60), || {
        let procs = host.sh(&script);
        stdout(&procs).lines().any(|l| l.trim_end() == args).then_some(())
    });
    assert!(in_scope.is_some(), "`{args}` never joined session {}'s scope", session.id);
}

#[test]
fn reboot_and_poweroff_are_noticed() {
    let mut host = SystemdHost::boot();
    let machine_id = host.sh_ok("cat /etc/machine-id");
    host.reboot();
    assert_eq!(host.boots(), 2);
    assert_eq!(host.boot_state, "running");
    assert_eq!(host.sh_ok("cat /etc/machine-id"), machine_id, "the same host came back");
    let status = host.poweroff();
    assert!(status.success(), "a clean poweroff ends nspawn with 0, not {status}");
    assert_eq!(host.boots(), 2, "nothing started it again");
    let (name, dir, cgroups, lock) = host.trace();
    drop(host);
    assert_eq!(systemd_host::leftovers(&name, &dir, &cgroups, &lock), Vec::<String>::new());
}

#[test]
fn the_guard_leaves_nothing_when_a_test_fails() {
    let mut trace = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let host = SystemdHost::boot();
        trace = Some(host.trace());
        let nixos = nixos_path();
        host.tool_ok(&["create", "web", "--nixos-path", nixos.to_str().unwrap(), "--bind-ro", "/usr"]);
        host.tool_ok(&["start", "web"]);
        // A session and a container running when the test fails.
        let _session = KillOnDrop::spawn(&mut host.session_command("exec sleep 1000"));
        panic!("a failing test (deliberately)");
    }));
    assert!(result.is_err());
    let (name, dir, cgroups, lock) = trace.expect("the host booted");
    assert_eq!(systemd_host::leftovers(&name, &dir, &cgroups, &lock), Vec::<String>::new());
}

/// A guest service whose stop (ExecStop, at the guest's shutdown) leaves a
/// mark in the host's /srv/marks (bound at /marks).
const MARKS_AT_HALT: &str = r#"{ ... }: {
  systemd.services.mark-halt = {
    wantedBy = [ "multi-user.target" ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = "/usr/bin/true";
      ExecStop = "/usr/bin/touch /marks/halted";
    };
  };
}
"#;

#[test]
fn installed_auto_start_containers_come_up_at_boot_and_halt_cleanly_at_poweroff() {
    let mut host = SystemdHost::boot();
    let listed = host.install();
    for file in [
        "/usr/local/bin/nixos-container",
        "/usr/local/share/man/man1/nixos-container.1",
        "/usr/local/share/bash-completion/completions/nixos-container",
        "/usr/local/lib/systemd/system/nixos-containers-autostart.service",
    ] {
        assert!(listed.lines().any(|l| l == file), "{file} in:\n{listed}");
    }
    // The containers' units are transient: no unit file may stand in their way.
    assert!(!listed.contains("nixos-container@"), "{listed}");
    let verify = host.sh("systemd-analyze verify --man=no nixos-containers-autostart.service");
    assert!(verify.status.success() && stderr(&verify).is_empty(), "systemd-analyze verify: {}", text(&verify));
    assert_eq!(
        host.sh_ok("systemctl is-enabled nixos-containers-autostart.service machines.target"),
        "enabled\nenabled\n"
    );

    // An auto-start container comes up when the host boots, one without
    // --auto-start does not.
    let nixos = nixos_path();
    let nixos = nixos.to_str().unwrap();
    host.sh_ok(&format!("cat > /root/marks.nix <<'EOF'\n{MARKS_AT_HALT}EOF"));
    for name in ["web", "app"] {
        host.sh_ok(&format!(
            "mkdir -p /srv/marks-{name} && nixos-container create {name} --auto-start --nixos-path {nixos} \
             --bind-ro /usr --bind /srv/marks-{name}:/marks --config-file /root/marks.nix"
        ));
    }
    host.sh_ok(&format!("nixos-container create db --nixos-path {nixos} --bind-ro /usr"));
    host.reboot();
    assert_eq!(host.sh_ok("systemctl is-active nixos-containers-autostart.service"), "active\n");
    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web.service"), "active\n");
    assert_eq!(host.sh_ok("nixos-container status web"), "up\n");
    assert_eq!(host.sh_ok("nixos-container status db"), "down\n");
    assert_eq!(host.sh_ok("nixos-container run web -- uname -n"), "web\n");
    for name in ["web", "app"] {
        assert_eq!(host.sh_ok(&format!("systemctl is-active nixos-container@{name}.service")), "active\n");
        assert_eq!(host.sh_ok(&format!("nixos-container run {name} -- systemctl is-active mark-halt")), "active\n");
        assert!(!host.root.join(format!("srv/marks-{name}/halted")).exists());
    }

    // At poweroff systemd stops the units (in parallel): each guest shuts
    // down cleanly.
    let status = host.poweroff();
    assert!(status.success(), "poweroff with running containers: {status}");
    for name in ["web", "app"] {
        let mark = host.root.join(format!("srv/marks-{name}/halted"));
        assert!(mark.exists(), "{name}'s services were stopped at the host's poweroff");
    }
}

/// Creates container `name` in `host` with a private network (routed, with
/// addresses of the outer host's own network namespace).
fn create_in(host: &SystemdHost, name: &str, n: u8, extra: &[&str]) {
    let nixos = nixos_path();
    let host_addr = format!("10.231.{n}.1");
    let local_addr = format!("10.231.{n}.2");
    let mut args = vec![
        "create",
        name,
        "--nixos-path",
        nixos.to_str().unwrap(),
        "--bind-ro",
        "/usr",
        "--host-address",
        &host_addr,
        "--local-address",
        &local_addr,
    ];
    args.extend_from_slice(extra);
    host.tool_ok(&args);
}

/// Every PID in the unit's cgroup tree, with its command name.
fn unit_processes(host: &SystemdHost, name: &str) -> Vec<(String, String)> {
    let out = host.sh_ok(&format!(
        "for f in $(find /sys/fs/cgroup/machine.slice/nixos-container@{name}.service -name cgroup.procs); do \
           for p in $(cat $f); do echo \"$p $(cat /proc/$p/comm)\"; done; done"
    ));
    out.lines().filter_map(|l| l.split_once(' ')).map(|(p, c)| (p.to_string(), c.to_string())).collect()
}

#[test]
fn a_running_container_is_its_systemd_unit_registered_with_machined() {
    let host = SystemdHost::boot();
    create_in(&host, "web", 1, &[]);
    let started = std::time::Instant::now();
    host.tool_ok(&["start", "web"]);
    let start_secs = started.elapsed().as_secs_f64();
    assert_eq!(host.tool_ok(&["run", "web", "--", "uname", "-n"]), "web\n");
    eprintln!("start to first command on the systemd host: {:.2} s", started.elapsed().as_secs_f64());
    eprintln!("(start alone: {start_secs:.2} s)");

    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web"), "active\n");
    let show = host.sh_ok("systemctl show nixos-container@web -p Slice -p Delegate -p ControlGroup -p MainPID");
    for want in ["Slice=machine.slice", "Delegate=yes", "ControlGroup=/machine.slice/nixos-container@web.service"] {
        assert!(show.lines().any(|l| l == want), "{want} in:\n{show}");
    }
    // The device policy of systemd-nspawn@.service: guest root (CAP_MKNOD)
    // can neither make nor open a node of a host block device.
    let devices = host.sh_ok("systemctl show nixos-container@web -p DevicePolicy -p DeviceAllow");
    for want in ["DevicePolicy=closed", "DeviceAllow=char-pts rw", "DeviceAllow=/dev/net/tun rwm"] {
        assert!(devices.lines().any(|l| l == want), "{want} in:\n{devices}");
    }
    let probe = "mknod /root/loop b 7 0 2>&1; [ -b /root/loop ] && head -c1 /root/loop >/dev/null && echo OPENED; \
                 rm -f /root/loop; head -c1 /dev/zero | wc -c";
    let said = host.tool_ok(&["run", "web", "--", "sh", "-c", probe]);
    assert!(said.contains("Operation not permitted") && !said.contains("OPENED") && said.ends_with("1\n"), "{said}");
    let main_pid = show.lines().find_map(|l| l.strip_prefix("MainPID=")).unwrap().to_string();
    assert_eq!(host.sh_ok(&format!("cat /proc/{main_pid}/comm")), "systemd-nspawn\n");
    // Every process of the container is in the unit's cgroup: nspawn, the
    // guest's init and its services; and every nspawn and guest process
    // of the host is one of them.
    let procs = unit_processes(&host, "web");
    assert!(procs.iter().any(|(p, c)| *p == main_pid && c == "systemd-nspawn"), "{procs:?}");
    assert!(procs.iter().any(|(_, c)| c == "systemd"), "the guest's init in {procs:?}");
    assert!(procs.iter().any(|(_, c)| c == "systemd-journal"), "the guest's journald in {procs:?}");
    let guest_pids = host.sh_ok("pgrep -f 'systemd-nspawn|/init|systemd-journald' || true");
    let host_journald = host.sh_ok("systemctl show -p MainPID --value systemd-journald").trim().to_string();
    for pid in guest_pids.lines().filter(|p| *p != host_journald) {
        let cgroup = host.sh_ok(&format!("cat /proc/{pid}/cgroup 2>/dev/null || true"));
        if cgroup.is_empty() || cgroup.contains("/system.slice/run-") {
            continue; // gone meanwhile, or our pgrep
        }
        assert!(cgroup.contains("/machine.slice/nixos-container@web.service/"), "PID {pid}: {cgroup}");
    }
    assert!(!host.sh("test -e /sys/fs/cgroup/nixos-containers").status.success(), "nothing outside the unit");
    let status = host.sh_ok("systemctl status --no-pager nixos-container@web");
    assert!(status.contains("systemd-nspawn") && status.contains("payload"), "{status}");

    // The guest booted fully (before the commands below start units in it).
    let state = host.tool(&["run", "web", "--", "systemctl", "is-system-running"]);
    assert_eq!(
        stdout(&state),
        "running\n",
        "{}",
        host.tool_ok(&[
            "run",
            "web",
            "--",
            "sh",
            "-c",
            "systemctl --failed --no-pager; journalctl -u dbus --no-pager | tail -20"
        ])
    );

    // machined knows it, and the machine commands reach the guest.
    let list = host.sh_ok("machinectl list --no-legend");
    assert!(list.lines().any(|l| l.split_whitespace().next() == Some("web")), "{list}");
    let mstatus = host.sh_ok("machinectl status web --no-pager");
    assert!(mstatus.contains("Unit: nixos-container@web.service"), "{mstatus}");
    let journal = host.sh_ok("journalctl -M web --no-pager -n 20");
    assert!(!journal.trim().is_empty(), "the guest's journal");
    host.sh_ok("systemd-run -M web --wait --quiet true");
    assert_eq!(host.sh_ok("systemctl -M web is-system-running"), "running\n");
    let shell = host.sh_ok("machinectl shell -q web /usr/bin/uname -n");
    assert_eq!(shell.trim_end(), "web", "{shell:?}");
    assert!(host.sh("ip link show ve-web").status.success(), "its veth while it runs");
    // Its console is in the journal, where `logs` finds it.
    let console = host.tool_ok(&["logs", "web"]);
    assert!(console.contains("Reached target") && console.contains("--register=yes"), "{console}");

    // Limits are the unit's properties: from the conf at start, and
    // changed at runtime by set-limits (which `info` then reads back).
    let limits = || host.sh_ok("systemctl show nixos-container@web -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax");
    assert!(limits().contains("MemoryMax=infinity\n"), "{}", limits());
    host.tool_ok(&["set-limits", "web", "--memory-max", "512M", "--cpu-quota", "150%", "--pids-max", "700"]);
    assert_eq!(limits(), "CPUQuotaPerSecUSec=1.500000s\nMemoryMax=536870912\nTasksMax=700\n");
    // The kernel enforces it where the host's cgroup tree has the memory
    // controller (the nested host gets the controllers its parent delegates).
    if host.sh("grep -qw memory /sys/fs/cgroup/cgroup.controllers").status.success() {
        let max = host.sh_ok("cat /sys/fs/cgroup/machine.slice/nixos-container@web.service/memory.max");
        assert_eq!(max, "536870912\n");
    }
    host.tool_ok(&["set-limits", "web", "--memory-max", "infinity"]);
    assert!(limits().contains("MemoryMax=infinity\n"), "{}", limits());

    // `systemctl stop` halts it cleanly and releases its network.
    host.sh_ok("systemctl stop nixos-container@web");
    let unit_log = host.sh_ok("journalctl -u nixos-container@web --no-pager -o cat");
    assert!(
        unit_log.contains("Reached target shutdown.target") && unit_log.contains("Container web has been shut down."),
        "a clean halt:\n{unit_log}"
    );
    assert_eq!(host.tool_ok(&["status", "web"]), "down\n");
    assert!(!host.sh("systemctl is-active nixos-container@web").status.success());
    assert!(!host.sh("ip link show ve-web").status.success(), "its veth is gone");
    let list = host.sh_ok("machinectl list --no-legend");
    assert!(!list.contains("web"), "{list}");

    // The CLI starts and stops it the same way.
    host.tool_ok(&["start", "web"]);
    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web"), "active\n");
    assert_eq!(host.tool_ok(&["status", "web"]), "up\n");
    assert_eq!(limits(), "CPUQuotaPerSecUSec=1.500000s\nMemoryMax=infinity\nTasksMax=700\n", "the conf's at start");
    let list = host.tool_ok(&["list", "--json"]);
    assert!(list.contains("\"processes\":") && !list.contains("\"processes\":null"), "{list}");
    host.tool_ok(&["stop", "web"]);
    assert_eq!(host.tool_ok(&["status", "web"]), "down\n");
    assert!(!host.sh("systemctl is-active nixos-container@web").status.success());
    // terminate kills it at once; the unit's release still runs.
    host.tool_ok(&["start", "web"]);
    host.tool_ok(&["terminate", "web"]);
    assert_eq!(host.tool_ok(&["status", "web"]), "down\n");
    assert_eq!(host.sh_ok("systemctl list-units --all --no-legend 'nixos-container@*'"), "");
    assert!(!host.sh("ip link show ve-web").status.success(), "its veth is gone after terminate");
    host.tool_ok(&["restart", "web"]);
    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web"), "active\n");
    host.tool_ok(&["destroy", "web"]);
    assert_eq!(host.sh_ok("systemctl list-units --all --no-legend 'nixos-container@*'"), "");
    assert_eq!(host.sh_ok("find /sys/fs/cgroup -name '*nixos-container*'"), "");
    assert!(!host.sh("ip link show ve-web").status.success());
    // No link into the gone root is left in the host's journal directory.
    assert_eq!(host.sh_ok("find /var/log/journal /run/log/journal -xtype l 2>/dev/null || true"), "");
}

/// Waits until the unit is active again after its starter went away, and
/// checks that the container still answers.
fn still_runs(host: &SystemdHost, name: &str, after: &str) {
    std::thread::sleep(Duration::from_secs(2));
    let active = host.sh(&format!("systemctl is-active nixos-container@{name}"));
    assert_eq!(stdout(&active), "active\n", "after {after}: {}", text(&active));
    assert_eq!(host.tool_ok(&["run", name, "--", "uname", "-n"]), format!("{name}\n"), "after {after}");
}

fn session_gone(host: &SystemdHost, id: &str) {
    let gone = wait_for(Duration::from_secs(60), || {
        (!host.sh(&format!("loginctl show-session {id}")).status.success()).then_some(())
    });
    assert!(gone.is_some(), "session {id} is gone");
}

#[test]
fn a_container_outlives_whoever_started_it() {
    let host = SystemdHost::boot();
    host.add_user("alice");
    host.set_logind(&["KillUserProcesses=yes"]);
    create_in(&host, "web", 1, &[]);

    // Started from a login session (as root through su/sudo), which is
    // then terminated.
    let session = host.open_session("alice");
    let out = host.command_in_session(&session, BIN).args(["start", "web"]).output().unwrap();
    assert!(out.status.success(), "start in a session: {}", text(&out));
    host.sh_ok(&format!("loginctl terminate-session {}", session.id));
    session_gone(&host, &session.id);
    still_runs(&host, "web", "terminate-session");

    // Logout with KillUserProcesses=yes.
    host.tool_ok(&["stop", "web"]);
    let session = host.open_session("alice");
    let out = host.command_in_session(&session, BIN).args(["start", "web"]).output().unwrap();
    assert!(out.status.success(), "start in a session: {}", text(&out));
    host.logout(&session);
    session_gone(&host, &session.id);
    still_runs(&host, "web", "logout with KillUserProcesses=yes");

    // systemd-run --wait: the transient service ends right after start.
    host.tool_ok(&["stop", "web"]);
    host.sh_ok(&format!("systemd-run --wait --quiet {BIN} start web"));
    still_runs(&host, "web", "systemd-run --wait");

    // A oneshot unit calling start: its cgroup is emptied when it ends.
    host.tool_ok(&["stop", "web"]);
    host.sh_ok(&format!(
        "printf '[Service]\\nType=oneshot\\nExecStart={BIN} start web\\n' > /etc/systemd/system/starter.service \
         && systemctl daemon-reload && systemctl start starter.service"
    ));
    assert_eq!(stdout(&host.sh("systemctl is-active starter.service")), "inactive\n");
    still_runs(&host, "web", "a oneshot starter");
    host.tool_ok(&["destroy", "web"]);
}

#[test]
fn a_guest_that_fails_to_boot_is_reported_and_leaves_nothing() {
    let host = SystemdHost::boot();
    // A system whose init fails at once, saying why on the console.
    host.sh_ok(
        "mkdir -p /root/failsys && printf '#!/usr/bin/busybox sh\\necho \"stand-in init: no root file system today\"\\nexit 3\\n' \
         > /root/failsys/init && chmod +x /root/failsys/init",
    );
    let system = host.sh_ok("nix-store --add /root/failsys").trim().to_string();
    host.tool_ok(&[
        "create",
        "broken",
        "--system-path",
        &system,
        "--bind-ro",
        "/usr",
        "--host-address",
        "10.231.5.1",
        "--local-address",
        "10.231.5.2",
    ]);
    let out = host.tool(&["start", "broken"]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("no root file system today"), "the console's last lines in:\n{err}");
    assert!(err.contains("journalctl -u nixos-container@broken.service"), "{err}");
    assert_eq!(host.sh_ok("systemctl list-units --all --no-legend 'nixos-container@*'"), "");
    assert!(!host.sh("ip link show ve-broken").status.success(), "its network is released");
    assert_eq!(host.tool_ok(&["status", "broken"]), "down\n");
    assert_eq!(host.sh_ok("find /sys/fs/cgroup -name '*nixos-container*'"), "");
    host.tool_ok(&["destroy", "broken"]);
}

#[test]
fn a_guest_reboot_restarts_the_unit() {
    let host = SystemdHost::boot();
    create_in(&host, "web", 1, &[]);
    host.tool_ok(&["start", "web"]);
    let first = host.sh_ok("systemctl show -p MainPID --value nixos-container@web");
    // The connection may end with the guest's shutdown.
    let _ = host.tool(&["run", "web", "--", "systemctl", "reboot"]);
    let restarted = wait_for(Duration::from_secs(60), || {
        let n = host.sh_ok("systemctl show -p NRestarts --value nixos-container@web");
        let pid = host.sh_ok("systemctl show -p MainPID --value nixos-container@web");
        let answers = host.tool(&["run", "web", "--", "uname", "-n"]);
        // Active again once the new boot's READY=1 came.
        let active = host.sh("systemctl is-active nixos-container@web");
        (n.trim() == "1"
            && pid != first
            && pid.trim() != "0"
            && stdout(&answers) == "web\n"
            && stdout(&active) == "active\n")
            .then_some(())
    });
    assert!(
        restarted.is_some(),
        "the unit restarted and the guest answers again:\n{}",
        host.sh_ok("systemctl status --no-pager nixos-container@web; journalctl -u nixos-container@web -n 30 -o cat")
    );
    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web"), "active\n");
    assert_eq!(host.tool_ok(&["status", "web"]), "up\n");
    assert!(host.sh("ip link show ve-web").status.success(), "its network is set up again");
    // update finds it running and activates the new system in it.
    let out = host.tool(&["update", "web", "--config", "environment.etc.marker.text = \"updated\";"]);
    assert!(out.status.success(), "update of a running unit: {}", text(&out));
    assert_eq!(host.tool_ok(&["run", "web", "--", "cat", "/etc/marker"]), "updated");
    assert_eq!(host.sh_ok("systemctl is-active nixos-container@web"), "active\n");
    host.tool_ok(&["destroy", "web"]);
    assert_eq!(host.sh_ok("systemctl list-units --all --no-legend 'nixos-container@*'"), "");
}

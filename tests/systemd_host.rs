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
    let in_scope = wait_for(Duration::from_secs(10), || {
        let procs = host.sh(&format!("cat /sys/fs/cgroup{}/cgroup.procs | xargs -r ps -o comm= -p", session.cgroup));
        stdout(&procs).lines().any(|l| l == "sleep").then_some(())
    });
    assert!(in_scope.is_some(), "the command joined the session's scope");

    host.sh_ok(&format!("loginctl terminate-session {}", session.id));
    let status = inside.wait_timeout(Duration::from_secs(20)).expect("the session's processes end");
    assert!(!status.success(), "killed with the session: {status}");
    assert!(outside.try_wait().unwrap().is_none(), "a process outside the session survives");
    let gone = wait_for(Duration::from_secs(20), || {
        (!host.sh(&format!("loginctl show-session {}", session.id)).status.success()).then_some(())
    });
    assert!(gone.is_some(), "session {} is gone after terminate-session", session.id);

    // Logout with KillUserProcesses=yes ends what was started in the session.
    let session = host.open_session("alice");
    let mut inside = KillOnDrop::spawn(host.command_in_session(&session, "sleep").arg("1000"));
    std::thread::sleep(Duration::from_millis(300));
    host.logout(&session);
    let status = inside.wait_timeout(Duration::from_secs(20)).expect("logout ends the session's processes");
    assert!(!status.success(), "killed at logout: {status}");
    assert!(outside.try_wait().unwrap().is_none(), "a process outside the session survives");
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

#[test]
fn installed_units_load_and_auto_start_containers_come_up_at_boot() {
    let mut host = SystemdHost::boot();
    let listed = host.install();
    for file in [
        "/usr/local/bin/nixos-container",
        "/usr/local/share/man/man1/nixos-container.1",
        "/usr/local/share/bash-completion/completions/nixos-container",
        "/usr/local/lib/systemd/system/nixos-container@.service",
        "/usr/local/lib/systemd/system/nixos-containers-autostart.service",
    ] {
        assert!(listed.lines().any(|l| l == file), "{file} in:\n{listed}");
    }
    // systemd was reloaded: it loads the template from where install put it.
    let show = host.sh_ok(
        "systemctl show nixos-container@web.service -p FragmentPath -p Slice -p Delegate -p KillMode -p Type \
         -p NotifyAccess -p TimeoutStopUSec -p ExecStart",
    );
    for want in [
        "FragmentPath=/usr/local/lib/systemd/system/nixos-container@.service",
        "Slice=machine.slice",
        "Delegate=yes",
        "KillMode=mixed",
        "Type=notify",
        "NotifyAccess=main",
        "TimeoutStopUSec=1min 30s",
    ] {
        assert!(show.lines().any(|l| l == want), "{want} in:\n{show}");
    }
    assert!(
        show.contains("path=/usr/local/bin/nixos-container ; argv[]=/usr/local/bin/nixos-container __run-unit web"),
        "{show}"
    );
    let verify =
        host.sh("systemd-analyze verify --man=no nixos-container@web.service nixos-containers-autostart.service");
    assert!(verify.status.success() && stderr(&verify).is_empty(), "systemd-analyze verify: {}", text(&verify));
    assert_eq!(
        host.sh_ok("systemctl is-enabled nixos-containers-autostart.service machines.target"),
        "enabled\nenabled\n"
    );

    // An auto-start container comes up when the host boots, one without
    // --auto-start does not.
    let nixos = nixos_path();
    let nixos = nixos.to_str().unwrap();
    host.sh_ok(&format!("nixos-container create web --auto-start --nixos-path {nixos} --bind-ro /usr"));
    host.sh_ok(&format!("nixos-container create db --nixos-path {nixos} --bind-ro /usr"));
    host.reboot();
    assert_eq!(host.sh_ok("systemctl is-active nixos-containers-autostart.service"), "active\n");
    assert_eq!(host.sh_ok("nixos-container status web"), "up\n");
    assert_eq!(host.sh_ok("nixos-container status db"), "down\n");
    assert_eq!(host.sh_ok("nixos-container run web -- uname -n"), "web\n");
    let status = host.poweroff();
    assert!(status.success(), "poweroff with a running container: {status}");
}

//! What a guest may touch, and what other host users may.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;

fn cap_bounding_set(env: &Env, name: &str) -> u64 {
    let status = env.ok(["run", name, "--", "cat", "/proc/1/status"]);
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap().trim().to_string();
    u64::from_str_radix(&hex, 16).unwrap()
}

const CAP_SYS_MODULE: u64 = 1 << 16;
const CAP_SYS_TIME: u64 = 1 << 25;

/// Directories called `name` anywhere in the host's cgroup trees.
fn cgroup_dirs_named(name: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, name: &str, found: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir() && !t.is_symlink()) {
                if e.file_name() == name {
                    found.push(e.path());
                }
                walk(&e.path(), name, found);
            }
        }
    }
    let mut found = Vec::new();
    walk(std::path::Path::new("/sys/fs/cgroup"), name, &mut found);
    found
}

#[test]
fn the_guest_cannot_write_the_hosts_cgroup_tree() {
    let env = Env::new();
    let name = env.name("cg");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    let probe = format!("escape-{name}");
    // The guest tries to make a cgroup everywhere it sees one, and looks
    // for the host's tree.
    let script = format!(
        r#"
        for d in /sys/fs/cgroup /sys/fs/cgroup/*; do
            [ -d "$d" ] && mkdir "$d/{probe}" 2>/dev/null
        done
        ls /sys/fs/cgroup /sys/fs/cgroup/* 2>/dev/null | grep -x nixos-containers && echo "sees host tree"
        {{ echo $$ > /sys/fs/cgroup/memory/cgroup.procs; }} 2>/dev/null && echo "moved into host memory root"
        echo done
        "#
    );
    let out = env.ok(["run", &name, "--", "sh", "-c", &script]);
    assert_eq!(out, "done\n", "nothing of the host is visible or writable");
    // Whatever the guest could create (its systemd manages its own subtree,
    // in its cgroup namespace) is inside the container's own cgroup.
    let made = cgroup_dirs_named(&probe);
    assert!(!made.is_empty(), "the guest manages its own cgroups");
    let own = format!("/nixos-containers/{name}/");
    for dir in &made {
        assert!(dir.to_string_lossy().contains(&own), "{} is outside the container's cgroup", dir.display());
    }
    env.ok(["stop", &name]);
    assert!(cgroup_dirs_named(&probe).is_empty(), "stop removes them with the container's cgroup");
}

#[test]
fn capabilities_are_nspawns_default_plus_what_the_conf_asks() {
    let env = Env::new();
    let plain = env.name("caps0");
    let timey = env.name("caps1");
    env.create(&plain, &[]);
    env.create(&timey, &["--capability", "CAP_SYS_TIME"]);
    env.ok(["start", &plain]);
    env.ok(["start", &timey]);
    let without = cap_bounding_set(&env, &plain);
    let with = cap_bounding_set(&env, &timey);
    assert_eq!(without & CAP_SYS_TIME, 0);
    assert_eq!(without & CAP_SYS_MODULE, 0);
    assert_eq!(with, without | CAP_SYS_TIME);
}

#[test]
fn system_call_filters_and_devices_from_the_conf_apply() {
    let env = Env::new();
    let plain = env.name("sc0");
    let strict = env.name("sc1");
    env.create(&plain, &[]);
    env.create(&strict, &["--system-call-filter", "~chroot", "--device", "/dev/fuse"]);
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{strict}.conf"))).unwrap();
    assert!(conf.contains("SYSTEM_CALL_FILTER=\"~chroot\"\n") && conf.contains("DEVICES=/dev/fuse\n"), "{conf}");
    env.ok(["start", &plain]);
    env.ok(["start", &strict]);
    // (`<>` would create a plain file where no device node is.)
    let probe = "chroot / true 2>/dev/null && echo chroot; [ -c /dev/fuse ] && exec 3<>/dev/fuse && echo fuse; true";
    assert_eq!(env.ok(["run", &plain, "--", "sh", "-c", probe]), "chroot\n");
    assert_eq!(env.ok(["run", &strict, "--", "sh", "-c", probe]), "fuse\n");
}

#[test]
fn private_users_map_the_guests_root_elsewhere() {
    let env = Env::new();
    let name = env.name("userns");
    env.create(&name, &["--private-users"]);
    env.ok(["start", &name]);
    let map = env.ok(["run", &name, "--", "cat", "/proc/self/uid_map"]);
    let fields: Vec<u64> = map.split_whitespace().map(|f| f.parse().unwrap()).collect();
    assert_eq!(fields[0], 0);
    assert_ne!(fields[1], 0, "guest root is not host root: {map}");
    assert_eq!(env.ok(["run", &name, "--", "systemctl", "is-system-running", "--wait"]), "running\n");
    // Still its own private network.
    assert_eq!(env.ok(["run", &name, "--", "ls", "/sys/class/net"]), "eth0\nlo\n");
    // The Nix store is mapped, not nobody's.
    assert!(env.ok(["run", &name, "--", "stat", "-c", "%U", "/nix/store"]).starts_with("root"));
    env.ok(["stop", &name]);
}

#[test]
fn other_host_users_can_look_but_not_enter() {
    let env = Env::new();
    std::fs::set_permissions(&env.base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let name = env.name("peek");
    env.create(&name, &[]);
    env.ok(["start", &name]);
    let as_nobody = |args: &[&str]| {
        let mut cmd = env.command();
        let prog = cmd.get_program().to_owned();
        let mut wrapped = std::process::Command::new("setpriv");
        wrapped.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(prog).args(args);
        for (k, v) in cmd.get_envs() {
            if let Some(v) = v {
                wrapped.env(k, v);
            }
        }
        let _ = &mut cmd;
        wrapped.output().unwrap()
    };
    // Read-only commands work.
    assert_eq!(stdout(&as_nobody(&["list"])), format!("{name}\n"));
    assert_eq!(stdout(&as_nobody(&["status", &name])), "up\n");
    // Commands into the container do not.
    for args in [vec!["run", &name, "--", "true"], vec!["stop", &name], vec!["destroy", &name]] {
        let out = as_nobody(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(stderr(&out), "error: this command needs root: run it as root (e.g. with sudo)\n");
    }
    // Nor the socket itself.
    let socket = env.root(&name).join("var/lib/root-shell.socket");
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "socat",
            "-",
            &format!("unix:{}", socket.display()),
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("Permission denied"), "{}", stderr(&out));
    assert_eq!(env.ok(["status", &name]), "up\n", "still running");
}

//! The backbone: create, start, run, stop, destroy against real nspawn, Nix
//! and a guest booting systemd.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn a_new_users_session_leaves_nothing_behind() {
    let env = Env::new();
    let name = env.name("demo");
    // The quick start's example, as a new user would use it.
    let demo = repo().join("examples/demo.nix");
    env.create(&name, &["--config-file", demo.to_str().unwrap()]);

    // The configuration built is the host's, outside the root; the guest
    // gets a copy to read.
    let config = std::fs::read_to_string(env.conf_dir().join(&name).join("configuration.nix")).unwrap();
    assert!(config.contains(&format!("networking.hostName = lib.mkDefault \"{name}\";")), "{config}");
    assert!(config.contains("imports = [ ./nixos-container-guest.nix ./config-file.nix ];"), "{config}");
    let copied = std::fs::read(env.conf_dir().join(&name).join("config-file.nix")).unwrap();
    assert_eq!(copied, std::fs::read(&demo).unwrap());
    let guest_copy = std::fs::read_to_string(env.root(&name).join("etc/nixos/configuration.nix")).unwrap();
    assert_eq!(guest_copy, config);
    assert!(env.profile_dir(&name).join("system").exists());
    assert!(env.gcroots(&name).is_dir());
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap();
    assert!(conf.starts_with("PRIVATE_NETWORK=1\nHOST_ADDRESS="), "{conf}");
    assert_eq!(env.ok(["status", &name]), "down\n");

    env.ok(["start", &name]);
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert_eq!(env.ok(["run", &name, "--", "uname"]), "Linux\n");
    // The config's tmpfiles rule and oneshot service did their work.
    let hello = wait_for(Duration::from_secs(60), || {
        let out = env.run(["run", &name, "--", "cat", "/var/lib/demo/hello"]);
        let s = stdout(&out);
        s.starts_with("hello").then_some(s)
    });
    assert_eq!(hello.as_deref(), Some(format!("hello from {name}\n").as_str()));

    env.ok(["stop", &name]);
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty(), "stop leaves no process");

    env.ok(["start", &name]);
    assert_eq!(env.ok(["status", &name]), "up\n");
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
    assert!(!env.run_dir(&name).exists());
    assert_eq!(env.ok(["list"]), "");
}

#[test]
fn unique_names_get_their_own_addresses() {
    let env = Env::new();
    let base = env.name("uniq");
    let first = env.create(&base, &["--ensure-unique-name", "--system-path", &build_system(&[])]);
    let second = env.create(&base, &["--ensure-unique-name", "--system-path", &build_system(&[])]);
    env.track(first.trim());
    env.track(second.trim());
    assert_eq!(first.trim(), base);
    assert_eq!(second.trim(), format!("{base}-0"));
    let ip1 = env.ok(["show-ip", first.trim()]);
    let ip2 = env.ok(["show-ip", second.trim()]);
    assert_ne!(ip1, ip2);
    assert_eq!(ip1, format!("10.{}.1.2\n", env.pool));
    assert_eq!(ip2, format!("10.{}.2.2\n", env.pool));
    // Without --ensure-unique-name a taken name is an error.
    let out = env.run(["create", &base, "--system-path", &build_system(&[])]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), format!("error: container '{base}' already exists\n"));
}

#[test]
fn a_failing_assertion_leaves_nothing() {
    let env = Env::new();
    let name = env.name("assert");
    let nixos = nixos_path();
    let out = env.run([
        "create",
        &name,
        "--nixos-path",
        nixos.to_str().unwrap(),
        "--config-file",
        fixture("failing-assertion.nix").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("this container must be called nope"), "the evaluation's message is shown: {err}");
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
    assert!(!env.conf_dir().join(format!("{name}.conf.creating")).exists());
    assert_eq!(env.ok(["list"]), "");
}

#[test]
fn bind_mounted_data_survives_destroy() {
    let env = Env::new();
    let name = env.name("data");
    let data = env.base.join("precious");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("file"), "keep me").unwrap();
    env.create(&name, &["--bind", &format!("{}:/srv/data", data.display())]);
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "--", "cat", "/srv/data/file"]), "keep me");
    env.ok(["run", &name, "--", "sh", "-c", "echo more > /srv/data/new"]);

    // Data also mounted into the root from the host side, by hand.
    let by_hand = env.root(&name).join("mnt-by-hand");
    std::fs::create_dir_all(&by_hand).unwrap();
    nix::mount::mount(Some(&data), &by_hand, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).unwrap();
    // An immutable file in the container's own data.
    let immutable = env.root(&name).join("var/immutable");
    std::fs::write(&immutable, "x").unwrap();
    let chattr = std::process::Command::new("chattr").arg("+i").arg(&immutable).status().unwrap();
    assert!(chattr.success());

    env.ok(["destroy", &name]);
    assert_eq!(std::fs::read_to_string(data.join("file")).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(data.join("new")).unwrap(), "more\n");
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

#[test]
fn stop_while_booting_then_start_again() {
    let env = Env::new();
    let name = env.name("boot");
    env.create(&name, &[]);
    let mut start = KillOnDrop::spawn(env.command().args(["start", &name]));
    // Wait until the guest exists, then stop it while it boots.
    wait_for(Duration::from_secs(60), || (!processes_of(&name).is_empty()).then_some(()))
        .expect("the container's processes appear");
    let stop = env.run(["stop", &name, "--timeout", "20"]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let _ = start.wait();
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty());
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "--", "echo", "again"]), "again\n");
    env.ok(["stop", &name]);
}

#[test]
fn start_and_stop_are_idempotent_like_systemctl() {
    let env = Env::new();
    let name = env.name("idem");
    env.create(&name, &[]);
    let out = env.run(["stop", &name]);
    assert!(out.status.success());
    env.ok(["start", &name]);
    let again = env.run(["start", &name]);
    assert!(again.status.success());
    assert!(stderr(&again).contains("already running"), "{}", stderr(&again));
    env.ok(["restart", &name]);
    assert_eq!(env.ok(["status", &name]), "up\n");
    let before = processes_of(&name);
    env.ok(["terminate", &name]);
    assert_eq!(env.ok(["status", &name]), "down\n");
    assert!(processes_of(&name).is_empty());
    // nspawn and the guest's init are reaped by the supervisor, not left
    // as zombies of a host init that may never reap them.
    let zombies: Vec<u32> = before.into_iter().filter(|p| is_zombie(*p)).collect();
    assert!(zombies.is_empty(), "terminate left zombies {zombies:?}");
}

#[test]
fn nspawn_leaves_nothing_in_run_after_stop_or_terminate() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new();
    let name = env.name("nsrun");
    env.create(&name, &[]);
    let root = std::fs::metadata(env.root(&name)).unwrap();
    let propagate = std::path::PathBuf::from("/run/systemd/nspawn/propagate").join(&name);
    let lock = std::path::PathBuf::from(format!("/run/systemd/nspawn/locks/inode-{}:{}", root.dev(), root.ino()));
    for how in ["stop", "terminate"] {
        env.ok(["start", &name]);
        // nspawn made them while it runs (so the paths are the right ones)...
        assert!(propagate.is_dir() && lock.exists(), "{how}: nspawn's runtime files are not where expected");
        env.ok([how, &name]);
        // ...and they are gone with it, also when it was killed.
        assert!(!propagate.exists(), "{how} left {}", propagate.display());
        assert!(!lock.exists(), "{how} left {}", lock.display());
    }
}

#[test]
fn names_of_63_characters_work() {
    let env = Env::new();
    let long = env.name(&"l".repeat(40));
    let name = format!("{long}{}", "x".repeat(63 - long.len()));
    env.track(&name);
    assert_eq!(name.len(), 63);
    env.create(&name, &[]);
    env.ok(["start", &name]);
    assert_eq!(env.ok(["run", &name, "--", "hostname"]), format!("{name}\n"));
    env.ok(["destroy", &name]);
    assert_eq!(env.leftovers(&name), Vec::<String>::new());
}

#[test]
fn bad_input_gets_one_line_and_writes_nothing() {
    let env = Env::new();
    let too_long = "x".repeat(64);
    for bad in ["", "-foo", "a/b", "a b", "..", "a_b", too_long.as_str()] {
        let out = env.run(["create", "--config", "", "--", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{bad:?}: {err}");
        assert!(err.starts_with("error: invalid container name"), "{bad:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = env.run(["start", "ghost"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stderr(&out), "error: container 'ghost' does not exist (see 'nixos-container list')\n");
    let out = env.run(["create", "cfgmissing", "--config-file", "/nonexistent/x.nix"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr(&out), "error: invalid config file '/nonexistent/x.nix': no such file\n");
    let out = env.run(["create", "badaddr", "--host-address", "10.1.1", "--local-address", "10.1.1.2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("invalid host address '10.1.1'"), "{}", stderr(&out));
    let out = env.run(["create", "badbind", "--bind", "relative/path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("must be an absolute path"), "{}", stderr(&out));
    // Nothing was written by any of these.
    for dir in ["conf", "state", "profiles", "gcroots"] {
        let p = env.base.join(dir);
        let entries = std::fs::read_dir(&p).map(|d| d.count()).unwrap_or(0);
        assert_eq!(entries, 0, "{} has entries", p.display());
    }
}

#[test]
fn show_host_key_prints_the_guests_public_key() {
    let env = Env::new();
    let with_key = env.name("key");
    let without = env.name("nokey");
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr9pX2k1tJ3hX5m3YkGZ2f0v9m6b8y3Tq2m7QF0d1Yx root@key";
    env.create(
        &with_key,
        // A file the guest writes at boot, as sshd's key generation does.
        &[
            "--config",
            &format!("systemd.tmpfiles.rules = [ \"f /etc/ssh/ssh_host_ed25519_key.pub 0644 root root - {key}\" ];"),
        ],
    );
    env.create(&without, &[]);
    env.ok(["start", &with_key]);
    env.ok(["start", &without]);
    // A known_hosts line: the container's host names, then the key.
    let line = env.ok(["show-host-key", &with_key]);
    assert!(line.starts_with(&format!("{with_key}.containers,")), "{line}");
    assert!(line.ends_with(&format!(" {key}\n")), "{line}");
    let out = env.run(["show-host-key", &without]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("has no SSH host key"), "{}", stderr(&out));
    // The key is the running guest's: a stopped container is "not running" (4).
    env.ok(["stop", &with_key]);
    assert_eq!(env.run(["show-host-key", &with_key]).status.code(), Some(4));
    assert_eq!(env.ok(["list"]), {
        let mut names = [with_key.clone(), without.clone()];
        names.sort();
        format!("{}\n{}\n", names[0], names[1])
    });
}

/// Groups and users made on the host for one test; removed on drop (also
/// when the test fails), users first.
#[derive(Default)]
struct HostAccounts {
    users: Vec<String>,
    groups: Vec<String>,
}

impl HostAccounts {
    fn group(&mut self, name: &str, extra: &[&str]) {
        let out = std::process::Command::new("groupadd").args(extra).arg(name).output().unwrap();
        assert!(out.status.success(), "groupadd {name}: {}", stderr(&out));
        self.groups.push(name.into());
    }

    /// A user without home or login, in no group of its own; returns its UID.
    fn user(&mut self, name: &str, extra: &[&str]) -> u32 {
        let out = std::process::Command::new("useradd")
            .args(["--no-create-home", "--no-user-group", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
            .args(extra)
            .arg(name)
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd {name}: {}", stderr(&out));
        self.users.push(name.into());
        nix::unistd::User::from_name(name).unwrap().unwrap().uid.as_raw()
    }
}

impl Drop for HostAccounts {
    fn drop(&mut self) {
        for u in &self.users {
            let _ = std::process::Command::new("userdel").arg(u).status();
        }
        for g in &self.groups {
            let _ = std::process::Command::new("groupdel").arg(g).status();
        }
    }
}

/// Nix kills every process of a build user's UID before each build, and a
/// privileged guest's system users take UIDs below 1000 in the host's UID
/// space: build users there (Debian's) get one warning at start. The
/// host's own build users are never touched (other tests build with them):
/// NIX_CONF_DIR points at a nix.conf naming a test group, on `start` only,
/// which builds nothing.
#[test]
fn build_users_with_system_uids_get_a_warning_at_start() {
    let env = Env::new();
    let pid = std::process::id();
    let (low, high) = (format!("ncbl{pid}"), format!("ncbh{pid}"));
    let mut accounts = HostAccounts::default();
    accounts.group(&low, &["--system"]);
    // One by its primary group, one as a member only.
    let a = accounts.user(&format!("{low}a"), &["--system", "--gid", &low]);
    let b = accounts.user(&format!("{low}b"), &["--system", "--gid", "nogroup", "--groups", &low]);
    accounts.group(&high, &[]);
    let h = accounts.user(&format!("{high}a"), &["--gid", &high, "--groups", &high]);
    assert!(a < 1000 && b < 1000 && h >= 1000, "{a} {b} {h}");
    let nix_conf = |group: &str| {
        let dir = env.base.join(format!("nix-{group}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("nix.conf"), format!("sandbox = true\nbuild-users-group = {group}\n")).unwrap();
        dir
    };
    let (low_conf, high_conf) = (nix_conf(&low), nix_conf(&high));
    let start = |name: &str, conf_dir: &std::path::Path| {
        let out = env.command().env("NIX_CONF_DIR", conf_dir).args(["start", name]).output().unwrap();
        assert!(out.status.success(), "start: {}", stderr(&out));
        out
    };
    let warnings = |out: &std::process::Output| {
        stderr(out).lines().filter(|l| l.contains("build user")).map(String::from).collect::<Vec<_>>()
    };

    let name = env.name("bu");
    env.create(&name, &[]);
    let warned = start(&name, &low_conf);
    let lines = warnings(&warned);
    assert_eq!(lines.len(), 1, "{}", stderr(&warned));
    let line = &lines[0];
    for expected in [
        format!("{low}a (UID {a})"),
        format!("{low}b (UID {b})"),
        format!("(group {low})"),
        "Nix kills every process of its build user's UID".into(),
        "usermod -u".into(),
    ] {
        assert!(line.contains(&expected), "{expected:?} not in {line}");
    }
    assert!(!line.contains(&high), "{line}");
    // The start itself is as without the warning.
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert_eq!(env.ok(["run", &name, "--", "echo", "up"]), "up\n");
    env.ok(["stop", &name]);

    // Build users at 1000 and above: nothing to say, the same output.
    let quiet = start(&name, &high_conf);
    assert_eq!(warnings(&quiet), Vec::<String>::new(), "{}", stderr(&quiet));
    assert_eq!(stdout(&quiet), stdout(&warned));
    assert_eq!(env.ok(["status", &name]), "up\n");
    env.ok(["stop", &name]);

    // A guest with its own user namespace shares no UID with the host's
    // build users.
    let private = env.name("bp");
    env.create(&private, &["--private-users"]);
    let out = start(&private, &low_conf);
    assert_eq!(warnings(&out), Vec::<String>::new(), "{}", stderr(&out));
    env.ok(["stop", &private]);
}

//! Many containers on one host.

mod common;

use common::*;

const INSTANCES: &str = "/proc/sys/fs/inotify/max_user_instances";

fn read_limit() -> u64 {
    std::fs::read_to_string(INSTANCES).unwrap().trim().parse().unwrap()
}

/// Puts the host's limit back to what it was, unless something raised it
/// further meanwhile (then other containers may need it).
struct RestoreLimit(u64);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        if self.0 > read_limit() {
            let _ = std::fs::write(INSTANCES, self.0.to_string());
        }
    }
}

#[test]
fn forty_containers_on_a_fresh_host_all_boot_fully() {
    let env = Env::new();
    let _restore = RestoreLimit(read_limit());
    // Debian's default: the 30th container used to fail to boot.
    std::fs::write(INSTANCES, "128").unwrap();

    let system = build_system(&[]);
    let names: Vec<String> = (0..40).map(|i| env.name(&format!("m{i}"))).collect();
    for n in &names {
        env.ok(["create", n, "--system-path", &system, "--bind-ro", "/usr"]);
    }
    let mut raised = false;
    for n in &names {
        let out = env.run(["start", n]);
        assert!(out.status.success(), "{n}: {}", stderr(&out));
        raised |= stderr(&out).contains("raised fs.inotify.max_user_instances");
    }
    assert!(raised, "start says when it raises the limit");
    assert!(read_limit() >= 64 + 8 * 40, "limit now {}", read_limit());
    for n in &names {
        let state = env.run(["run", n, "--", "systemctl", "is-system-running", "--wait"]);
        assert_eq!(stdout(&state), "running\n", "{n} did not boot fully: {}", stderr(&state));
    }
    for n in &names {
        env.ok(["stop", n]);
    }
}

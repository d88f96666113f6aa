//! Host limits that many containers run into.
//!
//! Every guest's systemd (and its journald, logind, dbus) takes inotify
//! instances from the same per-user budget as the host's root, because the
//! guests' root is the host's root. With Debian's default of 128 instances
//! the 30th small container failed to boot here ("Failed to create inotify
//! object: Too many open files"; nixpkgs users hit it at about 40). Before
//! each start we make sure the limits leave room for one more container,
//! raising them (and saying so) or refusing with the exact fix.

use std::path::Path;

use crate::error::{Error, Result};

/// Inotify instances a small guest uses: 4-5 were measured once booted,
/// more while it boots; doubled for headroom.
pub const INSTANCES_PER_CONTAINER: u64 = 8;
/// Watches per guest (a handful measured), with generous headroom.
pub const WATCHES_PER_CONTAINER: u64 = 512;
/// What the host itself keeps for its own programs.
pub const HOST_INSTANCES: u64 = 64;
pub const HOST_WATCHES: u64 = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sysctl {
    pub name: &'static str,
    pub path: &'static str,
}

pub const MAX_USER_INSTANCES: Sysctl =
    Sysctl { name: "fs.inotify.max_user_instances", path: "/proc/sys/fs/inotify/max_user_instances" };
pub const MAX_USER_WATCHES: Sysctl =
    Sysctl { name: "fs.inotify.max_user_watches", path: "/proc/sys/fs/inotify/max_user_watches" };

/// A limit to raise: from `current` to `new`, because `needed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raise {
    pub sysctl: Sysctl,
    pub current: u64,
    pub needed: u64,
    pub new: u64,
}

/// What must change for `running` containers plus one more. Raised limits
/// are doubled past the need, so that a host starting many containers does
/// not raise them at every start.
pub fn plan(running: u64, instances: u64, watches: u64) -> Vec<Raise> {
    let containers = running + 1;
    let mut raises = Vec::new();
    for (sysctl, current, host, per) in [
        (MAX_USER_INSTANCES, instances, HOST_INSTANCES, INSTANCES_PER_CONTAINER),
        (MAX_USER_WATCHES, watches, HOST_WATCHES, WATCHES_PER_CONTAINER),
    ] {
        let needed = host + per * containers;
        if current < needed {
            raises.push(Raise { sysctl, current, needed, new: (needed * 2).max(current) });
        }
    }
    raises
}

fn read(sysctl: Sysctl) -> Result<u64> {
    std::fs::read_to_string(sysctl.path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| Error::other(format!("cannot read {}", sysctl.name)))
}

/// Makes room for one more container next to `running` ones.
pub fn ensure_inotify_headroom(running: u64) -> Result<()> {
    if !Path::new(MAX_USER_INSTANCES.path).exists() {
        return Ok(()); // no inotify limits on this kernel
    }
    let raises = plan(running, read(MAX_USER_INSTANCES)?, read(MAX_USER_WATCHES)?);
    for r in raises {
        match std::fs::write(r.sysctl.path, r.new.to_string()) {
            Ok(()) => tracing::warn!(
                "raised {} from {} to {}: {} containers need about {}",
                r.sysctl.name,
                r.current,
                r.new,
                running + 1,
                r.needed
            ),
            Err(e) => {
                return Err(Error::other(format!(
                    "{} is {}, but {} containers need about {} and it cannot be raised ({e}); \
                     raise it: sysctl -w {}={}",
                    r.sysctl.name,
                    r.current,
                    running + 1,
                    r.needed,
                    r.sysctl.name,
                    r.new
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_defaults_last_a_few_containers_then_are_doubled() {
        for running in 0..8 {
            assert!(plan(running, 128, 192_536).is_empty(), "{running}");
        }
        let raises = plan(8, 128, 192_536);
        assert_eq!(raises.len(), 1);
        assert_eq!(raises[0].sysctl, MAX_USER_INSTANCES);
        assert_eq!(raises[0].needed, 64 + 8 * 9);
        assert_eq!(raises[0].new, 272);
        // After raising, the next starts need nothing for a while.
        for running in 9..26 {
            assert!(plan(running, 272, 192_536).is_empty(), "{running}");
        }
        assert!(!plan(26, 272, 192_536).is_empty());
    }

    #[test]
    fn watches_are_raised_for_hundreds_of_containers() {
        let raises = plan(400, 1000, 8192);
        assert_eq!(raises.iter().map(|r| r.sysctl).collect::<Vec<_>>(), [MAX_USER_INSTANCES, MAX_USER_WATCHES]);
        assert_eq!(raises[1].needed, 8192 + 512 * 401);
        assert_eq!(raises[0].needed, 64 + 8 * 401);
    }

    #[test]
    fn never_lowers_a_limit() {
        for r in plan(1000, 3000, 1 << 20) {
            assert!(r.new >= r.current);
        }
    }
}

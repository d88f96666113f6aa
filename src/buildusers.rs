//! The host's Nix build users against a privileged guest's system users.
//!
//! Before each build Nix kills every process running under the build user's
//! UID. A privileged guest (no `PRIVATE_USERS`, or `identity`) shares the
//! host's UIDs, and its system users (messagebus, systemd-network, ...) are
//! numbered from 999 down by the guest's systemd-sysusers (NixOS's static
//! IDs are below 400, its dynamic ones 400-999). Debian's
//! `nix-setup-systemd` makes `nixbld1..` with system UIDs: there every host
//! build kills any guest process of such a UID (a guest's dbus-daemon, and
//! its logind, `Type=dbus`, then never finishes starting). Before the start
//! of such a guest we say so, once per process, with the fix. We change
//! nothing: the users are the host's, and only its admin moves them.
//!
//! The group is `build-users-group` from `$NIX_CONF_DIR/nix.conf`
//! (`/etc/nix/nix.conf`) or `NIX_CONFIG`, else `nixbld`; its users are its
//! members (which are whom Nix builds as) and, to be safe, the users whose
//! primary group it is; all looked up on the host, never in a container's
//! root.

use std::path::PathBuf;

/// UIDs below this are system UIDs, which guests' system users take.
pub const SYSTEM_UID_END: u32 = 1000;
/// Nix's build users' group when nix.conf names none.
pub const DEFAULT_GROUP: &str = "nixbld";
/// Where the fix moves the group (and its users just above): the IDs of
/// Nix's own installer and of NixOS.
pub const SUGGESTED_GID: u32 = 30000;

const SETTING: &str = "build-users-group";

/// The last `build-users-group = VALUE` of a nix.conf text: `None` when it
/// is not set, `Some("")` when set to nothing (no build users). Comments
/// (`#` to the end of the line) and every other line are ignored;
/// `include`s are not followed.
pub fn setting(conf: &str) -> Option<String> {
    setting_named(conf, SETTING)
}

/// The last `NAME = VALUE` of a nix.conf text (see [`setting`]).
fn setting_named(conf: &str, name: &str) -> Option<String> {
    let mut value = None;
    for line in conf.lines() {
        let line = line.split('#').next().unwrap_or("");
        if let Some((key, v)) = line.split_once('=')
            && key.trim() == name
        {
            value = Some(v.trim().to_string());
        }
    }
    value
}

/// The build users' group: `NIX_CONFIG` (`nix_config`) wins over nix.conf
/// (`conf`), as in Nix; `None` when it is set to nothing (Nix then builds
/// as root) or when `auto-allocate-uids` is on.
pub fn group_name(conf: Option<&str>, nix_config: Option<&str>) -> Option<String> {
    // With auto-allocate-uids, Nix builds under UIDs of its own range
    // (from 872415232), not as the group's users.
    let auto = nix_config
        .and_then(|c| setting_named(c, "auto-allocate-uids"))
        .or_else(|| conf.and_then(|c| setting_named(c, "auto-allocate-uids")));
    if auto.as_deref() == Some("true") {
        return None;
    }
    let value = nix_config.and_then(setting).or_else(|| conf.and_then(setting)).unwrap_or_else(|| DEFAULT_GROUP.into());
    (!value.is_empty()).then_some(value)
}

/// The warning for build users `users` (name, UID) of group `group`
/// (GID `gid`), or `None` when none has a system UID. One line: who, what
/// it does, and the commands that fix it.
pub fn warning(group: &str, gid: u32, users: &[(String, u32)]) -> Option<String> {
    let low: Vec<&(String, u32)> = users.iter().filter(|(_, uid)| *uid < SYSTEM_UID_END).collect();
    if low.is_empty() {
        return None;
    }
    const SHOWN: usize = 4;
    let mut who = low.iter().take(SHOWN).map(|(n, uid)| format!("{n} (UID {uid})")).collect::<Vec<_>>().join(", ");
    if low.len() > SHOWN {
        who.push_str(&format!(" and {} more", low.len() - SHOWN));
    }
    // New UIDs just above the group's new GID, past any build user already there.
    let base = users.iter().map(|(_, uid)| *uid).filter(|uid| *uid >= SUGGESTED_GID).max().unwrap_or(SUGGESTED_GID);
    let mut fix = Vec::new();
    if gid < SYSTEM_UID_END {
        fix.push(format!("groupmod -g {SUGGESTED_GID} {group}"));
    }
    if low.len() <= 3 {
        fix.extend(low.iter().zip(base + 1..).map(|((n, _), uid)| format!("usermod -u {uid} {n}")));
    } else {
        let names = low.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(" ");
        fix.push(format!("i={base}; for u in {names}; do usermod -u $((i+=1)) \"$u\"; done"));
    }
    let s = if low.len() == 1 { "" } else { "s" };
    let (have, uids) =
        if low.len() == 1 { ("has a system UID", "its UID") } else { ("have system UIDs", "their UIDs") };
    Some(format!(
        "Nix's build user{s} {who} (group {group}) {have}, which privileged containers' system users share: \
         before each build Nix kills every process of its build user's UID, such as a guest's dbus-daemon, \
         and the guest then hangs at boot or loses services; move {uids} out of the system range while no \
         build runs: {}",
        fix.join("; ")
    ))
}

/// Where Nix reads nix.conf: `$NIX_CONF_DIR/nix.conf`, else `/etc/nix/nix.conf`.
pub fn nix_conf_path() -> PathBuf {
    let dir = std::env::var_os("NIX_CONF_DIR").filter(|d| !d.is_empty()).unwrap_or_else(|| "/etc/nix".into());
    PathBuf::from(dir).join("nix.conf")
}

/// The host's build users' group: its GID and its users (members and
/// users whose primary group it is), sorted by name; `None` when there is
/// no such group.
pub fn host_build_users(group: &str) -> Option<(u32, Vec<(String, u32)>)> {
    use nix::unistd::{Group, User};
    let g = Group::from_name(group).ok().flatten()?;
    let gid = g.gid.as_raw();
    let mut users: Vec<(String, u32)> =
        g.mem.iter().filter_map(|m| User::from_name(m).ok().flatten().map(|u| (u.name, u.uid.as_raw()))).collect();
    // Users with it as their primary group, which need not be listed as
    // members (NSS has no "users of a GID" query; /etc/passwd is where
    // Debian's and our setup put them).
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if let [name, _, uid, user_gid, ..] = fields[..]
                && user_gid.parse() == Ok(gid)
                && let Ok(uid) = uid.parse()
            {
                users.push((name.to_string(), uid));
            }
        }
    }
    users.sort_by(|a, b| (a.0.len(), &a.0).cmp(&(b.0.len(), &b.0)));
    users.dedup();
    Some((gid, users))
}

/// The warning for this host's build users (see [`warning`]), if any.
pub fn host_warning() -> Option<String> {
    let conf = std::fs::read_to_string(nix_conf_path()).ok();
    let nix_config = std::env::var("NIX_CONFIG").ok();
    let group = group_name(conf.as_deref(), nix_config.as_deref())?;
    let (gid, users) = host_build_users(&group)?;
    warning(&group, gid, &users)
}

/// Warns (once per process) when Nix's build users share UIDs with a
/// privileged guest's system users. For starts of guests without a user
/// namespace of their own.
pub fn warn_if_clashing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Some(w) = host_warning() {
            tracing::warn!("{w}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(list: &[(&str, u32)]) -> Vec<(String, u32)> {
        list.iter().map(|(n, u)| (n.to_string(), *u)).collect()
    }

    #[test]
    fn the_setting_is_read_from_nix_conf_lines() {
        assert_eq!(setting(""), None);
        assert_eq!(setting("sandbox = true\n"), None);
        assert_eq!(setting("build-users-group = nixbld\n").as_deref(), Some("nixbld"));
        assert_eq!(setting("  build-users-group=builders  # ours\n").as_deref(), Some("builders"));
        assert_eq!(setting("build-users-group = a\nbuild-users-group = b\n").as_deref(), Some("b"));
        assert_eq!(setting("# build-users-group = a\n"), None);
        assert_eq!(setting("extra-build-users-group = a\nbuild-users-groups = b\n"), None);
        assert_eq!(setting("build-users-group =\n").as_deref(), Some(""));
    }

    #[test]
    fn auto_allocated_uids_use_no_build_users() {
        assert_eq!(group_name(Some("auto-allocate-uids = true\n"), None), None);
        assert_eq!(group_name(None, Some("auto-allocate-uids = true")), None);
        assert_eq!(group_name(Some("auto-allocate-uids = false\n"), None).as_deref(), Some("nixbld"));
    }

    #[test]
    fn the_group_is_nixbld_unless_set_and_none_when_set_empty() {
        assert_eq!(group_name(None, None).as_deref(), Some("nixbld"));
        assert_eq!(group_name(Some("sandbox = true\n"), Some("substituters =")).as_deref(), Some("nixbld"));
        assert_eq!(group_name(Some("build-users-group = b\n"), None).as_deref(), Some("b"));
        assert_eq!(group_name(Some("build-users-group = b\n"), Some("build-users-group = c")).as_deref(), Some("c"));
        assert_eq!(group_name(Some("build-users-group =\n"), None), None);
    }

    #[test]
    fn no_warning_without_system_uids() {
        assert_eq!(warning("nixbld", 30000, &[]), None);
        assert_eq!(warning("nixbld", 30000, &users(&[("nixbld1", 30001), ("nixbld2", 30002)])), None);
        assert_eq!(warning("nixbld", 999, &users(&[("nixbld1", 1000)])), None);
    }

    #[test]
    fn debians_build_users_get_one_line_with_the_fix() {
        let w = warning("nixbld", 998, &users(&[("nixbld1", 997), ("nixbld2", 996)])).unwrap();
        assert!(!w.contains('\n'), "{w}");
        assert!(
            w.starts_with("Nix's build users nixbld1 (UID 997), nixbld2 (UID 996) (group nixbld) have system UIDs"),
            "{w}"
        );
        assert!(w.contains("Nix kills every process of its build user's UID"), "{w}");
        assert!(w.ends_with(": groupmod -g 30000 nixbld; usermod -u 30001 nixbld1; usermod -u 30002 nixbld2"), "{w}");
    }

    #[test]
    fn only_the_low_users_are_named_and_moved_past_the_others() {
        let w = warning("b", 30000, &users(&[("b1", 30001), ("b2", 990)])).unwrap();
        assert!(w.starts_with("Nix's build user b2 (UID 990) (group b) has a system UID"), "{w}");
        assert!(!w.contains("b1"), "{w}");
        assert!(!w.contains("groupmod"), "{w}");
        assert!(w.ends_with(": usermod -u 30002 b2"), "{w}");
    }

    #[test]
    fn many_users_are_summed_up_and_moved_by_a_loop() {
        let list: Vec<(String, u32)> = (1..=10).map(|i| (format!("nixbld{i}"), 1000 - i)).collect();
        let w = warning("nixbld", 30000, &list).unwrap();
        assert!(!w.contains('\n'), "{w}");
        assert!(w.contains("nixbld4 (UID 996) and 6 more (group nixbld)"), "{w}");
        assert!(!w.contains("nixbld5 (UID"), "{w}");
        assert!(
            w.ends_with(": i=30000; for u in nixbld1 nixbld2 nixbld3 nixbld4 nixbld5 nixbld6 nixbld7 nixbld8 nixbld9 nixbld10; do usermod -u $((i+=1)) \"$u\"; done"),
            "{w}"
        );
    }
}

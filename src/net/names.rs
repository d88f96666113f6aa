//! Names of what a container's private network consists of on the host.
//!
//! Interface names must fit IFNAMSIZ (15 bytes plus NUL) while container
//! names may have 63 characters. Names are derived from the container name
//! alone, so every command (and an admin) finds them again without state:
//! - up to 12 characters: `ve-NAME`, as the anchor names them;
//! - longer: `ve-` + the first 5 characters + `.` + 6 hex digits of a hash
//!   of the whole name. Container names never contain `.`, so the two forms
//!   never meet; two long names that share a hash are refused at create
//!   (see `lifecycle::create`).
//!
//! Each host interface also carries the altname `ve-NAME` in full (so
//! `ip link show ve-NAME` works for any length) and the alias
//! `nixos-container NAME`, which marks it as this container's own.

/// IFNAMSIZ without the terminating NUL.
pub const IFNAME_MAX: usize = 15;
const PREFIX: &str = "ve-";
const SHORT_MAX: usize = IFNAME_MAX - PREFIX.len();
const KEEP: usize = 5;

/// Checks an interface name given by the user (a bridge, INTERFACES,
/// MACVLANS) the way Linux does (`dev_valid_name`: 1 to 15 bytes, not `.`
/// or `..`, no `/`, `:` or whitespace), and more narrowly: printable ASCII
/// without quotes, `\\`, `$`, `` ` ``, `#` or `;`, since the name also
/// reaches the conf, nft rules and messages.
pub fn validate_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an interface name cannot be empty".into());
    }
    if name.len() > IFNAME_MAX {
        return Err(format!("interface names have at most {IFNAME_MAX} bytes (IFNAMSIZ), this one has {}", name.len()));
    }
    if name == "." || name == ".." {
        return Err("'.' and '..' are not interface names".into());
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic() || "/:\"'\\$`#;".contains(*c)) {
        return Err(format!(
            "interface names cannot contain {}; use letters, digits, '-', '_' or '.'",
            if c.is_control() || !c.is_ascii() {
                format!("{:?}", c)
            } else if c == ' ' {
                "a space".into()
            } else {
                format!("'{c}'")
            }
        ));
    }
    Ok(())
}

/// The host side of the container's veth pair.
pub fn host_ifname(name: &str) -> String {
    if name.len() <= SHORT_MAX {
        format!("{PREFIX}{name}")
    } else {
        let keep: String = name.chars().take(KEEP).collect();
        format!("{PREFIX}{keep}.{:06x}", fnv1a(name.as_bytes()) & 0xff_ffff)
    }
}

/// The guest side, inside the container's namespace.
pub const GUEST_IFNAME: &str = "eth0";

/// The host side's altname: `ve-NAME` whatever the length (ALTIFNAMSIZ is 128).
pub fn host_altname(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// The host side's alias (IFLA_IFALIAS): who owns the interface.
pub fn host_alias(name: &str) -> String {
    format!("nixos-container {name}")
}

/// The network namespace, `/run/netns/NAME` as `ip netns` sees it.
pub fn netns(name: &str) -> String {
    format!("nixos-container-{name}")
}

/// The container's own nftables table (family inet).
pub fn nft_table(name: &str) -> String {
    format!("nixos-container-{name}")
}

/// FNV-1a, 64 bits: small, stable across versions and platforms (the names
/// it helps derive must never change).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn short_names_keep_the_anchors_form() {
        assert_eq!(host_ifname("web"), "ve-web");
        assert_eq!(host_ifname("abcdefghijkl"), "ve-abcdefghijkl");
        assert_eq!(host_ifname("abcdefghijkl").len(), IFNAME_MAX);
    }

    #[test]
    fn long_names_fit_and_stay_recognisable() {
        let n = "a-container-with-a-name-of-35-chars";
        assert_eq!(n.len(), 35);
        let i = host_ifname(n);
        assert_eq!(i.len(), IFNAME_MAX, "{i}");
        assert!(i.starts_with("ve-a-con."), "{i}");
        assert_eq!(host_altname(n), format!("ve-{n}"));
        assert!(host_altname(&"x".repeat(63)).len() < 128);
    }

    #[test]
    fn derivation_is_stable() {
        // Interfaces of running containers are found again by these names:
        // a change here would strand them.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(host_ifname("abcdefghijklm"), format!("ve-abcde.{:06x}", fnv1a(b"abcdefghijklm") & 0xff_ffff));
        // Pinned literally: the names of interfaces that exist right now.
        assert_eq!(host_ifname("abcdefghijklm"), "ve-abcde.8bc308");
        assert_eq!(host_ifname("a-container-with-a-name-of-35-chars"), "ve-a-con.cb93f8");
        assert_eq!(host_ifname("abcdefghijk"), "ve-abcdefghijk");
    }

    #[test]
    fn every_name_fits_and_the_two_forms_never_meet() {
        for len in 1..=63 {
            let name = "n".repeat(len);
            let i = host_ifname(&name);
            assert!(i.len() <= IFNAME_MAX, "{name}: {i}");
            assert!(!i.contains(['/', ':', ' ']), "{i}");
            assert_eq!(i.contains('.'), len > SHORT_MAX, "{i}");
        }
    }

    #[test]
    fn similar_long_names_get_distinct_interfaces() {
        // Names differing only at the end, as --ensure-unique-name makes them.
        let base = "t12345-a-long-container-name";
        let names: Vec<String> = (0..2000).map(|i| format!("{base}-{i}")).collect();
        let ifnames: HashSet<String> = names.iter().map(|n| host_ifname(n)).collect();
        assert_eq!(ifnames.len(), names.len());
    }

    #[test]
    fn interface_names_follow_linux_and_stay_printable() {
        for ok in ["br0", "virbr0", "br-lan.10", "a", "x_y", "123456789012345", "vlan@1"] {
            assert_eq!(validate_ifname(ok), Ok(()), "{ok}");
        }
        let cases = [
            ("", "empty"),
            ("1234567890123456", "at most 15 bytes"),
            (".", "'.'"),
            ("..", "'.'"),
            ("br0\nHOST_PORT=1", "'\\n'"),
            ("br 0", "a space"),
            ("br/0", "'/'"),
            ("br:0", "':'"),
            ("br\"0", "'\"'"),
            ("br\x1b[0", "'\\u{1b}'"),
            ("brü", "'ü'"),
            ("br\t", "'\\t'"),
        ];
        for (bad, reason) in cases {
            let err = validate_ifname(bad).unwrap_err();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_of_other_objects_carry_the_whole_name() {
        assert_eq!(netns("web"), "nixos-container-web");
        assert_eq!(nft_table("web"), "nixos-container-web");
        assert_eq!(host_alias("web"), "nixos-container web");
    }
}

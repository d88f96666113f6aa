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

/// The interface nspawn's `--network-macvlan=PARENT` makes inside the
/// guest, which guest configurations name (`mv-PARENT`): a longer name is
/// shortened as nspawn does since systemd 245 (naming scheme
/// `nspawn_long_hash`), to its first 11 bytes and 4 characters of a hash.
/// (nspawn then tries to add the full name as an altname, in the host's
/// namespace, where the interface is not: the guest never gets one.)
pub fn macvlan_ifname(parent: &str) -> String {
    let full = format!("mv-{parent}");
    if full.len() <= IFNAME_MAX {
        return full;
    }
    let h = siphash24(full.as_bytes(), &NSPAWN_SHORTEN_KEY);
    let mut short = full.as_bytes()[..IFNAME_MAX - 4].to_vec();
    short.extend([18, 12, 6, 0].map(|shift| URLSAFE_BASE64[((h >> shift) & 63) as usize]));
    // Interface names are ASCII (validate_ifname), so is the cut.
    String::from_utf8_lossy(&short).into_owned()
}

/// The MAC address nspawn gives the `idx`th macvlan (from 0) of machine
/// `name` on the host whose /etc/machine-id is `machine_id`: stable across
/// starts, so a guest keeps its DHCP lease (and the same whether nspawn or
/// this tool made the macvlan). A locally administered unicast address.
pub fn macvlan_mac(machine_id: &[u8; 16], name: &str, idx: u64) -> [u8; 6] {
    let mut input = machine_id.to_vec();
    input.extend_from_slice(name.as_bytes());
    if idx > 0 {
        input.extend_from_slice(&idx.to_le_bytes());
    }
    let h = siphash24(&input, &NSPAWN_MACVLAN_KEY).to_le_bytes();
    let mut mac = [h[0], h[1], h[2], h[3], h[4], h[5]];
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The host's machine ID (`/etc/machine-id`, 32 hex digits) as bytes.
pub fn parse_machine_id(text: &str) -> Option<[u8; 16]> {
    let hex = text.trim();
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

/// The fixed keys nspawn hashes with (nspawn-network.c: SHORTEN_IFNAME_HASH_KEY
/// and MACVLAN_HASH_KEY): the same keys give the same names and addresses.
const NSPAWN_SHORTEN_KEY: [u8; 16] =
    [0xe1, 0x90, 0xa4, 0x04, 0xa8, 0xef, 0x4b, 0x51, 0x8c, 0xcc, 0xc3, 0x3a, 0x9f, 0x11, 0xfc, 0xa2];
const NSPAWN_MACVLAN_KEY: [u8; 16] =
    [0x00, 0x13, 0x6d, 0xbc, 0x66, 0x83, 0x44, 0x81, 0xbb, 0x0c, 0xf9, 0x51, 0x1f, 0x24, 0xa6, 0x6f];
const URLSAFE_BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// SipHash-2-4 with a 16-byte key, as systemd's `siphash24()` computes it.
fn siphash24(data: &[u8], key: &[u8; 16]) -> u64 {
    use std::hash::Hasher;
    let k0 = u64::from_le_bytes(key[..8].try_into().unwrap());
    let k1 = u64::from_le_bytes(key[8..].try_into().unwrap());
    // std's SipHasher is SipHash-2-4; deprecated only in favour of
    // DefaultHasher, whose algorithm is unspecified (here it must not change).
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
    h.write(data);
    h.finish()
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
    fn siphash_is_the_reference_siphash24() {
        // The test vector of the SipHash paper (appendix A).
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash24(&msg, &key), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn macvlans_are_named_and_addressed_as_nspawn_does() {
        assert_eq!(macvlan_ifname("eth1"), "mv-eth1");
        assert_eq!(macvlan_ifname("enp0s31f6ab"), "mv-enp0s31f6ab");
        // What systemd-nspawn 252 made of `--network-macvlan=enp0s31f6abcd`
        // (and the addresses below of two macvlans of machine `web`), on a
        // host with this machine ID.
        assert_eq!(macvlan_ifname("enp0s31f6abcd"), "mv-enp0s31fJNwz");
        let id = parse_machine_id("3d1219c7c4c5404aaa1f6d2a48adfda4\n").unwrap();
        assert_eq!(id[0], 0x3d);
        assert_eq!(id[15], 0xa4);
        assert_eq!(parse_machine_id("3d12"), None);
        assert_eq!(parse_machine_id(&"zz".repeat(16)), None);
        assert_eq!(macvlan_mac(&id, "web", 0), [0x56, 0x86, 0x2f, 0xec, 0x53, 0x40]);
        assert_eq!(macvlan_mac(&id, "web", 1), [0x12, 0x50, 0xa0, 0xd5, 0x13, 0xfe]);
        let other = macvlan_mac(&id, "web2", 0);
        assert_eq!(other[0] & 0x03, 0x02, "unicast, locally administered: {other:02x?}");
    }

    #[test]
    fn names_of_other_objects_carry_the_whole_name() {
        assert_eq!(netns("web"), "nixos-container-web");
        assert_eq!(nft_table("web"), "nixos-container-web");
        assert_eq!(host_alias("web"), "nixos-container web");
    }
}

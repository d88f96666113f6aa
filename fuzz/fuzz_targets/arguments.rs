//! The validators of user input must never panic, and what they accept
//! must be safe to use as a name, path or flag.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nixos_container::conf::{
    parse_addr4, parse_addr6, validate_capability, validate_device_path, validate_private_users,
    validate_syscall_filter, Bind, PortForward,
};
use nixos_container::name;

fuzz_target!(|data: &[u8]| {
    // Binds read from a conf are bytes (paths need not be UTF-8).
    if let Ok(b) = Bind::parse_bytes(data, true) {
        assert!(b.target.is_absolute());
    }
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(n) = name::validate(s) {
        assert!(!n.is_empty() && n.len() <= name::MAX_LEN);
        assert!(!n.contains('/') && !n.contains("..") && !n.starts_with('-'));
    }
    if let Ok(n) = name::validate_existing(s) {
        assert!(!n.is_empty() && n.len() <= name::MAX_LEN);
        assert!(!n.contains('/') && !n.contains("..") && !n.starts_with('-'));
    }

    if let Ok(b) = Bind::parse(s, false) {
        assert!(b.target.is_absolute());
        use std::os::unix::ffi::OsStrExt;
        assert!(!b.nspawn_flag().as_bytes().iter().any(u8::is_ascii_whitespace));
    }
    if let Ok(p) = s.parse::<PortForward>() {
        assert_eq!(p.to_string().parse::<PortForward>(), Ok(p));
    }
    let _ = parse_addr4(s);
    let _ = parse_addr6(s);
    if let Ok(c) = validate_capability(s) {
        assert!(c.starts_with("CAP_"));
    }
    if let Ok(t) = validate_syscall_filter(s) {
        assert!(!t.contains(char::is_whitespace));
    }
    if let Ok(d) = validate_device_path(s) {
        assert!(d.starts_with("/dev/"));
    }
    let _ = validate_private_users(s);
});

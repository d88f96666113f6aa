//! Container names.
//!
//! A name becomes a file name, a machine name for systemd-nspawn, a host name
//! (`NAME.containers`) and part of interface and cgroup names, so a new
//! name must be valid as all of them: a DNS label of at most 63 characters.
//! The anchor also allowed `_`, but systemd-nspawn refuses such machine
//! names, so create refuses it; containers nixpkgs created with one are
//! still listed, inspected, updated and destroyed (`validate_existing`),
//! and only starting them fails, with a clear message (`check_startable`).

use crate::error::{Error, Result};

pub const MAX_LEN: usize = 63;

/// Checks a new container's name and returns it unchanged when valid.
pub fn validate(name: &str) -> Result<&str> {
    check(name, false)
}

/// Checks the name of a container that may already exist: also admits
/// `_`, which nixpkgs' create allowed (`^[a-zA-Z0-9_-]+$`).
pub fn validate_existing(name: &str) -> Result<&str> {
    check(name, true)
}

/// A container can start only under a name systemd-nspawn accepts as a
/// machine name.
pub fn check_startable(name: &str) -> Result<()> {
    if name.contains('_') {
        return Err(Error::InvalidName {
            name: name.to_string(),
            reason: "systemd-nspawn refuses '_' in machine names, so this container cannot start; \
                     its files are kept: create a new container under a name with '-' instead \
                     (e.g. with --config-file of its etc/nixos/configuration.nix) and destroy this one"
                .to_string(),
        });
    }
    Ok(())
}

fn check(name: &str, existing: bool) -> Result<&str> {
    let invalid = |reason: &str| Error::InvalidName { name: name.to_string(), reason: reason.to_string() };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name.len() > MAX_LEN {
        return Err(invalid(&format!("it has {} characters, at most {MAX_LEN} are allowed", name.len())));
    }
    if let Some(bad) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || existing && *c == '_')) {
        let what = match bad {
            '/' => "'/'".to_string(),
            ' ' => "a space".to_string(),
            '.' => "'.'".to_string(),
            '_' => "'_' (systemd-nspawn refuses it in machine names; use '-')".to_string(),
            c if c.is_control() => format!("the control character {:?}", c),
            c => format!("'{c}'"),
        };
        return Err(invalid(&format!("it contains {what}; use letters, digits and '-'")));
    }
    // nixpkgs allowed a leading or trailing '-' too, but such a name reads
    // as an option on every command line: no tool could act on it.
    if name.starts_with('-') || name.ends_with('-') {
        return Err(invalid("it must start and end with a letter or digit"));
    }
    Ok(name)
}

/// The candidates `--ensure-unique-name` tries, in order: NAME, NAME-0, NAME-1, ...
pub fn unique_candidates(base: &str) -> impl Iterator<Item = String> + '_ {
    std::iter::once(base.to_string()).chain((0u32..).map(move |n| format!("{base}-{n}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_host_names_up_to_63_characters() {
        for name in ["a", "foo", "Foo-9", "0", &"x".repeat(63), "a-b-c"] {
            assert!(validate(name).is_ok(), "{name} should be valid");
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("-foo", "start and end"),
            ("foo-", "start and end"),
            ("a/b", "'/'"),
            ("a b", "a space"),
            ("..", "'.'"),
            ("a..b", "'.'"),
            ("a_b", "'_'"),
            ("é", "'é'"),
            ("a\nb", "control"),
        ];
        for (name, reason) in cases {
            let err = validate(name).unwrap_err().to_string();
            assert!(err.contains(reason), "{name:?}: {err}");
        }
        let long = "x".repeat(64);
        assert!(validate(&long).unwrap_err().to_string().contains("64 characters"));
    }

    #[test]
    fn existing_names_may_have_underscores_but_cannot_start() {
        assert!(validate("a_b").is_err());
        assert_eq!(validate_existing("a_b").unwrap(), "a_b");
        assert_eq!(validate_existing("web").unwrap(), "web");
        for bad in ["", "a/b", "..", "a b", "-a"] {
            assert!(validate_existing(bad).is_err(), "{bad:?}");
        }
        assert!(check_startable("web").is_ok());
        let err = check_startable("a_b").unwrap_err().to_string();
        assert!(err.contains("systemd-nspawn refuses '_'") && err.contains("cannot start"), "{err}");
    }

    #[test]
    fn unique_candidates_follow_the_anchor() {
        let got: Vec<_> = unique_candidates("foo").take(3).collect();
        assert_eq!(got, ["foo", "foo-0", "foo-1"]);
    }
}

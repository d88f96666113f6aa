//! `NAME.containers` entries in the hosts file (`/etc/hosts`, or
//! NIXOS_CONTAINER_HOSTS_FILE), as the seed wrote them: one line per
//! address of the container. Other lines are kept byte for byte; the file
//! is replaced atomically, under a lock of its own.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::lock::Lock;

const MARK: &str = "# nixos-container";

pub fn host_name(name: &str) -> String {
    format!("{name}.containers")
}

/// Whether `line` is an entry for container `name`: its only host name is
/// `NAME.containers` (lines that also name other hosts are the admin's).
fn is_entry(line: &str, name: &str) -> bool {
    let data = line.split('#').next().unwrap_or("");
    let mut fields = data.split_whitespace();
    let (Some(addr), Some(host), None) = (fields.next(), fields.next(), fields.next()) else {
        return false;
    };
    addr.parse::<IpAddr>().is_ok() && host == host_name(name)
}

/// `text` without entries for `name`.
pub fn without(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if !is_entry(line, name) {
            out.push_str(line);
        }
    }
    out
}

/// `text` with exactly the entries for `name` given by `addrs`.
pub fn with(text: &str, name: &str, addrs: &[IpAddr]) -> String {
    let mut out = without(text, name);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for a in addrs {
        out.push_str(&format!("{a} {} {MARK}\n", host_name(name)));
    }
    out
}

fn update(path: &Path, lock: &Path, edit: impl FnOnce(&str) -> String) -> Result<()> {
    let _held = Lock::exclusive(lock, "the hosts file lock")?;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
        // e.g. NixOS links /etc/hosts into the store: it is managed there.
        tracing::warn!("{} is a symbolic link; not adding container host names to it", path.display());
        return Ok(());
    }
    let text = match &meta {
        Some(_) => std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?,
        None => String::new(),
    };
    let new = edit(&text);
    if new == text {
        return Ok(());
    }
    let mode = meta.map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
    fsutil::write_atomic(path, new.as_bytes(), mode)
}

/// Makes `NAME.containers` resolve to `addrs`.
pub fn add(path: &Path, lock: &Path, name: &str, addrs: &[IpAddr]) -> Result<()> {
    update(path, lock, |t| with(t, name, addrs))
}

/// Removes the entries of container `name`.
pub fn remove(path: &Path, lock: &Path, name: &str) -> Result<()> {
    update(path, lock, |t| without(t, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "127.0.0.1 localhost\n# a comment about web.containers\n10.0.0.9 web.containers web-alias\n::1 localhost ip6-localhost\n";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn adds_one_line_per_address_and_keeps_the_rest() {
        let t = with(HOSTS, "web", &[ip("10.233.1.2"), ip("fd6e::2")]);
        assert_eq!(
            t,
            format!("{HOSTS}10.233.1.2 web.containers # nixos-container\nfd6e::2 web.containers # nixos-container\n")
        );
        assert_eq!(without(&t, "web"), HOSTS);
    }

    #[test]
    fn adding_twice_replaces_and_other_containers_stay() {
        let t = with(HOSTS, "web", &[ip("10.233.1.2")]);
        let t = with(&t, "web-0", &[ip("10.233.2.2")]);
        let t = with(&t, "web", &[ip("10.233.3.2")]);
        assert_eq!(t.matches("web.containers #").count(), 1);
        assert!(t.contains("10.233.3.2 web.containers"));
        assert!(t.contains("10.233.2.2 web-0.containers"));
        assert_eq!(without(&without(&t, "web"), "web-0"), HOSTS);
    }

    #[test]
    fn the_seeds_lines_are_recognised() {
        assert_eq!(without("10.233.1.2 web.containers\n", "web"), "");
        assert_eq!(without("10.233.1.2\tweb.containers  \n", "web"), "");
        assert_eq!(without("10.233.1.2 xweb.containers\n", "web"), "10.233.1.2 xweb.containers\n");
    }

    #[test]
    fn a_file_without_final_newline_keeps_its_last_line() {
        assert_eq!(
            with("1.2.3.4 x", "web", &[ip("10.0.0.2")]),
            "1.2.3.4 x\n10.0.0.2 web.containers # nixos-container\n"
        );
    }

    #[test]
    fn files_are_updated_in_place_of_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        let lock = dir.path().join("hosts.lock");
        std::fs::write(&hosts, HOSTS).unwrap();
        std::fs::set_permissions(&hosts, std::fs::Permissions::from_mode(0o644)).unwrap();
        add(&hosts, &lock, "web", &[ip("10.233.1.2")]).unwrap();
        assert!(std::fs::read_to_string(&hosts).unwrap().ends_with("10.233.1.2 web.containers # nixos-container\n"));
        remove(&hosts, &lock, "web").unwrap();
        assert_eq!(std::fs::read_to_string(&hosts).unwrap(), HOSTS);
        assert_eq!(std::fs::metadata(&hosts).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary file is left: {names:?}");
    }
}

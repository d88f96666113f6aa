//! scripts/install: what it installs where (DESTDIR, PREFIX), the unit
//! files it renders, and the bad input it refuses. Its run on a booted
//! systemd host (units loaded, auto-start enabled) is in systemd_host.rs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

/// Runs scripts/install with `vars` (and our binary, so nothing is built).
fn install(vars: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(repo().join("scripts/install"))
        .env("NIXOS_CONTAINER_BIN", BIN)
        .env_remove("DESTDIR")
        .env_remove("PREFIX")
        .env_remove("SYSTEMD_UNITS")
        .envs(vars.iter().copied())
        .output()
        .expect("running scripts/install")
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out.sort();
    out
}

/// What `PREFIX` (relative, without the leading '/') gets: binary, man
/// pages, completions, and with `units` the unit files.
fn expected(prefix: &str, units: bool) -> Vec<String> {
    let mut want = vec![
        format!("{prefix}/bin/nixos-container"),
        format!("{prefix}/share/bash-completion/completions/nixos-container"),
        format!("{prefix}/share/zsh/site-functions/_nixos-container"),
        format!("{prefix}/share/fish/vendor_completions.d/nixos-container.fish"),
    ];
    for page in fs::read_dir(repo().join("man")).unwrap().flatten() {
        want.push(format!("{prefix}/share/man/man1/{}", page.file_name().to_string_lossy()));
    }
    if units {
        for unit in fs::read_dir(repo().join("units")).unwrap().flatten() {
            want.push(format!("{prefix}/lib/systemd/system/{}", unit.file_name().to_string_lossy()));
        }
    }
    want.sort();
    want
}

fn printed(out: &Output, dest: &Path) -> Vec<String> {
    let mut list: Vec<String> = stdout(out)
        .lines()
        .map(|l| {
            Path::new(l).strip_prefix(dest).unwrap_or_else(|_| panic!("{l} outside DESTDIR")).display().to_string()
        })
        .collect();
    list.sort();
    list
}

#[test]
fn destdir_and_prefix_place_every_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("stage");
    let out = install(&[("DESTDIR", dest.to_str().unwrap()), ("PREFIX", "/usr")]);
    assert!(out.status.success(), "{}", stderr(&out));
    // This host has no systemd as PID 1: no units unless asked for.
    assert!(!Path::new("/run/systemd/system").exists(), "this test expects a host without systemd");
    assert_eq!(files(&dest), expected("usr", false));
    assert_eq!(printed(&out, &dest), expected("usr", false), "it prints what it installs");

    // The files are the repository's, the binary runs, modes are right.
    assert_eq!(fs::read(dest.join("usr/bin/nixos-container")).unwrap(), fs::read(BIN).unwrap());
    let version = Command::new(dest.join("usr/bin/nixos-container")).arg("--version").output().unwrap();
    assert!(stdout(&version).starts_with("nixos-container "), "{}", stdout(&version));
    assert_eq!(
        fs::read(dest.join("usr/share/man/man1/nixos-container-start.1")).unwrap(),
        fs::read(repo().join("man/nixos-container-start.1")).unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| fs::metadata(dest.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("usr/bin/nixos-container"), 0o755);
    assert_eq!(mode("usr/share/zsh/site-functions/_nixos-container"), 0o644);
}

#[test]
fn the_default_prefix_is_usr_local() {
    let tmp = tempfile::tempdir().unwrap();
    let out = install(&[("DESTDIR", tmp.path().to_str().unwrap())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(tmp.path()), expected("usr/local", false));
}

#[test]
fn units_name_the_installed_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let out = install(&[("DESTDIR", tmp.path().to_str().unwrap()), ("PREFIX", "/opt/nc"), ("SYSTEMD_UNITS", "yes")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(tmp.path()), expected("opt/nc", true));
    let unit_dir: PathBuf = tmp.path().join("opt/nc/lib/systemd/system");
    // The containers' units are transient (made at start): no template.
    assert!(!unit_dir.join("nixos-container@.service").exists());
    let autostart = fs::read_to_string(unit_dir.join("nixos-containers-autostart.service")).unwrap();
    let exec = "ExecStart=/opt/nc/bin/nixos-container start --auto";
    assert!(autostart.lines().any(|l| l == exec), "{exec} in:\n{autostart}");
    assert!(!autostart.contains("@bindir@"), "{autostart}");
    assert!(autostart.lines().any(|l| l == "WantedBy=machines.target"), "{autostart}");
    // And SYSTEMD_UNITS=no leaves them out even where systemd runs.
    let tmp2 = tempfile::tempdir().unwrap();
    let out = install(&[("DESTDIR", tmp2.path().to_str().unwrap()), ("SYSTEMD_UNITS", "no")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(files(tmp2.path()), expected("usr/local", false));
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().to_str().unwrap();
    for (vars, says) in [
        (vec![("PREFIX", "usr/local")], "PREFIX must be an absolute path"),
        (vec![("PREFIX", "/opt/my tools")], "PREFIX must not contain whitespace"),
        (vec![("PREFIX", "/opt/$x")], "PREFIX must not contain whitespace"),
        (vec![("SYSTEMD_UNITS", "maybe")], "SYSTEMD_UNITS must be yes, no or auto"),
        (vec![("NIXOS_CONTAINER_BIN", "/nonexistent/nixos-container")], "is not an executable file"),
    ] {
        let mut vars = vars.clone();
        vars.push(("DESTDIR", dest));
        let out = install(&vars);
        assert_eq!(out.status.code(), Some(1), "{vars:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("scripts/install: ") && err.contains(says), "{vars:?}: {err}");
        assert_eq!(files(tmp.path()), Vec::<String>::new(), "{vars:?} wrote nothing");
    }
}

#[test]
fn without_destdir_it_needs_root() {
    // As nobody: the script must refuse before building or writing.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--", "bash"])
        .arg(repo().join("scripts/install"))
        .env("NIXOS_CONTAINER_BIN", BIN)
        .env_remove("DESTDIR")
        .env("PREFIX", "/nonexistent-prefix")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("run as root (or set DESTDIR"), "{}", stderr(&out));
    assert!(!Path::new("/nonexistent-prefix").exists());
}

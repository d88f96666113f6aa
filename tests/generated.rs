//! The generated files in the repository (man/, completions/) match what
//! the code generates now. With NIXOS_CONTAINER_REGENERATE=1 this rewrites
//! them instead (`bash scripts/regenerate`).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn regenerating() -> bool {
    std::env::var_os("NIXOS_CONTAINER_REGENERATE").is_some_and(|v| v == "1")
}

/// Compares (or with NIXOS_CONTAINER_REGENERATE=1 writes) the files of
/// `dir`, which must be exactly `files`.
fn check_dir(dir: &str, files: &[(String, Vec<u8>)]) {
    let dir = repo().join(dir);
    if regenerating() {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
        return;
    }
    let mut stale = Vec::new();
    for (name, content) in files {
        match std::fs::read(dir.join(name)) {
            Ok(on_disk) if on_disk == *content => {}
            _ => stale.push(name.clone()),
        }
    }
    let mut present: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    present.retain(|p| !files.iter().any(|(n, _)| n == p));
    assert!(
        stale.is_empty() && present.is_empty(),
        "{} is out of date (changed or missing: {stale:?}; not generated any more: {present:?}); \
         run `bash scripts/regenerate` and commit the result",
        dir.display()
    );
}

/// The man pages as the binary generates them (`__man-pages DIR`: the
/// CLI definition is the binary's, not the library's).
fn generated_man_pages() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).arg("__man-pages").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "__man-pages: {}", stderr(&out));
    let mut pages: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap())
        })
        .collect();
    pages.sort();
    assert!(!pages.is_empty());
    pages
}

#[test]
fn man_pages_are_up_to_date() {
    check_dir("man", &generated_man_pages());
}

/// The registration scripts of clap's dynamic completion: they call
/// `nixos-container` back at each TAB, so names come from the live state.
#[test]
fn completion_scripts_are_up_to_date() {
    let files: Vec<(String, Vec<u8>)> =
        [("bash", "nixos-container.bash"), ("zsh", "_nixos-container"), ("fish", "nixos-container.fish")]
            .iter()
            .map(|(shell, file)| {
                let out = Command::new(BIN).env("COMPLETE", shell).output().unwrap();
                assert!(out.status.success(), "{shell}: {}", stderr(&out));
                assert!(!out.stdout.is_empty());
                (file.to_string(), out.stdout)
            })
            .collect();
    check_dir("completions", &files);
}

/// `man -l PAGE` as plain ASCII text.
pub fn man(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("LANG", "C")
        .env("LC_ALL", "C")
        .env("MANWIDTH", "200")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man (man-db, installed by scripts/setup)");
    assert!(out.status.success(), "man -l {}: {}", page.display(), stderr(&out));
    // Remove overstrike bold/underline, if any.
    let text = stdout(&out);
    let mut clean = String::new();
    for c in text.chars() {
        if c == '\u{8}' {
            clean.pop();
        } else {
            clean.push(c);
        }
    }
    clean
}

const SUBCOMMANDS: &[&str] = &[
    "list",
    "create",
    "destroy",
    "start",
    "stop",
    "terminate",
    "restart",
    "update",
    "generations",
    "status",
    "run",
    "login",
    "root-login",
    "show-ip",
    "show-host-key",
];

#[test]
fn the_main_man_page_lists_every_subcommand_and_the_exit_codes() {
    let text = man(&repo().join("man/nixos-container.1"));
    // Every visible subcommand of the CLI itself (as --help lists them),
    // not just a fixed list.
    let help = Command::new(BIN).arg("--help").env("COLUMNS", "200").output().unwrap();
    assert!(help.status.success());
    let help = stdout(&help);
    let visible: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(str::to_string)
        .collect();
    assert!(visible.len() >= SUBCOMMANDS.len(), "no subcommands in --help:\n{help}");
    for s in SUBCOMMANDS {
        assert!(visible.iter().any(|v| v == s), "{s} is not a subcommand any more");
    }
    for sub in &visible {
        assert!(text.contains(&format!("nixos-container-{sub}(1)")), "{sub} missing:\n{text}");
        assert!(repo().join(format!("man/nixos-container-{sub}.1")).exists(), "no page for {sub}");
    }
    assert!(!text.contains("supervise"), "{text}");
    assert!(text.contains("EXIT STATUS"), "{text}");
    let flat = words(&text);
    for entry in ["0 success", "1 failure", "2 usage error", "3 no such container", "4 the container is not running"] {
        assert!(flat.contains(entry), "exit code '{entry}' not documented:\n{text}");
    }
    assert!(text.contains("NIXOS_CONTAINER_CONF_DIR"), "{text}");
}

/// Collapses whitespace, so that wrapped lines compare equal.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn each_subcommands_help_and_man_page_agree() {
    for sub in SUBCOMMANDS {
        let help = Command::new(BIN).args([sub, "--help"]).env("COLUMNS", "200").output().unwrap();
        assert!(help.status.success());
        let help = stdout(&help);
        let page = words(&man(&repo().join(format!("man/nixos-container-{sub}.1"))));
        // The one-line description.
        let about = help.lines().next().unwrap();
        assert!(page.contains(&words(about)), "{sub}: '{about}' not in the man page:\n{page}");
        // Every option with its description, every positional argument.
        let mut in_options = false;
        for line in help.lines() {
            if line.starts_with("Options:") || line.starts_with("Arguments:") {
                in_options = true;
                continue;
            }
            if !in_options || line.trim().is_empty() {
                continue;
            }
            let line = line.trim();
            let (flags, text) = line.split_once("  ").unwrap_or((line, ""));
            let flags = flags.split([',', ' ']).map(|f| f.trim_end_matches("..."));
            for flag in flags.filter(|f| f.starts_with("--") || f.starts_with('-') && f.len() == 2) {
                if flag == "-h" || flag == "--help" || flag == "-V" || flag == "--version" {
                    continue;
                }
                assert!(page.contains(flag), "{sub}: {flag} not in the man page:\n{page}");
            }
            let text = words(text.split(" [default").next().unwrap_or(""));
            if !text.is_empty() {
                assert!(page.contains(&text), "{sub}: '{text}' not in the man page:\n{page}");
            }
        }
        assert!(in_options, "{sub}: no options in --help:\n{help}");
    }
}

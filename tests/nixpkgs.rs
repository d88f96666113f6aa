//! What create and update write, evaluated with a real nixpkgs: every
//! shape of configuration.nix, the guest module, the release that becomes
//! system.stateVersion, and the --flake build. Nothing is built (there is
//! no binary cache); each command is the one the tool runs, with
//! `--dry-run`, or the evaluation of the same expression.
//!
//! The tree is nixpkgs 20.09pre (the newest Debian's Nix 2.8 evaluates),
//! unpacked by scripts/setup from ../shared/nixpkgs into
//! /var/cache/nixpkgs-20.09 (NIXOS_CONTAINER_TEST_NIXPKGS moves it). Where
//! it is absent, every test here fails and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nixos_container::nixos_config::{ConfigDir, GUEST_MODULE, GUEST_MODULE_FILE, UserConfig};
use nixos_container::profile::{self, NixFlags, SystemSource};

const DEFAULT_TREE: &str = "/var/cache/nixpkgs-20.09/nixpkgs-20.09pre";
/// No binary cache here: asking for one costs seconds per command.
const OFFLINE_NIX: &str = "substituters =";

fn nixpkgs() -> PathBuf {
    let tree = std::env::var_os("NIXOS_CONTAINER_TEST_NIXPKGS").map(PathBuf::from).unwrap_or(DEFAULT_TREE.into());
    assert!(
        tree.join("nixos/default.nix").is_file(),
        "real nixpkgs absent: {} is missing; run scripts/setup, which unpacks \
         ../shared/nixpkgs/nixpkgs-20.09pre.tar.xz there (or set NIXOS_CONTAINER_TEST_NIXPKGS)",
        tree.display()
    );
    tree
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a Nix command with `<nixpkgs>` pointing at the real tree.
fn nix(argv: &[String]) -> Output {
    Command::new(&argv[0])
        .args(&argv[1..])
        .env("NIX_PATH", format!("nixpkgs={}", nixpkgs().display()))
        .env("NIX_CONFIG", OFFLINE_NIX)
        .env_remove("NIXOS_CONFIG")
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Evaluates `attr` of the NixOS `config` builds.
fn eval(config: &Path, attr: &str) -> String {
    let out = nix(&strings(&[
        "nix-instantiate",
        "--eval",
        "--strict",
        "--json",
        "<nixpkgs/nixos>",
        "-I",
        &format!("nixos-config={}", config.display()),
        "-A",
        attr,
    ]));
    assert!(out.status.success(), "evaluating {attr} of {}: {}", config.display(), stderr(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A container's configuration directory as create and update write it
/// (the tool's own code), in a directory of its own.
fn etc_nixos(dir: &Path, user: &UserConfig, state_version: Option<&str>) -> PathBuf {
    let config = ConfigDir::open_host(dir, true).unwrap();
    config.replace("web", user, state_version).unwrap();
    assert!(dir.join(GUEST_MODULE_FILE).is_file());
    config.config_path()
}

/// The release create writes as system.stateVersion: evaluated with the
/// tool's own function, from the real tree.
#[test]
fn the_state_version_is_the_release_of_the_nixpkgs_used() {
    let tree = nixpkgs();
    let nixos = tree.join("nixos");
    let release = profile::nixos_release(nixos.to_str().unwrap(), &NixFlags::default()).unwrap();
    assert_eq!(release, "20.09");
}

#[test]
fn every_configuration_create_and_update_write_evaluates_with_real_nixos() {
    nixpkgs();
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("web.nix");
    std::fs::write(&module, "{ pkgs, ... }: { services.nginx.enable = true; }\n").unwrap();
    let inline = "services.nginx.enable = true; # a trailing comment\nnetworking.firewall.allowedTCPPorts = [ 80 ];";
    let shapes: [(&str, UserConfig, Option<&str>); 5] = [
        ("none", UserConfig::None, Some("20.09")),
        ("inline", UserConfig::Inline(inline.into()), Some("20.09")),
        ("file", UserConfig::file(&module).unwrap(), Some("20.09")),
        // Containers created before stateVersion was written, updated since.
        ("none-old", UserConfig::None, None),
        ("inline-old", UserConfig::Inline(inline.into()), None),
    ];
    for (what, user, state_version) in &shapes {
        let config = etc_nixos(&tmp.path().join(what), user, *state_version);
        assert_eq!(eval(&config, "config.boot.isContainer"), "true", "{what}");
        assert_eq!(eval(&config, "config.networking.hostName"), "\"web\"", "{what}");
        assert_eq!(eval(&config, "config.system.stateVersion"), "\"20.09\"", "{what}");
        if !matches!(user, UserConfig::None) {
            assert_eq!(eval(&config, "config.services.nginx.enable"), "true", "{what}");
        }
        // The system's derivation: every option, assertion and warning.
        let out = nix(&strings(&[
            "nix-instantiate",
            "<nixpkgs/nixos>",
            "-A",
            "system",
            "-I",
            &format!("nixos-config={}", config.display()),
        ]));
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        // NixOS's warnings (failed `warnings`, deprecated options) are traces.
        assert!(!stderr(&out).contains("trace:"), "{what}: {}", stderr(&out));
    }
    // A user's own stateVersion wins over the one create froze.
    let own = etc_nixos(
        &tmp.path().join("own"),
        &UserConfig::Inline("system.stateVersion = \"19.09\";".into()),
        Some("20.09"),
    );
    assert_eq!(eval(&own, "config.system.stateVersion"), "\"19.09\"");
}

/// The build command create runs (`nix-env -p PROFILE -I nixos-config=...
/// -f <nixpkgs/nixos> --set -A system`), with --dry-run.
#[test]
fn the_build_command_evaluates_with_real_nixos() {
    nixpkgs();
    let tmp = tempfile::tempdir().unwrap();
    let config = etc_nixos(&tmp.path().join("etc-nixos"), &UserConfig::Inline("# nothing\n".into()), Some("20.09"));
    let profile_path = tmp.path().join("profile/system");
    let source = SystemSource::NixosConfig { nixos_path: profile::DEFAULT_NIXOS_PATH.into(), config };
    let flags = NixFlags { options: vec![("cores".into(), "1".into())], ..NixFlags::default() };
    let mut argv = profile::command(&profile_path, &source, &flags);
    argv.push("--dry-run".into());
    let out = nix(&argv);
    assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
    assert!(stderr(&out).contains("nixos-system-web-20.09"), "{}", stderr(&out));
    assert!(!profile_path.exists(), "a dry run selects nothing");
}

/// The guest module works in real NixOS: its sockets and services come out
/// as the socket contract says.
#[test]
fn the_guest_module_gives_the_sockets_in_real_nixos() {
    nixpkgs();
    let tmp = tempfile::tempdir().unwrap();
    let config = etc_nixos(tmp.path(), &UserConfig::None, Some("20.09"));
    let socket = eval(&config, "config.systemd.units.\"root-shell.socket\".text");
    for line in ["ListenStream=/var/lib/root-shell.socket", "Accept=true", "SocketMode=0600"] {
        assert!(socket.contains(line), "{line} missing from {socket}");
    }
    let login = eval(&config, "config.systemd.units.\"login.socket\".text");
    assert!(login.contains("ListenStream=/var/lib/login.socket"), "{login}");
    let shell = eval(&config, "config.systemd.units.\"root-shell@.service\".text");
    assert!(shell.contains("/bin/bash --login") && shell.contains("StandardInput=socket"), "{shell}");
    assert_eq!(eval(&config, "config.systemd.sockets.root-shell.wantedBy"), "[\"sockets.target\"]");
}

/// `create --flake`: the flake's nixosConfigurations.ATTR built by the
/// tool's `nix build` command line (with --dry-run), from real nixpkgs'
/// nixosSystem, and with the Nix flags passed through.
#[test]
fn the_flake_build_evaluates_with_real_nixpkgs() {
    let tree = nixpkgs();
    let tmp = tempfile::tempdir().unwrap();
    let flake = tmp.path().join("flake");
    std::fs::create_dir_all(&flake).unwrap();
    std::fs::write(flake.join("container-login.nix"), GUEST_MODULE).unwrap();
    std::fs::write(
        flake.join("flake.nix"),
        format!(
            r#"{{
  inputs.nixpkgs.url = "path:{}";
  outputs = {{ self, nixpkgs }}: {{
    nixosConfigurations.web = nixpkgs.lib.nixosSystem {{
      system = "x86_64-linux";
      modules = [ ./container-login.nix {{ boot.isContainer = true; system.stateVersion = "20.09"; }} ];
    }};
  }};
}}
"#,
            tree.display()
        ),
    )
    .unwrap();
    let source = SystemSource::flake(&format!("{}#web", flake.display()));
    let flags = NixFlags { no_write_lock_file: true, ..NixFlags::default() };
    let mut argv = profile::command(&tmp.path().join("profile/system"), &source, &flags);
    let build = argv.iter().position(|a| a == "build").unwrap();
    argv.insert(build + 1, "--dry-run".into());
    let out = nix(&argv);
    assert!(out.status.success(), "{argv:?}: {}", stderr(&out));
    assert!(!flake.join("flake.lock").exists(), "--no-write-lock-file reached nix");
}

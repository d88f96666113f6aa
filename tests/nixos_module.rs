//! module.nix, the NixOS module for hosts: it evaluates with the real
//! nixpkgs (a 2020 snapshot that Nix 2.8 evaluates, see
//! ../shared/nixpkgs/README.md) and with the project's stand-in (nixos/),
//! puts the package on PATH ahead of nixpkgs' own nixos-container, renders
//! the units with ExecStart in the package, and hooks the auto-start into
//! machines.target. Nothing can be built from that nixpkgs here (no binary
//! cache), so the package given to the module is an unbuilt placeholder;
//! what is checked is the evaluation.

mod common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use nix::fcntl::{Flock, FlockArg};

const NIXPKGS_CACHE: &str = "/var/cache/nixpkgs-20.09";
const NIXPKGS_TARBALL: &str = "nixpkgs-20.09pre.tar.xz";

/// The unpacked real nixpkgs: /var/cache/nixpkgs-20.09/nixpkgs-20.09pre,
/// unpacked from the shared tarball when missing. Fails, naming the
/// tarball, when it is nowhere.
fn real_nixpkgs() -> PathBuf {
    let unpacked = Path::new(NIXPKGS_CACHE).join("nixpkgs-20.09pre");
    if unpacked.join("nixos/default.nix").exists() {
        return unpacked;
    }
    // ../shared/nixpkgs beside the checkout (or beside one of its parents,
    // for worktrees in a subdirectory), or where the variable says.
    let tarball = std::env::var_os("NIXOS_CONTAINER_NIXPKGS_TARBALL").map(PathBuf::from).or_else(|| {
        repo().ancestors().skip(1).map(|d| d.join("shared/nixpkgs").join(NIXPKGS_TARBALL)).find(|t| t.exists())
    });
    let Some(tarball) = tarball.filter(|t| t.exists()) else {
        panic!(
            "the real-nixpkgs evaluation needs {NIXPKGS_TARBALL} (nixpkgs 20.09pre, in ../shared/nixpkgs/ beside \
             the repository, or NIXOS_CONTAINER_NIXPKGS_TARBALL), or it unpacked at {}; neither exists",
            unpacked.display()
        )
    };
    fs::create_dir_all(NIXPKGS_CACHE).unwrap();
    let lock = File::create(Path::new(NIXPKGS_CACHE).join(".unpack.lock")).unwrap();
    let _lock = Flock::lock(lock, FlockArg::LockExclusive).map_err(|(_, e)| e).unwrap();
    if !unpacked.join("nixos/default.nix").exists() {
        let out = Command::new("tar").arg("xJf").arg(&tarball).arg("-C").arg(NIXPKGS_CACHE).output().unwrap();
        assert!(out.status.success(), "unpacking {}: {}", tarball.display(), stderr(&out));
    }
    unpacked
}

fn nix_instantiate(args: &[&str]) -> Output {
    Command::new("nix-instantiate")
        .env("NIX_CONFIG", OFFLINE_NIX)
        .args(["--option", "substituters", ""])
        .args(args)
        .output()
        .expect("running nix-instantiate")
}

/// A host configuration importing module.nix; `package` false leaves the
/// package unset.
fn write_config(dir: &Path, real: bool, package: bool) -> PathBuf {
    let config = dir.join(format!("configuration-{real}-{package}.nix"));
    let host = if real {
        "boot.loader.grub.enable = false;\n  fileSystems.\"/\" = { device = \"/dev/vda\"; fsType = \"ext4\"; };"
    } else {
        ""
    };
    let pkg = if package {
        "programs.nixos-container.package = pkgs.writeTextDir \"bin/nixos-container\" \"placeholder\";"
    } else {
        ""
    };
    fs::write(
        &config,
        format!(
            "{{ pkgs, ... }}: {{\n  imports = [ {} ];\n  {host}\n  programs.nixos-container.enable = true;\n  {pkg}\n}}\n",
            repo().join("module.nix").display()
        ),
    )
    .unwrap();
    config
}

/// What the checks need from an evaluated system, as JSON.
const PROBE: &str = r#"
  c = s.config;
  isOurs = p: (builtins.parseDrvName p.name).name == "nixos-container";
  units = builtins.filter (p: p ? text && builtins.substring 0 5 p.name == "unit-") c.systemd.packages;
  lines = t: builtins.filter builtins.isString (builtins.split "\n" t);
in {
  package = c.programs.nixos-container.package.outPath;
  installed = map (p: { path = p.outPath; priority = p.meta.priority or null; }) (builtins.filter isOurs c.environment.systemPackages);
  units = map (u: { name = u.name; exec = builtins.filter (l: builtins.substring 0 10 l == "ExecStart=") (lines u.text); }) units;
  autostartWantedBy = c.systemd.services.nixos-containers-autostart.wantedBy;
  multiUserWants = c.systemd.targets.multi-user.wants;
  warnings = c.warnings;
}"#;

fn evaluate(expr: &str) -> serde_json::Value {
    let out = nix_instantiate(&["--eval", "--strict", "--json", "-E", expr]);
    assert!(out.status.success(), "nix-instantiate --eval: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check(v: &serde_json::Value, other_nixos_container: bool) {
    let pkg = v["package"].as_str().unwrap();
    let installed = v["installed"].as_array().unwrap();
    let ours: Vec<_> = installed.iter().filter(|p| p["path"] == pkg).collect();
    assert_eq!(ours.len(), 1, "{v}");
    if other_nixos_container {
        // nixpkgs' own nixos-container is there too: ours wins on PATH.
        assert_eq!(installed.len(), 2, "{v}");
        assert_eq!(ours[0]["priority"], -10, "{v}");
    }
    let units = v["units"].as_array().unwrap();
    let exec =
        |name: &str| units.iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("{name}: {v}"))["exec"].clone();
    // The containers' units are transient: no template is installed.
    assert!(!units.iter().any(|u| u["name"] == "unit-nixos-container-at.service"), "{v}");
    assert_eq!(
        exec("unit-nixos-containers-autostart.service"),
        serde_json::json!([format!("ExecStart={pkg}/bin/nixos-container start --auto")])
    );
    assert_eq!(v["autostartWantedBy"], serde_json::json!(["machines.target"]));
    assert!(v["multiUserWants"].as_array().unwrap().iter().any(|w| w == "machines.target"), "{v}");
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn the_host_module_evaluates_with_the_stand_in() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), false, true);
    let nixos = nixos_path();
    // The whole system instantiates (every option, assertion and unit).
    let out =
        nix_instantiate(&[nixos.to_str().unwrap(), "-A", "system", "--arg", "configuration", config.to_str().unwrap()]);
    assert!(out.status.success(), "stand-in system with module.nix: {}", stderr(&out));
    assert!(stdout(&out).trim().ends_with(".drv"), "{}", stdout(&out));
    let v =
        evaluate(&format!("let s = import {} {{ configuration = {}; }};{PROBE}", nixos.display(), config.display()));
    check(&v, false);

    // Without a package: one clear message, from the module's assertion.
    let config = write_config(tmp.path(), false, false);
    let out =
        nix_instantiate(&[nixos.to_str().unwrap(), "-A", "system", "--arg", "configuration", config.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("programs.nixos-container.package must be set"), "{}", stderr(&out));
}

#[test]
fn the_host_module_evaluates_with_real_nixpkgs() {
    let nixpkgs = real_nixpkgs();
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path(), true, true);
    let np = format!("nixpkgs={}", nixpkgs.display());
    let nc = format!("nixos-config={}", config.display());
    let out = nix_instantiate(&["-I", &np, "-I", &nc, "<nixpkgs/nixos>", "-A", "system"]);
    assert!(out.status.success(), "real NixOS system with module.nix: {}", stderr(&out));
    assert!(stdout(&out).trim().ends_with(".drv"), "{}", stdout(&out));
    let v = evaluate(&format!(
        "let s = import {}/nixos {{ configuration = {}; }};{PROBE}",
        nixpkgs.display(),
        config.display()
    ));
    check(&v, true);

    let config = write_config(tmp.path(), true, false);
    let nc = format!("nixos-config={}", config.display());
    let out = nix_instantiate(&["-I", &np, "-I", &nc, "<nixpkgs/nixos>", "-A", "system"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("programs.nixos-container.package must be set"), "{}", stderr(&out));
}

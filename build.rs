//! Builds the guest agent (agent/) as a static binary and embeds it in the
//! CLI, with the store path `nix-store --add` will give it.
//!
//! Guests run their own libc (or none in /lib at all), so the agent must not
//! need a dynamic loader: it is linked with `+crt-static` (glibc static-pie,
//! the only target installed here), in a separate target directory so that
//! the flag reaches neither the CLI nor build scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "src/guest/store_path.rs"]
mod store_path;

const AGENT: &str = "nixos-container-agent";

fn main() {
    // Cargo.lock: a dependency of the agent that changes version changes it.
    for p in ["agent/src", "agent/Cargo.toml", "Cargo.lock", "src/guest/store_path.rs", "build.rs"] {
        println!("cargo:rerun-if-changed={p}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target = std::env::var("TARGET").expect("TARGET");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let target_dir = out.join("agent-target");

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&manifest_dir)
        .args(["build", "--offline", "--release", "-p", AGENT, "--bin", AGENT, "--target", &target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+crt-static")
        .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s")
        .env("CARGO_PROFILE_RELEASE_PANIC", "abort")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .env("CARGO_PROFILE_RELEASE_LTO", "true")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1");
    // What the outer cargo set for this crate must not leak into the inner
    // build (clippy's wrapper, the outer target directory, its flags).
    for var in [
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_RUSTFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("running cargo for the agent");
    assert!(status.success(), "building the static agent failed");

    let bin = target_dir.join(&target).join("release").join(AGENT);
    let bytes = std::fs::read(&bin).expect("reading the agent");
    assert!(
        !has_interpreter(&bytes),
        "{} is dynamically linked; the agent must be static to run in any guest",
        bin.display()
    );
    let embedded = out.join(AGENT);
    std::fs::write(&embedded, &bytes).expect("copying the agent");
    let path = store_path::source_store_path("/nix/store", AGENT, &store_path::nar_sha256_executable(&bytes));
    println!("cargo:rustc-env=NIXOS_CONTAINER_AGENT_BIN={}", display(&embedded));
    println!("cargo:rustc-env=NIXOS_CONTAINER_AGENT_STORE_PATH={path}");
}

fn display(p: &Path) -> String {
    p.to_str().expect("OUT_DIR is UTF-8").to_string()
}

/// Whether an ELF64 file has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2, "the agent is not an ELF64 file");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) == 3
    })
}

//! The Nix store path that `nix-store --add FILE` gives an executable file,
//! computed without Nix: so that the CLI knows, with one stat(2), whether
//! its agent is already in the store. Used by build.rs as well.

use sha2::{Digest, Sha256};

/// Nix's base-32 alphabet (no e, o, t, u).
const BASE32: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

fn nar_str(h: &mut Sha256, s: &[u8]) {
    h.update((s.len() as u64).to_le_bytes());
    h.update(s);
    let pad = (8 - s.len() % 8) % 8;
    h.update(&[0u8; 8][..pad]);
}

/// SHA-256 of the NAR serialisation of one executable regular file.
pub fn nar_sha256_executable(contents: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for s in [&b"nix-archive-1"[..], b"(", b"type", b"regular", b"executable", b"", b"contents"] {
        nar_str(&mut h, s);
    }
    nar_str(&mut h, contents);
    nar_str(&mut h, b")");
    h.finalize().into()
}

/// Nix's base-32 rendering (least significant bits first).
pub fn nix_base32(bytes: &[u8]) -> String {
    let len = (bytes.len() * 8).div_ceil(5);
    let mut out = String::with_capacity(len);
    for n in (0..len).rev() {
        let b = n * 5;
        let (i, j) = (b / 8, b % 8);
        let lo = bytes[i] as u16 >> j;
        let hi = if i + 1 < bytes.len() { (bytes[i + 1] as u16) << (8 - j) } else { 0 };
        out.push(BASE32[((lo | hi) & 0x1f) as usize] as char);
    }
    out
}

/// The path of a content-addressed ("source") store object without
/// references, as `nix-store --add` makes it.
pub fn source_store_path(store_dir: &str, name: &str, nar_sha256: &[u8; 32]) -> String {
    let hex: String = nar_sha256.iter().map(|b| format!("{b:02x}")).collect();
    let fingerprint = format!("source:sha256:{hex}:{store_dir}:{name}");
    let digest: [u8; 32] = Sha256::digest(fingerprint.as_bytes()).into();
    let mut compressed = [0u8; 20];
    for (i, b) in digest.iter().enumerate() {
        compressed[i % 20] ^= b;
    }
    format!("{store_dir}/{}-{name}", nix_base32(&compressed))
}

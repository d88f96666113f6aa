//! The guest's SSH host key as `show-host-key` prints it: a `known_hosts`
//! line. The key file is written by the guest, so it is hostile text that
//! ends up in the admin's known_hosts and terminal: only exactly one
//! `TYPE BASE64 [COMMENT]` line of printable ASCII is accepted, with a key
//! type an SSH host key can have and a key blob that names that type.
//! Markers (`@cert-authority`, `@revoked`), host patterns, several lines
//! and escape sequences are refused.

/// The key types of SSH host keys (no certificates: they are not put in
/// known_hosts as keys).
const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-dss",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// More than any real public key file (a 16384-bit RSA key is about 2.8 KiB).
pub const MAX_LEN: usize = 16 * 1024;

/// A public key as read from a `.pub` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub key_type: String,
    pub base64: String,
    pub comment: Option<String>,
}

impl PublicKey {
    /// Parses the text of a `.pub` file: one line, its final newline optional.
    pub fn parse(text: &[u8]) -> Result<PublicKey, String> {
        if text.len() > MAX_LEN {
            return Err(format!("it has {} bytes, more than a public key ({MAX_LEN} at most)", text.len()));
        }
        let line = text.strip_suffix(b"\n").unwrap_or(text);
        if line.contains(&b'\n') {
            return Err("it has more than one line".into());
        }
        if let Some(b) = line.iter().find(|b| !(b.is_ascii_graphic() || **b == b' ')) {
            return Err(format!("it contains the byte 0x{b:02x} (only printable ASCII is accepted)"));
        }
        let line = std::str::from_utf8(line).expect("printable ASCII");
        let mut fields = line.splitn(3, ' ');
        let key_type = fields.next().unwrap_or_default();
        let base64 = fields.next().unwrap_or_default();
        let comment = fields.next().map(str::trim).filter(|c| !c.is_empty());
        if key_type.is_empty() {
            return Err("it is empty".into());
        }
        if !TYPES.contains(&key_type) {
            return Err(format!("'{key_type}' is not an SSH host key type (expected e.g. ssh-ed25519)"));
        }
        let blob = decode_base64(base64).ok_or("the key is not valid base64")?;
        // The blob starts with the key type as an SSH string (RFC 4253 6.6).
        let named = blob
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .and_then(|len| blob.get(4..4 + len));
        if named != Some(key_type.as_bytes()) {
            return Err(format!("the key data is not a {key_type} key"));
        }
        Ok(PublicKey { key_type: key_type.into(), base64: base64.into(), comment: comment.map(str::to_string) })
    }

    /// The known_hosts line for `hosts` (names or addresses, none empty).
    pub fn known_hosts_line(&self, hosts: &[String]) -> String {
        let mut line = format!("{} {} {}", hosts.join(","), self.key_type, self.base64);
        if let Some(c) = &self.comment {
            line.push(' ');
            line.push_str(c);
        }
        line
    }
}

/// Standard base64 with padding, as OpenSSH writes it. None if invalid.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes = s.as_bytes();
    let pad = bytes.iter().rev().take_while(|b| **b == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let data = if last { &chunk[..4 - pad] } else { chunk };
        let mut n = 0u32;
        for &c in data {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * (4 - data.len()) as u32;
        let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&got[..data.len() - 1]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr9pX2k1tJ3hX5m3YkGZ2f0v9m6b8y3Tq2m7QF0d1Yx";

    #[test]
    fn base64_decodes_as_openssh_writes_it() {
        assert_eq!(decode_base64("AAAAC3Nz").unwrap(), b"\0\0\0\x0bss");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        for bad in ["", "YQ=", "Y===", "YQ==YQ==", "YQ=a", "Y Q=", "YQ\n=", "\u{1b}QQQ"] {
            assert_eq!(decode_base64(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_real_key_becomes_a_known_hosts_line() {
        for text in [format!("{ED25519} root@web\n"), format!("{ED25519} root@web"), format!("{ED25519}  root@web  ")] {
            let k = PublicKey::parse(text.as_bytes()).unwrap();
            assert_eq!(k.comment.as_deref(), Some("root@web"));
            assert_eq!(
                k.known_hosts_line(&["web.containers".into(), "10.233.1.2".into()]),
                format!("web.containers,10.233.1.2 {ED25519} root@web")
            );
        }
        let k = PublicKey::parse(ED25519.as_bytes()).unwrap();
        assert_eq!(k.known_hosts_line(&["w.containers".into()]), format!("w.containers {ED25519}"));
        // An ECDSA key names its curve in the blob.
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        assert!(PublicKey::parse(ecdsa.as_bytes()).is_ok());
    }

    #[test]
    fn forged_lines_are_refused() {
        let cases: Vec<(String, &str)> = vec![
            (format!("@cert-authority * {ED25519}"), "not an SSH host key type"),
            (format!("@revoked * {ED25519}"), "not an SSH host key type"),
            (format!("* {ED25519}"), "not an SSH host key type"),
            (format!("*.example.com,github.com {ED25519}"), "not an SSH host key type"),
            (format!("{ED25519} root@web\n@cert-authority * {ED25519}\n"), "more than one line"),
            (format!("{ED25519}\n\n"), "more than one line"),
            (format!("{ED25519} \u{1b}]0;owned\u{7}"), "byte 0x1b"),
            (format!("{ED25519} root\r@cert-authority"), "byte 0x0d"),
            (format!("{ED25519}\tcomment"), "byte 0x09"),
            (format!("{ED25519} caf\u{e9}"), "byte 0xc3"),
            ("ssh-ed25519 AAAA!!!!".into(), "not valid base64"),
            ("ssh-ed25519".into(), "not valid base64"),
            ("ssh-ed25519 YWI=".into(), "not a ssh-ed25519 key"),
            // A valid blob of another type.
            (format!("ssh-rsa {}", &ED25519[12..]), "not a ssh-rsa key"),
            ("ssh-ed25519-cert-v01@openssh.com AAAA".into(), "not an SSH host key type"),
            ("".into(), "empty"),
            (format!("{ED25519} {}", "x".repeat(MAX_LEN)), "more than a public key"),
        ];
        for (text, reason) in cases {
            let err = PublicKey::parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
    }
}

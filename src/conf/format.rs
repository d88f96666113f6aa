//! The file format: shell-style `KEY=VALUE` lines, values quoted so that
//! both sh and systemd's `EnvironmentFile` read them back unchanged.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// Parses `KEY=VALUE` lines into pairs. Errors name the line. The text is
/// bytes: values (paths above all) need not be UTF-8; keys are ASCII.
pub fn parse_pairs(text: &[u8]) -> std::result::Result<Vec<(String, OsString)>, (usize, String)> {
    let mut pairs = Vec::new();
    for (i, raw) in text.split(|c| *c == b'\n').enumerate() {
        let lineno = i + 1;
        let line = raw.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") || line.starts_with(b";") {
            continue;
        }
        let line = line.strip_prefix(b"export ").map(<[u8]>::trim_ascii_start).unwrap_or(line);
        let Some(eq) = line.iter().position(|c| *c == b'=') else {
            return Err((lineno, format!("expected KEY=VALUE, found '{}'", shorten(&String::from_utf8_lossy(raw)))));
        };
        let (key, value) = (&line[..eq], &line[eq + 1..]);
        let key = String::from_utf8_lossy(key);
        if !valid_key(&key) {
            return Err((lineno, format!("'{}' is not a valid key", shorten(&key))));
        }
        let value = unquote(value).map_err(|e| (lineno, e))?;
        pairs.push((key.into_owned(), OsString::from_vec(value)));
    }
    Ok(pairs)
}

pub(super) fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
}

pub(super) fn shorten(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).collect();
    if s.chars().count() > 60 { format!("{}...", s.chars().take(60).collect::<String>()) } else { s }
}

/// Shell-like value syntax: bare words, "double" and 'single' quotes, which
/// may be concatenated. Whitespace outside quotes is kept between words (the
/// anchor writes space-separated lists unquoted only when they are empty).
pub(super) fn unquote(value: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut bytes = value.iter().copied();
    while let Some(c) = bytes.next() {
        match c {
            b'"' => loop {
                match bytes.next() {
                    None => return Err("unterminated double quote".into()),
                    Some(b'"') => break,
                    Some(b'\\') => match bytes.next() {
                        Some(e @ (b'"' | b'\\' | b'$' | b'`')) => out.push(e),
                        Some(b'\n') => {}
                        Some(e) => out.extend([b'\\', e]),
                        None => return Err("unterminated double quote".into()),
                    },
                    Some(c) => out.push(c),
                }
            },
            b'\'' => loop {
                match bytes.next() {
                    None => return Err("unterminated single quote".into()),
                    Some(b'\'') => break,
                    Some(c) => out.push(c),
                }
            },
            b'\\' => match bytes.next() {
                Some(e) => out.push(e),
                None => return Err("trailing backslash".into()),
            },
            c => out.push(c),
        }
    }
    // The line is trimmed already: whitespace left at the end was quoted.
    Ok(out)
}

/// Quotes a value so that both sh and systemd read it back unchanged.
pub(super) fn quote(value: &[u8]) -> Vec<u8> {
    let plain = value.iter().all(|c| c.is_ascii_alphanumeric() || b"-_./:,@+%#=".contains(c));
    if plain && !value.starts_with(b"#") {
        return value.to_vec();
    }
    let mut s = vec![b'"'];
    for c in value {
        if matches!(c, b'"' | b'\\' | b'$' | b'`') {
            s.push(b'\\');
        }
        s.push(*c);
    }
    s.push(b'"');
    s
}

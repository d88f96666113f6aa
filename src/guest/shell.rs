//! Runs one command in a running guest through its root-shell socket and
//! captures its output and exit status.
//!
//! Interim: the full run protocol is being built on another branch; `update`
//! uses this small function until that lands. The root shell is a plain
//! `bash --login` on the connection, so the command is sent as one line,
//! followed by a line that prints a unique marker and `$?`; everything before
//! the marker is the command's output (stdout and stderr merged).

use std::io::{Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, IoContext, Result};
use crate::guest;

/// What a command run in the guest did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Its exit status as the guest's shell reported it.
    pub status: i32,
    /// Its stdout and stderr, interleaved as written.
    pub output: String,
}

/// A marker that the command's output will not contain by chance.
fn new_marker() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("__nixos_container_status_{}_{nanos:x}__", std::process::id())
}

/// The line sent to the shell. `command` is shell text; stdin is /dev/null
/// so that it cannot read what follows, and the leading newline of the
/// status line puts the marker on a line of its own.
pub fn script(command: &str, marker: &str) -> String {
    format!("{{ {command}\n}} </dev/null 2>&1; printf '\\n%s %d\\n' '{marker}' \"$?\"\n")
}

/// Splits what the shell sent back into the command's output and status.
/// None when the marker line is missing (the shell died before reporting).
pub fn parse(raw: &[u8], marker: &str) -> Option<Finished> {
    let text = String::from_utf8_lossy(raw);
    let needle = format!("\n{marker} ");
    let at = text.rfind(&needle)?;
    let rest = &text[at + needle.len()..];
    let status = rest.lines().next()?.trim().parse().ok()?;
    Some(Finished { status, output: text[..at].to_string() })
}

/// Connects to the root shell. The socket file appears when the guest's
/// systemd binds it, a moment before it listens: a refused connection is
/// tried again for a few seconds.
fn connect(root: &Path) -> Result<std::os::unix::net::UnixStream> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match guest::connect(root, "var/lib/root-shell.socket") {
            Err(Error::Io { source, .. })
                if source.raw_os_error() == Some(libc::ECONNREFUSED) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Runs `command` (shell text) as root in the guest whose root is `root`.
pub fn run(root: &Path, command: &str) -> Result<Finished> {
    let marker = new_marker();
    let mut stream = connect(root)?;
    stream
        .write_all(script(command, &marker).as_bytes())
        .context(|| "sending the command to the guest".into())?;
    stream.shutdown(Shutdown::Write).context(|| "sending the command to the guest".into())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).context(|| "reading the guest's answer".into())?;
    parse(&raw, &marker).ok_or_else(|| {
        let said = String::from_utf8_lossy(&raw);
        Error::other(format!(
            "the guest's root shell ended without reporting the exit status of '{command}'; it said:\n{}",
            said.trim_end()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "__m_1__";

    #[test]
    fn the_script_redirects_stdin_and_reports_the_status() {
        assert_eq!(
            script("switch-to-configuration test", M),
            "{ switch-to-configuration test\n} </dev/null 2>&1; printf '\\n%s %d\\n' '__m_1__' \"$?\"\n"
        );
    }

    #[test]
    fn output_and_status_are_split_at_the_marker() {
        let f = parse(b"activating...\ndone\n\n__m_1__ 0\n", M).unwrap();
        assert_eq!(f, Finished { status: 0, output: "activating...\ndone\n".into() });
        let f = parse(b"warning: the following units failed: x.service\n\n__m_1__ 4\n", M).unwrap();
        assert_eq!(f.status, 4);
        assert_eq!(f.output, "warning: the following units failed: x.service\n");
    }

    #[test]
    fn output_without_a_final_newline_is_kept_as_is() {
        let f = parse(b"no newline\n__m_1__ 1\n", M).unwrap();
        assert_eq!(f, Finished { status: 1, output: "no newline".into() });
        let f = parse(b"\n__m_1__ 0\n", M).unwrap();
        assert_eq!(f.output, "");
    }

    #[test]
    fn the_last_marker_counts() {
        // A command that prints something marker-like cannot fake the status.
        let f = parse(b"\n__m_1__ 0\nmore\n\n__m_1__ 3\n", M).unwrap();
        assert_eq!(f.status, 3);
        assert_eq!(f.output, "\n__m_1__ 0\nmore\n");
    }

    #[test]
    fn a_missing_or_garbled_marker_is_no_answer() {
        assert_eq!(parse(b"killed half-way", M), None);
        assert_eq!(parse(b"\n__m_1__ x\n", M), None);
        assert_eq!(parse(b"\n__other__ 0\n", M), None);
    }
}

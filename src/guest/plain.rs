//! The plain shell protocol: how a command runs through a root-shell socket
//! that offers nothing but the seed's `bash --login` (no agent in the
//! guest's store, or `NIXOS_CONTAINER_AGENT=off`).
//!
//! After the plain mark, the client sends one line that replaces the shell
//! with `/bin/sh -c SCRIPT sh ARGV...`: the arguments travel single-quoted,
//! so they reach the command exactly, and once bash has exec'd nothing reads
//! the connection as shell input any more. Everything after that line is
//! the command's stdin, and the client's end of writing is its EOF. The
//! script prints `NONCE P <pid>` first and `NONCE X <status>` last (NONCE is
//! random per run); the output in between is the command's stdout and
//! stderr, merged (a single connection has one stream). Signals are
//! forwarded by killing the command through a second connection. What this
//! cannot do: separate stderr, a pty, another user, and ending the command
//! when the CLI is killed with SIGKILL (it ends when it next touches the
//! connection).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::guest::Io;
use crate::guest::protocol::{ExitStatus, Request, sh_quote};

/// The line that runs `req` in place of the root shell.
pub fn command_line(req: &Request, nonce: &str) -> Result<Vec<u8>> {
    let mut script = format!("printf '%s P %s\\n' {nonce} \"$$\"; ").into_bytes();
    if let Some(dir) = &req.cwd {
        script.extend_from_slice(b"cd -- ");
        script.extend(sh_quote(dir));
        script.extend_from_slice(format!(" || {{ printf '%s X %s\\n' {nonce} 1; exit 1; }}; ").as_bytes());
    }
    for kv in &req.env {
        let eq = kv.iter().position(|&b| b == b'=').ok_or_else(|| bad_env(kv))?;
        let key = &kv[..eq];
        let valid =
            !key.is_empty() && !key[0].is_ascii_digit() && key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        if !valid {
            return Err(bad_env(kv));
        }
        script.extend_from_slice(b"export ");
        script.extend_from_slice(key);
        script.push(b'=');
        script.extend(sh_quote(&kv[eq + 1..]));
        script.extend_from_slice(b"; ");
    }
    script.extend_from_slice(format!("\"$@\"; printf '%s X %s\\n' {nonce} \"$?\"").as_bytes());
    let mut line = b"exec /bin/sh -c ".to_vec();
    line.extend(sh_quote(&script));
    line.extend_from_slice(b" sh");
    for a in &req.argv {
        line.push(b' ');
        line.extend(sh_quote(a));
    }
    line.push(b'\n');
    Ok(line)
}

fn bad_env(kv: &[u8]) -> Error {
    Error::InvalidValue {
        what: "environment setting",
        value: String::from_utf8_lossy(kv).into_owned(),
        reason: "expected NAME=VALUE with NAME made of letters, digits and '_'".into(),
    }
}

/// A random token that the command's output will not end with by chance.
pub fn nonce() -> String {
    let mut b = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut b);
    }
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mixed = u64::from_le_bytes(b) ^ (t as u64) ^ ((std::process::id() as u64) << 32);
    format!("nc{mixed:016x}")
}

/// The longest first line accepted (NONCE " P " PID; room for a shell's
/// chatter before it).
const MAX_HEAD: usize = 4096;

/// Splits the plain protocol's output stream: the pid line first, then the
/// command's output, then the status line, which is held back until the end.
pub struct Parser {
    nonce: Vec<u8>,
    head: Vec<u8>,
    pub pid: Option<u32>,
    tail: Vec<u8>,
}

impl Parser {
    pub fn new(nonce: &str) -> Parser {
        Parser { nonce: nonce.as_bytes().to_vec(), head: Vec::new(), pid: None, tail: Vec::new() }
    }

    /// The longest status line: NONCE " X " 3 digits "\n".
    fn keep(&self) -> usize {
        self.nonce.len() + 7
    }

    /// Feeds bytes read from the connection; returns output that is surely
    /// the command's. A first line longer than `MAX_HEAD` (the pid line is
    /// short) is a protocol error, not something to hold in memory.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        let mut data = data;
        if self.pid.is_none() {
            self.head.extend_from_slice(data);
            let Some(nl) = self.head.iter().position(|&b| b == b'\n') else {
                if self.head.len() > MAX_HEAD {
                    return Err(Error::other(format!(
                        "the root shell sent more than {MAX_HEAD} bytes before its first line ended (its process id was expected)"
                    )));
                }
                return Ok(Vec::new());
            };
            let line = self.head[..nl].to_vec();
            let mut prefix = self.nonce.clone();
            prefix.extend_from_slice(b" P ");
            self.pid = line
                .strip_prefix(prefix.as_slice())
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|p| p.parse().ok())
                .or(Some(0));
            let rest = self.head.split_off(nl + 1);
            self.head.clear();
            self.tail = rest;
            data = &[];
        }
        self.tail.extend_from_slice(data);
        let keep = self.keep();
        if self.tail.len() > keep {
            let out: Vec<u8> = self.tail.drain(..self.tail.len() - keep).collect();
            return Ok(out);
        }
        Ok(Vec::new())
    }

    /// At the end of the stream: the remaining output and the status, if
    /// the status line arrived.
    pub fn finish(mut self) -> (Vec<u8>, Option<i32>) {
        if self.pid.is_none() {
            return (std::mem::take(&mut self.head), None);
        }
        let t = &self.tail;
        if t.ends_with(b"\n") {
            let body = &t[..t.len() - 1];
            let digits = body.iter().rev().take_while(|b| b.is_ascii_digit()).count();
            let mut marker = self.nonce.clone();
            marker.extend_from_slice(b" X ");
            let before = &body[..body.len() - digits];
            if digits > 0 && before.ends_with(&marker) {
                // The shell's $? is 0..=255; more (256 would exit 0) is
                // no status line of its.
                let code = std::str::from_utf8(&body[body.len() - digits..])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .filter(|c| (0..=255).contains(c));
                return (before[..before.len() - marker.len()].to_vec(), code);
            }
        }
        (std::mem::take(&mut self.tail), None)
    }
}

/// Runs `req` on a connection that answered with the plain mark.
/// `root` is the container root, for a second connection that forwards
/// signals.
pub fn session(conn: UnixStream, leftover: Vec<u8>, req: &Request, io: Io, root: PathBuf) -> Result<ExitStatus> {
    let nonce = nonce();
    let mut writer = conn.try_clone().map_err(Error::ConnectionLost)?;
    writer.write_all(&command_line(req, &nonce)?).map_err(Error::ConnectionLost)?;

    let Io { stdin, mut stdout, signals, .. } = io;
    match stdin {
        Some(mut input) => {
            std::thread::spawn(move || {
                let _ = io::copy(&mut input, &mut writer);
                let _ = writer.shutdown(Shutdown::Write);
            });
        }
        None => writer.shutdown(Shutdown::Write).map_err(Error::ConnectionLost)?,
    }

    let pid = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let forwarder = if signals {
        let mut sigs = Signals::new(super::FORWARDED_SIGNALS)
            .map_err(|e| Error::Io { context: "installing signal handlers".into(), source: e })?;
        let handle = sigs.handle();
        let pid = pid.clone();
        std::thread::spawn(move || {
            for sig in sigs.forever() {
                let p = pid.load(std::sync::atomic::Ordering::SeqCst);
                if p != 0 {
                    let _ = kill_children(&root, p, sig);
                }
            }
        });
        Some(handle)
    } else {
        None
    };

    let mut parser = Parser::new(&nonce);
    let mut out = |d: &[u8]| -> io::Result<()> {
        if d.is_empty() {
            return Ok(());
        }
        stdout.write_all(d).and_then(|_| stdout.flush())
    };
    let mut reader = io::Cursor::new(leftover).chain(conn);
    let mut buf = vec![0u8; 64 * 1024];
    // Some(status) when the session ended early.
    let result: Result<Option<ExitStatus>> = loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break Ok(None),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The guest closed with our stdin unread: its output is complete.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(None),
            Err(e) => break Err(Error::ConnectionLost(e)),
        };
        let chunk = match parser.feed(&buf[..n]) {
            Ok(chunk) => chunk,
            Err(e) => break Err(e),
        };
        if let Some(p) = parser.pid {
            pid.store(p, std::sync::atomic::Ordering::SeqCst);
        }
        if let Err(e) = out(&chunk) {
            break super::client::output_failed(e).map(Some);
        }
    };
    if let Some(h) = forwarder {
        h.close();
    }
    if let Some(status) = result? {
        return Ok(status);
    }
    let (rest, code) = parser.finish();
    if let Err(e) = out(&rest) {
        return super::client::output_failed(e);
    }
    match code {
        Some(c) => Ok(ExitStatus::Code(c)),
        None => Err(Error::ConnectionClosed),
    }
}

/// Sends `sig` to the children of the plain session's shell (`pid` in the
/// guest), through a connection of its own.
fn kill_children(root: &std::path::Path, pid: u32, sig: i32) -> Result<()> {
    let mut c = crate::guest::connect(root, crate::guest::ROOT_SHELL_SOCKET)?;
    let line = format!(
        "for p in $(cat /proc/{pid}/task/{pid}/children 2>/dev/null); do kill -s {sig} \"$p\"; done 2>/dev/null; exit 0\n"
    );
    c.write_all(line.as_bytes()).map_err(Error::ConnectionLost)?;
    c.shutdown(Shutdown::Write).map_err(Error::ConnectionLost)?;
    io::copy(&mut c, &mut io::sink()).map_err(Error::ConnectionLost)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::process::Command;

    fn req(argv: &[&[u8]]) -> Request {
        Request { argv: argv.iter().map(|a| a.to_vec()).collect(), ..Request::default() }
    }

    /// Runs the line with a local sh, as the guest's shell would (minus
    /// the exec), and returns what the session's output looks like.
    fn through_sh(line: &[u8]) -> Vec<u8> {
        let out = Command::new("sh").arg("-c").arg(std::ffi::OsStr::from_bytes(line)).output().unwrap();
        out.stdout
    }

    #[test]
    fn arguments_reach_the_command_exactly_and_the_status_comes_back() {
        let r =
            req(&[b"printf", b"%s|", b"a b", b"$HOME", b"it's", b"\"q\"", b"*", b"", "h\u{e9}".as_bytes(), b"l1\nl2"]);
        let line = command_line(&r, "nc0123").unwrap();
        let mut p = Parser::new("nc0123");
        let mut out = p.feed(&through_sh(&line)).unwrap();
        assert!(p.pid.unwrap() > 0);
        let (rest, code) = p.finish();
        out.extend(rest);
        assert_eq!(String::from_utf8(out).unwrap(), "a b|$HOME|it's|\"q\"|*||h\u{e9}|l1\nl2|");
        assert_eq!(code, Some(0));
    }

    #[test]
    fn exit_codes_missing_commands_cwd_and_env() {
        let status = |r: &Request| {
            let mut p = Parser::new("nc1");
            let mut out = p.feed(&through_sh(&command_line(r, "nc1").unwrap())).unwrap();
            let (rest, code) = p.finish();
            out.extend(rest);
            (out, code)
        };
        assert_eq!(status(&req(&[b"sh", b"-c", b"exit 7"])).1, Some(7));
        assert_eq!(status(&req(&[b"no-such-command-here"])).1, Some(127));
        let mut r = req(&[b"sh", b"-c", b"echo \"$PWD $K\""]);
        r.cwd = Some(b"/".to_vec());
        r.env = vec![b"K=v w'x".to_vec()];
        assert_eq!(status(&r), (b"/ v w'x\n".to_vec(), Some(0)));
        r.cwd = Some(b"/nonexistent".to_vec());
        assert_eq!(status(&r).1, Some(1));
        r.env = vec![b"1BAD=x".to_vec()];
        assert!(command_line(&r, "n").is_err());
    }

    #[test]
    fn output_without_a_final_newline_and_fed_byte_by_byte() {
        let mut p = Parser::new("nc9");
        let stream = b"nc9 P 42\nno newline at the endnc9 X 3\n";
        let mut out = Vec::new();
        for b in stream {
            out.extend(p.feed(&[*b]).unwrap());
        }
        assert_eq!(p.pid, Some(42));
        let (rest, code) = p.finish();
        out.extend(rest);
        assert_eq!(out, b"no newline at the end");
        assert_eq!(code, Some(3));
    }

    #[test]
    fn an_endless_first_line_is_a_protocol_error() {
        let mut p = Parser::new("nc9");
        let chunk = vec![b'x'; 1024];
        let mut fed = 0;
        let err = loop {
            match p.feed(&chunk) {
                Ok(out) => assert!(out.is_empty()),
                Err(e) => break e.to_string(),
            }
            fed += chunk.len();
            assert!(fed <= MAX_HEAD, "the parser kept {fed} bytes of a first line");
        };
        assert!(err.contains("before its first line ended"), "{err}");
        // A first line of normal length still works, after a byte-wise feed.
        let mut p = Parser::new("nc9");
        assert!(p.feed(&vec![b'y'; MAX_HEAD - 20]).unwrap().is_empty());
        assert!(p.feed(b"\nout").unwrap().is_empty());
        assert_eq!(p.pid, Some(0));
    }

    #[test]
    fn a_status_beyond_255_is_no_status() {
        for line in [&b"nc9 P 1\nnc9 X 256\n"[..], b"nc9 P 1\nnc9 X 99999999999999999999\n"] {
            let mut p = Parser::new("nc9");
            p.feed(line).unwrap();
            assert_eq!(p.finish().1, None, "{}", line.escape_ascii());
        }
        let mut p = Parser::new("nc9");
        p.feed(b"nc9 P 1\nnc9 X 255\n").unwrap();
        assert_eq!(p.finish().1, Some(255));
    }

    #[test]
    fn a_cut_stream_has_no_status() {
        let mut p = Parser::new("nc9");
        let mut out = p.feed(b"nc9 P 42\npartial output").unwrap();
        let (rest, code) = p.finish();
        out.extend(rest);
        assert_eq!((out.as_slice(), code), (&b"partial output"[..], None));
    }
}

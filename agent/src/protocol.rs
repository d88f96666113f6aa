//! The framed protocol between the CLI (client) and the agent.
//!
//! ## Negotiation
//! The client connects to the guest's root-shell socket, where a root
//! `bash --login` reads commands line by line, and sends ONE line
//! ([`offer_line`]): exec the agent if it is in the guest's store, else print
//! [`PLAIN_MARK`]. Bash reads its input from a socket a byte at a time, so
//! nothing after that line is consumed by bash once it execs. The client
//! sends nothing more until it has read either [`MAGIC`] (the agent runs: the
//! rest of the connection is frames) or [`PLAIN_MARK`] (no agent: the plain
//! shell protocol of the CLI's `guest::plain` follows on the same
//! connection). Whatever the login shell printed before (a motd, profile
//! noise) is skipped.
//!
//! ## Frames
//! `[kind: u8][length: u32, big endian][payload]`, payload at most
//! [`MAX_PAYLOAD`] bytes. Client to agent: the request first (one `Exec`
//! frame, or for a larger one `ExecPart` frames ended by an `Exec`: see
//! [`write_request`]), then any number
//! of `Stdin` (data), one `StdinEof`, `Signal` (signal number, u32),
//! `Winsize` (rows u16, cols u16). Agent to client: `Stdout`, `Stderr`
//! (data), `Credit` (u32: stdin bytes taken; the client keeps at most
//! [`STDIN_WINDOW`] bytes unaccounted), and finally one `Exit` (kind u8: 0
//! code, 1 signal; value u32) or one `Error` (a message: the agent could
//! not run the command at all).
//! The client closing the connection means "gone": the agent hangs up and
//! kills the command.
//!
//! Unknown fields in an `Exec` request are skipped, so a newer client can
//! talk to an older agent.

use std::io::{self, Read, Write};

/// What the agent writes first, right after it was exec'd.
pub const MAGIC: &[u8] = b"\x00NIXOS-CONTAINER-AGENT 2\n";
/// What the offer line prints when there is no agent to exec.
pub const PLAIN_MARK: &[u8] = b"NIXOS-CONTAINER-PLAIN 1\n";
/// Largest payload of one frame.
pub const MAX_PAYLOAD: usize = 1 << 16;
/// How much stdin the client may send before the agent's `Credit` frames
/// say that the command took some: the agent's reader never waits for a
/// command that does not read, so signals and the end of the connection
/// always get through.
pub const STDIN_WINDOW: usize = 16 * MAX_PAYLOAD;

/// The line that asks the guest's root shell for the agent at `agent_path`
/// (a store path; the guest shares the host's store). With `execfail`, a
/// failing exec (a store without the file, a noexec mount) falls through
/// to the plain mark instead of ending the shell.
pub fn offer_line(agent_path: Option<&str>) -> Vec<u8> {
    let mark = std::str::from_utf8(PLAIN_MARK).expect("ascii").trim_end();
    let mut line = String::new();
    if let Some(p) = agent_path {
        let q = sh_quote(p.as_bytes());
        let q = String::from_utf8(q).expect("quoted utf-8 stays utf-8");
        line.push_str(&format!("{{ shopt -s execfail; }} 2>/dev/null; [ -x {q} ] && exec {q}; "));
    }
    line.push_str(&format!("echo '{mark}'\n"));
    line.into_bytes()
}

/// Quotes bytes for a POSIX shell: single quotes, with `'` as `'\''`.
pub fn sh_quote(arg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(arg.len() + 2);
    out.push(b'\'');
    for &b in arg {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// Which answer the guest gave to the offer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Agent,
    Plain,
}

/// Finds the guest's answer in what it printed so far. Returns the answer
/// and where the bytes after it start, or None if more input is needed.
pub fn find_answer(buf: &[u8]) -> Option<(Answer, usize)> {
    let at = |pat: &[u8]| buf.windows(pat.len()).position(|w| w == pat);
    match (at(MAGIC), at(PLAIN_MARK)) {
        (Some(a), Some(p)) if p < a => Some((Answer::Plain, p + PLAIN_MARK.len())),
        (Some(a), _) => Some((Answer::Agent, a + MAGIC.len())),
        (None, Some(p)) => Some((Answer::Plain, p + PLAIN_MARK.len())),
        (None, None) => None,
    }
}

pub mod kind {
    pub const EXEC: u8 = b'E';
    /// A piece of a request too large for one frame; `EXEC` carries the last.
    pub const EXEC_PART: u8 = b'e';
    pub const STDIN: u8 = b'I';
    pub const STDIN_EOF: u8 = b'i';
    pub const SIGNAL: u8 = b'S';
    pub const WINSIZE: u8 = b'W';
    pub const STDOUT: u8 = b'O';
    pub const STDERR: u8 = b'R';
    pub const EXIT: u8 = b'X';
    /// Stdin bytes the command took (u32): the client may send as many more.
    pub const CREDIT: u8 = b'C';
    pub const ERROR: u8 = b'!';
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Winsize {
    pub rows: u16,
    pub cols: u16,
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// As a shell reports it: the code, or 128 + the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// What to run, and how.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Request {
    /// The command and its arguments; empty means the user's login shell.
    pub argv: Vec<Vec<u8>>,
    /// `NAME=VALUE` settings on top of the user's environment.
    pub env: Vec<Vec<u8>>,
    pub cwd: Option<Vec<u8>>,
    /// User name or numeric uid; root when absent.
    pub user: Option<Vec<u8>>,
    /// Run on a new pty of this size.
    pub pty: Option<Winsize>,
    /// TERM for the command (the caller's, on a pty).
    pub term: Option<Vec<u8>>,
}

mod field {
    pub const ARG: u8 = b'a';
    pub const ENV: u8 = b'e';
    pub const CWD: u8 = b'c';
    pub const USER: u8 = b'u';
    pub const PTY: u8 = b'p';
    pub const TERM: u8 = b't';
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut put = |tag: u8, data: &[u8]| {
            out.push(tag);
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            out.extend_from_slice(data);
        };
        for a in &self.argv {
            put(field::ARG, a);
        }
        for e in &self.env {
            put(field::ENV, e);
        }
        if let Some(c) = &self.cwd {
            put(field::CWD, c);
        }
        if let Some(u) = &self.user {
            put(field::USER, u);
        }
        if let Some(w) = self.pty {
            put(field::PTY, &encode_winsize(w));
        }
        if let Some(t) = &self.term {
            put(field::TERM, t);
        }
        out
    }

    pub fn decode(mut data: &[u8]) -> io::Result<Request> {
        let mut r = Request::default();
        while !data.is_empty() {
            if data.len() < 5 {
                return Err(bad("truncated request field"));
            }
            let tag = data[0];
            let len = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
            let value = data.get(5..5 + len).ok_or_else(|| bad("truncated request field"))?;
            match tag {
                field::ARG => r.argv.push(value.to_vec()),
                field::ENV => r.env.push(value.to_vec()),
                field::CWD => r.cwd = Some(value.to_vec()),
                field::USER => r.user = Some(value.to_vec()),
                field::PTY => r.pty = Some(decode_winsize(value)?),
                field::TERM => r.term = Some(value.to_vec()),
                _ => {} // from a newer client
            }
            data = &data[5 + len..];
        }
        Ok(r)
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

pub fn encode_winsize(w: Winsize) -> [u8; 4] {
    let r = w.rows.to_be_bytes();
    let c = w.cols.to_be_bytes();
    [r[0], r[1], c[0], c[1]]
}

pub fn decode_winsize(p: &[u8]) -> io::Result<Winsize> {
    match p {
        [r0, r1, c0, c1] => Ok(Winsize { rows: u16::from_be_bytes([*r0, *r1]), cols: u16::from_be_bytes([*c0, *c1]) }),
        _ => Err(bad("bad window size")),
    }
}

pub fn encode_exit(s: ExitStatus) -> [u8; 5] {
    let (k, v) = match s {
        ExitStatus::Code(c) => (0u8, c as u32),
        ExitStatus::Signal(n) => (1u8, n as u32),
    };
    let b = v.to_be_bytes();
    [k, b[0], b[1], b[2], b[3]]
}

pub fn decode_exit(p: &[u8]) -> io::Result<ExitStatus> {
    match p {
        [k, a, b, c, d] => {
            // What a process can end with: an exit code of 0..=255 or a
            // signal of 1..=64; anything else (a code of 256 would exit 0,
            // a huge signal overflow 128 + N) is the peer's error.
            let v = u32::from_be_bytes([*a, *b, *c, *d]);
            match k {
                0 if v <= 255 => Ok(ExitStatus::Code(v as i32)),
                1 if (1..=64).contains(&v) => Ok(ExitStatus::Signal(v as i32)),
                0 => Err(bad("bad exit code")),
                1 => Err(bad("bad exit signal")),
                _ => Err(bad("bad exit kind")),
            }
        }
        _ => Err(bad("bad exit frame")),
    }
}

/// Writes one frame (header and payload in one write, so that frames from
/// several threads sharing a locked writer never interleave).
pub fn write_frame(w: &mut impl Write, kind: u8, payload: &[u8]) -> io::Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(bad("frame too large"));
    }
    let mut buf = Vec::with_capacity(5 + payload.len());
    buf.push(kind);
    buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    buf.extend_from_slice(payload);
    w.write_all(&buf)?;
    w.flush()
}

/// Writes data as as many frames of `kind` as its size needs (none for no
/// data: use `write_frame` for an empty frame).
pub fn write_data(w: &mut impl Write, kind: u8, data: &[u8]) -> io::Result<()> {
    for chunk in data.chunks(MAX_PAYLOAD) {
        write_frame(w, kind, chunk)?;
    }
    Ok(())
}

/// The largest request the agent accepts: far above what exec(2) takes
/// (ARG_MAX), and bounded so that a broken client cannot exhaust memory.
pub const MAX_REQUEST: usize = 16 << 20;

/// Writes an encoded request: one `EXEC` frame, or as many `EXEC_PART`
/// frames as it needs before the last piece in an `EXEC` frame.
pub fn write_request(w: &mut impl Write, request: &[u8]) -> io::Result<()> {
    let mut pieces = request.chunks(MAX_PAYLOAD).peekable();
    if pieces.peek().is_none() {
        return write_frame(w, kind::EXEC, b"");
    }
    while let Some(piece) = pieces.next() {
        write_frame(w, if pieces.peek().is_some() { kind::EXEC_PART } else { kind::EXEC }, piece)?;
    }
    Ok(())
}

/// Reads what `write_request` wrote. Ok(None) when the stream ends before
/// the request does; an error for a frame of another kind, or too much.
pub fn read_request(r: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut request = Vec::new();
    loop {
        let Some((k, piece)) = read_frame(r)? else { return Ok(None) };
        if request.len() + piece.len() > MAX_REQUEST {
            return Err(bad("request too large"));
        }
        request.extend_from_slice(&piece);
        match k {
            kind::EXEC => return Ok(Some(request)),
            kind::EXEC_PART => {}
            k => return Err(bad(&format!("expected a request, got frame '{}'", k as char))),
        }
    }
}

/// Reads one frame; Ok(None) at a clean end of the stream (between frames).
pub fn read_frame(r: &mut impl Read) -> io::Result<Option<(u8, Vec<u8>)>> {
    let mut header = [0u8; 5];
    let mut got = 0;
    while got < header.len() {
        match r.read(&mut header[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a frame")),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if len > MAX_PAYLOAD {
        return Err(bad("frame too large"));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok(Some((header[0], payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_end_cleanly() {
        let mut buf = Vec::new();
        write_frame(&mut buf, kind::STDOUT, b"hello").unwrap();
        write_data(&mut buf, kind::STDIN, &vec![7u8; MAX_PAYLOAD * 2 + 3]).unwrap();
        write_frame(&mut buf, kind::STDIN_EOF, b"").unwrap();
        let mut r = &buf[..];
        assert_eq!(read_frame(&mut r).unwrap(), Some((kind::STDOUT, b"hello".to_vec())));
        let sizes: Vec<usize> = (0..3).map(|_| read_frame(&mut r).unwrap().unwrap().1.len()).collect();
        assert_eq!(sizes, [MAX_PAYLOAD, MAX_PAYLOAD, 3]);
        assert_eq!(read_frame(&mut r).unwrap(), Some((kind::STDIN_EOF, vec![])));
        assert_eq!(read_frame(&mut r).unwrap(), None);
    }

    #[test]
    fn requests_larger_than_a_frame_travel_in_pieces() {
        for size in [0, 5, MAX_PAYLOAD, MAX_PAYLOAD + 1, 3 * MAX_PAYLOAD + 7] {
            let request: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let mut buf = Vec::new();
            write_request(&mut buf, &request).unwrap();
            write_frame(&mut buf, kind::STDIN_EOF, b"").unwrap();
            let mut r = &buf[..];
            assert_eq!(read_request(&mut r).unwrap().as_deref(), Some(&request[..]), "size {size}");
            assert_eq!(read_frame(&mut r).unwrap(), Some((kind::STDIN_EOF, vec![])), "size {size}");
        }
        let mut other = Vec::new();
        write_frame(&mut other, kind::STDIN, b"x").unwrap();
        assert!(read_request(&mut &other[..]).is_err());
        assert_eq!(read_request(&mut &[][..]).unwrap(), None);
    }

    #[test]
    fn truncated_and_oversized_frames_are_errors() {
        let mut buf = Vec::new();
        write_frame(&mut buf, kind::STDOUT, b"hello").unwrap();
        assert!(read_frame(&mut &buf[..7]).is_err());
        assert!(read_frame(&mut &buf[..2]).is_err());
        let huge = [kind::STDOUT, 0xff, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut &huge[..]).is_err());
        assert!(write_frame(&mut Vec::new(), kind::STDOUT, &vec![0; MAX_PAYLOAD + 1]).is_err());
    }

    #[test]
    fn requests_round_trip_with_any_bytes() {
        let r = Request {
            argv: vec![b"printf".to_vec(), b"%s|".to_vec(), b"a b".to_vec(), b"".to_vec(), b"h\xc3\xa9\xff".to_vec()],
            env: vec![b"K=V=W".to_vec()],
            cwd: Some(b"/tmp".to_vec()),
            user: Some(b"alice".to_vec()),
            pty: Some(Winsize { rows: 27, cols: 91 }),
            term: Some(b"xterm".to_vec()),
        };
        assert_eq!(Request::decode(&r.encode()).unwrap(), r);
        assert_eq!(Request::decode(&[]).unwrap(), Request::default());
        assert!(Request::decode(&[field::ARG, 0, 0, 0, 9, b'x']).is_err());
    }

    #[test]
    fn unknown_request_fields_are_skipped() {
        let mut data = vec![b'z', 0, 0, 0, 2, 1, 2];
        data.extend(Request { argv: vec![b"true".to_vec()], ..Request::default() }.encode());
        assert_eq!(Request::decode(&data).unwrap().argv, [b"true".to_vec()]);
    }

    #[test]
    fn exit_statuses_out_of_range_are_refused() {
        let frame = |k: u8, v: u32| {
            let b = v.to_be_bytes();
            [k, b[0], b[1], b[2], b[3]]
        };
        for (k, v) in
            [(0, 256), (0, u32::MAX), (0, i32::MAX as u32), (1, 0), (1, 65), (1, i32::MAX as u32), (1, u32::MAX)]
        {
            assert!(decode_exit(&frame(k, v)).is_err(), "{k} {v}");
        }
        assert_eq!(decode_exit(&frame(0, 255)).unwrap(), ExitStatus::Code(255));
        assert_eq!(decode_exit(&frame(1, 64)).unwrap(), ExitStatus::Signal(64));
        assert_eq!(decode_exit(&frame(1, 1)).unwrap().shell_code(), 129);
        assert!(decode_exit(&frame(2, 0)).is_err());
    }

    #[test]
    fn exit_statuses_map_to_shell_codes() {
        for s in [ExitStatus::Code(0), ExitStatus::Code(7), ExitStatus::Signal(15)] {
            assert_eq!(decode_exit(&encode_exit(s)).unwrap(), s);
        }
        assert_eq!(ExitStatus::Signal(2).shell_code(), 130);
        assert_eq!(ExitStatus::Code(127).shell_code(), 127);
    }

    #[test]
    fn the_answer_is_found_after_login_noise() {
        let mut buf = b"Welcome to the container\n".to_vec();
        assert_eq!(find_answer(&buf), None);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(b"rest");
        let (a, at) = find_answer(&buf).unwrap();
        assert_eq!((a, &buf[at..]), (Answer::Agent, &b"rest"[..]));
        let mut plain = b"motd\n".to_vec();
        plain.extend_from_slice(PLAIN_MARK);
        assert_eq!(find_answer(&plain), Some((Answer::Plain, plain.len())));
        // Half a mark is not an answer yet.
        assert_eq!(find_answer(&MAGIC[..MAGIC.len() - 1]), None);
    }

    #[test]
    fn the_offer_line_is_one_line_and_quotes_the_path() {
        let line = offer_line(Some("/nix/store/abc-nixos-container-agent"));
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
        let s = String::from_utf8(line).unwrap();
        assert!(
            s.contains("[ -x '/nix/store/abc-nixos-container-agent' ] && exec '/nix/store/abc-nixos-container-agent';"),
            "{s}"
        );
        assert!(s.ends_with("echo 'NIXOS-CONTAINER-PLAIN 1'\n"), "{s}");
        assert_eq!(offer_line(None), b"echo 'NIXOS-CONTAINER-PLAIN 1'\n");
    }

    #[test]
    fn shell_quoting_keeps_every_byte() {
        assert_eq!(sh_quote(b"it's"), b"'it'\\''s'");
        assert_eq!(sh_quote(b""), b"''");
        assert_eq!(sh_quote(b"$HOME *"), b"'$HOME *'");
    }
}

//! The client of the framed protocol (see `protocol`): sends the request,
//! streams stdin, forwards signals and window sizes, and writes the
//! command's stdout and stderr where they belong until its exit status
//! arrives.

use std::io::{self, Cursor, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use signal_hook::consts::signal::SIGWINCH;
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::guest::protocol::{self, ExitStatus, Request, kind};
use crate::guest::{Io, pty};

/// Runs one session on a connection whose handshake is done; `leftover` is
/// what was read past the handshake.
pub fn session(conn: UnixStream, leftover: Vec<u8>, req: &Request, io: Io) -> Result<ExitStatus> {
    let writer = Arc::new(Mutex::new(conn.try_clone().map_err(Error::ConnectionLost)?));
    // If this fails, the agent is gone; pump says why (its error frame, or
    // the connection's end).
    let _ = protocol::write_request(&mut *writer.lock().unwrap_or_else(|e| e.into_inner()), &req.encode());

    let Io { stdin, mut stdout, mut stderr, signals, winsize_from, raw_terminal } = io;
    let credit = Arc::new(Credit::new(protocol::STDIN_WINDOW));
    let escaped = Arc::new(AtomicBool::new(false));
    match stdin {
        Some(mut input) => {
            let (w, credit, escaped) = (writer.clone(), credit.clone(), escaped.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; protocol::MAX_PAYLOAD];
                // At a terminal in raw mode, ^] three times within a second
                // ends the session (as machinectl's), whatever runs inside.
                let mut escape = raw_terminal.then(EscapeKey::default);
                // Reads only as much as the agent can take now: the writer
                // is never held waiting for a command that does not read.
                while let Some(room) = credit.take(buf.len()) {
                    match input.read(&mut buf[..room]) {
                        Ok(0) => break,
                        Ok(n) => {
                            credit.give(room - n);
                            if escape.as_mut().is_some_and(|e| e.pressed(&buf[..n], Instant::now())) {
                                escaped.store(true, Ordering::SeqCst);
                                let _ = w.lock().unwrap_or_else(|e| e.into_inner()).shutdown(std::net::Shutdown::Both);
                                return;
                            }
                            if send(&w, kind::STDIN, &buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => credit.give(room),
                        Err(_) => break,
                    }
                }
                let _ = send(&w, kind::STDIN_EOF, b"");
            });
        }
        // An agent that failed at once (bad user, cwd) has closed its end
        // already; its error is what pump reads next.
        None => {
            let _ = send(&writer, kind::STDIN_EOF, b"");
        }
    }

    let forwarder = if signals { Some(forward_signals(writer.clone(), winsize_from)?) } else { None };
    let _raw = if raw_terminal { Some(pty::RawMode::enter(std::os::fd::AsFd::as_fd(&io::stdin()))?) } else { None };
    let result = pump(Cursor::new(leftover).chain(conn), &mut *stdout, &mut *stderr, &credit);
    credit.end();
    if let Some(handle) = forwarder {
        handle.close();
    }
    if escaped.load(Ordering::SeqCst) {
        return Err(Error::Cancelled("disconnected (^] pressed three times)".into()));
    }
    result
}

/// The escape key: ^] (0x1d) three times within a second, nothing else
/// typed in between.
#[derive(Default)]
struct EscapeKey {
    presses: Vec<Instant>,
}

impl EscapeKey {
    const KEY: u8 = 0x1d;

    /// Whether `input`, read at `now`, completes the escape.
    fn pressed(&mut self, input: &[u8], now: Instant) -> bool {
        for b in input {
            if *b == Self::KEY {
                self.presses.retain(|t| now.duration_since(*t) < Duration::from_secs(1));
                self.presses.push(now);
                if self.presses.len() >= 3 {
                    return true;
                }
            } else {
                self.presses.clear();
            }
        }
        false
    }
}

/// The error of a session whose connection the guest closed.
pub fn closed() -> Error {
    Error::ConnectionClosed
}

/// Whether a session ended because its connection did (the guest halting,
/// say), rather than with an error the agent reported.
pub fn is_lost_connection(e: &Error) -> bool {
    matches!(e, Error::ConnectionLost(_) | Error::ConnectionClosed)
}

/// Sends data as frames of kind `k`; an empty payload as one empty frame.
fn send<W: Write>(w: &Mutex<W>, k: u8, data: &[u8]) -> io::Result<()> {
    let mut g = w.lock().unwrap_or_else(|e| e.into_inner());
    if data.is_empty() { protocol::write_frame(&mut *g, k, data) } else { protocol::write_data(&mut *g, k, data) }
}

/// Forwards the signals a user sends to the CLI (Ctrl-C without a pty,
/// kill) to the command, and window size changes to its pty.
fn forward_signals<W: Write + Send + 'static>(
    w: Arc<Mutex<W>>,
    winsize_from: Option<i32>,
) -> Result<signal_hook::iterator::Handle> {
    let mut signals = Signals::new(super::FORWARDED_SIGNALS.into_iter().chain([SIGWINCH]))
        .map_err(|e| Error::Io { context: "installing signal handlers".into(), source: e })?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            let r = if sig == SIGWINCH {
                // SAFETY: the fd is the caller's terminal, open for the whole session.
                match winsize_from.and_then(|fd| pty::winsize(unsafe { BorrowedFd::borrow_raw(fd) })) {
                    Some(ws) => send(&w, kind::WINSIZE, &protocol::encode_winsize(ws)),
                    None => Ok(()),
                }
            } else {
                send(&w, kind::SIGNAL, &(sig as u32).to_be_bytes())
            };
            if r.is_err() {
                break;
            }
        }
    });
    Ok(handle)
}

/// Stdin bytes the agent can take now (see `protocol::STDIN_WINDOW`).
struct Credit {
    /// None once the session is over.
    left: Mutex<Option<usize>>,
    more: Condvar,
}

impl Credit {
    fn new(window: usize) -> Credit {
        Credit { left: Mutex::new(Some(window)), more: Condvar::new() }
    }

    /// Waits until some is left and takes up to `most`; None once the
    /// session is over.
    fn take(&self, most: usize) -> Option<usize> {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match *left {
                None => return None,
                Some(0) => left = self.more.wait(left).unwrap_or_else(|e| e.into_inner()),
                Some(n) => {
                    let took = n.min(most);
                    *left = Some(n - took);
                    return Some(took);
                }
            }
        }
    }

    fn give(&self, n: usize) {
        let mut left = self.left.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = left.as_mut() {
            *l += n;
            self.more.notify_all();
        }
    }

    fn end(&self) {
        *self.left.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.more.notify_all();
    }
}

/// Reads frames until the exit status; separates stdout and stderr, and
/// passes the agent's stdin credit on.
fn pump(mut conn: impl Read, stdout: &mut dyn Write, stderr: &mut dyn Write, credit: &Credit) -> Result<ExitStatus> {
    loop {
        let frame = protocol::read_frame(&mut conn).map_err(Error::ConnectionLost)?;
        let (k, payload) = match frame {
            Some(f) => f,
            None => return Err(Error::ConnectionClosed),
        };
        let written = match k {
            kind::STDOUT => stdout.write_all(&payload).and_then(|_| stdout.flush()),
            kind::STDERR => stderr.write_all(&payload).and_then(|_| stderr.flush()),
            kind::CREDIT => {
                if let Ok(n) = <[u8; 4]>::try_from(payload.as_slice()) {
                    credit.give(u32::from_be_bytes(n) as usize);
                }
                Ok(())
            }
            kind::EXIT => return protocol::decode_exit(&payload).map_err(Error::ConnectionLost),
            kind::ERROR => return Err(Error::other(crate::logs::sanitize(&payload))),
            _ => Ok(()),
        };
        if let Err(e) = written {
            return output_failed(e);
        }
    }
}

/// How a session ends when the command's output cannot be written. When its
/// reader is gone (`run ... | head`), as a local command would: by SIGPIPE;
/// dropping the connection ends the command in the guest.
pub fn output_failed(e: io::Error) -> Result<ExitStatus> {
    if e.kind() == io::ErrorKind::BrokenPipe {
        Ok(ExitStatus::Signal(libc::SIGPIPE))
    } else {
        Err(Error::Io { context: "writing the command's output".into(), source: e })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(list: &[(u8, &[u8])]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (k, d) in list {
            protocol::write_frame(&mut buf, *k, d).unwrap();
        }
        buf
    }

    #[test]
    fn the_escape_key_is_three_presses_within_a_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut e = EscapeKey::default();
        assert!(!e.pressed(b"\x1d", at(0)));
        assert!(!e.pressed(b"\x1d", at(300)));
        assert!(e.pressed(b"\x1d", at(600)));
        let mut e = EscapeKey::default();
        assert!(e.pressed(b"\x1d\x1d\x1d", at(0)), "in one read");
        let mut e = EscapeKey::default();
        assert!(!e.pressed(b"\x1d\x1d", at(0)));
        assert!(!e.pressed(b"\x1d", at(1500)), "too slow");
        let mut e = EscapeKey::default();
        assert!(!e.pressed(b"\x1d\x1dx\x1d", at(0)), "something typed in between");
    }

    #[test]
    fn stdout_and_stderr_stay_apart_and_the_status_ends_it() {
        let data = frames(&[
            (kind::STDOUT, b"out\n"),
            (kind::STDERR, b"err\n"),
            (kind::STDOUT, b"more"),
            (kind::EXIT, &protocol::encode_exit(ExitStatus::Code(7))),
            (kind::STDOUT, b"never read"),
        ]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = pump(&data[..], &mut out, &mut err, &Credit::new(0)).unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert_eq!(out, b"out\nmore");
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn an_agent_error_or_a_lost_connection_is_an_error() {
        let data = frames(&[(kind::ERROR, b"no user 'x' in the container's /etc/passwd")]);
        let e = pump(&data[..], &mut Vec::new(), &mut Vec::new(), &Credit::new(0)).unwrap_err();
        assert_eq!(e.to_string(), "no user 'x' in the container's /etc/passwd");
        let data = frames(&[(kind::STDOUT, b"partial")]);
        assert!(pump(&data[..], &mut Vec::new(), &mut Vec::new(), &Credit::new(0)).is_err());
    }

    #[test]
    fn stdin_credit_waits_for_the_agent_and_ends_with_the_session() {
        let c = Arc::new(Credit::new(10));
        assert_eq!(c.take(4), Some(4));
        assert_eq!(c.take(100), Some(6));
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.take(5))
        };
        let data =
            frames(&[(kind::CREDIT, &3u32.to_be_bytes()), (kind::EXIT, &protocol::encode_exit(ExitStatus::Code(0)))]);
        pump(&data[..], &mut Vec::new(), &mut Vec::new(), &c).unwrap();
        assert_eq!(waiter.join().unwrap(), Some(3), "the agent's credit frame let the reader go on");
        let waiter = {
            let c = c.clone();
            std::thread::spawn(move || c.take(5))
        };
        c.end();
        assert_eq!(waiter.join().unwrap(), None);
    }

    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_stdout_ends_like_sigpipe() {
        let data = frames(&[(kind::STDOUT, b"x")]);
        assert_eq!(
            pump(&data[..], &mut Closed, &mut Vec::new(), &Credit::new(0)).unwrap(),
            ExitStatus::Signal(libc::SIGPIPE)
        );
    }
}

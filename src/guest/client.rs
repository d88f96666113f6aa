//! The client of the framed protocol (see `protocol`): sends the request,
//! streams stdin, forwards signals and window sizes, and writes the
//! command's stdout and stderr where they belong until its exit status
//! arrives.

use std::io::{self, Cursor, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGWINCH};
use signal_hook::iterator::Signals;

use crate::error::{Error, Result};
use crate::guest::protocol::{self, ExitStatus, Request, kind};
use crate::guest::{Io, pty};

/// Runs one session on a connection whose handshake is done; `leftover` is
/// what was read past the handshake.
pub fn session(conn: UnixStream, leftover: Vec<u8>, req: &Request, io: Io) -> Result<ExitStatus> {
    let writer = Arc::new(Mutex::new(conn.try_clone().map_err(lost)?));
    // If this fails, the agent is gone; pump says why (its error frame, or
    // the connection's end).
    let _ = protocol::write_request(&mut *writer.lock().unwrap_or_else(|e| e.into_inner()), &req.encode());

    let Io { stdin, mut stdout, mut stderr, signals, winsize_from, raw_terminal } = io;
    match stdin {
        Some(mut input) => {
            let w = writer.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; protocol::MAX_PAYLOAD];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if send(&w, kind::STDIN, &buf[..n]).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
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
    let result = pump(Cursor::new(leftover).chain(conn), &mut *stdout, &mut *stderr);
    if let Some(handle) = forwarder {
        handle.close();
    }
    result
}

fn lost(e: io::Error) -> Error {
    Error::other(format!("lost the connection to the container: {e}"))
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
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH])
        .map_err(|e| Error::other(format!("installing signal handlers: {e}")))?;
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

/// Reads frames until the exit status; separates stdout and stderr.
pub fn pump(mut conn: impl Read, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Result<ExitStatus> {
    loop {
        let frame = protocol::read_frame(&mut conn).map_err(lost)?;
        let (k, payload) = match frame {
            Some(f) => f,
            None => return Err(Error::other("the container closed the connection before the command ended")),
        };
        let written = match k {
            kind::STDOUT => stdout.write_all(&payload).and_then(|_| stdout.flush()),
            kind::STDERR => stderr.write_all(&payload).and_then(|_| stderr.flush()),
            kind::EXIT => return protocol::decode_exit(&payload).map_err(lost),
            kind::ERROR => return Err(Error::other(String::from_utf8_lossy(&payload).into_owned())),
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
    fn stdout_and_stderr_stay_apart_and_the_status_ends_it() {
        let data = frames(&[
            (kind::STDOUT, b"out\n"),
            (kind::STDERR, b"err\n"),
            (kind::STDOUT, b"more"),
            (kind::EXIT, &protocol::encode_exit(ExitStatus::Code(7))),
            (kind::STDOUT, b"never read"),
        ]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let status = pump(&data[..], &mut out, &mut err).unwrap();
        assert_eq!(status, ExitStatus::Code(7));
        assert_eq!(out, b"out\nmore");
        assert_eq!(err, b"err\n");
    }

    #[test]
    fn an_agent_error_or_a_lost_connection_is_an_error() {
        let data = frames(&[(kind::ERROR, b"no user 'x' in the container's /etc/passwd")]);
        let e = pump(&data[..], &mut Vec::new(), &mut Vec::new()).unwrap_err();
        assert_eq!(e.to_string(), "no user 'x' in the container's /etc/passwd");
        let data = frames(&[(kind::STDOUT, b"partial")]);
        assert!(pump(&data[..], &mut Vec::new(), &mut Vec::new()).is_err());
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
        assert_eq!(pump(&data[..], &mut Closed, &mut Vec::new()).unwrap(), ExitStatus::Signal(libc::SIGPIPE));
    }
}

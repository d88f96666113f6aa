//! The caller's terminal: raw mode for the time of a session (restored when
//! the guard is dropped: on exit, disconnect and error alike) and its size.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{IoContext, Result};
use crate::guest::protocol::Winsize;

/// Puts a terminal into raw mode, as `socat -,raw,echo=0` did; restores
/// the saved settings when dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

/// The settings to put back while a terminal is raw, for `restore_now`.
static SAVED: Mutex<Option<(OwnedFd, Termios)>> = Mutex::new(None);

impl RawMode {
    pub fn enter(fd: BorrowedFd<'_>) -> Result<RawMode> {
        let fd = fd.try_clone_to_owned().context(|| "duplicating the terminal".into())?;
        let saved = termios::tcgetattr(&fd).context(|| "reading the terminal settings".into())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        if let Ok(copy) = fd.try_clone() {
            *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some((copy, saved.clone()));
        }
        termios::tcsetattr(&fd, SetArg::TCSADRAIN, &raw).context(|| "setting the terminal to raw mode".into())?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSADRAIN, &self.saved);
        SAVED.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// Puts a terminal that a session left raw back as it was: called before
/// an error or a panic message is printed, which in raw mode would come
/// out as a staircase (no carriage returns). Does nothing otherwise.
pub fn restore_now() {
    let saved = match SAVED.try_lock() {
        Ok(mut s) => s.take(),
        Err(_) => None,
    };
    if let Some((fd, termios)) = saved {
        let _ = termios::tcsetattr(&fd, SetArg::TCSANOW, &termios);
    }
}

/// The size of the terminal on `fd`, if it is one.
pub fn winsize(fd: BorrowedFd<'_>) -> Option<Winsize> {
    // SAFETY: winsize is plain integers; all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(Winsize { rows: ws.ws_row, cols: ws.ws_col })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_terminal_left_raw_is_restored_before_an_error_is_printed() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let before = termios::tcgetattr(&pty.slave).unwrap();
        let raw = RawMode::enter(pty.slave.as_fd()).unwrap();
        assert_ne!(termios::tcgetattr(&pty.slave).unwrap().local_flags, before.local_flags);
        // A path that never drops the guard (exit, a panic's message).
        std::mem::forget(raw);
        restore_now();
        let after = termios::tcgetattr(&pty.slave).unwrap();
        assert_eq!((after.local_flags, after.output_flags), (before.local_flags, before.output_flags));
        restore_now();
    }
}

//! The caller's terminal: raw mode for the time of a session (restored when
//! the guard is dropped: on exit, disconnect and error alike) and its size.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::error::{IoContext, Result};
use crate::guest::protocol::Winsize;

/// Puts a terminal into raw mode, as `socat -,raw,echo=0` did; restores
/// the saved settings when dropped.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    pub fn enter(fd: BorrowedFd<'_>) -> Result<RawMode> {
        let fd = fd.try_clone_to_owned().context(|| "duplicating the terminal".into())?;
        let saved = termios::tcgetattr(&fd).context(|| "reading the terminal settings".into())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&fd, SetArg::TCSADRAIN, &raw).context(|| "setting the terminal to raw mode".into())?;
        Ok(RawMode { fd, saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(&self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// The size of the terminal on `fd`, if it is one.
pub fn winsize(fd: BorrowedFd<'_>) -> Option<Winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer.
    let r = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()), libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some(Winsize { rows: ws.ws_row, cols: ws.ws_col })
}

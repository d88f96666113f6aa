//! `login`: the guest's login prompt through /var/lib/login.socket, relayed
//! byte for byte (the guest runs `login` on a pty of its own; the caller's
//! terminal is put in raw mode by the command, as the seed's socat did).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;

use crate::error::{Error, IoContext, Result};

/// Copies `input` to the connection and the connection to `output` until
/// the guest closes it (the session ended).
pub fn relay(conn: UnixStream, mut input: impl Read + Send + 'static, output: &mut dyn Write) -> Result<()> {
    let mut to_guest = conn.try_clone().context(|| "login connection".into())?;
    std::thread::spawn(move || {
        let _ = io::copy(&mut input, &mut to_guest);
        let _ = to_guest.shutdown(Shutdown::Write);
    });
    let mut from_guest = conn;
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from_guest.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => output
                .write_all(&buf[..n])
                .and_then(|_| output.flush())
                .map_err(|e| Error::Io { context: "writing to the terminal".into(), source: e })?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset connection is the guest ending the session, too.
            Err(_) => return Ok(()),
        }
    }
}

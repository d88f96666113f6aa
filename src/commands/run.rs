use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::ffi::OsStrExt;

use crate::cli::RunArgs;
use crate::commands::pick::{self, Which};
use crate::commands::{require_root, Ctx};
use crate::container::{Container, State};
use crate::error::{Error, IoContext, Result};
use crate::guest;

/// Quotes one argument for the guest's shell.
fn sh_quote(arg: &[u8]) -> Vec<u8> {
    let mut out = b"'".to_vec();
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

pub fn run(ctx: &Ctx, args: &RunArgs) -> Result<i32> {
    require_root()?;
    let name = pick::name(ctx, args.name.as_deref(), Which::Running, "run")?;
    let c = Container::open(&ctx.paths, &name)?;
    if c.state()? != State::Up {
        return Err(Error::NotRunning(c.name));
    }
    let mut stream = guest::connect(&c.paths.root, "var/lib/root-shell.socket")?;
    let mut line = b"exec".to_vec();
    for a in &args.command {
        line.push(b' ');
        line.extend(sh_quote(a.as_bytes()));
    }
    line.push(b'\n');
    stream.write_all(&line).context(|| "sending the command".into())?;
    stream.shutdown(Shutdown::Write).context(|| "sending the command".into())?;
    let mut out = Vec::new();
    stream.read_to_end(&mut out).context(|| "reading the output".into())?;
    std::io::stdout().write_all(&out).context(|| "writing the output".into())?;
    Ok(0)
}

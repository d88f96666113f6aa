//! A container's logs: its console (what systemd-nspawn printed, kept in
//! the run directory by the supervisor) and its guest's journal.
//!
//! Both are written by the guest, so both are hostile input:
//! - console text is shown without terminal escapes and control characters
//!   (a guest must not be able to drive the admin's terminal);
//! - the journal of a running guest is read by `journalctl` inside it;
//! - the journal files of a stopped guest are opened by us inside its root
//!   (no symlink is followed: not out of the root, not within it), copied
//!   into a private temporary directory, and read by the host's
//!   `journalctl` as user `nobody`, without privileges, which sees those
//!   copies only: no
//!   guest path is ever resolved by the host's tool, and a bug in its
//!   parser meets a process that can change nothing of the host's.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::Duration;

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::Mode;

use crate::error::{Error, IoContext, Result};

/// Where a guest keeps a persistent journal, relative to its root.
pub const JOURNAL_DIR: &str = "var/log/journal";

/// At most this much of a stopped guest's journal is read (the newest files).
const JOURNAL_BYTES_MAX: u64 = 512 << 20;

/// Text of the guest's for a terminal or a file: escape and control
/// sequences (CSI, OSC, DCS, SOS, PM and APC strings up to BEL or ST, in
/// their ESC and their C1 forms, other ESC sequences) and control
/// characters other than newline and tab removed, carriage returns
/// dropped, invalid UTF-8 replaced. The one cleaner for everything a guest
/// wrote that reaches an admin's terminal.
pub fn sanitize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\x1b' => skip_escape(&mut chars),
            // The C1 forms (in UTF-8, as terminals read them).
            '\u{9b}' => skip_csi(&mut chars),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\n' | '\t' => out.push(c),
            c if c.is_control() || is_invisible_format(c) => {}
            c => out.push(c),
        }
    }
    out
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// What follows an ESC (already taken).
fn skip_escape(chars: &mut Chars<'_>) {
    match chars.next_if(|d| (' '..='~').contains(d)) {
        Some('[') => skip_csi(chars),
        // OSC (titles, hyperlinks, clipboard), DCS, SOS, PM, APC.
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars),
        // Intermediates (' '..'/'), then one final character.
        Some(' '..='/') => {
            while chars.next_if(|d| (' '..='/').contains(d)).is_some() {}
            chars.next_if(|d| ('0'..='~').contains(d));
        }
        // Two-character sequences (ESC 7, ESC c, ...); an ESC before
        // anything else is dropped alone.
        _ => {}
    }
}

/// A control sequence's parameters and intermediates, then its final
/// character; stops (keeping it) at anything else.
fn skip_csi(chars: &mut Chars<'_>) {
    while chars.next_if(|d| (' '..='?').contains(d)).is_some() {}
    chars.next_if(|d| ('@'..='~').contains(d));
}

/// A control string, up to BEL or ST (ESC \ or C1 ST). As terminals do,
/// CAN and SUB end it too, and another ESC starts what follows; a newline
/// ends it here as well (kept), so that one unfinished string cannot hide
/// every line after it.
fn skip_string(chars: &mut Chars<'_>) {
    while let Some(&d) = chars.peek() {
        match d {
            '\n' => return,
            '\x1b' => {
                // ESC \ is ST; any other ESC is left to the caller, which
                // skips its sequence (no recursion a guest could deepen).
                let mut ahead = chars.clone();
                ahead.next();
                if ahead.peek() == Some(&'\\') {
                    chars.next();
                    chars.next();
                }
                return;
            }
            '\x07' | '\u{9c}' | '\x18' | '\x1a' => {
                chars.next();
                return;
            }
            _ => {
                chars.next();
            }
        }
    }
}

/// Characters that change how the text around them is shown without being
/// seen: bidirectional overrides and isolates, zero-width characters, the
/// byte order mark. A guest could reorder what an admin reads with them.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// The last `lines` lines of `text` (all of it for None).
pub fn last_lines(text: &str, lines: Option<usize>) -> &str {
    let Some(n) = lines else { return text };
    if n == 0 {
        return "";
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => &text[i + 1..],
        None => text,
    }
}

/// Prints the console log (its last `lines`), then, with `follow`, what is
/// added to it, across restarts of the container (which start it anew),
/// until interrupted.
pub fn console(path: &Path, lines: Option<usize>, follow: bool, out: &mut dyn Write) -> Result<()> {
    let open = || File::open(path);
    let mut file = match open() {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound && follow => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Error::other(format!(
                "no console log at {} (the container has not run since the host booted)",
                path.display()
            )));
        }
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    let mut offset = 0;
    if let Some(f) = file.as_mut() {
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).context(|| format!("reading {}", path.display()))?;
        offset = bytes.len() as u64;
        write_out(out, last_lines(&sanitize(&bytes), lines))?;
    }
    if !follow {
        return Ok(());
    }
    let mut partial = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let Ok(now) = std::fs::metadata(path) else { continue };
        let replaced = file.as_ref().and_then(|f| f.metadata().ok()).is_none_or(|m| m.ino() != now.ino());
        // A new start truncates the log (or makes a new one): from its beginning.
        if replaced || now.len() < offset {
            file = open().ok();
            offset = 0;
            partial.clear();
        }
        let Some(f) = file.as_mut() else { continue };
        if now.len() == offset {
            continue;
        }
        f.seek(SeekFrom::Start(offset)).context(|| format!("reading {}", path.display()))?;
        let mut more = Vec::new();
        f.read_to_end(&mut more).context(|| format!("reading {}", path.display()))?;
        offset += more.len() as u64;
        partial.extend_from_slice(&more);
        // Whole lines only, so that an escape sequence is never cut in two.
        if let Some(end) = partial.iter().rposition(|b| *b == b'\n') {
            let done: Vec<u8> = partial.drain(..=end).collect();
            write_out(out, &sanitize(&done))?;
        }
    }
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Io { context: "writing the log".into(), source: e }),
    }
}

/// A writer that passes whole lines through `sanitize`: for what a guest's
/// own journalctl prints to the admin's terminal.
pub struct Sanitizing<W: Write> {
    inner: W,
    partial: Vec<u8>,
}

impl<W: Write> Sanitizing<W> {
    pub fn new(inner: W) -> Self {
        Sanitizing { inner, partial: Vec::new() }
    }
}

impl<W: Write> Write for Sanitizing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.partial.extend_from_slice(buf);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let done: Vec<u8> = self.partial.drain(..=end).collect();
            self.inner.write_all(sanitize(&done).as_bytes())?;
        } else if self.partial.len() > 1 << 16 {
            let done = std::mem::take(&mut self.partial);
            self.inner.write_all(sanitize(&done).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for Sanitizing<W> {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.partial);
        let _ = self.inner.write_all(sanitize(&rest).as_bytes());
        let _ = self.inner.flush();
    }
}

/// The `journalctl` arguments for `lines` and `follow`, then the caller's.
pub fn journalctl_args(lines: Option<usize>, follow: bool, extra: &[String]) -> Vec<String> {
    let mut args = vec!["--no-pager".to_string()];
    if let Some(n) = lines {
        args.push(format!("--lines={n}"));
    }
    if follow {
        args.push("--follow".into());
    }
    args.extend(extra.iter().cloned());
    args
}

/// The journal files of a guest, opened inside its root without following
/// any symlink: `var/log/journal/MACHINE-ID/*.journal` (and `*.journal~`),
/// regular files only, newest first.
pub fn open_journal_files(root: &Path) -> Result<Vec<(File, std::fs::Metadata)>> {
    let root_fd = nix::fcntl::open(root, OFlag::O_DIRECTORY | OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| format!("opening {}", root.display()))?;
    let how = |flags: OFlag| {
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_XDEV)
    };
    let top = match openat2(root_fd.as_fd(), JOURNAL_DIR, how(OFlag::O_RDONLY | OFlag::O_DIRECTORY)) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Ok(Vec::new()),
        // (O_NOFOLLOW on a link to a directory: ENOTDIR.)
        Err(nix::errno::Errno::ELOOP | nix::errno::Errno::EXDEV | nix::errno::Errno::ENOTDIR) => {
            return Err(Error::other(format!(
                "/{JOURNAL_DIR} in container root {} is not a directory, or passes through a symbolic link or a mount: not followed",
                root.display()
            )));
        }
        Err(e) => return Err(e).context(|| format!("opening /{JOURNAL_DIR} in {}", root.display())),
    };
    let mut files = Vec::new();
    for dir_name in entries(&top)? {
        // Machine ids: 32 hex digits. Anything else is not a journal of its.
        if dir_name.len() != 32 || !dir_name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(dir) = openat2(top.as_fd(), dir_name.as_str(), how(OFlag::O_RDONLY | OFlag::O_DIRECTORY)) else {
            continue;
        };
        for name in entries(&dir)? {
            if !(name.ends_with(".journal") || name.ends_with(".journal~")) {
                continue;
            }
            // Opened as a path, then only if it is a regular file: a
            // guest's FIFO or device is never opened by host root.
            let Ok(path_fd) = openat2(dir.as_fd(), name.as_str(), how(OFlag::O_PATH)) else {
                continue;
            };
            let Ok(Some(fd)) = crate::fsutil::reopen_regular(&path_fd) else { continue };
            let file = File::from(fd);
            let Ok(meta) = file.metadata() else { continue };
            if meta.file_type().is_file() {
                files.push((file, meta));
            }
        }
    }
    files.sort_by_key(|(_, m)| std::cmp::Reverse(m.mtime()));
    Ok(files)
}

fn entries(dir: &OwnedFd) -> Result<Vec<String>> {
    let dup = dir.try_clone().context(|| "dup".into())?;
    let mut d = nix::dir::Dir::from_fd(dup).context(|| "reading a journal directory".into())?;
    Ok(d.iter()
        .flatten()
        .filter_map(|e| e.file_name().to_str().ok().map(str::to_string))
        .filter(|n| n != "." && n != "..")
        .collect())
}

/// Reads a stopped guest's journal with the host's journalctl, as described
/// at the top of this module. Returns journalctl's exit status.
pub fn journal_from_files(root: &Path, args: &[String]) -> Result<i32> {
    let files = open_journal_files(root)?;
    if files.is_empty() {
        return Err(Error::other(format!(
            "the container has no journal files in /{JOURNAL_DIR} (its journal is kept in memory: start it and run 'nixos-container logs --journal' while it runs, or create /{JOURNAL_DIR} in it for a journal that persists)"
        )));
    }
    let journalctl = ["/usr/bin/journalctl", "/bin/journalctl", "/run/current-system/sw/bin/journalctl"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or(Error::MissingProgram {
            program: "journalctl",
            hint: "reading a stopped container's journal needs the host's journalctl (Debian: systemd); or start the container",
        })?;
    let (uid, gid) = nobody();
    // Copies that belong to nobody, in a fresh private directory: journalctl
    // refuses files with no name (memfds: "Identifier removed").
    let tmp = tempfile::Builder::new()
        .prefix("nixos-container-journal-")
        .tempdir()
        .context(|| "creating a temporary directory".into())?;
    let mut copies = Vec::new();
    let mut total = 0u64;
    for (i, (mut file, meta)) in files.into_iter().enumerate() {
        if total + meta.len() > JOURNAL_BYTES_MAX && !copies.is_empty() {
            tracing::warn!("reading only the newest {} MiB of the journal", JOURNAL_BYTES_MAX >> 20);
            break;
        }
        total += meta.len();
        let path = tmp.path().join(format!("{i}.journal"));
        let mut copy = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&path)
            .context(|| format!("creating {}", path.display()))?;
        io::copy(&mut file, &mut copy).context(|| "copying the guest's journal".into())?;
        std::os::unix::fs::fchown(&copy, Some(uid), Some(gid)).context(|| format!("chown {}", path.display()))?;
        copies.push(path);
    }
    std::os::unix::fs::chown(tmp.path(), Some(uid), Some(gid)).context(|| "chown".into())?;
    let mut cmd = std::process::Command::new(journalctl);
    for path in &copies {
        cmd.arg(format!("--file={}", path.display()));
    }
    cmd.args(args);
    tracing::info!("reading {} journal files of the guest as 'nobody' with {journalctl}", copies.len());
    // SAFETY: only async-signal-safe system calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = cmd.current_dir("/").status().context(|| format!("running {journalctl}"))?;
    drop(tmp);
    Ok(status.code().unwrap_or(1))
}

/// The ids of user `nobody` (65534 where the host has none).
fn nobody() -> (libc::uid_t, libc::gid_t) {
    match nix::unistd::User::from_name("nobody") {
        Ok(Some(u)) if !u.uid.is_root() => (u.uid.as_raw(), u.gid.as_raw()),
        _ => (65534, 65534),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_drive_the_terminal() {
        assert_eq!(sanitize(b"[\x1b[0;32m  OK  \x1b[0m] Started x.\r\n"), "[  OK  ] Started x.\n");
        assert_eq!(sanitize(b"a\x1b]0;pwned title\x07b\x1b]8;;http://x\x1b\\c\n"), "abc\n");
        assert_eq!(sanitize(b"bell\x07 bs\x08 nul\0 \xc2\x9b2J\tend\xff"), "bell bs nul \tend\u{fffd}");
    }

    #[test]
    fn nasty_guest_text_is_cleaned() {
        let cases: &[(&[u8], &str)] = &[
            // C1 OSC (U+009D) up to C1 ST (U+009C), and up to BEL.
            (b"a\xc2\x9d0;title\xc2\x9cb", "ab"),
            (b"a\xc2\x9d52;c;cGF5bG9hZA==\x07b", "ab"),
            // DCS (ESC P / U+0090), APC, PM, SOS strings up to ST.
            (b"a\x1bP+q544e\x1b\\b", "ab"),
            (b"a\xc2\x90$qm\xc2\x9cb", "ab"),
            (b"a\x1b_apc\x1b\\b\x1b^pm\x07c\x1bXsos\x1b\\d", "abcd"),
            // An OSC that never ends stops at the line's end: the lines
            // after it are still shown (without controls, nothing leaks).
            (b"a\x1b]0;title\nrm -rf /\n", "a\nrm -rf /\n"),
            (b"a\xc2\x9d0;title\nb\n", "a\nb\n"),
            // CAN ends a string; another ESC ends it and starts anew.
            (b"a\x1bPq\x18b\x1b]0;t\x1b[31mc", "abc"),
            // Strings opened one after the other: no recursion, no leak.
            (&b"\x1b]".repeat(100_000), ""),
            // Bidi overrides and zero-width characters are dropped.
            ("a\u{202e}gpj.exe\u{200b}\u{feff}b".as_bytes(), "agpj.exeb"),
            // CSI with private parameters and intermediates; C1 CSI.
            (b"a\x1b[?1049hb\x1b[2 qc\xc2\x9b?25ld", "abcd"),
            // A CSI cut by a newline ends there; the newline stays.
            (b"a\x1b[12\nb", "a\nb"),
            // Charset designation, keypad mode, reset, save cursor.
            (b"a\x1b(0b\x1b=c\x1bcd\x1b7e", "abcde"),
            // Backspace, BEL, DEL, CR, lone C1 controls, lone ESC at the end.
            (b"ok\x08\x08no\x07\x7f\r\n\xc2\x85\xc2\x8dx\x1b", "okno\nx"),
            // Escapes split by invalid UTF-8 do not recombine.
            (b"\x1b\xff[31m", "\u{fffd}[31m"),
        ];
        for (input, want) in cases {
            assert_eq!(sanitize(input), *want, "{}", input.escape_ascii());
        }
    }

    #[test]
    fn a_sanitizing_writer_cleans_whole_lines() {
        let mut out = Vec::new();
        {
            let mut w = Sanitizing::new(&mut out);
            w.write_all(b"one \x1b[3").unwrap();
            w.write_all(b"1mred\x1b[0m\ntwo").unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), "one red\ntwo");
    }

    #[test]
    fn the_last_lines() {
        let t = "a\nb\nc\n";
        assert_eq!(last_lines(t, Some(2)), "b\nc\n");
        assert_eq!(last_lines(t, Some(5)), t);
        assert_eq!(last_lines(t, Some(0)), "");
        assert_eq!(last_lines(t, None), t);
        assert_eq!(last_lines("a\nb", Some(1)), "b");
    }

    #[test]
    fn journal_files_are_opened_without_following_guest_symlinks() {
        let host = tempfile::tempdir().unwrap();
        let root = host.path().join("root");
        let id = "0123456789abcdef0123456789abcdef";
        let dir = root.join(JOURNAL_DIR).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("system.journal"), "guest journal").unwrap();
        std::fs::write(dir.join("notes.txt"), "not a journal").unwrap();
        // The guest points journal names at host files, and a machine-id
        // directory at a host directory.
        let secret = host.path().join("host-secret.journal");
        std::fs::write(&secret, "host data").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("user-1000.journal")).unwrap();
        let other = host.path().join("hostdir");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("system.journal"), "host data").unwrap();
        std::os::unix::fs::symlink(&other, root.join(JOURNAL_DIR).join("fedcba9876543210fedcba9876543210")).unwrap();
        let files = open_journal_files(&root).unwrap();
        let mut contents: Vec<String> = files
            .into_iter()
            .map(|(mut f, _)| {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            })
            .collect();
        contents.sort();
        assert_eq!(contents, ["guest journal"]);

        // /var/log itself a link out of the root: nothing is read.
        let root2 = host.path().join("root2");
        std::fs::create_dir_all(root2.join("var")).unwrap();
        std::fs::create_dir_all(host.path().join("log/journal").join(id)).unwrap();
        std::fs::write(host.path().join("log/journal").join(id).join("system.journal"), "host").unwrap();
        std::os::unix::fs::symlink(host.path().join("log"), root2.join("var/log")).unwrap();
        let e = open_journal_files(&root2).unwrap_err().to_string();
        assert!(e.contains("symbolic link"), "{e}");

        // A FIFO or a device named like a journal: skipped, never opened.
        let fifo = dir.join("fifo.journal");
        let opened = crate::fsutil::testing::fifo_opened_by(&fifo, || {
            assert_eq!(open_journal_files(&root).unwrap().len(), 1);
        });
        assert!(!opened, "host root opened the guest's FIFO");
        std::fs::remove_file(&fifo).unwrap();
        if crate::fsutil::testing::mknod_null(&dir.join("dev.journal")) {
            assert_eq!(open_journal_files(&root).unwrap().len(), 1);
        }
    }

    #[test]
    fn journalctl_gets_lines_follow_and_the_callers_arguments() {
        assert_eq!(
            journalctl_args(Some(20), true, &["-u".into(), "nginx".into()]),
            ["--no-pager", "--lines=20", "--follow", "-u", "nginx"]
        );
        assert_eq!(journalctl_args(None, false, &[]), ["--no-pager"]);
    }
}

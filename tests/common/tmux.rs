//! A real terminal for tests: a shell in a private tmux server, driven with
//! send-keys and read with capture-pane. The server is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{BIN, Env, wait_for};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Tmux {
    /// The server's socket, inside the Env's directory, so that nothing is
    /// left in /tmp/tmux-UID.
    socket: PathBuf,
    /// A directory for the shell's rc files, removed with the Env.
    pub dir: PathBuf,
}

impl Tmux {
    /// Starts `shell` (argv) in a 200x50 terminal, with the Env's variables,
    /// the CLI's directory first on PATH, and `extra` variables.
    pub fn start(env: &Env, shell: &[&str], extra: &[(&str, &str)]) -> Tmux {
        Tmux::start_sized(env, 200, 50, shell, extra)
    }

    /// A plain bash (no rc files, prompt `$ `) in a `width` x `height`
    /// terminal, ready for input.
    pub fn bash(env: &Env, width: u16, height: u16) -> Tmux {
        // TERM set inside the pane (tmux would give it tmux-256color).
        let shell = ["env", "TERM=xterm-256color", "bash", "--norc", "--noprofile"];
        let t = Tmux::start_sized(env, width, height, &shell, &[("PS1", "$ ")]);
        // (capture-pane drops the prompt's trailing space)
        t.wait_screen("the prompt", |s| s.lines().any(|l| l.trim_end() == "$"));
        t
    }

    /// As `start`, in a `width` x `height` terminal.
    pub fn start_sized(env: &Env, width: u16, height: u16, shell: &[&str], extra: &[(&str, &str)]) -> Tmux {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = env.base.join(format!("tmux-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("socket");
        let bin_dir = Path::new(BIN).parent().unwrap();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let mut cmd = Command::new("tmux");
        cmd.arg("-S")
            .arg(&socket)
            .args(["-f", "/dev/null", "new-session", "-d", "-x", &width.to_string(), "-y", &height.to_string()])
            .envs(env.vars())
            .env("PATH", path)
            .env("TERM", "xterm-256color")
            .env("HOME", &dir)
            .env_remove("TMUX")
            .args(shell)
            .stdin(Stdio::null());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let status = cmd.status().expect("tmux (installed by scripts/setup)");
        assert!(status.success(), "tmux new-session failed");
        Tmux { socket, dir }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-S").arg(&self.socket).args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types `text` literally.
    pub fn type_text(&self, text: &str) {
        self.tmux(&["send-keys", "-l", text]);
    }

    /// Presses keys by tmux name ("Tab", "Enter", "Escape", "C-c").
    pub fn press(&self, key: &str) {
        self.tmux(&["send-keys", key]);
    }

    /// Presses `keys` in one go (one send-keys), as a quick typist would.
    pub fn press_keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend(keys);
        self.tmux(&args);
    }

    /// Whether the terminal shows its cursor (a prompt may hide it).
    pub fn cursor_visible(&self) -> bool {
        self.tmux(&["display-message", "-p", "#{cursor_flag}"]).trim() == "1"
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"])
    }

    /// Waits until the screen satisfies `pred`; panics with the screen if
    /// it does not within a generous time (the machine is shared).
    pub fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        wait_for(Duration::from_secs(60), || {
            let s = self.screen();
            pred(&s).then_some(s)
        })
        .unwrap_or_else(|| panic!("the terminal never showed {what}; it shows:\n{}", self.screen()))
    }

    /// Waits until the screen contains `text`.
    pub fn wait_text(&self, text: &str) -> String {
        self.wait_screen(&format!("'{text}'"), |s| s.contains(text))
    }

    /// Abandons the shell's line and clears the screen for the next step;
    /// `prompt` is how the shell's prompt ends.
    pub fn clear(&self, prompt: &str) {
        let empty_prompt =
            |s: &str| s.lines().rev().find(|l| !l.trim().is_empty()).is_some_and(|l| l.trim_end() == prompt);
        // Ctrl-U empties the line in bash, zsh and fish; it waits for a
        // completion still running, where Ctrl-C would land in it.
        let mut tries = 0;
        let emptied = wait_for(Duration::from_secs(30), || {
            if empty_prompt(&self.screen()) {
                return Some(());
            }
            tries += 1;
            self.press(if tries % 5 == 0 { "C-c" } else { "C-u" });
            wait_for(Duration::from_secs(1), || empty_prompt(&self.screen()).then_some(()))
        });
        assert!(emptied.is_some(), "the shell never came back to its prompt:\n{}", self.screen());
        // Ctrl-L: clear-screen in bash, zsh and fish alike.
        let cleared = wait_for(Duration::from_secs(30), || {
            self.press("C-l");
            wait_for(Duration::from_secs(2), || {
                let s = self.screen();
                (s.lines().filter(|l| !l.trim().is_empty()).count() == 1 && empty_prompt(&s)).then_some(())
            })
        });
        assert!(cleared.is_some(), "the screen was never cleared:\n{}", self.screen());
        self.tmux(&["clear-history"]);
    }

    /// Types `line` and Enter.
    pub fn line(&self, line: &str) {
        self.type_text(line);
        self.press("Enter");
    }

    /// Clears the screen and its history with the shell's `clear`, so that
    /// waits see only new output (also inside a guest's shell).
    /// Clears the screen and waits until it is clear (a mark of its own is
    /// all it shows), so that what was on it cannot answer the next wait.
    pub fn clear_screen(&self) {
        static CLEARS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mark = format!("SCREEN-CLEARED-{}", CLEARS.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
        self.line(&format!("clear; echo {mark}"));
        self.wait_screen("a cleared screen", |s| s.lines().any(|l| l == mark) && !s.contains("clear; echo"));
        self.tmux(&["clear-history"]);
    }

    pub fn resize(&self, width: u16, height: u16) {
        self.tmux(&["resize-window", "-x", &width.to_string(), "-y", &height.to_string()]);
    }

    /// Types `text` and waits until the shell shows it on its line.
    pub fn type_line(&self, text: &str) {
        self.type_text(text);
        self.wait_text(text);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

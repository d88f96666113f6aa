//! Commands inside containers: `run`, `root-login` and `login` against real
//! guests, through the agent and the plain root shell (there is no route
//! from the host side); the interactive ones driven in tmux as a person
//! would.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::tmux::Tmux;
use common::*;
use nixos_container::container::Container;
use nixos_container::guest;
use nixos_container::paths::Paths;

const LONG: Duration = Duration::from_secs(60);

fn started(env: &Env, short: &str, extra: &[&str]) -> String {
    let name = env.name(short);
    env.create(&name, extra);
    env.ok(["start", &name]);
    name
}

/// Runs the CLI with `input` on its stdin.
fn with_stdin(env: &Env, vars: &[(&str, &str)], args: &[&str], input: Vec<u8>) -> Output {
    let mut child = env
        .command()
        .envs(vars.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").unwrap(), &mut buf).unwrap();
    buf
}

fn sha256_hex(data: &[u8]) -> String {
    let mut c = std::process::Command::new("sha256sum").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let t = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = c.wait_with_output().unwrap();
    t.join().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// The seconds for a `sleep` the test watches: `N.PID`, PID being this
/// test process's. With a distinct `n` per use, the sleep's argv is this
/// test's alone, also among other test runs on the host, so that looking
/// for it host-wide (as `pids_running` does) finds nobody else's.
fn secs(n: u32) -> String {
    format!("{n}.{}", std::process::id())
}

/// Host PIDs of processes whose argv is exactly `argv`, wherever they are:
/// a process that must be gone must not be anywhere (not even outside the
/// container). Use an argv from `secs`.
fn pids_running(argv: &[&str]) -> Vec<u32> {
    let want: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| c == want).unwrap_or(false))
        .collect()
}

/// Whether `pid` is in the foreground process group of its terminal.
fn in_foreground(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    // state ppid pgrp session tty_nr tpgid
    fields.len() > 5 && fields[2] == fields[5]
}

/// Waits until the command `argv` runs; returns its PID. Every process
/// with that argv must be in container `name`'s cgroup.
fn running_in(name: &str, argv: &[&str]) -> u32 {
    let pids = wait_for(LONG, || Some(pids_running(argv)).filter(|p| !p.is_empty()))
        .unwrap_or_else(|| panic!("{argv:?} never ran"));
    let inside = processes_of(name);
    assert!(pids.iter().all(|p| inside.contains(p)), "{argv:?} (PIDs {pids:?}) runs outside the container's cgroup");
    *pids.last().unwrap()
}

fn spawn_cli(env: &Env, args: &[&str]) -> KillOnDrop {
    KillOnDrop::spawn(env.command().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()))
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

/// The checks every route must pass, with `vars` choosing the route.
fn common_semantics(env: &Env, name: &str, vars: &[(&str, &str)], separate_stderr: bool) {
    let run = |args: &[&str], input: Vec<u8>| {
        let mut full = vec!["run", name, "--"];
        full.extend_from_slice(args);
        with_stdin(env, vars, &full, input)
    };

    let out = run(&["sh", "-c", "echo out; echo err >&2; exit 7"], vec![]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    if separate_stderr {
        assert_eq!(stdout(&out), "out\n");
        assert!(stderr(&out).ends_with("err\n") && !stderr(&out).contains("out"), "{}", stderr(&out));
    } else {
        assert_eq!(stdout(&out), "out\nerr\n");
    }

    let out = run(&["printf", "%s|", "a b", "$HOME", "it's", "\"q\"", "*", "", "h\u{e9}\u{2603}"], vec![]);
    assert_eq!(stdout(&out), "a b|$HOME|it's|\"q\"|*||h\u{e9}\u{2603}|");
    assert_eq!(out.status.code(), Some(0));

    // A command line larger than one frame of the protocol.
    let (a, b) = ("a".repeat(100_000), "b".repeat(100_000));
    let out = run(&["sh", "-c", "echo ${#1} ${#2} ${1%%aaa*}${2##*bbb}", "_", &a, &b], vec![]);
    assert_eq!(stdout(&out), "100000 100000\n", "{}", stderr(&out));

    let data = random_bytes(1 << 20);
    let out = run(&["cat"], data.clone());
    assert!(out.stdout == data, "1 MiB through cat came back changed ({} bytes)", out.stdout.len());
    let out = run(&["sha256sum"], data.clone());
    assert_eq!(stdout(&out).split_whitespace().next(), Some(sha256_hex(&data).as_str()));

    // The end of stdin reaches the command; no stdin is an immediate end.
    assert_eq!(stdout(&run(&["cat"], b"x".to_vec())), "x");
    assert_eq!(stdout(&run(&["wc", "-c"], vec![])).trim(), "0");

    // Stdin is never shell input, whatever the command leaves unread.
    let out = run(&["true"], b"touch /tmp/injected\necho INJECTED\n".to_vec());
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("INJECTED"));
    let out = run(&["head", "-c", "1"], b"xtouch /tmp/injected\n".to_vec());
    assert_eq!(stdout(&out), "x");
    assert_eq!(run(&["test", "-e", "/tmp/injected"], vec![]).status.code(), Some(1), "stdin was executed");

    assert_eq!(run(&["no-such-command"], vec![]).status.code(), Some(127));
    assert_eq!(run(&["sh", "-c", "kill -TERM $$"], vec![]).status.code(), Some(143));

    let out = with_stdin(
        env,
        vars,
        &[
            "run",
            name,
            "--env",
            "GREETING=hello world",
            "--cwd",
            "/etc",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING\" \"$PWD\"",
        ],
        vec![],
    );
    assert_eq!(stdout(&out), "hello world /etc\n", "{}", stderr(&out));

    // `run ... | head`: when the reader goes away, run ends as a local
    // command would, by SIGPIPE (128 + 13), without an error message.
    let mut child = env
        .command()
        .envs(vars.iter().copied())
        .args(["run", name, "--", "yes"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 2];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"y\n");
    let ended = wait_for(LONG, || child.try_wait().unwrap());
    if ended.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn run_through_the_agent_is_like_a_local_shell() {
    let env = Env::new();
    let name = started(&env, "agent", &[]);
    let out = env.run(["-v", "run", &name, "--", "true"]);
    assert!(stderr(&out).contains("through the guest agent"), "{}", stderr(&out));
    common_semantics(&env, &name, &[], true);

    // --user, and a pty on request.
    let out = env.run(["run", &name, "--user", "nobody", "--", "id", "-un"]);
    assert_eq!(stdout(&out), "nobody\n", "{}", stderr(&out));
    // Not root's login environment: the system PATH, the user's own names.
    let out = env.run(["run", &name, "--user", "nobody", "--", "sh", "-c", "echo \"$PATH $USER\""]);
    assert_eq!(stdout(&out), format!("{} nobody\n", nixos_container_agent::serve::SYSTEM_PATH), "{}", stderr(&out));
    let out = env.run(["run", &name, "-t", "--", "sh", "-c", "tty; stty size"]);
    assert!(stdout(&out).starts_with("/dev/pts/"), "{}", stdout(&out));
    let out = env.run(["run", &name, "--", "tty"]);
    assert_eq!(stdout(&out), "not a tty\n");
    let out = env.run(["run", &name, "--user", "ghost", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no user 'ghost'"), "{}", stderr(&out));

    // The agent sits in the store, rooted by the container.
    let root = env.gcroots(&name).join("nixos-container-agent");
    let target = std::fs::read_link(&root).expect("the agent's GC root");
    assert_eq!(target.to_str(), Some(guest::agent::STORE_PATH));
    assert!(target.exists());

    // Stopped: exit code 4 and a clear message.
    env.ok(["stop", &name]);
    let out = env.run(["run", &name, "--", "true"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

#[test]
fn the_library_runs_a_command_and_captures_it() {
    let env = Env::new();
    let name = started(&env, "lib", &[]);
    let c = Container::open(&Paths::under(&env.base), &name).unwrap();
    let out = guest::exec(&c, &guest::Command::new(["sh", "-c", "echo activating; echo warning >&2; exit 4"])).unwrap();
    assert_eq!(
        (out.code(), out.stdout.as_slice(), out.stderr.as_slice()),
        (4, &b"activating\n"[..], &b"warning\n"[..])
    );
    let out =
        guest::exec(&c, &guest::Command::new(["/nix/var/nix/profiles/system/bin/switch-to-configuration", "test"]))
            .unwrap();
    assert_eq!(out.code(), 0, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn signals_reach_the_command_which_stays_in_the_container() {
    let env = Env::new();
    let name = started(&env, "sig", &[]);

    // Ctrl-C (SIGINT) to the CLI ends the command with it: 130.
    let s = secs(301);
    let mut cli = spawn_cli(&env, &["run", &name, "--", "sleep", &s]);
    let pid = running_in(&name, &["sleep", &s]);
    assert!(processes_of(&name).contains(&pid), "the command is in the container's cgroup");
    signal(&cli, nix::sys::signal::Signal::SIGINT);
    assert_eq!(cli.wait().unwrap().code(), Some(130));
    assert!(pids_running(&["sleep", &s]).is_empty());

    // SIGTERM: 143, and the command is gone when the CLI ends.
    let s = secs(302);
    let mut cli = spawn_cli(&env, &["run", &name, "--", "sleep", &s]);
    running_in(&name, &["sleep", &s]);
    signal(&cli, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(cli.wait().unwrap().code(), Some(143));
    assert!(pids_running(&["sleep", &s]).is_empty(), "SIGTERM ended the command");

    // Endless input the command never reads (`yes | run -- sleep`) fills
    // every buffer on the way; SIGTERM still gets through.
    let s = secs(305);
    let mut yes = KillOnDrop::spawn(std::process::Command::new("yes").stdout(Stdio::piped()));
    let input = yes.stdout.take().unwrap();
    let mut cli = KillOnDrop::spawn(
        env.command()
            .args(["run", &name, "--", "sleep", &s])
            .stdin(input)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    running_in(&name, &["sleep", &s]);
    std::thread::sleep(Duration::from_secs(1));
    signal(&cli, nix::sys::signal::Signal::SIGTERM);
    assert_eq!(cli.wait_timeout(LONG).and_then(|st| st.code()), Some(143), "SIGTERM was stuck behind unread input");
    assert!(pids_running(&["sleep", &s]).is_empty(), "SIGTERM ended the command");

    // The CLI killed outright: the command does not linger.
    let s = secs(303);
    let mut cli = spawn_cli(&env, &["run", &name, "--", "sleep", &s]);
    running_in(&name, &["sleep", &s]);
    signal(&cli, nix::sys::signal::Signal::SIGKILL);
    let _ = cli.wait();
    assert!(
        wait_for(LONG, || pids_running(&["sleep", &s]).is_empty().then_some(())).is_some(),
        "the command outlived the CLI"
    );

    // stop ends commands started by run, and the CLI with them.
    let s = secs(304);
    let mut cli = spawn_cli(&env, &["run", &name, "--", "sleep", &s]);
    running_in(&name, &["sleep", &s]);
    env.ok(["stop", &name, "--timeout", "10"]);
    assert_ne!(cli.wait().unwrap().code(), Some(0));
    assert!(pids_running(&["sleep", &s]).is_empty());
    assert!(processes_of(&name).is_empty());
}

#[test]
fn plain_root_shell_without_the_agent() {
    let env = Env::new();
    let name = started(&env, "plain", &[]);
    // A store path the guest does not have: the real negotiation falls back.
    let missing = [("NIXOS_CONTAINER_AGENT", "/nix/store/00000000000000000000000000000000-nixos-container-agent")];
    let out = with_stdin(&env, &missing, &["-v", "run", &name, "--", "true"], vec![]);
    assert!(stderr(&out).contains("through the plain root shell"), "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    common_semantics(&env, &name, &missing, false);

    // Forced off, and Ctrl-C forwarded through a second connection.
    let off = [("NIXOS_CONTAINER_AGENT", "off")];
    common_semantics(&env, &name, &off, false);
    let s = secs(305);
    let mut cli = KillOnDrop::spawn(
        env.command()
            .env("NIXOS_CONTAINER_AGENT", "off")
            .args(["run", &name, "--", "sleep", &s])
            .stdout(Stdio::piped()),
    );
    running_in(&name, &["sleep", &s]);
    signal(&cli, nix::sys::signal::Signal::SIGINT);
    assert_eq!(cli.wait().unwrap().code(), Some(130));
    assert!(pids_running(&["sleep", &s]).is_empty(), "Ctrl-C ended the command");
}

/// A guest without a root-shell socket boots (start goes by its READY=1),
/// but nothing is run in it from the host side: every way in names the
/// socket and what provides it (tests/security.rs has the attacks).
#[test]
fn a_guest_without_a_root_shell_socket_gets_a_clear_error() {
    let env = Env::new();
    let name = started(&env, "nosock", &["--config", "systemd.sockets.root-shell.enable = false;"]);
    assert!(!env.root(&name).join("var/lib/root-shell.socket").exists());
    for args in [
        vec!["run", &name, "--", "hostname"],
        vec!["run", &name, "-t", "--user", "nobody", "--", "tty"],
        vec!["root-login", &name],
    ] {
        let out = env.run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            format!(
                "error: container '{name}' has no usable root-shell socket /var/lib/root-shell.socket (on the host {}): \
                 /var/lib/root-shell.socket does not exist; the guest module guest/container-login.nix provides it \
                 (README: \"Guest socket contract\")\n",
                env.root(&name).join("var/lib/root-shell.socket").display()
            )
        );
    }
    assert_eq!(env.ok(["status", &name]), "up\n");
    env.ok(["stop", &name]);
    assert!(processes_of(&name).is_empty());
}

#[test]
fn root_login_is_a_real_terminal() {
    let env = Env::new();
    let name = started(&env, "rlogin", &[]);
    let t = Tmux::bash(&env, 91, 27);
    t.line(&format!("cd {}; stty -g > before.stty", env.base.display()));

    // run in a terminal: a pty of the caller's size by default, and Ctrl-C
    // reaches the command through it.
    t.line(&env.shell_command(&["run", &name, "--", "sh", "-c", "tty; stty size"]));
    let screen = t.wait_text("27 91");
    assert!(screen.contains("/dev/pts/"), "{screen}");
    t.clear_screen();
    let s = secs(308);
    t.line(&format!("{}; echo RUN-EXITED-$((40+2))-$?", env.shell_command(&["run", &name, "--", "sleep", &s])));
    let pid = running_in(&name, &["sleep", &s]);
    wait_for(LONG, || in_foreground(pid).then_some(())).expect("the command owns its pty");
    t.press("C-c");
    t.wait_text("RUN-EXITED-42-130");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo RESTORED-AFTER-RUN");
    t.wait_text("RESTORED-AFTER-RUN");
    t.clear_screen();

    t.line(&format!("{}; echo CLI-EXITED-$((40+2))", env.shell_command(&["root-login", &name])));
    t.line("echo READY-$((6*7))");
    t.wait_text("READY-42");
    t.clear_screen();
    t.line("tty; stty size; echo $TERM");
    let screen = t.wait_text("xterm-256color\n");
    assert!(screen.contains("27 91"), "{screen}");
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert!(screen.contains("xterm-256color"), "{screen}");

    // It follows a resize of the caller's terminal.
    // The new size reaches the guest's pty a moment later: ask until it has.
    t.resize(100, 30);
    let mut screen = String::new();
    let resized = wait_for(LONG, || {
        t.clear_screen();
        t.line("echo SIZE=$(stty size)=");
        screen = t.wait_screen("stty's answer", |s| s.lines().any(|l| l.starts_with("SIZE=")));
        screen.contains("SIZE=30 100=").then_some(())
    });
    assert!(resized.is_some(), "the guest's terminal never became 100x30:\n{screen}");
    t.wait_text("30 100");

    // Job control, and Ctrl-C as a terminal sends it.
    t.clear_screen();
    let s = secs(307);
    t.line(&format!("sleep {s} &"));
    t.line("jobs");
    t.wait_text("Running");
    t.line("fg");
    let pid = running_in(&name, &["sleep", &s]);
    wait_for(LONG, || in_foreground(pid).then_some(())).expect("fg gives the job the terminal");
    t.press("C-c");
    t.line("echo status=$?");
    t.wait_text("status=130");
    assert!(pids_running(&["sleep", &s]).is_empty());

    // Exit restores the caller's terminal.
    t.line("exit");
    t.wait_text("CLI-EXITED-42");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo TERMINAL-RESTORED");
    t.wait_text("TERMINAL-RESTORED");

    // So does the guest going away under it.
    t.clear_screen();
    t.line(&format!("{}; echo CLI-EXITED-$((40+2))", env.shell_command(&["root-login", &name])));
    t.line("echo AGAIN-$((6*7))");
    t.wait_text("AGAIN-42");
    env.ok(["terminate", &name]);
    t.wait_text("CLI-EXITED-42");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo RESTORED-AFTER-DISCONNECT");
    t.wait_text("RESTORED-AFTER-DISCONNECT");
}

#[test]
fn login_with_a_password_set_by_run() {
    let env = Env::new();
    let name = started(&env, "login", &[]);
    let out = with_stdin(&env, &[], &["run", &name, "--", "chpasswd"], b"root:s3cret-pw\n".to_vec());
    assert!(out.status.success(), "{}", stderr(&out));

    let t = Tmux::bash(&env, 100, 30);
    t.line(&format!("cd {}; stty -g > before.stty", env.base.display()));
    t.line(&format!("{}; echo CLI-EXITED-$((40+2))", env.shell_command(&["login", &name])));
    t.wait_text("login:");
    t.line("root");
    t.wait_text("Password:");
    t.line("s3cret-pw");
    // login flushes what was typed ahead: wait for the shell's prompt.
    t.wait_text(":~]#");
    t.line("echo LOGGED-IN-AS-$(id -un)");
    t.wait_text("LOGGED-IN-AS-root");
    t.line("exit");
    t.wait_text("CLI-EXITED-42");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo TERMINAL-RESTORED");
    t.wait_text("TERMINAL-RESTORED");

    // A wrong password is refused.
    t.clear_screen();
    t.line(&env.shell_command(&["login", &name]));
    t.wait_text("login:");
    t.line("root");
    t.wait_text("Password:");
    t.line("wrong");
    t.wait_text("Login incorrect");

    env.ok(["stop", &name]);
    let out = env.run(["login", &name]);
    assert_eq!(out.status.code(), Some(4));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
}

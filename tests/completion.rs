//! Shell completion in real interactive shells (bash, zsh, fish in tmux),
//! with the scripts from completions/ installed the way the README says:
//! subcommands, flags, file paths, and container names from the live state.

mod common;

use std::process::Command;

use common::tmux::Tmux;
use common::*;

/// What the completion engine offers for `words` (the last one being
/// completed), through the same protocol the bash script uses.
fn offered(env: &Env, words: &[&str]) -> Vec<String> {
    let out = Command::new(BIN)
        .envs(env.vars())
        .env("COMPLETE", "bash")
        .env("_CLAP_IFS", "\n")
        .env("_CLAP_COMPLETE_INDEX", (words.len() - 1).to_string())
        .arg("--")
        .args(words)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

/// The container names among the candidates (flags are offered beside them).
fn names_offered(env: &Env, words: &[&str]) -> Vec<String> {
    offered(env, words).into_iter().filter(|c| !c.starts_with('-')).collect()
}

/// The prompt line that shows `text` (as typed or completed).
fn line_with<'a>(screen: &'a str, text: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.contains(text))
}

/// The steps every shell goes through; `prompt` ends each shell's prompt.
fn exercise(term: &Tmux, env: &Env, name: &str, prompt: &str) {
    let prompt = prompt.trim_end();
    term.wait_text(prompt);

    // A container's name, from a prefix of it, with the very first TAB
    // (zsh autoloads the script then: that TAB must complete too).
    let prefix = &name[..name.len() - 3];
    term.type_line(&format!("nixos-container start {prefix}"));
    term.press("Tab");
    term.wait_screen("the container's name completed", |s| {
        line_with(s, "nixos-container start").is_some_and(|l| l.contains(name))
    });
    term.clear(prompt);

    // Subcommands: "sta" is ambiguous, so the candidates are listed.
    term.type_line("nixos-container sta");
    term.press("Tab");
    term.press("Tab");
    let screen = term.wait_screen("'start' and 'status' offered", |s| {
        s.lines().skip(1).any(|l| l.contains("start")) && s.lines().skip(1).any(|l| l.contains("status"))
    });
    assert!(!screen.contains("show-ip"), "only matching subcommands:\n{screen}");
    term.clear(prompt);

    // Flags.
    term.type_line("nixos-container stop --tim");
    term.press("Tab");
    term.wait_screen("--timeout completed", |s| {
        line_with(s, "nixos-container stop").is_some_and(|l| l.contains("--timeout"))
    });
    term.clear(prompt);

    // File paths for --config-file.
    let examples = repo().join("examples");
    term.type_line(&format!("nixos-container create x --config-file {}/dem", examples.display()));
    term.press("Tab");
    term.wait_screen("the file name completed", |s| {
        line_with(s, "--config-file").is_some_and(|l| l.contains("demo.nix"))
    });
    term.clear(prompt);
    let _ = env;
}

#[test]
fn bash_zsh_and_fish_complete_subcommands_flags_paths_and_names() {
    let env = Env::new();
    let name = env.name("compl");
    env.create(&name, &[]);
    let completions = repo().join("completions");

    // bash, with bash-completion and our script sourced.
    {
        let probe = Tmux::start(&env, &["true"], &[]);
        let rc = probe.dir.join("bashrc");
        std::fs::write(
            &rc,
            format!(
                "PS1='bash$ '\nsource /usr/share/bash-completion/bash_completion\nsource {}\n",
                completions.join("nixos-container.bash").display()
            ),
        )
        .unwrap();
        let term = Tmux::start(&env, &["bash", "--noprofile", "--rcfile", rc.to_str().unwrap(), "-i"], &[]);
        exercise(&term, &env, &name, "bash$ ");
    }

    // zsh, with the script autoloaded from $fpath by compinit.
    {
        let probe = Tmux::start(&env, &["true"], &[]);
        let zdot = probe.dir.join("zdot");
        std::fs::create_dir_all(&zdot).unwrap();
        std::fs::write(
            zdot.join(".zshrc"),
            format!(
                "PS1='zsh%% '\nfpath=({} $fpath)\nautoload -Uz compinit && compinit -u -D\n",
                completions.display()
            ),
        )
        .unwrap();
        let term = Tmux::start(&env, &["zsh", "-i"], &[("ZDOTDIR", zdot.to_str().unwrap())]);
        exercise(&term, &env, &name, "zsh% ");
    }

    // fish, with the script in its completions directory.
    {
        let probe = Tmux::start(&env, &["true"], &[]);
        let config = probe.dir.join("config");
        std::fs::create_dir_all(config.join("fish/completions")).unwrap();
        std::fs::copy(completions.join("nixos-container.fish"), config.join("fish/completions/nixos-container.fish"))
            .unwrap();
        std::fs::write(
            config.join("fish/config.fish"),
            "set -g fish_greeting ''\nfunction fish_prompt; echo -n 'fish> '; end\n",
        )
        .unwrap();
        let data = probe.dir.join("data");
        let term = Tmux::start(
            &env,
            &["fish", "-i"],
            &[("XDG_CONFIG_HOME", config.to_str().unwrap()), ("XDG_DATA_HOME", data.to_str().unwrap())],
        );
        exercise(&term, &env, &name, "fish> ");
    }
}

#[test]
fn names_offered_follow_the_live_state() {
    let env = Env::new();
    let up = env.name("up");
    let down = env.name("down");
    env.create(&up, &[]);
    env.create(&down, &[]);
    env.ok(["start", &up]);

    let mut both = vec![up.clone(), down.clone()];
    both.sort();
    for cmd in [
        "status",
        "destroy",
        "show-ip",
        "terminate",
        "restart",
        "show-host-key",
        "update",
        "generations",
        "info",
        "logs",
        "set-limits",
    ] {
        assert_eq!(names_offered(&env, &["nixos-container", cmd, ""]), both, "{cmd}");
    }
    // What the start picker offers: the stopped ones.
    assert_eq!(names_offered(&env, &["nixos-container", "start", ""]), vec![down.clone()], "start");
    for cmd in ["stop", "run", "exec", "login", "root-login", "shell"] {
        assert_eq!(
            names_offered(&env, &["nixos-container", cmd, ""]),
            vec![up.clone()],
            "{cmd} offers running ones only"
        );
    }
    // run --user: the guest's users, from its /etc/passwd.
    let users = offered(&env, &["nixos-container", "run", "-t", &up, "--user", ""]);
    assert!(users.contains(&"root".to_string()), "{users:?}");
    let users = offered(&env, &["nixos-container", "exec", &up, "--env", "A=b", "--user", "ro"]);
    assert_eq!(users, ["root"]);
    assert!(offered(&env, &["nixos-container", "run", "--user", ""]).is_empty(), "no container named yet");
    // A prefix narrows.
    assert_eq!(names_offered(&env, &["nixos-container", "status", &down[..down.len() - 1]]), vec![down.clone()]);
    // A container made a moment ago is there at once, and one destroyed a
    // moment ago is gone at once.
    let fresh = env.name("fresh");
    env.create(&fresh, &["--system-path", &build_system(&[])]);
    let mut all = vec![up.clone(), down.clone(), fresh.clone()];
    all.sort();
    assert_eq!(names_offered(&env, &["nixos-container", "status", ""]), all);
    assert_eq!(names_offered(&env, &["nixos-container", "status", &fresh[..fresh.len() - 2]]), vec![fresh.clone()]);
    env.ok(["destroy", &fresh]);
    assert_eq!(names_offered(&env, &["nixos-container", "status", ""]), both);
    env.ok(["stop", &up]);
    assert!(names_offered(&env, &["nixos-container", "stop", ""]).is_empty());
    // The hidden supervisor command is never offered.
    let subs = offered(&env, &["nixos-container", ""]);
    assert!(subs.contains(&"start".to_string()) && !subs.iter().any(|s| s.contains("supervise")), "{subs:?}");
}

//! The admin's experience: prompts at a terminal (and none in scripts),
//! list/status as table and JSON, --all/--auto, -v and quiet scripts.

mod common;

use common::tmux::Tmux;
use common::*;

const PROMPT: &str = "$";

fn bash(env: &Env) -> Tmux {
    let term = Tmux::start(env, &["bash", "--norc", "--noprofile", "-i"], &[("PS1", "$ ")]);
    term.wait_text(PROMPT);
    term
}

/// Types a command line; its exit status shows as a line `exit=N`.
fn run_in(term: &Tmux, line: &str) {
    term.type_line(&format!("{line}; echo \"exit=$?\""));
    term.press("Enter");
}

/// Waits for the `exit=N` line; returns N and the screen.
fn exit_status(term: &Tmux) -> (i32, String) {
    let screen = term.wait_screen("an exit status", |s| s.lines().any(|l| l.starts_with("exit=") && !l.contains('$')));
    let code = screen
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("exit=").and_then(|c| c.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{screen}"));
    (code, screen)
}

fn conf_exists(env: &Env, name: &str) -> bool {
    env.conf_dir().join(format!("{name}.conf")).exists()
}

#[test]
fn destroy_asks_at_a_terminal_and_not_in_scripts() {
    let env = Env::new();
    let [kept, said_yes, scripted] = [env.name("keep"), env.name("yes"), env.name("script")];
    for n in [&kept, &said_yes, &scripted] {
        env.create(n, &[]);
    }
    let term = bash(&env);

    run_in(&term, &format!("nixos-container destroy {kept}"));
    let screen = term.wait_text("[y/N]");
    assert!(screen.contains(&format!("Destroy container '{kept}' and all its data")), "{screen}");
    term.type_text("n");
    let (code, screen) = exit_status(&term);
    // A quiet cancel: no "error:", but not success either (a wrapper's
    // `destroy web && ...` must not go on).
    assert_eq!(code, 1, "{screen}");
    assert!(screen.contains(&format!("cancelled: container '{kept}' is kept")), "{screen}");
    assert!(!screen.contains("error:"), "{screen}");
    assert!(conf_exists(&env, &kept) && env.root(&kept).exists(), "the container is kept");
    term.clear(PROMPT);

    run_in(&term, &format!("nixos-container destroy {said_yes}"));
    term.wait_text("[y/N]");
    term.type_text("y");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 0, "{screen}");
    assert_eq!(env.leftovers(&said_yes), Vec::<String>::new());
    term.clear(PROMPT);

    run_in(&term, &format!("nixos-container destroy --yes {kept}"));
    let (code, screen) = exit_status(&term);
    assert!(code == 0 && !screen.contains("[y/N]"), "{screen}");
    assert_eq!(env.leftovers(&kept), Vec::<String>::new());

    // No terminal: no question, as with the anchor.
    let out = env.run(["destroy", &scripted]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    assert_eq!(env.leftovers(&scripted), Vec::<String>::new());
}

#[test]
fn a_missing_name_is_picked_at_a_terminal() {
    let env = Env::new();
    let name = env.name("pick");
    env.create(&name, &[]);
    let term = bash(&env);

    // Nothing runs: nothing to pick for run.
    run_in(&term, "nixos-container run -- true");
    let (code, screen) = exit_status(&term);
    assert!(code == 1 && screen.contains("error: no container is running; nothing to run"), "{screen}");
    term.clear(PROMPT);

    // Escape cancels.
    run_in(&term, "nixos-container start");
    term.wait_text("Which container to start?");
    term.wait_text(&format!("{name}  down"));
    term.press("Escape");
    let (code, screen) = exit_status(&term);
    assert!(code == 1 && screen.contains("cancelled: no container chosen"), "{screen}");
    assert_eq!(env.ok(["status", &name]), "down\n");
    term.clear(PROMPT);

    // Ctrl-C ends the program as usual, and gives the cursor back.
    run_in(&term, "nixos-container start");
    term.wait_text("Which container to start?");
    term.wait_text(&format!("{name}  down"));
    term.press("C-c");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 130, "{screen}");
    assert!(term.cursor_visible(), "the cursor is hidden after Ctrl-C");
    term.clear(PROMPT);

    run_in(&term, "nixos-container start");
    term.wait_text("Which container to start?");
    term.wait_text(&format!("{name}  down 10.{}.1.2", env.pool));
    // Nothing is preselected: Enter alone takes nobody's container.
    term.press("Enter");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(term.screen().contains("Which container to start?"), "{}", term.screen());
    assert_eq!(env.ok(["status", &name]), "down\n");
    term.press("Down");
    term.press("Enter");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 0, "{screen}");
    assert_eq!(env.ok(["status", &name]), "up\n");
    term.clear(PROMPT);

    run_in(&term, "nixos-container run -- hostname");
    term.wait_text("Which container to run?");
    term.wait_text(&format!("{name}  up"));
    term.press("Down");
    term.press("Enter");
    let (code, screen) = exit_status(&term);
    assert!(code == 0 && screen.lines().any(|l| l.trim() == name), "{screen}");
    term.clear(PROMPT);

    run_in(&term, "nixos-container stop");
    term.wait_text("Which container to stop?");
    // Only the running one is offered (it is the only container anyway).
    term.wait_text(&format!("{name}  up"));
    term.press("Down");
    term.press("Enter");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 0, "{screen}");
    assert_eq!(env.ok(["status", &name]), "down\n");
}

#[test]
fn list_and_status_as_names_table_and_json() {
    let env = Env::new();
    let auto = env.name("a");
    let plain = env.name("b");
    env.create(&auto, &["--auto-start"]);
    env.create(&plain, &[]);
    env.ok(["start", &auto]);

    // In a pipe: the anchor's format.
    assert_eq!(env.ok(["list"]), format!("{auto}\n{plain}\n"));

    let json: serde_json::Value = serde_json::from_str(&env.ok(["list", "--json"])).expect("valid JSON");
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    let expect = |row: &serde_json::Value, name: &str, state: &str, n: u8, auto_start: bool| {
        assert_eq!(row["name"], name);
        assert_eq!(row["state"], state);
        assert_eq!(row["address"], format!("10.{}.{n}.2", env.pool));
        assert_eq!(row["generation"], 1);
        assert_eq!(row["auto_start"], auto_start);
    };
    expect(&rows[0], &auto, "up", 1, true);
    expect(&rows[1], &plain, "down", 2, false);
    // From the container's cgroup: its processes and memory while it runs.
    assert!(rows[0]["processes"].as_u64().is_some_and(|n| n >= 3), "{}", rows[0]);
    assert!(rows[0]["memory_bytes"].as_u64().is_some_and(|m| m > 1 << 20), "{}", rows[0]);
    assert!(rows[1]["processes"].is_null() && rows[1]["memory_bytes"].is_null(), "{}", rows[1]);

    let mut status: serde_json::Value = serde_json::from_str(&env.ok(["status", &auto, "--json"])).unwrap();
    // A booting guest's processes and memory move between two reads; the
    // rest is the same.
    let mut first = rows[0].clone();
    for key in ["processes", "memory_bytes", "uptime_seconds"] {
        assert!(status[key].as_u64().is_some(), "{status}");
        status[key] = serde_json::Value::Null;
        first[key] = serde_json::Value::Null;
    }
    assert_eq!(status, first);
    assert_eq!(env.ok(["status", &plain]), "down\n");

    // At a terminal: a table.
    let term = bash(&env);
    run_in(&term, "nixos-container list");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 0, "{screen}");
    let header = screen.lines().find(|l| l.starts_with("NAME")).unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["NAME", "STATE", "ADDRESS", "GENERATION", "AUTO-START"]);
    let row = screen.lines().find(|l| l.starts_with(&auto)).unwrap_or_else(|| panic!("{screen}"));
    let a = format!("10.{}.1.2", env.pool);
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), [auto.as_str(), "up", a.as_str(), "1", "yes"]);
    env.ok(["stop", &auto]);
}

#[test]
fn start_all_and_auto_try_every_container_and_report_each_failure() {
    let env = Env::new();
    let [auto, plain, broken] = [env.name("auto"), env.name("plain"), env.name("broken")];
    env.create(&auto, &["--auto-start"]);
    env.create(&plain, &[]);
    env.create(&broken, &[]);
    // A container whose system is gone cannot start.
    std::fs::remove_file(env.profile_dir(&broken).join("system")).unwrap();

    env.ok(["start", "--auto"]);
    let states = |env: &Env| [&auto, &plain, &broken].map(|n| env.ok(["status", n]));
    assert_eq!(states(&env), ["up\n", "down\n", "down\n"]);

    let out = env.run(["start", "--all"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "error: container '{broken}' has no system (its create did not finish); run 'nixos-container update {broken}' to build one\n\
             error: 1 of 3 containers failed to start\n"
        )
    );
    assert_eq!(states(&env), ["up\n", "up\n", "down\n"]);

    let out = env.run(["stop", "--all"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(states(&env), ["down\n", "down\n", "down\n"]);
    for n in [&auto, &plain] {
        assert!(processes_of(n).is_empty());
    }
    // Nothing running: stop --all has nothing to do and succeeds.
    env.ok(["stop", "--all"]);
}

#[test]
fn verbose_explains_and_scripts_stay_quiet() {
    let env = Env::new();
    let name = env.name("verbose");
    let nixos = nixos_path();
    let out = env.run(["-v", "create", &name, "--nixos-path", nixos.to_str().unwrap(), "--bind-ro", "/usr"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("running nix-env -p {}", env.profile_dir(&name).join("system").display())), "{err}");
    assert!(err.contains(&format!("creating '{name}' with host address 10.{}.1.1", env.pool)), "{err}");

    let out = env.run(["start", "--verbose", &name]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("systemd-nspawn --keep-unit --register=no --machine={name}")), "{err}");
    assert!(err.contains("preparing the root"), "{err}");
    // The netlink steps of the private network.
    assert!(err.contains(&format!("network of {name}: namespace nixos-container-{name}")), "{err}");
    assert!(err.contains(&format!("default route via 10.{}.1.1 in the container", env.pool)), "{err}");
    assert!(!err.contains('\x1b'), "no terminal escapes in a pipe: {err:?}");

    // In a script, success is silent.
    let out = env.run(["stop", &name]);
    assert!(out.status.success());
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));
    let out = env.run(["start", &name]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str()), ("", ""));

    let out = env.run(["stop", "-v", &name]);
    assert!(stderr(&out).contains(&format!("waiting up to 90 s for {name} to halt")), "{}", stderr(&out));
    // -q silences notes.
    let out = env.run(["-q", "stop", &name]);
    assert_eq!(stderr(&out), "");
}

/// The value of a cgroup limit file of container `name`: the cgroup2 file
/// where cgroup2 hands the controller down, else the v1 controller's.
fn cgroup_limit(name: &str, controller: &str, v2_file: &str, v1_file: &str) -> String {
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    let unified = if unified.is_dir() { unified } else { std::path::Path::new("/sys/fs/cgroup") };
    let offered = std::fs::read_to_string(unified.join("nixos-containers/cgroup.subtree_control")).unwrap_or_default();
    let file = if offered.split_whitespace().any(|c| c == controller) {
        unified.join("nixos-containers").join(name).join(v2_file)
    } else {
        std::path::Path::new("/sys/fs/cgroup").join(controller).join("nixos-containers").join(name).join(v1_file)
    };
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())).trim().to_string()
}

#[test]
fn limits_at_create_and_live_and_the_oom_killer_stays_in_the_container() {
    let env = Env::new();
    let name = env.name("lim");
    env.create(&name, &["--memory-max", "128M", "--cpus", "1.5", "--pids-max", "300"]);
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap();
    assert!(conf.contains("MEMORY_MAX=128M\nCPU_QUOTA=150%\nPIDS_MAX=300\n"), "{conf}");
    env.ok(["start", &name]);
    let memory = || cgroup_limit(&name, "memory", "memory.max", "memory.limit_in_bytes");
    let cpu = || {
        let v = cgroup_limit(&name, "cpu", "cpu.max", "cpu.cfs_quota_us");
        v.split_whitespace().next().unwrap().to_string()
    };
    let pids = || cgroup_limit(&name, "pids", "pids.max", "pids.max");
    assert_eq!((memory(), cpu(), pids()), ((128u64 << 20).to_string(), "150000".into(), "300".into()));

    // Changed on the running container, and kept for its next start.
    let out = env.run(["set-limits", &name, "--memory-max", "96M", "--pids-max", "infinity"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("container '{name}': memory 96M, cpu 150%, processes no limit (in force now)\n"));
    assert_eq!((memory(), pids()), ((96u64 << 20).to_string(), "max".into()));
    let conf = std::fs::read_to_string(env.conf_dir().join(format!("{name}.conf"))).unwrap();
    assert!(conf.contains("MEMORY_MAX=96M\nCPU_QUOTA=150%\n") && !conf.contains("PIDS_MAX"), "{conf}");
    let out = env.run(["set-limits", &name, "--memory-max", "lots"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("'lots' is not a memory size"), "{}", stderr(&out));
    assert_eq!(env.run(["set-limits", &name]).status.code(), Some(2));

    // A guest allocating past its limit: the kernel kills the allocating
    // process inside the container; the container and the host go on.
    let hog = "b = b'x' * (300 << 20); print('survived')";
    let out = env.run(["run", &name, "--", "python3", "-c", hog]);
    assert_eq!(out.status.code(), Some(137), "killed by SIGKILL: {} {}", stdout(&out), stderr(&out));
    assert!(!stdout(&out).contains("survived"));
    let events = {
        let v1 = format!("/sys/fs/cgroup/memory/nixos-containers/{name}/memory.oom_control");
        let v2 = format!("/sys/fs/cgroup/nixos-containers/{name}/memory.events");
        std::fs::read_to_string(v1).or_else(|_| std::fs::read_to_string(v2)).unwrap()
    };
    let kills: u64 = events.lines().find_map(|l| l.strip_prefix("oom_kill ")).unwrap().parse().unwrap();
    assert!(kills >= 1, "{events}");
    assert_eq!(env.ok(["status", &name]), "up\n");
    assert_eq!(env.ok(["run", &name, "--", "echo", "still here"]), "still here\n");

    // Restarted, it gets the limits of its conf.
    env.ok(["restart", &name]);
    assert_eq!((memory(), cpu(), pids()), ((96u64 << 20).to_string(), "150000".into(), "max".into()));
    env.ok(["stop", &name]);
    let out = env.run(["set-limits", &name, "--cpu-quota", "infinity"]);
    assert!(stderr(&out).ends_with("processes no limit (from its next start)\n"), "{}", stderr(&out));
}

#[test]
fn info_and_list_columns_show_addresses_uptime_memory_limits_and_console() {
    let env = Env::new();
    let [up, down] = [env.name("up"), env.name("dn")];
    env.create(&up, &["--memory-max", "1G", "--auto-start"]);
    env.create(&down, &[]);
    env.ok(["start", &up]);
    let (v4, host4) = (format!("10.{}.1.2", env.pool), format!("10.{}.1.1", env.pool));

    let text = env.ok(["info", &up]);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
            .trim()
            .to_string()
    };
    assert_eq!(field("Name"), up);
    assert!(field("State").starts_with("up since 20"), "{text}");
    assert_eq!(field("IPv4"), format!("{v4} (host {host4})"));
    let ipv6 = field("IPv6");
    assert!(ipv6.starts_with("fd6e:6978:") && ipv6.contains("(host fd6e:6978:"), "{text}");
    assert_eq!(field("Generation"), "1");
    assert!(field("System").starts_with("/nix/store/"), "{text}");
    assert_eq!(field("Auto-start"), "yes");
    assert!(field("Processes").parse::<u32>().is_ok_and(|n| n >= 3), "{text}");
    assert!(field("Memory").ends_with('M'), "{text}");
    assert_eq!(field("Limits"), "memory 1G, cpu no limit, processes no limit");
    assert!(text.contains("\nConsole (last "), "{text}");

    let json: serde_json::Value = serde_json::from_str(&env.ok(["info", &up, "--json", "-n", "3"])).unwrap();
    assert_eq!(json["state"], "up");
    assert_eq!(json["ipv4"], v4.as_str());
    assert_eq!(json["host_ipv4"], host4.as_str());
    assert!(json["ipv6"].as_str().is_some_and(|a| a.starts_with("fd6e:6978:")), "{json}");
    assert!(json["started_at"].as_u64().is_some() && json["uptime_seconds"].as_u64().is_some(), "{json}");
    assert_eq!(json["limits"]["memory_max"], 1u64 << 30);
    assert_eq!(json["limits_in_force"]["memory_max"], 1u64 << 30);
    assert!(json["console"].as_array().is_some_and(|c| !c.is_empty() && c.len() <= 3), "{json}");

    let text = env.ok(["info", &down]);
    assert!(text.contains("State:      down\n") && !text.contains("Processes:"), "{text}");

    // Columns for scripts: tab-separated, no header; the plain pipe format
    // and list --json's old fields stay as they were.
    let rows = env.ok(["list", "-o", "name,state,ipv4,uptime,memory-max"]);
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split('\t').collect()).collect();
    // Sorted by name: "...-dn" first.
    assert_eq!(rows[0], [down.as_str(), "down", &format!("10.{}.2.2", env.pool), "-", "-"]);
    assert_eq!(rows[1][..3], [up.as_str(), "up", v4.as_str()]);
    assert!(rows[1][3].ends_with('s') && rows[1][4] == "1G", "{rows:?}");
    assert_eq!(env.ok(["list"]), format!("{down}\n{up}\n"));
    let out = env.run(["list", "-o", "name,colour"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown column 'colour' (known: name,state,address,ipv4,ipv6,"), "{}", stderr(&out));

    // At a terminal: a table with headers.
    let term = bash(&env);
    run_in(&term, "nixos-container list -o name,state,ipv6,processes,memory");
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 0, "{screen}");
    let header = screen.lines().find(|l| l.starts_with("NAME")).unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(header.split_whitespace().collect::<Vec<_>>(), ["NAME", "STATE", "IPV6", "PROCESSES", "MEMORY"]);
    let row = screen.lines().find(|l| l.starts_with(&down)).unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(row.split_whitespace().collect::<Vec<_>>()[3..], ["-", "-"]);
    env.ok(["stop", &up]);
}

#[test]
fn logs_show_the_console_and_the_journal_of_a_running_and_a_stopped_guest() {
    let env = Env::new();
    let name = env.name("log");
    env.create(&name, &[]);
    // journald keeps a persistent journal where /var/log/journal exists.
    std::fs::create_dir_all(env.root(&name).join("var/log/journal")).unwrap();
    env.ok(["start", &name]);

    let console = env.ok(["logs", &name]);
    assert!(!console.contains('\x1b') && !console.contains('\r'), "{console:?}");
    assert!(console.lines().count() > 3, "{console}");
    let tail = env.ok(["logs", &name, "-n", "2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    // (The guest may have printed more in between.)
    let later = env.ok(["logs", &name]);
    assert!(tail.lines().all(|l| later.lines().any(|k| k == l)), "{tail}\n---\n{later}");

    // -f shows what the guest prints on its console from then on, cleaned.
    let mut follow =
        KillOnDrop::spawn(env.command().args(["logs", &name, "-f", "-n", "0"]).stdout(std::process::Stdio::piped()));
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::io::BufReader::new(follow.take_stdout());
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in reader.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    env.ok(["run", &name, "--", "sh", "-c", "printf 'marker \\033[31mred\\033[0m\\n' > /dev/console"]);
    // Until it shows the marker (the guest may print other lines first).
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(std::time::Duration::from_secs(60)) {
        seen.push(line);
        if seen.last().is_some_and(|l| l == "marker red") {
            break;
        }
    }
    assert!(seen.iter().any(|l| l == "marker red"), "{seen:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(follow.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(follow.wait_timeout(std::time::Duration::from_secs(30)).is_some(), "logs -f did not end at SIGTERM");
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:?}");

    // The journal, through the running guest.
    env.ok(["run", &name, "--", "logger", "-t", "admintest", "hello from the guest"]);
    let found = wait_for(std::time::Duration::from_secs(60), || {
        let j = env.ok(["logs", &name, "--journal", "--", "-t", "admintest", "-o", "cat"]);
        j.contains("hello from the guest").then_some(j)
    });
    assert!(found.is_some(), "the guest's journal shows the message");
    env.ok(["run", &name, "--", "journalctl", "--flush"]);
    env.ok(["stop", &name]);

    // Stopped: from its files, by the host's journalctl as nobody.
    let out = env.run(["-v", "logs", &name, "--journal", "-n", "5", "--", "-t", "admintest", "-o", "cat"]);
    assert_eq!(stdout(&out), "hello from the guest\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("journal files of the guest as 'nobody'"), "{}", stderr(&out));

    // A guest pointing its journal directory at the host's gets nothing of it.
    let log = env.root(&name).join("var/log");
    std::fs::rename(log.join("journal"), env.base.join("moved-journal")).unwrap();
    std::os::unix::fs::symlink(env.base.join("moved-journal"), log.join("journal")).unwrap();
    let out = env.run(["logs", &name, "--journal"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("passes through a symbolic link or a mount: not followed"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn cp_copies_both_ways_keeping_modes_inside_the_root() {
    let env = Env::new();
    let name = started_container(&env, "cp");
    let src = env.base.join("site");
    std::fs::create_dir_all(src.join("css")).unwrap();
    std::fs::write(src.join("index.html"), "<h1>hi</h1>\n").unwrap();
    std::fs::write(src.join("css/a.css"), "body{}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(src.join("index.html"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::chown(src.join("css/a.css"), Some(1234), Some(2345)).unwrap();

    // In: into an existing directory, under the source's name; owned by
    // the guest's root, or with -a by the source's numbers.
    let out = env.run(["cp", src.to_str().unwrap(), &format!("{name}:/root")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("copied 2 files (19B), 2 directories to {name}:/root\n"));
    let stat = |path: &str| env.ok(["run", &name, "--", "stat", "-c", "%a %u:%g", path]);
    assert_eq!(stat("/root/site/index.html"), "640 0:0\n");
    assert_eq!(stat("/root/site/css/a.css"), "644 0:0\n");
    assert_eq!(env.ok(["run", &name, "--", "cat", "/root/site/index.html"]), "<h1>hi</h1>\n");
    env.ok(["cp", "-a", src.join("css/a.css").to_str().unwrap(), &format!("{name}:/root/b.css")]);
    assert_eq!(stat("/root/b.css"), "644 1234:2345\n");

    // Out: a guest's setuid file arrives without setuid, owned by the caller.
    env.ok(["run", &name, "--", "sh", "-c", "echo tool > /root/tool && chmod 4755 /root/tool"]);
    let back = env.base.join("back");
    env.ok(["cp", &format!("{name}:/root/tool"), back.to_str().unwrap()]);
    let m = std::fs::metadata(&back).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((m.mode() & 0o7777, m.uid(), std::fs::read_to_string(&back).unwrap()), (0o755, 0, "tool\n".into()));
    env.ok(["cp", &format!("{name}:/root/site/."), env.base.join("copy").to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(env.base.join("copy/css/a.css")).unwrap(), "body{}\n");

    // A guest link towards a host directory resolves inside the root.
    let host_dir = env.base.join("host-only");
    std::fs::create_dir_all(&host_dir).unwrap();
    env.ok(["run", &name, "--", "ln", "-s", host_dir.to_str().unwrap(), "/root/out"]);
    let out = env.run(["cp", src.join("index.html").to_str().unwrap(), &format!("{name}:/root/out/x")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(std::fs::read_dir(&host_dir).unwrap().count(), 0, "nothing written on the host");
    std::fs::write(host_dir.join("secret"), "host").unwrap();
    let out = env.run(["cp", &format!("{name}:/root/out/secret"), env.base.join("stolen").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!env.base.join("stolen").exists());

    // Usage: one side must be a container.
    let out = env.run(["cp", "/etc/hostname", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs NAME:PATH on one side"), "{}", stderr(&out));
    let out = env.run(["cp", "ghost:/x", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(3));
    env.ok(["stop", &name]);
}

fn started_container(env: &Env, short: &str) -> String {
    let name = env.name(short);
    env.create(&name, &[]);
    env.ok(["start", &name]);
    name
}

#[test]
fn a_nix_error_shows_once_at_a_terminal_without_flags_we_lack() {
    let env = Env::new();
    let name = env.name("nixerr");
    let term = bash(&env);
    let nixos = nixos_path();
    let assertion = fixture("failing-assertion.nix");
    run_in(
        &term,
        &format!(
            "nixos-container create {name} --nixos-path {} --config-file {}",
            nixos.display(),
            assertion.display()
        ),
    );
    let (code, screen) = exit_status(&term);
    assert_eq!(code, 1, "{screen}");
    assert_eq!(screen.matches("this container must be called nope").count(), 1, "{screen}");
    assert!(!screen.contains("show-trace"), "{screen}");
    assert!(screen.contains("error: nix-env failed (exit status: 1); its error is above"), "{screen}");
}

/// Logs in as root with `password` at the container's login prompt in `t`.
fn log_in(t: &Tmux, env: &Env, name: &str, password: &str) {
    t.clear_screen();
    t.line(&format!("{}; echo CLI-EXITED-$?", env.shell_command(&["login", name])));
    t.wait_text(&format!("Connected to container '{name}'. Press ^] three times within 1s to disconnect."));
    t.wait_text("login:");
    t.line("root");
    t.wait_text("Password:");
    t.line(password);
    // login flushes what was typed ahead: wait for the shell's prompt.
    t.wait_text(":~]#");
}

/// Gives the guest's root a password (through `run ... chpasswd`).
fn set_root_password(env: &Env, name: &str, password: &str) {
    use std::io::Write as _;
    let mut chpasswd = env.command();
    chpasswd.args(["run", name, "--", "chpasswd"]).stdin(std::process::Stdio::piped());
    let mut child = chpasswd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(format!("root:{password}\n").as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn login_is_on_a_par_with_root_login() {
    let env = Env::new();
    let name = started_container(&env, "login");
    set_root_password(&env, &name, "s3cret-pw");

    let t = Tmux::bash(&env, 91, 27);
    t.line(&format!("cd {}; stty -g > before.stty", env.base.display()));
    log_in(&t, &env, &name, "s3cret-pw");
    // The caller's window size, and its changes.
    t.line("echo SIZE=$(stty size)=");
    t.wait_text("SIZE=27 91=");
    t.resize(100, 30);
    let resized = wait_for(std::time::Duration::from_secs(30), || {
        t.clear_screen();
        t.line("echo SIZE=$(stty size)=");
        let s = t.wait_screen("stty's answer", |s| s.lines().any(|l| l.starts_with("SIZE=")));
        s.contains("SIZE=30 100=").then_some(())
    });
    assert!(resized.is_some(), "the guest's terminal never became 100x30:\n{}", t.screen());

    // ^] three times within a second leaves, whatever runs inside.
    t.line("sleep 300");
    // In one send-keys: three tmux clients, one per press, may take more
    // than the second between them on a busy machine.
    t.press_keys(&["C-]", "C-]", "C-]"]);
    let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
    assert!(screen.contains("disconnected (^] pressed three times)"), "{screen}");
    assert!(screen.lines().any(|l| l.starts_with("CLI-EXITED-1")), "{screen}");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo RESTORED-AFTER-ESCAPE");
    t.wait_text("RESTORED-AFTER-ESCAPE");

    // The container stopping under it: said on a line of its own, non-zero.
    log_in(&t, &env, &name, "s3cret-pw");
    env.ok(["stop", &name]);
    let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
    assert!(
        screen.lines().any(|l| l == format!("error: container '{name}' was stopped; the session ended")),
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.starts_with("CLI-EXITED-1")), "the prompt on a line of its own:\n{screen}");
    t.line("stty -g > after.stty; cmp before.stty after.stty && echo RESTORED-AFTER-STOP");
    t.wait_text("RESTORED-AFTER-STOP");

    // root-login says so too.
    env.ok(["start", &name]);
    t.clear_screen();
    t.line(&format!("{}; echo CLI-EXITED-$?", env.shell_command(&["root-login", &name])));
    t.line("echo READY-$((6*7))");
    t.wait_text("READY-42");
    env.ok(["stop", &name]);
    let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
    assert!(
        screen.lines().any(|l| l == format!("error: container '{name}' was stopped; the session ended")),
        "{screen}"
    );
}

#[test]
fn errors_of_a_raw_session_print_on_a_restored_terminal() {
    let env = Env::new();
    let name = started_container(&env, "raw");
    let t = Tmux::bash(&env, 100, 30);
    t.line(&format!("cd {}; stty -g > before.stty", env.base.display()));
    for (args, says) in [
        (vec!["run", "-t", "--user", "nosuchuser", &name, "--", "true"], "nosuchuser"),
        (vec!["run", "-t", "--cwd", "/nonexistent-dir", &name, "--", "true"], "nonexistent-dir"),
    ] {
        t.clear_screen();
        t.line(&format!("{}; echo CLI-EXITED-$?", env.shell_command(&args)));
        let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
        // No staircase: the error and the next line start at the left edge.
        // (The echoed command line wraps and names `says` too: look for the
        // error by its start.)
        assert!(screen.lines().any(|l| l.starts_with("error: ") && l.contains(says)), "{screen}");
        assert!(screen.lines().any(|l| l.starts_with("CLI-EXITED-1")), "{screen}");
        t.line("stty -g > after.stty; cmp before.stty after.stty && echo RESTORED");
        t.wait_text("RESTORED");
    }
    // The container going away under `run -t`.
    t.clear_screen();
    t.line(&format!("{}; echo CLI-EXITED-$?", env.shell_command(&["run", "-t", &name, "--", "sleep", "300"])));
    // Once the command runs in the guest, not before `run` got there.
    wait_for(std::time::Duration::from_secs(60), || {
        processes_of(&name)
            .into_iter()
            .find(|p| std::fs::read(format!("/proc/{p}/cmdline")).is_ok_and(|c| c == b"sleep\x00300\x00"))
    })
    .expect("sleep 300 never ran in the guest");
    env.ok(["terminate", &name]);
    let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
    assert!(
        screen.lines().any(|l| l == format!("error: container '{name}' was stopped; the session ended")),
        "{screen}"
    );
    assert!(screen.lines().any(|l| l.starts_with("CLI-EXITED-1")), "{screen}");
}

#[test]
fn cp_owners_follow_the_guests_numbering_with_private_users() {
    let env = Env::new();
    let name = env.name("cpu");
    env.create(&name, &["--private-users"]);
    env.ok(["start", &name]);
    let file = env.base.join("f");
    std::fs::write(&file, "x").unwrap();
    std::os::unix::fs::chown(&file, Some(1234), Some(2345)).unwrap();
    env.ok(["cp", file.to_str().unwrap(), &format!("{name}:/root/plain")]);
    env.ok(["cp", "-a", file.to_str().unwrap(), &format!("{name}:/root/kept")]);
    let stat = |path: &str| env.ok(["run", &name, "--", "stat", "-c", "%u:%g", path]);
    assert_eq!((stat("/root/plain"), stat("/root/kept")), ("0:0\n".into(), "1234:2345\n".into()));
    // Out with -a: the guest's numbers, not the host's shifted ones.
    let back = env.base.join("back");
    env.ok(["cp", "-a", &format!("{name}:/root/kept"), back.to_str().unwrap()]);
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(&back).unwrap();
    assert_eq!((m.uid(), m.gid()), (1234, 2345));
    env.ok(["stop", &name]);
}

#[test]
fn login_without_the_agent_uses_the_login_socket() {
    let env = Env::new();
    let name = started_container(&env, "lsock");
    set_root_password(&env, &name, "s3cret-pw");

    let t = Tmux::bash(&env, 91, 27);
    t.line(&format!("NIXOS_CONTAINER_AGENT=off {}; echo CLI-EXITED-$?", env.shell_command(&["-v", "login", &name])));
    t.wait_text("using its login socket");
    t.wait_text("login:");
    t.line("root");
    t.wait_text("Password:");
    t.line("s3cret-pw");
    t.wait_text(":~]#");
    t.line("exit");
    let screen = t.wait_screen("the CLI's exit", |s| s.lines().any(|l| l.starts_with("CLI-EXITED-")));
    assert!(screen.lines().any(|l| l.starts_with("CLI-EXITED-0")), "{screen}");
    env.ok(["stop", &name]);
}

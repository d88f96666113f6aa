use std::fmt::Write as _;
use std::io::Write;

use crate::cli::InfoArgs;
use crate::commands::Ctx;
use crate::commands::set_limits::describe;
use nixos_container::cgroup;
use nixos_container::container::{Container, State};
use nixos_container::error::{IoContext, Result};
use nixos_container::info::{Details, details, format_duration, format_size, format_time};

pub fn run(ctx: &Ctx, args: &InfoArgs) -> Result<i32> {
    let c = Container::open(&ctx.paths, &args.name)?;
    let d = details(&c, cgroup::host_hierarchies()?);
    let console = console_lines(&c, args.lines);
    let text = if args.json {
        #[derive(serde::Serialize)]
        struct WithConsole<'a> {
            #[serde(flatten)]
            details: &'a Details,
            console: &'a [String],
        }
        let mut json =
            serde_json::to_string_pretty(&WithConsole { details: &d, console: &console }).expect("details serialise");
        json.push('\n');
        json
    } else {
        render(&d, &console)
    };
    std::io::stdout().write_all(text.as_bytes()).context(|| "writing the details".into())?;
    Ok(0)
}

/// The console's last `n` lines, cleaned of terminal controls: from the
/// unit's journal where containers are systemd units, else from the own
/// supervisor's console log.
fn console_lines(c: &Container, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let tail = if nixos_container::supervision::units_run_containers() {
        let mut out = Vec::new();
        // No journal (the unit never ran): no lines, as with no console log.
        let _ = nixos_container::unit::console(&c.name, Some(n), false, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    } else {
        nixos_container::container::log_tail(&c.paths.console_log(), n)
    };
    tail.lines().map(str::to_string).collect()
}

/// `Key: value` lines, as `incus info` and `machinectl status` print them.
pub fn render(d: &Details, console: &[String]) -> String {
    let s = &d.summary;
    let mut out = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{:<12}{value}", format!("{key}:"));
    };
    line("Name", s.name.clone());
    let state = match (s.state, d.started_at, d.uptime_seconds) {
        (State::Up, Some(at), Some(up)) => format!("up since {} ({})", format_time(at), format_duration(up)),
        (state, ..) => state.as_str().to_string(),
    };
    line("State", state);
    let addr = |a: &Option<String>, host: &Option<String>| match (a, host) {
        (Some(a), Some(h)) => format!("{a} (host {h})"),
        (Some(a), None) => a.clone(),
        (None, _) => "-".into(),
    };
    line("IPv4", addr(&d.ipv4, &d.host_ipv4));
    line("IPv6", addr(&d.ipv6, &d.host_ipv6));
    line("Generation", s.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()));
    line("System", d.system.clone().unwrap_or_else(|| "-".into()));
    line("Auto-start", if s.auto_start { "yes" } else { "no" }.into());
    if s.state == State::Up {
        line("Processes", s.processes.map(|p| p.to_string()).unwrap_or_else(|| "-".into()));
        let mut memory = s.memory_bytes.map(format_size).unwrap_or_else(|| "-".into());
        if let Some(n) = d.oom_kills.filter(|n| *n > 0) {
            let _ = write!(memory, " ({n} OOM kill{})", if n == 1 { "" } else { "s" });
        }
        line("Memory", memory);
    }
    let limits = match d.limits_in_force {
        Some(now) if now != d.limits => {
            format!("{} (in force; the conf says {}: restart to apply)", describe(&now), describe(&d.limits))
        }
        Some(now) => describe(&now),
        None => describe(&d.limits),
    };
    line("Limits", limits);
    if !console.is_empty() {
        let _ = writeln!(out, "\nConsole (last {} lines):", console.len());
        for l in console {
            let _ = writeln!(out, "  {l}");
        }
    }
    out
}

//! The man pages in `man/`, generated from the clap definitions:
//! `nixos-container.1` and one `nixos-container-COMMAND.1` per subcommand.
//! `tests/generated.rs` checks that the files match and rewrites them when
//! asked to (see README).

use clap::CommandFactory;
use clap_mangen::Man;

use crate::cli::{Cli, OTHER_ENV_VARS};
use nixos_container::error::exit;
use nixos_container::paths::ENV_VARS;

/// Escapes text for roff: backslashes, and a leading '.' or '\''.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') { format!("\\&{s}") } else { s }
}

/// `passes_status`: the sentence for commands that exit with the status of
/// what they ran in the guest (run, root-login), if the page needs one.
fn exit_status_section(out: &mut Vec<u8>, passes_status: Option<&str>) {
    out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    for (code, _, meaning) in exit::TABLE {
        out.extend_from_slice(format!(".TP\n\\fB{code}\\fR\n{}\n", roff_text(meaning)).as_bytes());
    }
    if let Some(sentence) = passes_status {
        out.extend_from_slice(format!(".PP\n{sentence}\n").as_bytes());
    }
}

fn examples_section(out: &mut Vec<u8>, command: &str) {
    let examples = crate::examples::of(command);
    if examples.is_empty() {
        return;
    }
    out.extend_from_slice(b".SH EXAMPLES\n");
    for (line, what) in examples {
        out.extend_from_slice(format!(".TP\n\\fB{}\\fR\n{}\n", roff_text(line), roff_text(what)).as_bytes());
    }
}

fn environment_section(out: &mut Vec<u8>) {
    out.extend_from_slice(b".SH ENVIRONMENT\n");
    for (var, default) in ENV_VARS {
        out.extend_from_slice(format!(".TP\n\\fB{var}\\fR\nDefault: {}\n", roff_text(default)).as_bytes());
    }
    for (var, _, meaning) in OTHER_ENV_VARS {
        out.extend_from_slice(format!(".TP\n\\fB{var}\\fR\n{}\n", roff_text(meaning)).as_bytes());
    }
}

/// clap_mangen's SYNOPSIS with each option's value added (it shows
/// `[--timeout]` where `--timeout SECONDS` is meant).
fn synopsis_section(man: &Man, cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut section = Vec::new();
    man.render_synopsis_section(&mut section)?;
    let mut section = String::from_utf8_lossy(&section).into_owned();
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set() && !a.is_positional()) {
        let (Some(long), Some(range)) = (arg.get_long(), arg.get_num_args()) else { continue };
        if !range.takes_values() {
            continue;
        }
        let names = arg.get_value_names().map(|n| n.join(" ")).unwrap_or_else(|| arg.get_id().to_string());
        let value = format!("\\fI{}\\fR", roff_text(&names));
        let value = if range.min_values() == 0 { format!("[{value}]") } else { value };
        let flag = format!("\\fB{}\\fR", roff_text(&format!("--{long}")));
        let close = if arg.is_required_set() { '>' } else { ']' };
        section = section.replacen(&format!("{flag}{close}"), &format!("{flag} {value}{close}"), 1);
    }
    out.extend_from_slice(section.as_bytes());
    Ok(())
}

fn render(man: &Man, cmd: &clap::Command, top: bool) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    synopsis_section(man, cmd, &mut out)?;
    man.render_description_section(&mut out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut out)?;
    }
    if top {
        man.render_subcommands_section(&mut out)?;
    }
    let passes_status = match cmd.get_name() {
        _ if top => Some(
            "Otherwise \\fBrun\\fR and \\fBroot\\-login\\fR exit with the status of the command or shell they ran.",
        ),
        "run" => Some("Otherwise \\fBrun\\fR exits with the status of the command it ran."),
        "root-login" => Some("Otherwise \\fBroot\\-login\\fR exits with the status of the shell it ran."),
        _ => None,
    };
    examples_section(&mut out, if top { "nixos-container" } else { cmd.get_name() });
    exit_status_section(&mut out, passes_status);
    if top {
        environment_section(&mut out);
    } else {
        out.extend_from_slice(b".SH \"SEE ALSO\"\n\\fBnixos\\-container\\fR(1)\n");
    }
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Every page as (file name, content).
pub fn pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut pages = Vec::new();
    let top = Man::new(cmd.clone());
    pages.push((top.get_filename(), render(&top, &cmd, true)?));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let man = Man::new(sub.clone());
        pages.push((man.get_filename(), render(&man, sub, false)?));
    }
    Ok(pages)
}

/// Writes every page into `dir` (`__man-pages DIR`), which must exist.
pub fn write(dir: &std::path::Path) -> nixos_container::error::Result<()> {
    use nixos_container::error::IoContext;
    for (name, content) in pages().context(|| "rendering the man pages".into())? {
        let path = dir.join(&name);
        std::fs::write(&path, content).context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_per_visible_subcommand() {
        let names: Vec<String> = pages().unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "nixos-container.1");
        assert!(names.contains(&"nixos-container-start.1".to_string()), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("supervise") || n.contains("help")), "{names:?}");
        for (name, page) in pages().unwrap() {
            assert!(String::from_utf8_lossy(&page).contains(".SH EXAMPLES\n"), "{name} has no EXAMPLES");
        }
    }

    /// The man page and `--help` list the same variables and statuses,
    /// from the one table of each.
    #[test]
    fn every_variable_and_exit_status_is_documented_in_both_places() {
        let top = String::from_utf8(pages().unwrap().remove(0).1).unwrap();
        let help = crate::cli::after_help();
        let env = top.split(".SH ENVIRONMENT\n").nth(1).expect("an ENVIRONMENT section");
        for var in ENV_VARS.iter().map(|(v, _)| *v).chain(OTHER_ENV_VARS.iter().map(|(v, _, _)| *v)) {
            assert!(env.contains(&format!("\\fB{var}\\fR")), "{var} is missing from the man page");
        }
        for (var, form, _) in OTHER_ENV_VARS.iter().filter(|(_, form, _)| !form.is_empty()) {
            assert!(help.contains(&format!("{var} ({form})")), "{var} is missing from --help:\n{help}");
        }
        for (var, _) in ENV_VARS {
            assert!(help.contains(var), "{var} is missing from --help:\n{help}");
        }
        let status = top.split(".SH \"EXIT STATUS\"\n").nth(1).expect("an EXIT STATUS section");
        for (code, short, _) in exit::TABLE {
            assert!(status.contains(&format!("\\fB{code}\\fR")), "{code} is missing from the man page");
            assert!(help.contains(&format!("{code} {short}")), "{code} is missing from --help:\n{help}");
        }
    }

    #[test]
    fn the_synopsis_shows_option_values() {
        let pages = pages().unwrap();
        let page = |name: &str| String::from_utf8(pages.iter().find(|(n, _)| n == name).unwrap().1.clone()).unwrap();
        let synopsis =
            |name: &str| page(name).split(".SH SYNOPSIS\n").nth(1).unwrap().lines().next().unwrap().to_string();
        assert!(synopsis("nixos-container-start.1").contains("[\\fB\\-\\-timeout\\fR \\fISECONDS\\fR]"));
        assert!(synopsis("nixos-container-create.1").contains("[\\fB\\-\\-private\\-users\\fR [\\fIMODE\\fR]]"));
        assert!(synopsis("nixos-container-create.1").contains("[\\fB\\-\\-auto\\-start\\fR]"));
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text(".x a-b \\"), "\\&.x a\\-b \\e");
    }
}

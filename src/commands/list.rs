use std::io::{IsTerminal, Write};

use crate::cli::ListArgs;
use crate::commands::Ctx;
use nixos_container::cgroup;
use nixos_container::container::{Container, Summary};
use nixos_container::error::{IoContext, Result};
use nixos_container::info::{COLUMNS, Columns, cell, details};

pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<i32> {
    let names = Container::list(&ctx.paths)?;
    let table = std::io::stdout().is_terminal();
    if !args.json && !table && args.format.is_none() {
        // The anchor's format, for scripts: nothing but the names.
        let mut out = std::io::stdout().lock();
        for name in &names {
            writeln!(out, "{name}").context(|| "writing the list".into())?;
        }
        return Ok(0);
    }
    let hierarchies = cgroup::host_hierarchies()?;
    // The details (a state file, a few more cgroup files) only when asked for.
    let detailed = args.json || args.format.is_some();
    let mut rows = Vec::with_capacity(names.len());
    let mut full = Vec::new();
    for name in names {
        match Container::open(&ctx.paths, &name) {
            Ok(c) if detailed => full.push(details(&c, hierarchies)),
            Ok(c) => rows.push(c.summary(hierarchies)),
            // One broken conf must not hide the other containers.
            Err(e) => tracing::warn!("skipping '{name}': {e}"),
        }
    }
    if rows.is_empty() && full.is_empty() && !args.json {
        ctx.note("no containers (create one with 'nixos-container create NAME')");
        return Ok(0);
    }
    let text = if args.json {
        let mut json = serde_json::to_string_pretty(&full).expect("details serialise");
        json.push('\n');
        json
    } else if let Some(Columns(columns)) = &args.format {
        let cells: Vec<Vec<String>> = full.iter().map(|d| columns.iter().map(|c| cell(d, c)).collect()).collect();
        if table {
            let header: Vec<String> = columns
                .iter()
                .map(|c| COLUMNS.iter().find(|(n, _)| n == c).map(|(_, h)| h.to_string()).unwrap_or_default())
                .collect();
            align(&header, &cells)
        } else {
            // For scripts: no header, one tab between cells.
            cells.iter().map(|row| row.join("\t") + "\n").collect()
        }
    } else {
        render_table(&rows)
    };
    std::io::stdout().write_all(text.as_bytes()).context(|| "writing the list".into())?;
    Ok(0)
}

/// Left-aligned columns separated by two spaces.
pub fn render_table(rows: &[Summary]) -> String {
    let header: Vec<String> =
        ["NAME", "STATE", "ADDRESS", "GENERATION", "AUTO-START"].iter().map(|h| h.to_string()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.state.as_str().to_string(),
                r.address.clone().unwrap_or_else(|| "-".into()),
                r.generation.map(|g| g.to_string()).unwrap_or_else(|| "-".into()),
                if r.auto_start { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    align(&header, &cells)
}

/// A header and rows as left-aligned columns separated by two spaces.
fn align(header: &[String], cells: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |row: &[&str]| {
        let mut l = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                l.push_str(cell);
            } else {
                l.push_str(&format!("{cell:w$}  "));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for row in cells {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use nixos_container::container::State;

    #[test]
    fn the_table_aligns_its_columns() {
        let rows = [
            Summary::example(),
            Summary {
                name: "database".into(),
                state: State::Down,
                address: None,
                generation: None,
                auto_start: false,
                processes: None,
                memory_bytes: None,
            },
        ];
        assert_eq!(
            render_table(&rows),
            "NAME      STATE  ADDRESS     GENERATION  AUTO-START\n\
             web       up     10.233.1.2  3           yes\n\
             database  down   -           -           no\n"
        );
    }
}

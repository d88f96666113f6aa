//! A spinner on stderr while a long operation waits, for a person at a
//! terminal only: scripts (no terminal), --quiet and --verbose (whose
//! messages would interleave with it) get none.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::commands::Ctx;

/// Shows `msg` with a spinner until the returned value is dropped.
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    pub fn new(ctx: &Ctx, msg: String) -> Spinner {
        if !ctx.interactive || ctx.quiet || ctx.verbose > 0 {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner().with_message(msg);
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        // Leaves no trace: the command's result speaks for itself.
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

//! Progress of long offline work (`matrix`, `whatif` on big dumps) on stderr: a bar when
//! stderr is a terminal, nothing otherwise (a pipe or a CI log gets only the summary line).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `total` units of work, hidden when stderr is not a terminal or with `--quiet`.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn new(total: usize, what: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self { bar: None };
        }
        let bar = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix} [{bar:25}] {percent:>3}% {pos}/{len} rows, {elapsed}",
        )
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(what.to_string());
        Self { bar: Some(bar) }
    }

    /// A bar that shows nothing.
    pub fn hidden() -> Self {
        Self { bar: None }
    }

    pub fn set(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    /// Removes the bar, so the summary line that follows stands alone.
    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

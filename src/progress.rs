//! Progress on stderr: a spinner per stage that takes more than a moment, and a line with its
//! time when it ends. `-q` silences it.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports stages as they run and keeps their timings.
pub struct Progress {
    quiet: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress { quiet }
    }

    /// Runs `f` as a named stage; returns its result and seconds.
    pub fn stage<T>(&self, name: &str, f: impl FnOnce() -> T) -> (T, f64) {
        let start = Instant::now();
        let bar = (!self.quiet).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.set_message(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let out = f();
        let secs = start.elapsed().as_secs_f64();
        if let Some(b) = bar {
            b.finish_and_clear();
            eprintln!("  {name:<28} {secs:>8.2} s");
        }
        (out, secs)
    }

    /// A line of information (counts before an expensive step, for example).
    pub fn note(&self, msg: &str) {
        if !self.quiet {
            eprintln!("  {msg}");
        }
    }
}

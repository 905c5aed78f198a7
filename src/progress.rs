//! Progress on stderr: a spinner per stage that takes more than a moment, and a line with its
//! time when it ends. `-q` silences it.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports stages as they run and keeps their timings.
pub struct Progress {
    quiet: bool,
    spinner: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Self {
        Progress {
            quiet,
            spinner: true,
        }
    }

    /// The same, without spinners: for stages that run beside others, whose spinner holds the
    /// line.
    pub fn beside(&self) -> Self {
        Progress {
            quiet: self.quiet,
            spinner: false,
        }
    }

    /// Runs `f` as a named stage; returns its result and seconds.
    pub fn stage<T>(&self, name: &str, f: impl FnOnce() -> T) -> (T, f64) {
        let start = Instant::now();
        let cpu = cpu_seconds();
        let bar = (!self.quiet && self.spinner).then(|| {
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
        }
        if !self.quiet {
            // CPU time of the whole process over the stage: how many cores it kept busy.
            let cpu = cpu_seconds() - cpu;
            eprintln!("  {name:<34} {secs:>6.2} s   cpu {cpu:>6.2} s");
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

/// User and system CPU seconds the process has used so far, all threads together.
pub fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a `rusage` into the pointer it is given and nothing else.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } == 0;
    if !ok {
        return 0.0;
    }
    // SAFETY: zero-initialised, then filled by getrusage.
    let u = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

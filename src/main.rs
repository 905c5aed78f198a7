//! The `yiku` command line: `run`, `demo`, `generate`, `eval`, `export`, `explain`, `report`.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// yiku (一库): matches and deduplicates person and enterprise records across departments
/// into one master index.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    /// No progress on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a job file: sources in, master index out.
    Run(cmd::run::RunArgs),
    /// Run the bundled demo job on datasets/ and write out/demo.
    Demo(cmd::demo::DemoArgs),
    /// Write the whole index of a run (a delta night writes only its changes).
    Export(cmd::export::ExportArgs),
    /// Evaluate a run's master index against a truth file.
    Eval(cmd::eval::EvalArgs),
    /// Generate departmental person and enterprise data with ground truth.
    Generate(cmd::generate::GenerateArgs),
    /// Explain the match weight of two records of a run (SOURCE:ID SOURCE:ID).
    Explain(cmd::explain::ExplainArgs),
    /// (Re)write a run's report.html, optionally with a truth file or personal data shown.
    Report(cmd::report::ReportArgs),
}

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly when the reader goes, as command-line
    // tools do, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restores the default action of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Parsing the arguments starts no thread: the program may still start itself again.
    let input_bytes = match &cli.command {
        Command::Run(a) => cmd::run::input_bytes(&a.job),
        _ => None,
    };
    if yiku::mem::huge_pages_wanted(input_bytes) {
        yiku::mem::with_huge_pages();
    }
    yiku::mem::reuse_freed_blocks();
    let result = match &cli.command {
        Command::Run(a) => cmd::run::run(a, cli.quiet),
        Command::Demo(a) => cmd::demo::run(a, cli.quiet),
        Command::Eval(a) => cmd::eval::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Generate(a) => cmd::generate::run(a),
        Command::Explain(a) => cmd::explain::run(a),
        Command::Report(a) => cmd::report::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

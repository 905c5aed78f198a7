//! One file per subcommand.

pub mod demo;
pub mod eval;
pub mod export;
pub mod explain;
pub mod generate;
pub mod report;
pub mod run;

//! One file per subcommand.

pub mod demo;
pub mod eval;
pub mod generate;
pub mod run;

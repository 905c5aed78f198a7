//! The one integration-test binary (every extra binary would link Arrow and Parquet again).

mod common;

mod bad_input;
mod delta;
mod demo;
mod determinism;
mod febrl;
mod identifiers;
mod report;

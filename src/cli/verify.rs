//! `xaa-broker audit verify`: check every chain against its signed
//! checkpoints, from audit files, Redis, or a running broker.
//!
//! Owns: reading the sources and printing the report; the checks themselves
//! are pure (`crate::chain_check`).
//! Must never: print a record's content beyond its id, seq and hashes.

use std::process::ExitCode;

/// Where the chains to check come from.
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {}

pub fn run(_args: VerifyArgs) -> ExitCode {
    eprintln!("error: audit verify is not built yet");
    ExitCode::from(2)
}

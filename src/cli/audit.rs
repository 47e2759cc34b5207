//! `xaa-broker audit trace` and `audit search`: the auditor's view of a
//! running broker, through its audit API.
//!
//! Owns: the HTTP calls to `/audit/trace` and `/audit/records`, and drawing
//! their answers in a terminal.
//! Must never: print a credential, or take one from anywhere but the flags
//! and environment variables documented here.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct TraceArgs {}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {}

pub fn trace(_args: TraceArgs) -> ExitCode {
    ExitCode::from(2)
}

pub fn search(_args: SearchArgs) -> ExitCode {
    ExitCode::from(2)
}

//! `cargo run --example agent`: the agent of the examples, once: signs
//! alice in at the dev IdP, exchanges her ID token at the broker as
//! `triage-agent` for a token for the MCP server, then, as an `rmcp` client,
//! calls the read tool (printing what the logs API saw: the user, the act
//! chain, the txn) and the destructive tool (printing the refusal).
//! Defaults fit `cargo run -- serve --dev` with `logs_api` and `mcp_server`
//! running; see `--help` and examples/README.md.
//!
//! Owns: the command line and the exit code.
//! Must never: hold the agent's logic (that is `common/agent.rs`, which the
//! demo runs in process too).

#[path = "common/agent.rs"]
mod agent;
#[path = "common/logging.rs"]
mod logging;

use std::process::ExitCode;

use clap::Parser;

/// The agent of the xaa-broker examples.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: agent::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("warn");
    let cli = Cli::parse();
    match agent::run(&cli.settings).await {
        Ok(outcome) => {
            println!(
                "[agent] done: txn {} for {} (vouched for by {}), act {}, trace {}, the destructive call refused by {}",
                outcome.txn,
                outcome.user,
                outcome.user_issuer,
                outcome.act.join(" ← "),
                outcome.trace_id,
                outcome.refusal_rule
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

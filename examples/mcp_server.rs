//! `cargo run --example mcp_server`: the logs MCP server of the examples,
//! alone: a real MCP server (`rmcp`, streamable HTTP) behind the broker,
//! with a read tool that calls the logs API with a hop token and a
//! destructive tool refused to agents. Defaults fit
//! `cargo run -- serve --dev` and `cargo run --example logs_api`; see
//! `--help` and examples/README.md.
//!
//! Owns: the command line and the process: flags, binding, Ctrl-C.
//! Must never: hold the server's logic (that is `common/mcp_server.rs` and
//! `common/mcp_tools.rs`, which the demo runs in process too).

#[path = "common/logging.rs"]
mod logging;
#[path = "common/mcp_server.rs"]
mod mcp_server;
#[path = "common/mcp_tools.rs"]
mod mcp_tools;
#[path = "common/principal_json.rs"]
mod principal_json;

use std::process::ExitCode;

use clap::Parser;

/// The logs MCP server of the xaa-broker examples.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: mcp_server::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("info");
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("mcp_server: cannot listen on {}: {e}", cli.settings.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!(
            "mcp_server: listening on {}{} (resource {})",
            xaa_broker::dev::issuer_for(addr),
            mcp_server::MCP_PATH,
            cli.settings.resource
        );
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match mcp_server::serve(listener, &cli.settings, stop).await {
        Ok(stats) => {
            eprintln!(
                "mcp_server: audit reports sent {}, dropped {}",
                stats.sent, stats.dropped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mcp_server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

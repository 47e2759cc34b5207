//! `cargo run --example mcp_server`: the logs MCP server of the examples,
//! alone: a real MCP server (`rmcp`, streamable HTTP) behind the broker,
//! with a read tool that calls the logs API with a hop token and a
//! destructive tool refused to agents. Defaults fit
//! `cargo run -- serve --dev` and `cargo run --example logs_api`; see
//! `--help` and examples/README.md.
//!
//! Owns: the command line (flags and environment).
//! Must never: hold the server's logic (that is `common/mcp_server.rs` and
//! `common/mcp_tools.rs`, which the demo runs in process too).

#[path = "common/base_url.rs"]
mod base_url;
#[path = "common/logging.rs"]
mod logging;
#[path = "common/mcp_server.rs"]
mod mcp_server;
#[path = "common/mcp_tools.rs"]
mod mcp_tools;
#[path = "common/principal_json.rs"]
mod principal_json;
#[path = "common/process.rs"]
mod process;

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
    let settings = &cli.settings;
    let served = async {
        let (listener, base) = process::listen(settings.listen).await?;
        println!(
            "mcp_server: listening on {base}{} (resource {})",
            mcp_server::MCP_PATH,
            settings.resource
        );
        let stats = mcp_server::serve(listener, settings, process::ctrl_c()).await?;
        eprintln!(
            "mcp_server: audit reports sent {}, dropped {}",
            stats.sent, stats.dropped
        );
        Ok(())
    };
    process::exit("mcp_server", served.await)
}

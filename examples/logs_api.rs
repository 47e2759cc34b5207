//! `cargo run --example logs_api`: the downstream API of the examples,
//! alone. It accepts only the broker's hop tokens for its own resource and
//! answers `GET /logs` with what the token says (user, act chain, txn,
//! scopes, client). Defaults fit `cargo run -- serve --dev`; see
//! `--help` and examples/README.md.
//!
//! Owns: the command line and the process: flags, binding, Ctrl-C.
//! Must never: hold the API's logic (that is `common/logs_api.rs`, which the
//! demo runs in process too).

#[path = "common/logging.rs"]
mod logging;
#[path = "common/logs_api.rs"]
mod logs_api;
#[path = "common/principal_json.rs"]
mod principal_json;

use std::process::ExitCode;

use clap::Parser;

/// The logs API of the xaa-broker examples.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    settings: logs_api::Settings,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("info");
    let cli = Cli::parse();
    let listener = match tokio::net::TcpListener::bind(cli.settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("logs_api: cannot listen on {}: {e}", cli.settings.listen);
            return ExitCode::FAILURE;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        println!("logs_api: listening on {}/logs", xaa_broker::dev::issuer_for(addr));
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match logs_api::serve(listener, &cli.settings, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logs_api: {e:#}");
            ExitCode::FAILURE
        }
    }
}

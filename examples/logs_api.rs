//! `cargo run --example logs_api`: the downstream API of the examples,
//! alone. It accepts only the broker's hop tokens for its own resource and
//! answers `GET /logs` with what the token says (user, act chain, txn,
//! scopes, client). Defaults fit `cargo run -- serve --dev`; see
//! `--help` and examples/README.md.
//!
//! Owns: the command line (flags and environment).
//! Must never: hold the API's logic (that is `common/logs_api.rs`, which the
//! demo runs in process too).

#[path = "common/base_url.rs"]
mod base_url;
#[path = "common/logging.rs"]
mod logging;
#[path = "common/logs_api.rs"]
mod logs_api;
#[path = "common/principal_json.rs"]
mod principal_json;
#[path = "common/process.rs"]
mod process;

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
    let served = async {
        let (listener, base) = process::listen(cli.settings.listen).await?;
        println!("logs_api: listening on {base}/logs");
        logs_api::serve(listener, &cli.settings, process::ctrl_c()).await
    };
    process::exit("logs_api", served.await)
}

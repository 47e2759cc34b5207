//! The command line: serve (embedded default or a config file), config
//! check, key and secret generation, token decoding, and the auditor's
//! commands (`audit trace|search|verify`, in `audit` and `verify`). The
//! embedded default is composed in `dev_mode` (also what `examples/demo.rs`
//! runs in process), and a trace is read by `fetch_trace` and drawn by
//! `draw_trace`.
//!
//! Owns: argument parsing and process exit codes.
//! Must never: print a secret except the one `secret generate` was asked for.

mod audit;
pub mod dev_mode;
mod verify;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use clap::{Parser, Subcommand};

pub use self::audit::{draw_trace, fetch_trace};
pub use self::dev_mode::DevMode;
use crate::app::{self, App};
use crate::config::Config;
use crate::jose::{self, Alg};

#[derive(Parser)]
#[command(
    name = "xaa-broker",
    version,
    about = "Cross-App Access token broker (RFC 8693, ID-JAG, RFC 9068)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve. Without --config: the embedded default (dev mode).
    Serve {
        /// Config file (TOML). Env overrides: XAA__SECTION__KEY.
        #[arg(long, short, env = "XAA_CONFIG")]
        config: Option<PathBuf>,
        /// Serve the embedded default (dev mode) even if XAA_CONFIG is set.
        #[arg(long, conflicts_with = "config")]
        dev: bool,
        /// Listen address; overrides the config's `listen`.
        #[arg(long, env = "XAA_LISTEN")]
        listen: Option<SocketAddr>,
    },
    /// Validate configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Client secrets.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Inspect tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Read and check the audit trail (talks to a running broker, or reads
    /// Redis or audit files directly for `verify`).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// Parsed once per run: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum AuditCommand {
    /// Print one transaction as a tree: every hop, denial and tool call.
    Trace(audit::TraceArgs),
    /// List transactions by user and time range.
    Search(audit::SearchArgs),
    /// Check every chain against its signed checkpoints; exit non-zero and
    /// name the first break.
    Verify(verify::VerifyArgs),
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Load and validate FILE; print every problem with its key.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Write a new private JWK to DIR/<kid>.private.jwk (mode 0600) and print the public JWK.
    Generate {
        #[arg(long, default_value = "ES256")]
        alg: String,
        #[arg(long, default_value = "keys")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SecretCommand {
    /// Print a new random client secret and the secret_sha256 to put in config.
    Generate,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a JWT's header and claims WITHOUT verifying anything.
    Decode {
        /// The token; read from stdin when absent.
        token: Option<String>,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(None, None),
        Some(Command::Serve { config, dev, listen }) => serve(if dev { None } else { config }, listen),
        Some(Command::Config {
            command: ConfigCommand::Check { file },
        }) => config_check(&file),
        Some(Command::Keys {
            command: KeysCommand::Generate { alg, out },
        }) => keys_generate(&alg, &out),
        Some(Command::Secret {
            command: SecretCommand::Generate,
        }) => secret_generate(),
        Some(Command::Token {
            command: TokenCommand::Decode { token },
        }) => token_decode(token),
        Some(Command::Audit { command }) => {
            return match command {
                AuditCommand::Trace(args) => audit::trace(args),
                AuditCommand::Search(args) => audit::search(args),
                AuditCommand::Verify(args) => verify::run(args),
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: Option<PathBuf>, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let served = runtime.block_on(async move {
        match config_path {
            Some(path) => {
                let config = Config::load(&path)?;
                let listen = match listen {
                    Some(l) => l,
                    None => config
                        .listen
                        .parse()
                        .with_context(|| format!("{}: key `listen`", path.display()))?,
                };
                let base = path.parent().map(Path::to_path_buf);
                let app = App::build(&config, &path.display().to_string(), base).await?;
                app::spawn_reload_on_sighup(app.state.clone(), path.clone());
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("cannot listen on {listen}"))?;
                tracing::info!(issuer = %config.issuer, %listen, instance = %app.state.instance, "xaa-broker serving");
                app.serve(listener, app::shutdown_signal()).await
            }
            None => {
                let listen = listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
                let dev = DevMode::bind(listen).await?;
                let exe = std::env::current_exe()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| "xaa-broker".into());
                println!("{}", crate::dev::banner(&dev.issuer, &dev.ras_issuer, &exe));
                dev.serve(app::shutdown_signal()).await
            }
        }
    });
    // The spans of the last requests, sent within a bounded time, outside
    // the runtime (the exporter's client blocks).
    drop(runtime);
    telemetry.shutdown();
    served
}

fn config_check(file: &Path) -> anyhow::Result<()> {
    let name = file.display().to_string();
    let config = Config::load(file)?;
    let policy = config.resolve(&name)?;
    let base = file.parent().map(Path::to_path_buf);
    crate::keys::KeyRing::from_config(&config.keys, base.as_deref()).with_context(|| format!("{name}: key `keys`"))?;
    println!(
        "{name}: ok (issuer {}, {} trusted issuers, {} clients, {} audiences)",
        policy.issuer,
        policy.issuers.len(),
        policy.clients.len(),
        policy
            .audiences
            .values()
            .map(|a| a.id.as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
    );
    Ok(())
}

fn keys_generate(alg: &str, out: &Path) -> anyhow::Result<()> {
    let alg =
        Alg::parse(alg).with_context(|| format!("--alg {alg:?}: use one of ES256, ES384, RS256, PS256, EdDSA"))?;
    let (path, public) = crate::keys::generate_to_dir(alg, out)?;
    eprintln!("wrote private key {} (mode 0600); add it to keys.files", path.display());
    println!("{public}");
    Ok(())
}

fn secret_generate() -> anyhow::Result<()> {
    let mut bytes = [0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    let secret = B64.encode(bytes);
    println!("client_secret = {secret}");
    println!("secret_sha256 = \"{}\"", jose::sha256_hex(secret.as_bytes()));
    eprintln!("give the secret to the client; put only secret_sha256 in the config");
    Ok(())
}

fn token_decode(token: Option<String>) -> anyhow::Result<()> {
    let token = match token {
        Some(t) => t,
        None => std::io::read_to_string(std::io::stdin())?,
    };
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(h), Some(p)) = (parts.next(), parts.next()) else {
        anyhow::bail!("not a compact JWT");
    };
    let decode = |s: &str| -> anyhow::Result<serde_json::Value> { Ok(serde_json::from_slice(&B64.decode(s)?)?) };
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "verified": false,
            "note": "decoded only: signature, issuer, audience and expiry were NOT checked",
            "header": decode(h)?,
            "claims": decode(p)?,
        }))?
    );
    Ok(())
}

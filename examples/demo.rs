//! `cargo run --example demo`: the whole chain in one command. On loopback,
//! on ports the system picks, it starts the broker in dev mode, the logs
//! API and the logs MCP server, runs the agent once, prints the audit trace
//! of that run (the user, the agent chain, one `txn` across every hop, the
//! tool calls and the refused destructive call) and the audit page's URL,
//! checks that the trace says so, stops everything and exits 0; on any
//! failure it names the step and exits 1.
//!
//! The broker runs **in process**: `xaa_broker::cli::DevMode` is exactly
//! what `xaa-broker serve --dev` runs, built from this same checkout. A
//! spawned binary could be missing or stale (`cargo run --example` builds
//! the example, not the binary), and a child process could outlive a demo
//! that failed; here everything stops when the process ends.
//!
//! Owns: the order of the run, the bound on every wait, the checks, and the
//! printed trace (drawn by `xaa_broker::cli::draw_trace`, as
//! `xaa-broker audit trace` draws it).
//! Must never: leave a server running after it exits (except with `--keep`,
//! until Ctrl-C), listen beyond loopback, or print a token or a secret.

#[path = "common/agent.rs"]
mod agent;
#[path = "common/base_url.rs"]
mod base_url;
#[path = "common/logging.rs"]
mod logging;
#[path = "common/logs_api.rs"]
mod logs_api;
#[path = "common/mcp_server.rs"]
mod mcp_server;
#[path = "common/mcp_tools.rs"]
mod mcp_tools;
#[path = "common/principal_json.rs"]
mod principal_json;

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Parser;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use xaa_broker::audit::{AuditRecord, Decision, ToolOutcome};
use xaa_broker::cli::{DevMode, draw_trace, fetch_trace};

/// A server's start: bound, keys discovered, answering.
const START: Duration = Duration::from_secs(30);
/// The agent's whole run.
const RUN: Duration = Duration::from_secs(90);
/// A server's stop, its last audit reports flushed.
const STOP: Duration = Duration::from_secs(15);
/// The audit reports of the run reaching the trace.
const SETTLE: Duration = Duration::from_secs(15);
/// The dev broker's audit client (src/dev/embedded.toml), which reads the
/// trace (`POST /audit/trace`, specs/audit.md).
const AUDITOR: (&str, &str) = ("auditor", "auditor-secret");
/// The audiences of the embedded default the examples play.
const MCP_RESOURCE: &str = "https://mcp.logs.example.com";
const LOGS_API_RESOURCE: &str = "https://logs-api.example.com";

/// The whole xaa-broker chain on loopback, once: broker, logs API, MCP
/// server, agent; then the audit trace of the run.
#[derive(Parser)]
struct Cli {
    /// Keep the broker and the servers running after the run, until Ctrl-C:
    /// to open the audit page, or to point another MCP client at the server.
    #[arg(long)]
    keep: bool,
    /// Make the MCP server's resource identifier its own URL
    /// (`http://127.0.0.1:PORT/mcp`) in place of `https://mcp.logs.example.com`,
    /// at the broker too: what the MCP TypeScript SDK requires of RFC 9728
    /// metadata (§3.3).
    #[arg(long)]
    mcp_resource_is_url: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    logging::init("warn");
    let cli = Cli::parse();
    match demo(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("[demo] FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn demo(cli: &Cli) -> anyhow::Result<()> {
    let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // Every port first: the broker's configuration may name the MCP
    // server's URL.
    let logs_listener = TcpListener::bind(loopback).await?;
    let logs_url = base_url::of(&logs_listener)?;
    let mcp_listener = TcpListener::bind(loopback).await?;
    let mcp_base = base_url::of(&mcp_listener)?;
    let mcp_url = format!("{mcp_base}{}", mcp_server::MCP_PATH);
    let mcp_resource = match cli.mcp_resource_is_url {
        true => mcp_url.clone(),
        false => MCP_RESOURCE.to_owned(),
    };

    let resource = mcp_resource.clone();
    let dev = bounded(
        "building the broker",
        START,
        DevMode::bind_with(loopback, move |config| {
            xaa_broker::dev::rename_resource(config, MCP_RESOURCE, &resource)
        }),
    )
    .await??;
    let issuer = dev.issuer.clone();
    let broker = Server::spawn("the broker", |stopped| dev.serve(stopped));
    let broker = broker.until_up(&http, &format!("{issuer}/readyz")).await?;
    println!("[demo] broker (dev mode, in process) at {issuer}");

    let settings = logs_api::Settings {
        broker: issuer.clone(),
        resource: LOGS_API_RESOURCE.into(),
        listen: logs_listener.local_addr()?,
    };
    let logs = Server::spawn("the logs API", |stopped| async move {
        logs_api::serve(logs_listener, &settings, stopped).await
    });
    let logs = logs
        .until_up(&http, &format!("{logs_url}/.well-known/oauth-protected-resource"))
        .await?;
    println!("[demo] logs API at {logs_url}/logs (resource {LOGS_API_RESOURCE})");

    let settings = mcp_server::Settings {
        broker: issuer.clone(),
        resource: mcp_resource.clone(),
        listen: mcp_listener.local_addr()?,
        client_id: "mcp-logs".into(),
        client_secret: "mcp-logs-secret".into(),
        logs_api_url: logs_url.clone(),
        logs_api_resource: LOGS_API_RESOURCE.into(),
    };
    let mcp = Server::spawn("the MCP server", |stopped| async move {
        mcp_server::serve(mcp_listener, &settings, stopped).await
    });
    let mcp = mcp
        .until_up(&http, &format!("{mcp_base}/.well-known/oauth-protected-resource"))
        .await?;
    println!("[demo] MCP server at {mcp_url} (resource {mcp_resource}, broker client mcp-logs)");

    let settings = agent::Settings {
        broker: issuer.clone(),
        mcp_url: mcp_url.clone(),
        user: "alice".into(),
        client_id: "triage-agent".into(),
        client_secret: "triage-agent-secret".into(),
    };
    let outcome = bounded("the agent", RUN, agent::run(&settings)).await??;

    let (body, checked) = settled_trace(&issuer, &outcome, &mcp_resource).await?;
    println!(
        "\n[demo] the audit trace of txn {} (as `xaa-broker audit trace` draws it):\n",
        outcome.txn
    );
    print!("{}", draw_trace(&body)?);
    let page = format!("{issuer}/audit/ui?txn={}", outcome.txn);
    println!("\n[demo] summary");
    println!(
        "  user         {} (vouched for by {})",
        outcome.user, outcome.user_issuer
    );
    println!("  agent chain  {} (current actor first)", outcome.act.join(" ← "));
    println!(
        "  txn          {}: one correlation id across {} hops and {} tool reports",
        outcome.txn, checked.hops, checked.tool_reports
    );
    println!("  tool calls   {}", checked.tool_calls.join("; "));
    println!("  refused      delete_logs, by rule {}", outcome.refusal_rule);
    println!("  trace id     {} (agent → MCP server → logs API)", outcome.trace_id);
    println!("  audit page   {page}  (user auditor, password auditor-secret)");

    if cli.keep {
        println!("[demo] --keep: everything keeps running until Ctrl-C; the agent again:");
        println!("  cargo run --example agent -- --broker {issuer} --mcp-url {mcp_url}");
        let _ = tokio::signal::ctrl_c().await;
    } else {
        println!("  (served while the broker runs: `cargo run --example demo -- --keep` keeps it up)");
    }
    let reports = mcp.stop().await?;
    if reports.dropped > 0 {
        bail!("the MCP server dropped {} audit reports", reports.dropped);
    }
    logs.stop().await?;
    broker.stop().await?;
    println!("[demo] ok: the agent, the MCP server, the logs API and the broker have stopped");
    Ok(())
}

/// The run's trace once it holds everything [`check`] looks for: the MCP
/// server reports tool calls in the background (`AuditReporter`), so the
/// last reports may land a moment after the agent has its answers.
async fn settled_trace(issuer: &str, outcome: &agent::Outcome, mcp_resource: &str) -> anyhow::Result<(Value, Checked)> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let body = fetch_trace(issuer, AUDITOR.0, AUDITOR.1, &outcome.txn).await?;
        match check(&body, outcome, mcp_resource) {
            Ok(checked) => return Ok((body, checked)),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                print!("{}", draw_trace(&body).unwrap_or_default());
                return Err(e.context(format!("the audit trace after {}s", SETTLE.as_secs())));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What the trace proved.
struct Checked {
    hops: usize,
    tool_reports: usize,
    tool_calls: Vec<String>,
}

/// The run as the broker recorded it: every record in one `txn` for the
/// user; the agent's hop to the MCP server and the MCP server's hop to the
/// logs API, both granted; `search_logs` allowed and succeeded;
/// `delete_logs` denied and never allowed.
fn check(body: &Value, outcome: &agent::Outcome, mcp_resource: &str) -> anyhow::Result<Checked> {
    let records: Vec<AuditRecord> =
        serde_json::from_value(body["records"].clone()).context("the trace has no records")?;
    if let Some(r) = records.iter().find(|r| r.txn.as_deref() != Some(outcome.txn.as_str())) {
        bail!("record {} is not in txn {}", r.id, outcome.txn);
    }
    if let Some(r) = records.iter().find(|r| r.sub.as_deref() != Some(outcome.user.as_str())) {
        bail!("record {} is not about {}", r.id, outcome.user);
    }
    let hop = |client: &str, audience: &str| {
        records.iter().any(|r| {
            r.event.is_none()
                && r.decision == Decision::Granted
                && r.client_id.as_deref() == Some(client)
                && r.audience.as_deref() == Some(audience)
        })
    };
    if !hop("triage-agent", mcp_resource) {
        bail!("the trace lacks the agent's granted hop to {mcp_resource}");
    }
    if !hop("mcp-logs", LOGS_API_RESOURCE) {
        bail!("the trace lacks the MCP server's granted hop to {LOGS_API_RESOURCE}");
    }
    let reported = |tool: &str, outcome: ToolOutcome| {
        records
            .iter()
            .filter_map(|r| r.event.as_ref())
            .any(|e| e.tool == tool && e.outcome == outcome)
    };
    for (tool, wanted) in [
        (mcp_tools::SEARCH, ToolOutcome::Allowed),
        (mcp_tools::SEARCH, ToolOutcome::Succeeded),
        (mcp_tools::DELETE, ToolOutcome::Denied),
    ] {
        if !reported(tool, wanted) {
            bail!("the trace lacks the report {tool} {wanted:?}");
        }
    }
    if reported(mcp_tools::DELETE, ToolOutcome::Allowed) || reported(mcp_tools::DELETE, ToolOutcome::Succeeded) {
        bail!("delete_logs ran for an agent chain");
    }
    Ok(Checked {
        hops: records.iter().filter(|r| r.event.is_none()).count(),
        tool_reports: records.iter().filter(|r| r.event.is_some()).count(),
        tool_calls: vec![
            format!("{} (read): allowed, succeeded", mcp_tools::SEARCH),
            format!("{} (destructive): denied", mcp_tools::DELETE),
        ],
    })
}

/// One server of the demo, running as a task of this process until told
/// to stop.
struct Server<T> {
    name: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<T>>,
}

impl<T: Send + 'static> Server<T> {
    /// Spawn `serve(stopped)`, where `stopped` resolves on [`Server::stop`].
    fn spawn<F, Fut>(name: &'static str, serve: F) -> Self
    where
        F: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>) -> Fut,
        Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        Self {
            name,
            stop: Some(stop),
            task,
        }
    }

    /// The server, once `url` answers 200, within [`START`]; else its own
    /// error if it stopped first.
    async fn until_up(mut self, http: &reqwest::Client, url: &str) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + START;
        loop {
            if self.task.is_finished() {
                let ended = (&mut self.task).await;
                return Err(match ended {
                    Ok(Err(e)) => e.context(format!("{} did not start", self.name)),
                    Ok(Ok(_)) => anyhow!("{} stopped before it answered", self.name),
                    Err(e) => anyhow!("{} crashed: {e}", self.name),
                });
            }
            if let Ok(r) = http.get(url).send().await
                && r.status().is_success()
            {
                return Ok(self);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{} did not answer {url} within {}s", self.name, START.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stop it and wait, within [`STOP`], for what it returns.
    async fn stop(mut self) -> anyhow::Result<T> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let name = self.name;
        match tokio::time::timeout(STOP, self.task).await {
            Err(_) => bail!("{name} did not stop within {}s", STOP.as_secs()),
            Ok(Err(e)) => bail!("{name} crashed: {e}"),
            Ok(Ok(result)) => result.with_context(|| format!("{name} failed")),
        }
    }
}

/// `fut`, or an error naming `what` after `limit`.
async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| anyhow!("{what}: not done within {}s", limit.as_secs()))
}

//! The examples (examples/README.md) as a user runs them: `demo`, the one
//! command, end to end; and the example MCP server, logs API and agent as
//! separate processes against the real broker in dev mode, attacked where
//! it is cheap: no token, a token for another audience, an agent calling
//! the destructive tool.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::dev_broker::{DevBroker, trace_records};
use crate::support::example_bin::{self, Running};
use crate::support::*;

/// A hang guard for a whole example run, not a timing assertion.
const LIMIT: Duration = Duration::from_secs(180);

/// The UUIDs in `text` (a `txn` is a UUIDv7).
fn uuids(text: &str) -> BTreeSet<&str> {
    text.split(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
        .filter(|w| {
            w.len() == 36
                && w.char_indices().all(|(i, c)| {
                    if [8, 13, 18, 23].contains(&i) {
                        c == '-'
                    } else {
                        c.is_ascii_hexdigit()
                    }
                })
        })
        .collect()
}

#[test]
fn the_demo_runs_the_chain_and_prints_one_txn_the_tool_calls_and_the_refusal() {
    let run = example_bin::run("demo", &[], LIMIT);
    let out = &run.stdout;
    assert!(run.status.success(), "the demo failed: {run:#?}");
    let txns = uuids(out);
    assert_eq!(txns.len(), 1, "one correlation id across the run: {txns:?}\n{out}");
    let txn = txns.iter().next().copied().unwrap_or_default();
    for expected in [
        // The trace, as `xaa-broker audit trace` draws it.
        &format!("txn {txn}  user alice (http://127.0.0.1:"),
        "triage-agent [act agent:triage]  → https://mcp.logs.example.com",
        "mcp-logs [act mcp:logs ← agent:triage]  → https://logs-api.example.com  scope: logs.query",
        "TOOL     search_logs (read) allowed  at mcp-logs  caller agent:triage [ai_agent]",
        "TOOL     search_logs (read) succeeded  at mcp-logs  caller agent:triage [ai_agent]",
        "TOOL     delete_logs (destructive) denied  at mcp-logs  caller agent:triage [ai_agent]",
        // What the logs API saw, through the MCP server's hop token.
        "act      mcp:logs [service] ← agent:triage [ai_agent]",
        "token    client_id mcp-logs, scope logs.query, audience https://logs-api.example.com",
        // The refusal the agent got.
        "delete_logs → refused (tool.agent_category)",
        // The summary.
        "  user         alice (vouched for by http://127.0.0.1:",
        "  agent chain  mcp:logs ← agent:triage",
        "one correlation id across 2 hops and 3 tool reports",
        "search_logs (read): allowed, succeeded; delete_logs (destructive): denied",
        &format!("/audit/ui?txn={txn}  (user auditor"),
        "[demo] ok:",
    ] {
        assert!(out.contains(expected), "the demo's output lacks {expected:?}:\n{out}");
    }
    assert!(
        !out.contains("delete_logs (destructive) allowed") && !out.contains("delete_logs (destructive) succeeded"),
        "{out}"
    );
    // A JWT starts `eyJ` (`{"`): no token reaches the output or the log.
    assert!(
        !out.contains("eyJ") && !run.stderr.contains("eyJ"),
        "a token was printed:\n{out}\n{}",
        run.stderr
    );
}

#[tokio::test]
async fn the_example_mcp_server_answers_401_with_resource_metadata_without_a_token_or_with_anothers() {
    let dev = DevBroker::start(None);
    let mcp = Running::start("mcp_server", &["--broker", &dev.issuer, "--listen", "127.0.0.1:0"]);
    let url = mcp.listening_url();
    let base = url.trim_end_matches("/mcp");
    let http = reqwest::Client::new();
    let challenge = |r: &reqwest::Response| {
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };

    let none = http.post(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let metadata_url = format!("{base}/.well-known/oauth-protected-resource");
    assert_eq!(
        challenge(&none),
        format!("Bearer resource_metadata=\"{metadata_url}\""),
        "RFC 9728 §5.1, and no error code without a token (RFC 6750 §3.1)"
    );
    for path in ["", "/mcp"] {
        let doc: Value = http
            .get(format!("{metadata_url}{path}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(doc["resource"], LOGS, "{path}: {doc}");
        assert_eq!(doc["authorization_servers"], serde_json::json!([dev.issuer]), "{path}");
    }

    let id_token = dev.id_token("alice", "triage-agent").await;
    let for_cost = dev.first_hop("triage-agent", &id_token, COST).await;
    let foreign = http.post(&url).bearer_auth(&for_cost).send().await.unwrap();
    assert_eq!(foreign.status(), 401, "a token for another audience");
    let c = challenge(&foreign);
    assert!(
        c.starts_with("Bearer error=\"invalid_token\"") && c.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{c}"
    );

    let garbage = http.post(&url).bearer_auth("not.a.token").send().await.unwrap();
    assert_eq!(garbage.status(), 401);
    assert!(challenge(&garbage).contains("invalid_token"));
}

#[tokio::test]
async fn the_agent_example_is_refused_the_destructive_tool_and_the_broker_records_it_denied() {
    let dev = DevBroker::start(None);
    let logs = Running::start("logs_api", &["--broker", &dev.issuer, "--listen", "127.0.0.1:0"]);
    let logs_url = logs.listening_url();
    let mcp = Running::start(
        "mcp_server",
        &[
            "--broker",
            &dev.issuer,
            "--listen",
            "127.0.0.1:0",
            "--logs-api",
            logs_url.trim_end_matches("/logs"),
        ],
    );
    let mcp_url = mcp.listening_url();
    let issuer = dev.issuer.clone();
    let run = tokio::task::spawn_blocking(move || {
        example_bin::run("agent", &["--broker", &issuer, "--mcp-url", &mcp_url], LIMIT)
    })
    .await
    .unwrap();
    assert!(run.status.success(), "the agent failed: {run:#?}");
    assert!(
        run.stdout
            .contains("delete_logs → refused (tool.agent_category): tool delete_logs is destructive"),
        "{}",
        run.stdout
    );
    let txns = uuids(&run.stdout);
    assert_eq!(txns.len(), 1, "{}", run.stdout);
    let txn = txns.into_iter().next().unwrap_or_default().to_owned();

    // The reports are sent in the background: wait for the denial, bounded.
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events: Vec<(String, String)> = trace_records(&http, &dev.issuer, &txn)
            .await
            .iter()
            .filter_map(|r| r.get("event"))
            .map(|e| {
                (
                    e["tool"].as_str().unwrap_or_default().to_owned(),
                    e["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        if events.len() >= 3 || Instant::now() > deadline {
            break events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let has = |tool: &str, outcome: &str| events.iter().any(|(t, o)| t == tool && o == outcome);
    assert!(has("delete_logs", "denied"), "{events:?}");
    assert!(
        !has("delete_logs", "allowed") && !has("delete_logs", "succeeded"),
        "{events:?}"
    );
    assert!(
        has("search_logs", "allowed") && has("search_logs", "succeeded"),
        "{events:?}"
    );
}

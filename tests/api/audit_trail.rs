//! The auditor's reads (issue "Auditors"): a transaction as a lineage tree
//! with its denials and tool calls in place, tool calls reported by the
//! resource servers that saw them (identity taken from the token, never the
//! body), records by user and time range a page at a time, on both stores
//! and across instances, and who may read any of it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;
use xaa_broker::types::now_secs;

const ARGS_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The auditor of examples/broker.toml reads `path`.
async fn as_auditor(app: &TestApp, path: &str, form: &[(&str, &str)]) -> Resp {
    app.post_form(path, Auth::Basic("auditor"), form).await
}

async fn trace(app: &TestApp, txn: &str) -> Value {
    let r = as_auditor(app, "/audit/trace", &[("txn", txn)]).await;
    r.assert_ok();
    r.body
}

/// `reporter` reports a successful read tool call made with `token`.
async fn report(app: &TestApp, reporter: &str, token: &str, extra: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("token", token),
        ("tool", "search_logs"),
        ("category", "read"),
        ("outcome", "succeeded"),
        ("args_sha256", ARGS_SHA256),
    ];
    form.extend_from_slice(extra);
    app.post_form("/audit/events", Auth::Basic(reporter), &form).await
}

/// The tree as `id(children…)` with each record named by `name`.
fn shape(nodes: &Value, records: &[Value], name: &dyn Fn(&Value) -> String) -> String {
    let by_id: BTreeMap<&str, &Value> = records.iter().map(|r| (r["id"].as_str().unwrap(), r)).collect();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let me = name(by_id[n["id"].as_str().unwrap()]);
            if n["children"].as_array().unwrap().is_empty() {
                me
            } else {
                format!("{me}({})", shape(&n["children"], records, name))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A record as the tree test names it: `client>audience`, `denied:client`,
/// `tool:name`.
fn hop_name(r: &Value) -> String {
    if let Some(tool) = r["event"]["tool"].as_str() {
        return format!("tool:{tool}");
    }
    let client = r["client_id"].as_str().unwrap_or("?");
    match r["decision"].as_str() {
        Some("denied") => format!("denied:{client}"),
        _ => format!("{client}>{}", r["audience"].as_str().unwrap_or("?")),
    }
}

/// alice's three hops (agent → logs MCP → cost tool → incidents), a refused
/// exchange from the first hop's token, and a tool call on it. Returns the
/// txn and the hop tokens.
async fn three_hops_with_a_denial_and_a_tool_call(app: &TestApp) -> (String, [String; 3]) {
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    let third = app
        .exchange_for_hop("cost-tool", second.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    third.assert_ok();
    // An agent is in the chain: cost.approve alone is refused, and recorded
    // in place (a refusal before the subject token verified has no txn).
    app.exchange_for_hop(
        "mcp-logs",
        first.token(),
        ACCESS_TOKEN,
        COST,
        &[("scope", "cost.approve")],
    )
    .await
    .assert_error(400, "invalid_scope");
    report(app, "mcp-logs", first.token(), &[]).await.assert_ok();
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    (
        txn,
        [
            first.token().to_owned(),
            second.token().to_owned(),
            third.token().to_owned(),
        ],
    )
}

#[tokio::test]
async fn a_trace_is_the_lineage_tree_with_denials_and_tool_calls_in_place() {
    let app = TestApp::spawn().await;
    let (txn, _) = three_hops_with_a_denial_and_a_tool_call(&app).await;
    let body = trace(&app, &txn).await;
    let records = body["records"].as_array().unwrap();
    assert_eq!(records.len(), 5, "{body:#}");
    assert_eq!(
        shape(&body["tree"], records, &hop_name),
        format!("triage-agent>{LOGS}(mcp-logs>{COST}(cost-tool>{INCIDENTS}) denied:mcp-logs tool:search_logs)")
    );
    assert_eq!(body["tampered"], serde_json::json!([]));
    assert_eq!(body["truncated"], false);
    // Every record speaks for alice, and the chain grows hop by hop.
    assert!(records.iter().all(|r| r["sub"] == "alice"), "{body:#}");
    assert_eq!(records[1]["act"]["sub"], "mcp:logs");
    assert_eq!(records[1]["act"]["act"]["sub"], "agent:triage");
    let denial = records.iter().find(|r| r["decision"] == "denied").unwrap();
    assert_eq!(denial["reason"], "scope.empty_grant");
    assert_eq!(
        denial["scope_withheld"],
        serde_json::json!([{"scope": "cost.approve", "reason": "human_only"}])
    );
}

#[tokio::test]
async fn a_withheld_scope_is_recorded_with_the_rule_that_withheld_it() {
    let app = TestApp::spawn().await;
    let (txn, [_, second, _]) = three_hops_with_a_denial_and_a_tool_call(&app).await;
    let body = trace(&app, &txn).await;
    let hop = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["audience"] == COST)
        .unwrap()
        .clone();
    // alice is sre (cost.approve) but an agent is in the chain.
    assert_eq!(hop["scope_granted"], "cost.read");
    assert_eq!(
        hop["scope_withheld"],
        serde_json::json!([{"scope": "cost.approve", "reason": "human_only"}])
    );
    let claims = decode_part(&second, 1);
    assert_eq!(claims["scope"], "cost.read", "the token says what the record says");
}

#[tokio::test]
async fn a_tool_call_takes_its_user_chain_and_txn_from_the_token_never_the_body() {
    let app = TestApp::spawn().await;
    let (_, first, _) = app.agent_then_logs_to_cost("alice").await;
    let forged = [
        ("sub", "mallory"),
        ("txn", "someone-elses-txn"),
        ("act", "{}"),
        ("audience", COST),
    ];
    let r = report(&app, "mcp-logs", first.token(), &forged).await;
    r.assert_ok();
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    assert_eq!(r.body["txn"], txn.as_str());
    let record = app
        .audit(&txn)
        .await
        .into_iter()
        .find(|r| r.event.is_some())
        .expect("the tool call is in alice's trace");
    assert_eq!(record.sub.as_deref(), Some("alice"));
    assert_eq!(record.client_id.as_deref(), Some("mcp-logs"));
    assert_eq!(record.audience.as_deref(), Some(LOGS));
    assert_eq!(record.parent_jti.as_deref(), first.claims()["jti"].as_str());
    assert_eq!(record.act.as_ref().unwrap().sub, "agent:triage");
    assert_eq!(record.grant.as_deref(), Some("tool_call"));
    let event = record.event.unwrap();
    assert_eq!(
        (event.tool.as_str(), event.args_sha256.as_str()),
        ("search_logs", ARGS_SHA256)
    );
    assert!(app.audit("someone-elses-txn").await.is_empty());
}

#[tokio::test]
async fn a_server_reports_only_on_tokens_for_its_own_resource() {
    let app = TestApp::spawn().await;
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    // The cost tool did not receive the token for the logs MCP.
    let r = report(&app, "cost-tool", first.token(), &[]).await;
    r.assert_error(400, "unauthorized_client");
    // The agent serves no resource at all.
    report(&app, "triage-agent", first.token(), &[])
        .await
        .assert_error(400, "unauthorized_client");
    // Its own token is fine.
    report(&app, "cost-tool", second.token(), &[]).await.assert_ok();
    let reasons: Vec<String> = app
        .all_audit()
        .await
        .into_iter()
        .filter(|r| r.grant.as_deref() == Some("tool_call"))
        .map(|r| r.reason.unwrap_or_default())
        .collect();
    assert_eq!(reasons, ["event.not_your_resource", "event.not_your_resource", ""]);
}

#[tokio::test]
async fn a_token_not_ours_or_long_expired_cannot_carry_a_report() {
    let clock = std::sync::Arc::new(xaa_broker::clock::ManualClock::new());
    let app = TestApp::spawn_with_clock(clock.clone(), |_| {}).await;
    let (_, first, _) = app.agent_then_logs_to_cost("alice").await;
    // Another issuer's token for the same audience.
    let foreign = app.idp.sign(
        Some("at+jwt"),
        &serde_json::json!({"iss": app.issuer, "sub": "alice", "aud": LOGS, "exp": now_secs() + 60,
            "iat": now_secs(), "jti": "forged", "client_id": "triage-agent", "txn": "t"}),
    );
    report(&app, "mcp-logs", &foreign, &[])
        .await
        .assert_error(400, "invalid_request");
    // A call that finished after the token expired is still reported ...
    clock.advance_secs(3600);
    report(&app, "mcp-logs", first.token(), &[]).await.assert_ok();
    // ... but not a day later.
    clock.advance_secs(2 * 86_400);
    report(&app, "mcp-logs", first.token(), &[])
        .await
        .assert_error(400, "invalid_request");
}

#[tokio::test]
async fn a_client_reports_by_jti_only_on_tokens_issued_to_itself() {
    let app = TestApp::spawn().await;
    let (_, first, _) = app.agent_then_logs_to_cost("alice").await;
    let jti = first.claims()["jti"].as_str().unwrap().to_owned();
    let by_jti = |client: &'static str| {
        let jti = jti.clone();
        let app = &app;
        async move {
            app.post_form(
                "/audit/events",
                Auth::Basic(client),
                &[
                    ("token_jti", jti.as_str()),
                    ("tool", "fetch"),
                    ("category", "read"),
                    ("outcome", "allowed"),
                    ("args_sha256", ARGS_SHA256),
                ],
            )
            .await
        }
    };
    // The token was issued to the agent: it may report what it did with it.
    by_jti("triage-agent").await.assert_ok();
    // The logs MCP learns nothing about a jti that is not its own.
    let r = by_jti("mcp-logs").await;
    r.assert_error(400, "invalid_request");
    assert!(
        r.body["error_description"]
            .as_str()
            .unwrap()
            .contains("no token issued to this client")
    );
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    let tool = app.audit(&txn).await.into_iter().find(|r| r.event.is_some()).unwrap();
    assert_eq!(tool.client_id.as_deref(), Some("triage-agent"));
    assert_eq!(tool.sub.as_deref(), Some("alice"));
}

#[tokio::test]
async fn only_audit_clients_read_the_trail_and_every_read_is_recorded() {
    let app = TestApp::spawn().await;
    let (_, first, _) = app.agent_then_logs_to_cost("alice").await;
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    for path in ["/audit/trace", "/audit/records"] {
        let r = app.post_form(path, Auth::None, &[("txn", &txn)]).await;
        r.assert_error(401, "invalid_client");
        // An admin is not an auditor: reading the trail is its own permission.
        let r = app.post_form(path, Auth::Basic("security-ops"), &[("txn", &txn)]).await;
        r.assert_error(400, "unauthorized_client");
        let r = app.post_form(path, Auth::Basic("triage-agent"), &[("txn", &txn)]).await;
        r.assert_error(400, "unauthorized_client");
    }
    trace(&app, &txn).await;
    let reads: Vec<_> = app
        .all_audit()
        .await
        .into_iter()
        .filter(|r| r.grant.as_deref() == Some("audit.trace"))
        .collect();
    let granted = reads
        .iter()
        .find(|r| r.client_id.as_deref() == Some("auditor"))
        .unwrap();
    assert_eq!(granted.query.as_deref(), Some(format!("txn={txn}").as_str()));
    assert!(granted.txn.is_none(), "a read does not join the trace it reads");
    assert_eq!(
        reads
            .iter()
            .filter(|r| r.reason.as_deref() == Some("audit.not_auditor"))
            .count(),
        2
    );
}

#[tokio::test]
async fn malformed_audit_queries_are_clear_invalid_requests() {
    let app = TestApp::spawn().await;
    as_auditor(&app, "/audit/trace", &[])
        .await
        .assert_error(400, "invalid_request");
    for form in [
        vec![("since", "yesterday")],
        vec![("since", "2000"), ("until", "1000")],
        vec![("limit", "100000")],
        vec![("iss", "https://idp.example.com")],
    ] {
        let r = as_auditor(&app, "/audit/records", &form).await;
        r.assert_error(400, "invalid_request");
    }
    // A cursor this store never gave ends the search; it is not an error.
    let r = as_auditor(&app, "/audit/records", &[("cursor", "not-a-cursor")]).await;
    r.assert_ok();
    assert_eq!(r.body["records"], serde_json::json!([]));
}

/// Every record of `sub` in the last hour, page by page (`limit`), as
/// `(instance, seq)`.
async fn search_all(app: &TestApp, form: &[(&str, &str)], limit: usize) -> Vec<Value> {
    let since = (now_secs() - 3600).to_string();
    let limit = limit.to_string();
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    for _ in 0..1000 {
        let mut f: Vec<(&str, &str)> = form.to_vec();
        if !form.iter().any(|(k, _)| *k == "since") {
            f.push(("since", &since));
        }
        f.push(("limit", &limit));
        if let Some(c) = &cursor {
            f.push(("cursor", c));
        }
        let r = as_auditor(app, "/audit/records", &f).await;
        r.assert_ok();
        all.extend(r.body["records"].as_array().unwrap().iter().cloned());
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return all,
        }
    }
    panic!("the search never ended");
}

fn keys(records: &[Value]) -> Vec<(String, u64)> {
    records
        .iter()
        .map(|r| (r["instance"].as_str().unwrap().to_owned(), r["seq"].as_u64().unwrap()))
        .collect()
}

/// bob's and carol's hops at `one` and `two` (which may be the same
/// instance); then every record of bob is found once, page by page.
async fn search_by_user_pages_through_every_record_once(one: &TestApp, two: &TestApp) {
    for app in [one, two, one] {
        app.agent_then_logs_to_cost("bob").await;
        app.agent_then_logs_to_cost("carol").await;
    }
    let bob = search_all(one, &[("sub", "bob")], 2).await;
    assert_eq!(bob.len(), 6, "three first hops and three second hops");
    assert!(bob.iter().all(|r| r["sub"] == "bob"));
    let unique: BTreeSet<_> = keys(&bob).into_iter().collect();
    assert_eq!(unique.len(), 6, "no record twice");
    let instances: BTreeSet<_> = unique.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(
        instances.len(),
        if one.state.instance == two.state.instance { 1 } else { 2 }
    );
    // Qualified by the issuer that vouched for bob: the corp IdP, not another.
    let idp = one.config.issuers["corp-idp"].issuer.clone();
    assert_eq!(search_all(one, &[("sub", "bob"), ("iss", &idp)], 4).await.len(), 6);
    assert!(
        search_all(one, &[("sub", "bob"), ("iss", "https://other.example.com")], 4)
            .await
            .is_empty()
    );
    // A time range that ended before: nothing.
    let r = as_auditor(one, "/audit/records", &[("sub", "bob"), ("until", "1000000000")]).await;
    r.assert_ok();
    assert_eq!(r.body["records"], serde_json::json!([]));
    // Without a user: everyone's, including the reads above, each once.
    let everyone = search_all(two, &[], 5).await;
    let unique: BTreeSet<_> = keys(&everyone).into_iter().collect();
    assert_eq!(unique.len(), everyone.len());
    assert!(everyone.iter().filter(|r| r["sub"] == "carol").count() == 6);
}

#[tokio::test]
async fn search_by_user_pages_through_every_record_once_in_memory() {
    let app = TestApp::spawn().await;
    search_by_user_pages_through_every_record_once(&app, &app).await;
}

#[tokio::test]
async fn search_by_user_pages_through_every_record_once_across_redis_instances() {
    let Some(url) = redis_url().await else { return };
    let (prefix, keys) = (unique_prefix("audit-search"), shared_signing_key());
    let one = TestApp::spawn_with(|c| with_redis(c, &url, &prefix, &keys)).await;
    let two = one.spawn_sibling(|_| {}).await;
    search_by_user_pages_through_every_record_once(&one, &two).await;
    // And a trace gathers a transaction from both instances.
    let (_, first, _) = one.agent_then_logs_to_cost("dave").await;
    two.exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await
        .assert_ok();
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    let body = trace(&two, &txn).await;
    let instances: BTreeSet<&str> = body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["instance"].as_str().unwrap())
        .collect();
    assert_eq!(instances.len(), 2, "{body:#}");
}

/// Many clients at once on `apps` (round robin): three grants and a denial
/// per task. Afterwards the trail holds exactly one granted record per
/// token issued and one denied record per refusal — none lost, none twice.
async fn every_decision_is_recorded_exactly_once(apps: &[Arc<TestApp>]) {
    const TASKS: usize = 24;
    const ROUNDS: usize = 4;
    let since = (now_secs() - 1).to_string();
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let app = apps[t % apps.len()].clone();
        let other = apps[(t + 1) % apps.len()].clone();
        handles.push(tokio::spawn(async move {
            let mut issued = Vec::new();
            let mut denied = 0usize;
            for round in 0..ROUNDS {
                let user = format!("user-{t}-{round}");
                let id_token = app.idp.id_token(&user, "triage-agent", &["developer", "sre"]);
                let first = app
                    .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
                    .await;
                first.assert_ok();
                let second = other
                    .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[])
                    .await;
                second.assert_ok();
                let third = app
                    .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, INCIDENTS, &[])
                    .await;
                third.assert_ok();
                let refused = other
                    .exchange_for_hop(
                        "mcp-logs",
                        first.token(),
                        ACCESS_TOKEN,
                        COST,
                        &[("scope", "cost.approve")],
                    )
                    .await;
                refused.assert_error(400, "invalid_scope");
                denied += 1;
                for r in [first, second, third] {
                    issued.push(r.claims()["jti"].as_str().unwrap().to_owned());
                }
            }
            (issued, denied)
        }));
    }
    let mut issued = Vec::new();
    let mut denied = 0;
    for h in handles {
        let (i, d) = h.await.unwrap();
        issued.extend(i);
        denied += d;
    }
    let records = search_all(&apps[0], &[("since", &since)], 1000).await;
    let exchanges: Vec<&Value> = records.iter().filter(|r| r["grant"] == "token-exchange").collect();
    let mut granted: Vec<String> = exchanges
        .iter()
        .filter(|r| r["decision"] == "granted")
        .map(|r| r["issued_jti"].as_str().unwrap().to_owned())
        .collect();
    granted.sort();
    issued.sort();
    assert_eq!(granted.len(), TASKS * ROUNDS * 3);
    assert_eq!(granted, issued, "each issued token has exactly one granted record");
    let refusals = exchanges
        .iter()
        .filter(|r| r["decision"] == "denied" && r["reason"] == "scope.empty_grant")
        .count();
    assert_eq!(refusals, denied, "each refusal has its record");
    // And every chain involved is whole.
    for app in apps {
        let chain = app.all_audit().await;
        assert_eq!(xaa_broker::audit::verify_chain(&chain), Ok(()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_decision_is_recorded_exactly_once_under_concurrency_in_memory() {
    let app = TestApp::spawn_with(|c| c.limits.enabled = false).await;
    every_decision_is_recorded_exactly_once(&[Arc::new(app)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_decision_is_recorded_exactly_once_under_concurrency_on_two_redis_instances() {
    let Some(url) = redis_url().await else { return };
    let (prefix, keys) = (unique_prefix("audit-complete"), shared_signing_key());
    let one = TestApp::spawn_with(|c| {
        with_redis(c, &url, &prefix, &keys);
        c.limits.enabled = false;
    })
    .await;
    let two = one.spawn_sibling(|_| {}).await;
    every_decision_is_recorded_exactly_once(&[Arc::new(one), Arc::new(two)]).await;
}

#[tokio::test]
async fn the_page_takes_credentials_from_the_authorization_header_never_the_url() {
    let app = TestApp::spawn().await;
    let r = app
        .http
        .get(app.url("/audit/ui?client_id=auditor&client_secret=auditor-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic "),
        "a browser prompts"
    );
    let r = app
        .http
        .get(app.url("/audit/ui"))
        .basic_auth("auditor", Some("auditor-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'; script-src 'nonce-"), "{csp}");
    assert_eq!(r.headers()["cache-control"], "no-store");
    // Not an auditor: the page says so, it does not draw.
    let r = app
        .http
        .get(app.url("/audit/ui?txn=x"))
        .basic_auth("triage-agent", Some("triage-agent-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unauthorized_client"));
}

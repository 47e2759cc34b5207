//! The auditor's page (`GET /audit/ui`, `src/http/audit_page.*`) in a real
//! headless browser: Debian's `chromium`, driven through `browser.rs`. The
//! broker's page for a real transaction (three hops, a denial, a tool call),
//! its Basic challenge, record text that must stay text; then the page alone
//! on fixture data, for the views and sizes a small broker run does not
//! produce. Screenshots go to `target/artifacts/`.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};
use xaa_broker::http::audit_page;

use crate::browser::Browser;
use crate::support::*;

/// Where screenshots go, whatever CARGO_TARGET_DIR is: CI keeps them.
fn artifact(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/artifacts")
        .join(name)
}

/// The text content of every element matching `css`.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let v = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent)",
            vec![json!(css)],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// What each box matching `css` shows: its text lines joined by spaces
/// (not its hover `<title>`, which holds the untruncated text).
async fn shown(browser: &Browser, css: &str) -> Vec<String> {
    let v = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map(g => \
             Array.from(g.querySelectorAll('text')).map(t => t.textContent).join(' '))",
            vec![json!(css)],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// A computed style property of the one element matching `css`.
async fn computed(browser: &Browser, css: &str, property: &str) -> String {
    let v = browser
        .execute(
            "const e = document.querySelectorAll(arguments[0]); \
             if (e.length !== 1) { return 'matched ' + e.length; } \
             return getComputedStyle(e[0]).getPropertyValue(arguments[1])",
            vec![json!(css), json!(property)],
        )
        .await;
    v.as_str().unwrap_or_default().to_owned()
}

/// Open `url` and wait until the page's script has drawn it.
async fn open(browser: &Browser, url: &str) {
    browser.goto(url).await;
    browser.wait_for("body[data-ready]").await;
}

/// Nothing went to the console: no script error, and no Content-Security-
/// Policy violation (Chromium reports each one there).
async fn assert_quiet_console(browser: &Browser) {
    let console = browser.console().await;
    assert!(console.is_empty(), "console messages: {console:#?}");
}

const RED: &str = "rgb(211, 47, 47)";

const RED_WASH: &str = "rgb(255, 235, 238)";

// ---- Against the broker ---------------------------------------------------

const ARGS_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// `reporter` reports a tool call made with `token` (`POST /audit/events`).
async fn report(app: &TestApp, reporter: &str, token: &str, tool: &str, extra: &[(&str, &str)]) {
    let mut form = vec![
        ("token", token),
        ("tool", tool),
        ("category", "read"),
        ("outcome", "succeeded"),
        ("args_sha256", ARGS_SHA256),
    ];
    form.extend_from_slice(extra);
    app.post_form("/audit/events", Auth::Basic(reporter), &form)
        .await
        .assert_ok();
}

/// What the picture must show of one transaction.
struct Transaction {
    txn: String,
    /// The `jti` of each hop token, in order.
    jtis: [String; 3],
    /// The id of the record that issued each.
    hop_ids: [String; 3],
}

/// alice's three hops (triage-agent → logs MCP, mcp-logs → cost tool,
/// cost-tool → incidents), a refused exchange of the second hop's token
/// (the cost tool may not call the logs MCP), and mcp-logs reporting a
/// `search_logs` call made with the first hop's token.
async fn three_hops_with_a_denial_and_a_tool_call(app: &TestApp) -> Transaction {
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    let third = app
        .exchange_for_hop("cost-tool", second.token(), ACCESS_TOKEN, INCIDENTS, &[])
        .await;
    third.assert_ok();
    app.exchange_for_hop("cost-tool", second.token(), ACCESS_TOKEN, LOGS, &[])
        .await
        .assert_error(400, "invalid_target");
    report(app, "mcp-logs", first.token(), "search_logs", &[]).await;
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    let jtis = [&first, &second, &third].map(|r| r.claims()["jti"].as_str().unwrap().to_owned());
    // The record ids, from the audit API.
    let trace = app
        .post_form("/audit/trace", Auth::Basic("auditor"), &[("txn", &txn)])
        .await;
    trace.assert_ok();
    let records = trace.body["records"].as_array().unwrap();
    let hop_ids = jtis.clone().map(|jti| {
        let r = records.iter().find(|r| r["issued_jti"] == jti.as_str()).unwrap();
        r["id"].as_str().unwrap().to_owned()
    });
    Transaction { txn, jtis, hop_ids }
}

/// A browser signed in as the example's audit client.
async fn auditor_browser() -> Browser {
    let browser = Browser::start().await;
    browser.basic_auth("auditor", "auditor-secret").await;
    browser
}

/// The record a hop box shows when clicked.
async fn record_of_box(browser: &Browser, css: &str) -> Value {
    browser.find(css).await.click().await;
    let text = browser.find("pre#record").await.text().await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("#record is not JSON ({e}): {text}"))
}

#[tokio::test]
async fn the_page_draws_a_three_hop_transaction_with_its_denial_and_tool_call() {
    let app = TestApp::spawn().await;
    let t = three_hops_with_a_denial_and_a_tool_call(&app).await;
    let browser = auditor_browser().await;
    open(&browser, &app.url(&format!("/audit/ui?txn={}", t.txn))).await;
    assert_quiet_console(&browser).await;

    assert_eq!(texts(&browser, "#txn").await, [t.txn.as_str()]);
    assert_eq!(texts(&browser, "#count-records strong").await, ["5"]);
    assert_eq!(texts(&browser, "#count-denied strong").await, ["1"]);
    assert_eq!(texts(&browser, "#count-tools strong").await, ["1"]);
    // The user, then the hops: three granted, one denied, in red.
    let user = shown(&browser, "svg#trace g.node.user").await;
    assert_eq!(user.len(), 1);
    assert!(user[0].starts_with("alice "), "{user:?}");
    let full = texts(&browser, "svg#trace g.node.user > title").await;
    assert_eq!(
        full,
        [format!("alice\n{}\nuser", app.idp.issuer)],
        "the box's hover text"
    );
    let granted = shown(&browser, "svg#trace g.node.hop[data-decision=granted]").await;
    assert_eq!(granted.len(), 3, "{granted:?}");
    for (hop, (client, act, audience)) in granted.iter().zip([
        ("triage-agent ", "agent:triage", "mcp.logs.example.com"),
        ("mcp-logs ", "mcp:logs \u{2190} agent:triage", "cost.example.com"),
        (
            "cost-tool ",
            "mcp:cost \u{2190} mcp:logs \u{2190} agent:triage",
            "incidents.example.com",
        ),
    ]) {
        assert!(hop.starts_with(client), "{hop}");
        assert!(hop.contains(&format!("act: {act}")), "{hop}");
        assert!(hop.contains(&format!("\u{2192} {audience}")), "{hop}");
    }
    let denied = shown(&browser, "svg#trace g.node.hop.denied[data-decision=denied]").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert!(denied[0].starts_with("cost-tool"), "{}", denied[0]);
    assert!(denied[0].contains("DENIED invalid_target"), "{}", denied[0]);
    assert!(denied[0].contains("audience.not_allowed_for_ client"), "{}", denied[0]);
    assert_eq!(computed(&browser, "g.node.hop.denied rect.box", "stroke").await, RED);
    assert_eq!(computed(&browser, "g.node.hop.denied rect.box", "fill").await, RED_WASH);
    // It hangs under the hop whose token it tried to exchange.
    let denial = record_of_box(&browser, "g.node.hop.denied").await;
    assert_eq!(denial["parent_jti"], t.jtis[1].as_str());
    assert_eq!(denial["reason"], "audience.not_allowed_for_client");

    // Edges carry the scopes granted; withheld ones are struck through,
    // with the rule that withheld them.
    let scopes_on = |i: usize, class: &str| format!("g.edge[data-to=\"{}\"] tspan.{class}", t.hop_ids[i]);
    assert_eq!(
        texts(&browser, &scopes_on(0, "granted")).await,
        ["logs.read", "logs.write"]
    );
    assert_eq!(texts(&browser, &scopes_on(1, "granted")).await, ["cost.read"]);
    assert_eq!(texts(&browser, &scopes_on(2, "granted")).await, ["incidents.read"]);
    let withheld = browser.find(&scopes_on(1, "withheld")).await;
    assert_eq!(
        withheld.attribute("text-decoration").await.as_deref(),
        Some("line-through")
    );
    assert!(
        computed(&browser, &scopes_on(1, "withheld"), "text-decoration")
            .await
            .contains("line-through")
    );
    assert_eq!(
        texts(&browser, &scopes_on(1, "withheld")).await,
        ["cost.approvewithheld: human_only"],
        "the scope, then its <title>"
    );

    // The tool call is a leaf under the first hop.
    let tools = shown(&browser, "svg#trace g.node.tool").await;
    assert_eq!(tools.len(), 1);
    assert!(
        tools[0].contains("search_logs") && tools[0].contains("read \u{b7} succeeded"),
        "{tools:?}"
    );
    let call = record_of_box(&browser, "g.node.tool").await;
    assert_eq!(call["parent_jti"], t.jtis[0].as_str());
    assert_eq!(call["event"]["args_sha256"], ARGS_SHA256);

    // Clicking a hop shows its record, and highlights the box.
    for (i, jti) in t.jtis.iter().enumerate() {
        let record = record_of_box(&browser, &format!("g.node.hop[data-record-id=\"{}\"]", t.hop_ids[i])).await;
        assert_eq!(record["issued_jti"], jti.as_str());
        assert_eq!(record["txn"], t.txn.as_str());
    }
    assert_eq!(browser.find_all("g.node.selected").await.len(), 1);
    // The artifact: the picture with the second hop's record (cost.approve
    // withheld) open below it.
    record_of_box(&browser, &format!("g.node[data-record-id=\"{}\"]", t.hop_ids[1])).await;
    browser.screenshot_full_page(&artifact("audit-page.png")).await;

    // The search for alice over the last hour lists the transaction, linked
    // to its picture; the hour before lists nothing.
    let hours_ago = |h: i64| {
        (time::OffsetDateTime::now_utc() - time::Duration::hours(h))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    search(
        &browser,
        &[
            ("sub", "alice"),
            ("iss", &app.idp.issuer),
            ("since", &hours_ago(2)),
            ("until", &hours_ago(1)),
        ],
    )
    .await;
    assert_eq!(browser.find_all("#no-transactions").await.len(), 1);
    assert!(browser.find_all("table#transactions").await.is_empty());
    search(&browser, &[("since", &hours_ago(1)), ("until", &hours_ago(-1))]).await;
    let row = browser
        .find(&format!("table#transactions tr[data-txn=\"{}\"]", t.txn))
        .await;
    assert!(row.text().await.contains("alice"));
    let link = browser.find(&format!("tr[data-txn=\"{}\"] a", t.txn)).await;
    assert_eq!(link.attribute("href").await, Some(format!("?txn={}", t.txn)));
    browser.screenshot(&artifact("audit-page-search.png")).await;
    browser.click_to_navigate(&link).await;
    browser.wait_for("body[data-view=trace]").await;
    assert_eq!(texts(&browser, "#txn").await, [t.txn.as_str()]);
}

/// Fill the search form's `fields` (others keep their values) and submit it.
async fn search(browser: &Browser, fields: &[(&str, &str)]) {
    for (name, value) in fields {
        let input = browser.find(&format!("#search input[name={name}]")).await;
        input.clear().await;
        input.send_keys(value).await;
    }
    browser.click_to_navigate(&browser.find("#search button").await).await;
    browser.wait_for("body[data-view=search]").await;
    assert_quiet_console(browser).await;
}

#[tokio::test]
async fn the_page_asks_for_basic_credentials() {
    let app = TestApp::spawn().await;
    let r = app.http.get(app.url("/audit/ui")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic"), "{challenge}");
}

#[tokio::test]
async fn record_text_is_drawn_as_text_never_as_markup() {
    let app = TestApp::spawn().await;
    let (_, first, _) = app.agent_then_logs_to_cost("alice").await;
    let summary = "<img src=x onerror=alert(1)>";
    report(&app, "mcp-logs", first.token(), "search_logs", &[("summary", summary)]).await;
    let browser = auditor_browser().await;
    let txn = first.claims()["txn"].as_str().unwrap().to_owned();
    open(&browser, &app.url(&format!("/audit/ui?txn={txn}"))).await;
    assert_quiet_console(&browser).await;
    let tool = shown(&browser, "g.node.tool").await;
    assert!(tool[0].contains(summary), "{tool:?}");
    let record = record_of_box(&browser, "g.node.tool").await;
    assert_eq!(record["event"]["summary"], summary);
    assert!(browser.find_all("img").await.is_empty(), "an img element was created");
}

// ---- The page alone, on fixture data --------------------------------------

/// Serve `data` rendered as the page, with its Content-Security-Policy and
/// behind HTTP Basic authentication (`fixture` / `fixture-secret`), on a
/// local port: the page as the broker serves it, without the broker.
async fn serve_page(data: Value) -> String {
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let expected = format!("Basic {}", B64.encode("fixture:fixture-secret"));
    let app = axum::Router::new().route(
        "/audit/ui",
        axum::routing::get(move |headers: HeaderMap| {
            let (data, expected) = (data.clone(), expected.clone());
            async move {
                if headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
                    return (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic realm=\"audit\"")],
                    )
                        .into_response();
                }
                let nonce = uuid::Uuid::now_v7().simple().to_string();
                (
                    [
                        (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            audit_page::content_security_policy(&nonce),
                        ),
                    ],
                    audit_page::render(&data, &nonce),
                )
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/audit/ui")
}

/// A browser that sends the fixture server's credentials.
async fn fixture_browser() -> Browser {
    let browser = Browser::start().await;
    browser.basic_auth("fixture", "fixture-secret").await;
    browser
}

const FIXTURE_TXN: &str = "01970000-0000-7000-8000-00000000abcd";

/// A fixture record: `fields` over what every record of the fixture shares.
fn record(fields: Value) -> Value {
    let mut r = json!({
        "instance": "i-test", "seq": 1, "prev_hash": "0".repeat(64), "hash": "f".repeat(64),
        "decision": "granted", "txn": FIXTURE_TXN, "client_auth_method": "client_secret_basic",
        "sub": "alice", "sub_iss": "https://idp.example.com", "source_ip": "127.0.0.1", "user_agent": "reqwest",
    });
    for (k, v) in fields.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// A granted hop token record.
fn hop(fields: Value) -> Value {
    let mut r = record(json!({
        "grant": "token-exchange",
        "requested_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "issued_exp": 1_900_000_000,
    }));
    for (k, v) in fields.as_object().unwrap() {
        r[k] = v.clone();
    }
    r
}

/// A three-hop transaction with a denial, a tool call, a failed destructive
/// tool call and an introspection, as the broker would embed it.
fn fixture() -> Value {
    let agent = json!({"sub": "agent:triage", "sub_profile": "ai_agent"});
    let logs = json!({"sub": "mcp:logs", "sub_profile": "service", "act": agent});
    let cost = json!({"sub": "mcp:cost", "sub_profile": "service", "act": logs});
    let r1 = hop(json!({
        "id": "r1", "time": "2025-06-01T09:00:00.100Z", "client_id": "triage-agent", "act": agent,
        "audience": "https://mcp.logs.example.com", "scope_granted": "logs.read logs.write",
        "scope_withheld": [{"scope": "logs.purge", "reason": "agent_category"}],
        "issued_jti": "j1", "parent_jti": "idtoken-jti",
    }));
    let r2 = record(json!({
        "id": "r2", "time": "2025-06-01T09:00:01.000Z", "grant": "tool_call", "client_id": "mcp-logs",
        "act": agent, "audience": "https://mcp.logs.example.com", "parent_jti": "j1",
        "event": {"tool": "search_logs", "category": "read", "outcome": "succeeded", "at": "2025-06-01T09:00:01.000Z",
                  "args_sha256": "a".repeat(64), "summary": "errors of the last 24 h"},
    }));
    let r3 = hop(json!({
        "id": "r3", "time": "2025-06-01T09:00:02.000Z", "client_id": "mcp-logs", "act": logs,
        "audience": "https://cost.example.com", "scope_granted": "cost.read",
        "scope_withheld": [{"scope": "cost.approve", "reason": "human_only"}],
        "issued_jti": "j2", "parent_jti": "j1",
    }));
    let r4 = hop(json!({
        "id": "r4", "time": "2025-06-01T09:00:03.000Z", "client_id": "cost-tool", "act": cost,
        "audience": "https://incidents.example.com", "scope_granted": "incidents.read",
        "scope_withheld": [{"scope": "incidents.write", "reason": "client_category"},
                           {"scope": "incidents.admin", "reason": "agent_category"}],
        "issued_jti": "j3", "parent_jti": "j2",
    }));
    let r5 = record(json!({
        "id": "r5", "time": "2025-06-01T09:00:04.000Z", "decision": "denied", "error": "invalid_target",
        "reason": "audience.not_allowed_for_client", "grant": "token-exchange", "client_id": "cost-tool",
        "act": cost, "audience": "https://mcp.logs.example.com", "parent_jti": "j2",
    }));
    let r6 = record(json!({
        "id": "r6", "time": "2025-06-01T09:00:05.000Z", "grant": "introspection", "client_id": "mcp-logs",
        "parent_jti": "j1",
    }));
    let r7 = record(json!({
        "id": "r7", "time": "2025-06-01T09:00:06.000Z", "grant": "tool_call", "client_id": "mcp-logs",
        "act": agent, "audience": "https://mcp.logs.example.com", "parent_jti": "j1",
        "event": {"tool": "purge_logs", "category": "destructive", "outcome": "failed", "at": "2025-06-01T09:00:06.000Z",
                  "args_sha256": "b".repeat(64), "summary": "<img src=x onerror=alert(1)>"},
    }));
    json!({"view": "trace", "query": {"txn": FIXTURE_TXN}, "trace": {
        "txn": FIXTURE_TXN,
        "records": [r1, r2, r3, r4, r5, r6, r7],
        "truncated": false,
        "tampered": ["r6"],
        "tree": [{"id": "r1", "children": [
            {"id": "r2", "children": []},
            {"id": "r3", "children": [{"id": "r4", "children": []}, {"id": "r5", "children": []}]},
            {"id": "r6", "children": []},
            {"id": "r7", "children": []},
        ]}],
    }})
}

/// The page on its own (no broker): each view drawn from fixture data,
/// served with its Content-Security-Policy as the broker serves it.
#[tokio::test]
async fn the_page_draws_each_view_of_fixture_data_under_its_policy() {
    let browser = fixture_browser().await;

    // The trace view.
    open(&browser, &serve_page(fixture()).await).await;
    assert_quiet_console(&browser).await;
    browser.screenshot(&artifact("audit-page-fixture.png")).await;
    assert_eq!(texts(&browser, "#count-records strong").await, ["7"]);
    assert_eq!(texts(&browser, "#count-denied strong").await, ["1"]);
    assert_eq!(texts(&browser, "#count-tools strong").await, ["2"]);
    assert!(shown(&browser, "g.node.user").await[0].contains("alice"));
    assert_eq!(
        browser
            .find_all("svg#trace g.node.hop[data-decision=granted]")
            .await
            .len(),
        3
    );
    let denial = shown(&browser, "g.node.hop.denied[data-decision=denied]").await;
    assert_eq!(denial.len(), 1);
    assert!(denial[0].contains("DENIED invalid_target"), "{}", denial[0]);
    // A long reason breaks over two lines, after an underscore.
    assert!(denial[0].contains("audience.not_allowed_for_ client"), "{}", denial[0]);
    assert_eq!(computed(&browser, "g.node.hop.denied rect.box", "stroke").await, RED);
    assert!(shown(&browser, "g.node[data-record-id=r3]").await[0].contains("act: mcp:logs \u{2190} agent:triage"));
    // The edge into the second hop: cost.read granted, cost.approve struck.
    let withheld = browser.find("g.edge[data-to=r3] tspan.withheld").await;
    assert_eq!(
        withheld.attribute("text-decoration").await.as_deref(),
        Some("line-through")
    );
    assert_eq!(
        texts(&browser, "g.edge[data-to=r3] tspan.withheld title").await,
        ["withheld: human_only"]
    );
    assert_eq!(texts(&browser, "g.edge[data-to=r3] tspan.granted").await, ["cost.read"]);
    assert!(
        computed(&browser, "g.edge[data-to=r3] tspan.withheld", "text-decoration")
            .await
            .contains("line-through")
    );
    // Tool calls are leaves; a failed destructive one is marked.
    let tools = shown(&browser, "g.node.tool").await;
    assert_eq!(tools.len(), 2);
    assert!(tools[0].contains("search_logs") && tools[0].contains("succeeded"));
    let bad = browser.find("g.node.tool.destructive.bad").await;
    assert_eq!(bad.attribute("data-record-id").await.as_deref(), Some("r7"));
    assert_eq!(browser.find_all("g.node.other").await.len(), 1);
    // A record whose hash no longer matches is marked, and said so above.
    assert_eq!(browser.find_all("g.node.tampered[data-record-id=r6]").await.len(), 1);
    assert!(
        browser
            .find("#tampered")
            .await
            .text()
            .await
            .starts_with("1 record no longer matches its hash")
    );
    assert!(browser.find_all("#truncated").await.is_empty());
    // Markup in a record is text.
    assert!(tools[1].contains("<img src=x onerror=alert(1)>"), "{}", tools[1]);
    assert!(browser.find_all("img").await.is_empty());
    // A click shows the record and highlights its box.
    browser.find("g.node[data-record-id=r3]").await.click().await;
    let record: Value = serde_json::from_str(&browser.find("pre#record").await.text().await).unwrap();
    assert_eq!(record["issued_jti"], "j2");
    assert_eq!(browser.find_all("g.node.selected").await.len(), 1);
    assert_quiet_console(&browser).await;

    // The search view: rows link to their trace; the next page keeps the query.
    let search = json!({"view": "search",
        "query": {"sub": "alice", "iss": "https://idp.example.com", "since": "2025-06-01T00:00:00Z"},
        "transactions": [
            {"txn": "t-1", "sub": "alice", "sub_iss": "https://idp.example.com", "first": "2025-06-01T09:00:00Z",
             "last": "2025-06-01T09:00:06Z", "records": 7, "denied": 1, "tool_calls": 2,
             "clients": ["triage-agent", "mcp-logs"]},
            {"txn": "t-2", "sub": "alice", "sub_iss": "https://idp.example.com", "first": "2025-06-01T10:00:00Z",
             "last": "2025-06-01T10:00:01Z", "records": 1, "denied": 0, "tool_calls": 0, "clients": ["chat-app"]},
        ],
        "next_cursor": "c&2"});
    let url = serve_page(search).await;
    open(&browser, &url).await;
    assert_quiet_console(&browser).await;
    assert_eq!(browser.find_all("table#transactions tbody tr").await.len(), 2);
    let link = browser.find("tr[data-txn=t-1] a").await;
    assert_eq!(link.attribute("href").await.as_deref(), Some("?txn=t-1"));
    let next = browser.find("a#next-page").await.attribute("href").await.unwrap();
    assert_eq!(
        next,
        "?sub=alice&iss=https%3A%2F%2Fidp.example.com&since=2025-06-01T00%3A00%3A00Z&cursor=c%262"
    );
    assert_eq!(
        browser.find("#search input[name=sub]").await.property("value").await,
        "alice"
    );
    browser.click_to_navigate(&link).await;
    browser.wait_for("body[data-ready]").await;
    assert!(browser.current_url().await.ends_with("/audit/ui?txn=t-1"));
    // A search sends only the fields filled in.
    open(&browser, &url).await;
    browser.find("#search input[name=iss]").await.clear().await;
    browser.find("#search input[name=since]").await.clear().await;
    let sub = browser.find("#search input[name=sub]").await;
    sub.clear().await;
    sub.send_keys("bob").await;
    browser.click_to_navigate(&browser.find("#search button").await).await;
    browser.wait_for("body[data-ready]").await;
    assert!(
        browser.current_url().await.ends_with("/audit/ui?sub=bob"),
        "{}",
        browser.current_url().await
    );

    // The home view: the two forms.
    open(&browser, &serve_page(json!({"view": "home"})).await).await;
    assert_eq!(
        browser.find_all("form#search[method=get] input[name=sub]").await.len(),
        1
    );
    assert_eq!(browser.find_all("form#trace-form input[name=txn]").await.len(), 1);
    assert!(browser.find_all("table, svg#trace").await.is_empty());

    // The error view: the error as text.
    let error =
        json!({"view": "error", "error": "invalid_request", "error_description": "<b>since</b> is not RFC 3339"});
    open(&browser, &serve_page(error).await).await;
    assert_eq!(
        browser.find("#error").await.text().await,
        "invalid_request: <b>since</b> is not RFC 3339"
    );
    assert!(browser.find_all("#error b").await.is_empty());
    assert_quiet_console(&browser).await;
}

/// 150 records: every one is drawn, and the picture scrolls.
#[tokio::test]
async fn a_large_trace_is_drawn_whole_and_scrolls() {
    let mut data = fixture();
    let trace = &mut data["trace"];
    let agent = json!({"sub": "agent:triage", "sub_profile": "ai_agent"});
    let mut kids = Vec::new();
    for i in 0..143 {
        let id = format!("tool-{i}");
        trace["records"].as_array_mut().unwrap().push(json!({
            "id": id, "time": "2025-06-01T09:01:00.000Z", "decision": "granted", "grant": "tool_call",
            "client_id": "mcp-logs", "sub": "alice", "act": agent, "parent_jti": "j1",
            "event": {"tool": format!("search_logs_{i}"), "category": "read", "outcome": "succeeded",
                      "at": "2025-06-01T09:01:00.000Z", "args_sha256": "c".repeat(64)},
        }));
        kids.push(json!({"id": id, "children": []}));
    }
    trace["tree"][0]["children"].as_array_mut().unwrap().extend(kids);
    let browser = fixture_browser().await;
    open(&browser, &serve_page(data).await).await;
    assert_quiet_console(&browser).await;
    assert_eq!(texts(&browser, "#count-records strong").await, ["150"]);
    assert_eq!(
        browser.find_all("svg#trace g.node").await.len(),
        151,
        "every record and the user"
    );
    let scroll = browser
        .execute(
            "const c = document.querySelector('.canvas'); return [c.scrollHeight, c.clientHeight]",
            vec![],
        )
        .await;
    assert!(scroll[0].as_f64() > scroll[1].as_f64(), "the picture scrolls: {scroll}");
    // WebDriver scrolls the last box into view to click it.
    browser.find("g.node[data-record-id=tool-142]").await.click().await;
    assert!(
        browser
            .find("pre#record")
            .await
            .text()
            .await
            .contains("search_logs_142")
    );
    browser.screenshot(&artifact("audit-page-large.png")).await;
}

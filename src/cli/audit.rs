//! `xaa-broker audit trace` and `audit search`: the auditor's view of a
//! running broker, through its audit API (`POST /audit/trace`,
//! `POST /audit/records`).
//!
//! Owns: the HTTP calls, the credentials they carry (flags, or the
//! environment: `XAA_BROKER_URL`, `XAA_AUDIT_CLIENT_ID`,
//! `XAA_AUDIT_CLIENT_SECRET`), and drawing the answers in a terminal.
//! Must never: print a credential, or put one in a URL (HTTP Basic only).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::audit::{AuditRecord, Decision, format_time_ms, parse_instant_ms};
use crate::trace::{TraceNode, TxnSummary, summarise};

/// Where the broker is and who is asking.
#[derive(clap::Args, Debug)]
pub struct Connection {
    /// The broker's base URL (its issuer).
    #[arg(long, env = "XAA_BROKER_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An audit client (`[audit] clients`).
    #[arg(long, env = "XAA_AUDIT_CLIENT_ID")]
    client_id: String,
    /// Its secret; prefer the environment variable, which stays out of the
    /// shell history and the process list.
    #[arg(long, env = "XAA_AUDIT_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Print the broker's JSON instead of the drawing.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// The correlation id (`txn` claim of any token of the transaction).
    txn: String,
    #[command(flatten)]
    conn: Connection,
}

#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// The user (`sub`).
    #[arg(long)]
    sub: Option<String>,
    /// The issuer that vouched for the user (needs --sub).
    #[arg(long, requires = "sub")]
    iss: Option<String>,
    /// Start: RFC 3339 (2026-11-30T14:00:00Z), Unix seconds, or a time ago
    /// (90s, 30m, 2h, 7d). Default: a day before --until.
    #[arg(long)]
    since: Option<String>,
    /// End (exclusive), in the same forms. Default: now.
    #[arg(long)]
    until: Option<String>,
    /// Read at most this many records.
    #[arg(long, default_value_t = 10_000)]
    max_records: usize,
    #[command(flatten)]
    conn: Connection,
}

pub fn trace(args: TraceArgs) -> ExitCode {
    finish(run(|| async {
        let body = post(&args.conn, "/audit/trace", &[("txn", args.txn.as_str())]).await?;
        if args.conn.json {
            println!("{}", serde_json::to_string_pretty(&body)?);
        } else {
            print!("{}", draw_trace(&body)?);
        }
        Ok(())
    }))
}

pub fn search(args: SearchArgs) -> ExitCode {
    finish(run(|| async {
        let mut form: Vec<(&str, String)> = vec![("limit", "1000".into())];
        if let Some(s) = &args.sub {
            form.push(("sub", s.clone()));
        }
        if let Some(i) = &args.iss {
            form.push(("iss", i.clone()));
        }
        let now_ms = crate::types::now_secs() * 1000;
        if let Some(t) = &args.since {
            form.push(("since", time_arg(t, now_ms).context("--since")?));
        }
        if let Some(t) = &args.until {
            form.push(("until", time_arg(t, now_ms).context("--until")?));
        }
        let mut records: Vec<AuditRecord> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut f: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(c) = &cursor {
                f.push(("cursor", c));
            }
            let body = post(&args.conn, "/audit/records", &f).await?;
            let page: Vec<AuditRecord> = serde_json::from_value(body["records"].clone())
                .context("the broker's answer is not a list of audit records")?;
            records.extend(page);
            cursor = body["next_cursor"].as_str().map(str::to_owned);
            if cursor.is_none() || records.len() >= args.max_records {
                break;
            }
        }
        let found = summarise(&records);
        if args.conn.json {
            println!("{}", serde_json::to_string_pretty(&found)?);
        } else {
            print!("{}", draw_search(&found));
        }
        if cursor.is_some() {
            eprintln!(
                "stopped after {} records (--max-records); narrow the range",
                records.len()
            );
        }
        Ok(())
    }))
}

fn run<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f())
}

fn finish(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `POST {broker}/audit/trace` for `txn` as the audit client `client_id`:
/// the broker's JSON answer, what [`draw_trace`] draws (`examples/demo.rs`
/// reads its run's trace with it).
pub async fn fetch_trace(broker: &str, client_id: &str, client_secret: &str, txn: &str) -> anyhow::Result<Value> {
    let conn = Connection {
        url: broker.to_owned(),
        client_id: client_id.to_owned(),
        client_secret: client_secret.to_owned(),
        json: true,
    };
    post(&conn, "/audit/trace", &[("txn", txn)]).await
}

/// POST a form to the broker as the audit client; the JSON answer, or the
/// OAuth error it sent.
async fn post(conn: &Connection, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Value> {
    let url = format!("{}{path}", conn.url.trim_end_matches('/'));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let response = http
        .post(&url)
        .basic_auth(&conn.client_id, Some(&conn.client_secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter())
                .finish(),
        )
        .send()
        .await
        .with_context(|| format!("cannot reach the broker at {url}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {} ({})",
            body["error"].as_str().unwrap_or("?"),
            body["error_description"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

/// `--since`/`--until`: RFC 3339 and Unix seconds go as they are; a
/// duration (`90s`, `30m`, `2h`, `7d`) means that long before now.
fn time_arg(text: &str, now_ms: i64) -> anyhow::Result<String> {
    if parse_instant_ms(text).is_some() {
        return Ok(text.to_owned());
    }
    let (n, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = n
        .parse()
        .with_context(|| format!("{text:?} is not RFC 3339, Unix seconds, or a duration like 2h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("{text:?}: a duration ends in s, m, h or d"),
    };
    Ok(format_time_ms(now_ms - secs * 1000))
}

/// A unit enum as the word it serialises to (`read`, `succeeded`).
fn word(v: &impl serde::Serialize) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The act chain as `current ← previous ← …`.
fn act_chain(r: &AuditRecord) -> String {
    r.act
        .as_ref()
        .map(|a| a.entries().map(|e| e.sub.as_str()).collect::<Vec<_>>().join(" ← "))
        .unwrap_or_default()
}

/// One record as one line (without indentation).
fn line(r: &AuditRecord) -> String {
    let who = match act_chain(r) {
        a if a.is_empty() => r.client_id.clone().unwrap_or_else(|| "?".into()),
        a => format!("{} [act {a}]", r.client_id.as_deref().unwrap_or("?")),
    };
    if let Some(e) = &r.event {
        // Who made the call: the token's current actor (an agent or a
        // service), or the user directly when no one acts for them.
        let caller = match r.act.as_ref() {
            Some(a) => format!("{} [{}]", a.sub, a.sub_profile.as_deref().unwrap_or("unprofiled")),
            None => "the user directly".into(),
        };
        let mut l = format!(
            "{}  TOOL     {} ({}) {}  at {}  caller {caller}  args {}",
            r.time,
            e.tool,
            word(&e.category),
            word(&e.outcome),
            r.client_id.as_deref().unwrap_or("?"),
            &e.args_sha256[..e.args_sha256.len().min(12)],
        );
        if let Some(s) = &e.summary {
            l.push_str(&format!("  \"{s}\""));
        }
        return l;
    }
    let what = r.grant.as_deref().unwrap_or("?");
    let decision = match r.decision {
        Decision::Granted => "GRANTED",
        Decision::Denied => "DENIED ",
    };
    let mut l = format!("{}  {decision}  {what}  {who}", r.time);
    if let Some(aud) = &r.audience {
        l.push_str(&format!("  → {aud}"));
    }
    if let Some(scope) = &r.scope_granted {
        l.push_str(&format!("  scope: {scope}"));
    }
    for w in &r.scope_withheld {
        l.push_str(&format!("  {} withheld: {}", w.scope, w.reason));
    }
    if !r.delegated_through.is_empty() {
        let via: Vec<&str> = r.delegated_through.iter().map(|e| e.sub.as_str()).collect();
        l.push_str(&format!("  delegated through {}", via.join(", ")));
    }
    if let Some(jkt) = &r.dpop_jkt {
        // The key the request proved (RFC 9449), by its thumbprint's start.
        let bound = if r.decision == Decision::Granted {
            "bound to"
        } else {
            "proved"
        };
        let start: String = jkt.chars().take(12).collect();
        l.push_str(&format!("  {bound} DPoP key {start}…"));
    }
    if r.decision == Decision::Denied {
        l.push_str(&format!(
            "  {} ({})",
            r.error.as_deref().unwrap_or("?"),
            r.reason.as_deref().unwrap_or("?")
        ));
    } else if let Some(note) = &r.reason {
        l.push_str(&format!("  ({note})"));
    }
    l
}

/// The trace as a tree: one line per record, indented by depth; under each
/// hop first the tool calls made with its token, then the hops after it.
pub fn draw_trace(body: &Value) -> anyhow::Result<String> {
    let records: Vec<AuditRecord> =
        serde_json::from_value(body["records"].clone()).context("the broker's answer has no records")?;
    let tree: Vec<TraceNode> =
        serde_json::from_value(body["tree"].clone()).context("the broker's answer has no tree")?;
    let by_id: std::collections::HashMap<&str, &AuditRecord> = records.iter().map(|r| (r.id.as_str(), r)).collect();
    let mut out = String::new();
    let user = records
        .iter()
        .find_map(|r| r.sub.as_ref().map(|s| (s, r.sub_iss.as_deref().unwrap_or("?"))));
    let denied = records.iter().filter(|r| r.decision == Decision::Denied).count();
    let tools = records.iter().filter(|r| r.event.is_some()).count();
    out.push_str(&format!(
        "txn {}  user {}  {} records, {denied} denied, {tools} tool calls\n",
        body["txn"].as_str().unwrap_or("?"),
        user.map(|(s, i)| format!("{s} ({i})")).unwrap_or_else(|| "?".into()),
        records.len(),
    ));
    fn walk(
        nodes: &[TraceNode],
        depth: usize,
        by_id: &std::collections::HashMap<&str, &AuditRecord>,
        out: &mut String,
    ) {
        let (tools, hops): (Vec<&TraceNode>, Vec<&TraceNode>) = nodes
            .iter()
            .partition(|n| by_id.get(n.id.as_str()).is_some_and(|r| r.event.is_some()));
        for n in tools.into_iter().chain(hops) {
            if let Some(r) = by_id.get(n.id.as_str()) {
                out.push_str(&format!("{}{}\n", "  ".repeat(depth), line(r)));
            }
            walk(&n.children, depth + 1, by_id, out);
        }
    }
    walk(&tree, 0, &by_id, &mut out);
    if body["truncated"] == true {
        out.push_str("(cut at the most records a trace returns)\n");
    }
    if let Some(t) = body["tampered"].as_array().filter(|t| !t.is_empty()) {
        out.push_str(&format!(
            "WARNING: {} record(s) no longer match their hash: {}\n",
            t.len(),
            t.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    Ok(out)
}

/// Transactions as a table.
pub fn draw_search(found: &[TxnSummary]) -> String {
    let mut out = format!(
        "{:<36}  {:<16}  {:<24}  {:<24}  {:>7}  {:>6}  {:>5}  clients\n",
        "txn", "user", "first", "last", "records", "denied", "tools"
    );
    for t in found {
        out.push_str(&format!(
            "{:<36}  {:<16}  {:<24}  {:<24}  {:>7}  {:>6}  {:>5}  {}\n",
            t.txn,
            t.sub.as_deref().unwrap_or("-"),
            t.first,
            t.last,
            t.records,
            t.denied,
            t.tool_calls,
            t.clients.iter().cloned().collect::<Vec<_>>().join(",")
        ));
    }
    out.push_str(&format!("{} transactions\n", found.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_mean_that_long_ago_and_times_pass_through() {
        let now = 1_800_000_000_000;
        assert_eq!(time_arg("2h", now).unwrap(), format_time_ms(now - 7_200_000));
        assert_eq!(time_arg("7d", now).unwrap(), format_time_ms(now - 7 * 86_400_000));
        assert_eq!(time_arg("1796047200", now).unwrap(), "1796047200");
        assert_eq!(time_arg("2026-11-30T14:00:00Z", now).unwrap(), "2026-11-30T14:00:00Z");
        assert!(time_arg("soon", now).is_err());
        assert!(time_arg("3w", now).is_err());
    }

    #[test]
    fn a_line_names_the_dpop_key_and_the_delegation_list() {
        let mut r = AuditRecord::begin(1_800_000_000_000, None, None);
        r.decision = Decision::Granted;
        r.client_id = Some("triage-agent".into());
        r.dpop_proved("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
        r.delegated_through(&[crate::chain::Act {
            sub: "agent:z".into(),
            iss: None,
            sub_profile: None,
            act: None,
        }]);
        let l = line(&r);
        assert!(l.contains("bound to DPoP key 0ZcOCORZNYy-…"), "{l}");
        assert!(l.contains("delegated through agent:z"), "{l}");
        r.decision = Decision::Denied;
        assert!(line(&r).contains("proved DPoP key"), "a denied request bound nothing");
    }
}

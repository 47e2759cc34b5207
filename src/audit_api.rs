//! The auditor's reads: one transaction as a tree (`POST /audit/trace`),
//! records by user and time range a page at a time (`POST /audit/records`),
//! and the data the audit page draws (`GET /audit/ui`).
//!
//! Owns: who may read the trail (clients in `audit.clients`, authenticated
//! like any client), the bounds of each query, and that every read is itself
//! recorded (who looked at what: the record's `query`).
//! Must never: answer before the caller is authenticated and listed, return
//! a token (records hold none), or let one query cost without bound (a page
//! holds at most `MAX_LIMIT` records; a trace at most
//! `store::MAX_TRACE_RECORDS`).

use serde_json::{Value, json};

use crate::audit::{format_time_ms, parse_instant_ms};
use crate::endpoint::Call;
use crate::error::{OAuthError, OAuthResult};
use crate::params::{OAuthParams, OAuthRequest};
use crate::state::AppState;
use crate::store::{MAX_TRACE_RECORDS, SearchQuery};
use crate::trace::{lineage, summarise};

/// Records a page holds when the query names no `limit`, and the most.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// A search without `since` covers this long before `until`.
pub const DEFAULT_RANGE_MS: i64 = 24 * 3600 * 1000;

/// Records the page's search (and `audit search`) reads to list
/// transactions, at most.
pub const MAX_SEARCH_SCAN: usize = 5000;

/// Longest `txn`, `sub`, `iss` or cursor accepted: longer is not ours.
const MAX_VALUE: usize = 512;

/// Authenticate the caller and check it may read the trail.
async fn auditor(call: &mut Call<'_>, req: &OAuthRequest) -> OAuthResult<()> {
    let client = call.authenticate(req).await?;
    if !call.policy.audit.clients.contains(&client.id) {
        return Err(OAuthError::unauthorized_client(
            "audit.not_auditor",
            "this client may not read the audit trail (audit.clients)",
        ));
    }
    Ok(())
}

fn bounded<'p>(params: &'p OAuthParams, name: &'static str) -> OAuthResult<Option<&'p str>> {
    match params.get(name) {
        // (An empty value never gets here: it counts as omitted.)
        Some(v) if v.len() > MAX_VALUE => Err(OAuthError::invalid_request(
            "audit.parameter_length",
            format!("{name} must be at most {MAX_VALUE} bytes"),
        )),
        other => Ok(other),
    }
}

/// The records of one transaction, in the order recorded, with their
/// lineage tree: `{"txn", "records", "tree", "truncated", "tampered"}`.
/// `tampered` lists records whose hash no longer matches their content.
async fn trace_of(state: &AppState, txn: &str) -> OAuthResult<Value> {
    let records = state
        .store
        .audit_by_txn(txn)
        .await
        .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
    let tampered: Vec<&str> = records
        .iter()
        .filter(|r| !r.is_intact())
        .map(|r| r.id.as_str())
        .collect();
    Ok(json!({
        "txn": txn,
        "tree": lineage(&records),
        "truncated": records.len() >= MAX_TRACE_RECORDS,
        "tampered": tampered,
        "records": records,
    }))
}

/// `POST /audit/trace` (`txn=`).
pub async fn trace(state: &AppState, req: &OAuthRequest) -> OAuthResult<Value> {
    let mut call = Call::begin(state, &req.caller, "audit.trace");
    let result = async {
        auditor(&mut call, req).await?;
        let txn = bounded(&req.params, "txn")?
            .ok_or_else(|| OAuthError::invalid_request("audit.txn_missing", "send txn: the correlation id"))?;
        call.audit.query = Some(format!("txn={txn}"));
        trace_of(state, txn).await
    }
    .await;
    call.finish(result).await
}

/// A time parameter: RFC 3339, or Unix seconds.
fn time_param(params: &OAuthParams, name: &'static str) -> OAuthResult<Option<i64>> {
    let Some(v) = bounded(params, name)? else {
        return Ok(None);
    };
    parse_instant_ms(v).map(Some).ok_or_else(|| {
        OAuthError::invalid_request(
            "audit.time_malformed",
            format!("{name} must be an RFC 3339 time (2026-11-30T14:00:00Z) or Unix seconds"),
        )
    })
}

/// The search a request asks for; `now_ms` ends a range with no `until`.
fn search_query(params: &OAuthParams, now_ms: i64, default_limit: usize) -> OAuthResult<SearchQuery> {
    let until_ms = time_param(params, "until")?.unwrap_or(now_ms + 1);
    let since_ms = time_param(params, "since")?.unwrap_or(until_ms - DEFAULT_RANGE_MS);
    if since_ms >= until_ms {
        return Err(OAuthError::invalid_request(
            "audit.time_range",
            "since must be before until",
        ));
    }
    let iss = bounded(params, "iss")?.map(str::to_owned);
    let sub = bounded(params, "sub")?.map(str::to_owned);
    if iss.is_some() && sub.is_none() {
        return Err(OAuthError::invalid_request(
            "audit.iss_without_sub",
            "iss qualifies sub: send sub too",
        ));
    }
    let limit = match params.get("limit") {
        None => default_limit,
        Some(l) => l.parse().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
            OAuthError::invalid_request("audit.limit", format!("limit must be a number from 1 to {MAX_LIMIT}"))
        })?,
    };
    Ok(SearchQuery {
        sub,
        iss,
        since_ms,
        until_ms,
        cursor: bounded(params, "cursor")?.map(str::to_owned),
        limit,
    })
}

fn describe(q: &SearchQuery) -> String {
    let mut d = format!(
        "since={} until={}",
        format_time_ms(q.since_ms),
        format_time_ms(q.until_ms)
    );
    if let Some(sub) = &q.sub {
        d = format!("sub={sub} {d}");
    }
    if let Some(iss) = &q.iss {
        d = format!("iss={iss} {d}");
    }
    d
}

/// `POST /audit/records` (`sub`, `iss`, `since`, `until`, `cursor`,
/// `limit`): `{"records", "next_cursor"}`, oldest first.
pub async fn records(state: &AppState, req: &OAuthRequest) -> OAuthResult<Value> {
    let mut call = Call::begin(state, &req.caller, "audit.records");
    let now_ms = state.clock.now_ms();
    let result = async {
        auditor(&mut call, req).await?;
        let query = search_query(&req.params, now_ms, DEFAULT_LIMIT)?;
        call.audit.query = Some(describe(&query));
        let page = state
            .store
            .audit_search(&query)
            .await
            .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
        Ok(json!({"records": page.records, "next_cursor": page.next_cursor}))
    }
    .await;
    call.finish(result).await
}

/// Read pages from `query` until `MAX_SEARCH_SCAN` records, summarised as
/// transactions, with the cursor to continue from if the scan stopped.
async fn transactions(state: &AppState, mut query: SearchQuery) -> OAuthResult<Value> {
    let mut records = Vec::new();
    loop {
        query.limit = MAX_LIMIT.min(MAX_SEARCH_SCAN - records.len()).max(1);
        let page = state
            .store
            .audit_search(&query)
            .await
            .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
        records.extend(page.records);
        query.cursor = page.next_cursor;
        if query.cursor.is_none() || records.len() >= MAX_SEARCH_SCAN {
            break;
        }
    }
    Ok(json!({"transactions": summarise(&records), "next_cursor": query.cursor}))
}

/// `GET /audit/ui`: what the page draws, by its query: `txn=` a trace;
/// `sub`/`since`/`until` a list of transactions; nothing, the search form.
/// Only the page's own parameters are read: a secret in a URL is never a
/// credential (the page authenticates with the `Authorization` header).
pub async fn page(state: &AppState, req: &OAuthRequest) -> OAuthResult<Value> {
    let mut call = Call::begin(state, &req.caller, "audit.page");
    let now_ms = state.clock.now_ms();
    let result = async {
        auditor(&mut call, req).await?;
        let params = &req.params;
        if let Some(txn) = bounded(params, "txn")? {
            call.audit.query = Some(format!("txn={txn}"));
            return Ok(json!({"view": "trace", "query": {"txn": txn}, "trace": trace_of(state, txn).await?}));
        }
        if ["sub", "since", "until", "cursor"]
            .iter()
            .all(|p| params.get(p).is_none())
        {
            return Ok(json!({"view": "home"}));
        }
        let query = search_query(params, now_ms, MAX_LIMIT)?;
        call.audit.query = Some(describe(&query));
        let mut found = transactions(state, query.clone()).await?;
        if let Value::Object(m) = &mut found {
            m.insert("view".into(), json!("search"));
            m.insert(
                "query".into(),
                json!({
                    "sub": query.sub, "iss": query.iss,
                    "since": format_time_ms(query.since_ms), "until": format_time_ms(query.until_ms),
                }),
            );
        }
        Ok(found)
    }
    .await;
    call.finish(result).await
}

/// The page's own query parameters: anything else in its URL is ignored.
pub const PAGE_PARAMS: [&str; 6] = ["txn", "sub", "iss", "since", "until", "cursor"];

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> OAuthParams {
        OAuthParams::parse(q.as_bytes()).unwrap()
    }

    const NOW: i64 = 1_800_000_000_000;

    #[test]
    fn a_search_defaults_to_the_last_day() {
        let q = search_query(&params(""), NOW, 10).unwrap();
        assert_eq!((q.since_ms, q.until_ms), (NOW + 1 - DEFAULT_RANGE_MS, NOW + 1));
        assert_eq!(q.limit, 10);
    }

    #[test]
    fn times_are_rfc3339_or_unix_seconds() {
        let q = search_query(&params("since=2026-11-30T14:00:00Z&until=1796050800"), NOW, 10).unwrap();
        assert_eq!(q.since_ms, 1_796_047_200_000);
        assert_eq!(q.until_ms, 1_796_050_800_000);
    }

    #[test]
    fn malformed_queries_are_invalid_requests() {
        let long_sub = format!("sub={}", "x".repeat(MAX_VALUE + 1));
        for (q, reason) in [
            ("since=yesterday", "audit.time_malformed"),
            ("since=2000&until=1000", "audit.time_range"),
            ("iss=https://idp.example.com", "audit.iss_without_sub"),
            ("limit=0", "audit.limit"),
            ("limit=1001", "audit.limit"),
            (long_sub.as_str(), "audit.parameter_length"),
        ] {
            let e = search_query(&params(q), NOW, 10).unwrap_err();
            assert_eq!(e.reason, reason, "{q}");
        }
    }
}

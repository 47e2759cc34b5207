//! `POST /audit/events`: a resource server (an MCP server, an API) reports
//! what it did with a token it received — a tool call or a method — so the
//! call joins the transaction's trace and the hash chain.
//!
//! Owns: the rule that the broker, never the reporter, says whose call it
//! was. The reporter authenticates as its client and presents the token it
//! acted on (`token`), which must be one of ours whose audience is the
//! reporter's own `resource`; or the `jti` of a token issued to the reporter
//! itself (`token_jti`). `sub`, `act`, `txn` and the audience come from that
//! token (or its issuing record), never from the body, so no server can
//! attribute an action to someone else's transaction. And the bounds of
//! what is reported: a name, a category, an outcome, a time, a SHA-256 of
//! the arguments and an optional short summary — never the arguments.
//! Must never: record a report before the reporter is authenticated, take
//! an identity from the body, or keep the token (only its `jti`).

use serde_json::{Value, json};

use crate::audit::{ToolEvent, ToolOutcome, format_time_ms, parse_instant_ms};
use crate::endpoint::Call;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::params::{OAuthParams, OAuthRequest};
use crate::policy::Category;
use crate::state::AppState;
use crate::store::JTI_REPORT_GRACE_SECS;
use crate::types::Principal;

/// Longest tool name, summary and call id kept.
pub const MAX_TOOL_NAME: usize = 128;
pub const MAX_SUMMARY: usize = 256;
pub const MAX_CALL_ID: usize = 64;

/// What the reported call was done with.
struct About {
    jti: Option<String>,
    txn: Option<String>,
    principal: Principal,
    act: Option<crate::chain::Act>,
    audience: Option<String>,
}

pub async fn report(state: &AppState, req: &OAuthRequest) -> OAuthResult<Value> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "tool_call");
    let result = async {
        let client = call.authenticate(req).await?;
        let event = parse_event(params, call.now, call.policy.tokens.clock_skew_secs)?;
        let about = match (params.get("token"), params.get("token_jti")) {
            (Some(token), None) => {
                call.audit.subject_presented(token);
                let v = call
                    .validator()
                    .validate_reported(token, JTI_REPORT_GRACE_SECS)
                    .await
                    .map_err(|r| r.into_error(ErrorCode::InvalidRequest, "token"))?;
                let audience = v.claims.aud.as_ref().and_then(|a| a.single()).map(str::to_owned);
                // Only the resource server the token was issued for saw it used.
                let own = client.resource.as_deref();
                if own.is_none() || audience.as_deref() != own {
                    return Err(OAuthError::unauthorized_client(
                        "event.not_your_resource",
                        "a client reports only on tokens issued for its own resource (clients.*.resource)",
                    ));
                }
                let principal = Principal {
                    iss: v.claims.sub_id_issuer().unwrap_or(&call.policy.issuer).to_owned(),
                    sub: v.sub.clone(),
                };
                if let Some(f) = &mut call.audit.subject_token {
                    f.identify(&call.policy.issuer, v.claims.jti.as_deref());
                }
                About {
                    jti: v.claims.jti.clone(),
                    txn: v.claims.txn.clone(),
                    act: v.claims.act_chain().ok().flatten(),
                    principal,
                    audience,
                }
            }
            (None, Some(jti)) => {
                let issued = state
                    .store
                    .audit_by_issued_jti(jti)
                    .await
                    .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
                // One answer whether the jti is unknown or another client's:
                // a reporter learns nothing about tokens that are not its own.
                // Past the grace the token may no longer be reported on,
                // whether or not the store still holds its record.
                let now = call.now;
                let issued = issued.filter(|r| {
                    r.client_id.as_deref() == Some(client.id.as_str())
                        && r.issued_exp
                            .is_some_and(|exp| exp.saturating_add(JTI_REPORT_GRACE_SECS) > now)
                });
                let Some(r) = issued else {
                    return Err(OAuthError::invalid_request(
                        "event.jti_unknown",
                        "token_jti names no token issued to this client in the last day",
                    ));
                };
                About {
                    jti: r.issued_jti.clone(),
                    txn: r.txn.clone(),
                    principal: Principal {
                        iss: r.sub_iss.clone().unwrap_or_default(),
                        sub: r.sub.clone().unwrap_or_default(),
                    },
                    act: r.act.clone(),
                    audience: r.audience.clone(),
                }
            }
            _ => {
                return Err(OAuthError::invalid_request(
                    "event.token_missing",
                    "send exactly one of token (the token the call was made with) or token_jti",
                ));
            }
        };
        call.audit
            .about(about.jti.as_deref(), about.txn.as_deref(), &about.principal);
        call.audit.act = about.act;
        call.audit.audience = about.audience;
        call.audit.event = Some(event);
        let id = call.audit.id.clone();
        Ok(json!({"recorded": id, "txn": about.txn}))
    }
    .await;
    call.finish(result).await
}

fn invalid(reason: &'static str, description: String) -> OAuthError {
    OAuthError::invalid_request(reason, description)
}

/// The reported event, bounded. `now`: the request's instant.
fn parse_event(params: &OAuthParams, now: i64, skew: i64) -> OAuthResult<ToolEvent> {
    let tool = params.require("tool")?;
    if tool.is_empty() || tool.chars().count() > MAX_TOOL_NAME || tool.chars().any(char::is_control) {
        return Err(invalid(
            "event.tool",
            format!("tool must be 1 to {MAX_TOOL_NAME} characters without control characters"),
        ));
    }
    let category = match params.require("category")? {
        "read" => Category::Read,
        "write" => Category::Write,
        "destructive" => Category::Destructive,
        "admin" => Category::Admin,
        _ => {
            return Err(invalid(
                "event.category",
                "category must be read, write, destructive or admin".into(),
            ));
        }
    };
    let outcome = ToolOutcome::parse(params.require("outcome")?).ok_or_else(|| {
        invalid(
            "event.outcome",
            "outcome must be allowed, denied, succeeded or failed".into(),
        )
    })?;
    let args_sha256 = params.require("args_sha256")?;
    if args_sha256.len() != 64 || !args_sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(invalid(
            "event.args_sha256",
            "args_sha256 must be the SHA-256 of the arguments, 64 lowercase hex digits".into(),
        ));
    }
    let summary = match params.get("summary") {
        None => None,
        Some(s) if s.chars().count() > MAX_SUMMARY => {
            return Err(invalid(
                "event.summary",
                format!(
                    "summary must be at most {MAX_SUMMARY} characters (a redacted description, never the arguments)"
                ),
            ));
        }
        Some(s) => Some(s.chars().filter(|c| !c.is_control()).collect::<String>()).filter(|s| !s.is_empty()),
    };
    let call_id = match params.get("call_id") {
        None => None,
        Some(c)
            if !c.is_empty()
                && c.len() <= MAX_CALL_ID
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)) =>
        {
            Some(c.to_owned())
        }
        Some(_) => {
            return Err(invalid(
                "event.call_id",
                format!("call_id must be 1 to {MAX_CALL_ID} characters of A-Z a-z 0-9 . _ : -"),
            ));
        }
    };
    let at_ms = match params.get("at") {
        None => now * 1000,
        Some(at) => {
            let ms = parse_instant_ms(at)
                .ok_or_else(|| invalid("event.at", "at must be an RFC 3339 time or Unix seconds".into()))?;
            // A report may come late (a long call), never from the future.
            if ms > (now + skew) * 1000 || ms < (now - JTI_REPORT_GRACE_SECS) * 1000 {
                return Err(invalid(
                    "event.at_out_of_range",
                    "at must be within the last day and not in the future".into(),
                ));
            }
            ms
        }
    };
    Ok(ToolEvent {
        tool: tool.to_owned(),
        category,
        outcome,
        at: format_time_ms(at_ms),
        args_sha256: args_sha256.to_owned(),
        summary,
        call_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn event(q: &str) -> OAuthResult<ToolEvent> {
        parse_event(&OAuthParams::parse(q.as_bytes()).unwrap(), NOW, 60)
    }

    const OK: &str = "tool=execute_query&category=destructive&outcome=succeeded&args_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn a_complete_report_is_kept_as_sent() {
        let e = event(&format!("{OK}&summary=dropped%20table%20t1&call_id=c-1&at=1799999990")).unwrap();
        assert_eq!(e.tool, "execute_query");
        assert_eq!(e.category, Category::Destructive);
        assert_eq!(e.outcome, ToolOutcome::Succeeded);
        assert_eq!(e.summary.as_deref(), Some("dropped table t1"));
        assert_eq!(e.at, format_time_ms(1_799_999_990_000));
    }

    #[test]
    fn control_characters_are_stripped_from_the_summary() {
        let e = event(&format!("{OK}&summary=a%0Ab%1Bc")).unwrap();
        assert_eq!(e.summary.as_deref(), Some("abc"));
    }

    #[test]
    fn every_bound_is_a_clear_invalid_request() {
        let long = "x".repeat(MAX_SUMMARY + 1);
        for (q, reason) in [
            (
                OK.replace("execute_query", &"x".repeat(MAX_TOOL_NAME + 1)),
                "event.tool",
            ),
            (OK.replace("execute_query", "a%0Ab"), "event.tool"),
            (OK.replace("destructive", "dangerous"), "event.category"),
            (OK.replace("succeeded", "maybe"), "event.outcome"),
            (OK.replace("e3b0", "E3B0"), "event.args_sha256"),
            (OK.replace("e3b0", "e3b"), "event.args_sha256"),
            (format!("{OK}&summary={long}"), "event.summary"),
            (format!("{OK}&call_id=a%20b"), "event.call_id"),
            (format!("{OK}&at=tomorrow"), "event.at"),
            (format!("{OK}&at={}", NOW + 3600), "event.at_out_of_range"),
            (format!("{OK}&at={}", NOW - 2 * 86_400), "event.at_out_of_range"),
        ] {
            assert_eq!(event(&q).unwrap_err().reason, reason, "{q}");
        }
        assert_eq!(
            event("category=read&outcome=allowed").unwrap_err().reason,
            "request.missing_parameter"
        );
    }
}

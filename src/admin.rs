//! The admin API: revoke by correlation id or by subject, read the audit
//! trail of a correlation id, and read the summaries of unauthenticated noise.
//!
//! Owns: `POST /admin/revoke` (`txn=` or `sub=`) and `POST /admin/audit`
//! (`txn=`, or `unauthenticated=true` with an optional `limit`). Callers
//! authenticate like any client (Basic, post or private_key_jwt) and must be
//! listed in `admin.clients`.
//! Must never: answer a caller that is not an admin client (403-equivalent
//! `unauthorized_client`), or return a token (records hold none).

use serde_json::json;

use crate::endpoint::Call;
use crate::error::{OAuthError, OAuthResult};
use crate::params::{OAuthParams, OAuthRequest};
use crate::state::AppState;
use crate::store::{Effect, Revocation};
use crate::types::Principal;

async fn admin_call(call: &mut Call<'_>, req: &OAuthRequest) -> OAuthResult<()> {
    let client = call.authenticate(req).await?;
    if !call.policy.admin_clients.contains(&client.id) {
        return Err(OAuthError::unauthorized_client(
            "admin.not_admin",
            "this client may not use the admin API (admin.clients)",
        ));
    }
    Ok(())
}

/// Revoke every token of a correlation id (`txn=`), or every token of a user
/// (`sub=` with `iss=`, the issuer that vouched for them) issued until now.
/// Kept for the revocation horizon.
pub async fn revoke(state: &AppState, req: &OAuthRequest) -> OAuthResult<serde_json::Value> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "admin.revoke");
    let result = async {
        admin_call(&mut call, req).await?;
        let until = call.now + call.policy.revocation_horizon_secs();
        let (revocation, what) = match (params.get("txn"), params.get("sub")) {
            (Some(txn), None) => {
                call.audit.chain(txn, None);
                (Revocation::Txn(txn.to_owned()), json!({"txn": txn}))
            }
            (None, Some(sub)) => {
                // A subject is only unique within the issuer that vouched
                // for it: `bob` of one IdP is never `bob` of another.
                let iss = params.get("iss").ok_or_else(|| {
                    OAuthError::invalid_request(
                        "admin.revoke_iss",
                        "revoking by sub needs iss: the issuer that vouched for the user",
                    )
                })?;
                let known = iss == call.policy.issuer || call.policy.issuers.contains_key(iss);
                if !known {
                    return Err(OAuthError::invalid_request(
                        "admin.revoke_unknown_iss",
                        "iss is neither this server nor a trusted issuer",
                    ));
                }
                let principal = Principal {
                    iss: iss.to_owned(),
                    sub: sub.to_owned(),
                };
                call.audit.about(None, None, &principal);
                (
                    Revocation::SubjectBefore {
                        principal,
                        before: call.now,
                    },
                    json!({"sub": sub, "iss": iss, "issued_before": call.now}),
                )
            }
            _ => {
                return Err(OAuthError::invalid_request(
                    "admin.revoke_target",
                    "send exactly one of txn or sub",
                ));
            }
        };
        // An effect of the commit: a refused call (a replayed client
        // assertion) revokes nothing, and the record says what happened.
        call.effects.push(Effect {
            revocation,
            expires_at: until,
        });
        call.audit.note("revoked");
        Ok(json!({"revoked": what, "until": until}))
    }
    .await;
    call.finish(result).await
}

/// Summaries returned when the query names no `limit`, and the most it may.
const DEFAULT_NOISE_LIMIT: usize = 100;
const MAX_NOISE_LIMIT: usize = 1000;

/// What `/admin/audit` was asked for: exactly one of the two.
enum AuditQuery {
    Txn(String),
    Unauthenticated { limit: usize },
}

fn audit_query(params: &OAuthParams) -> OAuthResult<AuditQuery> {
    match (params.get("txn"), params.get("unauthenticated")) {
        (Some(txn), None) => Ok(AuditQuery::Txn(txn.to_owned())),
        (None, Some("true")) => {
            let limit = match params.get("limit") {
                None => DEFAULT_NOISE_LIMIT,
                Some(l) => l
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_NOISE_LIMIT).contains(l))
                    .ok_or_else(|| {
                        OAuthError::invalid_request(
                            "admin.audit_limit",
                            format!("limit must be a number from 1 to {MAX_NOISE_LIMIT}"),
                        )
                    })?,
            };
            Ok(AuditQuery::Unauthenticated { limit })
        }
        _ => Err(OAuthError::invalid_request(
            "admin.audit_target",
            "send exactly one of txn or unauthenticated=true",
        )),
    }
}

/// The audit records of one correlation id, oldest first; or, with
/// `unauthenticated=true`, the newest summaries of unauthenticated noise
/// (decisions §13), newest first.
pub async fn audit(state: &AppState, req: &OAuthRequest) -> OAuthResult<serde_json::Value> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "admin.audit");
    let result = async {
        admin_call(&mut call, req).await?;
        let body = match audit_query(params)? {
            AuditQuery::Txn(txn) => {
                let records = state
                    .store
                    .audit_by_txn(&txn)
                    .await
                    .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
                call.audit.chain(&txn, None);
                json!({"txn": txn, "records": records})
            }
            AuditQuery::Unauthenticated { limit } => {
                let summaries = state
                    .store
                    .unauthenticated(limit)
                    .await
                    .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
                json!({"unauthenticated": summaries})
            }
        };
        Ok(body)
    }
    .await;
    call.finish(result).await
}

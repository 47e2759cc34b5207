//! The admin API: revoke by correlation id or by subject, and read the audit
//! trail of a correlation id.
//!
//! Owns: `POST /admin/revoke` (`txn=` or `sub=`) and `POST /admin/audit`
//! (`txn=`). Callers authenticate like any client (Basic, post or
//! private_key_jwt) and must be listed in `admin.clients`.
//! Must never: answer a caller that is not an admin client (403-equivalent
//! `unauthorized_client`), or return a token (records hold none).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::endpoint::Call;
use crate::error::{OAuthError, OAuthResult, no_store_headers};
use crate::http::extract::OAuthParams;
use crate::store::{Effect, Principal, Revocation};

async fn admin_call<'a>(call: &mut Call<'a>, headers: &HeaderMap, params: &OAuthParams) -> OAuthResult<()> {
    let client = call.authenticate(headers, params).await?;
    if !call.policy.admin_clients.contains(&client.id) {
        return Err(OAuthError::unauthorized_client(
            "admin.not_admin",
            "this client may not use the admin API (admin.clients)",
        ));
    }
    Ok(())
}

fn json_no_store(v: serde_json::Value) -> Response {
    let mut r = Json(v).into_response();
    no_store_headers(r.headers_mut());
    r
}

/// Revoke every token of a correlation id (`txn=`), or every token of a user
/// (`sub=` with `iss=`, the issuer that vouched for them) issued until now.
/// Kept for the revocation horizon.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let mut call = Call::begin(&state, &headers, Some(peer.ip()), "admin.revoke");
    let result = async {
        admin_call(&mut call, &headers, &params).await?;
        let until = call.now + call.policy.revocation_horizon_secs();
        let (revocation, what) = match (params.get("txn"), params.get("sub")) {
            (Some(txn), None) => {
                call.audit.txn = Some(txn.to_owned());
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
                call.audit.sub = Some(sub.to_owned());
                call.audit.sub_iss = Some(iss.to_owned());
                (
                    Revocation::SubjectBefore {
                        principal: Principal {
                            iss: iss.to_owned(),
                            sub: sub.to_owned(),
                        },
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
        call.audit.reason = Some("revoked".into());
        Ok(move || json_no_store(json!({"revoked": what, "until": until})))
    }
    .await;
    call.finish(result).await
}

/// The audit records of one correlation id, oldest first.
pub async fn audit(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let mut call = Call::begin(&state, &headers, Some(peer.ip()), "admin.audit");
    let result = async {
        admin_call(&mut call, &headers, &params).await?;
        let txn = params.require("txn")?.to_owned();
        let records = state
            .store
            .audit_by_txn(&txn)
            .await
            .map_err(|e| OAuthError::unavailable("store.audit_query_failed", &e))?;
        call.audit.txn = Some(txn.clone());
        Ok(move || json_no_store(json!({"txn": txn, "records": records})))
    }
    .await;
    call.finish(result).await
}

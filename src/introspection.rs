//! `POST /introspect` — RFC 7662 token introspection for our access tokens.
//!
//! Owns: the response shape: RFC 7662 §2.2 members plus `act`, `txn`,
//! `cnf` (RFC 9449 §6.2) and `client_profile`, and nothing more (the
//! user's `roles` stay in the token: minimal disclosure, RFC 8693 §6); and
//! who may learn that a token is active: the client it was
//! issued to, or a client whose `resource` is its audience (the resource
//! server it was issued for). Any other authenticated caller gets
//! `{"active": false}` (RFC 7662 §2.1: the server decides what it tells
//! whom). Each call is audited, so auditors see who looked at which token of
//! a txn.
//! Must never: say why a token is inactive, or answer for an unauthenticated
//! caller (401).

use serde_json::{Value, json};

use crate::endpoint::Call;
use crate::error::OAuthResult;
use crate::inspect::own_active_token;
use crate::params::OAuthRequest;
use crate::state::AppState;

pub async fn introspect(state: &AppState, req: &OAuthRequest) -> OAuthResult<serde_json::Value> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "introspection");
    let result = async {
        let client = call.authenticate(req).await?;
        let token = params.require("token")?;
        let own = own_active_token(&call.validator(), state.store.as_ref(), token).await?;
        let may_know = |v: &crate::trust::validate::Verified| {
            v.claims.client_id.as_deref() == Some(client.id.as_str())
                || client
                    .resource
                    .as_deref()
                    .is_some_and(|r| v.claims.aud.as_ref().is_some_and(|a| a.contains(r)))
        };
        let body = match own {
            Some(own) if !may_know(&own.verified) => {
                call.audit.note("introspection.not_for_caller");
                json!({ "active": false })
            }
            None => json!({ "active": false }),
            Some(own) => {
                let v = &own.verified;
                let c = &v.claims;
                call.audit.about(c.jti.as_deref(), c.txn.as_deref(), &own.principal);
                let mut body = json!({
                    "active": true,
                    "iss": c.iss,
                    "sub": v.sub,
                    "aud": c.aud.as_ref().and_then(|a| a.single().map(str::to_owned)),
                    "client_id": c.client_id,
                    // The client's entity profile, when the token carries one
                    // (draft-mora-oauth-entity-profiles: a SHOULD for
                    // introspection responses).
                    "client_profile": c.extra.get("client_profile"),
                    "scope": c.scope,
                    "exp": v.exp,
                    "iat": c.iat,
                    "jti": c.jti,
                    // RFC 9449 §6.2: a bound token is a DPoP token, and the
                    // resource server learns its key from `cnf`.
                    "token_type": if c.cnf.is_some() { "DPoP" } else { "Bearer" },
                    "cnf": c.cnf,
                    "txn": c.txn,
                    "act": c.act,
                });
                if let Value::Object(m) = &mut body {
                    m.retain(|_, v| !v.is_null());
                }
                body
            }
        };
        Ok(body)
    }
    .await;
    call.finish(result).await
}

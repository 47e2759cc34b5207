//! What a verified token says about a call, as JSON: the shape in which the
//! logs API and the MCP server answer "who is calling", and the agent and the
//! demo read it.
//!
//! Owns: that one JSON shape (`user`, `act`, `txn`, `scopes`, `client_id`,
//! `audience`, `jti`, `trace_id`).
//! Must never: include the token itself, or anything not verified (it is
//! built from a `Principal`, which only the SDK's validator makes).

use serde_json::{Value, json};
use xaa_sdk::Principal;

/// The claims of `p`: the user as vouched for by an issuer, the `act` chain
/// (current actor first, RFC 8693 §4.1), the `txn`, the scopes and ids.
pub fn what_the_token_says(p: &Principal) -> Value {
    json!({
        "user": {"sub": p.sub, "user_issuer": p.user_issuer},
        "act": p.act.iter().map(|a| json!({"sub": a.sub, "sub_profile": a.sub_profile})).collect::<Vec<_>>(),
        "txn": p.txn,
        "scopes": p.scopes,
        "client_id": p.client_id,
        "audience": p.audience,
        "jti": p.jti,
        "trace_id": p.trace.as_ref().map(|t| t.trace_id()),
    })
}

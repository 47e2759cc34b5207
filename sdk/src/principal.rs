//! `Principal`: what a verified hop token says about a call.
//!
//! Owns: the typed view a resource server acts on — the user as vouched for
//! by an issuer, the `act` chain, `txn`, scopes, roles, ids, the key the
//! token is bound to — and the trace the call arrived in.
//! Must never: hold the token itself (pass the token beside the principal
//! where it is needed), or be built from claims that were not verified
//! (only `validator` builds one from a token).

use std::collections::BTreeSet;

use crate::act::Actor;
use crate::traceparent::TraceParent;

/// The verified content of an RFC 9068 access token issued by the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The end user (`sub`).
    pub sub: String,
    /// The upstream issuer that vouched for `sub`: the RFC 9493 `sub_id`
    /// (`format` `iss_sub`, naming this same `sub`) the broker writes into
    /// every token, else the token's own `iss`. A `sub` is unique only
    /// within its issuer, so key users on `(user_issuer, sub)`.
    pub user_issuer: String,
    /// The token's issuer: the broker.
    pub iss: String,
    /// The `act` chain, current actor first (RFC 8693 §4.1). Empty: the
    /// user's own client called directly, no one acts for them.
    pub act: Vec<Actor>,
    /// The correlation id of the whole chain, minted once by the broker.
    pub txn: Option<String>,
    /// `scope`, split on spaces (RFC 9068 §2.2.3).
    pub scopes: BTreeSet<String>,
    /// The user's roles (RFC 9068 §2.2.3.1).
    pub roles: Vec<String>,
    /// The token's id: the key for caches and the broker's audit lineage.
    pub jti: String,
    /// The client the token was issued to (RFC 9068 §2.2).
    pub client_id: String,
    /// The audiences (`aud`).
    pub audience: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    /// The key the token is bound to (RFC 9449 §6.1: the RFC 7638 thumbprint
    /// in `cnf.jkt`), when it is DPoP-bound. A principal with a binding
    /// comes only from
    /// [`TokenValidator::validate_dpop`](crate::TokenValidator::validate_dpop),
    /// after a proof by that key.
    pub key_binding: Option<String>,
    /// The trace the request arrived in (its `traceparent`), when known. The
    /// SDK's calls made for this principal are children of it.
    pub trace: Option<TraceParent>,
}

impl Principal {
    /// Whether any actor in the chain counts as an agent
    /// ([`Actor::is_agent`]).
    pub fn has_agent(&self) -> bool {
        self.act.iter().any(Actor::is_agent)
    }

    /// The party acting at this hop, if anyone acts for the user.
    pub fn current_actor(&self) -> Option<&Actor> {
        self.act.first()
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// This principal inside `trace` (e.g. the request's `traceparent`).
    pub fn with_trace(mut self, trace: TraceParent) -> Self {
        self.trace = Some(trace);
        self
    }

    /// The traceparent for one call made on behalf of this principal: a
    /// child of its trace, or a fresh trace.
    pub fn outgoing_trace(&self) -> TraceParent {
        TraceParent::child_of(self.trace.as_ref())
    }
}

#[cfg(test)]
pub(crate) fn example() -> Principal {
    Principal {
        sub: "alice".into(),
        user_issuer: "https://idp.example.com".into(),
        iss: "https://broker.example.com".into(),
        act: Vec::new(),
        txn: Some("txn-1".into()),
        scopes: ["logs.read".to_owned()].into(),
        roles: vec!["developer".into()],
        jti: "jti-1".into(),
        client_id: "triage-agent".into(),
        audience: vec!["https://mcp.logs.example.com".into()],
        iat: 1_800_000_000,
        exp: 1_800_000_300,
        key_binding: None,
        trace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(sub: &str, profile: Option<&str>) -> Actor {
        Actor {
            sub: sub.into(),
            iss: None,
            sub_profile: profile.map(str::to_owned),
        }
    }

    #[test]
    fn a_chain_with_any_agent_has_an_agent() {
        let mut p = example();
        assert!(!p.has_agent(), "no act: the user's own client");
        p.act = vec![actor("mcp:logs", Some("service"))];
        assert!(!p.has_agent());
        p.act.push(actor("agent:triage", Some("ai_agent")));
        assert!(p.has_agent(), "an agent anywhere in the chain");
        assert_eq!(p.current_actor().map(|a| a.sub.as_str()), Some("mcp:logs"));
    }

    #[test]
    fn outgoing_calls_stay_in_the_principals_trace() {
        let trace = TraceParent::new_root();
        let p = example().with_trace(trace);
        assert_eq!(p.outgoing_trace().trace_id(), trace.trace_id());
        assert_ne!(p.outgoing_trace().parent_id(), trace.parent_id());
        assert_ne!(example().outgoing_trace().trace_id(), trace.trace_id());
    }
}

//! The delegation chain: `act` wrapping (RFC 8693 §4.1), `may_act` (§4.4),
//! and `txn` inheritance.
//!
//! Owns: the rules that hold at every hop of every grant, in one place.
//! Must never: do I/O, or let a client set or change `txn`.

use serde::{Deserialize, Serialize};

use crate::policy::ClientKind;

/// One `act` entry. The outermost is the current actor; `act` inside it is the
/// previous one (RFC 8693 §4.1). Only `sub`, `iss` and `sub_profile` are kept:
/// §4.1 forbids `exp`/`nbf`/`aud` inside `act`, and anything else would let an
/// upstream smuggle claims into our tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Act {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Entity type of the actor (draft-mora-oauth-entity-profiles):
    /// `ai_agent` or `service`. An entry without it counts as an agent when
    /// caps are applied, so a missing profile can never widen a grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Act>>,
}

pub const PROFILE_AGENT: &str = "ai_agent";
pub const PROFILE_SERVICE: &str = "service";

/// Who is acting at this hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    /// Set when the actor was vouched for by an actor token from another issuer.
    pub iss: Option<String>,
    pub kind: ClientKind,
}

impl Actor {
    fn profile(&self) -> Option<&'static str> {
        match self.kind {
            ClientKind::Agent => Some(PROFILE_AGENT),
            ClientKind::Service => Some(PROFILE_SERVICE),
            ClientKind::App => None,
        }
    }
}

impl Act {
    /// Every entry, current actor first.
    pub fn entries(&self) -> impl Iterator<Item = &Act> {
        std::iter::successors(Some(self), |a| a.act.as_deref())
    }

    pub fn depth(&self) -> usize {
        self.entries().count()
    }

    pub fn is_agent(&self) -> bool {
        self.sub_profile.as_deref() != Some(PROFILE_SERVICE)
    }
}

/// The chain after this hop: the new actor wraps the previous chain. No new
/// actor (an `app` client acting directly for its user) leaves it unchanged.
pub fn wrap(previous: Option<Act>, actor: Option<&Actor>) -> Option<Act> {
    match actor {
        None => previous,
        Some(a) => Some(Act {
            sub: a.sub.clone(),
            iss: a.iss.clone(),
            sub_profile: a.profile().map(str::to_owned),
            act: previous.map(Box::new),
        }),
    }
}

/// Who becomes the new actor (design §2): the actor token's subject if one
/// was sent; otherwise the authenticated client if it is an agent or a
/// service; an `app` acting for its own user adds nothing.
pub fn new_actor(actor_token: Option<Actor>, client_kind: ClientKind, client_actor_sub: &str) -> Option<Actor> {
    actor_token.or_else(|| match client_kind {
        ClientKind::App => None,
        kind => Some(Actor {
            sub: client_actor_sub.to_owned(),
            iss: None,
            kind,
        }),
    })
}

/// A chain inherited from another issuer's token: every entry that does not
/// name who vouched for it gets that issuer (RFC 8693 §4.1 allows `iss` in
/// `act`). Entries with `iss` are never matched to our own clients by `sub`,
/// so an upstream cannot claim to be one of our services and shed a cap.
pub fn vouched_by(chain: Option<Act>, issuer: &str) -> Option<Act> {
    chain.map(|mut entry| {
        entry.iss.get_or_insert_with(|| issuer.to_owned());
        entry.act = vouched_by(entry.act.take().map(|a| *a), issuer).map(Box::new);
        entry
    })
}

/// RFC 8693 §4.4: when the subject token names who may act for its subject,
/// the new actor must be that party. A `may_act` with no actor at this hop is
/// satisfied (nobody new is acting).
pub fn may_act_allows(may_act: Option<&serde_json::Value>, actor: Option<&Actor>) -> bool {
    let (Some(may_act), Some(actor)) = (may_act, actor) else {
        return true;
    };
    let Some(obj) = may_act.as_object() else {
        return false;
    };
    let sub_ok = obj.get("sub").and_then(|v| v.as_str()) == Some(actor.sub.as_str());
    let iss_ok = match obj.get("iss").and_then(|v| v.as_str()) {
        None => true,
        Some(iss) => actor.iss.as_deref() == Some(iss),
    };
    sub_ok && iss_ok
}

/// The correlation id: inherited from the subject token when it has one,
/// otherwise minted here (UUIDv7: time-ordered, so audit indexes stay local).
pub fn inherit_txn(subject_txn: Option<&str>) -> String {
    match subject_txn {
        Some(t) if !t.is_empty() => t.to_owned(),
        _ => uuid::Uuid::now_v7().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(sub: &str) -> Actor {
        Actor {
            sub: sub.into(),
            iss: None,
            kind: ClientKind::Agent,
        }
    }

    #[test]
    fn each_hop_wraps_the_previous_chain() {
        let first = wrap(None, Some(&agent("agent:triage"))).unwrap();
        let service = Actor {
            sub: "mcp:logs".into(),
            iss: None,
            kind: ClientKind::Service,
        };
        let second = wrap(Some(first.clone()), Some(&service)).unwrap();
        assert_eq!(
            serde_json::to_value(&second).unwrap(),
            serde_json::json!({"sub":"mcp:logs","sub_profile":"service","act":{"sub":"agent:triage","sub_profile":"ai_agent"}})
        );
        assert_eq!(second.depth(), 2);
        assert_eq!(second.entries().nth(1), Some(&first));
    }

    #[test]
    fn an_app_client_adds_no_actor() {
        assert_eq!(new_actor(None, ClientKind::App, "web"), None);
        assert_eq!(new_actor(None, ClientKind::Agent, "a").unwrap().sub, "a");
        let t = agent("from-token");
        assert_eq!(new_actor(Some(t.clone()), ClientKind::Service, "svc"), Some(t));
    }

    #[test]
    fn may_act_names_who_may_act() {
        let m = serde_json::json!({"sub":"agent:triage"});
        assert!(may_act_allows(Some(&m), Some(&agent("agent:triage"))));
        assert!(!may_act_allows(Some(&m), Some(&agent("agent:other"))));
        assert!(may_act_allows(Some(&m), None));
        let with_iss = serde_json::json!({"sub":"agent:triage","iss":"https://idp"});
        assert!(!may_act_allows(Some(&with_iss), Some(&agent("agent:triage"))));
        assert!(!may_act_allows(Some(&serde_json::json!("x")), Some(&agent("x"))));
    }

    #[test]
    fn txn_is_inherited_or_minted() {
        assert_eq!(inherit_txn(Some("abc")), "abc");
        let minted = inherit_txn(None);
        assert_eq!(uuid::Uuid::parse_str(&minted).unwrap().get_version_num(), 7);
    }

    #[test]
    fn an_inherited_chain_names_who_vouched_for_each_entry() {
        let chain = wrap(
            wrap(None, Some(&agent("a"))),
            Some(&Actor {
                sub: "b".into(),
                iss: Some("https://x".into()),
                kind: ClientKind::Service,
            }),
        );
        let stamped = vouched_by(chain, "https://partner").unwrap();
        assert_eq!(
            stamped.iss.as_deref(),
            Some("https://x"),
            "an entry that names its issuer keeps it"
        );
        assert_eq!(stamped.act.unwrap().iss.as_deref(), Some("https://partner"));
    }

    #[test]
    fn an_entry_without_profile_counts_as_agent() {
        let a = Act {
            sub: "x".into(),
            iss: None,
            sub_profile: None,
            act: None,
        };
        assert!(a.is_agent());
    }
}

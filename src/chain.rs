//! The delegation chain: `act` wrapping (RFC 8693 §4.1), `may_act` (§4.4),
//! and `txn` inheritance.
//!
//! Owns: the rules that hold at every hop of every grant, in one place.
//! Must never: do I/O, or let a client set or change `txn`.

use serde::{Deserialize, Serialize};

use crate::types::{ActorIdentity, ClientKind};

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

pub use crate::types::{PROFILE_AGENT, PROFILE_SERVICE};

/// Whether an entity-profile list (space-delimited, case-insensitive,
/// draft-mora-oauth-entity-profiles §3.3) says `service` and nothing else.
pub fn profile_is_only_service(profile: Option<&str>) -> bool {
    let mut values = profile
        .unwrap_or_default()
        .split(' ')
        .filter(|v| !v.is_empty())
        .peekable();
    values.peek().is_some() && values.all(|v| v.eq_ignore_ascii_case(PROFILE_SERVICE))
}

/// Who is acting at this hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    /// Set when the actor was vouched for by an actor token from another issuer.
    pub iss: Option<String>,
    pub kind: ClientKind,
}

impl Actor {
    /// The `sub_profile` written for this actor: its kind's profile, the
    /// same one its tokens carry as `client_profile`.
    fn profile(&self) -> Option<&'static str> {
        self.kind.client_profile()
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

    /// Whether this entry is capped as an agent. `sub_profile` is a
    /// space-delimited, case-insensitive list of entity profiles
    /// (draft-mora-oauth-entity-profiles §3.3; draft-mcguinness-oauth-actor-
    /// profile §3.4), the most restrictive prevailing: only a list whose
    /// every value is `service` lifts the cap. `ai_agent`, `user`, an unknown
    /// or private value, an empty list and an absent profile all count as an
    /// agent — an unclassified actor gets the more restrictive policy.
    pub fn is_agent(&self) -> bool {
        !profile_is_only_service(self.sub_profile.as_deref())
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

/// The authenticated client, as the chain rules see it: what it is, the
/// identity it acts as, and the identities it may present actor tokens for
/// (`clients.*.actor_identities`).
#[derive(Debug, Clone, Copy)]
pub struct Presenter<'a> {
    pub kind: ClientKind,
    pub actor_sub: &'a str,
    pub identities: &'a [ActorIdentity],
}

impl Presenter<'_> {
    /// May this client present an actor token naming `sub` from `iss`?
    pub fn hosts_identity(&self, iss: &str, sub: &str) -> bool {
        self.identities.iter().any(|i| i.iss == iss && i.sub == sub)
    }
}

/// What a valid actor token says: `sub` as vouched for by `iss`, whose
/// configured `actor_profile` is `issuer_profile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorClaim {
    pub sub: String,
    pub iss: String,
    pub issuer_profile: ClientKind,
}

/// Why an actor token cannot be used by this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotThisClientsActor;

/// The stricter of two kinds for capping: an agent is capped hardest.
fn stricter(a: ClientKind, b: ClientKind) -> ClientKind {
    if a == ClientKind::Agent || b == ClientKind::Agent {
        ClientKind::Agent
    } else {
        ClientKind::Service
    }
}

/// Who becomes the new actor (specs/decisions.md §3). The authenticated
/// client, when it is an `agent` or a `service`, is always in the chain it
/// creates: an actor token it presents must name the client itself — its
/// `actor_sub` (then the entry is the client's own, exactly as without a
/// token) or one of its configured `actor_identities` — and never replaces
/// it. An `app` adds no actor of its own; it may present an actor token only
/// for an agent it hosts (`actor_identities`), and that agent becomes the
/// actor. Whoever is named, the entry is capped at least as the client's
/// kind and at least as the issuer's profile: caps only ever tighten.
pub fn new_actor(client: Presenter<'_>, token: Option<&ActorClaim>) -> Result<Option<Actor>, NotThisClientsActor> {
    let Some(t) = token else {
        return Ok(match client.kind {
            ClientKind::App => None,
            kind => Some(Actor {
                sub: client.actor_sub.to_owned(),
                iss: None,
                kind,
            }),
        });
    };
    match client.kind {
        ClientKind::Agent | ClientKind::Service if t.sub == client.actor_sub => Ok(Some(Actor {
            sub: client.actor_sub.to_owned(),
            iss: None,
            kind: stricter(client.kind, t.issuer_profile),
        })),
        kind if client.hosts_identity(&t.iss, &t.sub) => Ok(Some(Actor {
            sub: t.sub.clone(),
            iss: Some(t.iss.clone()),
            // An identity an app hosts is one of its agents.
            kind: match kind {
                ClientKind::App => ClientKind::Agent,
                kind => stricter(kind, t.issuer_profile),
            },
        })),
        _ => Err(NotThisClientsActor),
    }
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

/// The claim some issuers emit beside `act`: a flat list of the parties a
/// token was delegated through (draft-mcguinness-oauth-actor-profile
/// discusses flat lists beside the nested `act`; no registry defines one).
pub const DELEGATED_THROUGH: &str = "delegated_through";

/// The most entries a `delegated_through` list may hold, as for an inbound
/// `resource` array: a real chain is a handful of parties
/// (`tokens.max_delegation_depth`); the bound keeps a hostile list cheap.
pub const MAX_DELEGATED_THROUGH: usize = 16;

/// Why a `delegated_through` claim cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedDelegation;

impl MalformedDelegation {
    /// The refusal of `which` token under the caller's machine `reason`:
    /// `invalid_request` (RFC 8693 §2.2.2, a bad subject token), which the
    /// jwt-bearer grant answers as `invalid_grant` (RFC 7523 §3.1) like
    /// every problem with its assertion.
    pub fn refused(self, reason: &'static str, which: &str) -> crate::error::OAuthError {
        crate::error::OAuthError::invalid_request(
            reason,
            format!(
                "{which} is invalid: its {DELEGATED_THROUGH} claim must be a list of at most \
                 {MAX_DELEGATED_THROUGH} entries, each an actor's sub or an object with a sub"
            ),
        )
    }
}

/// A token's flat delegation list (`delegated_through`), read only for caps
/// and audit (specs/decisions.md §3, "The actor profile"), never to loosen
/// anything: it never replaces, shortens or reorders `act`.
///
/// Absent or `null` is an empty list. Otherwise an array of at most
/// [`MAX_DELEGATED_THROUGH`] entries, each either a string (the actor's
/// `sub`) or an object with a non-empty string `sub`, and optionally string
/// `iss` and `sub_profile`; any other member is dropped, as in `act`.
/// Anything else — a string, an object, a longer array, an entry without
/// `sub` or with a non-string `iss` — is malformed: a list the issuer wrote
/// but we cannot read is refused, never taken as "no delegation".
///
/// Each entry is an [`Act`] without a nested `act`, so it is capped by the
/// one rule (`Act::is_agent`: no `sub_profile`, or any value but `service`,
/// is an agent). `issuer`, for another issuer's token, names every entry
/// without `iss`, exactly as [`vouched_by`] does for `act`.
pub fn delegated_through(
    claims: &serde_json::Map<String, serde_json::Value>,
    issuer: Option<&str>,
) -> Result<Vec<Act>, MalformedDelegation> {
    use serde_json::Value;
    let entries = match claims.get(DELEGATED_THROUGH) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) if a.len() <= MAX_DELEGATED_THROUGH => a,
        Some(_) => return Err(MalformedDelegation),
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let optional = |o: &serde_json::Map<String, Value>, k: &str| match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_str().map(|s| Some(s.to_owned())).ok_or(MalformedDelegation),
    };
    entries
        .iter()
        .map(|e| {
            let mut entry = match e {
                Value::String(_) => Act {
                    sub: text(e).ok_or(MalformedDelegation)?,
                    iss: None,
                    sub_profile: None,
                    act: None,
                },
                Value::Object(o) => Act {
                    sub: o.get("sub").and_then(text).ok_or(MalformedDelegation)?,
                    iss: optional(o, "iss")?.filter(|i| !i.is_empty()),
                    sub_profile: optional(o, "sub_profile")?,
                    act: None,
                },
                _ => return Err(MalformedDelegation),
            };
            if let (None, Some(i)) = (&entry.iss, issuer) {
                entry.iss = Some(i.to_owned());
            }
            Ok(entry)
        })
        .collect()
}

/// How many parties a chain counts for the depth cap: every `act` entry,
/// plus each `delegated_through` entry that `act` does not already name (by
/// `sub` and `iss`). A flat list beside `act` usually repeats its parties;
/// counted once they are not double-counted, and a list that names fewer
/// hops than `act` never makes the chain shorter than `act` is.
pub fn parties(chain: Option<&Act>, delegated: &[Act]) -> usize {
    let in_act = |d: &Act| {
        chain
            .into_iter()
            .flat_map(Act::entries)
            .any(|a| a.sub == d.sub && a.iss == d.iss)
    };
    let extra = delegated
        .iter()
        .enumerate()
        .filter(|(i, d)| !in_act(d) && !delegated[..*i].iter().any(|e| e.sub == d.sub && e.iss == d.iss))
        .count();
    chain.map(Act::depth).unwrap_or(0) + extra
}

/// RFC 8693 §4.4: when the subject token names who may act for its subject,
/// the new actor must be that party. A `may_act` with no actor at this hop is
/// satisfied (nobody new is acting). `may_act.iss`, when present, must be
/// the actor's issuer (ours, `our_issuer`, for our own clients). Without
/// `iss`, `sub` is read in the namespace of whoever issued the subject
/// token: it matches an actor from our own clients, or one vouched for by
/// that same issuer — never a same-named identity of a third issuer.
pub fn may_act_allows(
    may_act: Option<&serde_json::Value>,
    actor: Option<&Actor>,
    our_issuer: &str,
    subject_issuer: &str,
) -> bool {
    let (Some(may_act), Some(actor)) = (may_act, actor) else {
        return true;
    };
    let Some(obj) = may_act.as_object() else {
        return false;
    };
    let sub_ok = obj.get("sub").and_then(|v| v.as_str()) == Some(actor.sub.as_str());
    let iss_ok = match (obj.get("iss"), &actor.iss) {
        (Some(iss), actor_iss) => iss.as_str() == Some(actor_iss.as_deref().unwrap_or(our_issuer)),
        (None, None) => true,
        (None, Some(actor_iss)) => actor_iss == subject_issuer,
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

    /// A client of `kind` acting as `actor_sub`, hosting `identities`
    /// (leaked: a test's few bytes, so the view can be `'static`).
    fn client(kind: ClientKind, actor_sub: &str, identities: &[(&str, &str)]) -> Presenter<'static> {
        let identities: Vec<ActorIdentity> = identities
            .iter()
            .map(|(iss, sub)| ActorIdentity {
                iss: (*iss).into(),
                sub: (*sub).into(),
            })
            .collect();
        Presenter {
            kind,
            actor_sub: Box::leak(actor_sub.to_owned().into_boxed_str()),
            identities: Box::leak(identities.into_boxed_slice()),
        }
    }

    fn claim(iss: &str, sub: &str, profile: ClientKind) -> ActorClaim {
        ActorClaim {
            sub: sub.into(),
            iss: iss.into(),
            issuer_profile: profile,
        }
    }

    #[test]
    fn an_app_client_adds_no_actor_and_agents_and_services_always_act() {
        let app = client(ClientKind::App, "web", &[]);
        assert_eq!(new_actor(app, None), Ok(None));
        let agent = client(ClientKind::Agent, "agent:a", &[]);
        assert_eq!(new_actor(agent, None).unwrap().unwrap().sub, "agent:a");
    }

    #[test]
    fn an_agent_cannot_launder_itself_out_of_the_chain_with_a_service_token() {
        let agent = client(ClientKind::Agent, "agent:a", &[]);
        let service = claim("https://wl", "svc:billing", ClientKind::Service);
        assert_eq!(new_actor(agent, Some(&service)), Err(NotThisClientsActor));
        // Its own identity from a service-profile issuer stays an agent.
        let own = claim("https://wl", "agent:a", ClientKind::Service);
        let actor = new_actor(agent, Some(&own)).unwrap().unwrap();
        assert_eq!(
            (actor.sub.as_str(), actor.iss, actor.kind),
            ("agent:a", None, ClientKind::Agent)
        );
    }

    #[test]
    fn a_configured_identity_keeps_its_issuer_and_the_stricter_cap() {
        let svc = client(ClientKind::Service, "mcp:x", &[("https://wl", "spiffe://x")]);
        let as_agent = claim("https://wl", "spiffe://x", ClientKind::Agent);
        let actor = new_actor(svc, Some(&as_agent)).unwrap().unwrap();
        assert_eq!(actor.iss.as_deref(), Some("https://wl"));
        assert_eq!(actor.kind, ClientKind::Agent, "the issuer's stricter profile wins");
        let other_issuer = claim("https://other", "spiffe://x", ClientKind::Service);
        assert_eq!(new_actor(svc, Some(&other_issuer)), Err(NotThisClientsActor));
    }

    #[test]
    fn an_app_presents_only_the_agents_it_hosts_and_they_are_agents() {
        let app = client(ClientKind::App, "web", &[("https://wl", "agent:x")]);
        let hosted = claim("https://wl", "agent:x", ClientKind::Service);
        assert_eq!(new_actor(app, Some(&hosted)).unwrap().unwrap().kind, ClientKind::Agent);
        let stranger = claim("https://wl", "agent:y", ClientKind::Agent);
        assert_eq!(new_actor(app, Some(&stranger)), Err(NotThisClientsActor));
    }

    #[test]
    fn may_act_names_who_may_act() {
        let us = "https://broker";
        let m = serde_json::json!({"sub":"agent:triage"});
        assert!(may_act_allows(
            Some(&m),
            Some(&agent("agent:triage")),
            us,
            "https://idp"
        ));
        assert!(!may_act_allows(
            Some(&m),
            Some(&agent("agent:other")),
            us,
            "https://idp"
        ));
        assert!(may_act_allows(Some(&m), None, us, "https://idp"));
        let with_iss = serde_json::json!({"sub":"agent:triage","iss":"https://idp"});
        assert!(!may_act_allows(
            Some(&with_iss),
            Some(&agent("agent:triage")),
            us,
            "https://idp"
        ));
        let ours = serde_json::json!({"sub":"agent:triage","iss":us});
        assert!(may_act_allows(
            Some(&ours),
            Some(&agent("agent:triage")),
            us,
            "https://idp"
        ));
        assert!(!may_act_allows(
            Some(&serde_json::json!("x")),
            Some(&agent("x")),
            us,
            "https://idp"
        ));
    }

    #[test]
    fn may_act_without_iss_never_matches_a_third_issuers_actor() {
        let m = serde_json::json!({"sub":"agent:x"});
        let from = |iss: &str| Actor {
            sub: "agent:x".into(),
            iss: Some(iss.into()),
            kind: ClientKind::Agent,
        };
        assert!(may_act_allows(
            Some(&m),
            Some(&from("https://idp")),
            "https://us",
            "https://idp"
        ));
        assert!(!may_act_allows(
            Some(&m),
            Some(&from("https://evil")),
            "https://us",
            "https://idp"
        ));
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
    fn only_a_profile_of_service_alone_lifts_the_agent_cap() {
        let entry = |p: Option<&str>| Act {
            sub: "x".into(),
            iss: None,
            sub_profile: p.map(str::to_owned),
            act: None,
        };
        for lifted in ["service", "SERVICE", "Service", " service ", "service service"] {
            assert!(!entry(Some(lifted)).is_agent(), "{lifted:?}");
        }
        for capped in [
            "ai_agent",
            "AI_AGENT",
            "service ai_agent",
            "ai_agent service",
            "user",
            "service acme_robot",
            "",
            " ",
            "services",
        ] {
            assert!(entry(Some(capped)).is_agent(), "{capped:?}");
        }
        assert!(entry(None).is_agent());
    }

    #[test]
    fn client_profile_inside_act_is_no_classification() {
        // draft-mcguinness-oauth-actor-profile §3.4: client_profile never
        // classifies an actor; an entry keeps only sub, iss, sub_profile.
        let a: Act = serde_json::from_value(serde_json::json!({"sub": "x", "client_profile": "service"})).unwrap();
        assert!(a.is_agent());
        assert!(serde_json::to_value(&a).unwrap().get("client_profile").is_none());
    }

    fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        serde_json::json!({ DELEGATED_THROUGH: v }).as_object().unwrap().clone()
    }

    #[test]
    fn delegated_through_reads_strings_and_objects_and_names_their_issuer() {
        let list = delegated_through(
            &claims(serde_json::json!([
                "agent:a",
                {"sub": "svc:b", "sub_profile": "service", "client_profile": "x", "act": {"sub": "c"}},
                {"sub": "agent:c", "iss": "https://elsewhere"}
            ])),
            Some("https://partner"),
        )
        .unwrap();
        let entry = |sub: &str, iss: &str, profile: Option<&str>| Act {
            sub: sub.into(),
            iss: Some(iss.into()),
            sub_profile: profile.map(str::to_owned),
            act: None,
        };
        assert_eq!(
            list,
            vec![
                entry("agent:a", "https://partner", None),
                entry("svc:b", "https://partner", Some("service")),
                entry("agent:c", "https://elsewhere", None),
            ],
            "only sub, iss and sub_profile are kept; no nesting"
        );
        assert!(list[0].is_agent() && !list[1].is_agent() && list[2].is_agent());
        // Ours: nothing to name.
        let ours = delegated_through(&claims(serde_json::json!(["agent:a"])), None).unwrap();
        assert_eq!(ours[0].iss, None);
    }

    #[test]
    fn delegated_through_absent_or_null_is_empty() {
        assert_eq!(delegated_through(&serde_json::Map::new(), None), Ok(vec![]));
        assert_eq!(delegated_through(&claims(serde_json::json!(null)), None), Ok(vec![]));
        assert_eq!(delegated_through(&claims(serde_json::json!([])), None), Ok(vec![]));
    }

    #[test]
    fn a_delegated_through_that_cannot_be_read_is_malformed() {
        let full: Vec<String> = (0..MAX_DELEGATED_THROUGH).map(|i| format!("agent:{i}")).collect();
        assert_eq!(
            delegated_through(&claims(serde_json::json!(full)), None).unwrap().len(),
            MAX_DELEGATED_THROUGH
        );
        let over: Vec<String> = (0..=MAX_DELEGATED_THROUGH).map(|i| format!("agent:{i}")).collect();
        for bad in [
            serde_json::json!(over),
            serde_json::json!("agent:a agent:b"),
            serde_json::json!({"sub": "agent:a"}),
            serde_json::json!(5),
            serde_json::json!([""]),
            serde_json::json!([7]),
            serde_json::json!([["agent:a"]]),
            serde_json::json!([{"iss": "https://p"}]),
            serde_json::json!([{"sub": ""}]),
            serde_json::json!([{"sub": 5}]),
            serde_json::json!([{"sub": "a", "iss": 5}]),
            serde_json::json!([{"sub": "a", "sub_profile": ["service"]}]),
        ] {
            assert_eq!(
                delegated_through(&claims(bad.clone()), Some("https://p")),
                Err(MalformedDelegation),
                "{bad}"
            );
        }
    }

    #[test]
    fn parties_counts_act_and_the_parties_only_the_list_names() {
        let chain = wrap(wrap(None, Some(&agent("a"))), Some(&agent("b")));
        let named = |sub: &str| Act {
            sub: sub.into(),
            iss: None,
            sub_profile: None,
            act: None,
        };
        assert_eq!(parties(chain.as_ref(), &[]), 2);
        assert_eq!(parties(chain.as_ref(), &[named("a"), named("b")]), 2, "repeats act");
        assert_eq!(parties(chain.as_ref(), &[named("a")]), 2, "fewer never shortens");
        assert_eq!(parties(chain.as_ref(), &[named("c"), named("c")]), 3);
        let elsewhere = Act {
            iss: Some("https://x".into()),
            ..named("a")
        };
        assert_eq!(
            parties(chain.as_ref(), &[elsewhere]),
            3,
            "another issuer's a is another party"
        );
        assert_eq!(parties(None, &[named("a"), named("b")]), 2);
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

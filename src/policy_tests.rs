//! Specification of the decision: unit cases for each rule and property tests
//! that a grant is always a subset of every input and never grows along a
//! chain.

use proptest::prelude::*;

use super::*;
use crate::chain::{self, Actor};
use crate::config::Config;
use crate::error::ErrorCode;

const POLICY: &str = r#"
issuer = "https://broker.example.com"
keys.ephemeral = true

[audiences."https://logs.example.com"]
kind = "access_token"
scopes = { "logs.read" = "read", "logs.write" = "write", "logs.purge" = "destructive", "logs.admin" = "admin" }

[audiences."https://cost.example.com"]
kind = "access_token"
ttl_secs = 120
scopes = { "cost.read" = "read", "cost.approve" = "write" }

[roles]
developer = ["logs.read", "logs.write", "cost.read"]
sre = ["logs.read", "logs.write", "logs.purge", "logs.admin", "cost.read", "cost.approve"]

[agents]
categories = ["read", "write"]
human_only = ["cost.approve"]

[clients.web]
kind = "app"
secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
audiences = ["https://logs.example.com", "https://cost.example.com"]

[clients.triage]
kind = "agent"
secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
audiences = ["https://logs.example.com", "https://cost.example.com"]
actor_sub = "agent:triage"

[clients.mcp-logs]
kind = "service"
secret_sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
audiences = ["https://cost.example.com"]
resource = "https://logs.example.com"
actor_sub = "mcp:logs"
categories = ["read"]
"#;

fn policy() -> Policy {
    Config::from_toml("test", POLICY).unwrap().resolve("test").unwrap()
}

const NOW: i64 = 1_800_000_000;

struct Case<'a> {
    client: &'a str,
    audience: &'a str,
    requested: Option<&'a str>,
    roles: &'a [&'a str],
    subject_scope: Option<&'a str>,
    chain: Option<Act>,
}

fn decide_case(p: &Policy, c: Case<'_>) -> Result<Grant, OAuthError> {
    decide_explained(p, c).0
}

/// The decision and the scopes it withheld, with their reasons.
fn decide_explained(p: &Policy, c: Case<'_>) -> (Result<Grant, OAuthError>, Vec<(String, String)>) {
    decide_delegated(p, c, &[])
}

/// As [`decide_explained`], for a subject that also carried a flat
/// `delegated_through` list.
fn decide_delegated(p: &Policy, c: Case<'_>, delegated: &[Act]) -> (Result<Grant, OAuthError>, Vec<(String, String)>) {
    let mut withheld = Vec::new();
    let requested = c.requested.map(|r| ScopeSet::parse(r).unwrap());
    let roles: Vec<String> = c.roles.iter().map(|s| s.to_string()).collect();
    let subject_scope = c.subject_scope.map(|r| ScopeSet::parse(r).unwrap());
    let result = decide(
        p,
        &ExchangeContext {
            client: &p.clients[c.client],
            audience: &p.audiences[c.audience],
            requested: requested.as_ref(),
            roles: Some(&roles),
            subject_scope: subject_scope.as_ref(),
            chain: c.chain.as_ref(),
            delegated_through: delegated,
            now: NOW,
            subject_exp: NOW + 3600,
        },
        &mut withheld,
    );
    let withheld = withheld.into_iter().map(|w| (w.scope, w.reason)).collect();
    (result, withheld)
}

fn agent_chain() -> Option<Act> {
    chain::wrap(
        None,
        Some(&Actor {
            sub: "agent:triage".into(),
            iss: None,
            kind: ClientKind::Agent,
        }),
    )
}

#[test]
fn no_scope_requested_grants_the_full_allowed_intersection() {
    let g = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: None,
            roles: &["developer"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "logs.read logs.write");
}

#[test]
fn a_requested_scope_is_narrowed_to_what_is_allowed() {
    let g = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: Some("logs.read logs.purge"),
            roles: &["developer"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "logs.read");
}

#[test]
fn escalation_beyond_the_users_roles_is_invalid_scope() {
    let e = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: Some("logs.purge"),
            roles: &["developer"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidScope);
}

#[test]
fn a_user_without_roles_is_denied_not_told_about_scopes() {
    for requested in [None, Some("logs.read")] {
        let e = decide_case(
            &policy(),
            Case {
                client: "web",
                audience: "https://logs.example.com",
                requested,
                roles: &[],
                subject_scope: None,
                chain: None,
            },
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (ErrorCode::AccessDenied, "policy.no_entitlement"));
    }
}

#[test]
fn roles_that_grant_nothing_at_this_audience_are_no_entitlement() {
    let mut p = policy();
    p.roles.insert("viewer".into(), ScopeSet::parse("logs.read").unwrap());
    let case = |audience, requested| Case {
        client: "web",
        audience,
        requested,
        roles: &["viewer"],
        subject_scope: None,
        chain: None,
    };
    let (e, withheld) = decide_explained(&p, case("https://cost.example.com", Some("cost.read")));
    let e = e.unwrap_err();
    assert_eq!((e.code, e.reason), (ErrorCode::AccessDenied, "policy.no_entitlement"));
    for leak in ["viewer", "developer", "sre", "web", "https://"] {
        assert!(!e.description.contains(leak), "{leak} in {:?}", e.description);
    }
    assert_eq!(
        withheld,
        pairs(&[("cost.read", "not_entitled")]),
        "the audit still says why"
    );
    // Entitled here: asking beyond the entitlement narrows, or is a scope
    // problem, as before.
    let g = decide_case(&p, case("https://logs.example.com", Some("logs.read logs.write"))).unwrap();
    assert_eq!(g.scope.to_string(), "logs.read");
    let e = decide_case(&p, case("https://logs.example.com", Some("logs.write"))).unwrap_err();
    assert_eq!((e.code, e.reason), (ErrorCode::InvalidScope, "scope.empty_grant"));
}

#[test]
fn caps_that_remove_every_scope_stay_a_scope_problem() {
    // Entitled, but the client's category cap leaves nothing: the user is
    // not the one refused.
    let e = decide_case(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://cost.example.com",
            requested: Some("cost.approve"),
            roles: &["sre"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidScope);
}

#[test]
fn an_audience_outside_the_clients_list_is_invalid_target_before_entitlement() {
    let e = decide_case(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://logs.example.com",
            requested: None,
            roles: &[],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidTarget);
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(s, r)| (s.to_string(), r.to_string())).collect()
}

#[test]
fn each_withheld_scope_is_recorded_with_the_first_rule_that_removed_it() {
    let case = |requested, roles: &'static [&'static str], subject_scope| Case {
        client: "triage",
        audience: "https://cost.example.com",
        requested,
        roles,
        subject_scope,
        chain: agent_chain(),
    };
    // Asked for both; the agent in the chain loses the human-only one.
    let (g, withheld) = decide_explained(&policy(), case(Some("cost.read cost.approve"), &["sre"], None));
    assert_eq!(g.unwrap().scope.to_string(), "cost.read");
    assert_eq!(withheld, pairs(&[("cost.approve", "human_only")]));
    // Not entitled comes first: a developer never had cost.approve.
    let (_, withheld) = decide_explained(&policy(), case(Some("cost.read cost.approve"), &["developer"], None));
    assert_eq!(withheld, pairs(&[("cost.approve", "not_entitled")]));
    // A scope outside the audience's catalog.
    let (_, withheld) = decide_explained(&policy(), case(Some("cost.read logs.read"), &["sre"], None));
    assert_eq!(withheld, pairs(&[("logs.read", "not_in_catalog")]));
    // The subject token's scope bounds a re-exchange.
    let (_, withheld) = decide_explained(&policy(), case(Some("cost.read"), &["sre"], Some("cost.approve")));
    assert_eq!(withheld, pairs(&[("cost.read", "subject_scope")]));
    // Asking for nothing: only what a rule took from the user's entitlement
    // counts as withheld, not what the user never had.
    let (g, withheld) = decide_explained(&policy(), case(None, &["sre"], None));
    assert_eq!(g.unwrap().scope.to_string(), "cost.read");
    assert_eq!(withheld, pairs(&[("cost.approve", "human_only")]));
    let (_, withheld) = decide_explained(&policy(), case(None, &["developer"], None));
    assert!(withheld.is_empty(), "{withheld:?}");
}

#[test]
fn a_refused_decision_still_says_what_was_withheld() {
    let (g, withheld) = decide_explained(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://cost.example.com",
            requested: Some("cost.approve"),
            roles: &["sre"],
            subject_scope: None,
            chain: None,
        },
    );
    assert_eq!(g.unwrap_err().reason, "scope.empty_grant");
    assert_eq!(withheld, pairs(&[("cost.approve", "client_category")]));
}

#[test]
fn an_agent_in_the_chain_caps_categories_and_human_only_scopes() {
    let g = decide_case(
        &policy(),
        Case {
            client: "triage",
            audience: "https://logs.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain: agent_chain(),
        },
    )
    .unwrap();
    assert_eq!(
        g.scope.to_string(),
        "logs.read logs.write",
        "no destructive/admin for agents"
    );
    let g = decide_case(
        &policy(),
        Case {
            client: "triage",
            audience: "https://cost.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain: agent_chain(),
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "cost.read", "cost.approve is human-only");
}

#[test]
fn the_agent_cap_holds_deeper_in_the_chain() {
    let service = Actor {
        sub: "mcp:logs".into(),
        iss: None,
        kind: ClientKind::Service,
    };
    let chain = chain::wrap(agent_chain(), Some(&service));
    let e = decide_case(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://cost.example.com",
            requested: Some("cost.approve"),
            roles: &["sre"],
            subject_scope: None,
            chain,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidScope);
}

#[test]
fn an_unknown_actor_without_profile_is_capped_as_an_agent() {
    let chain = Some(Act {
        sub: "somebody".into(),
        iss: Some("https://idp".into()),
        sub_profile: None,
        act: None,
    });
    let g = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain,
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "logs.read logs.write");
}

#[test]
fn a_service_with_its_own_categories_is_held_to_them() {
    let service = Actor {
        sub: "mcp:logs".into(),
        iss: None,
        kind: ClientKind::Service,
    };
    let chain = chain::wrap(None, Some(&service));
    let g = decide_case(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://cost.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain,
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "cost.read");
}

#[test]
fn a_re_exchange_never_widens_the_subject_scope() {
    let g = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: Some("logs.read logs.write"),
            roles: &["sre"],
            subject_scope: Some("logs.read"),
            chain: None,
        },
    )
    .unwrap();
    assert_eq!(g.scope.to_string(), "logs.read");
}

#[test]
fn an_audience_not_allowed_for_the_client_is_invalid_target() {
    let e = decide_case(
        &policy(),
        Case {
            client: "mcp-logs",
            audience: "https://logs.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidTarget);
}

#[test]
fn depth_beyond_the_maximum_is_refused() {
    let mut chain = None;
    for i in 0..5 {
        chain = chain::wrap(
            chain,
            Some(&Actor {
                sub: format!("svc{i}"),
                iss: None,
                kind: ClientKind::Service,
            }),
        );
    }
    let e = decide_case(
        &policy(),
        Case {
            client: "web",
            audience: "https://logs.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain,
        },
    )
    .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidRequest);
    assert_eq!(e.reason, "chain.depth_exceeded");
}

#[test]
fn lifetime_is_bounded_by_audience_ttl_and_subject_exp() {
    let p = policy();
    let g = decide_case(
        &p,
        Case {
            client: "web",
            audience: "https://cost.example.com",
            requested: None,
            roles: &["sre"],
            subject_scope: None,
            chain: None,
        },
    )
    .unwrap();
    assert_eq!(g.exp, NOW + 120);
    let roles = vec!["sre".to_string()];
    let g = decide(
        &p,
        &ExchangeContext {
            client: &p.clients["web"],
            audience: &p.audiences["https://cost.example.com"],
            requested: None,
            roles: Some(&roles),
            subject_scope: None,
            chain: None,
            delegated_through: &[],
            now: NOW,
            subject_exp: NOW + 30,
        },
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(g.exp, NOW + 30);
}

/// A `delegated_through` entry, as `chain::delegated_through` reads it.
fn delegate(sub: &str, iss: Option<&str>, profile: Option<&str>) -> Act {
    Act {
        sub: sub.into(),
        iss: iss.map(str::to_owned),
        sub_profile: profile.map(str::to_owned),
        act: None,
    }
}

/// An app acting directly for an sre at the logs audience, with `chain`.
fn app_for_sre(chain: Option<Act>) -> Case<'static> {
    Case {
        client: "web",
        audience: "https://logs.example.com",
        requested: None,
        roles: &["sre"],
        subject_scope: None,
        chain,
    }
}

#[test]
fn an_agent_in_delegated_through_is_capped_like_an_agent_in_act() {
    let p = policy();
    let (g, _) = decide_delegated(&p, app_for_sre(None), &[]);
    assert_eq!(
        g.unwrap().scope.to_string(),
        "logs.admin logs.purge logs.read logs.write"
    );
    let agent = delegate("agent:z", Some("https://partner"), Some("ai_agent"));
    let (g, withheld) = decide_delegated(&p, app_for_sre(None), &[agent]);
    assert_eq!(g.unwrap().scope.to_string(), "logs.read logs.write");
    assert_eq!(
        withheld,
        pairs(&[("logs.admin", "agent_category"), ("logs.purge", "agent_category")])
    );
    // No profile, or any profile but `service` alone, is an agent too.
    for profile in [None, Some("user"), Some("service ai_agent")] {
        let (g, _) = decide_delegated(&p, app_for_sre(None), &[delegate("x", Some("https://p"), profile)]);
        assert_eq!(g.unwrap().scope.to_string(), "logs.read logs.write", "{profile:?}");
    }
}

#[test]
fn a_service_in_delegated_through_never_lifts_a_cap() {
    let p = policy();
    let service = delegate("agent:triage", None, Some("service"));
    // The agent in `act` stays capped whatever the flat list says of it.
    let (g, _) = decide_delegated(&p, app_for_sre(agent_chain()), std::slice::from_ref(&service));
    assert_eq!(g.unwrap().scope.to_string(), "logs.read logs.write");
    // And a list entry naming one of our agent clients is capped as that
    // client, whatever its profile says.
    let (g, _) = decide_delegated(&p, app_for_sre(None), &[service]);
    assert_eq!(g.unwrap().scope.to_string(), "logs.read logs.write");
}

#[test]
fn a_delegated_through_entry_of_our_client_is_held_to_its_categories() {
    // mcp:logs is a service held to `read`: named in the flat list (here as
    // another deployment stamps our entries, with our issuer), its
    // categories apply.
    let p = policy();
    let ours = delegate("mcp:logs", Some("https://broker.example.com"), Some("service"));
    let (g, withheld) = decide_delegated(&p, app_for_sre(None), &[ours]);
    assert_eq!(g.unwrap().scope.to_string(), "logs.read");
    assert_eq!(
        withheld,
        pairs(&[
            ("logs.admin", "client_category"),
            ("logs.purge", "client_category"),
            ("logs.write", "client_category")
        ])
    );
}

#[test]
fn our_own_entry_coming_back_from_another_deployment_is_still_our_client() {
    // Multi-hop (decisions §27): a resource AS stamps our `act` entries with
    // our issuer. agent:triage is our agent client: capped as one, even if
    // the entry that came back calls it a service.
    let p = policy();
    let back = Some(Act {
        sub: "agent:triage".into(),
        iss: Some("https://broker.example.com".into()),
        sub_profile: Some("service".into()),
        act: None,
    });
    let (g, _) = decide_delegated(&p, app_for_sre(back), &[]);
    assert_eq!(g.unwrap().scope.to_string(), "logs.read logs.write");
}

#[test]
fn delegated_through_counts_toward_the_depth_but_never_shortens_act() {
    let p = policy(); // max_delegation_depth 4 by default
    let services = |n: usize| {
        (0..n).fold(None, |c, i| {
            chain::wrap(
                c,
                Some(&Actor {
                    sub: format!("svc{i}"),
                    iss: None,
                    kind: ClientKind::Service,
                }),
            )
        })
    };
    let svc = |i: usize| delegate(&format!("svc{i}"), None, Some("service"));
    let depth_refused = |chain, delegated: &[Act]| {
        decide_delegated(&p, app_for_sre(chain), delegated)
            .0
            .is_err_and(|e| e.reason == "chain.depth_exceeded")
    };
    // Three in act and one more party only the flat list names: five.
    let extra = [delegate("svc:hidden", None, Some("service"))];
    assert!(!depth_refused(services(3), &[]));
    assert!(depth_refused(services(4), &extra));
    // A list repeating act's parties adds nothing; one naming fewer hops
    // than act does not make a five-deep act four.
    assert!(!depth_refused(services(4), &[svc(0), svc(1), svc(2), svc(3)]));
    assert!(depth_refused(services(5), &[svc(0)]));
    // A list alone counts its distinct parties.
    let five: Vec<Act> = (0..5).map(svc).collect();
    assert!(depth_refused(None, &five));
    assert!(!depth_refused(None, &[svc(0), svc(0), svc(0), svc(0), svc(0)]));
}

fn scope_subset(all: &'static [&'static str]) -> impl Strategy<Value = ScopeSet> {
    proptest::sample::subsequence(all, 0..=all.len()).prop_map(ScopeSet::from_iter)
}

const LOG_SCOPES: &[&str] = &["logs.read", "logs.write", "logs.purge", "logs.admin", "bogus"];
const ACTORS: &[(&str, ClientKind)] = &[
    ("agent:triage", ClientKind::Agent),
    ("mcp:logs", ClientKind::Service),
    ("stranger", ClientKind::Agent),
    ("svc:x", ClientKind::Service),
];

fn chain_strategy() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(0..ACTORS.len(), 0..4)
}

fn build_chain(idx: &[usize]) -> Option<Act> {
    idx.iter().fold(None, |c, &i| {
        let (sub, kind) = ACTORS[i];
        chain::wrap(
            c,
            Some(&Actor {
                sub: sub.into(),
                iss: None,
                kind,
            }),
        )
    })
}

proptest! {
    #[test]
    fn a_grant_is_a_subset_of_every_input(
        requested in proptest::option::of(scope_subset(LOG_SCOPES)),
        subject in proptest::option::of(scope_subset(LOG_SCOPES)),
        roles in proptest::sample::subsequence(&["developer", "sre", "ghost"][..], 0..=3),
        client in proptest::sample::select(&["web", "triage"][..]),
        chain in chain_strategy(),
    ) {
        let p = policy();
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let chain = build_chain(&chain);
        let audience = &p.audiences["https://logs.example.com"];
        let ctx = ExchangeContext { client: &p.clients[client], audience, requested: requested.as_ref(), roles: Some(&roles), subject_scope: subject.as_ref(), chain: chain.as_ref(), delegated_through: &[], now: NOW, subject_exp: NOW + 600 };
        if let Ok(g) = decide(&p, &ctx, &mut Vec::new()) {
            prop_assert!(g.scope.is_subset(&audience.catalog()));
            prop_assert!(g.scope.is_subset(&p.entitlement(&roles)));
            if let Some(r) = &requested { prop_assert!(g.scope.is_subset(r)); }
            if let Some(s) = &subject { prop_assert!(g.scope.is_subset(s)); }
            let agent_in_chain = client == "triage" || chain.as_ref().is_some_and(|c| c.entries().any(|e| e.sub != "mcp:logs" && e.sub != "svc:x"));
            if agent_in_chain {
                for s in g.scope.iter() {
                    let cat = audience.scopes[s];
                    prop_assert!(p.agents.categories.contains(&cat));
                    prop_assert!(!p.agents.human_only.contains(s));
                }
            }
            prop_assert!(g.exp <= NOW + 600 && g.exp <= NOW + audience.ttl_secs);
            prop_assert!(!g.scope.is_empty());
        }
    }

    /// A `delegated_through` list can only take authority away: whatever
    /// it names, the grant with it is within the grant without it.
    #[test]
    fn a_delegated_through_list_never_widens_a_grant(
        chain in chain_strategy(),
        listed in proptest::collection::vec((0..ACTORS.len(), proptest::option::of(proptest::sample::select(&["service", "ai_agent", "user", ""][..]))), 0..6),
        roles in proptest::sample::subsequence(&["developer", "sre"][..], 0..=2),
    ) {
        let p = policy();
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let chain = build_chain(&chain);
        let delegated: Vec<Act> = listed.iter().map(|(i, profile)| delegate(ACTORS[*i].0, None, *profile)).collect();
        for aud in ["https://logs.example.com", "https://cost.example.com"] {
            let grant = |d: &[Act]| decide(&p, &ExchangeContext { client: &p.clients["web"], audience: &p.audiences[aud], requested: None, roles: Some(&roles), subject_scope: None, chain: chain.as_ref(), delegated_through: d, now: NOW, subject_exp: NOW + 600 }, &mut Vec::new()).map(|g| g.scope).unwrap_or_default();
            prop_assert!(grant(&delegated).is_subset(&grant(&[])));
        }
    }

    /// Along any chain, what may be obtained never grows: adding a hop can
    /// only remove (audience, scope) pairs.
    #[test]
    fn authority_never_grows_along_a_chain(chain in chain_strategy(), next in 0..ACTORS.len(), roles in proptest::sample::subsequence(&["developer", "sre"][..], 0..=2)) {
        let p = policy();
        let roles: Vec<String> = roles.into_iter().map(str::to_owned).collect();
        let before = build_chain(&chain);
        let (sub, kind) = ACTORS[next];
        let after = chain::wrap(before.clone(), Some(&Actor { sub: sub.into(), iss: None, kind }));
        for aud in ["https://logs.example.com", "https://cost.example.com"] {
            let grant = |c: &Option<Act>| decide(&p, &ExchangeContext { client: &p.clients["web"], audience: &p.audiences[aud], requested: None, roles: Some(&roles), subject_scope: None, chain: c.as_ref(), delegated_through: &[], now: NOW, subject_exp: NOW + 600 }, &mut Vec::new()).map(|g| g.scope).unwrap_or_default();
            prop_assert!(grant(&after).is_subset(&grant(&before)));
        }
    }
}

//! The `act` claim (RFC 8693 §4.1) read into a flat chain, current actor
//! first.
//!
//! Owns: the shape rule (a JSON object at every level, a string `sub` in
//! each), the depth cap, and which entries count as agents.
//! Must never: recurse on untrusted input, keep members other than `sub`,
//! `iss` and `sub_profile`, or read an entry without `sub_profile` as a
//! human: a missing profile can never widen what a chain may do.

use serde_json::Value;

/// The most `act` entries a chain may hold before the token is refused. The
/// broker's own `tokens.max_delegation_depth` is far smaller (4 in the
/// examples); this bound only keeps a hostile token cheap.
pub const MAX_ACT_DEPTH: usize = 16;

/// `sub_profile` of an AI agent (draft-mora-oauth-entity-profiles), as the
/// broker writes it.
pub const PROFILE_AGENT: &str = "ai_agent";
/// `sub_profile` of a service (an MCP server, an API).
pub const PROFILE_SERVICE: &str = "service";

/// One entry of the chain: who acted, as vouched for by whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub sub: String,
    /// Set when another issuer vouched for this actor.
    pub iss: Option<String>,
    /// `ai_agent`, `service`, or absent.
    pub sub_profile: Option<String>,
}

impl Actor {
    /// Whether this entry is capped as an agent. As at the broker
    /// (`chain::Act::is_agent`, ARCHITECTURE.md "The chain"), only an
    /// explicit `service` lifts the cap. `sub_profile` is a space-delimited,
    /// case-insensitive list (draft-mora-oauth-entity-profiles §3.3), the
    /// most restrictive value prevailing: it lifts the cap only when every
    /// value is `service`. An entry without `sub_profile`, or with `ai_agent`,
    /// `user` or a value this SDK does not know beside `service`, counts as
    /// an agent, so a profile nobody defined can never widen what a chain
    /// may do.
    pub fn is_agent(&self) -> bool {
        let profile = self.sub_profile.as_deref().unwrap_or_default();
        let mut values = profile.split(' ').filter(|v| !v.is_empty()).peekable();
        !(values.peek().is_some() && values.all(|v| v.eq_ignore_ascii_case(PROFILE_SERVICE)))
    }
}

/// Why an `act` claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error("act must be a JSON object at every level (RFC 8693 §4.1)")]
    NotAnObject,
    #[error("every act entry needs a string sub")]
    NoSub,
    #[error("act member {0} must be a string")]
    NotAString(&'static str),
    #[error("act chain deeper than {0} entries")]
    TooDeep(usize),
}

/// Read `act` into a chain, outermost (current) actor first, at most
/// `max_depth` entries (capped at [`MAX_ACT_DEPTH`]). Iterative: a deeply
/// nested hostile claim costs a loop, never the stack.
///
/// RFC 8693 §4.1: `act` is a JSON object; the nested `act` inside it names
/// the previous actor. An array, a string, or an entry without `sub` is an
/// error, never skipped: silently losing an actor would hide who acted.
pub fn parse_act_chain(act: Option<&Value>, max_depth: usize) -> Result<Vec<Actor>, ActError> {
    let max_depth = max_depth.min(MAX_ACT_DEPTH);
    let mut chain = Vec::new();
    let mut next = act;
    while let Some(v) = next {
        let o = v.as_object().ok_or(ActError::NotAnObject)?;
        if chain.len() == max_depth {
            return Err(ActError::TooDeep(max_depth));
        }
        let string = |name: &'static str| match o.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(ActError::NotAString(name)),
        };
        let sub = string("sub")?.filter(|s| !s.is_empty()).ok_or(ActError::NoSub)?;
        chain.push(Actor {
            sub,
            iss: string("iss")?,
            sub_profile: string("sub_profile")?,
        });
        next = o.get("act");
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(depth: usize) -> Value {
        let mut v = json!({"sub": format!("actor:{depth}"), "sub_profile": "service"});
        for i in (1..depth).rev() {
            v = json!({"sub": format!("actor:{i}"), "sub_profile": "service", "act": v});
        }
        v
    }

    #[test]
    fn a_nested_act_becomes_a_chain_current_actor_first() {
        let act = json!({"sub": "mcp:logs", "sub_profile": "service",
                         "act": {"sub": "agent:triage", "sub_profile": "ai_agent", "iss": "https://agents"}});
        let chain = parse_act_chain(Some(&act), MAX_ACT_DEPTH).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].sub, "mcp:logs");
        assert!(!chain[0].is_agent());
        assert_eq!(chain[1].sub, "agent:triage");
        assert_eq!(chain[1].iss.as_deref(), Some("https://agents"));
        assert!(chain[1].is_agent());
    }

    #[test]
    fn no_act_is_an_empty_chain() {
        assert_eq!(parse_act_chain(None, MAX_ACT_DEPTH).unwrap(), vec![]);
    }

    #[test]
    fn a_profile_list_lifts_the_cap_only_when_every_value_is_service() {
        let entry = |p: &str| parse_act_chain(Some(&json!({"sub": "x", "sub_profile": p})), MAX_ACT_DEPTH).unwrap();
        assert!(!entry("Service")[0].is_agent());
        assert!(!entry("service service")[0].is_agent());
        assert!(
            entry("service ai_agent")[0].is_agent(),
            "the most restrictive value prevails"
        );
        assert!(entry("service acme_robot")[0].is_agent());
        assert!(entry(" ")[0].is_agent());
    }

    #[test]
    fn an_entry_without_a_profile_or_with_an_unknown_one_counts_as_an_agent() {
        let chain = parse_act_chain(Some(&json!({"sub": "someone"})), MAX_ACT_DEPTH).unwrap();
        assert!(chain[0].is_agent());
        let chain = parse_act_chain(Some(&json!({"sub": "someone", "sub_profile": "human"})), MAX_ACT_DEPTH).unwrap();
        assert!(chain[0].is_agent(), "only `service` lifts the cap");
    }

    #[test]
    fn a_chain_at_the_cap_is_read_and_one_deeper_is_refused() {
        assert_eq!(parse_act_chain(Some(&nested(16)), 16).unwrap().len(), 16);
        assert_eq!(parse_act_chain(Some(&nested(17)), 16), Err(ActError::TooDeep(16)));
        assert_eq!(parse_act_chain(Some(&nested(5)), 4), Err(ActError::TooDeep(4)));
        assert_eq!(
            parse_act_chain(Some(&nested(17)), 1000),
            Err(ActError::TooDeep(MAX_ACT_DEPTH)),
            "the cap cannot be configured away"
        );
    }

    #[test]
    fn a_malformed_act_is_an_error_never_skipped() {
        for (act, err) in [
            (json!(["agent:admin"]), ActError::NotAnObject),
            (json!({"sub": "a", "act": ["b"]}), ActError::NotAnObject),
            (json!({"sub": "a", "act": "b"}), ActError::NotAnObject),
            (json!({"sub_profile": "service"}), ActError::NoSub),
            (json!({"sub": ""}), ActError::NoSub),
            (json!({"sub": 5}), ActError::NotAString("sub")),
            (
                json!({"sub": "a", "sub_profile": 1}),
                ActError::NotAString("sub_profile"),
            ),
        ] {
            assert_eq!(parse_act_chain(Some(&act), MAX_ACT_DEPTH), Err(err), "{act}");
        }
    }

    #[test]
    fn members_other_than_sub_iss_and_profile_are_not_kept() {
        let chain = parse_act_chain(Some(&json!({"sub": "a", "scope": "admin", "exp": 1})), 4).unwrap();
        assert_eq!(
            chain,
            vec![Actor {
                sub: "a".into(),
                iss: None,
                sub_profile: None
            }]
        );
    }
}

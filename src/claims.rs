//! Claims of the tokens we issue, and the typed view of claims we read.
//!
//! Owns: the claim sets of an ID-JAG (draft-ietf-oauth-identity-assertion-
//! authz-grant §3.1) and an RFC 9068 access token, and parsing inbound claims
//! into typed values.
//! Must never: decide anything; validation is `trust::validate`, policy is
//! `policy`.

use serde::{Deserialize, Deserializer, Serialize};

use crate::chain::Act;
use crate::types::ScopeSet;

pub const TYP_ID_JAG: &str = "oauth-id-jag+jwt";
pub const TYP_ACCESS_TOKEN: &str = "at+jwt";

fn is_empty_scope(s: &ScopeSet) -> bool {
    s.is_empty()
}

/// RFC 9493 §3.2.2 "Issuer and Subject" identifier, carried as the `sub_id`
/// claim (RFC 9493 §4.1): the issuer that vouched for the user beside their
/// `sub`. A subject is only unique within its issuer, so a resource server
/// fed by more than one IdP keys users on this pair, never on `sub` alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubjectId {
    pub format: String,
    pub iss: String,
    pub sub: String,
}

impl SubjectId {
    pub const FORMAT: &'static str = "iss_sub";

    pub fn new(principal: &crate::types::Principal) -> Self {
        Self {
            format: Self::FORMAT.to_owned(),
            iss: principal.iss.clone(),
            sub: principal.sub.clone(),
        }
    }
}

/// Authentication facts copied from the upstream ID token when present
/// (OIDC Core §2), never invented.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct IdentityClaims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amr: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The claims of every token we issue. An ID-JAG
/// (draft-ietf-oauth-identity-assertion-authz-grant §3.1) and an RFC 9068
/// §2.2 access token share every member; they differ in `typ`
/// ([`TYP_ID_JAG`], [`TYP_ACCESS_TOKEN`]), in what `aud` and `client_id`
/// name (for an ID-JAG: the resource AS's issuer, and the client's id *at
/// that AS*), and in `resource`, which only an ID-JAG that names one
/// carries. Beyond the registered claims: `act` (RFC 8693 §4.1), `txn`,
/// `roles` (RFC 9068 §2.2.3.1) carrying the user's entitlements down the
/// chain, `sub_id` (RFC 9493) and the identity facts of the sign-in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedClaims {
    pub iss: String,
    pub sub: String,
    /// Who vouched for `sub` (RFC 9493), so that `bob` of one IdP is never
    /// `bob` of another.
    pub sub_id: SubjectId,
    /// Exactly one audience, a plain string (specs/decisions.md §2).
    pub aud: String,
    pub client_id: String,
    /// The entity profile of the client named by `client_id`
    /// (draft-mora-oauth-entity-profiles §4.1), from its configured kind;
    /// top-level only, never inside `act` (draft-mcguinness-oauth-actor-
    /// profile §3.4). Absent for an `app`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_profile: Option<String>,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "is_empty_scope")]
    pub scope: ScopeSet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The flat delegation list a trusted subject carried beside `act`
    /// (`chain::delegated_through`), passed on so that its caps hold at
    /// every later hop; never a substitute for `act` (specs/decisions.md
    /// §3, "The actor profile"). Absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delegated_through: Vec<Act>,
    pub txn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// The key this token is bound to, when the request proved one (RFC 9449
    /// §6.1; for an ID-JAG, ID-JAG §3.1 `cnf`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    #[serde(flatten)]
    pub identity: IdentityClaims,
}

/// RFC 7800 §3.1 `cnf` with the one confirmation method we issue: the
/// RFC 7638 thumbprint of a DPoP key (RFC 9449 §6.1 `jkt`). Also the
/// token exchange response's `cnf` (draft-mcguinness-oauth-token-exchange-
/// cnf), so a client sees that the binding happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    pub jkt: String,
}

/// `aud` may be a string or an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
    /// The single value, if there is exactly one.
    pub fn single(&self) -> Option<&str> {
        match self.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
    pub fn contains(&self, s: &str) -> bool {
        self.as_slice().iter().any(|a| a == s)
    }
}

/// RFC 7519 §2 NumericDate may be fractional; we keep whole seconds.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let v: Option<f64> = Option::deserialize(d)?;
    Ok(v.filter(|f| f.is_finite()).map(|f| f as i64))
}

/// Claims of an inbound JWT, typed. Whatever is malformed fails parsing, so a
/// `sub` that is a number or an `exp` that is a string never gets further.
#[derive(Debug, Clone, Deserialize)]
pub struct InboundClaims {
    pub iss: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<OneOrMany>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub azp: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub act: Option<serde_json::Value>,
    #[serde(default)]
    pub may_act: Option<serde_json::Value>,
    /// RFC 7800 `cnf`, kept raw: how it binds is read by
    /// `dpop::binding::Bound::of`, and a binding we cannot read is refused,
    /// never ignored.
    #[serde(default)]
    pub cnf: Option<serde_json::Value>,
    #[serde(default)]
    pub txn: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// ID-JAG §3.1 `resource`: a string or an array of strings (ID-JAG
    /// issue 92). Kept raw so that a malformed one is refused by its own
    /// rule ([`InboundClaims::resources`]), not as a malformed token.
    #[serde(default)]
    pub resource: Option<serde_json::Value>,
    #[serde(default)]
    pub aud_sub: Option<String>,
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub sub_id: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "numeric_date")]
    pub auth_time: Option<i64>,
    #[serde(default)]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    #[serde(default)]
    pub email: Option<String>,
    /// Everything else, e.g. the issuer's groups claim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The most values an inbound `resource` array may hold: an ID-JAG names the
/// resources of one authorization server, a handful at most; the bound only
/// keeps a hostile one cheap.
pub const MAX_RESOURCES: usize = 16;

/// Why an inbound `resource` claim is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedResource;

impl InboundClaims {
    /// ID-JAG §3.1 `resource`, read as the list of resources it names: a
    /// string is one; an array (ID-JAG issue 92: some IdPs emit one) is
    /// 1..=[`MAX_RESOURCES`] non-empty strings, in order. Absent or `null`
    /// is `None`. Anything else — an empty or too-long array, a non-string
    /// or empty element, a number, an object — is malformed, never "no
    /// resource": a claim the IdP wrote but we cannot read must not widen
    /// what is redeemed.
    pub fn resources(&self) -> Result<Option<Vec<&str>>, MalformedResource> {
        fn non_empty(v: &serde_json::Value) -> Option<&str> {
            v.as_str().filter(|s| !s.is_empty())
        }
        match &self.resource {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::Array(a)) if (1..=MAX_RESOURCES).contains(&a.len()) => a
                .iter()
                .map(|v| non_empty(v).ok_or(MalformedResource))
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => non_empty(v).map(|s| Some(vec![s])).ok_or(MalformedResource),
        }
    }

    pub fn identity(&self) -> IdentityClaims {
        IdentityClaims {
            auth_time: self.auth_time,
            acr: self.acr.clone(),
            amr: self.amr.clone(),
            email: self.email.clone(),
        }
    }

    /// A groups claim by name: an array of strings, or one space-separated
    /// string (some IdPs emit either).
    pub fn groups(&self, claim: &str) -> Vec<&str> {
        match self.extra.get(claim) {
            Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_str()).collect(),
            Some(serde_json::Value::String(s)) => s.split(' ').filter(|g| !g.is_empty()).collect(),
            _ => Vec::new(),
        }
    }

    /// The `act` claim as a chain. A malformed one is an error, never dropped:
    /// silently losing an actor would hide who acted.
    pub fn act_chain(&self) -> Result<Option<Act>, serde_json::Error> {
        // RFC 8693 §4.1: `act` is a JSON object at every level. serde would
        // also read an array as a struct (fields in order), which would let an
        // upstream forge entries positionally.
        fn objects_all_the_way_down(v: &serde_json::Value) -> bool {
            v.as_object()
                .is_some_and(|o| o.get("act").is_none_or(objects_all_the_way_down))
        }
        match &self.act {
            None => Ok(None),
            Some(v) if objects_all_the_way_down(v) => serde_json::from_value(v.clone()).map(Some),
            Some(_) => Err(serde::de::Error::custom("act must be a JSON object at every level")),
        }
    }

    /// The `iss` of an RFC 9493 `iss_sub` subject identifier naming this
    /// token's own `sub`. Read only from tokens we issued: another issuer's
    /// word on which IdP its user came from would let it speak for ours.
    pub fn sub_id_issuer(&self) -> Option<&str> {
        let o = self.sub_id.as_ref()?.as_object()?;
        let format = o.get("format")?.as_str()?;
        let sub = o.get("sub")?.as_str()?;
        (format == SubjectId::FORMAT && Some(sub) == self.sub.as_deref())
            .then(|| o.get("iss")?.as_str())
            .flatten()
    }

    pub fn scope_set(&self) -> Option<ScopeSet> {
        self.scope.as_deref().and_then(|s| ScopeSet::parse(s).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbound_claims_accept_fractional_dates_and_string_groups() {
        let c: InboundClaims = serde_json::from_value(serde_json::json!({
            "iss": "https://idp", "exp": 1700000000.5, "groups": "a b"
        }))
        .unwrap();
        assert_eq!(c.exp, Some(1700000000));
        assert_eq!(c.groups("groups"), vec!["a", "b"]);
    }

    #[test]
    fn act_must_be_an_object_at_every_level() {
        let with = |act: serde_json::Value| {
            serde_json::from_value::<InboundClaims>(serde_json::json!({"iss": "x", "act": act})).unwrap()
        };
        assert!(with(serde_json::json!(["agent:admin"])).act_chain().is_err());
        assert!(with(serde_json::json!({"sub": "a", "act": ["b"]})).act_chain().is_err());
        assert!(
            with(serde_json::json!({"sub": "a", "act": {"sub": "b"}}))
                .act_chain()
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn resource_is_a_string_or_a_bounded_array_of_strings() {
        let with = |resource: serde_json::Value| {
            serde_json::from_value::<InboundClaims>(serde_json::json!({"iss": "x", "resource": resource})).unwrap()
        };
        let none = serde_json::from_value::<InboundClaims>(serde_json::json!({"iss": "x"})).unwrap();
        assert_eq!(none.resources(), Ok(None));
        assert_eq!(with(serde_json::json!(null)).resources(), Ok(None));
        assert_eq!(
            with(serde_json::json!("https://r")).resources(),
            Ok(Some(vec!["https://r"]))
        );
        assert_eq!(
            with(serde_json::json!(["https://a", "https://b"])).resources(),
            Ok(Some(vec!["https://a", "https://b"]))
        );
        let full: Vec<String> = (0..MAX_RESOURCES).map(|i| format!("https://r/{i}")).collect();
        assert_eq!(
            with(serde_json::json!(full)).resources().unwrap().unwrap().len(),
            MAX_RESOURCES
        );
        let over: Vec<String> = (0..=MAX_RESOURCES).map(|i| format!("https://r/{i}")).collect();
        for bad in [
            serde_json::json!(over),
            serde_json::json!([]),
            serde_json::json!(["https://a", 7]),
            serde_json::json!(["https://a", ""]),
            serde_json::json!([["https://a"]]),
            serde_json::json!(""),
            serde_json::json!(5),
            serde_json::json!({"uri": "https://a"}),
        ] {
            assert_eq!(with(bad.clone()).resources(), Err(MalformedResource), "{bad}");
        }
    }

    #[test]
    fn a_malformed_claim_fails_parsing() {
        assert!(serde_json::from_value::<InboundClaims>(serde_json::json!({"iss": "x", "sub": 5})).is_err());
        assert!(serde_json::from_value::<InboundClaims>(serde_json::json!({"iss": "x", "exp": "soon"})).is_err());
    }

    #[test]
    fn optional_claims_are_omitted_not_null() {
        let c = IssuedClaims {
            iss: "i".into(),
            sub: "s".into(),
            sub_id: SubjectId {
                format: SubjectId::FORMAT.into(),
                iss: "https://idp".into(),
                sub: "s".into(),
            },
            aud: "a".into(),
            client_id: "c".into(),
            client_profile: None,
            jti: "j".into(),
            iat: 1,
            exp: 2,
            scope: ScopeSet::default(),
            resource: None,
            roles: vec![],
            delegated_through: vec![],
            txn: "t".into(),
            act: None,
            cnf: None,
            identity: IdentityClaims::default(),
        };
        let v = serde_json::to_value(&c).unwrap();
        assert!(v.get("act").is_none() && v.get("scope").is_none() && v.get("auth_time").is_none());
        assert!(v.get("cnf").is_none(), "a bearer token has no cnf");
        assert!(v.get("resource").is_none(), "an access token names no resource");
        assert!(v.get("client_profile").is_none(), "no profile is guessed");
        assert!(v.get("delegated_through").is_none());
    }
}

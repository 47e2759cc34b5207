//! RFC 8693 token exchange, for both outputs the broker issues:
//! an ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §4.3) and an
//! RFC 9068 hop token for a downstream resource. Either output starts a
//! chain from an ID token or continues one from an access token (for an
//! ID-JAG: multi-hop Cross-App Access, specs/decisions.md §27).
//!
//! Reads as the spec's steps in order: parse → resolve target → validate
//! subject → validate actor → build chain → decide → mint. The client is
//! already authenticated; committing and responding belong to `grant`.
//! Must never: widen authority (that rule is `policy::decide`), let a client
//! choose `txn`, or accept a subject token issued to another client.

use std::sync::Arc;

use crate::audit::AuditRecord;
use crate::chain::{self, Act, ActorClaim};
use crate::claims::IdentityClaims;
use crate::dpop::binding::{self, Bound, Presenter};
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::grant::{Draft, GrantContext, Issued, mint};
use crate::params::OAuthParams;
use crate::policy::{Audience, AudienceKind, Client, ExchangeContext, decide};
use crate::store::RevocationGuard;
use crate::telemetry::{self, Step};
use crate::trust::validate::{Expect, Rejected, Verified};
use crate::types::{Principal, ScopeSet, TokenType};

/// The parsed request (RFC 8693 §2.1).
struct Request<'a> {
    subject_token: &'a str,
    subject_token_type: TokenType,
    actor: Option<(&'a str, TokenType)>,
    requested: TokenType,
    scope: Option<ScopeSet>,
    audience: Arc<Audience>,
    resource: Option<String>,
}

/// What the subject token establishes about the user and the chain so far.
struct Subject {
    /// The user, qualified by the issuer that vouched for them.
    principal: Principal,
    /// Who issued the subject token itself (for `may_act` without `iss`).
    token_issuer: String,
    exp: i64,
    roles: Vec<String>,
    txn: String,
    chain: Option<Act>,
    /// Its flat delegation list (`delegated_through`), for caps and audit.
    delegated_through: Vec<Act>,
    /// The subject's scope when it was issued for the same audience.
    scope_same_audience: Option<ScopeSet>,
    identity: IdentityClaims,
    may_act: Option<serde_json::Value>,
    /// The subject token's `cnf`, raw (`dpop::binding::Bound::of`).
    cnf: Option<serde_json::Value>,
    /// Whether this client holds the subject token (it was issued to it) or
    /// received it (it was issued for it): who must prove which key.
    presenter: Presenter,
    /// Issue only if the subject token is still not revoked at commit time.
    guard: (RevocationGuard, OAuthError),
}

pub async fn exchange(
    cx: &GrantContext<'_>,
    client: &Arc<Client>,
    params: &OAuthParams,
    audit: &mut AuditRecord,
    proved: Option<&str>,
) -> OAuthResult<Issued> {
    let req = parse(cx, params, audit)?;
    let subject = telemetry::timed(Step::SubjectValidation, validate_subject(cx, client, &req, audit)).await?;
    let cnf_jkt =
        binding::exchange(Bound::of(subject.cnf.as_ref()), subject.presenter, proved).map_err(bound_subject)?;
    let actor_token = match req.actor {
        Some(_) => telemetry::timed(Step::ActorValidation, validate_actor(cx, &req, &subject, audit)).await?,
        None => None,
    };

    let actor = chain::new_actor(client.presenter(), actor_token.as_ref().map(|(claim, _)| claim)).map_err(|_| {
        OAuthError::invalid_request(
            "actor_token.not_this_client",
            "actor_token is invalid: this client may not act as the identity it names",
        )
    })?;
    // `act` must name someone other than `sub` (RFC 9700 §4.15: a client
    // identity must never be confusable with a user's).
    if actor.as_ref().is_some_and(|a| a.sub == subject.principal.sub) {
        return Err(OAuthError::invalid_request(
            "chain.actor_is_subject",
            "the acting client's identity equals the user's subject; act must name someone else",
        ));
    }
    if !chain::may_act_allows(
        subject.may_act.as_ref(),
        actor.as_ref(),
        &cx.policy.issuer,
        &subject.token_issuer,
    ) {
        return Err(OAuthError::invalid_request(
            "chain.may_act",
            "the subject token's may_act does not allow this actor (RFC 8693 §4.4)",
        ));
    }
    let chain = chain::wrap(subject.chain.clone(), actor.as_ref());
    audit.chain(&subject.txn, chain.as_ref());

    let grant = telemetry::step(Step::Decision).in_scope(|| {
        decide(
            cx.policy,
            &ExchangeContext {
                client,
                audience: &req.audience,
                requested: req.scope.as_ref(),
                roles: Some(&subject.roles),
                subject_scope: subject.scope_same_audience.as_ref(),
                chain: chain.as_ref(),
                delegated_through: &subject.delegated_through,
                now: cx.now,
                subject_exp: subject.exp,
            },
            &mut audit.scope_withheld,
        )
    })?;

    let client_id = match req.requested {
        // ID-JAG §4.3.3 step 5: the client's id at the resource AS.
        TokenType::IdJag => client
            .ras_client_ids
            .get(&req.audience.id)
            .cloned()
            .unwrap_or_else(|| client.id.clone()),
        _ => client.id.clone(),
    };
    mint(
        cx,
        audit,
        Draft {
            output: req.requested,
            names_issued_type: true,
            principal: subject.principal,
            aud: req.audience.id.clone(),
            client_id,
            client_profile: client.kind.client_profile(),
            exp: grant.exp,
            scope: grant.scope,
            resource: req.resource.clone(),
            roles: subject.roles,
            delegated_through: subject.delegated_through,
            txn: subject.txn,
            act: chain,
            identity: subject.identity,
            cnf_jkt,
            guards: std::iter::once(subject.guard)
                .chain(actor_token.map(|(_, guard)| guard))
                .collect(),
        },
    )
}

fn parse<'a>(cx: &GrantContext<'_>, params: &'a OAuthParams, audit: &mut AuditRecord) -> OAuthResult<Request<'a>> {
    let subject_token = params.require("subject_token")?;
    let subject_token_type = token_type(params.require("subject_token_type")?, "subject_token_type")?;
    let actor = match (params.get("actor_token"), params.get("actor_token_type")) {
        (Some(t), Some(ty)) => Some((t, token_type(ty, "actor_token_type")?)),
        (None, None) => None,
        _ => {
            return Err(OAuthError::invalid_request(
                "request.actor_token_type",
                "actor_token and actor_token_type must be sent together (RFC 8693 §2.1)",
            ));
        }
    };
    let scope = params
        .get("scope")
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|e| OAuthError::invalid_scope("scope.malformed", e))?;
    let audiences = params.all("audience");
    let resources = params.all("resource");
    if !resources.iter().all(|r| crate::types::is_resource_indicator(r)) {
        return Err(OAuthError::invalid_target(
            "target.bad_resource",
            "resource must be an absolute URI without a fragment (RFC 8707 §2)",
        ));
    }
    let requested = match params.get("requested_token_type") {
        Some(t) => token_type(t, "requested_token_type")?,
        // The AS chooses (RFC 8693 §2.1): what the named audience takes.
        None => audiences
            .first()
            .and_then(|a| cx.policy.audiences.get(*a))
            .map(|a| match a.kind {
                AudienceKind::IdJag => TokenType::IdJag,
                AudienceKind::AccessToken => TokenType::AccessToken,
            })
            .unwrap_or(TokenType::AccessToken),
    };

    let (audience, resource) = match requested {
        TokenType::IdJag => resolve_id_jag_target(cx, &audiences, &resources)?,
        TokenType::AccessToken | TokenType::Jwt => (resolve_resource_target(cx, &audiences, &resources)?, None),
        other => {
            return Err(OAuthError::invalid_request(
                "request.requested_token_type",
                format!("requested_token_type {} is not issued by this server", other.uri()),
            ));
        }
    };
    audit.target(requested.uri(), &audience.id, resource.as_deref(), scope.as_ref());
    telemetry::record_request_static("oauth.requested_token_type", requested.uri());
    telemetry::record_request("oauth.audience", &audience.id);
    Ok(Request {
        subject_token,
        subject_token_type,
        actor,
        requested: if requested == TokenType::Jwt {
            TokenType::AccessToken
        } else {
            requested
        },
        scope,
        audience,
        resource,
    })
}

fn token_type(raw: &str, param: &'static str) -> OAuthResult<TokenType> {
    TokenType::parse(raw).ok_or_else(|| {
        OAuthError::invalid_request(
            "request.token_type",
            format!("{param} {raw:?} is not a supported token type URI"),
        )
    })
}

/// ID-JAG §4.3: `audience` is the resource AS issuer (or an alias of it),
/// exactly one; `resource`, if sent, must be one the AS serves: the valid
/// `(audience, resource)` pairs are in config (MCP EMA §7).
fn resolve_id_jag_target(
    cx: &GrantContext<'_>,
    audiences: &[&str],
    resources: &[&str],
) -> OAuthResult<(Arc<Audience>, Option<String>)> {
    let [aud] = audiences else {
        return Err(OAuthError::invalid_request(
            "target.audience_count",
            "an ID-JAG request needs exactly one audience: the resource authorization server's issuer",
        ));
    };
    let audience = cx.policy.audience_of_kind(aud, AudienceKind::IdJag).ok_or_else(|| {
        OAuthError::invalid_target(
            "target.unknown_audience",
            "the audience is not a known resource authorization server",
        )
    })?;
    let resource = match resources {
        [] => None,
        [r] if audience.resources.iter().any(|x| x == r) => Some((*r).to_owned()),
        [_] => {
            return Err(OAuthError::invalid_target(
                "target.resource_not_at_audience",
                "the resource is not served by that authorization server",
            ));
        }
        _ => {
            return Err(OAuthError::invalid_target(
                "target.resource_count",
                "an ID-JAG names at most one resource",
            ));
        }
    };
    Ok((audience, resource))
}

/// A hop token names one downstream resource, by `resource` and/or
/// `audience`; when both are sent they must name the same one.
fn resolve_resource_target(
    cx: &GrantContext<'_>,
    audiences: &[&str],
    resources: &[&str],
) -> OAuthResult<Arc<Audience>> {
    let mut found: Option<Arc<Audience>> = None;
    for name in audiences.iter().chain(resources) {
        let a = cx
            .policy
            .audience_of_kind(name, AudienceKind::AccessToken)
            .ok_or_else(|| {
                OAuthError::invalid_target(
                    "target.unknown_resource",
                    "the requested resource or audience is not known",
                )
            })?;
        match &found {
            Some(f) if f.id != a.id => {
                return Err(OAuthError::invalid_target(
                    "target.multiple",
                    "a token is issued for exactly one audience; the request names several",
                ));
            }
            _ => found = Some(a),
        }
    }
    found.ok_or_else(|| OAuthError::invalid_target("target.missing", "name the downstream with resource or audience"))
}

/// A key-bound subject token that this request may not exchange
/// (`dpop::binding::exchange`): the subject token is unacceptable, which
/// RFC 8693 §2.2.2 answers `invalid_request` (decisions §1).
fn bound_subject(r: binding::Refused) -> OAuthError {
    match r {
        binding::Refused::ProofRequired => OAuthError::invalid_request(
            "subject_token.dpop_proof_required",
            "subject_token is bound to a key (cnf): exchange it with a DPoP proof",
        ),
        binding::Refused::OtherKey => OAuthError::invalid_request(
            "subject_token.dpop_other_key",
            "subject_token is bound to another key than the DPoP proof's",
        ),
        binding::Refused::UnsupportedMethod => OAuthError::invalid_request(
            "subject_token.cnf_unsupported",
            "subject_token is bound by a confirmation method this server does not verify",
        ),
    }
}

/// A subject/actor token failure: `invalid_request` as RFC 8693 §2.2.2 says
/// (specs/decisions.md §1), or 503 when keys could not be obtained.
fn token_error(which: &'static str, r: Rejected) -> OAuthError {
    r.into_error(ErrorCode::InvalidRequest, which)
}

async fn validate_subject(
    cx: &GrantContext<'_>,
    client: &Client,
    req: &Request<'_>,
    audit: &mut AuditRecord,
) -> OAuthResult<Subject> {
    audit.subject_presented(req.subject_token);
    // The same two rules for both outputs: an ID token starts a chain, an
    // access token (ours or a trusted issuer's) continues one. For an
    // ID-JAG the second is multi-hop Cross-App Access (decisions §27): an
    // agent at resource A reaches resource B for the same user, its chain
    // and `txn` carried on, under exactly the hop rules.
    let expect = match req.subject_token_type {
        TokenType::IdToken => Expect::IdToken { client_id: &client.id },
        TokenType::AccessToken | TokenType::Jwt => Expect::AccessToken,
        other => {
            return Err(OAuthError::invalid_request(
                "subject_token.type_not_accepted",
                format!(
                    "subject_token_type {} is not accepted: send an ID token or an access token",
                    other.uri()
                ),
            ));
        }
    };
    let v = cx
        .validator
        .validate(req.subject_token, expect)
        .await
        .map_err(|r| token_error("subject_token", r))?;
    // The user's issuer: the upstream that signed, or for our own tokens the
    // one they name (RFC 9493 `sub_id`), else us.
    let principal = Principal {
        iss: match &v.issuer {
            Some(i) => i.issuer.clone(),
            None => v.claims.sub_id_issuer().unwrap_or(&cx.policy.issuer).to_owned(),
        },
        sub: v.sub.clone(),
    };
    audit.subject_verified(&v.claims.iss, v.claims.jti.as_deref(), &principal);
    let identity = v.claims.identity();

    match expect {
        Expect::IdToken { .. } => id_token_subject(cx, v, principal, identity, audit),
        _ => access_token_subject(cx, client, req, v, principal, identity, audit),
    }
}

/// An ID token starts a chain: a new `txn`, roles from the IdP's groups, no
/// `act` (a forged one in an identity assertion is refused, not dropped).
fn id_token_subject(
    cx: &GrantContext<'_>,
    v: Verified,
    principal: Principal,
    identity: IdentityClaims,
    audit: &mut AuditRecord,
) -> OAuthResult<Subject> {
    if v.claims.act.is_some() {
        return Err(OAuthError::invalid_request(
            "subject_token.act_in_id_token",
            "subject_token is invalid: an ID token cannot carry an act claim",
        ));
    }
    // Nor a flat delegation list: refused, never ignored, like `act`.
    if v.claims.extra.contains_key(chain::DELEGATED_THROUGH) {
        return Err(OAuthError::invalid_request(
            "subject_token.delegated_through_in_id_token",
            "subject_token is invalid: an ID token cannot carry a delegated_through claim",
        ));
    }
    // An offboarded user's identity assertions issued before the cut-off
    // start nothing (admin revoke by subject): checked at commit.
    let guard = not_revoked(&v, &principal, None, Which::Subject);
    let roles = match &v.issuer {
        Some(i) => cx.policy.roles_from(i, v.claims.groups(&i.groups_claim)),
        None => Vec::new(),
    };
    let txn = chain::inherit_txn(None);
    audit.chain(&txn, None);
    telemetry::record_txn(&txn);
    Ok(Subject {
        token_issuer: v.claims.iss.clone(),
        principal,
        exp: v.exp,
        roles,
        txn,
        chain: None,
        delegated_through: Vec::new(),
        scope_same_audience: None,
        identity,
        may_act: v.claims.may_act,
        cnf: v.claims.cnf,
        // An ID token is issued to the client presenting it (`aud`).
        presenter: Presenter::Holder,
        guard,
    })
}

/// An access token, ours or from an issuer trusted for access tokens,
/// continues a chain: issued to or for this client, its `txn`, `act` and
/// roles carried on, its scope a bound for a re-exchange to its audience.
fn access_token_subject(
    cx: &GrantContext<'_>,
    client: &Client,
    req: &Request<'_>,
    v: Verified,
    principal: Principal,
    identity: IdentityClaims,
    audit: &mut AuditRecord,
) -> OAuthResult<Subject> {
    let txn = chain::inherit_txn(v.claims.txn.as_deref());
    audit.chain(&txn, None);
    telemetry::record_txn(&txn);
    let aud = v.claims.aud.as_ref();
    let issued_to_client = v.claims.client_id.as_deref() == Some(client.id.as_str());
    let issued_for_client = issued_to_client
        || client
            .resource
            .as_deref()
            .is_some_and(|r| aud.is_some_and(|a| a.contains(r)));
    if !issued_for_client {
        return Err(OAuthError::invalid_request(
            "subject_token.not_issued_to_client",
            "subject_token is invalid: it was not issued to or for this client",
        ));
    }
    let guard = not_revoked(&v, &principal, Some(&txn), Which::Subject);
    let chain = v.claims.act_chain().map_err(|_| {
        OAuthError::invalid_request(
            "subject_token.act_malformed",
            "subject_token is invalid: malformed act claim",
        )
    })?;
    // A chain another issuer made: its entries are in that issuer's namespace.
    let chain = match &v.issuer {
        None => chain,
        Some(i) => chain::vouched_by(chain, &i.issuer),
    };
    let delegated_through = chain::delegated_through(&v.claims.extra, v.issuer.as_ref().map(|i| i.issuer.as_str()))
        .map_err(|m| m.refused("subject_token.delegated_through_malformed", "subject_token"))?;
    audit.delegated_through(&delegated_through);
    let roles = match &v.issuer {
        // Ours: the entitlements resolved at the first exchange, unchanged.
        None => v.claims.roles.clone().unwrap_or_default(),
        // A trusted issuer's: whatever of its roles/groups we know and
        // accept from that issuer (`issuers.*.roles`).
        Some(i) => {
            let mut names: Vec<&str> = v.claims.groups(&i.groups_claim);
            if let Some(r) = &v.claims.roles {
                names.extend(r.iter().map(String::as_str));
            }
            cx.policy.roles_from(i, names)
        }
    };
    let same_audience = aud.is_some_and(|a| a.contains(&req.audience.id));
    let scope_same_audience = if same_audience {
        // A re-exchange for the same audience never widens: an unreadable
        // scope counts as empty, not as unlimited.
        Some(v.claims.scope_set().unwrap_or_default())
    } else {
        None
    };
    Ok(Subject {
        token_issuer: v.claims.iss.clone(),
        principal,
        exp: v.exp,
        roles,
        txn,
        chain,
        delegated_through,
        scope_same_audience,
        identity,
        may_act: v.claims.may_act,
        cnf: v.claims.cnf,
        presenter: if issued_to_client {
            Presenter::Holder
        } else {
            Presenter::Recipient
        },
        guard,
    })
}

/// Which presented token a guard protects, for its error.
#[derive(Clone, Copy)]
enum Which {
    Subject,
    Actor,
}

/// "Only if this token is not revoked" (by jti, by txn, or by its
/// principal's cut-off), checked inside the commit: one store round trip.
fn not_revoked(v: &Verified, principal: &Principal, txn: Option<&str>, which: Which) -> (RevocationGuard, OAuthError) {
    let (reason, description) = match which {
        Which::Actor => ("actor_token.revoked", "actor_token is invalid: it has been revoked"),
        Which::Subject => ("subject_token.revoked", "subject_token is invalid: it has been revoked"),
    };
    (
        RevocationGuard {
            jti: v.claims.jti.clone(),
            txn: txn.map(str::to_owned),
            principal: principal.clone(),
            iat: v.claims.iat,
        },
        OAuthError::invalid_request(reason, description),
    )
}

/// The actor token (RFC 8693 §2.1), if one was sent: valid by its own rule
/// (issuer trusted for `actor`, addressed to us, bounded lifetime), not the
/// subject, and — checked at commit like the subject — not revoked.
async fn validate_actor(
    cx: &GrantContext<'_>,
    req: &Request<'_>,
    subject: &Subject,
    audit: &mut AuditRecord,
) -> OAuthResult<Option<(ActorClaim, (RevocationGuard, OAuthError))>> {
    let Some((token, ty)) = req.actor else {
        return Ok(None);
    };
    audit.actor_presented(token);
    if !matches!(ty, TokenType::Jwt | TokenType::IdToken) {
        return Err(OAuthError::invalid_request(
            "actor_token.type_not_accepted",
            "actor_token_type must be urn:ietf:params:oauth:token-type:jwt",
        ));
    }
    let v = cx
        .validator
        .validate(token, Expect::ActorToken)
        .await
        .map_err(|r| token_error("actor_token", r))?;
    audit.actor_verified(&v.claims.iss, v.claims.jti.as_deref());
    // Keep act distinct from sub (ID-JAG security considerations).
    if v.sub == subject.principal.sub {
        return Err(OAuthError::invalid_request(
            "actor_token.same_as_subject",
            "actor_token is invalid: the actor cannot be the subject",
        ));
    }
    let issuer_profile = v
        .issuer
        .as_ref()
        .map(|i| i.actor_profile)
        .unwrap_or(crate::types::ClientKind::Agent);
    let principal = Principal {
        iss: v.claims.iss.clone(),
        sub: v.sub.clone(),
    };
    let guard = not_revoked(&v, &principal, None, Which::Actor);
    Ok(Some((
        ActorClaim {
            sub: v.sub,
            iss: v.claims.iss,
            issuer_profile,
        },
        guard,
    )))
}

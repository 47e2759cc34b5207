//! RFC 7523 §2.1 jwt-bearer grant: redeeming an ID-JAG at the resource
//! authorization server (draft-ietf-oauth-identity-assertion-authz-grant §4.4).
//!
//! Reads as the draft's validation steps in order: typ → trusted issuer +
//! alg + signature → aud → time → jti → client_id → key binding (`cnf`,
//! with the request's DPoP proof) → resource → scope → subject. The
//! `jwt-dpop` grant (draft-parecki-oauth-jwt-dpop-grant) is this grant with
//! a proof required. Every failure of the assertion is `invalid_grant` (RFC 7523
//! §3.1); client authentication failures stay `invalid_client`.
//! Must never: redeem an ID-JAG this server issued (ID-JAG security
//! considerations: no scope broadening by self-redemption), issue a refresh
//! token (§4.4.3), or accept an ID-JAG for another client.

use std::sync::Arc;

use crate::audit::AuditRecord;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::grant::{Draft, GrantContext, Issued, mint};
use crate::params::OAuthParams;
use crate::policy::{Audience, Client, ExchangeContext, decide};
use crate::store::{ReplayMark, RevocationGuard};
use crate::trust::validate::{Expect, Verified};
use crate::types::{Principal, ScopeSet, TokenType};

pub async fn redeem(
    cx: &GrantContext<'_>,
    client: &Arc<Client>,
    params: &OAuthParams,
    audit: &mut AuditRecord,
    marks: &mut Vec<ReplayMark>,
    proved: Option<&str>,
) -> OAuthResult<Issued> {
    // A missing parameter is a malformed request (RFC 6749 §5.2), not an
    // invalid grant; everything wrong *with* the assertion is `invalid_grant`
    // (RFC 7523 §3.1).
    let assertion = params.require("assertion")?;
    run(cx, client, assertion, params, audit, marks, proved)
        .await
        .map_err(|e| e.recode(ErrorCode::InvalidGrant))
}

async fn run(
    cx: &GrantContext<'_>,
    client: &Arc<Client>,
    assertion: &str,
    params: &OAuthParams,
    audit: &mut AuditRecord,
    marks: &mut Vec<ReplayMark>,
    proved: Option<&str>,
) -> OAuthResult<Issued> {
    audit.subject_presented(assertion);
    // Tolerated extras, which MCP clients send (specs/resource-as.md §2):
    // `scope` narrows, `resource` must agree.
    let requested_scope = params
        .get("scope")
        .map(ScopeSet::parse)
        .transpose()
        .map_err(|e| OAuthError::invalid_grant("scope.malformed", e))?;

    // Steps 1–4: typ, trusted issuer, alg, signature, aud, exp/iat/nbf, jti.
    // The assertion is this grant's subject: its validation is the step.
    let v = crate::telemetry::timed(
        crate::telemetry::Step::SubjectValidation,
        cx.validator.validate(assertion, Expect::IdJag),
    )
    .await
    .map_err(|r| r.into_error(ErrorCode::InvalidGrant, "assertion"))?;
    let principal = subject(&v);
    audit.subject_verified(&v.claims.iss, v.claims.jti.as_deref(), &principal);
    let txn = crate::chain::inherit_txn(v.claims.txn.as_deref());
    audit.chain(&txn, None);
    crate::telemetry::record_txn(&txn);

    // The draft's steps 5, 4 and 6, then the resource: each its own
    // function below, in this order.
    issued_for(client, &v)?;
    marks.push(replay_mark(cx, &v));
    let cnf_jkt = key_binding(&v, proved)?;
    let audience = target(cx, &v, params)?;
    audit.target(
        TokenType::AccessToken.uri(),
        &audience.id,
        // The ID-JAG's resource; of an array, the one redeemed.
        v.claims.resources().ok().flatten().map(|_| audience.id.as_str()),
        requested_scope.as_ref(),
    );

    // Revoked by jti, txn or subject: checked atomically with the commit.
    let guard = RevocationGuard {
        jti: v.claims.jti.clone(),
        txn: Some(txn.clone()),
        principal: principal.clone(),
        iat: v.claims.iat,
    };
    let chain = v
        .claims
        .act_chain()
        .map_err(|_| OAuthError::invalid_grant("id_jag.act_malformed", "the assertion's act claim is malformed"))?;
    // The IdP made this chain: its entries are in the IdP's namespace.
    let chain = crate::chain::vouched_by(chain, &v.claims.iss);
    audit.chain(&txn, chain.as_ref());
    let delegated = crate::chain::delegated_through(&v.claims.extra, Some(&v.claims.iss))
        .map_err(|m| m.refused("id_jag.delegated_through_malformed", "assertion"))?;
    audit.delegated_through(&delegated);

    // Step 8: narrow by local policy. The IdP's granted scope bounds what we
    // grant (when it states one); roles are the IdP's business, so none are
    // applied here; agent caps still hold for any agent in the chain.
    // A scope the IdP wrote but that does not parse bounds nothing we could
    // honour: refuse, never treat it as "no restriction".
    let id_jag_scope = match &v.claims.scope {
        None => None,
        Some(raw) => Some(ScopeSet::parse(raw).map_err(|_| {
            OAuthError::invalid_grant("id_jag.scope_malformed", "the assertion's scope claim is malformed")
        })?),
    };
    let requested = match (&requested_scope, &id_jag_scope) {
        (Some(r), _) => Some(r.clone()),
        (None, Some(s)) => Some(s.clone()),
        (None, None) => None,
    };
    let grant = crate::telemetry::step(crate::telemetry::Step::Decision).in_scope(|| {
        decide(
            cx.policy,
            &ExchangeContext {
                client,
                audience: &audience,
                requested: requested.as_ref(),
                roles: None,
                subject_scope: id_jag_scope.as_ref(),
                chain: chain.as_ref(),
                delegated_through: &delegated,
                now: cx.now,
                // The ID-JAG is a grant, not the token being exchanged: the
                // access token's life is the resource's TTL (§4.4).
                subject_exp: i64::MAX,
            },
            &mut audit.scope_withheld,
        )
    })?;

    // Only the roles this issuer is trusted to assert (`issuers.*.roles`).
    let roles = match &v.issuer {
        Some(i) => cx
            .policy
            .roles_from(i, v.claims.roles.iter().flatten().map(String::as_str)),
        None => Vec::new(),
    };
    mint(
        cx,
        audit,
        Draft {
            output: TokenType::AccessToken,
            // RFC 7523 responses are plain RFC 6749 §5.1 responses.
            names_issued_type: false,
            principal,
            aud: audience.id.clone(),
            client_id: client.id.clone(),
            client_profile: client.kind.client_profile(),
            exp: grant.exp,
            scope: grant.scope,
            resource: None,
            roles,
            delegated_through: delegated,
            txn,
            act: chain,
            identity: v.claims.identity(),
            cnf_jkt,
            guards: vec![(
                guard,
                OAuthError::invalid_grant("id_jag.revoked", "the assertion has been revoked"),
            )],
        },
    )
}

/// Step 5: issued for this client, by an issuer this client is bound to
/// (one tenant's IdP never mints for another tenant's client). Checked
/// before the assertion is marked used, so another client presenting it
/// cannot spend it.
fn issued_for(client: &Client, v: &Verified) -> OAuthResult<()> {
    if v.claims.client_id.as_deref() != Some(client.id.as_str()) {
        return Err(OAuthError::invalid_grant(
            "id_jag.client_id",
            "the assertion was issued for another client",
        ));
    }
    if !client.id_jag_issuers.contains(&v.claims.iss) {
        return Err(OAuthError::invalid_grant(
            "id_jag.issuer_not_for_client",
            "the assertion was issued for another client",
        ));
    }
    Ok(())
}

/// Step 4: single use, until the assertion expires (the mark is set
/// atomically with the audit record at commit). The issuer is
/// length-prefixed: it is a URL full of colons.
fn replay_mark(cx: &GrantContext<'_>, v: &Verified) -> ReplayMark {
    ReplayMark {
        key: format!(
            "id_jag:{}:{}:{}",
            v.claims.iss.len(),
            v.claims.iss,
            v.claims.jti.as_deref().unwrap_or_default()
        ),
        expires_at: v.exp + cx.policy.tokens.clock_skew_secs,
        authenticates: false,
    }
}

/// Step 6: a key-bound ID-JAG (`cnf.jkt`) is redeemed only with a DPoP proof
/// by that key, and the access token is bound to it; a bearer ID-JAG
/// redeemed with a proof gives a token bound to the proof's key
/// (`dpop::binding::redemption`). The proof itself was checked before this
/// grant ran (`grant::proof`).
fn key_binding(v: &Verified, proved: Option<&str>) -> OAuthResult<Option<String>> {
    use crate::dpop::binding::{self, Bound, Refused};
    binding::redemption(Bound::of(v.claims.cnf.as_ref()), proved).map_err(|r| match r {
        Refused::ProofRequired => OAuthError::invalid_grant(
            "id_jag.dpop_proof_required",
            "the assertion is bound to a key (cnf): redeem it with a DPoP proof by that key",
        ),
        Refused::OtherKey => OAuthError::invalid_grant(
            "id_jag.dpop_other_key",
            "the assertion is bound to another key than the DPoP proof's",
        ),
        Refused::UnsupportedMethod => OAuthError::invalid_grant(
            "id_jag.cnf_unsupported",
            "the assertion is bound by a confirmation method this server does not verify",
        ),
    })
}

/// The resource (ID-JAG §4.4 step 3; MCP EMA: `resource` MUST be one of
/// ours). The ID-JAG's `resource` is a string or an array of strings
/// (ID-JAG §3.1, issue 92; read by `InboundClaims::resources`):
///
/// - absent: the configured default resource;
/// - a `resource` parameter, when sent, picks the target: it must be one the
///   ID-JAG names (or, without a `resource` claim, the default), and every
///   `resource` parameter must name that same one;
/// - without the parameter, the one resource of the ID-JAG served here; an
///   array naming several served here is ambiguous, and the client must pick
///   one with the parameter;
/// - malformed (not a string or 1..=16 non-empty strings): refused.
///
/// One access token is issued for one resource, whatever the array holds.
fn target(cx: &GrantContext<'_>, v: &Verified, params: &OAuthParams) -> OAuthResult<Arc<Audience>> {
    let claimed = v.claims.resources().map_err(|_| {
        OAuthError::invalid_grant(
            "id_jag.resource_malformed",
            "the assertion's resource claim must be a string or an array of at most 16 non-empty strings",
        )
    })?;
    let asked = params.all("resource");
    if asked.iter().any(|r| *r != asked[0]) {
        return Err(OAuthError::invalid_grant(
            "id_jag.resource_mismatch",
            "the resource parameter differs from the assertion's resource",
        ));
    }
    let unknown =
        || OAuthError::invalid_grant("id_jag.unknown_resource", "the assertion's resource is not served here");
    let served = |r: &str| cx.policy.has_resource(r).cloned();
    let audience = match (claimed, asked.first()) {
        (None, asked) => {
            let default = cx.policy.default_resource.as_deref().ok_or_else(|| {
                OAuthError::invalid_grant(
                    "id_jag.no_resource",
                    "the assertion names no resource and no default is configured",
                )
            })?;
            if asked.is_some_and(|a| *a != default) {
                return Err(OAuthError::invalid_grant(
                    "id_jag.resource_mismatch",
                    "the resource parameter differs from the assertion's resource",
                ));
            }
            served(default).ok_or_else(unknown)?
        }
        (Some(named), Some(asked)) => {
            if !named.contains(asked) {
                return Err(OAuthError::invalid_grant(
                    "id_jag.resource_mismatch",
                    "the resource parameter is not one of the assertion's resources",
                ));
            }
            served(asked).ok_or_else(unknown)?
        }
        (Some(named), None) => {
            let mut here = named.iter().filter_map(|r| served(r));
            let first = here.next().ok_or_else(unknown)?;
            if here.any(|a| a.id != first.id) {
                return Err(OAuthError::invalid_grant(
                    "id_jag.resource_ambiguous",
                    "the assertion names several resources served here; name one with the resource parameter",
                ));
            }
            first
        }
    };
    Ok(audience)
}

/// Step 7: the subject. `aud_sub`, when the IdP knows our id for the user, is
/// the subject here (OpenID Enterprise Extensions); otherwise `sub`. The
/// user is that subject as vouched for by this ID-JAG's issuer: two
/// tenants' `bob`s are two principals (RFC 9493 `iss_sub`).
fn subject(v: &Verified) -> Principal {
    let sub = v
        .claims
        .aud_sub
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| v.sub.clone());
    Principal {
        iss: v.claims.iss.clone(),
        sub,
    }
}

//! The token endpoint's grants, and the one path every grant takes:
//! parse `grant_type` → authenticate the client → run the grant → commit the
//! replay marks and the audit record → the token response, which `http`
//! renders.
//!
//! Owns: dispatch on `grant_type` and the token response body (RFC 6749
//! §5.1, RFC 8693 §2.2.1). Committing before release is `endpoint::Call`'s
//! job.
//! Must never: hold grant-specific rules; those live in the grant modules,
//! the shared chain rules in `chain` and `policy`.

pub mod jwt_bearer;
pub mod token_exchange;

use serde::Serialize;

use crate::audit::AuditRecord;
use crate::chain::Act;
use crate::claims::{Confirmation, IdentityClaims, IssuedClaims, SubjectId, TYP_ACCESS_TOKEN, TYP_ID_JAG};
use crate::endpoint::Call;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::params::{DpopHeader, OAuthParams, OAuthRequest};
use crate::policy::Policy;
use crate::state::AppState;
use crate::store::RevocationGuard;
use crate::trust::validate::Validator;
use crate::types::{GrantType, Principal, ScopeSet, TokenType};

/// What a grant produced, not yet released.
pub struct Issued {
    pub token: String,
    /// `None` for grants whose response has no `issued_token_type` (RFC 7523).
    pub issued_token_type: Option<TokenType>,
    /// `N_A` for an ID-JAG (RFC 8693 §2.2.1), `Bearer` for access tokens,
    /// `DPoP` for key-bound ones (RFC 9449 §5).
    pub token_type: &'static str,
    /// The key the token is bound to, if any.
    pub cnf: Option<Confirmation>,
    pub exp: i64,
    pub scope: ScopeSet,
    /// Release only if the subject (and actor) tokens are still not revoked
    /// (checked atomically with the audit write), else answer with the error.
    pub guards: Vec<(RevocationGuard, OAuthError)>,
}

/// What a grant decided to issue: everything but `iss`, `jti` and `iat`,
/// which minting adds. One shape for both grants and both outputs.
pub struct Draft {
    /// `IdJag` or `AccessToken`: which `typ` and `token_type`.
    pub output: TokenType,
    /// RFC 8693 responses name `issued_token_type`; RFC 7523 ones do not.
    pub names_issued_type: bool,
    pub principal: Principal,
    pub aud: String,
    pub client_id: String,
    /// `client_profile` of the client the token is issued to.
    pub client_profile: Option<&'static str>,
    pub exp: i64,
    pub scope: ScopeSet,
    pub resource: Option<String>,
    pub roles: Vec<String>,
    /// The subject's flat delegation list, carried on (`chain::delegated_through`).
    pub delegated_through: Vec<Act>,
    pub txn: String,
    pub act: Option<Act>,
    pub identity: IdentityClaims,
    /// `cnf.jkt`: the key the request proved, when the token is bound to it
    /// (`dpop::binding`).
    pub cnf_jkt: Option<String>,
    pub guards: Vec<(RevocationGuard, OAuthError)>,
}

/// Sign what a grant decided, the one way every token is minted: a new
/// UUIDv7 `jti` (noted in the record), `iat` = now, our `iss`, the `typ` of
/// the output (RFC 8725 §3.11). Nothing is released here: `endpoint::Call`
/// commits first.
pub fn mint(cx: &GrantContext<'_>, audit: &mut AuditRecord, d: Draft) -> OAuthResult<Issued> {
    let jti = uuid::Uuid::now_v7().to_string();
    let (typ, token_type) = match (d.output, &d.cnf_jkt) {
        (TokenType::IdJag, _) => (TYP_ID_JAG, "N_A"),
        (_, Some(_)) => (TYP_ACCESS_TOKEN, "DPoP"),
        (_, None) => (TYP_ACCESS_TOKEN, "Bearer"),
    };
    let claims = IssuedClaims {
        iss: cx.policy.issuer.clone(),
        sub: d.principal.sub.clone(),
        sub_id: SubjectId::new(&d.principal),
        aud: d.aud,
        client_id: d.client_id,
        client_profile: d.client_profile.map(str::to_owned),
        jti,
        iat: cx.now,
        exp: d.exp,
        scope: d.scope,
        resource: d.resource,
        roles: d.roles,
        delegated_through: d.delegated_through,
        txn: d.txn,
        act: d.act,
        cnf: d.cnf_jkt.map(|jkt| Confirmation { jkt }),
        identity: d.identity,
    };
    let token = {
        let _sign = crate::telemetry::step(crate::telemetry::Step::Sign);
        cx.state
            .keys
            .sign(typ, &claims)
            .map_err(|e| OAuthError::internal("mint.sign_failed", &e))?
    };
    audit.issued(&claims.jti, claims.exp, d.output.uri(), &claims.scope);
    Ok(Issued {
        token,
        issued_token_type: d.names_issued_type.then_some(d.output),
        token_type,
        exp: claims.exp,
        scope: claims.scope,
        cnf: claims.cnf,
        guards: d.guards,
    })
}

/// RFC 6749 §5.1 / RFC 8693 §2.2.1 success body.
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
    pub token_type: &'static str,
    /// A JSON number: the MCP SDKs reject a string.
    pub expires_in: i64,
    pub scope: String,
    /// The binding applied (draft-mcguinness-oauth-token-exchange-cnf): a
    /// client that sent a proof and finds no `cnf` knows it was dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// A fresh DPoP nonce for the `DPoP-Nonce` header (RFC 9449 §8.2), not
    /// part of the body.
    #[serde(skip)]
    pub dpop_nonce: Option<String>,
}

/// Everything a grant needs for one request.
pub struct GrantContext<'a> {
    pub state: &'a AppState,
    pub policy: &'a Policy,
    pub validator: Validator<'a>,
    pub now: i64,
}

/// Handle one token request end to end: the response to release, or the
/// error to answer. Never panics.
pub async fn handle(state: &AppState, req: &OAuthRequest) -> OAuthResult<TokenResponse> {
    let mut call = Call::begin(state, &req.caller, "unknown");
    // RFC 9449 §8.2: with nonces required, every answer to a request that
    // carried a proof hands out the current nonce.
    let nonce = match req.dpop {
        DpopHeader::Absent => None,
        _ => proof_expectations(state, &call.policy, call.now).fresh_nonce(),
    };
    match run(&mut call, req).await {
        Ok(mut issued) => {
            let now = call.now;
            for (guard, err) in std::mem::take(&mut issued.guards) {
                call.guard(guard, err);
            }
            let mut response = token_response(issued, now);
            response.dpop_nonce = nonce.clone();
            call.commit(response).await.map_err(|e| e.with_dpop_nonce(nonce))
        }
        Err(err) => Err(call.deny(err).await.with_dpop_nonce(nonce)),
    }
}

/// What a DPoP proof sent to the token endpoint must match (RFC 9449 §4.3):
/// `POST` (the only method routed here) to the endpoint as published.
fn proof_expectations<'a>(state: &'a AppState, policy: &'a Policy, now: i64) -> crate::dpop::Expected<'a> {
    crate::dpop::Expected {
        htm: "POST",
        htu: &policy.token_endpoint,
        now,
        clock_skew_secs: policy.tokens.clock_skew_secs,
        settings: &policy.dpop,
        keys: &state.dpop_keys,
    }
}

/// The request's DPoP proof, checked once the client is authenticated and
/// may use the grant: `None` without one, unless the client or the grant
/// requires one (RFC 9449 §5.2; draft-parecki-oauth-jwt-dpop-grant). The
/// proof's `jti` is spent by this request's commit, granted or denied.
fn proof(
    cx: &GrantContext<'_>,
    req: &OAuthRequest,
    client: &crate::policy::Client,
    grant: GrantType,
    audit: &mut AuditRecord,
    marks: &mut Vec<crate::store::ReplayMark>,
) -> OAuthResult<Option<String>> {
    let proof = crate::dpop::check(&req.dpop, &proof_expectations(cx.state, cx.policy, cx.now))?;
    let Some(proof) = proof else {
        if grant == GrantType::JwtDpop {
            return Err(OAuthError::invalid_dpop_proof(
                "dpop.required_by_grant",
                "the jwt-dpop grant requires a DPoP proof",
            ));
        }
        if client.require_dpop {
            return Err(OAuthError::invalid_dpop_proof(
                "dpop.required_by_client",
                "this client must send a DPoP proof with every token request",
            ));
        }
        return Ok(None);
    };
    audit.dpop_proved(&proof.jkt);
    marks.push(proof.mark);
    Ok(Some(proof.jkt))
}

async fn run(call: &mut Call<'_>, req: &OAuthRequest) -> OAuthResult<Issued> {
    let params: &OAuthParams = &req.params;
    let raw = params.require("grant_type")?;
    call.audit.asked(raw);
    let grant = GrantType::parse(raw).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "grant.unsupported",
            "grant_type is not supported by this server",
        )
    })?;
    call.audit.asked(grant.short());
    call.what = grant.short();
    crate::telemetry::record_request_static("oauth.grant_type", grant.short());
    let client = call.authenticate(req).await?;
    if !client.grants.contains(&grant.permission()) {
        return Err(OAuthError::unauthorized_client(
            "grant.not_allowed_for_client",
            format!("this client may not use the {} grant", grant.short()),
        ));
    }
    let Call {
        state,
        policy,
        now,
        audit,
        marks,
        ..
    } = call;
    let cx = GrantContext {
        state,
        policy,
        validator: Validator {
            policy,
            keys: &state.keys,
            jwks: &state.jwks,
            verified: &state.verified,
            now: *now,
        },
        now: *now,
    };
    let proved = proof(&cx, req, &client, grant, audit, marks)?;
    let proved = proved.as_deref();
    match grant {
        GrantType::TokenExchange => token_exchange::exchange(&cx, &client, params, audit, proved).await,
        GrantType::JwtBearer | GrantType::JwtDpop => {
            jwt_bearer::redeem(&cx, &client, params, audit, marks, proved).await
        }
    }
}

fn token_response(issued: Issued, now: i64) -> TokenResponse {
    TokenResponse {
        issued_token_type: issued.issued_token_type.map(TokenType::uri),
        token_type: issued.token_type,
        expires_in: issued.exp - now,
        scope: issued.scope.to_string(),
        access_token: issued.token,
        cnf: issued.cnf,
        dpop_nonce: None,
    }
}

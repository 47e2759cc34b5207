//! `IdJagClient`: the client side of Cross-App Access
//! (draft-ietf-oauth-identity-assertion-authz-grant) for Rust agents.
//!
//! Owns: requesting an ID-JAG at the broker (RFC 8693 token exchange of the
//! user's ID token, §4.3 of the draft: `requested_token_type` id-jag,
//! `audience` the resource AS, optional `resource` and `scope`; or of an
//! access token this service received, for multi-hop Cross-App Access,
//! the broker's decisions §27), and
//! redeeming it at the resource AS (RFC 7523 §2.1 jwt-bearer, §4.4 of the
//! draft), each with its own client authentication; with a DPoP key
//! (`with_dpop`), both with a proof by it (RFC 9449 §5), so the ID-JAG and
//! the access token are bound to the key.
//!
//! The redemption uses the jwt-bearer grant with the proof, not
//! `urn:ietf:params:oauth:grant-type:jwt-dpop`
//! (draft-parecki-oauth-jwt-dpop-grant): every resource AS that supports
//! DPoP binds a jwt-bearer grant sent with a proof (RFC 9449 §5 applies to
//! any grant), whereas `jwt-dpop` is a draft that only some servers know;
//! what it adds, "a proof is required", is already the SDK's rule: with a
//! key it always sends one, and refuses an unbound answer.
//! Must never: send the ID token or the ID-JAG anywhere but the token
//! endpoint it is for, accept a response of the wrong token type, accept
//! an unbound token when it sent a proof, or log a token.

use crate::bearer::BearerToken;
use crate::client_auth::ClientAuth;
use crate::discovery::AuthorizationServer;
use crate::dpop_key::DpopKey;
use crate::http::{Http, HttpConfig, TransportError};
use crate::oauth_error::TokenError;
use crate::token_request::{
    self, DpopSession, GRANT_JWT_BEARER, GRANT_TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_ID_JAG,
    TOKEN_TYPE_ID_TOKEN,
};
use crate::traceparent::TraceParent;

/// What to ask the broker for.
#[derive(Debug, Clone, Copy)]
pub struct IdJagRequest<'a> {
    /// The user's ID token, issued to this client (`aud`).
    pub id_token: &'a str,
    /// The resource AS's issuer (or an alias the broker knows).
    pub audience: &'a str,
    /// The resource at that AS (RFC 8707), when it serves several.
    pub resource: Option<&'a str>,
    /// The scopes wanted; none: everything allowed.
    pub scopes: &'a [&'a str],
}

/// What to ask the broker for when the subject is an access token this
/// service received rather than the user's ID token: multi-hop Cross-App
/// Access (the broker's specs/decisions.md §27). The new ID-JAG carries the
/// same user and `txn`, and the chain with this client added, under the
/// broker's hop rules; only a token issued to or for this client is
/// accepted.
#[derive(Debug, Clone, Copy)]
pub struct MultiHopRequest<'a> {
    /// The access token this service received (ours from the broker, or
    /// another resource AS's the broker trusts).
    pub access_token: &'a str,
    /// The resource AS's issuer (or an alias the broker knows).
    pub audience: &'a str,
    /// The resource at that AS (RFC 8707), when it serves several.
    pub resource: Option<&'a str>,
    /// The scopes wanted; none: everything allowed.
    pub scopes: &'a [&'a str],
}

/// An ID-JAG: an assertion for the resource AS, not an access token
/// (`token_type` `N_A`).
#[derive(Debug, Clone)]
pub struct IdJag {
    pub assertion: BearerToken,
    /// Unix seconds, when the broker said (`expires_in`).
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    /// The thumbprint (`cnf.jkt`) of the key the ID-JAG is bound to, when
    /// the response or the ID-JAG says so: redeem it with a proof by that
    /// key.
    pub dpop_jkt: Option<String>,
}

/// An access token from the resource AS.
#[derive(Debug, Clone)]
pub struct ResourceToken {
    /// `Authorization: Bearer …`; when `dpop_jkt` is set, `Authorization:
    /// DPoP …` with a fresh proof by the key (RFC 9449 §7.1).
    pub token: BearerToken,
    pub expires_at: Option<i64>,
    pub scopes: Vec<String>,
    /// The thumbprint (`cnf.jkt`) of the DPoP key the token is bound to.
    pub dpop_jkt: Option<String>,
}

/// Requests and redeems ID-JAGs as one client.
#[derive(Debug, Clone)]
pub struct IdJagClient {
    http: Http,
    broker: AuthorizationServer,
    auth: ClientAuth,
    dpop: Option<DpopSession>,
}

impl IdJagClient {
    /// A client of `broker`, authenticating there as `auth`.
    pub fn new(broker: AuthorizationServer, auth: ClientAuth) -> Result<Self, TransportError> {
        Self::with_http(broker, auth, &HttpConfig::default())
    }

    pub fn with_http(broker: AuthorizationServer, auth: ClientAuth, http: &HttpConfig) -> Result<Self, TransportError> {
        Ok(Self {
            http: Http::new(http)?,
            broker,
            auth,
            dpop: None,
        })
    }

    /// Prove possession of `key` in the request and in the redemption (RFC
    /// 9449 §5): the ID-JAG is bound to it (`cnf.jkt`), and so is the
    /// resource AS's access token (`token_type` `DPoP`). Without a key, a
    /// bound ID-JAG cannot be redeemed. An answer not bound to the key is
    /// [`TokenError::BindingDropped`].
    pub fn with_dpop(mut self, key: DpopKey) -> Self {
        self.dpop = Some(DpopSession::new(key));
        self
    }

    /// Exchange the user's ID token for an ID-JAG (draft §4.3).
    pub async fn request(&self, req: &IdJagRequest<'_>, trace: Option<&TraceParent>) -> Result<IdJag, TokenError> {
        let subject = (req.id_token, TOKEN_TYPE_ID_TOKEN);
        self.exchange(subject, req.audience, req.resource, req.scopes, trace)
            .await
    }

    /// Exchange an access token this service received for an ID-JAG for
    /// another resource AS, for the same user (multi-hop Cross-App Access).
    /// A DPoP-bound access token needs this client's own key (`with_dpop`):
    /// the ID-JAG is then bound to it.
    pub async fn request_multi_hop(
        &self,
        req: &MultiHopRequest<'_>,
        trace: Option<&TraceParent>,
    ) -> Result<IdJag, TokenError> {
        let subject = (req.access_token, TOKEN_TYPE_ACCESS_TOKEN);
        self.exchange(subject, req.audience, req.resource, req.scopes, trace)
            .await
    }

    /// The one RFC 8693 request for an ID-JAG, whatever the subject.
    async fn exchange(
        &self,
        (subject_token, subject_token_type): (&str, &str),
        audience: &str,
        resource: Option<&str>,
        scopes: &[&str],
        trace: Option<&TraceParent>,
    ) -> Result<IdJag, TokenError> {
        if audience.is_empty() {
            return Err(TokenError::InvalidRequest("the audience must not be empty"));
        }
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", GRANT_TOKEN_EXCHANGE),
            ("requested_token_type", TOKEN_TYPE_ID_JAG),
            ("audience", audience),
            ("subject_token", subject_token),
            ("subject_token_type", subject_token_type),
        ];
        if let Some(resource) = resource {
            form.push(("resource", resource));
        }
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let trace = TraceParent::child_of(trace);
        let r = token_request::post(&self.http, &self.broker, &self.auth, &form, &trace, self.dpop.as_ref()).await?;
        if r.issued_token_type.as_deref() != Some(TOKEN_TYPE_ID_JAG) {
            return Err(TokenError::InvalidResponse("issued_token_type is not an ID-JAG"));
        }
        if !r.token_type.eq_ignore_ascii_case("N_A") {
            return Err(TokenError::InvalidResponse("an ID-JAG's token_type must be N_A"));
        }
        Ok(IdJag {
            assertion: r.access_token,
            expires_at: r.expires_at,
            scopes: r.scopes,
            dpop_jkt: r.dpop_jkt,
        })
    }

    /// Redeem `id_jag` at `resource_as` with the jwt-bearer grant (RFC 7523
    /// §2.1), authenticating there as `auth` (this client's id at that AS);
    /// with a DPoP key, with a proof by it for that AS's token endpoint
    /// (its own nonces remembered apart from the broker's).
    pub async fn redeem(
        &self,
        resource_as: &AuthorizationServer,
        auth: &ClientAuth,
        id_jag: &IdJag,
        scopes: &[&str],
        trace: Option<&TraceParent>,
    ) -> Result<ResourceToken, TokenError> {
        let scope = scopes.join(" ");
        let mut form = vec![
            ("grant_type", GRANT_JWT_BEARER),
            ("assertion", id_jag.assertion.expose()),
        ];
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        let trace = TraceParent::child_of(trace);
        let r = token_request::post(&self.http, resource_as, auth, &form, &trace, self.dpop.as_ref()).await?;
        // With a key, the token request confirmed the DPoP binding.
        if self.dpop.is_none() && !r.token_type.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::InvalidResponse("token_type is not Bearer"));
        }
        Ok(ResourceToken {
            token: r.access_token,
            expires_at: r.expires_at,
            scopes: r.scopes,
            dpop_jkt: r.dpop_jkt,
        })
    }
}

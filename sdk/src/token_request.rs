//! One request to a token endpoint: the form, client authentication, and
//! the RFC 6749 §5.1 / RFC 8693 §2.2.1 response read into types.
//!
//! Owns: the grant-independent part every token request shares (hop
//! exchange, ID-JAG request, ID-JAG redemption): authenticating, sending
//! `traceparent`, and telling a token response from an error.
//! Must never: log or return the form (it holds the subject token or the
//! assertion), or accept a 200 without an `access_token`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bearer::BearerToken;
use crate::client_auth::ClientAuth;
use crate::discovery::AuthorizationServer;
use crate::http::Http;
use crate::oauth_error::TokenError;
use crate::traceparent::TraceParent;

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: BearerToken,
    /// RFC 8693 §2.2.1 (absent in a plain RFC 6749 response).
    pub issued_token_type: Option<String>,
    /// `Bearer`, or `N_A` for an ID-JAG.
    pub token_type: String,
    /// Seconds of validity from the response's receipt.
    pub expires_in: Option<u64>,
    /// When the token expires (Unix seconds), from `expires_in`.
    pub expires_at: Option<i64>,
    /// The granted scopes (the broker always echoes them).
    pub scopes: Vec<String>,
}

/// POST `form` to `server`'s token endpoint as `auth`, inside `trace`.
pub(crate) async fn post(
    http: &Http,
    server: &AuthorizationServer,
    auth: &ClientAuth,
    form: &[(&str, &str)],
    trace: &TraceParent,
) -> Result<TokenResponse, TokenError> {
    let credentials = auth.credentials(&server.issuer)?;
    let mut form: Vec<(&str, &str)> = form.to_vec();
    let authorization = credentials.attach(auth.client_id(), &mut form);
    let reply = http
        .post_form(&server.token_endpoint, &form, authorization, trace)
        .await?;
    let body = reply.json();
    if reply.status != 200 {
        return Err(TokenError::from_status(reply.status, body.as_ref(), reply.retry_after));
    }
    let body = body.ok_or(TokenError::InvalidResponse("not JSON"))?;
    let text = |name| body.get(name).and_then(|v| v.as_str());
    let access_token = text("access_token")
        .filter(|t| !t.is_empty())
        .ok_or(TokenError::InvalidResponse("no access_token"))?;
    let token_type = text("token_type").ok_or(TokenError::InvalidResponse("no token_type"))?;
    let expires_in = body.get("expires_in").and_then(|v| v.as_u64());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Ok(TokenResponse {
        access_token: BearerToken::new(access_token),
        issued_token_type: text("issued_token_type").map(str::to_owned),
        token_type: token_type.to_owned(),
        expires_in,
        expires_at: expires_in.and_then(|e| i64::try_from(now.saturating_add(e)).ok()),
        scopes: text("scope")
            .map(|s| s.split(' ').filter(|x| !x.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default(),
    })
}

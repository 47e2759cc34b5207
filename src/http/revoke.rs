//! `POST /revoke` — RFC 7009 token revocation by the client the token was
//! issued to.
//!
//! Owns: revoking one of our access tokens by `jti`, for as long as it could
//! live. RFC 7009 §2.2: 200 whether or not the token was known, valid or the
//! caller's, so the endpoint reveals nothing.
//! Must never: revoke another client's token.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::endpoint::Call;
use crate::error::{OAuthError, no_store_headers};
use crate::http::extract::OAuthParams;
use crate::inspect::own_active_token;
use crate::store::Revocation;

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: OAuthParams,
) -> Response {
    let mut call = Call::begin(&state, &headers, Some(peer.ip()), "revocation");
    let result = async {
        let client = call.authenticate(&headers, &params).await?;
        let token = params.require("token")?;
        // `token_type_hint` is only a hint (RFC 7009 §2.1): we look anyway.
        if let Some(v) = own_active_token(&call.validator(), state.store.as_ref(), token).await?
            && v.claims.client_id.as_deref() == Some(client.id.as_str())
            && let Some(jti) = v.claims.jti.clone()
        {
            state
                .store
                .revoke(Revocation::Jti(jti.clone()), v.exp + call.policy.tokens.clock_skew_secs)
                .await
                .map_err(|e| OAuthError::unavailable("store.revoke_failed", &e))?;
            call.audit.parent_jti = Some(jti);
            call.audit.txn = v.claims.txn.clone();
            call.audit.sub = Some(v.sub.clone());
            call.audit.reason = Some("revoked".into());
        }
        Ok(|| {
            let mut r = StatusCode::OK.into_response();
            no_store_headers(r.headers_mut());
            r
        })
    }
    .await;
    call.finish(result).await
}

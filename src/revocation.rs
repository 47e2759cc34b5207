//! `POST /revoke` — RFC 7009 token revocation by the client the token was
//! issued to.
//!
//! Owns: revoking one of our access tokens by `jti`, for as long as it could
//! live. RFC 7009 §2.2: 200 whether or not the token was known, valid or the
//! caller's, so the endpoint reveals nothing.
//! Must never: revoke another client's token.

use crate::endpoint::Call;
use crate::error::OAuthResult;
use crate::inspect::own_active_token;
use crate::params::OAuthRequest;
use crate::state::AppState;
use crate::store::{Effect, Revocation};

pub async fn revoke(state: &AppState, req: &OAuthRequest) -> OAuthResult<()> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "revocation");
    let result = async {
        let client = call.authenticate(req).await?;
        let token = params.require("token")?;
        // `token_type_hint` is only a hint (RFC 7009 §2.1): we look anyway.
        // The revocation is an effect of the commit: if the commit refuses
        // (a replayed client assertion), nothing is revoked.
        if let Some(own) = own_active_token(&call.validator(), state.store.as_ref(), token).await?
            && own.verified.claims.client_id.as_deref() == Some(client.id.as_str())
            && let Some(jti) = own.verified.claims.jti.clone()
        {
            let v = &own.verified;
            call.effects.push(Effect {
                revocation: Revocation::Jti(jti.clone()),
                expires_at: v.exp + call.policy.tokens.clock_skew_secs,
            });
            call.audit.about(Some(&jti), v.claims.txn.as_deref(), &own.principal);
            call.audit.note("revoked");
        }
        Ok(())
    }
    .await;
    call.finish(result).await
}

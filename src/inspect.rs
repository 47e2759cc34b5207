//! "Is this one of our access tokens, and is it still good?" — the question
//! introspection (RFC 7662) and revocation (RFC 7009) both ask.
//!
//! Owns: that one check (our signature, `typ at+jwt`, `exp` with no clock
//! skew — we set it, so no grace applies (RFC 7662 §2.2) — and revocation).
//! Must never: tell a caller why a token is inactive (RFC 7662 §2.2: an
//! inactive token is only `{"active": false}`).

use crate::error::{OAuthError, OAuthResult};
use crate::store::{Store, TokenRef};
use crate::trust::validate::{Expect, Validator, Verified};
use crate::types::Principal;

/// One of our tokens, active now.
pub struct OwnToken {
    pub verified: Verified,
    /// Its user, qualified by the issuer that vouched for them (`sub_id`).
    pub principal: Principal,
}

/// `Ok(Some)` for an active token we issued; `Ok(None)` for anything else
/// (expired, revoked, foreign, garbage); `Err` only when the check cannot be
/// made (store down): then the answer is 503, never a guess.
pub async fn own_active_token(
    validator: &Validator<'_>,
    store: &dyn Store,
    token: &str,
) -> OAuthResult<Option<OwnToken>> {
    let v = match validator.validate(token, Expect::AccessToken).await {
        // The validator allows clock skew for other issuers' clocks; our own
        // `exp` is exact.
        Ok(v) if v.issuer.is_none() && v.exp > validator.now => v,
        Ok(_) => return Ok(None),
        Err(r) if r.unavailable => return Err(OAuthError::unavailable(r.reason, &r.detail)),
        Err(_) => return Ok(None),
    };
    let principal = Principal {
        iss: v.claims.sub_id_issuer().unwrap_or(&validator.policy.issuer).to_owned(),
        sub: v.sub.clone(),
    };
    let revoked = store
        .is_revoked(
            TokenRef {
                jti: v.claims.jti.as_deref(),
                txn: v.claims.txn.as_deref(),
                principal: &principal,
                iat: v.claims.iat,
            },
            validator.now,
        )
        .await
        .map_err(|e| OAuthError::unavailable("store.revocation_check_failed", &e))?;
    Ok((!revoked).then_some(OwnToken { verified: v, principal }))
}

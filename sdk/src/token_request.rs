//! One request to a token endpoint: the form, client authentication, and
//! the RFC 6749 §5.1 / RFC 8693 §2.2.1 response read into types.
//!
//! Owns: the grant-independent part every token request shares (hop
//! exchange, ID-JAG request, ID-JAG redemption): authenticating, sending
//! `traceparent`, and telling a token response from an error; and, with a
//! DPoP key, the proof for `POST <token endpoint>` (RFC 9449 §5), the one
//! retry with the server's nonce after `use_dpop_nonce` (§8), the last
//! nonce of each token endpoint (one per endpoint, at most
//! [`MAX_NONCE_ENDPOINTS`] endpoints), and the check that the token that
//! came back is bound to our key.
//! Must never: log or return the form (it holds the subject token or the
//! assertion), accept a 200 without an `access_token`, retry more than once,
//! or accept an unbound (or otherwise bound) token when it sent a proof.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::bearer::BearerToken;
use crate::client_auth::ClientAuth;
use crate::discovery::AuthorizationServer;
use crate::dpop_key::DpopKey;
use crate::http::Http;
use crate::jws::UnverifiedJws;
use crate::oauth_error::{BindingDropped, ErrorCode, TokenError};
use crate::traceparent::TraceParent;

pub const GRANT_TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GRANT_JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const TOKEN_TYPE_ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TOKEN_TYPE_ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const TOKEN_TYPE_ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";

/// How many token endpoints' nonces a [`DpopSession`] remembers; past that,
/// the oldest is forgotten (costing one `use_dpop_nonce` round trip).
pub const MAX_NONCE_ENDPOINTS: usize = 32;

/// A DPoP key and the last nonce each token endpoint handed out (RFC 9449
/// §8.2: a client uses the newest nonce it got from a server on its next
/// request there). Clones share the nonces.
#[derive(Clone)]
pub(crate) struct DpopSession {
    key: DpopKey,
    nonces: Arc<Nonces>,
}

impl std::fmt::Debug for DpopSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopSession")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl DpopSession {
    pub(crate) fn new(key: DpopKey) -> Self {
        Self {
            key,
            nonces: Arc::new(Nonces::default()),
        }
    }
}

/// (token endpoint, its last nonce), oldest first, at most
/// [`MAX_NONCE_ENDPOINTS`].
#[derive(Default)]
struct Nonces(Mutex<VecDeque<(String, String)>>);

impl Nonces {
    fn get(&self, endpoint: &str) -> Option<String> {
        let entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        entries.iter().find(|(e, _)| e == endpoint).map(|(_, n)| n.clone())
    }

    /// Remember `nonce` as `endpoint`'s newest, replacing the one before.
    fn set(&self, endpoint: &str, nonce: &str) {
        let mut entries = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.iter_mut().find(|(e, _)| e == endpoint) {
            nonce.clone_into(&mut entry.1);
            return;
        }
        if entries.len() >= MAX_NONCE_ENDPOINTS {
            entries.pop_front();
        }
        entries.push_back((endpoint.to_owned(), nonce.to_owned()));
    }
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: BearerToken,
    /// RFC 8693 §2.2.1 (absent in a plain RFC 6749 response).
    pub issued_token_type: Option<String>,
    /// `Bearer`, `DPoP` for a token bound to the proof's key (RFC 9449 §5),
    /// or `N_A` for an ID-JAG.
    pub token_type: String,
    /// Seconds of validity from the response's receipt.
    pub expires_in: Option<u64>,
    /// When the token expires (Unix seconds), from `expires_in`.
    pub expires_at: Option<i64>,
    /// The granted scopes (the broker always echoes them).
    pub scopes: Vec<String>,
    /// The `cnf.jkt` of the key the token is bound to, as the response
    /// confirmed it (RFC 9449 §6.1): only ever our key's, and only when the
    /// request carried a proof.
    pub dpop_jkt: Option<String>,
}

/// POST `form` to `server`'s token endpoint as `auth`, inside `trace`; with
/// `dpop`, with a proof by its key (RFC 9449 §5), retried once with the
/// server's nonce after `use_dpop_nonce` (§8), and the binding checked.
pub(crate) async fn post(
    http: &Http,
    server: &AuthorizationServer,
    auth: &ClientAuth,
    form: &[(&str, &str)],
    trace: &TraceParent,
    dpop: Option<&DpopSession>,
) -> Result<TokenResponse, TokenError> {
    let endpoint = server.token_endpoint.as_str();
    let mut nonce = dpop.and_then(|d| d.nonces.get(endpoint));
    let mut retried = false;
    loop {
        let proof = match dpop {
            Some(d) => Some(d.key.proof("POST", endpoint, nonce.as_deref(), None)?),
            None => None,
        };
        // Fresh credentials per attempt: a private_key_jwt assertion is
        // single use (RFC 7523 §3).
        let credentials = auth.credentials(&server.issuer)?;
        let mut attempt: Vec<(&str, &str)> = form.to_vec();
        let authorization = credentials.attach(auth.client_id(), &mut attempt);
        let reply = http
            .post_form_with_proof(endpoint, &attempt, authorization, proof.as_deref(), trace)
            .await?;
        if let (Some(d), Some(fresh)) = (dpop, reply.dpop_nonce.as_deref()) {
            d.nonces.set(endpoint, fresh);
        }
        let body = reply.json();
        if reply.status != 200 {
            let e = TokenError::from_status(reply.status, body.as_ref(), reply.retry_after);
            let asks_for_nonce = reply.status == 400 && e.code() == Some(&ErrorCode::UseDpopNonce);
            match reply.dpop_nonce {
                Some(fresh) if dpop.is_some() && asks_for_nonce && !retried => {
                    tracing::debug!(endpoint, "token endpoint asked for a DPoP nonce; retrying once");
                    nonce = Some(fresh);
                    retried = true;
                    continue;
                }
                _ => return Err(e),
            }
        }
        let body = body.ok_or(TokenError::InvalidResponse("not JSON"))?;
        let mut response = read_response(&body)?;
        if let Some(d) = dpop {
            response.dpop_jkt =
                confirm_binding(&response, &body, d.key.thumbprint()).map_err(TokenError::BindingDropped)?;
        }
        return Ok(response);
    }
}

/// A 200's body as a token response (RFC 6749 §5.1, RFC 8693 §2.2.1).
fn read_response(body: &Value) -> Result<TokenResponse, TokenError> {
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
        dpop_jkt: None,
    })
}

/// The request carried a proof by the key whose thumbprint is `jkt`: does
/// the response confirm that the token is bound to it? An access token must
/// be a `DPoP` token (RFC 9449 §5); every `cnf` the response or the token's
/// own claims carry (read, not trusted: this only ever refuses) must be
/// exactly `{"jkt": jkt}` (§6.1). An ID-JAG (`token_type` `N_A`) has no
/// token type to say it: a `cnf` is then the only sign, and its absence is
/// not an error (a server may issue an unbound assertion; the redemption's
/// proof still binds the access token). The confirmed `jkt`.
fn confirm_binding(response: &TokenResponse, body: &Value, jkt: &str) -> Result<Option<String>, BindingDropped> {
    let claims = UnverifiedJws::parse(response.access_token.expose())
        .ok()
        .and_then(|j| j.payload.get("cnf").cloned());
    let mut confirmed = false;
    for cnf in [body.get("cnf"), claims.as_ref()].into_iter().flatten() {
        match cnf.as_object() {
            Some(o) if o.len() == 1 && o.get("jkt").and_then(Value::as_str) == Some(jkt) => confirmed = true,
            _ => return Err(BindingDropped::OtherKey),
        }
    }
    if response.token_type.eq_ignore_ascii_case("N_A") {
        return Ok(confirmed.then(|| jkt.to_owned()));
    }
    if !response.token_type.eq_ignore_ascii_case("DPoP") {
        return Err(BindingDropped::NotDpopTokenType);
    }
    Ok(Some(jkt.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::Alg;
    use crate::jws::sign_compact;
    use serde_json::json;

    fn response(body: &Value) -> TokenResponse {
        read_response(body).unwrap()
    }

    /// An unsigned-looking JWT whose claims are `claims` (the check reads,
    /// never trusts, them).
    fn jwt(claims: Value) -> String {
        let key = josekit::jwk::Jwk::generate_ec_key(josekit::jwk::alg::ec::EcCurve::P256).unwrap();
        sign_compact(
            &json!({"alg": "ES256"}),
            &claims,
            Alg::ES256.signer(&key).unwrap().as_ref(),
        )
        .unwrap()
    }

    #[test]
    fn a_dpop_access_token_bound_to_our_key_is_confirmed() {
        let ours = "our-jkt";
        for body in [
            json!({"access_token": jwt(json!({"cnf": {"jkt": ours}})), "token_type": "DPoP", "cnf": {"jkt": ours}}),
            json!({"access_token": "opaque", "token_type": "dpop"}),
        ] {
            let r = response(&body);
            assert_eq!(confirm_binding(&r, &body, ours), Ok(Some(ours.to_owned())), "{body}");
        }
    }

    #[test]
    fn a_bearer_answer_to_a_proof_is_a_dropped_binding() {
        let body = json!({"access_token": "opaque", "token_type": "Bearer"});
        assert_eq!(
            confirm_binding(&response(&body), &body, "our-jkt"),
            Err(BindingDropped::NotDpopTokenType)
        );
    }

    #[test]
    fn another_key_or_confirmation_in_the_response_or_the_token_is_a_dropped_binding() {
        let ours = "our-jkt";
        for body in [
            json!({"access_token": "opaque", "token_type": "DPoP", "cnf": {"jkt": "theirs"}}),
            json!({"access_token": "opaque", "token_type": "DPoP", "cnf": {"x5t#S256": "c"}}),
            json!({"access_token": "opaque", "token_type": "DPoP", "cnf": {"jkt": ours, "x5t#S256": "c"}}),
            json!({"access_token": "opaque", "token_type": "DPoP", "cnf": "our-jkt"}),
            json!({"access_token": jwt(json!({"cnf": {"jkt": "theirs"}})), "token_type": "DPoP"}),
            json!({"access_token": jwt(json!({"cnf": {"jkt": "theirs"}})), "token_type": "N_A", "cnf": {"jkt": ours}}),
            json!({"access_token": "opaque", "token_type": "N_A", "cnf": {"jkt": "theirs"}}),
        ] {
            assert_eq!(
                confirm_binding(&response(&body), &body, ours),
                Err(BindingDropped::OtherKey),
                "{body}"
            );
        }
    }

    #[test]
    fn an_id_jag_is_bound_when_a_cnf_says_so_and_otherwise_not_claimed_to_be() {
        let ours = "our-jkt";
        let bound = json!({"access_token": jwt(json!({"cnf": {"jkt": ours}})), "token_type": "N_A"});
        assert_eq!(confirm_binding(&response(&bound), &bound, ours), Ok(Some(ours.into())));
        let unbound = json!({"access_token": jwt(json!({"sub": "alice"})), "token_type": "N_A"});
        assert_eq!(confirm_binding(&response(&unbound), &unbound, ours), Ok(None));
    }

    #[test]
    fn one_nonce_is_remembered_per_endpoint_and_the_endpoints_are_bounded() {
        let nonces = Nonces::default();
        nonces.set("https://a/token", "n1");
        nonces.set("https://a/token", "n2");
        nonces.set("https://b/token", "m1");
        assert_eq!(nonces.get("https://a/token").as_deref(), Some("n2"), "the newest only");
        assert_eq!(nonces.get("https://b/token").as_deref(), Some("m1"));
        assert_eq!(nonces.get("https://c/token"), None);
        for i in 0..MAX_NONCE_ENDPOINTS {
            nonces.set(&format!("https://e{i}/token"), "x");
        }
        let len = nonces.0.lock().unwrap().len();
        assert_eq!(len, MAX_NONCE_ENDPOINTS);
        assert_eq!(nonces.get("https://a/token"), None, "the oldest is forgotten");
    }
}

//! A DPoP client key for tests (RFC 9449): proofs made exactly as a client
//! makes them, and forged ones, changed on purpose.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jwk::Jwk;
use serde_json::{Value, json};
use xaa_broker::jose::Alg;
use xaa_broker::types::now_secs;

use super::{Auth, Resp, TestApp, sign_jws};
use super::{ID_TOKEN, LOGS, TOKEN_EXCHANGE};

/// A client's DPoP key pair.
pub struct DpopKey {
    pub private: Jwk,
    pub alg: Alg,
}

impl DpopKey {
    pub fn new(alg: Alg) -> Self {
        Self {
            private: alg.generate().unwrap(),
            alg,
        }
    }

    pub fn es256() -> Self {
        Self::new(Alg::ES256)
    }

    /// An RS256 key of `bits` (to show that a short one is refused).
    pub fn rsa(bits: u32) -> Self {
        let mut private = Jwk::generate_rsa_key(bits).unwrap();
        private.set_algorithm("RS256");
        Self {
            private,
            alg: Alg::RS256,
        }
    }

    /// The public JWK as it goes into a proof's header.
    pub fn public(&self) -> Value {
        let public = self.private.to_public_key().unwrap();
        let mut map = public.as_ref().clone();
        // A client sends the key, not our bookkeeping about it.
        map.remove("kid");
        map.remove("use");
        map.remove("alg");
        Value::Object(map)
    }

    /// RFC 7638 thumbprint: what `cnf.jkt` must say.
    pub fn jkt(&self) -> String {
        let public = self.private.to_public_key().unwrap();
        xaa_broker::jose::thumbprint(&public).unwrap()
    }

    /// A good proof for `POST htu`, now, with a fresh `jti`.
    pub fn proof(&self, htu: &str) -> String {
        self.proof_with(htu, |_, _| {})
    }

    /// A proof with a nonce.
    pub fn proof_with_nonce(&self, htu: &str, nonce: &str) -> String {
        self.proof_with(htu, |_, c| c["nonce"] = json!(nonce))
    }

    /// A proof, then `tweak(header, claims)` before signing.
    pub fn proof_with(&self, htu: &str, tweak: impl FnOnce(&mut Value, &mut Value)) -> String {
        let mut header = json!({"typ": "dpop+jwt", "alg": self.alg.name(), "jwk": self.public()});
        let mut claims = json!({
            "jti": uuid::Uuid::now_v7().to_string(),
            "htm": "POST",
            "htu": htu,
            "iat": now_secs(),
        });
        tweak(&mut header, &mut claims);
        sign_jws(&self.private, header, &claims)
    }

    /// A good proof for `method htu` at a resource server, presented with
    /// `access_token` (its `ath`, RFC 9449 §4.2), now, with a fresh `jti`.
    pub fn resource_proof(&self, method: &str, htu: &str, access_token: &str) -> String {
        self.resource_proof_with(method, htu, access_token, |_, _| {})
    }

    /// A resource proof, then `tweak(header, claims)` before signing.
    pub fn resource_proof_with(
        &self,
        method: &str,
        htu: &str,
        access_token: &str,
        tweak: impl FnOnce(&mut Value, &mut Value),
    ) -> String {
        self.proof_with(htu, |header, claims| {
            claims["htm"] = json!(method);
            claims["ath"] = json!(ath(access_token));
            tweak(header, claims);
        })
    }
}

/// RFC 9449 §4.2: the `ath` of a proof presented with `access_token`, the
/// base64url SHA-256 of the token's ASCII (computed here, not by the code
/// under test).
pub fn ath(access_token: &str) -> String {
    B64.encode(openssl::sha::sha256(access_token.as_bytes()))
}

/// A token's `cnf.jkt`, if it has one.
pub fn cnf_jkt(token: &str) -> Option<String> {
    let claims: Value = serde_json::from_slice(&B64.decode(token.split('.').nth(1)?).ok()?).ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

impl TestApp {
    /// alice (developer + sre) signs in for triage-agent, which takes the
    /// first hop to the logs MCP with these `DPoP` headers.
    pub async fn first_hop_with_dpop(&self, proofs: &[&str]) -> Resp {
        let id_token = self.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
        self.token_with_dpop(
            Auth::Basic("triage-agent"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", LOGS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            proofs,
        )
        .await
    }
}

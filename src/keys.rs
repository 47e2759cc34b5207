//! Our signing key ring: the key that signs, the keys that verify, and the
//! public JWK Set served at `/jwks` (RFC 7517).
//!
//! Owns: loading private JWKs (files or ephemeral), choosing the active key,
//! and signing compact JWS with an explicit `typ`.
//! Must never: publish a private member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `k`)
//! or print key material in `Debug`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use josekit::jwk::Jwk;
use josekit::jws::{JwsSigner, JwsVerifier};
use serde::Serialize;

use crate::config::KeysConfig;
use crate::jose::{self, Alg};

struct SigningKey {
    kid: String,
    alg: Alg,
    signer: Box<dyn JwsSigner>,
}

pub struct KeyRing {
    active: SigningKey,
    /// Verifiers for every published key, by `kid` (rotation overlap).
    verifiers: HashMap<String, (Alg, Arc<dyn JwsVerifier>)>,
    /// The serialized public JWK Set, built once.
    jwks: Arc<str>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("active_kid", &self.active.kid)
            .field("alg", &self.active.alg)
            .field("published", &self.verifiers.len())
            .finish()
    }
}

impl KeyRing {
    /// A fresh key pair that lives as long as the process.
    pub fn ephemeral(alg: Alg) -> anyhow::Result<Self> {
        Self::from_private_jwks(vec![alg.generate()?], None)
    }

    pub fn from_config(cfg: &KeysConfig, base_dir: Option<&Path>) -> anyhow::Result<Self> {
        if cfg.ephemeral {
            let alg = cfg
                .ephemeral_alg
                .as_deref()
                .map(|a| Alg::parse(a).context("keys.ephemeral_alg"))
                .transpose()?
                .unwrap_or(Alg::ES256);
            return Self::ephemeral(alg);
        }
        let mut jwks = Vec::new();
        for file in &cfg.files {
            let path = match base_dir {
                Some(base) if file.is_relative() => base.join(file),
                _ => file.clone(),
            };
            let bytes = std::fs::read(&path).with_context(|| format!("keys.files: cannot read {}", path.display()))?;
            let jwk =
                Jwk::from_bytes(&bytes).with_context(|| format!("keys.files: {} is not a JWK", path.display()))?;
            jwks.push(jwk);
        }
        Self::from_private_jwks(jwks, cfg.active.as_deref())
    }

    /// Build from private JWKs. Each needs `alg` (or is EC P-256 → ES256);
    /// `kid` defaults to the RFC 7638 thumbprint.
    pub fn from_private_jwks(jwks: Vec<Jwk>, active: Option<&str>) -> anyhow::Result<Self> {
        let mut verifiers = HashMap::new();
        let mut public = Vec::new();
        let mut signers = Vec::new();
        for mut jwk in jwks {
            let alg = match jwk.algorithm() {
                Some(a) => Alg::parse(a).with_context(|| format!("key alg {a:?} is not allowed"))?,
                None if jwk.curve() == Some("P-256") => Alg::ES256,
                None => bail!("a signing key must state its alg"),
            };
            if jwk.parameter("d").is_none() {
                bail!("a signing key file must hold a private key");
            }
            let kid = match jwk.key_id() {
                Some(k) => k.to_owned(),
                None => jose::thumbprint(&jwk)?,
            };
            jwk.set_key_id(kid.clone());
            jwk.set_algorithm(alg.name());
            if verifiers.contains_key(&kid) {
                bail!("two keys share kid {kid:?}");
            }
            let mut pubkey = jwk.to_public_key()?;
            pubkey.set_key_id(kid.clone());
            pubkey.set_algorithm(alg.name());
            pubkey.set_key_use("sig");
            verifiers.insert(kid.clone(), (alg, alg.verifier(&pubkey)?));
            public.push(serde_json::Value::Object(pubkey.as_ref().clone()));
            signers.push(SigningKey {
                kid,
                alg,
                signer: alg.signer(&jwk)?,
            });
        }
        let active = match active {
            Some(kid) => signers
                .into_iter()
                .find(|s| s.kid == kid)
                .with_context(|| format!("keys.active: no key with kid {kid:?}"))?,
            None => signers.into_iter().next().context("no signing key")?,
        };
        let jwks = serde_json::to_string(&serde_json::json!({ "keys": public }))?;
        Ok(Self {
            active,
            verifiers,
            jwks: jwks.into(),
        })
    }

    pub fn jwks_json(&self) -> Arc<str> {
        self.jwks.clone()
    }

    pub fn alg(&self) -> Alg {
        self.active.alg
    }

    pub fn verifier(&self, kid: &str) -> Option<&(Alg, Arc<dyn JwsVerifier>)> {
        self.verifiers.get(kid)
    }

    /// Sign claims as a compact JWS with header `typ` (RFC 8725 §3.11).
    pub fn sign<T: Serialize>(&self, typ: &str, claims: &T) -> anyhow::Result<String> {
        jose::sign_compact(
            self.active.signer.as_ref(),
            self.active.alg,
            &self.active.kid,
            typ,
            claims,
        )
    }
}

/// `xaa-broker keys generate`: a new private JWK, written with mode 0600.
pub fn generate_to_dir(alg: Alg, dir: &Path) -> anyhow::Result<(std::path::PathBuf, Jwk)> {
    let jwk = alg.generate()?;
    let kid = jwk.key_id().context("generated key has a kid")?.to_owned();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{kid}.private.jwk"));
    write_private(&path, jwk.to_string().as_bytes())?;
    let mut public = jwk.to_public_key()?;
    public.set_key_id(kid);
    public.set_algorithm(alg.name());
    public.set_key_use("sig");
    Ok((path, public))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwks_never_publishes_private_members() {
        for alg in [Alg::ES256, Alg::RS256, Alg::EdDSA] {
            let ring = KeyRing::ephemeral(alg).unwrap();
            let v: serde_json::Value = serde_json::from_str(&ring.jwks_json()).unwrap();
            let key = &v["keys"][0];
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(key.get(private).is_none(), "{alg}: {private} published");
            }
            assert_eq!(key["use"], "sig");
            assert_eq!(key["alg"], alg.name());
            assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
        }
    }

    #[test]
    fn the_active_key_signs_and_an_overlapping_key_still_verifies() {
        let old = Alg::ES256.generate().unwrap();
        let new = Alg::ES256.generate().unwrap();
        let new_kid = new.key_id().unwrap().to_owned();
        let old_kid = old.key_id().unwrap().to_owned();
        let ring = KeyRing::from_private_jwks(vec![old, new], Some(&new_kid)).unwrap();
        let token = ring.sign("at+jwt", &serde_json::json!({"x":1})).unwrap();
        let jws = jose::UnverifiedJws::parse(&token).unwrap();
        assert_eq!(jws.header.kid.as_deref(), Some(new_kid.as_str()));
        assert!(ring.verifier(&old_kid).is_some());
        let v: serde_json::Value = serde_json::from_str(&ring.jwks_json()).unwrap();
        assert_eq!(v["keys"].as_array().unwrap().len(), 2);
    }
}

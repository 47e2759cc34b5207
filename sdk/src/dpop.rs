//! DPoP at the resource server (RFC 9449 §7): does this request prove
//! possession of the key its access token is bound to, and is this the first
//! time we see that proof?
//!
//! Owns: the proof checks of RFC 9449 §4.3 as a resource server makes them,
//! with those of §7.1, in this order, each refusal its own [`DpopError`]:
//! exactly one `DPoP` header; a compact JWS of at most [`MAX_PROOF_BYTES`];
//! `typ` `dpop+jwt`; no `crit`; an allow-listed asymmetric `alg`; a public
//! `jwk` of a supported type (no private or symmetric members, RSA ≥ 2048
//! bits); the signature by that key; `jti`, `htm`, `htu`, `iat` present;
//! `htm` the request's method; `htu` the request's URI (query and fragment
//! ignored, both sides normalised, §4.3 check 9); `iat` within the window
//! (`max_age` in the past, `clock_skew` either way); `ath` the hash of the
//! access token presented (§4.2, §7.1); the key's RFC 7638 thumbprint the
//! token's `cnf.jkt` (§6.1, §7.1); and last, the `jti` not seen before for
//! this key within the window (§11.1), in a bounded in-memory set.
//! Must never: trust the proof's key for anything but the thumbprint it
//! proves; forget a `jti` while its proof could still be accepted (a full
//! set refuses new proofs, [`DpopError::ReplayCacheFull`], rather than
//! evicting one early); mark a `jti` used before every other check passed;
//! put a proof or a token into an error or a log line.
//!
//! Not supported: server nonces (RFC 9449 §9): a proof is never asked for
//! one, and a `nonce` it carries is ignored.
//!
//! Replays across replicas: the set of seen `jti`s lives in this process.
//! Behind several replicas, a proof replayed within its window to another
//! replica is accepted there once more; RFC 9449 §11.1 leaves the strength of
//! replay detection to the server, and the window (`max_age` +
//! `clock_skew`, 65 s by default) bounds what such a replay can do. A
//! deployment that needs more routes each client to one replica.
//!
//! The rules copied from the broker (src/dpop/mod.rs) — the size bound, the
//! private JWK members, the RSA minimum, the claim bounds, the `htu`
//! normalisation, the thumbprint — are checked against it by
//! tests/api/sdk.rs ("one rule, two crates").

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jwk::Jwk;
use serde_json::{Map, Value, json};

use crate::alg::Alg;
use crate::jws::UnverifiedJws;

/// The proof's media type (RFC 9449 §4.2).
pub const TYP: &str = "dpop+jwt";
/// The request header that carries the proof (RFC 9449 §4.1).
pub const HEADER: &str = "DPoP";
/// A proof carries one public key and a few short claims: an RSA-4096 key is
/// under 1 KiB of base64url, so this bounds a hostile one (the broker's
/// bound).
pub const MAX_PROOF_BYTES: usize = 8 * 1024;
/// Longest `jti` and `htm` read (the broker's bound).
pub const MAX_CLAIM_BYTES: usize = 256;
/// Longest `htu` read (the broker's bound).
pub const MAX_HTU_BYTES: usize = 2048;
/// RFC 7518 §3.3: an RSA key of at least 2048 bits.
pub const MIN_RSA_MODULUS_BITS: usize = 2048;
/// JWK members that only a private or symmetric key has (RFC 7518 §6).
pub const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// How old a proof may be by default (the broker's `dpop.max_age_secs`).
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(60);
/// The oldest a proof may ever be allowed to be.
pub const MAX_MAX_AGE: Duration = Duration::from_secs(300);
/// The clock difference allowed by default, either way.
pub const DEFAULT_CLOCK_SKEW: Duration = Duration::from_secs(5);
/// The largest clock difference a verifier accepts.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);
/// How many proofs the replay set remembers by default: over 1 500 proofs a
/// second, every second of the default window, in a few MiB.
pub const DEFAULT_REPLAY_CAPACITY: usize = 100_000;

/// Why a proof was refused. Never carries the proof or the token: a variant
/// names the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    #[error("the request has no DPoP header (RFC 9449 §7.1)")]
    Missing,
    #[error("the request has more than one DPoP header (RFC 9449 §4.3)")]
    SeveralHeaders,
    #[error("the DPoP proof is larger than {MAX_PROOF_BYTES} bytes")]
    TooLarge,
    #[error("the DPoP proof is not a compact JWS with a JSON header and claims")]
    Malformed,
    #[error("the DPoP proof's typ is not dpop+jwt (RFC 9449 §4.2)")]
    WrongType,
    #[error("the DPoP proof carries a crit header, which is not understood (RFC 7515 §4.1.11)")]
    CriticalHeader,
    #[error("the DPoP proof's alg is not allowed (asymmetric algorithms only)")]
    AlgorithmNotAllowed,
    #[error("the DPoP proof's header has no jwk (RFC 9449 §4.2)")]
    JwkMissing,
    #[error("the DPoP proof's jwk is not a public key (RFC 9449 §4.3)")]
    JwkPrivate,
    #[error("the DPoP proof's jwk is not an EC, OKP or RSA key")]
    JwkType,
    #[error("the DPoP proof's RSA key is shorter than {MIN_RSA_MODULUS_BITS} bits")]
    JwkWeak,
    #[error("the DPoP proof's jwk is not a valid JWK")]
    JwkInvalid,
    #[error("the DPoP proof's jwk is not a key for its alg")]
    JwkAlg,
    #[error("the DPoP proof's signature does not verify with its jwk")]
    BadSignature,
    #[error("the DPoP proof must carry jti, htm, htu and iat (RFC 9449 §4.2)")]
    MissingClaims,
    #[error("the DPoP proof's htm is not this request's method")]
    WrongMethod,
    #[error("the DPoP proof's htu is not this request's URI")]
    WrongUri,
    #[error("the DPoP proof's iat is too old or in the future")]
    Iat,
    #[error("the DPoP proof's ath is not the hash of this access token (RFC 9449 §4.2)")]
    Ath,
    #[error("the DPoP proof's key is not the key the token is bound to (cnf.jkt)")]
    OtherKey,
    #[error("the DPoP proof was used before (RFC 9449 §11.1)")]
    Replayed,
    /// Every remembered proof is still inside its window: the proof cannot
    /// be checked for a replay now, so it is refused (a 503, not a 401).
    #[error("too many recent DPoP proofs to check this one for a replay")]
    ReplayCacheFull,
}

impl DpopError {
    /// A short machine reason (`dpop.htu`), for logs and metrics: the
    /// broker's names for the same rules.
    pub fn reason(&self) -> &'static str {
        match self {
            DpopError::Missing => "dpop.missing",
            DpopError::SeveralHeaders => "dpop.several_headers",
            DpopError::TooLarge => "dpop.too_large",
            DpopError::Malformed => "dpop.malformed",
            DpopError::WrongType => "dpop.typ",
            DpopError::CriticalHeader => "dpop.crit",
            DpopError::AlgorithmNotAllowed => "dpop.alg",
            DpopError::JwkMissing => "dpop.jwk_missing",
            DpopError::JwkPrivate => "dpop.jwk_private",
            DpopError::JwkType => "dpop.jwk_kty",
            DpopError::JwkWeak => "dpop.jwk_weak",
            DpopError::JwkInvalid => "dpop.jwk",
            DpopError::JwkAlg => "dpop.jwk_alg",
            DpopError::BadSignature => "dpop.signature",
            DpopError::MissingClaims => "dpop.claims",
            DpopError::WrongMethod => "dpop.htm",
            DpopError::WrongUri => "dpop.htu",
            DpopError::Iat => "dpop.iat",
            DpopError::Ath => "dpop.ath",
            DpopError::OtherKey => "dpop.other_key",
            DpopError::Replayed => "dpop.replayed",
            DpopError::ReplayCacheFull => "dpop.replay_cache_full",
        }
    }

    /// The error code of the `DPoP` challenge (RFC 9449 §7.1):
    /// `invalid_token` when the proof is sound but by another key than the
    /// token's (the token is not this client's; §7.1's "Invalid DPoP key
    /// binding" example), `invalid_dpop_proof` for every other refusal.
    pub fn error_code(&self) -> &'static str {
        match self {
            DpopError::OtherKey => "invalid_token",
            _ => "invalid_dpop_proof",
        }
    }

    /// The check could not be made (the replay set is full), as opposed to a
    /// bad proof.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DpopError::ReplayCacheFull)
    }
}

/// Why a [`DpopVerifier`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopConfigError {
    #[error("the DPoP proof max age must be 1 s to {} s", MAX_MAX_AGE.as_secs())]
    MaxAge,
    #[error("the DPoP clock skew must be at most {} s", MAX_CLOCK_SKEW.as_secs())]
    ClockSkew,
    #[error("at least one DPoP proof algorithm must be allowed")]
    NoAlgorithm,
    #[error("the DPoP replay set must hold at least one proof")]
    ReplayCapacity,
}

/// How proofs are judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopConfig {
    max_age: Duration,
    clock_skew: Duration,
    algs: Vec<Alg>,
    replay_capacity: usize,
}

impl Default for DpopConfig {
    fn default() -> Self {
        Self {
            max_age: DEFAULT_MAX_AGE,
            clock_skew: DEFAULT_CLOCK_SKEW,
            algs: Alg::ALL.to_vec(),
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
        }
    }
}

impl DpopConfig {
    /// How old a proof's `iat` may be (RFC 9449 §4.3 check 11; default 60 s,
    /// at most [`MAX_MAX_AGE`]).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// The clock difference allowed either way around `iat` (default 5 s, at
    /// most [`MAX_CLOCK_SKEW`]).
    pub fn clock_skew(mut self, skew: Duration) -> Self {
        self.clock_skew = skew;
        self
    }

    /// The proof algorithms accepted (default: every [`Alg`]; only
    /// asymmetric algorithms exist there). The `algs` of the `DPoP`
    /// challenge (RFC 9449 §7.1).
    pub fn algorithms(mut self, algs: &[Alg]) -> Self {
        self.algs = algs.to_vec();
        self
    }

    /// How many accepted proofs are remembered for replay detection (default
    /// [`DEFAULT_REPLAY_CAPACITY`]). When every remembered proof is still in
    /// its window, new proofs are refused with
    /// [`DpopError::ReplayCacheFull`]: size it above the proofs a replica
    /// accepts within `max_age` + 2 × `clock_skew`.
    pub fn replay_capacity(mut self, n: usize) -> Self {
        self.replay_capacity = n;
        self
    }
}

/// What a proof must match: the request as this resource received it.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// Every `DPoP` header value of the request, in order (exactly one is
    /// accepted, RFC 9449 §4.3 check 1). A value that is not text may be
    /// passed as `""`: it is then malformed.
    pub proofs: &'a [&'a str],
    /// The request's method, as sent (`GET`, `POST`: compared exactly).
    pub method: &'a str,
    /// The request's target URI as the client addressed it: this resource's
    /// public URL (not the address a proxy forwarded to). Query and fragment
    /// are ignored.
    pub uri: &'a str,
}

/// Verifies DPoP proofs for one resource server and remembers the accepted
/// ones for replay detection. [`TokenValidator`](crate::TokenValidator)
/// holds one; it can also be used on its own with a token's `cnf.jkt`.
pub struct DpopVerifier {
    max_age: i64,
    skew: i64,
    algs: Vec<Alg>,
    replay: ReplaySet,
}

impl std::fmt::Debug for DpopVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopVerifier")
            .field("max_age", &self.max_age)
            .field("skew", &self.skew)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

impl DpopVerifier {
    pub fn new(config: DpopConfig) -> Result<Self, DpopConfigError> {
        if config.max_age.is_zero() || config.max_age > MAX_MAX_AGE {
            return Err(DpopConfigError::MaxAge);
        }
        if config.clock_skew > MAX_CLOCK_SKEW {
            return Err(DpopConfigError::ClockSkew);
        }
        if config.algs.is_empty() {
            return Err(DpopConfigError::NoAlgorithm);
        }
        if config.replay_capacity == 0 {
            return Err(DpopConfigError::ReplayCapacity);
        }
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(0);
        let (max_age, skew) = (secs(config.max_age), secs(config.clock_skew));
        Ok(Self {
            max_age,
            skew,
            algs: config.algs,
            // A proof accepted at t had iat ≤ t + skew, so it is stale once
            // now > t + max_age + 2 × skew: remembered until then.
            replay: ReplaySet::new(config.replay_capacity, max_age + 2 * skew),
        })
    }

    /// The proof algorithms accepted, for the `algs` of a challenge and
    /// `dpop_signing_alg_values_supported` (RFC 9728 §2).
    pub fn algorithms(&self) -> &[Alg] {
        &self.algs
    }

    /// Check `request`'s proof for `access_token`, bound to the key whose
    /// RFC 7638 thumbprint is `jkt` (the token's verified `cnf.jkt`), now.
    /// On success the proof's `jti` is spent.
    pub fn verify(&self, request: &DpopRequest<'_>, access_token: &str, jkt: &str) -> Result<(), DpopError> {
        self.verify_at(request, access_token, jkt, now_secs())
    }

    pub(crate) fn verify_at(
        &self,
        request: &DpopRequest<'_>,
        access_token: &str,
        jkt: &str,
        now: i64,
    ) -> Result<(), DpopError> {
        let replay_key = self.check(request, access_token, jkt, now)?;
        self.replay.first_use(replay_key, now)
    }

    /// Every check but the replay; the key that makes the proof single use.
    fn check(&self, request: &DpopRequest<'_>, access_token: &str, jkt: &str, now: i64) -> Result<[u8; 32], DpopError> {
        let proof = match request.proofs {
            [] => return Err(DpopError::Missing),
            [one] => *one,
            _ => return Err(DpopError::SeveralHeaders),
        };
        if proof.len() > MAX_PROOF_BYTES {
            return Err(DpopError::TooLarge);
        }
        let jws = UnverifiedJws::parse(proof).map_err(|_| DpopError::Malformed)?;
        if jws.header.media_type().as_deref() != Some(TYP) {
            return Err(DpopError::WrongType);
        }
        if jws.header.crit.is_some() {
            return Err(DpopError::CriticalHeader);
        }
        let alg = Alg::parse(&jws.header.alg)
            .filter(|a| self.algs.contains(a))
            .ok_or(DpopError::AlgorithmNotAllowed)?;
        let (map, jwk) = public_jwk(jws.header.jwk.as_ref())?;
        let verifier = alg.verifier(&jwk).map_err(|_| DpopError::JwkAlg)?;
        if !jws.verify(verifier.as_ref()) {
            return Err(DpopError::BadSignature);
        }
        let claims = Claims::read(&jws.payload)?;
        if claims.htm != request.method {
            return Err(DpopError::WrongMethod);
        }
        let htu = normalise_htu(claims.htu);
        if htu.is_none() || htu != normalise_htu(request.uri) {
            return Err(DpopError::WrongUri);
        }
        if claims.iat < now - self.max_age - self.skew || claims.iat > now + self.skew {
            return Err(DpopError::Iat);
        }
        if jws.payload.get("ath").and_then(Value::as_str) != Some(ath(access_token).as_str()) {
            return Err(DpopError::Ath);
        }
        let proven = jwk_thumbprint(map).ok_or(DpopError::JwkInvalid)?;
        if proven != jkt {
            return Err(DpopError::OtherKey);
        }
        // Per key: the jti is the client's text, hashed to a fixed size. A
        // thumbprint is base64url, so the newline cannot be forged into it.
        Ok(openssl::sha::sha256(format!("{proven}\n{}", claims.jti).as_bytes()))
    }
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The access token hash a proof presented with it carries (RFC 9449 §4.2:
/// base64url of the SHA-256 of the token's ASCII).
pub fn ath(access_token: &str) -> String {
    B64.encode(openssl::sha::sha256(access_token.as_bytes()))
}

/// RFC 7638 JWK thumbprint (SHA-256, base64url) of a public EC, RSA or OKP
/// key: its required members in lexicographic order, no whitespace. `None`
/// for another key type or a missing member.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    // Inserted in lexicographic order, so the text is the same whether the
    // map sorts its keys or keeps their order.
    let canonical = match member("kty")? {
        "EC" => json!({"crv": member("crv")?, "kty": "EC", "x": member("x")?, "y": member("y")?}),
        "RSA" => json!({"e": member("e")?, "kty": "RSA", "n": member("n")?}),
        "OKP" => json!({"crv": member("crv")?, "kty": "OKP", "x": member("x")?}),
        _ => return None,
    };
    let text = serde_json::to_string(&canonical).ok()?;
    Some(B64.encode(openssl::sha::sha256(text.as_bytes())))
}

/// The proof's `jwk`: present, public, of a type we verify (RFC 9449 §4.3
/// check 7: "does not contain a private key").
fn public_jwk(jwk: Option<&Value>) -> Result<(&Map<String, Value>, Jwk), DpopError> {
    let map = match jwk {
        None => return Err(DpopError::JwkMissing),
        Some(Value::Object(map)) => map,
        // The broker cannot read such a header at all.
        Some(_) => return Err(DpopError::Malformed),
    };
    if PRIVATE_MEMBERS.iter().any(|m| map.contains_key(*m)) {
        return Err(DpopError::JwkPrivate);
    }
    match map.get("kty").and_then(Value::as_str) {
        Some("EC" | "OKP") => {}
        Some("RSA") => {
            if rsa_modulus_bits(map.get("n")) < MIN_RSA_MODULUS_BITS {
                return Err(DpopError::JwkWeak);
            }
        }
        _ => return Err(DpopError::JwkType),
    }
    let jwk = Jwk::from_map(map.clone()).map_err(|_| DpopError::JwkInvalid)?;
    Ok((map, jwk))
}

/// The size of an RSA modulus `n` (base64url, RFC 7518 §6.3.1.1), in bits,
/// leading zero bytes not counted; 0 when unreadable.
pub(crate) fn rsa_modulus_bits(n: Option<&Value>) -> usize {
    let Some(bytes) = n.and_then(Value::as_str).and_then(|n| B64.decode(n).ok()) else {
        return 0;
    };
    let Some(first) = bytes.iter().position(|b| *b != 0) else {
        return 0;
    };
    let top = usize::try_from(8 - bytes[first].leading_zeros()).unwrap_or(0);
    (bytes.len() - first - 1) * 8 + top
}

/// The claims every proof carries (RFC 9449 §4.2), bounded.
struct Claims<'a> {
    jti: &'a str,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
}

impl<'a> Claims<'a> {
    fn read(payload: &'a Map<String, Value>) -> Result<Self, DpopError> {
        let text = |name: &str, max: usize| {
            payload
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= max)
                .ok_or(DpopError::MissingClaims)
        };
        Ok(Self {
            jti: text("jti", MAX_CLAIM_BYTES)?,
            htm: text("htm", MAX_CLAIM_BYTES)?,
            htu: text("htu", MAX_HTU_BYTES)?,
            // RFC 7519 §2 NumericDate may be fractional: whole seconds kept.
            iat: payload
                .get("iat")
                .and_then(Value::as_f64)
                .filter(|f| f.is_finite())
                .map(|f| f as i64)
                .ok_or(DpopError::MissingClaims)?,
        })
    }
}

/// RFC 9449 §4.3 check 9: compare without query and fragment, after the
/// syntax- and scheme-based normalisation of RFC 3986 §6.2.2–6.2.3 (case of
/// scheme and host, default port, empty path, dot segments), which `url`
/// performs. `None` for anything but an absolute http(s) URI.
pub fn normalise_htu(raw: &str) -> Option<String> {
    let mut u = url::Url::parse(raw).ok()?;
    if !matches!(u.scheme(), "https" | "http") {
        return None;
    }
    u.set_query(None);
    u.set_fragment(None);
    Some(u.into())
}

/// The proofs accepted within their window, per key and `jti`, in the order
/// they were accepted. Bounded: when full of live entries it refuses rather
/// than forgets.
struct ReplaySet {
    capacity: usize,
    ttl: i64,
    state: Mutex<ReplayState>,
}

#[derive(Default)]
struct ReplayState {
    seen: HashSet<[u8; 32]>,
    /// (forget at, key), oldest first.
    order: VecDeque<(i64, [u8; 32])>,
}

impl ReplaySet {
    fn new(capacity: usize, ttl: i64) -> Self {
        Self {
            capacity,
            ttl,
            state: Mutex::new(ReplayState::default()),
        }
    }

    /// Remember `key` at `now`; refuse it if it was seen within its window.
    fn first_use(&self, key: [u8; 32], now: i64) -> Result<(), DpopError> {
        // Nothing panics while the lock is held; a poisoned lock still holds
        // a consistent set.
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(&(forget_at, old)) = s.order.front() {
            if forget_at > now {
                break;
            }
            s.order.pop_front();
            s.seen.remove(&old);
        }
        if s.seen.contains(&key) {
            return Err(DpopError::Replayed);
        }
        if s.seen.len() >= self.capacity {
            return Err(DpopError::ReplayCacheFull);
        }
        s.seen.insert(key);
        s.order.push_back((now + self.ttl, key));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::sign_compact;
    use josekit::jwk::alg::ec::EcCurve;
    use josekit::jwk::alg::ed::EdCurve;

    const NOW: i64 = 1_800_000_000;
    const URI: &str = "https://mcp.logs.example.com/tools/search_logs";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

    struct Key {
        private: Jwk,
        alg: Alg,
    }

    impl Key {
        fn new(alg: Alg) -> Self {
            let private = match alg {
                Alg::ES256 => Jwk::generate_ec_key(EcCurve::P256),
                Alg::ES384 => Jwk::generate_ec_key(EcCurve::P384),
                Alg::RS256 | Alg::PS256 => Jwk::generate_rsa_key(2048),
                Alg::EdDSA => Jwk::generate_ed_key(EdCurve::Ed25519),
            }
            .unwrap();
            Self { private, alg }
        }

        fn public(&self) -> Map<String, Value> {
            self.private.to_public_key().unwrap().as_ref().clone()
        }

        fn jkt(&self) -> String {
            jwk_thumbprint(&self.public()).unwrap()
        }

        /// A good proof of `POST URI` for `TOKEN` at `NOW`, then `tweak`.
        fn proof_with(&self, tweak: impl FnOnce(&mut Value, &mut Value)) -> String {
            let mut header = json!({"typ": "dpop+jwt", "alg": self.alg.name(), "jwk": self.public()});
            let mut claims = json!({"jti": "j-1", "htm": "POST", "htu": URI, "iat": NOW, "ath": ath(TOKEN)});
            tweak(&mut header, &mut claims);
            sign_compact(&header, &claims, self.alg.signer(&self.private).unwrap().as_ref()).unwrap()
        }

        fn proof(&self) -> String {
            self.proof_with(|_, _| {})
        }
    }

    fn verifier() -> DpopVerifier {
        DpopVerifier::new(DpopConfig::default()).unwrap()
    }

    fn check(v: &DpopVerifier, proofs: &[&str], jkt: &str) -> Result<(), DpopError> {
        let request = DpopRequest {
            proofs,
            method: "POST",
            uri: URI,
        };
        v.verify_at(&request, TOKEN, jkt, NOW)
    }

    #[test]
    fn a_good_proof_by_the_tokens_key_is_accepted_once() {
        let (v, key) = (verifier(), Key::new(Alg::ES256));
        let proof = key.proof();
        assert_eq!(check(&v, &[&proof], &key.jkt()), Ok(()));
        assert_eq!(check(&v, &[&proof], &key.jkt()), Err(DpopError::Replayed));
        let fresh = key.proof_with(|_, c| c["jti"] = json!("j-2"));
        assert_eq!(check(&v, &[&fresh], &key.jkt()), Ok(()), "another jti");
    }

    #[test]
    fn every_allowed_algorithm_proves_a_key() {
        for alg in Alg::ALL {
            let key = Key::new(alg);
            assert_eq!(check(&verifier(), &[&key.proof()], &key.jkt()), Ok(()), "{alg}");
        }
    }

    #[test]
    fn only_the_configured_algorithms_are_accepted() {
        let v = DpopVerifier::new(DpopConfig::default().algorithms(&[Alg::ES256])).unwrap();
        let key = Key::new(Alg::EdDSA);
        assert_eq!(
            check(&v, &[&key.proof()], &key.jkt()),
            Err(DpopError::AlgorithmNotAllowed)
        );
    }

    #[test]
    fn the_same_jti_under_another_key_is_another_proof() {
        let v = verifier();
        let (a, b) = (Key::new(Alg::ES256), Key::new(Alg::ES256));
        assert_eq!(check(&v, &[&a.proof()], &a.jkt()), Ok(()));
        assert_eq!(check(&v, &[&b.proof()], &b.jkt()), Ok(()));
    }

    #[test]
    fn a_refused_proof_is_not_spent() {
        let (v, key) = (verifier(), Key::new(Alg::ES256));
        let proof = key.proof();
        assert_eq!(check(&v, &[&proof], "another-jkt"), Err(DpopError::OtherKey));
        assert_eq!(check(&v, &[&proof], &key.jkt()), Ok(()));
    }

    #[test]
    fn every_broken_proof_is_refused_by_its_own_rule() {
        let (key, other) = (Key::new(Alg::ES256), Key::new(Alg::ES256));
        let private = Value::Object(key.private.as_ref().clone());
        let remove = |v: &mut Value, name: &str| drop(v.as_object_mut().unwrap().remove(name));
        let cases: Vec<(DpopError, String)> = vec![
            (DpopError::TooLarge, "a".repeat(MAX_PROOF_BYTES + 1)),
            (DpopError::Malformed, "not-a-jws".into()),
            (DpopError::Malformed, key.proof_with(|h, _| h["jwk"] = json!("a key"))),
            (DpopError::WrongType, key.proof_with(|h, _| h["typ"] = json!("JWT"))),
            (DpopError::WrongType, key.proof_with(|h, _| remove(h, "typ"))),
            (
                DpopError::CriticalHeader,
                key.proof_with(|h, _| h["crit"] = json!(["exp"])),
            ),
            (
                DpopError::AlgorithmNotAllowed,
                key.proof_with(|h, _| h["alg"] = json!("HS256")),
            ),
            (
                DpopError::AlgorithmNotAllowed,
                key.proof_with(|h, _| h["alg"] = json!("none")),
            ),
            (DpopError::JwkMissing, key.proof_with(|h, _| remove(h, "jwk"))),
            (DpopError::JwkPrivate, key.proof_with(|h, _| h["jwk"] = private.clone())),
            (
                DpopError::JwkPrivate,
                key.proof_with(|h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
            ),
            (
                DpopError::JwkType,
                key.proof_with(|h, _| h["jwk"] = json!({"kty": "XYZ"})),
            ),
            (
                DpopError::JwkInvalid,
                key.proof_with(|h, _| h["jwk"] = json!({"kty": "EC", "crv": 256})),
            ),
            (DpopError::JwkAlg, key.proof_with(|h, _| h["alg"] = json!("ES384"))),
            (
                DpopError::BadSignature,
                key.proof_with(|h, _| h["jwk"] = Value::Object(other.public())),
            ),
            (DpopError::MissingClaims, key.proof_with(|_, c| remove(c, "jti"))),
            (DpopError::MissingClaims, key.proof_with(|_, c| remove(c, "htm"))),
            (DpopError::MissingClaims, key.proof_with(|_, c| remove(c, "htu"))),
            (DpopError::MissingClaims, key.proof_with(|_, c| c["iat"] = json!("now"))),
            (
                DpopError::MissingClaims,
                key.proof_with(|_, c| c["jti"] = json!("j".repeat(MAX_CLAIM_BYTES + 1))),
            ),
            (DpopError::WrongMethod, key.proof_with(|_, c| c["htm"] = json!("GET"))),
            (DpopError::WrongMethod, key.proof_with(|_, c| c["htm"] = json!("post"))),
            (
                DpopError::WrongUri,
                key.proof_with(|_, c| c["htu"] = json!("https://mcp.logs.example.com/tools/purge_logs")),
            ),
            (
                DpopError::WrongUri,
                key.proof_with(|_, c| c["htu"] = json!("https://evil.example.com/tools/search_logs")),
            ),
            (
                DpopError::WrongUri,
                key.proof_with(|_, c| c["htu"] = json!("not a url")),
            ),
            (DpopError::Iat, key.proof_with(|_, c| c["iat"] = json!(NOW - 66))),
            (DpopError::Iat, key.proof_with(|_, c| c["iat"] = json!(NOW + 6))),
            (DpopError::Ath, key.proof_with(|_, c| remove(c, "ath"))),
            (
                DpopError::Ath,
                key.proof_with(|_, c| c["ath"] = json!(ath("another token"))),
            ),
            (DpopError::OtherKey, other.proof()),
        ];
        for (expected, proof) in cases {
            let v = verifier();
            let got = check(&v, &[&proof], &key.jkt());
            assert_eq!(got, Err(expected), "{}", expected.reason());
            assert!(
                !got.unwrap_err().to_string().contains(&proof),
                "a proof is never in an error"
            );
        }
    }

    #[test]
    fn exactly_one_proof_header_is_accepted() {
        let key = Key::new(Alg::ES256);
        let (a, b) = (key.proof(), key.proof_with(|_, c| c["jti"] = json!("j-2")));
        assert_eq!(check(&verifier(), &[], &key.jkt()), Err(DpopError::Missing));
        assert_eq!(
            check(&verifier(), &[&a, &b], &key.jkt()),
            Err(DpopError::SeveralHeaders)
        );
    }

    #[test]
    fn iat_is_accepted_within_max_age_and_the_skew_and_no_further() {
        let key = Key::new(Alg::ES256);
        for iat in [NOW - 65, NOW, NOW + 5] {
            let p = key.proof_with(|_, c| c["iat"] = json!(iat));
            assert_eq!(check(&verifier(), &[&p], &key.jkt()), Ok(()), "{iat}");
        }
        let v = DpopVerifier::new(DpopConfig::default().max_age(Duration::from_secs(10))).unwrap();
        let p = key.proof_with(|_, c| c["iat"] = json!(NOW - 16));
        assert_eq!(check(&v, &[&p], &key.jkt()), Err(DpopError::Iat));
    }

    #[test]
    fn htu_compares_normalised_without_query_or_fragment() {
        let ours = normalise_htu("https://mcp.logs.example.com/tools/x");
        assert_eq!(normalise_htu("HTTPS://MCP.Logs.Example.com:443/tools/x?q=1#f"), ours);
        assert_eq!(normalise_htu("https://mcp.logs.example.com/a/../tools/x"), ours);
        assert_ne!(normalise_htu("https://mcp.logs.example.com/tools/x/"), ours);
        assert_ne!(normalise_htu("http://mcp.logs.example.com/tools/x"), ours);
        assert_ne!(normalise_htu("https://mcp.logs.example.com:8443/tools/x"), ours);
        assert_eq!(normalise_htu("urn:x:tools"), None);
        let key = Key::new(Alg::ES256);
        let p = key.proof_with(|_, c| c["htu"] = json!("https://MCP.logs.example.com:443/tools/search_logs?x=1"));
        assert_eq!(check(&verifier(), &[&p], &key.jkt()), Ok(()));
    }

    #[test]
    fn an_rsa_key_shorter_than_2048_bits_is_refused() {
        // The size is checked before the signature (josekit would not even
        // sign with such a key).
        let small = Jwk::generate_rsa_key(1024).unwrap();
        let key = Key::new(Alg::RS256);
        let proof = key.proof_with(|h, _| h["jwk"] = Value::Object(small.to_public_key().unwrap().as_ref().clone()));
        assert_eq!(check(&verifier(), &[&proof], &key.jkt()), Err(DpopError::JwkWeak));
        // Leading zero bytes do not make a short modulus longer.
        let mut padded = small.to_public_key().unwrap().as_ref().clone();
        let n = B64.decode(padded["n"].as_str().unwrap()).unwrap();
        let zeros = [vec![0u8; 128], n].concat();
        padded.insert("n".into(), json!(B64.encode(&zeros)));
        assert_eq!(rsa_modulus_bits(padded.get("n")), 1024);
        assert_eq!(rsa_modulus_bits(Some(&json!(B64.encode([0x01, 0, 0])))), 17);
        assert_eq!(rsa_modulus_bits(Some(&json!("!!"))), 0);
    }

    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        // RFC 7638 §3.1: the example key and its thumbprint.
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB", "alg": "RS256", "kid": "2011-04-29"
        });
        let Value::Object(map) = jwk else { unreachable!() };
        assert_eq!(
            jwk_thumbprint(&map).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
        assert_eq!(jwk_thumbprint(&Map::new()), None);
    }

    #[test]
    fn ath_is_the_hash_of_the_token_as_in_rfc_9449() {
        // RFC 9449 §7.1: the example access token and its ath.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn a_replay_is_remembered_for_the_whole_window_then_forgotten() {
        let set = ReplaySet::new(8, 70);
        assert_eq!(set.first_use([1; 32], NOW), Ok(()));
        assert_eq!(set.first_use([1; 32], NOW + 69), Err(DpopError::Replayed));
        assert_eq!(set.first_use([1; 32], NOW + 70), Ok(()), "expired, then new");
    }

    #[test]
    fn a_full_replay_set_refuses_rather_than_forgets() {
        let set = ReplaySet::new(2, 70);
        assert_eq!(set.first_use([1; 32], NOW), Ok(()));
        assert_eq!(set.first_use([2; 32], NOW + 1), Ok(()));
        let full = set.first_use([3; 32], NOW + 2);
        assert_eq!(full, Err(DpopError::ReplayCacheFull));
        assert!(full.unwrap_err().is_unavailable());
        assert_eq!(set.first_use([1; 32], NOW + 2), Err(DpopError::Replayed), "still known");
        assert_eq!(set.first_use([3; 32], NOW + 70), Ok(()), "room once one expired");
    }

    #[test]
    fn a_binding_problem_is_invalid_token_and_the_rest_invalid_dpop_proof() {
        assert_eq!(DpopError::OtherKey.error_code(), "invalid_token");
        assert_eq!(DpopError::Ath.error_code(), "invalid_dpop_proof");
        assert_eq!(DpopError::Replayed.error_code(), "invalid_dpop_proof");
    }

    #[test]
    fn settings_outside_their_bounds_are_refused() {
        let build = |c: DpopConfig| DpopVerifier::new(c).err();
        assert_eq!(
            build(DpopConfig::default().max_age(Duration::ZERO)),
            Some(DpopConfigError::MaxAge)
        );
        assert_eq!(
            build(DpopConfig::default().max_age(Duration::from_secs(301))),
            Some(DpopConfigError::MaxAge)
        );
        assert_eq!(
            build(DpopConfig::default().clock_skew(Duration::from_secs(61))),
            Some(DpopConfigError::ClockSkew)
        );
        assert_eq!(
            build(DpopConfig::default().algorithms(&[])),
            Some(DpopConfigError::NoAlgorithm)
        );
        assert_eq!(
            build(DpopConfig::default().replay_capacity(0)),
            Some(DpopConfigError::ReplayCapacity)
        );
    }
}

//! The per-request work of a hop-token exchange, piece by piece: what the
//! crypto ceiling is, and how far the rest of the request is from it.
//! `cargo bench --bench hot_path`. Throughput over HTTP is measured with wrk
//! (method in specs/operations.md "Performance"), never asserted in tests.

use xaa_broker::chain::{self, Actor};
use xaa_broker::config::Config;
use xaa_broker::jose::{Alg, UnverifiedJws};
use xaa_broker::keys::KeyRing;
use xaa_broker::policy::{ExchangeContext, decide};
use xaa_broker::types::ClientKind;

fn main() {
    divan::main();
}

/// The example deployment's policy (examples/broker.toml), with an
/// ephemeral key.
fn example_policy() -> xaa_broker::policy::Policy {
    let mut config = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/broker.toml"
    )))
    .unwrap();
    config.keys.files.clear();
    config.keys.ephemeral = true;
    config.resolve("bench").unwrap()
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": "https://broker.example.com", "sub": "alice", "aud": "https://mcp.logs.example.com",
        "client_id": "triage-agent", "jti": "01a20be2-e170-754c-84a6-3ef481d17925", "iat": 1_800_000_000,
        "exp": 1_800_000_300, "scope": "logs.read logs.write", "roles": ["developer", "sre"],
        "txn": "01a20be2-e170-754c-84a6-3ef481d17925",
        "act": {"sub": "mcp:logs", "sub_profile": "service", "act": {"sub": "agent:triage", "sub_profile": "ai_agent"}},
    })
}

#[divan::bench(args = [Alg::ES256, Alg::EdDSA, Alg::RS256])]
fn sign(bencher: divan::Bencher, alg: Alg) {
    let ring = KeyRing::ephemeral(alg).unwrap();
    let claims = claims();
    bencher.bench_local(|| ring.sign("at+jwt", divan::black_box(&claims)).unwrap());
}

#[divan::bench(args = [Alg::ES256, Alg::EdDSA, Alg::RS256])]
fn parse_and_verify(bencher: divan::Bencher, alg: Alg) {
    let jwk = alg.generate().unwrap();
    let ring = KeyRing::from_private_jwks(vec![jwk.clone()], None).unwrap();
    let token = ring.sign("at+jwt", &claims()).unwrap();
    let verifier = alg.verifier(&jwk.to_public_key().unwrap()).unwrap();
    bencher.bench_local(|| {
        let jws = UnverifiedJws::parse(divan::black_box(&token)).unwrap();
        assert!(jws.verify(verifier.as_ref()));
    });
}

#[divan::bench]
fn policy_decide(bencher: divan::Bencher) {
    let policy = example_policy();
    let roles = vec!["developer".to_owned(), "sre".to_owned()];
    let agent = Actor {
        sub: "agent:triage".into(),
        iss: None,
        kind: ClientKind::Agent,
    };
    let service = Actor {
        sub: "mcp:logs".into(),
        iss: None,
        kind: ClientKind::Service,
    };
    let chain = chain::wrap(chain::wrap(None, Some(&agent)), Some(&service));
    let client = &policy.clients["mcp-logs"];
    let audience = &policy.audiences["https://cost.example.com"];
    bencher.bench_local(|| {
        decide(
            &policy,
            &ExchangeContext {
                client,
                audience,
                requested: None,
                roles: Some(&roles),
                subject_scope: None,
                chain: chain.as_ref(),
                delegated_through: &[],
                now: 1_800_000_000,
                subject_exp: 1_800_000_300,
            },
            &mut Vec::new(),
        )
        .unwrap()
    });
}

/// A refused `private_key_jwt` assertion, by why it is refused: an unknown
/// client id must cost what a known client with a wrong key costs, so that
/// timing cannot enumerate client ids (specs/decisions.md §9).
#[divan::bench(args = ["unknown client", "known client, unknown kid", "known client, wrong key"])]
fn refused_client_assertion(bencher: divan::Bencher, case: &str) {
    use xaa_broker::config::{KeysConfig, UpstreamConfig};
    use xaa_broker::params::OAuthParams;
    use xaa_broker::trust::jwks::JwksCache;
    use xaa_broker::trust::validate::Validator;
    use xaa_broker::trust::verified_cache::VerifiedCache;

    let mut config = Config::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/broker.toml"
    )))
    .unwrap();
    config.keys = KeysConfig {
        ephemeral: true,
        ..KeysConfig::default()
    };
    let policy = config.resolve("bench").unwrap();
    let keys = KeyRing::from_config(&config.keys, None).unwrap();
    let jwks = JwksCache::new(UpstreamConfig::default()).unwrap();
    let (client, kid) = match case {
        "unknown client" => ("no-such-client", "k"),
        "known client, unknown kid" => ("reporting-bot", "no-such-kid"),
        _ => ("reporting-bot", "reporting-bot-1"),
    };
    let attacker = Alg::ES256.generate().unwrap();
    let signer = Alg::ES256.signer(&attacker).unwrap();
    let now = xaa_broker::types::now_secs();
    let assertion = xaa_broker::jose::sign_compact(
        signer.as_ref(),
        Alg::ES256,
        kid,
        "JWT",
        &serde_json::json!({"iss": client, "sub": client, "aud": policy.issuer, "iat": now,
                            "exp": now + 600, "jti": "j"}),
    )
    .unwrap();
    let body = format!(
        "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
    );
    let params = OAuthParams::parse(body.as_bytes()).unwrap();
    let validator = Validator {
        policy: &policy,
        keys: &keys,
        jwks: &jwks,
        verified: &VerifiedCache::off(),
        now,
    };
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    bencher.bench_local(|| {
        rt.block_on(xaa_broker::client_auth::authenticate(
            &validator,
            None,
            &params,
            &mut Vec::new(),
        ))
        .unwrap_err()
    });
}

/// A DPoP proof's checks (RFC 9449 §4.3) up to its replay mark: what a
/// key-bound request adds to an exchange, for a client whose key was seen
/// before (its verifier remembered by `dpop::keys`, as in a running broker).
#[divan::bench(args = [Alg::ES256, Alg::EdDSA])]
fn dpop_proof_check(bencher: divan::Bencher, alg: Alg) {
    use xaa_broker::dpop::{Expected, check};
    use xaa_broker::params::DpopHeader;
    let policy = example_policy();
    let key = alg.generate().unwrap();
    let mut jwk = key.to_public_key().unwrap().as_ref().clone();
    jwk.remove("kid");
    let now = xaa_broker::types::now_secs();
    let header = serde_json::json!({"typ": "dpop+jwt", "alg": alg.name(), "jwk": jwk});
    let claims = serde_json::json!({
        "jti": "01a20be2-e170-754c-84a6-3ef481d17925", "htm": "POST",
        "htu": policy.token_endpoint, "iat": now,
    });
    let signer = alg.signer(&key).unwrap();
    use base64::Engine;
    let b64 = |v: &serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signer.sign(input.as_bytes()).unwrap());
    let proof = DpopHeader::One(format!("{input}.{signature}"));
    let expected = Expected {
        htm: "POST",
        htu: &policy.token_endpoint,
        now,
        clock_skew_secs: policy.tokens.clock_skew_secs,
        settings: &policy.dpop,
        keys: &xaa_broker::dpop::keys::ProofKeys::default(),
    };
    bencher.bench_local(|| check(divan::black_box(&proof), &expected).unwrap().unwrap());
}

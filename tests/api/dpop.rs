//! DPoP (RFC 9449) at the token endpoint, as a specification: a valid proof
//! binds the issued token to its key (`cnf.jkt`, `token_type: DPoP`, and the
//! response's `cnf`); every proof check refuses on its own with
//! `invalid_dpop_proof`; a proof is single use; a server nonce when required;
//! a key-bound token is exchanged or redeemed only with a proof, and the
//! binding never silently disappears.

use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::jose::Alg;
use xaa_broker::types::now_secs;

use crate::support::dpop::{DpopKey, cnf_jkt};
use crate::support::*;

const JWT_DPOP: &str = "urn:ietf:params:oauth:grant-type:jwt-dpop";

fn htu(app: &TestApp) -> String {
    format!("{}/token", app.issuer)
}

/// `client` exchanges `subject` (an access token) for a hop to `resource`.
async fn next_hop(app: &TestApp, client: &str, subject: &str, resource: &str, proofs: &[&str]) -> Resp {
    app.token_with_dpop(
        Auth::Basic(client),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", resource),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
        ],
        proofs,
    )
    .await
}

/// The last record of `app` is a denial with `error` for `reason`, and it
/// holds no proof (only thumbprints ever reach the record).
#[track_caller]
fn assert_last_denied(records: &[xaa_broker::audit::AuditRecord], error: &str, reason: &str) {
    let last = records.last().expect("the refusal is audited");
    assert_eq!(last.decision, Decision::Denied, "{last:#?}");
    assert_eq!(
        (last.error.as_deref(), last.reason.as_deref()),
        (Some(error), Some(reason)),
        "{last:#?}"
    );
    assert!(last.issued_jti.is_none());
}

/// A proof the broker must refuse with `invalid_dpop_proof` for `reason`:
/// no token, the refusal audited, the proof never echoed.
async fn assert_proof_refused(app: &TestApp, proof: &str, reason: &str) {
    let r = app.first_hop_with_dpop(&[proof]).await;
    r.assert_error(400, "invalid_dpop_proof");
    assert!(!r.body.to_string().contains(proof), "the proof is never echoed");
    assert_last_denied(&app.all_audit().await, "invalid_dpop_proof", reason);
}

// ---------------------------------------------------------------------------
// Issuance: a proof binds the new token
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_valid_proof_binds_the_hop_token_to_its_key() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let r = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    r.assert_ok();
    assert_eq!(
        r.body["token_type"], "DPoP",
        "RFC 9449 §5: a bound access token is a DPoP token"
    );
    assert_eq!(
        r.body["cnf"],
        json!({"jkt": key.jkt()}),
        "the response says the binding happened"
    );
    let claims = app.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["cnf"], json!({"jkt": key.jkt()}));
    let record = app.audit(claims["txn"].as_str().unwrap()).await.pop().unwrap();
    assert_eq!(record.decision, Decision::Granted);
    assert_eq!(
        record.dpop_jkt.as_deref(),
        Some(key.jkt().as_str()),
        "the record names the key"
    );
}

#[tokio::test]
async fn every_allowed_algorithm_proves_a_key() {
    let app = TestApp::spawn().await;
    for alg in [Alg::ES256, Alg::ES384, Alg::EdDSA, Alg::RS256, Alg::PS256] {
        let key = DpopKey::new(alg);
        let r = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
        r.assert_ok();
        assert_eq!(cnf_jkt(r.token()), Some(key.jkt()), "{alg}");
    }
}

#[tokio::test]
async fn an_id_jag_requested_with_a_proof_is_bound_to_its_key() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = app
        .token_with_dpop(
            Auth::Basic("triage-agent"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", SAAS_AS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            &[&key.proof(&htu(&app))],
        )
        .await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "N_A", "an ID-JAG is not an access token");
    assert_eq!(r.body["cnf"]["jkt"], key.jkt());
    assert_eq!(cnf_jkt(r.token()), Some(key.jkt()));
}

#[tokio::test]
async fn without_a_proof_the_token_is_a_bearer_token_with_no_cnf() {
    let app = TestApp::spawn().await;
    let r = app.first_hop_with_dpop(&[]).await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "Bearer");
    assert!(r.body.get("cnf").is_none());
    assert_eq!(cnf_jkt(r.token()), None);
}

// ---------------------------------------------------------------------------
// The proof checks (RFC 9449 §4.3), one refusal each
// ---------------------------------------------------------------------------

#[tokio::test]
async fn two_dpop_headers_are_refused() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let r = app
        .first_hop_with_dpop(&[&key.proof(&htu(&app)), &key.proof(&htu(&app))])
        .await;
    r.assert_error(400, "invalid_dpop_proof");
    assert_last_denied(&app.all_audit().await, "invalid_dpop_proof", "dpop.several_headers");
}

#[tokio::test]
async fn every_broken_proof_is_refused_by_its_own_check() {
    let app = TestApp::spawn().await;
    let (key, other) = (DpopKey::es256(), DpopKey::es256());
    let url = htu(&app);
    let now = now_secs();
    let private = Value::Object(key.private.as_ref().clone());
    let weak_rsa = DpopKey::rsa(1024);
    let cases: Vec<(&str, String)> = vec![
        ("dpop.malformed", "not-a-jws".to_owned()),
        ("dpop.too_large", "a".repeat(9000)),
        ("dpop.typ", key.proof_with(&url, |h, _| h["typ"] = json!("JWT"))),
        (
            "dpop.typ",
            key.proof_with(&url, |h, _| drop(h.as_object_mut().unwrap().remove("typ"))),
        ),
        ("dpop.crit", key.proof_with(&url, |h, _| h["crit"] = json!(["exp"]))),
        ("dpop.alg", key.proof_with(&url, |h, _| h["alg"] = json!("HS256"))),
        ("dpop.alg", key.proof_with(&url, |h, _| h["alg"] = json!("none"))),
        (
            "dpop.jwk_missing",
            key.proof_with(&url, |h, _| drop(h.as_object_mut().unwrap().remove("jwk"))),
        ),
        (
            "dpop.jwk_private",
            key.proof_with(&url, |h, _| h["jwk"] = private.clone()),
        ),
        (
            "dpop.jwk_private",
            key.proof_with(&url, |h, _| h["jwk"] = json!({"kty": "oct", "k": "c2VjcmV0"})),
        ),
        (
            "dpop.jwk_kty",
            key.proof_with(&url, |h, _| h["jwk"] = json!({"kty": "XYZ"})),
        ),
        (
            // Refused before any signature is checked (which josekit would
            // refuse too): the key itself is too short.
            "dpop.jwk_weak",
            key.proof_with(&url, |h, _| {
                h["alg"] = json!("RS256");
                h["jwk"] = weak_rsa.public();
            }),
        ),
        ("dpop.jwk_alg", key.proof_with(&url, |h, _| h["alg"] = json!("ES384"))),
        ("dpop.signature", key.proof_with(&url, |h, _| h["jwk"] = other.public())),
        (
            "dpop.claims",
            key.proof_with(&url, |_, c| drop(c.as_object_mut().unwrap().remove("jti"))),
        ),
        ("dpop.claims", key.proof_with(&url, |_, c| c["iat"] = json!("now"))),
        ("dpop.htm", key.proof_with(&url, |_, c| c["htm"] = json!("GET"))),
        ("dpop.htm", key.proof_with(&url, |_, c| c["htm"] = json!("post"))),
        ("dpop.htu", key.proof(&format!("{}/introspect", app.issuer))),
        ("dpop.htu", key.proof("https://elsewhere.example/token")),
        ("dpop.htu", key.proof("not a url")),
        ("dpop.iat", key.proof_with(&url, |_, c| c["iat"] = json!(now - 600))),
        ("dpop.iat", key.proof_with(&url, |_, c| c["iat"] = json!(now + 600))),
    ];
    for (reason, proof) in cases {
        assert_proof_refused(&app, &proof, reason).await;
    }
}

/// RFC 9449 §4.3 check 9: `htu` is compared without query and fragment,
/// after normalisation (case of scheme and host, default port).
#[tokio::test]
async fn htu_is_compared_without_query_or_fragment() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let url = format!("{}?x=1#frag", htu(&app).replace("http://", "HTTP://"));
    app.first_hop_with_dpop(&[&key.proof(&url)]).await.assert_ok();
}

#[tokio::test]
async fn a_proof_is_used_once_even_when_its_request_is_refused() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let proof = key.proof(&htu(&app));
    app.first_hop_with_dpop(&[&proof]).await.assert_ok();
    let again = app.first_hop_with_dpop(&[&proof]).await;
    again.assert_error(400, "invalid_dpop_proof");
    assert_last_denied(&app.all_audit().await, "invalid_dpop_proof", "dpop.replayed");

    // Spent by a request refused for another reason, it is spent all the same.
    let proof = key.proof(&htu(&app));
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let form = [
        ("grant_type", TOKEN_EXCHANGE),
        ("resource", "https://unknown.example.com"),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    app.token_with_dpop(Auth::Basic("triage-agent"), &form, &[&proof])
        .await
        .assert_error(400, "invalid_target");
    app.first_hop_with_dpop(&[&proof])
        .await
        .assert_error(400, "invalid_dpop_proof");
}

/// A proof is checked only once the client is authenticated: an
/// unauthenticated caller cannot make the broker verify signatures, and its
/// refusal is `invalid_client`, whatever the proof.
#[tokio::test]
async fn a_proof_is_not_even_read_before_the_client_authenticates() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer"]);
    let r = app
        .token_with_dpop(
            Auth::BasicWith("triage-agent", "wrong"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", LOGS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            &["garbage"],
        )
        .await;
    r.assert_error(401, "invalid_client");
}

// ---------------------------------------------------------------------------
// Server nonces (RFC 9449 §8)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn with_nonces_required_a_proof_without_the_current_nonce_gets_one_to_retry_with() {
    let app = TestApp::spawn_with(|c| c.dpop.require_nonce = true).await;
    let key = DpopKey::es256();
    let r = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    r.assert_error(400, "use_dpop_nonce");
    assert_last_denied(&app.all_audit().await, "use_dpop_nonce", "dpop.nonce_required");
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_owned();

    let ok = app
        .first_hop_with_dpop(&[&key.proof_with_nonce(&htu(&app), &nonce)])
        .await;
    ok.assert_ok();
    assert_eq!(ok.body["token_type"], "DPoP");
    assert!(
        ok.headers.contains_key("dpop-nonce"),
        "a success hands out the current nonce too"
    );

    let stale = key.proof_with_nonce(&htu(&app), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let forged = app.first_hop_with_dpop(&[&stale]).await;
    forged.assert_error(400, "use_dpop_nonce");
    assert_last_denied(&app.all_audit().await, "use_dpop_nonce", "dpop.nonce_stale");
    assert!(forged.headers.contains_key("dpop-nonce"));
}

#[tokio::test]
async fn without_nonces_required_no_nonce_is_handed_out() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let r = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    r.assert_ok();
    assert!(!r.headers.contains_key("dpop-nonce"));
}

// ---------------------------------------------------------------------------
// Who must send a proof
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_client_configured_to_require_dpop_gets_no_token_without_a_proof() {
    let app = TestApp::spawn_with(|c| c.clients.get_mut("triage-agent").unwrap().require_dpop = true).await;
    let r = app.first_hop_with_dpop(&[]).await;
    r.assert_error(400, "invalid_dpop_proof");
    assert_last_denied(&app.all_audit().await, "invalid_dpop_proof", "dpop.required_by_client");
    let key = DpopKey::es256();
    let ok = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    ok.assert_ok();
    assert_eq!(cnf_jkt(ok.token()), Some(key.jkt()));
}

// ---------------------------------------------------------------------------
// Re-exchange of a bound token: the binding never silently disappears
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_service_a_bound_token_was_issued_for_exchanges_it_only_with_its_own_proof() {
    let app = TestApp::spawn().await;
    let (agent_key, service_key) = (DpopKey::es256(), DpopKey::es256());
    let first = app.first_hop_with_dpop(&[&agent_key.proof(&htu(&app))]).await;
    first.assert_ok();

    let bare = next_hop(&app, "mcp-logs", first.token(), COST, &[]).await;
    bare.assert_error(400, "invalid_request");
    assert_last_denied(
        &app.all_audit().await,
        "invalid_request",
        "subject_token.dpop_proof_required",
    );

    let bound = next_hop(&app, "mcp-logs", first.token(), COST, &[&service_key.proof(&htu(&app))]).await;
    bound.assert_ok();
    assert_eq!(bound.body["token_type"], "DPoP");
    assert_eq!(
        cnf_jkt(bound.token()),
        Some(service_key.jkt()),
        "the next token is bound to the key of the service that proved it"
    );
}

#[tokio::test]
async fn the_holder_of_a_bound_token_exchanges_it_only_with_the_same_key() {
    let app = TestApp::spawn().await;
    let (key, other) = (DpopKey::es256(), DpopKey::es256());
    let first = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    first.assert_ok();

    let stolen_key = next_hop(&app, "triage-agent", first.token(), COST, &[&other.proof(&htu(&app))]).await;
    stolen_key.assert_error(400, "invalid_request");
    assert_last_denied(
        &app.all_audit().await,
        "invalid_request",
        "subject_token.dpop_other_key",
    );

    let same = next_hop(&app, "triage-agent", first.token(), COST, &[&key.proof(&htu(&app))]).await;
    same.assert_ok();
    assert_eq!(
        cnf_jkt(same.token()),
        Some(key.jkt()),
        "still bound to the holder's key"
    );
}

#[tokio::test]
async fn a_bound_token_introspects_as_dpop_with_its_key() {
    let app = TestApp::spawn().await;
    let key = DpopKey::es256();
    let first = app.first_hop_with_dpop(&[&key.proof(&htu(&app))]).await;
    first.assert_ok();
    let r = app
        .post_form("/introspect", Auth::Basic("mcp-logs"), &[("token", first.token())])
        .await;
    r.assert_ok();
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(r.body["cnf"], json!({"jkt": key.jkt()}), "RFC 9449 §6.2");
}

#[tokio::test]
async fn metadata_lists_the_asymmetric_proof_algorithms_and_the_jwt_dpop_grant() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    for app in [&enterprise, &ras] {
        let doc = app.get("/.well-known/oauth-authorization-server").await.body;
        let algs = doc["dpop_signing_alg_values_supported"].as_array().unwrap();
        assert!(
            algs.contains(&json!("ES256")) && algs.contains(&json!("EdDSA")),
            "{doc}"
        );
        assert!(
            !algs
                .iter()
                .any(|a| a.as_str().is_some_and(|a| a.starts_with("HS") || a == "none"))
        );
    }
    let grants = ras.get("/.well-known/oauth-authorization-server").await.body["grant_types_supported"].clone();
    assert!(grants.as_array().unwrap().contains(&json!(JWT_DPOP)), "{grants}");
}

// ---------------------------------------------------------------------------
// Redemption at the resource AS (ID-JAG §4.4 step 6)
// ---------------------------------------------------------------------------

/// alice's ID-JAG for 0oa-triage, bound to `key` when one is given.
async fn id_jag(enterprise: &TestApp, ras: &TestApp, key: Option<&DpopKey>) -> String {
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let proof = key.map(|k| k.proof(&htu(enterprise)));
    let proofs: Vec<&str> = proof.iter().map(String::as_str).collect();
    let r = enterprise
        .token_with_dpop(
            Auth::Basic("triage-agent"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("requested_token_type", ID_JAG),
                ("audience", &ras.issuer),
                ("resource", SAAS_MCP),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
            &proofs,
        )
        .await;
    r.assert_ok();
    r.token().to_owned()
}

async fn redeem(ras: &TestApp, grant: &str, assertion: &str, proofs: &[&str]) -> Resp {
    ras.token_with_dpop(
        Auth::Basic("0oa-triage"),
        &[("grant_type", grant), ("assertion", assertion)],
        proofs,
    )
    .await
}

#[tokio::test]
async fn a_bound_id_jag_is_redeemed_with_a_proof_by_its_key_for_a_bound_access_token() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let key = DpopKey::es256();
    let jag = id_jag(&enterprise, &ras, Some(&key)).await;
    for grant in [JWT_BEARER, JWT_DPOP] {
        let jag = if grant == JWT_BEARER {
            jag.clone()
        } else {
            id_jag(&enterprise, &ras, Some(&key)).await
        };
        let r = redeem(&ras, grant, &jag, &[&key.proof(&htu(&ras))]).await;
        r.assert_ok();
        assert_eq!(r.body["token_type"], "DPoP", "{grant}");
        let claims = ras.verify_with_published_jwks(r.token(), "at+jwt").await;
        assert_eq!(claims["cnf"]["jkt"], key.jkt(), "{grant}");
    }
    let last = ras.all_audit().await.pop().unwrap();
    assert_eq!(last.grant.as_deref(), Some("jwt-dpop"));
    assert_eq!(last.dpop_jkt.as_deref(), Some(key.jkt().as_str()));
}

#[tokio::test]
async fn a_bound_id_jag_is_refused_without_a_proof_or_with_another_key() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let (key, other) = (DpopKey::es256(), DpopKey::es256());
    let jag = id_jag(&enterprise, &ras, Some(&key)).await;
    redeem(&ras, JWT_BEARER, &jag, &[])
        .await
        .assert_error(400, "invalid_grant");
    assert_last_denied(&ras.all_audit().await, "invalid_grant", "id_jag.dpop_proof_required");

    let jag = id_jag(&enterprise, &ras, Some(&key)).await;
    redeem(&ras, JWT_BEARER, &jag, &[&other.proof(&htu(&ras))])
        .await
        .assert_error(400, "invalid_grant");
    assert_last_denied(&ras.all_audit().await, "invalid_grant", "id_jag.dpop_other_key");
}

#[tokio::test]
async fn the_jwt_dpop_grant_requires_a_proof() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let jag = id_jag(&enterprise, &ras, None).await;
    redeem(&ras, JWT_DPOP, &jag, &[])
        .await
        .assert_error(400, "invalid_dpop_proof");
    assert_last_denied(&ras.all_audit().await, "invalid_dpop_proof", "dpop.required_by_grant");
}

#[tokio::test]
async fn a_bearer_id_jag_redeemed_with_a_proof_gives_a_bound_access_token() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let key = DpopKey::es256();
    let jag = id_jag(&enterprise, &ras, None).await;
    let r = redeem(&ras, JWT_BEARER, &jag, &[&key.proof(&htu(&ras))]).await;
    r.assert_ok();
    assert_eq!(r.body["token_type"], "DPoP");
    assert_eq!(cnf_jkt(r.token()), Some(key.jkt()));
}

#[tokio::test]
async fn a_proof_made_for_the_enterprise_endpoint_is_refused_at_the_resource_as() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let key = DpopKey::es256();
    let jag = id_jag(&enterprise, &ras, Some(&key)).await;
    redeem(&ras, JWT_BEARER, &jag, &[&key.proof(&htu(&enterprise))])
        .await
        .assert_error(400, "invalid_dpop_proof");
    assert_last_denied(&ras.all_audit().await, "invalid_dpop_proof", "dpop.htu");
}

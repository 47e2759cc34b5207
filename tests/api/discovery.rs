//! Discovery and the operator endpoints: RFC 8414 metadata (also served as
//! OpenID discovery, as MCP clients require: specs/decisions.md §7), the
//! RFC 7517 key set, and the health probes.

use serde_json::Value;
use url::Url;

use crate::support::*;

const AS_METADATA: &str = "/.well-known/oauth-authorization-server";
const OIDC_DISCOVERY: &str = "/.well-known/openid-configuration";

/// The metadata document, fetched and checked to be a 200 JSON answer.
async fn metadata(app: &TestApp, path: &str) -> Value {
    let r = app.get(path).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(ct.starts_with("application/json"), "{path}: content-type {ct}");
    assert!(r.body.is_object(), "{path}: {}", r.body);
    r.body
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn metadata_is_served_at_both_well_known_paths_and_is_identical() {
    let app = TestApp::spawn().await;
    let rfc8414 = metadata(&app, AS_METADATA).await;
    let oidc = metadata(&app, OIDC_DISCOVERY).await;
    assert_eq!(rfc8414, oidc);
}

#[tokio::test]
async fn metadata_issuer_is_the_base_the_document_was_fetched_from() {
    let app = TestApp::spawn().await;
    assert_eq!(metadata(&app, AS_METADATA).await["issuer"], app.issuer.as_str());
}

#[tokio::test]
async fn metadata_endpoints_are_on_the_issuers_origin() {
    let app = TestApp::spawn().await;
    let doc = metadata(&app, AS_METADATA).await;
    for (name, path) in [
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("authorization_endpoint", "/authorize"),
    ] {
        assert_eq!(doc[name], app.url(path), "{name}");
    }
    // Every endpoint the document names, including any added later.
    let origin = Url::parse(&app.issuer).unwrap().origin();
    for (name, value) in doc.as_object().unwrap() {
        if name.ends_with("_endpoint") || name.ends_with("_uri") {
            let url = Url::parse(value.as_str().unwrap_or_else(|| panic!("{name}: {value}"))).unwrap();
            assert_eq!(url.origin(), origin, "{name}");
            assert!(url.as_str().starts_with(&format!("{}/", app.issuer)), "{name}: {url}");
        }
    }
}

#[tokio::test]
async fn metadata_satisfies_mcp_clients_and_advertises_identity_chaining() {
    let app = TestApp::spawn().await;
    let doc = metadata(&app, AS_METADATA).await;
    assert!(
        !strings(&doc["response_types_supported"]).is_empty(),
        "response_types_supported is required (RFC 8414 §2)"
    );
    assert_eq!(strings(&doc["code_challenge_methods_supported"]), ["S256"]);
    assert!(strings(&doc["grant_types_supported"]).contains(&TOKEN_EXCHANGE));
    assert!(strings(&doc["identity_chaining_requested_token_types_supported"]).contains(&ID_JAG));
    let methods = strings(&doc["token_endpoint_auth_methods_supported"]);
    for m in ["client_secret_basic", "client_secret_post", "private_key_jwt"] {
        assert!(methods.contains(&m), "{m} not in {methods:?}");
    }
}

#[tokio::test]
async fn metadata_never_names_a_trusted_issuer_or_a_client() {
    let app = TestApp::spawn().await;
    // Our own issuer is masked first: the upstream issuers share its host and
    // one could be a prefix of it.
    let text = metadata(&app, AS_METADATA)
        .await
        .to_string()
        .replace(&app.issuer, "[issuer]");
    let config = example_config();
    let mut forbidden: Vec<String> = vec![
        app.idp.issuer.clone(),
        app.agents.issuer.clone(),
        app.partner.issuer.clone(),
    ];
    forbidden.extend(config.issuers.values().map(|i| i.issuer.clone()));
    for (id, client) in &config.clients {
        forbidden.push(id.clone());
        forbidden.extend(client.ras_client_ids.values().cloned());
        forbidden.extend(client.actor_sub.clone());
    }
    for f in &forbidden {
        assert!(!text.contains(f.as_str()), "metadata names {f:?}: {text}");
    }
}

#[tokio::test]
async fn metadata_document_snapshot() {
    let app = TestApp::spawn().await;
    let text = metadata(&app, AS_METADATA)
        .await
        .to_string()
        .replace(&app.issuer, "[issuer]");
    let doc: Value = serde_json::from_str(&text).unwrap();
    // Sorted: the snapshot must not depend on serde_json's map ordering.
    insta::with_settings!({ sort_maps => true }, {
        insta::assert_json_snapshot!("metadata_document", doc);
    });
}

/// A broker whose issuer has a path: `{origin}/tenant1`.
async fn tenant_app() -> (TestApp, String) {
    let app = TestApp::spawn_with(|cfg| cfg.issuer = format!("{}/tenant1", cfg.issuer)).await;
    assert!(app.issuer.ends_with("/tenant1") && app.base != app.issuer);
    let issuer = app.issuer.clone();
    (app, issuer)
}

#[tokio::test]
async fn an_issuer_with_a_path_serves_metadata_at_the_inserted_and_appended_paths() {
    let (app, issuer) = tenant_app().await;
    let inserted = metadata(&app, "/.well-known/oauth-authorization-server/tenant1").await;
    let appended = metadata(&app, "/tenant1/.well-known/openid-configuration").await;
    let oidc_inserted = metadata(&app, "/.well-known/openid-configuration/tenant1").await;
    assert_eq!(inserted["issuer"], issuer.as_str());
    assert_eq!(inserted["token_endpoint"], format!("{issuer}/token"));
    assert_eq!(inserted["jwks_uri"], format!("{issuer}/jwks"));
    assert_eq!(appended, inserted);
    assert_eq!(oidc_inserted, inserted);
}

#[tokio::test]
async fn an_issuer_with_a_path_issues_at_its_token_endpoint() {
    let (app, issuer) = tenant_app().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let r = app
        .post_form(
            "/tenant1/token",
            Auth::Basic("triage-agent"),
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", LOGS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
            ],
        )
        .await;
    r.assert_ok();
    let claims = r.claims();
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], LOGS);
}

#[tokio::test]
async fn jwks_is_a_public_jwk_set() {
    let app = TestApp::spawn().await;
    let r = app.get("/jwks").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/jwk-set+json")
    );
    let keys = r.body["keys"].as_array().expect("a keys array");
    assert!(!keys.is_empty());
    for key in keys {
        for member in ["kid", "alg", "use", "kty"] {
            assert!(
                key[member].as_str().is_some_and(|v| !v.is_empty()),
                "{member} missing: {key}"
            );
        }
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none(), "private member {private} published: {key}");
        }
    }
}

#[tokio::test]
async fn issued_tokens_verify_with_the_published_key() {
    let app = TestApp::spawn().await;
    let r = app.first_hop("triage-agent", LOGS).await;
    r.assert_ok();
    let claims = app.verify_with_published_jwks(r.token(), "at+jwt").await;
    assert_eq!(claims["iss"], app.issuer.as_str());
    assert_eq!(claims["sub"], "alice");
}

#[tokio::test]
async fn health_and_readiness_probes_answer_200() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    assert_eq!(app.get("/readyz").await.status, 200);
}

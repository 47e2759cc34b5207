//! The SDK (`sdk/`, crate `xaa-sdk`) against the real broker: what an MCP
//! server or an agent sees. Tokens are the broker's own, over real HTTP;
//! forgeries are signed with keys the test makes. Each test states one
//! behaviour of one SDK type (sdk/README.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use xaa_broker::audit::Decision;
use xaa_broker::clock::ManualClock;
use xaa_broker::jose::Alg as BrokerAlg;
use xaa_sdk::{
    AuditReporter, Authenticated, AuthorizationServer, Category, ClientAuth, ErrorCode, HopTokens, IdJagClient,
    IdJagRequest, MultiHopRequest, Principal, ProtectedResource, ReporterConfig, ResourceMetadata, TokenError,
    TokenValidator, ToolCall, ToolPolicy, TraceParent, ValidationError,
};

use crate::support::dev_broker::{DevBroker, trace_records};
use crate::support::redis::{dedicated_redis, unique_prefix};
use crate::support::*;

/// A validator for tokens the app issues for `resource`, keys discovered
/// from the app's RFC 8414 metadata.
async fn validator(app: &TestApp, resource: &str) -> TokenValidator {
    TokenValidator::builder(&app.issuer, resource)
        .build()
        .await
        .expect("the validator discovers the broker's keys")
}

fn basic(client: &str) -> ClientAuth {
    ClientAuth::secret_basic(client, format!("{client}-secret"))
}

fn broker(app: &TestApp) -> AuthorizationServer {
    AuthorizationServer::xaa_broker(&app.issuer).unwrap()
}

/// HOP1 (triage-agent → logs) as mcp-logs sees it: the token and its
/// principal.
async fn first_hop_at_logs(app: &TestApp) -> (String, Principal) {
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    hop1.assert_ok();
    let principal = validator(app, LOGS).await.validate(hop1.token()).await.unwrap();
    (hop1.token().to_owned(), principal)
}

/// `token` with its claims replaced by `tweak`'s, the original signature kept.
fn tampered(token: &str, tweak: impl FnOnce(&mut Value)) -> String {
    let mut parts = token.split('.');
    let (h, p, s) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
    let mut claims: Value = serde_json::from_slice(&B64.decode(p).unwrap()).unwrap();
    tweak(&mut claims);
    format!("{h}.{}.{s}", B64.encode(serde_json::to_vec(&claims).unwrap()))
}

/// Sign `claims` with a key the broker never published.
fn forged(header: Value, claims: &Value) -> String {
    let key = BrokerAlg::ES256.generate().unwrap();
    sign_jws(&key, header, claims)
}

// ---------------------------------------------------------------------------
// TokenValidator
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_second_hop_token_validates_into_the_user_the_chain_and_the_txn() {
    let app = TestApp::spawn().await;
    let (_, first, second) = app.agent_then_logs_to_cost("alice").await;
    let p = validator(&app, COST).await.validate(second.token()).await.unwrap();
    let claims = second.claims();
    assert_eq!(p.sub, "alice");
    assert_eq!(p.user_issuer, app.idp.issuer, "the IdP that vouched for alice (sub_id)");
    assert_eq!(p.iss, app.issuer);
    let chain: Vec<(&str, Option<&str>)> = p
        .act
        .iter()
        .map(|a| (a.sub.as_str(), a.sub_profile.as_deref()))
        .collect();
    assert_eq!(
        chain,
        vec![("mcp:logs", Some("service")), ("agent:triage", Some("ai_agent"))]
    );
    assert!(p.has_agent());
    assert_eq!(
        p.txn.as_deref(),
        first.claims()["txn"].as_str(),
        "one txn for the chain"
    );
    assert_eq!(p.scopes, ["cost.read".to_owned()].into(), "cost.approve is human_only");
    assert_eq!(p.roles, vec!["developer", "sre"]);
    assert_eq!(p.client_id, "mcp-logs");
    assert_eq!(Some(p.jti.as_str()), claims["jti"].as_str());
    assert_eq!(Some(p.exp), claims["exp"].as_i64());
    assert_eq!(p.audience, vec![COST]);
}

#[tokio::test]
async fn a_token_for_another_resource_is_refused() {
    let app = TestApp::spawn().await;
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    let r = validator(&app, COST).await.validate(hop1.token()).await;
    assert_eq!(r.unwrap_err(), ValidationError::WrongAudience);
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let app = TestApp::spawn().await;
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    let other = TokenValidator::builder("http://127.0.0.1:1", LOGS)
        .jwks_uri(app.url("/jwks"))
        .build()
        .await
        .unwrap();
    assert_eq!(
        other.validate(hop1.token()).await.unwrap_err(),
        ValidationError::WrongIssuer
    );
}

#[tokio::test]
async fn an_expired_hop_token_is_refused() {
    // The broker's clock an hour behind: what it issues has expired by now.
    let clock = Arc::new(ManualClock::new());
    clock.advance_secs(-3600);
    let app = TestApp::spawn_with_clock(clock, |_| {}).await;
    let mut claims = app.idp.id_token_claims("alice", "triage-agent", &["developer"]);
    for c in ["iat", "exp", "auth_time"] {
        claims[c] = json!(claims[c].as_i64().unwrap() - 3600);
    }
    let id_token = app.idp.sign(Some("JWT"), &claims);
    let hop = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    hop.assert_ok();
    let r = validator(&app, LOGS).await.validate(hop.token()).await;
    assert_eq!(r.unwrap_err(), ValidationError::Expired);
}

#[tokio::test]
async fn an_id_jag_is_not_an_access_token_whatever_its_audience() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let jag = app.exchange_for_id_jag("chat-app", &id_token, SAAS_AS, &[]).await;
    jag.assert_ok();
    // Right issuer, right audience, the broker's own key: only typ differs.
    let r = validator(&app, SAAS_AS).await.validate(jag.token()).await;
    assert_eq!(r.unwrap_err(), ValidationError::WrongType);
}

#[tokio::test]
async fn a_tampered_token_or_a_forbidden_alg_is_refused() {
    let app = TestApp::spawn().await;
    let v = validator(&app, LOGS).await;
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    let widened = tampered(hop1.token(), |c| c["scope"] = json!("logs.read logs.write logs.purge"));
    assert_eq!(v.validate(&widened).await.unwrap_err(), ValidationError::BadSignature);

    let claims = hop1.claims();
    let unsigned = format!(
        "{}.{}.",
        B64.encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        B64.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_eq!(
        v.validate(&unsigned).await.unwrap_err(),
        ValidationError::AlgorithmNotAllowed
    );
    let hmac = format!(
        "{}.{}.c2ln",
        B64.encode(br#"{"alg":"HS256","typ":"at+jwt"}"#),
        B64.encode(serde_json::to_vec(&claims).unwrap())
    );
    assert_eq!(
        v.validate(&hmac).await.unwrap_err(),
        ValidationError::AlgorithmNotAllowed
    );
    let untyped = forged(json!({"alg": "ES256", "kid": "k"}), &claims);
    assert_eq!(v.validate(&untyped).await.unwrap_err(), ValidationError::WrongType);
}

/// A JWKS endpoint in front of the broker's `/jwks` that counts its hits.
async fn counting_jwks(app: &TestApp) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let (upstream, counter, http) = (app.url("/jwks"), hits.clone(), app.http.clone());
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            let (upstream, counter, http) = (upstream.clone(), counter.clone(), http.clone());
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                http.get(upstream).send().await.unwrap().text().await.unwrap()
            }
        }),
    );
    let listener = bind().await;
    let url = format!("http://{}/jwks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, hits)
}

#[tokio::test]
async fn an_unknown_kid_costs_one_refetch_then_the_rate_limit_holds() {
    let app = TestApp::spawn().await;
    let (jwks_uri, hits) = counting_jwks(&app).await;
    let v = TokenValidator::builder(&app.issuer, LOGS)
        .jwks_uri(jwks_uri)
        .build()
        .await
        .unwrap();
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    v.validate(hop1.token()).await.unwrap();
    v.validate(hop1.token()).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "keys are fetched once, then cached");

    let claims = hop1.claims();
    let stranger = forged(json!({"alg": "ES256", "typ": "at+jwt", "kid": "rotated-in"}), &claims);
    assert_eq!(v.validate(&stranger).await.unwrap_err(), ValidationError::UnknownKey);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "an unknown kid refetches once");

    for kid in ["another", "and-another", "rotated-in"] {
        let t = forged(json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}), &claims);
        assert_eq!(v.validate(&t).await.unwrap_err(), ValidationError::UnknownKey);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "within the minimum interval, unknown kids cause no fetch"
    );
    assert_eq!(v.key_fetches(), 2);
    v.validate(hop1.token()).await.unwrap();
}

// ---------------------------------------------------------------------------
// axum: the extractor, the challenges, the metadata route, tool policy
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct LogsServer {
    resource: Arc<ProtectedResource>,
    policy: Arc<ToolPolicy>,
}

/// What `Authenticated` reads from the state.
impl axum::extract::FromRef<LogsServer> for Arc<ProtectedResource> {
    fn from_ref(state: &LogsServer) -> Self {
        state.resource.clone()
    }
}

/// An MCP-like server for the logs resource: `POST /tools/{name}` runs the
/// tool policy for the authenticated principal.
async fn logs_server(app: &TestApp) -> (String, Arc<ProtectedResource>) {
    let metadata = ResourceMetadata::new(LOGS, &app.issuer).scopes(&["logs.read", "logs.write", "logs.purge"]);
    let resource = Arc::new(ProtectedResource::new(validator(app, LOGS).await, metadata).unwrap());
    let policy = Arc::new(
        ToolPolicy::new()
            .tool("search_logs", Category::Read, Some("logs.read"))
            .tool("annotate", Category::Write, Some("logs.write"))
            .tool("purge_logs", Category::Destructive, Some("logs.purge")),
    );
    async fn call(State(server): State<LogsServer>, Path(tool): Path<String>, auth: Authenticated) -> Response {
        match server.policy.check(&tool, &auth.principal) {
            Ok(rule) => {
                axum::Json(json!({"tool": tool, "category": rule.category.as_str(), "sub": auth.principal.sub}))
                    .into_response()
            }
            Err(refusal) => server.resource.refuse(&refusal),
        }
    }
    let router = axum::Router::new()
        .route("/tools/{tool}", axum::routing::post(call))
        .with_state(LogsServer {
            resource: resource.clone(),
            policy,
        })
        .merge(resource.metadata_router().unwrap());
    let listener = bind().await;
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (base, resource)
}

async fn call_tool(base: &str, tool: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(format!("{base}/tools/{tool}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

fn www_authenticate(r: &reqwest::Response) -> String {
    r.headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn without_a_token_the_server_answers_401_pointing_at_its_metadata() {
    let app = TestApp::spawn().await;
    let (base, resource) = logs_server(&app).await;
    let r = call_tool(&base, "search_logs", None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        www_authenticate(&r),
        "Bearer resource_metadata=\"https://mcp.logs.example.com/.well-known/oauth-protected-resource\""
    );
    assert_eq!(
        resource.metadata_url(),
        "https://mcp.logs.example.com/.well-known/oauth-protected-resource"
    );

    let doc: Value = reqwest::get(format!("{base}/.well-known/oauth-protected-resource"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["resource"], LOGS);
    assert_eq!(doc["authorization_servers"], json!([app.issuer]));
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
}

#[tokio::test]
async fn a_bad_token_is_401_invalid_token_and_never_echoed() {
    let app = TestApp::spawn().await;
    let (base, _) = logs_server(&app).await;
    let for_cost = app.first_hop("triage-agent", COST).await;
    for token in ["not-a-jwt", for_cost.token()] {
        let r = call_tool(&base, "search_logs", Some(token)).await;
        assert_eq!(r.status(), 401);
        let challenge = www_authenticate(&r);
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
            "{challenge}"
        );
        assert!(
            challenge
                .ends_with("resource_metadata=\"https://mcp.logs.example.com/.well-known/oauth-protected-resource\""),
            "{challenge}"
        );
        let body = r.text().await.unwrap();
        assert!(
            !body.contains(token) && !challenge.contains(token),
            "the token is never echoed"
        );
    }
}

#[tokio::test]
async fn an_agent_chain_may_read_but_not_destroy_even_with_the_users_entitlement() {
    let app = TestApp::spawn_with(|c| {
        // Agents may call destructive scopes at the broker: only the tool
        // policy stands between the agent and purge_logs.
        c.agents.categories = vec![
            xaa_broker::policy::Category::Read,
            xaa_broker::policy::Category::Write,
            xaa_broker::policy::Category::Destructive,
        ];
    })
    .await;
    let (base, _) = logs_server(&app).await;
    let hop1 = app.first_hop("triage-agent", LOGS).await;
    assert!(hop1.claims()["scope"].as_str().unwrap().contains("logs.purge"));

    let read = call_tool(&base, "search_logs", Some(hop1.token())).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap()["sub"], "alice");

    let purge = call_tool(&base, "purge_logs", Some(hop1.token())).await;
    assert_eq!(purge.status(), 403);
    assert_eq!(www_authenticate(&purge), "", "no token would help: no challenge");
    let body: Value = purge.json().await.unwrap();
    assert_eq!(body["rule"], "tool.agent_category");
}

#[tokio::test]
async fn a_missing_scope_is_403_insufficient_scope_naming_it() {
    let app = TestApp::spawn().await;
    let (base, _) = logs_server(&app).await;
    // alice as a developer only, through chat-app (no agent): logs.read.
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let hop = app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, LOGS, &[]).await;
    hop.assert_ok();
    assert_eq!(call_tool(&base, "search_logs", Some(hop.token())).await.status(), 200);
    let r = call_tool(&base, "annotate", Some(hop.token())).await;
    assert_eq!(r.status(), 403);
    assert_eq!(
        www_authenticate(&r),
        "Bearer error=\"insufficient_scope\", scope=\"logs.write\", \
         resource_metadata=\"https://mcp.logs.example.com/.well-known/oauth-protected-resource\""
    );
}

// ---------------------------------------------------------------------------
// HopTokens
// ---------------------------------------------------------------------------

/// Granted records the broker wrote for `client` in `txn`.
async fn exchanges_by(app: &TestApp, txn: &str, client: &str) -> usize {
    app.audit(txn)
        .await
        .iter()
        .filter(|r| r.decision == Decision::Granted && r.client_id.as_deref() == Some(client))
        .count()
}

#[tokio::test]
async fn a_hop_token_is_exchanged_once_and_then_served_from_the_cache() {
    let app = TestApp::spawn().await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let txn = p.txn.clone().unwrap();
    let hops = HopTokens::builder(broker(&app), basic("mcp-logs")).build().unwrap();

    let a = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    let b = hops.token(&hop1, &p, COST, &[]).await.unwrap();
    assert_eq!(a.token, b.token, "a cache hit");
    assert_eq!(a.scopes, vec!["cost.read"]);
    assert_eq!(hops.broker_requests(), 1);
    assert_eq!(exchanges_by(&app, &txn, "mcp-logs").await, 1);
    let next = validator(&app, COST).await.validate(a.token.expose()).await.unwrap();
    assert_eq!((next.sub.as_str(), next.txn.as_deref()), ("alice", Some(txn.as_str())));
    assert_eq!(next.act[0].sub, "mcp:logs");

    let narrowed = hops.token(&hop1, &p, INCIDENTS, &["incidents.read"]).await.unwrap();
    assert_eq!(narrowed.scopes, vec!["incidents.read"]);
    assert_eq!(hops.broker_requests(), 2, "another audience is another key");
}

#[tokio::test]
async fn concurrent_misses_for_one_key_make_one_broker_request() {
    let app = TestApp::spawn().await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let hops = HopTokens::builder(broker(&app), basic("mcp-logs")).build().unwrap();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (hops, hop1, p) = (hops.clone(), hop1.clone(), p.clone());
        callers.spawn(async move { hops.token(&hop1, &p, COST, &["cost.read"]).await.unwrap() });
    }
    let tokens: Vec<_> = callers.join_all().await;
    assert_eq!(tokens.len(), 16);
    assert!(tokens.iter().all(|t| t.token == tokens[0].token), "all share one token");
    assert_eq!(hops.broker_requests(), 1);
    assert_eq!(
        exchanges_by(&app, p.txn.as_deref().unwrap(), "mcp-logs").await,
        1,
        "the broker's audit trail saw one exchange"
    );
}

#[tokio::test]
async fn a_refused_exchange_is_a_typed_error_and_is_not_cached() {
    let app = TestApp::spawn().await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let hops = HopTokens::builder(broker(&app), basic("mcp-logs")).build().unwrap();

    let e = hops
        .token(&hop1, &p, "https://nowhere.example.com", &[])
        .await
        .unwrap_err();
    let TokenError::Refused(oauth) = &e else {
        panic!("refused: {e:?}")
    };
    assert_eq!((oauth.status, &oauth.code), (400, &ErrorCode::InvalidTarget));
    assert!(oauth.description.as_deref().is_some_and(|d| !d.is_empty()));
    assert!(!e.is_retryable());
    assert!(
        !format!("{e} {e:?}").contains(&hop1),
        "the subject token is not in the error"
    );

    // After the broker revokes the transaction, its tokens exchange no more.
    let revoked = app
        .post_form(
            "/admin/revoke",
            Auth::Basic("security-ops"),
            &[("txn", p.txn.as_deref().unwrap())],
        )
        .await;
    revoked.assert_ok();
    let e = hops.token(&hop1, &p, COST, &[]).await.unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::InvalidRequest), "{e}");
    assert_eq!(hops.broker_requests(), 2, "errors are not cached");
}

#[tokio::test]
async fn a_token_that_is_not_the_principals_is_refused_before_any_request() {
    let app = TestApp::spawn().await;
    let (_, p) = first_hop_at_logs(&app).await;
    let (other, _) = first_hop_at_logs(&app).await;
    let hops = HopTokens::builder(broker(&app), basic("mcp-logs")).build().unwrap();
    let e = hops.token(&other, &p, COST, &[]).await.unwrap_err();
    assert!(matches!(e, TokenError::InvalidRequest(_)), "{e:?}");
    assert_eq!(hops.broker_requests(), 0);
}

#[tokio::test]
async fn a_service_authenticates_with_private_key_jwt_from_a_pem_key() {
    let ec = openssl::ec::EcKey::generate(
        &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap(),
    )
    .unwrap();
    let pem = openssl::pkey::PKey::from_ec_key(ec)
        .unwrap()
        .private_key_to_pem_pkcs8()
        .unwrap();
    let mut public = josekit::jwk::alg::ec::EcKeyPair::from_pem(&pem, None)
        .unwrap()
        .to_jwk_public_key();
    public.set_key_id("mcp-logs-1");
    public.set_algorithm("ES256");
    let app = TestApp::spawn_with(|c| {
        let logs = c.clients.get_mut("mcp-logs").unwrap();
        logs.secret_sha256 = None;
        logs.auth_methods = Some(vec!["private_key_jwt".into()]);
        logs.jwks = Some(json!({"keys": [Value::Object(public.as_ref().clone())]}));
    })
    .await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let auth = ClientAuth::private_key_jwt_pem("mcp-logs", &pem, Some("mcp-logs-1")).unwrap();
    let hops = HopTokens::builder(broker(&app), auth).build().unwrap();
    hops.token(&hop1, &p, COST, &[]).await.unwrap();
    // A fresh assertion per request: a second miss is not a replay.
    hops.token(&hop1, &p, INCIDENTS, &[]).await.unwrap();
    let methods: Vec<_> = app
        .audit(p.txn.as_deref().unwrap())
        .await
        .into_iter()
        .filter(|r| r.client_id.as_deref() == Some("mcp-logs"))
        .map(|r| r.client_auth_method)
        .collect();
    assert_eq!(methods, vec![Some("private_key_jwt".into()); 2]);
}

#[tokio::test]
async fn a_broker_outage_is_503_temporarily_unavailable_told_apart_from_a_refusal() {
    let Some(mut redis) = dedicated_redis().await else {
        return;
    };
    let keys = shared_signing_key();
    let app = TestApp::spawn_with(|c| with_redis(c, &redis.url(), &unique_prefix("sdk-outage"), &keys)).await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let hops = HopTokens::builder(broker(&app), basic("mcp-logs")).build().unwrap();
    redis.kill().await;
    let e = hops.token(&hop1, &p, COST, &[]).await.unwrap_err();
    let TokenError::Unavailable(oauth) = &e else {
        panic!("unavailable: {e:?}")
    };
    assert!(oauth.is_temporarily_unavailable(), "{oauth}");
    assert!(oauth.retry_after.is_some(), "Retry-After is read");
    assert!(e.is_retryable());
}

// ---------------------------------------------------------------------------
// AuditReporter
// ---------------------------------------------------------------------------

#[tokio::test]
async fn tool_calls_are_reported_before_and_after_with_one_call_id() {
    let app = TestApp::spawn().await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let reporter = AuditReporter::new(&broker(&app), basic("mcp-logs"), ReporterConfig::default()).unwrap();
    let call = ToolCall::new("search_logs", Category::Read, br#"{"query":"error"}"#)
        .unwrap()
        .with_summary("searched the last hour");
    assert!(reporter.before(&hop1, &p, &call, true));
    assert!(reporter.after(&hop1, &p, &call, true));
    reporter.flush(Duration::from_secs(30)).await.unwrap();
    let stats = reporter.stats();
    assert_eq!((stats.sent, stats.retried, stats.dropped, stats.pending), (2, 0, 0, 0));

    let records = trace_records(&app.http, &app.base, p.txn.as_deref().unwrap()).await;
    let calls: Vec<&Value> = records.iter().filter(|r| r["grant"] == "tool_call").collect();
    assert_eq!(calls.len(), 2, "{records:#?}");
    for (record, outcome) in calls.iter().zip(["allowed", "succeeded"]) {
        let e = &record["event"];
        assert_eq!(e["tool"], "search_logs");
        assert_eq!(e["category"], "read");
        assert_eq!(e["outcome"], outcome);
        assert_eq!(e["call_id"], call.call_id());
        assert_eq!(e["args_sha256"], call.args_sha256());
        assert_eq!(e["summary"], "searched the last hour");
        assert_eq!(record["client_id"], "mcp-logs");
        assert_eq!(
            record["parent_jti"],
            p.jti.as_str(),
            "under the hop that carried the call"
        );
        assert_eq!(record["sub"], "alice");
        assert_eq!(record["user_agent"], concat!("xaa-sdk/", "0.1.0"));
    }
}

#[tokio::test]
async fn a_broker_outage_drops_events_after_bounded_retries_and_counts_them() {
    let app = TestApp::spawn().await;
    let (hop1, p) = first_hop_at_logs(&app).await;
    let issuer = app.issuer.clone();
    let http = app.http.clone();
    drop(app);
    // The listener is gone once a request no longer gets through.
    while http.get(format!("{issuer}/healthz")).send().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let config = ReporterConfig {
        max_attempts: 3,
        retry_backoff: Duration::from_millis(10),
        ..ReporterConfig::default()
    };
    let reporter = AuditReporter::new(
        &AuthorizationServer::xaa_broker(&issuer).unwrap(),
        basic("mcp-logs"),
        config,
    )
    .unwrap();
    let call = ToolCall::new("purge_logs", Category::Destructive, b"{}").unwrap();
    for _ in 0..3 {
        assert!(reporter.before(&hop1, &p, &call, false), "queued without waiting");
    }
    reporter.flush(Duration::from_secs(60)).await.unwrap();
    let s = reporter.stats();
    assert_eq!((s.sent, s.retried, s.dropped, s.pending), (0, 6, 3, 0));
}

// ---------------------------------------------------------------------------
// IdJagClient
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_id_jag_is_requested_then_redeemed_at_the_resource_as() {
    let (enterprise, ras) = TestApp::spawn_pair().await;
    let id_token = enterprise.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let client = IdJagClient::new(broker(&enterprise), basic("triage-agent")).unwrap();
    let jag = client
        .request(
            &IdJagRequest {
                id_token: &id_token,
                audience: &ras.issuer,
                resource: Some(SAAS_MCP),
                scopes: &[],
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(jag.scopes, vec!["crm.read", "crm.write"]);
    let jag_txn = decode_part(jag.assertion.expose(), 1)["txn"].clone();

    let saas = AuthorizationServer::discover(&ras.issuer).await.unwrap();
    let at_saas = basic("0oa-triage");
    let access = client.redeem(&saas, &at_saas, &jag, &[], None).await.unwrap();
    let p = validator(&ras, SAAS_MCP)
        .await
        .validate(access.token.expose())
        .await
        .unwrap();
    assert_eq!(p.sub, "alice");
    assert_eq!(p.client_id, "0oa-triage");
    assert_eq!(Some(json!(p.txn)), Some(jag_txn), "the txn crosses the trust boundary");

    let replay = client.redeem(&saas, &at_saas, &jag, &[], None).await.unwrap_err();
    let TokenError::Refused(oauth) = &replay else {
        panic!("refused: {replay:?}")
    };
    assert_eq!((oauth.status, &oauth.code), (400, &ErrorCode::InvalidGrant));
}

/// Multi-hop Cross-App Access from the SDK (decisions §27): the logs MCP
/// turns the hop token an agent sent it into an ID-JAG for the SaaS resource
/// AS, for the same user and transaction, with itself added to the chain;
/// a token issued neither to nor for it is refused.
#[tokio::test]
async fn a_service_turns_the_hop_token_it_received_into_an_id_jag_for_the_same_user() {
    let app = TestApp::spawn_with(|c| {
        let logs = c.clients.get_mut("mcp-logs").unwrap();
        logs.audiences.push(SAAS_AS.into());
        logs.ras_client_ids.insert(SAAS_AS.into(), "0oa-mcp-logs".into());
    })
    .await;
    let hop = app.first_hop("triage-agent", LOGS).await;
    let hop_claims = hop.claims();
    let client = IdJagClient::new(broker(&app), basic("mcp-logs")).unwrap();
    let request = MultiHopRequest {
        access_token: hop.token(),
        audience: SAAS_AS,
        resource: Some(SAAS_MCP),
        scopes: &[],
    };
    let jag = client.request_multi_hop(&request, None).await.unwrap();
    let claims = app
        .verify_with_published_jwks(jag.assertion.expose(), "oauth-id-jag+jwt")
        .await;
    assert_eq!(claims["sub"], hop_claims["sub"]);
    assert_eq!(claims["txn"], hop_claims["txn"], "the same transaction");
    assert_eq!(claims["client_id"], "0oa-mcp-logs");
    assert_eq!(claims["act"]["sub"], "mcp:logs", "the service is the new actor");
    assert_eq!(claims["act"]["act"], hop_claims["act"], "the agent stays in the chain");

    // cost-tool holds no such token: neither issued to nor for it.
    let stranger = IdJagClient::new(broker(&app), basic("cost-tool")).unwrap();
    let e = stranger.request_multi_hop(&request, None).await.unwrap_err();
    let TokenError::Refused(oauth) = &e else {
        panic!("refused: {e:?}")
    };
    assert_eq!((oauth.status, &oauth.code), (400, &ErrorCode::InvalidRequest));
}

#[tokio::test]
async fn an_id_jag_for_an_unknown_audience_is_invalid_target() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let client = IdJagClient::new(broker(&app), basic("chat-app")).unwrap();
    let e = client
        .request(
            &IdJagRequest {
                id_token: &id_token,
                audience: "https://auth.unknown.example.com",
                resource: None,
                scopes: &[],
            },
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::InvalidTarget));
}

// ---------------------------------------------------------------------------
// Trace context: the broker sees the caller's trace
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_sdk_makes_carries_the_callers_trace_to_the_audit_record() {
    let dev = DevBroker::start(None);
    let b = dev.issuer.clone();
    let http = reqwest::Client::new();
    let id_token = dev.id_token("alice", "triage-agent").await;
    let id_token = id_token.as_str();
    let trace = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    let broker = AuthorizationServer::discover(&b).await.unwrap();

    // The agent's own call: a hop for the logs server, inside the trace.
    let agent_hop = dev.first_hop("triage-agent", id_token, LOGS).await;
    // The logs server: validates (inside the caller's trace), exchanges,
    // reports.
    let v = TokenValidator::builder(&b, LOGS).build().await.unwrap();
    let p = v.validate_in_trace(&agent_hop, Some(&trace)).await.unwrap();
    let hops = HopTokens::builder(broker.clone(), ClientAuth::secret_basic("mcp-logs", "mcp-logs-secret"))
        .build()
        .unwrap();
    hops.token(&agent_hop, &p, COST, &[]).await.unwrap();
    let reporter = AuditReporter::new(
        &broker,
        ClientAuth::secret_basic("mcp-logs", "mcp-logs-secret"),
        ReporterConfig::default(),
    )
    .unwrap();
    let call = ToolCall::new("search_logs", Category::Read, b"{}").unwrap();
    reporter.after(&agent_hop, &p, &call, true);
    reporter.flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(reporter.stats().sent, 1);
    // An ID-JAG request made in the same trace.
    let agent = IdJagClient::new(
        broker.clone(),
        ClientAuth::secret_basic("triage-agent", "triage-agent-secret"),
    )
    .unwrap();
    let jag = agent
        .request(
            &IdJagRequest {
                id_token,
                audience: "urn:example:saas",
                resource: None,
                scopes: &[],
            },
            Some(&trace),
        )
        .await
        .unwrap();

    let txn = p.txn.clone().unwrap();
    let records = trace_records(&http, &b, &txn).await;
    let by_mcp_logs: Vec<&Value> = records.iter().filter(|r| r["client_id"] == "mcp-logs").collect();
    assert_eq!(by_mcp_logs.len(), 2, "the exchange and the report: {records:#?}");
    for r in by_mcp_logs {
        assert_eq!(r["trace_id"], trace.trace_id(), "{r:#}");
    }
    let jag_txn = decode_part(jag.assertion.expose(), 1)["txn"]
        .as_str()
        .unwrap()
        .to_owned();
    let jag_records = trace_records(&http, &b, &jag_txn).await;
    assert_eq!(jag_records[0]["trace_id"], trace.trace_id());
}

// ---------------------------------------------------------------------------
// One rule, two crates: the SDK keeps its own copies of the rules it shares
// with the broker (it must not depend on the server), and these checks make
// a divergence fail the build instead of a deployment.
// ---------------------------------------------------------------------------

#[test]
fn the_sdk_and_the_broker_accept_the_same_algorithms() {
    let broker: Vec<&str> = BrokerAlg::ALL.iter().map(|a| a.name()).collect();
    let sdk: Vec<&str> = xaa_sdk::Alg::ALL.iter().map(|a| a.name()).collect();
    assert_eq!(sdk, broker);
    for name in ["none", "HS256", "HS512"] {
        assert!(
            BrokerAlg::parse(name).is_none() && xaa_sdk::Alg::parse(name).is_none(),
            "{name}"
        );
    }
}

#[test]
fn the_sdk_and_the_broker_cap_the_same_act_entries_as_agents() {
    for profile in [
        None,
        Some("ai_agent"),
        Some("service"),
        Some("human"),
        Some("app"),
        Some(""),
        Some(" "),
        Some("SERVICE"),
        Some(" service  service "),
        Some("service ai_agent"),
        Some("ai_agent service"),
        Some("user"),
        Some("service acme_robot"),
        Some("services"),
    ] {
        let mut entry = json!({"sub": "someone"});
        if let Some(p) = profile {
            entry["sub_profile"] = json!(p);
        }
        let broker: xaa_broker::chain::Act = serde_json::from_value(entry.clone()).unwrap();
        let sdk = xaa_sdk::act::parse_act_chain(Some(&entry), xaa_sdk::MAX_ACT_DEPTH).unwrap();
        assert_eq!(sdk[0].is_agent(), broker.is_agent(), "sub_profile {profile:?}");
    }
}

#[test]
fn the_sdk_names_tool_categories_and_outcomes_as_the_broker_reads_them() {
    use xaa_sdk::{Category, ToolOutcome};
    for category in [Category::Read, Category::Write, Category::Destructive, Category::Admin] {
        let broker: xaa_broker::policy::Category = serde_json::from_value(json!(category.as_str())).unwrap();
        assert_eq!(serde_json::to_value(broker).unwrap(), json!(category.as_str()));
    }
    for outcome in [
        ToolOutcome::Allowed,
        ToolOutcome::Denied,
        ToolOutcome::Succeeded,
        ToolOutcome::Failed,
    ] {
        assert!(
            xaa_broker::audit::ToolOutcome::parse(outcome.as_str()).is_some(),
            "{}",
            outcome.as_str()
        );
    }
}

#[test]
fn every_error_code_the_token_endpoint_answers_is_one_the_sdk_types() {
    use xaa_broker::error::ErrorCode as Broker;
    for code in Broker::ALL {
        let wire = code.as_str();
        if matches!(
            code,
            Broker::NotFound | Broker::ServerError | Broker::UnsupportedTokenType | Broker::UnsupportedResponseType
        ) {
            continue; // not answered by /token to a well-formed grant request
        }
        let sdk = xaa_sdk::ErrorCode::parse(wire);
        assert!(
            !matches!(sdk, xaa_sdk::ErrorCode::Other(_)),
            "{wire} is untyped in the SDK"
        );
        assert_eq!(sdk.as_str(), wire);
    }
}

/// DPoP proofs (RFC 9449 §4.3): the SDK's checks at a resource
/// (sdk/src/dpop.rs) and the broker's at `/token` (src/dpop/mod.rs) judge
/// the same proofs alike, by the same reason names — the size bound, the
/// private JWK members, the RSA minimum, the claim bounds, the `htu`
/// normalisation, the `iat` window — and the thumbprint a binding names is
/// the same. The broker keeps some of these bounds private, so they are
/// compared through what each crate does with the same proofs.
#[test]
fn the_sdk_and_the_broker_judge_dpop_proofs_alike() {
    use crate::support::dpop::DpopKey;
    use xaa_broker::dpop::{self as broker, Expected};
    use xaa_broker::params::DpopHeader;
    use xaa_broker::policy::DpopSettings;
    use xaa_broker::types::now_secs;
    use xaa_sdk::dpop::{self as sdk, DpopConfig, DpopRequest, DpopVerifier};

    assert_eq!(sdk::TYP, broker::TYP);
    assert_eq!(sdk::MAX_PROOF_BYTES, broker::MAX_PROOF_BYTES);

    const HTU: &str = "https://mcp.logs.example.com/tools/x";
    const TOKEN: &str = "the-access-token";
    // The broker with the SDK's default window: 60 s old, 5 s of skew.
    let settings = DpopSettings {
        max_age_secs: 60,
        require_nonce: false,
        nonce_lifetime_secs: 300,
        nonce_secret: vec![7; 32],
    };
    let judge = |proof: &str, htu: &str, jkt: &str| {
        let by_broker = broker::check(
            &DpopHeader::One(proof.to_owned()),
            &Expected {
                htm: "POST",
                htu,
                now: now_secs(),
                clock_skew_secs: 5,
                settings: &settings,
                keys: &broker::keys::ProofKeys::default(),
            },
        )
        .map(|_| ())
        .map_err(|e| e.reason);
        let request = DpopRequest {
            proofs: &[proof],
            method: "POST",
            uri: htu,
        };
        // A fresh verifier per proof: no replay between cases.
        let by_sdk = DpopVerifier::new(DpopConfig::default())
            .unwrap()
            .verify(&request, TOKEN, jkt)
            .map_err(|e| e.reason());
        (by_broker, by_sdk)
    };

    let (key, other) = (DpopKey::es256(), DpopKey::es256());
    let proof =
        |tweak: &dyn Fn(&mut Value, &mut Value)| key.resource_proof_with("POST", HTU, TOKEN, |h, c| tweak(h, c));
    let with_jwk_member = |name: &str, value: Value| {
        proof(&|h, _| {
            h["jwk"][name] = value.clone();
        })
    };
    let rsa_public = |bits: u32| {
        let rsa = openssl::rsa::Rsa::generate(bits).unwrap();
        json!({"kty": "RSA", "n": B64.encode(rsa.n().to_vec()), "e": B64.encode(rsa.e().to_vec())})
    };
    let rsa = DpopKey::new(BrokerAlg::RS256);
    let rsa_proof = |jwk: Value| rsa.resource_proof_with("POST", HTU, TOKEN, |h, _| h["jwk"] = jwk);
    let now = now_secs();
    let long_htu = format!("{HTU}/{}", "a".repeat(2048 - HTU.len() - 1));
    let too_long_htu = format!("{long_htu}a");

    let mut cases: Vec<(String, String, String, Result<(), &str>)> = vec![
        ("good".into(), proof(&|_, _| {}), HTU.into(), Ok(())),
        (
            "too large".into(),
            "a".repeat(sdk::MAX_PROOF_BYTES + 1),
            HTU.into(),
            Err("dpop.too_large"),
        ),
        (
            "typ".into(),
            proof(&|h, _| h["typ"] = json!("JWT")),
            HTU.into(),
            Err("dpop.typ"),
        ),
        (
            "crit".into(),
            proof(&|h, _| h["crit"] = json!(["b64"])),
            HTU.into(),
            Err("dpop.crit"),
        ),
        (
            "hmac".into(),
            proof(&|h, _| h["alg"] = json!("HS256")),
            HTU.into(),
            Err("dpop.alg"),
        ),
        (
            "no jwk".into(),
            proof(&|h, _| drop(h.as_object_mut().unwrap().remove("jwk"))),
            HTU.into(),
            Err("dpop.jwk_missing"),
        ),
        (
            "kty".into(),
            proof(&|h, _| h["jwk"] = json!({"kty": "XYZ"})),
            HTU.into(),
            Err("dpop.jwk_kty"),
        ),
        (
            "another key's signature".into(),
            proof(&|h, _| h["jwk"] = other.public()),
            HTU.into(),
            Err("dpop.signature"),
        ),
        (
            "rsa 1024".into(),
            rsa_proof(rsa_public(1024)),
            HTU.into(),
            Err("dpop.jwk_weak"),
        ),
        (
            "rsa 2040".into(),
            rsa_proof(rsa_public(2040)),
            HTU.into(),
            Err("dpop.jwk_weak"),
        ),
        (
            "jti at the bound".into(),
            proof(&|_, c| c["jti"] = json!("j".repeat(256))),
            HTU.into(),
            Ok(()),
        ),
        (
            "jti over the bound".into(),
            proof(&|_, c| c["jti"] = json!("j".repeat(257))),
            HTU.into(),
            Err("dpop.claims"),
        ),
        (
            "htu at the bound".into(),
            key.resource_proof("POST", &long_htu, TOKEN),
            long_htu.clone(),
            Ok(()),
        ),
        (
            "htu over the bound".into(),
            key.resource_proof("POST", &too_long_htu, TOKEN),
            too_long_htu.clone(),
            Err("dpop.claims"),
        ),
        (
            "htm".into(),
            proof(&|_, c| c["htm"] = json!("post")),
            HTU.into(),
            Err("dpop.htm"),
        ),
        (
            "iat 60 s old".into(),
            proof(&|_, c| c["iat"] = json!(now - 60)),
            HTU.into(),
            Ok(()),
        ),
        (
            "iat 70 s old".into(),
            proof(&|_, c| c["iat"] = json!(now - 70)),
            HTU.into(),
            Err("dpop.iat"),
        ),
        (
            "iat 3 s ahead".into(),
            proof(&|_, c| c["iat"] = json!(now + 3)),
            HTU.into(),
            Ok(()),
        ),
        (
            "iat 10 s ahead".into(),
            proof(&|_, c| c["iat"] = json!(now + 10)),
            HTU.into(),
            Err("dpop.iat"),
        ),
    ];
    for (htu, verdict) in [
        ("HTTPS://MCP.logs.example.com:443/tools/x?y=1#z", Ok(())),
        ("https://mcp.logs.example.com/tools/./x", Ok(())),
        ("https://mcp.logs.example.com/tools/x/", Err("dpop.htu")),
        ("https://mcp.logs.example.com:8443/tools/x", Err("dpop.htu")),
        ("http://mcp.logs.example.com/tools/x", Err("dpop.htu")),
        ("https://mcp.logs.example.com/tools/%78", Err("dpop.htu")),
        ("urn:example:tools:x", Err("dpop.htu")),
    ] {
        cases.push((
            format!("htu {htu}"),
            key.resource_proof("POST", htu, TOKEN),
            HTU.into(),
            verdict,
        ));
    }
    // Every member only a private or symmetric key has, and members a
    // public key may carry.
    for member in sdk::PRIVATE_MEMBERS {
        cases.push((
            format!("jwk with {member}"),
            with_jwk_member(member, json!("AQAB")),
            HTU.into(),
            Err("dpop.jwk_private"),
        ));
    }
    for (member, value) in [
        ("kid", json!("k1")),
        ("use", json!("sig")),
        ("alg", json!("ES256")),
        ("key_ops", json!(["verify"])),
        ("x5t", json!("AQAB")),
        ("e", json!("AQAB")),
        ("n", json!("AQAB")),
    ] {
        cases.push((
            format!("jwk with {member}"),
            with_jwk_member(member, value),
            HTU.into(),
            Ok(()),
        ));
    }

    for (case, proof, htu, verdict) in &cases {
        let jkt = if case.starts_with("rsa") { rsa.jkt() } else { key.jkt() };
        let (by_broker, by_sdk) = judge(proof, htu, &jkt);
        assert_eq!(by_broker, by_sdk, "{case}: the broker and the SDK disagree");
        assert_eq!(by_sdk, *verdict, "{case}");
    }

    // The thumbprint a token's cnf.jkt names (RFC 7638), for every key type.
    for alg in BrokerAlg::ALL {
        let key = DpopKey::new(alg);
        let Value::Object(public) = key.public() else {
            unreachable!()
        };
        assert_eq!(sdk::jwk_thumbprint(&public), Some(key.jkt()), "{alg}");
    }
}

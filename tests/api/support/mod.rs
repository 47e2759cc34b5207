//! Test harness: the real broker on 127.0.0.1:0, configured from
//! `examples/broker.toml` with its upstream issuers pointed at real local
//! fake IdPs, and helpers that read as scenarios.

pub mod dev_broker;
pub mod dpop;
pub mod example_bin;
pub mod fake_idp;
pub mod redis;

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use josekit::jwk::Jwk;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use xaa_broker::app::App;
use xaa_broker::audit::NoiseSummary;
use xaa_broker::audit::{AuditRecord, Decision};
use xaa_broker::clock::{Clock, ManualClock, SystemClock};
use xaa_broker::config::{Config, KeysConfig};
use xaa_broker::jose::Alg;
use xaa_broker::state::AppState;
use xaa_broker::types::now_secs;

pub use fake_idp::{FakeIdp, sign_jws};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
pub const ID_JAG: &str = "urn:ietf:params:oauth:token-type:id-jag";
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The example's audiences and resources, by name.
pub const SAAS_AS: &str = "https://auth.saas.example.com";
pub const SAAS_MCP: &str = "https://mcp.saas.example.com/mcp";
pub const LOGS: &str = "https://mcp.logs.example.com";
pub const COST: &str = "https://cost.example.com";
pub const INCIDENTS: &str = "https://incidents.example.com";

pub fn example_config() -> Config {
    Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/broker.toml"))
        .expect("examples/broker.toml loads")
}

/// A running broker and its upstreams.
pub struct TestApp {
    /// The deployment's issuer (what tokens carry in `iss`).
    pub issuer: String,
    /// Where this instance listens: `http://127.0.0.1:<port>`. Equal to the
    /// issuer unless a test runs several instances of one deployment.
    pub base: String,
    pub http: reqwest::Client,
    pub state: Arc<AppState>,
    /// corp-idp: trusted for ID tokens.
    pub idp: FakeIdp,
    /// agent-identity: trusted for actor tokens (via discovery).
    pub agents: FakeIdp,
    /// partner: trusted for access tokens.
    pub partner: FakeIdp,
    /// reporting-bot's private key (private_key_jwt).
    pub bot_key: Jwk,
    /// The config this instance runs (after wiring and tweaks).
    pub config: Config,
    /// Where its metrics listener listens (`http://127.0.0.1:<port>`), when
    /// `metrics.enabled`.
    pub metrics_base: Option<String>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// How a request authenticates its client.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    /// `client_secret_basic` with the example secret `<id>-secret`.
    Basic(&'a str),
    /// `client_secret_basic` with an explicit secret.
    BasicWith(&'a str, &'a str),
    /// `client_secret_post` with the example secret.
    Post(&'a str),
    None,
}

/// A response, read once.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<none>")
    }
    pub fn token(&self) -> &str {
        self.body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no access_token in {} {}", self.status, self.body))
    }
    pub fn claims(&self) -> Value {
        decode_part(self.token(), 1)
    }
    pub fn jose_header(&self) -> Value {
        decode_part(self.token(), 0)
    }
    /// An OAuth error response: status, code, JSON body with a description,
    /// `Cache-Control: no-store`, and no token.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!((self.status, self.error()), (status, error), "body: {}", self.body);
        assert!(
            self.body["error_description"].as_str().is_some_and(|d| !d.is_empty()),
            "no error_description: {}",
            self.body
        );
        assert_eq!(
            self.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
        assert!(self.body.get("access_token").is_none());
    }
    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self.status, 200, "body: {}", self.body);
        assert_eq!(
            self.headers.get("cache-control").and_then(|v| v.to_str().ok()),
            Some("no-store")
        );
    }
}

/// Send a request that must be refused: the caller checks the error; this
/// checks that nothing was issued meanwhile.
pub async fn refused(app: &TestApp, request: impl std::future::Future<Output = Resp>) -> Resp {
    let before = app.issued_count().await;
    let r = request.await;
    assert_eq!(
        app.issued_count().await,
        before,
        "a refused request issued a token: {} {}",
        r.status,
        r.body
    );
    r
}

/// As [`refused`], and the request left exactly one audit record: denied,
/// with this machine `reason` (so a test cannot pass for the wrong reason).
pub async fn refused_for(app: &TestApp, request: impl std::future::Future<Output = Resp>, reason: &str) -> Resp {
    let records_before = app.all_audit().await.len();
    let r = refused(app, request).await;
    let records = app.all_audit().await;
    let new = &records[records_before..];
    assert_eq!(new.len(), 1, "one audit record per request: {new:?}");
    assert_eq!(new[0].decision, Decision::Denied, "record: {:?}", new[0]);
    assert_eq!(new[0].reason.as_deref(), Some(reason), "record: {:?}", new[0]);
    r
}

/// The description of an `access_denied` names the rule, and nothing a
/// caller could learn the configuration from: no role, issuer or client.
pub fn assert_denial_names_only_the_rule(r: &Resp, app: &TestApp) {
    let description = r.body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains("no entitlement"), "{description}");
    for secret in [
        "developer",
        "sre",
        "viewer",
        "marketing",
        "chat-app",
        "mcp-logs",
        "0oa-",
        app.idp.issuer.as_str(),
        app.partner.issuer.as_str(),
        "https://",
    ] {
        assert!(!description.contains(secret), "{secret:?} leaked in {description:?}");
    }
}

/// As [`refused`], for a request refused before its client authenticated:
/// it leaves no audit record (the hash-chained trail is for authenticated
/// clients' decisions) but is counted in the noise summaries: after a flush,
/// exactly one new summary, with this `reason`, a count of one, from this
/// test's address.
pub async fn refused_before_auth(
    app: &TestApp,
    request: impl std::future::Future<Output = Resp>,
    reason: &str,
) -> Resp {
    app.flush_noise().await;
    let records_before = app.all_audit().await.len();
    let summaries_before = app.noise().await;
    let r = refused(app, request).await;
    assert_eq!(
        app.all_audit().await.len(),
        records_before,
        "a request refused before authentication left an audit record"
    );
    app.flush_noise().await;
    let new: Vec<NoiseSummary> = app
        .noise()
        .await
        .into_iter()
        .filter(|s| !summaries_before.contains(s))
        .collect();
    assert_eq!(new.len(), 1, "one noise summary for one request: {new:?}");
    assert_eq!(
        (new[0].reason.as_str(), new[0].count, new[0].source.as_str()),
        (reason, 1, "127.0.0.1"),
        "summary: {:?}",
        new[0]
    );
    assert_eq!(new[0].error, r.error(), "summary: {:?}", new[0]);
    r
}

pub fn decode_part(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).expect("compact JWS");
    serde_json::from_slice(&B64.decode(part).expect("base64url")).expect("JSON")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// Spawn with the example config, adjusted by `tweak` after the test
    /// wiring (issuer, upstream key locations, ephemeral signing key).
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on(bind().await, example_config(), tweak).await
    }

    /// As [`TestApp::spawn_with`], on `clock`: the test moves time instead
    /// of sleeping (`ManualClock::advance_secs`).
    pub async fn spawn_with_clock(clock: Arc<ManualClock>, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_on_clock(bind().await, example_config(), tweak, clock).await
    }

    /// Two deployments that trust each other as in the examples: an
    /// enterprise broker (examples/broker.toml) issuing ID-JAGs for a SaaS
    /// resource AS (examples/resource-as.toml) that redeems them, fetching
    /// the broker's /jwks over HTTP.
    pub async fn spawn_pair() -> (TestApp, TestApp) {
        Self::spawn_pair_with(|_| {}, |_| {}).await
    }

    pub async fn spawn_pair_with(
        tweak_enterprise: impl FnOnce(&mut Config),
        tweak_ras: impl FnOnce(&mut Config),
    ) -> (TestApp, TestApp) {
        let ras_listener = bind().await;
        let ras_issuer = format!("http://{}", ras_listener.local_addr().unwrap());
        let enterprise = Self::spawn_with(|c| {
            rename_audience(c, SAAS_AS, &ras_issuer);
            tweak_enterprise(c);
        })
        .await;
        let mut ras_config = Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/resource-as.toml"))
            .expect("examples/resource-as.toml loads");
        let acme = ras_config
            .issuers
            .get_mut("acme-broker")
            .expect("example trusts acme-broker");
        acme.issuer = enterprise.issuer.clone();
        acme.jwks_uri = Some(enterprise.url("/jwks"));
        let ras = Self::spawn_on(ras_listener, ras_config, tweak_ras).await;
        (enterprise, ras)
    }

    /// Spawn `config` on `listener`, wiring whichever example issuers it
    /// names (corp-idp, agent-identity, partner) to fresh fake IdPs.
    pub async fn spawn_on(
        listener: tokio::net::TcpListener,
        config: Config,
        tweak: impl FnOnce(&mut Config),
    ) -> TestApp {
        Self::spawn_on_clock(listener, config, tweak, Arc::new(SystemClock)).await
    }

    async fn spawn_on_clock(
        listener: tokio::net::TcpListener,
        mut config: Config,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        let (idp, agents, partner) = (FakeIdp::start().await, FakeIdp::start().await, FakeIdp::start().await);
        let addr = listener.local_addr().unwrap();
        let issuer = format!("http://{addr}");
        let bot_key = Alg::ES256.generate().unwrap();

        config.issuer = issuer.clone();
        // Any free port: tests run many brokers at once.
        config.metrics.listen = "127.0.0.1:0".into();
        config.keys = KeysConfig {
            ephemeral: true,
            ..KeysConfig::default()
        };
        for (name, fake) in [("corp-idp", &idp), ("agent-identity", &agents), ("partner", &partner)] {
            if let Some(i) = config.issuers.get_mut(name) {
                i.issuer = fake.issuer.clone();
                if i.jwks_uri.is_some() {
                    i.jwks_uri = Some(fake.jwks_uri());
                }
            }
        }
        if let Some(bot) = config.clients.get_mut("reporting-bot") {
            let mut public = bot_key.to_public_key().unwrap();
            public.set_key_id(bot_key.key_id().unwrap());
            public.set_algorithm("ES256");
            bot.jwks = Some(json!({"keys": [Value::Object(public.as_ref().clone())]}));
        }
        tweak(&mut config);

        Self::serve(listener, config, (idp, agents, partner), bot_key, clock).await
    }

    /// Another instance of the same deployment: same config (issuer, keys,
    /// store, policy) and the same upstream IdPs, on its own port. `tweak`
    /// may change it (e.g. its keys, for a rotation).
    pub async fn spawn_sibling(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        tweak(&mut config);
        let fakes = (self.idp.clone(), self.agents.clone(), self.partner.clone());
        Self::serve(bind().await, config, fakes, self.bot_key.clone(), Arc::new(SystemClock)).await
    }

    async fn serve(
        listener: tokio::net::TcpListener,
        config: Config,
        fakes: (FakeIdp, FakeIdp, FakeIdp),
        bot_key: Jwk,
        clock: Arc<dyn Clock>,
    ) -> TestApp {
        let addr = listener.local_addr().unwrap();
        let mut app = App::build_with_clock(&config, "test", None, clock)
            .await
            .expect("test config builds");
        let metrics_addr = app.bind_metrics().await.expect("the metrics listener binds");
        let state = app.state.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        let (idp, agents, partner) = fakes;
        TestApp {
            issuer: config.issuer.clone(),
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            state,
            idp,
            agents,
            partner,
            bot_key,
            config,
            metrics_base: metrics_addr.map(|a| format!("http://{a}")),
            _shutdown: tx,
        }
    }

    /// `/metrics` on this instance's metrics listener.
    pub fn metrics_url(&self) -> String {
        let base = self.metrics_base.as_deref().expect("metrics are enabled");
        format!("{base}/metrics")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Resp {
        read(self.http.get(self.url(path)).send().await.unwrap()).await
    }

    /// POST a form to an endpoint with client authentication.
    pub async fn post_form(&self, path: &str, auth: Auth<'_>, form: &[(&str, &str)]) -> Resp {
        self.post_form_with_headers(path, auth, form, &[]).await
    }

    /// POST a token request with `DPoP` headers (none, one, or several).
    pub async fn token_with_dpop(&self, auth: Auth<'_>, form: &[(&str, &str)], proofs: &[&str]) -> Resp {
        let headers: Vec<(&str, &str)> = proofs.iter().map(|p| ("dpop", *p)).collect();
        self.post_form_with_headers("/token", auth, form, &headers).await
    }

    /// POST a form with client authentication and extra request headers.
    pub async fn post_form_with_headers(
        &self,
        path: &str,
        auth: Auth<'_>,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut form: Vec<(String, String)> = form.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut req = self.http.post(self.url(path));
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        match auth {
            Auth::Basic(id) => req = req.basic_auth(id, Some(format!("{id}-secret"))),
            Auth::BasicWith(id, secret) => req = req.basic_auth(id, Some(secret)),
            Auth::Post(id) => {
                form.push(("client_id".into(), id.into()));
                form.push(("client_secret".into(), format!("{id}-secret")));
            }
            Auth::None => {}
        }
        let body = form_body(&form);
        read(
            req.header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    pub async fn token(&self, auth: Auth<'_>, form: &[(&str, &str)]) -> Resp {
        self.post_form("/token", auth, form).await
    }

    /// Exchange an ID token for an ID-JAG (ID-JAG §4.3).
    pub async fn exchange_for_id_jag(
        &self,
        client: &str,
        id_token: &str,
        audience: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        self.id_jag_from(client, id_token, ID_TOKEN, audience, extra).await
    }

    /// Request an ID-JAG for `audience` with `subject` (of `subject_type`)
    /// as the subject token: an ID token, or an access token (multi-hop
    /// Cross-App Access, decisions §27).
    pub async fn id_jag_from(
        &self,
        client: &str,
        subject: &str,
        subject_type: &str,
        audience: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("requested_token_type", ID_JAG),
            ("audience", audience),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        form.extend_from_slice(extra);
        self.token(Auth::Basic(client), &form).await
    }

    /// Exchange a subject token for a hop token to `resource`.
    pub async fn exchange_for_hop(
        &self,
        client: &str,
        subject: &str,
        subject_type: &str,
        resource: &str,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", resource),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ];
        form.extend_from_slice(extra);
        self.token(Auth::Basic(client), &form).await
    }

    /// alice signs in for `client` (a `private_key_jwt` client) and it takes
    /// the first hop to the logs MCP, authenticated by `assertion`.
    pub async fn first_hop_with_assertion(&self, client: &str, assertion: &str) -> Resp {
        let id_token = self.idp.id_token("alice", client, &["developer"]);
        self.token(
            Auth::None,
            &[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", LOGS),
                ("subject_token", &id_token),
                ("subject_token_type", ID_TOKEN),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", assertion),
            ],
        )
        .await
    }

    /// `client` takes a first hop to the logs MCP with `id_token` as the
    /// subject and `actor_token` naming the actor.
    pub async fn first_hop_with_actor(&self, client: &str, id_token: &str, actor_token: &str) -> Resp {
        self.exchange_for_hop(
            client,
            id_token,
            ID_TOKEN,
            LOGS,
            &[("actor_token", actor_token), ("actor_token_type", JWT)],
        )
        .await
    }

    /// alice (developer + sre) signs in for `client` and that client takes
    /// the first hop to `resource`.
    pub async fn first_hop(&self, client: &str, resource: &str) -> Resp {
        let id_token = self.idp.id_token("alice", client, &["developer", "sre"]);
        self.exchange_for_hop(client, &id_token, ID_TOKEN, resource, &[]).await
    }

    /// As [`TestApp::first_hop`] to the logs MCP, authenticating `client`
    /// with `secret` instead of its example secret.
    pub async fn first_hop_with_secret(&self, client: &str, secret: &str) -> Resp {
        let id_token = self.idp.id_token("alice", client, &["developer", "sre"]);
        let form = [
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", LOGS),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ];
        self.token(Auth::BasicWith(client, secret), &form).await
    }

    /// The chain most scenarios need: `sub` (developer + sre) signs in for
    /// triage-agent, which takes the first hop to the logs MCP; mcp-logs
    /// takes the second hop to the cost tool. Both hops must succeed.
    /// Returns `(id token, first hop, second hop)`.
    pub async fn agent_then_logs_to_cost(&self, sub: &str) -> (String, Resp, Resp) {
        let id_token = self.idp.id_token(sub, "triage-agent", &["developer", "sre"]);
        let first = self
            .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
            .await;
        first.assert_ok();
        let second = self
            .exchange_for_hop("mcp-logs", first.token(), ACCESS_TOKEN, COST, &[])
            .await;
        second.assert_ok();
        (id_token, first, second)
    }

    /// A `private_key_jwt` assertion for reporting-bot, with `tweak` applied
    /// to its claims.
    pub fn bot_assertion(&self, tweak: impl FnOnce(&mut Value)) -> String {
        let now = now_secs();
        let mut claims = json!({
            "iss": "reporting-bot", "sub": "reporting-bot", "aud": self.issuer,
            "iat": now, "exp": now + 60, "jti": uuid::Uuid::now_v7().to_string(),
        });
        tweak(&mut claims);
        sign_jws(
            &self.bot_key,
            json!({"alg": "ES256", "kid": self.bot_key.key_id().unwrap(), "typ": "JWT"}),
            &claims,
        )
    }

    /// Introspect `token` as a client entitled to learn about it: the
    /// resource server it was issued for (the client whose `resource` is its
    /// `aud`), else the client it was issued to. Garbage is introspected by
    /// `fallback`.
    pub async fn introspect_as_entitled(&self, token: &str, fallback: &str) -> Resp {
        let claims = token
            .split('.')
            .nth(1)
            .and_then(|p| B64.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .unwrap_or(Value::Null);
        let aud = claims["aud"].as_str().unwrap_or_default();
        let by_resource = self
            .config
            .clients
            .iter()
            .find(|(_, c)| c.resource.as_deref() == Some(aud))
            .map(|(id, _)| id.clone());
        let client = by_resource
            .or_else(|| claims["client_id"].as_str().map(str::to_owned))
            .filter(|id| self.config.clients.contains_key(id))
            .unwrap_or_else(|| fallback.to_owned());
        self.post_form("/introspect", Auth::Basic(&client), &[("token", token)])
            .await
    }

    /// Audit records of one correlation id.
    pub async fn audit(&self, txn: &str) -> Vec<AuditRecord> {
        self.state.store.audit_by_txn(txn).await.unwrap()
    }

    /// Every audit record this instance wrote.
    pub async fn all_audit(&self) -> Vec<AuditRecord> {
        self.state.store.audit_chain(&self.state.instance).await.unwrap()
    }

    /// Write this interval's noise summaries to the store now.
    pub async fn flush_noise(&self) -> usize {
        self.state.flush_noise().await.expect("noise summaries written")
    }

    /// Every noise summary in the store (of every instance), newest first.
    pub async fn noise(&self) -> Vec<NoiseSummary> {
        self.state.store.unauthenticated(100_000).await.unwrap()
    }

    /// How many tokens have been issued so far (granted decisions).
    pub async fn issued_count(&self) -> usize {
        self.all_audit()
            .await
            .iter()
            .filter(|r| r.decision == Decision::Granted)
            .count()
    }

    /// Verify a token we issued against our published `/jwks` with josekit
    /// directly (not the broker's own key ring), requiring `typ`.
    pub async fn verify_with_published_jwks(&self, token: &str, typ: &str) -> Value {
        let jwks = self
            .http
            .get(self.url("/jwks"))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let header = decode_part(token, 0);
        assert_eq!(header["typ"], typ, "explicit typ");
        let kid = header["kid"].as_str().expect("kid");
        let key = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .expect("kid published");
        let jwk = Jwk::from_map(key.as_object().unwrap().clone()).unwrap();
        let verifier = josekit::jws::ES256.verifier_from_jwk(&jwk).unwrap();
        let (payload, _) = josekit::jwt::decode_with_verifier(token, &verifier).expect("signature verifies");
        Value::Object(payload.into())
    }
}

/// A signing key on disk, as instances of one deployment share it (a mounted
/// secret): every instance configured with it signs and verifies alike.
pub fn shared_signing_key() -> KeysConfig {
    let dir = std::env::temp_dir().join(format!("xaa-shared-key-{}", uuid::Uuid::now_v7().simple()));
    let (path, _) = xaa_broker::keys::generate_to_dir(Alg::ES256, &dir).expect("key generated");
    KeysConfig {
        files: vec![path],
        ..KeysConfig::default()
    }
}

/// Point a config at a Redis store with its own key prefix, and a shared key.
pub fn with_redis(config: &mut Config, url: &str, prefix: &str, keys: &KeysConfig) {
    config.store = xaa_broker::config::StoreConfig::Redis {
        url: url.to_owned(),
        prefix: Some(prefix.to_owned()),
    };
    config.keys = keys.clone();
}

pub async fn bind() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// Re-key an audience (and every client reference to it), e.g. to point the
/// example's SaaS audience at a test deployment's real issuer.
pub fn rename_audience(config: &mut Config, from: &str, to: &str) {
    let aud = config
        .audiences
        .remove(from)
        .unwrap_or_else(|| panic!("audience {from}"));
    config.audiences.insert(to.to_owned(), aud);
    for client in config.clients.values_mut() {
        for a in client.audiences.iter_mut().filter(|a| *a == from) {
            *a = to.to_owned();
        }
        if let Some(id) = client.ras_client_ids.remove(from) {
            client.ras_client_ids.insert(to.to_owned(), id);
        }
    }
}

fn form_body(form: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn read(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Resp { status, headers, body }
}

//! The HTTP edge: whatever arrives, the answer is an RFC 6749 §5.2 JSON error
//! with `Cache-Control: no-store` (specs/decisions.md §15), never a
//! framework's plain-text 405/413/415/422 and never a 500.

use serde_json::{Value, json};

use crate::support::*;

/// Read a raw response the way the harness does.
async fn read_raw(resp: reqwest::Response) -> Resp {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body =
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Resp { status, headers, body }
}

/// POST raw bytes to `path` as chat-app (Basic), with `content_type`.
async fn post_raw(app: &TestApp, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> Resp {
    let resp = app
        .http
        .post(app.url(path))
        .basic_auth("chat-app", Some("chat-app-secret"))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    read_raw(resp).await
}

async fn send(app: &TestApp, method: reqwest::Method, path: &str) -> Resp {
    read_raw(app.http.request(method, app.url(path)).send().await.unwrap()).await
}

/// An OAuth error answered as JSON: `assert_error` plus the media type.
#[track_caller]
fn assert_json_error(r: &Resp, status: u16, error: &str) {
    r.assert_error(status, error);
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "content-type {content_type:?}, body {}",
        r.body
    );
}

/// A valid first-hop form for chat-app, URL-encoded.
fn first_hop_body(app: &TestApp) -> String {
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", TOKEN_EXCHANGE)
        .append_pair("resource", LOGS)
        .append_pair("subject_token", &id_token)
        .append_pair("subject_token_type", ID_TOKEN)
        .finish()
}

#[tokio::test]
async fn a_json_body_is_an_invalid_request_not_415_or_422() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let body = json!({
        "grant_type": TOKEN_EXCHANGE, "resource": LOGS,
        "subject_token": id_token, "subject_token_type": ID_TOKEN,
    });
    let r = post_raw(&app, "/token", "application/json", body.to_string()).await;
    assert_json_error(&r, 400, "invalid_request");
    assert_eq!(app.issued_count().await, 0);
}

#[tokio::test]
async fn get_on_the_token_endpoint_is_a_json_error_not_an_empty_405() {
    let app = TestApp::spawn().await;
    let r = send(&app, reqwest::Method::GET, "/token").await;
    assert_json_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn invalid_percent_encoding_and_non_utf8_bytes_are_refused_without_a_500() {
    let app = TestApp::spawn().await;
    let valid = first_hop_body(&app);
    let prefix = format!(
        "grant_type={}&resource={}&subject_token_type={}&subject_token=",
        enc(TOKEN_EXCHANGE),
        enc(LOGS),
        enc(ID_TOKEN)
    );
    let bodies: Vec<Vec<u8>> = vec![
        format!("{prefix}%FF%FE%FD").into_bytes(),
        format!("{prefix}%ZZ%4").into_bytes(),
        [prefix.as_bytes(), b"\xff\xfe\xc3\x28"].concat(),
        [b"\xff\xfe=\x80&".as_slice(), prefix.as_bytes(), b"%E2%82"].concat(),
    ];
    for body in bodies {
        let shown = String::from_utf8_lossy(&body).into_owned();
        let r = post_raw(&app, "/token", "application/x-www-form-urlencoded", body).await;
        assert_ne!(r.status, 500, "body {shown:?} → {}", r.body);
        assert_json_error(&r, 400, "invalid_request");
    }
    assert_eq!(app.issued_count().await, 0);
    // The same request well-formed succeeds: the bytes were the only problem.
    post_raw(&app, "/token", "application/x-www-form-urlencoded", valid)
        .await
        .assert_ok();
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn a_body_over_64_kib_is_a_json_invalid_request_not_a_plain_413() {
    let app = TestApp::spawn().await;
    // Padding in 10 KiB parameters: each is under the per-value limit, so
    // only the body's size decides.
    let padded = |n: usize| {
        let pads: String = (0..n / (10 * 1024))
            .map(|i| format!("&pad{i}={}", "x".repeat(10 * 1024)))
            .collect();
        format!("{}{pads}", first_hop_body(&app))
    };
    let r = post_raw(&app, "/token", "application/x-www-form-urlencoded", padded(70 * 1024)).await;
    assert_json_error(&r, 400, "invalid_request");
    assert_eq!(app.issued_count().await, 0);
    // The same request under the limit is served: the size was the problem.
    post_raw(&app, "/token", "application/x-www-form-urlencoded", padded(40 * 1024))
        .await
        .assert_ok();
}

#[tokio::test]
async fn a_repeated_grant_type_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let body = format!("{}&grant_type={}", first_hop_body(&app), enc(TOKEN_EXCHANGE));
    let r = post_raw(&app, "/token", "application/x-www-form-urlencoded", body).await;
    assert_json_error(&r, 400, "invalid_request");
    assert_eq!(app.issued_count().await, 0);
}

#[tokio::test]
async fn a_missing_grant_type_is_an_invalid_request() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let form = [
        ("resource", LOGS),
        ("subject_token", id_token.as_str()),
        ("subject_token_type", ID_TOKEN),
    ];
    let r = app.token(Auth::Basic("chat-app"), &form).await;
    assert_json_error(&r, 400, "invalid_request");
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type() {
    let app = TestApp::spawn().await;
    let r = app
        .token(Auth::Basic("chat-app"), &[("grant_type", "client_credentials")])
        .await;
    assert_json_error(&r, 400, "unsupported_grant_type");
}

#[tokio::test]
async fn a_grant_the_client_is_not_allowed_is_unauthorized_client() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let r = app
        .token(
            Auth::Basic("chat-app"),
            &[("grant_type", JWT_BEARER), ("assertion", &id_token)],
        )
        .await;
    assert_json_error(&r, 400, "unauthorized_client");
    assert_eq!(app.issued_count().await, 0);
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = TestApp::spawn().await;
    let r = send(&app, reqwest::Method::GET, "/no/such/endpoint").await;
    assert_json_error(&r, 404, "not_found");
    let r = post_raw(
        &app,
        "/tokens",
        "application/x-www-form-urlencoded",
        first_hop_body(&app),
    )
    .await;
    assert_json_error(&r, 404, "not_found");
}

#[tokio::test]
async fn the_authorization_endpoint_answers_unsupported_response_type() {
    let app = TestApp::spawn().await;
    let r = send(
        &app,
        reqwest::Method::GET,
        "/authorize?response_type=code&client_id=chat-app",
    )
    .await;
    assert_json_error(&r, 400, "unsupported_response_type");
}

#[tokio::test]
async fn every_token_endpoint_error_is_json_with_a_description_and_no_store() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let exchange = |extra: &'static [(&'static str, &'static str)]| {
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", LOGS),
            ("subject_token", id_token.as_str()),
            ("subject_token_type", ID_TOKEN),
        ];
        form.extend_from_slice(extra);
        form
    };
    let cases: Vec<(Resp, u16, &str)> = vec![
        (app.token(Auth::None, &exchange(&[])).await, 401, "invalid_client"),
        (
            app.token(Auth::BasicWith("chat-app", "wrong"), &exchange(&[])).await,
            401,
            "invalid_client",
        ),
        (
            app.token(Auth::Basic("chat-app"), &[("grant_type", "password")]).await,
            400,
            "unsupported_grant_type",
        ),
        (
            app.token(Auth::Basic("chat-app"), &exchange(&[("scope", "a\"b")]))
                .await,
            400,
            "invalid_scope",
        ),
        (
            app.token(
                Auth::Basic("chat-app"),
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("resource", LOGS),
                    ("subject_token", "x"),
                    ("subject_token_type", ID_TOKEN),
                ],
            )
            .await,
            400,
            "invalid_request",
        ),
        (
            app.exchange_for_hop("chat-app", &id_token, ID_TOKEN, "https://unknown.example.com", &[])
                .await,
            400,
            "invalid_target",
        ),
        (
            app.token(
                Auth::Basic("chat-app"),
                &[("grant_type", JWT_BEARER), ("assertion", "x")],
            )
            .await,
            400,
            "unauthorized_client",
        ),
        (send(&app, reqwest::Method::GET, "/token").await, 400, "invalid_request"),
        (
            send(&app, reqwest::Method::GET, "/authorize").await,
            400,
            "unsupported_response_type",
        ),
        (send(&app, reqwest::Method::GET, "/nowhere").await, 404, "not_found"),
        (
            post_raw(&app, "/token", "text/plain", "grant_type=x").await,
            400,
            "invalid_request",
        ),
    ];
    for (r, status, error) in &cases {
        assert_json_error(r, *status, error);
    }
    assert_eq!(app.issued_count().await, 0);
}

/// A wrong method on any route, POST-only or GET-only, answers the same JSON
/// error as everything else (http/mod.rs owns "the JSON 404/405 answers").
#[tokio::test]
async fn a_wrong_method_on_any_endpoint_is_a_json_error() {
    let app = TestApp::spawn().await;
    let mut wrong = Vec::new();
    for (method, path) in [
        (reqwest::Method::DELETE, "/token"),
        (reqwest::Method::GET, "/introspect"),
        (reqwest::Method::GET, "/revoke"),
        (reqwest::Method::GET, "/admin/revoke"),
        (reqwest::Method::PUT, "/authorize"),
        (reqwest::Method::POST, "/jwks"),
        (reqwest::Method::POST, "/.well-known/oauth-authorization-server"),
        (reqwest::Method::POST, "/.well-known/openid-configuration"),
        (reqwest::Method::POST, "/healthz"),
    ] {
        let r = send(&app, method.clone(), path).await;
        let json_error = (r.status == 400 || r.status == 405)
            && r.body["error"].as_str().is_some_and(|e| !e.is_empty())
            && r.body["error_description"].as_str().is_some_and(|d| !d.is_empty())
            && r.headers.get("cache-control").and_then(|v| v.to_str().ok()) == Some("no-store");
        if !json_error {
            wrong.push(format!("{method} {path} → {} {:?} {:?}", r.status, r.body, r.headers));
        }
    }
    assert!(wrong.is_empty(), "not a JSON OAuth error:\n{}", wrong.join("\n"));
}

#[tokio::test]
async fn an_unreachable_idp_with_no_cached_key_is_a_503_with_retry_after() {
    let app = TestApp::spawn().await;
    app.idp.set_down(true);
    let r = app.first_hop("chat-app", LOGS).await;
    assert_json_error(&r, 503, "temporarily_unavailable");
    let retry_after = r.headers.get("retry-after").and_then(|v| v.to_str().ok());
    assert!(
        retry_after.and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s > 0),
        "Retry-After: {retry_after:?}"
    );
    assert_eq!(app.issued_count().await, 0);
}

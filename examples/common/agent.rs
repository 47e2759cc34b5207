//! The agent: acts for a user at the logs MCP server. It finds the server's
//! authorization server (RFC 9728), has the user sign in at the broker's
//! dev IdP, exchanges the ID token for an access token for the server's
//! resource (RFC 8693), then, as an `rmcp` client over streamable HTTP,
//! lists the tools, calls the read tool and the destructive one, and prints
//! what came back.
//!
//! Owns: its settings (flags and environment), the sign-in and the
//! exchange (plain HTTP, as any agent would), the MCP session, and reading
//! the tools' answers into an [`Outcome`].
//! Must never: print or log a token or a secret, send its token anywhere
//! but the MCP server it was issued for, or wait without a bound.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use axum::http::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use xaa_sdk::{AuthorizationServer, TraceParent};

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Each step's bound (a sign-in, an exchange, an MCP call).
const STEP: Duration = Duration::from_secs(20);

/// Who the agent is, for whom it acts, and where the MCP server is.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// The broker's issuer (its dev IdP signs the user in, its `/token`
    /// issues the access token).
    #[arg(long = "broker", env = "XAA_BROKER_URL", default_value = "http://127.0.0.1:8080")]
    pub broker: String,
    /// The MCP server's endpoint.
    #[arg(long = "mcp-url", env = "MCP_URL", default_value = "http://127.0.0.1:8090/mcp")]
    pub mcp_url: String,
    /// The user the agent acts for (the dev IdP knows alice, bob, carol).
    #[arg(long = "user", env = "AGENT_USER", default_value = "alice")]
    pub user: String,
    /// The agent's client at the broker (an `agent`: it becomes `act`).
    #[arg(long = "client-id", env = "AGENT_CLIENT_ID", default_value = "triage-agent")]
    pub client_id: String,
    /// Its secret. Prefer the environment variable: it stays out of the
    /// process list.
    #[arg(
        long = "client-secret",
        env = "AGENT_CLIENT_SECRET",
        default_value = "triage-agent-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub client_secret: String,
}

/// What the run showed, for the demo's summary.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The correlation id the logs API saw (and the MCP server: checked equal).
    pub txn: String,
    /// The user as the logs API saw them, and the issuer that vouched.
    pub user: String,
    pub user_issuer: String,
    /// The act chain the logs API saw, current actor first.
    pub act: Vec<String>,
    /// The trace the agent started, as the logs API saw it.
    pub trace_id: String,
    /// The rule that refused the destructive tool.
    pub refusal_rule: String,
}

/// Run the agent once; print each step on stdout.
pub async fn run(settings: &Settings) -> anyhow::Result<Outcome> {
    let http = reqwest::Client::builder()
        .timeout(STEP)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // One trace for the whole task: the MCP server, the broker and the logs
    // API join it (W3C Trace Context).
    let trace = TraceParent::new_root();

    let resource = discover(&http, settings, &trace).await?;
    let id_token = sign_in(&http, settings, &trace).await?;
    let (access_token, scope) = exchange(&http, settings, &id_token, &resource, &trace).await?;
    println!(
        "[agent] token exchange as {}: an access token for {resource}, scope {scope}",
        settings.client_id
    );

    let mut headers = HashMap::new();
    headers.insert(
        HeaderName::from_static("traceparent"),
        HeaderValue::from_str(&trace.child().to_string())?,
    );
    let config = StreamableHttpClientTransportConfig::with_uri(settings.mcp_url.as_str())
        .auth_header(access_token)
        .custom_headers(headers);
    let client = bounded(
        "the MCP handshake",
        ().serve(StreamableHttpClientTransport::from_config(config)),
    )
    .await?
    .context("the MCP handshake failed")?;
    let server = client
        .peer_info()
        .and_then(|i| i.server_info.clone())
        .map(|s| format!("{} {}", s.name, s.version))
        .unwrap_or_else(|| "an unnamed server".into());
    let tools = bounded("tools/list", client.list_all_tools()).await??;
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    println!(
        "[agent] MCP session with {server} at {}: tools {}",
        settings.mcp_url,
        names.join(", ")
    );

    let search = call(&client, "search_logs", json!({"query": "payments"})).await?;
    let read = read_answer(&search)?;
    let delete = call(&client, "delete_logs", json!({"older_than": "2026-11-30T00:00:00Z"})).await?;
    let refusal_rule = refusal(&delete)?;
    // Closing the session is courtesy: the answers are in.
    if let Err(e) = bounded("closing the MCP session", client.cancel()).await {
        tracing::warn!(error = %e, "the MCP session did not close in time");
    }
    Ok(Outcome { refusal_rule, ..read })
}

/// RFC 9728: ask the MCP server without a token, follow the 401's
/// `resource_metadata` (§5.1) to its document, and take the resource
/// identifier from it, after checking that the broker is one of its
/// authorization servers.
async fn discover(http: &reqwest::Client, settings: &Settings, trace: &TraceParent) -> anyhow::Result<String> {
    let probe = http
        .post(&settings.mcp_url)
        .header("traceparent", trace.child().to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach the MCP server at {}", settings.mcp_url))?;
    let challenge = probe
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(metadata_url) = quoted_param(challenge, "resource_metadata") else {
        bail!(
            "{} answered {} without a resource_metadata challenge",
            settings.mcp_url,
            probe.status()
        );
    };
    let doc = get_json(http, &metadata_url, trace).await?;
    let resource = doc["resource"]
        .as_str()
        .ok_or_else(|| anyhow!("{metadata_url} names no resource"))?
        .to_owned();
    let broker = settings.broker.trim_end_matches('/');
    let trusted = doc["authorization_servers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(broker)));
    if !trusted {
        bail!("{metadata_url} does not name the broker {broker} among its authorization servers");
    }
    println!(
        "[agent] {} is the resource {resource}; its authorization server is {broker} (RFC 9728)",
        settings.mcp_url
    );
    Ok(resource)
}

/// The user signs in at the broker's dev IdP: an ID token whose audience is
/// this agent.
async fn sign_in(http: &reqwest::Client, settings: &Settings, trace: &TraceParent) -> anyhow::Result<String> {
    let url = format!("{}/dev/idp/id-token", settings.broker.trim_end_matches('/'));
    let body = post_form(
        http,
        &url,
        None,
        &[("user", &settings.user), ("client_id", &settings.client_id)],
        trace,
    )
    .await?;
    let id_token = body["id_token"]
        .as_str()
        .ok_or_else(|| anyhow!("{url} answered without an id_token"))?;
    println!(
        "[agent] {} signed in at the dev IdP: an ID token for {}",
        settings.user, settings.client_id
    );
    Ok(id_token.to_owned())
}

/// RFC 8693 §2.1 at the broker's token endpoint (RFC 8414 discovery): the ID
/// token for an access token for `resource` (RFC 8707). The broker adds this
/// agent to `act` and mints the `txn`. Returns the token and its scope.
async fn exchange(
    http: &reqwest::Client,
    settings: &Settings,
    id_token: &str,
    resource: &str,
    trace: &TraceParent,
) -> anyhow::Result<(String, String)> {
    let broker = bounded("the broker's metadata", AuthorizationServer::discover(&settings.broker))
        .await?
        .with_context(|| format!("cannot discover the broker at {}", settings.broker))?;
    let body = post_form(
        http,
        &broker.token_endpoint,
        Some((&settings.client_id, &settings.client_secret)),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", id_token),
            ("subject_token_type", ID_TOKEN),
            ("resource", resource),
        ],
        trace,
    )
    .await?;
    let token = body["access_token"]
        .as_str()
        .ok_or_else(|| anyhow!("the broker answered without an access_token"))?;
    Ok((token.to_owned(), body["scope"].as_str().unwrap_or("").to_owned()))
}

/// One `tools/call`, bounded; its result, printed as it came.
async fn call(
    client: &rmcp::service::RunningService<rmcp::RoleClient, ()>,
    tool: &'static str,
    args: Value,
) -> anyhow::Result<CallToolResult> {
    let arguments = args.as_object().cloned().unwrap_or_default();
    let result = bounded(
        tool,
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(arguments)),
    )
    .await?
    .with_context(|| format!("{tool}: the MCP call failed"))?;
    Ok(result)
}

/// The read tool's answer: what the logs API saw, printed, and checked to
/// carry the same `txn` as what the MCP server saw.
fn read_answer(result: &CallToolResult) -> anyhow::Result<Outcome> {
    let v = structured(result, "search_logs")?;
    if result.is_error == Some(true) {
        bail!(
            "search_logs failed: {}",
            v["failed"].as_str().unwrap_or("(no reason given)")
        );
    }
    let saw = &v["logs_api"]["answer"]["saw"];
    let text = |x: &Value| x.as_str().unwrap_or("?").to_owned();
    let txn = text(&saw["txn"]);
    if v["mcp_server_saw"]["txn"] != saw["txn"] {
        bail!("the MCP server and the logs API saw different txns");
    }
    let act: Vec<String> = saw["act"]
        .as_array()
        .map(|a| a.iter().map(|e| text(&e["sub"])).collect())
        .unwrap_or_default();
    let profiles: Vec<String> = saw["act"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| format!("{} [{}]", text(&e["sub"]), text(&e["sub_profile"])))
                .collect()
        })
        .unwrap_or_default();
    let entries = v["logs_api"]["answer"]["entries"].as_array().map_or(0, Vec::len);
    let scopes: Vec<String> = saw["scopes"]
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    println!("[agent] search_logs → {entries} log lines; the logs API saw:");
    println!(
        "          user     {} (vouched for by {})",
        text(&saw["user"]["sub"]),
        text(&saw["user"]["user_issuer"])
    );
    println!("          act      {}", profiles.join(" ← "));
    println!("          txn      {txn} (the same as the MCP server saw)");
    println!(
        "          token    client_id {}, scope {}, audience {}",
        text(&saw["client_id"]),
        scopes.join(" "),
        saw["audience"]
            .as_array()
            .map(|a| a.iter().map(text).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    println!("          trace    {}", text(&saw["trace_id"]));
    Ok(Outcome {
        txn,
        user: text(&saw["user"]["sub"]),
        user_issuer: text(&saw["user"]["user_issuer"]),
        act,
        trace_id: text(&saw["trace_id"]),
        refusal_rule: String::new(),
    })
}

/// The destructive tool's answer: it must be a refusal; its rule.
fn refusal(result: &CallToolResult) -> anyhow::Result<String> {
    let v = structured(result, "delete_logs")?;
    if result.is_error != Some(true) {
        bail!("delete_logs was not refused to an agent: {v}");
    }
    let rule = v["refused"]
        .as_str()
        .ok_or_else(|| anyhow!("delete_logs failed without a refusal: {v}"))?;
    println!(
        "[agent] delete_logs → refused ({rule}): {}",
        v["reason"].as_str().unwrap_or("")
    );
    Ok(rule.to_owned())
}

fn structured<'a>(result: &'a CallToolResult, tool: &str) -> anyhow::Result<&'a Value> {
    result
        .structured_content
        .as_ref()
        .ok_or_else(|| anyhow!("{tool} answered without structured content"))
}

/// POST a form (RFC 6749 requests are form-encoded), with HTTP Basic client
/// authentication when given (RFC 6749 §2.3.1); the JSON answer, or an
/// error naming the OAuth error it carried.
async fn post_form(
    http: &reqwest::Client,
    url: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    trace: &TraceParent,
) -> anyhow::Result<Value> {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut request = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("traceparent", trace.child().to_string())
        .body(body);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.with_context(|| format!("cannot reach {url}"))?;
    answer(url, response).await
}

async fn get_json(http: &reqwest::Client, url: &str, trace: &TraceParent) -> anyhow::Result<Value> {
    let response = http
        .get(url)
        .header("traceparent", trace.child().to_string())
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    answer(url, response).await
}

async fn answer(url: &str, response: reqwest::Response) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .with_context(|| format!("{url} answered {status} without JSON"))?;
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {} ({})",
            body["error"].as_str().unwrap_or("?"),
            body["error_description"].as_str().unwrap_or("")
        );
    }
    Ok(body)
}

/// `param="value"` of an RFC 9110 §11.6.1 challenge.
fn quoted_param(challenge: &str, param: &str) -> Option<String> {
    let start = challenge.find(&format!("{param}=\""))? + param.len() + 2;
    let len = challenge[start..].find('"')?;
    Some(challenge[start..start + len].to_owned())
}

/// `fut`, or an error naming `what` after [`STEP`].
async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| anyhow!("{what}: no answer within {}s", STEP.as_secs()))
}

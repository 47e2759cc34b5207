//! The logs MCP server's tools, built with `rmcp`, and the four steps every
//! call takes (specs/mcp-servers.md): the caller's principal (validated by
//! the HTTP layer in front, `mcp_server.rs`), the tool policy, the audit
//! reports before and after, and, for the read tool, an exchange for a hop
//! token before calling the logs API.
//!
//! Owns: the tool policy (each tool's category and scope), the tools'
//! arguments and results, and the call to the logs API.
//! Must never: run a tool the policy refused, send the caller's token
//! downstream (only a hop token the broker issued for the logs API), send or
//! log the arguments (reports carry their SHA-256), or log a token.

use std::sync::Arc;

use axum::http::request::Parts;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::Extension;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use xaa_sdk::{AuditReporter, Authenticated, Category, HopTokens, Refusal, ToolCall, ToolPolicy};

use crate::principal_json::what_the_token_says;

/// The read tool.
pub const SEARCH: &str = "search_logs";
/// The destructive tool.
pub const DELETE: &str = "delete_logs";
/// What the read tool asks the broker for at the logs API: its one read
/// scope in the embedded default.
pub const LOGS_API_SCOPE: &str = "logs.query";

/// Each tool's category and scope: the scopes of this server's audience in
/// the broker's catalog (`logs.read` is `read`, `logs.purge` is
/// `destructive`), and agents held to the broker's `[agents] categories`
/// (`read`, `write`), so that one policy governs both (specs/mcp-servers.md
/// §2). A destructive tool is thus refused to any chain with an agent in it.
pub fn policy() -> ToolPolicy {
    ToolPolicy::new()
        .tool(SEARCH, Category::Read, Some("logs.read"))
        .tool(DELETE, Category::Destructive, Some("logs.purge"))
        .agent_categories([Category::Read, Category::Write])
}

/// Everything the tools use, shared by every MCP session.
pub struct Backend {
    pub policy: ToolPolicy,
    /// Hop tokens for the logs API, as this server's own broker client.
    pub hops: HopTokens,
    /// Reports to the broker's `POST /audit/events`, in the background.
    pub reporter: AuditReporter,
    pub http: reqwest::Client,
    /// The logs API's base URL (it serves `GET /logs`).
    pub logs_api_url: String,
    /// The logs API's resource identifier: the audience of its hop tokens.
    pub logs_api_resource: String,
}

/// The MCP handler: one per session, all sharing one [`Backend`].
#[derive(Clone)]
pub struct LogsTools {
    backend: Arc<Backend>,
    tool_router: ToolRouter<LogsTools>,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchArgs {
    /// Text to look for in the log lines (empty: every line).
    pub query: String,
}

#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeleteArgs {
    /// Delete the log lines older than this instant (RFC 3339).
    pub older_than: String,
}

/// The outcome of steps 1 to 3 for one call.
enum Admission {
    Allowed(Box<Authenticated>, ToolCall),
    Refused(CallToolResult),
}

#[tool_router]
impl LogsTools {
    pub fn new(backend: Arc<Backend>) -> Self {
        Self {
            backend,
            tool_router: Self::tool_router(),
        }
    }

    /// Search the logs. Calls the logs API with a hop token for it, and
    /// returns what the logs API saw: the user, the act chain, the txn.
    #[tool(
        name = "search_logs",
        description = "Search the log lines for a text. Read-only.",
        annotations(read_only_hint = true)
    )]
    async fn search_logs(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<SearchArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (auth, call) = match self.admit(&parts, SEARCH, &args)? {
            Admission::Allowed(auth, call) => (auth, call),
            Admission::Refused(answer) => return Ok(answer),
        };
        let outcome = self.query_logs_api(&auth, &args.query).await;
        let backend = &self.backend;
        backend
            .reporter
            .after(auth.token.expose(), &auth.principal, &call, outcome.is_ok());
        Ok(match outcome {
            Ok(answer) => CallToolResult::structured(json!({
                "tool": SEARCH,
                "mcp_server_saw": what_the_token_says(&auth.principal),
                "logs_api": answer,
            })),
            Err(reason) => {
                tracing::warn!(jti = %auth.principal.jti, txn = ?auth.principal.txn, %reason, "search_logs failed");
                CallToolResult::structured_error(json!({"tool": SEARCH, "failed": reason}))
            }
        })
    }

    /// Delete old log lines. Destructive: refused whenever an agent is in
    /// the chain, whatever the token's scopes.
    #[tool(
        name = "delete_logs",
        description = "Delete the log lines older than an instant. Destructive: never for an agent.",
        annotations(destructive_hint = true)
    )]
    async fn delete_logs(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<DeleteArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (auth, call) = match self.admit(&parts, DELETE, &args)? {
            Admission::Allowed(auth, call) => (auth, call),
            Admission::Refused(answer) => return Ok(answer),
        };
        // This example stores nothing: the deletion is a no-op that succeeds.
        self.backend
            .reporter
            .after(auth.token.expose(), &auth.principal, &call, true);
        Ok(CallToolResult::structured(json!({
            "tool": DELETE,
            "deleted": 0,
            "older_than": args.older_than,
            "mcp_server_saw": what_the_token_says(&auth.principal),
        })))
    }
}

impl LogsTools {
    /// Steps 1 to 3: who calls (the HTTP layer validated the token and put
    /// the result in the request's extensions), may they call `tool`
    /// (`ToolPolicy::check`), and the `before` report either way
    /// (`allowed` or `denied`, specs/audit.md).
    fn admit(&self, parts: &Parts, tool: &str, args: &impl Serialize) -> Result<Admission, ErrorData> {
        let Some(auth) = parts.extensions.get::<Authenticated>().cloned() else {
            // Only when the layer in front is missing: fail closed.
            return Err(ErrorData::internal_error("the request was not authenticated", None));
        };
        let backend = &self.backend;
        let category = backend
            .policy
            .rule(tool)
            .map(|r| r.category)
            .ok_or_else(|| ErrorData::internal_error("the tool is not in the policy", None))?;
        let bytes = serde_json::to_vec(args).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let call = ToolCall::new(tool, category, &bytes).map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        let p = &auth.principal;
        match backend.policy.check(tool, p) {
            Ok(_) => {
                backend.reporter.before(auth.token.expose(), p, &call, true);
                tracing::info!(tool, jti = %p.jti, txn = ?p.txn, sub = %p.sub, "tool call allowed");
                Ok(Admission::Allowed(Box::new(auth), call))
            }
            Err(refusal) => {
                backend.reporter.before(auth.token.expose(), p, &call, false);
                tracing::info!(tool, rule = refusal.rule(), jti = %p.jti, txn = ?p.txn, sub = %p.sub, "tool call refused");
                Ok(Admission::Refused(refused(tool, &refusal)))
            }
        }
    }

    /// Step 4: exchange the caller's token for a hop token for the logs API
    /// (RFC 8693 §2.1, `resource` per RFC 8707), then call the logs API with
    /// that token, inside the caller's trace. The caller's token is never
    /// sent to the logs API.
    async fn query_logs_api(&self, auth: &Authenticated, query: &str) -> Result<Value, String> {
        let backend = &self.backend;
        let p = &auth.principal;
        let resource = &backend.logs_api_resource;
        let hop = backend
            .hops
            .token(auth.token.expose(), p, resource, &[LOGS_API_SCOPE])
            .await
            .map_err(|e| format!("the broker refused a token for {resource}: {e}"))?;
        let base = backend.logs_api_url.trim_end_matches('/');
        let url = url::Url::parse_with_params(&format!("{base}/logs"), &[("query", query)])
            .map_err(|e| format!("the logs API URL {base} is not a URL: {e}"))?;
        let response = backend
            .http
            .get(url)
            .bearer_auth(hop.token.expose())
            .header("traceparent", p.outgoing_trace().to_string())
            .send()
            .await
            .map_err(|e| format!("cannot reach the logs API at {base}: {e}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("the logs API answered {status} without JSON: {e}"))?;
        if !status.is_success() {
            return Err(format!("the logs API answered {status}: {body}"));
        }
        Ok(json!({
            "hop": {"audience": hop.audience, "scopes": hop.scopes},
            "answer": body,
        }))
    }
}

/// A refusal as a tool error naming the rule (specs/mcp-servers.md §2: "a
/// tool error saying which scope is missing"), never a protocol error: the
/// caller's client shows it.
fn refused(tool: &str, refusal: &Refusal) -> CallToolResult {
    CallToolResult::structured_error(json!({
        "tool": tool,
        "refused": refusal.rule(),
        "reason": refusal.to_string(),
        "missing_scope": refusal.missing_scope(),
    }))
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LogsTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("logs-mcp", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Logs of the example deployment. search_logs reads; delete_logs is destructive and refused to agents.",
            )
    }
}

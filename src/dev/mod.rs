//! Dev mode: the embedded default configuration, its built-in IdP, and the
//! start-up banner with a copy-paste walk-through.
//!
//! Owns: everything that exists only when no config file is given.
//! Must never: leak into a configured deployment.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, IssuerConfig};
use crate::http::dev_idp::DevIdp;
use crate::policy::Purpose;
use crate::types::ClientKind;

pub const EMBEDDED_TOML: &str = include_str!("embedded.toml");
pub const EMBEDDED_RAS_TOML: &str = include_str!("embedded_ras.toml");

/// The placeholder key of the demo resource AS audience in `embedded.toml`.
const RAS_PLACEHOLDER: &str = "http://resource-as.invalid";

/// The issuer for a listen address: loopback stays loopback, and a wildcard
/// bind is reached at 127.0.0.1.
pub fn issuer_for(listen: SocketAddr) -> String {
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else if listen.is_ipv6() {
        format!("[{}]", listen.ip())
    } else {
        listen.ip().to_string()
    };
    format!("http://{host}:{}", listen.port())
}

/// The embedded default for a broker reachable at `issuer`, with the dev IdP
/// trusted for ID tokens and actor tokens (its key pinned inline), issuing
/// ID-JAGs for the demo resource AS at `ras_issuer`.
pub fn embedded_config(issuer: &str, listen: SocketAddr, ras_issuer: &str) -> anyhow::Result<(Config, Arc<DevIdp>)> {
    let mut config = Config::from_toml("embedded default", EMBEDDED_TOML)?;
    config.issuer = issuer.to_owned();
    config.listen = listen.to_string();
    let saas = config
        .audiences
        .remove(RAS_PLACEHOLDER)
        .ok_or_else(|| anyhow::anyhow!("embedded default lacks the demo resource AS audience"))?;
    config.audiences.insert(ras_issuer.to_owned(), saas);
    let idp = Arc::new(DevIdp::new(issuer)?);
    config.issuers.insert(
        "dev-idp".into(),
        IssuerConfig {
            issuer: idp.issuer.clone(),
            jwks_uri: None,
            discovery: false,
            jwks: Some(idp.jwks()),
            trust: vec![Purpose::IdToken, Purpose::Actor],
            algs: vec!["ES256".into()],
            groups_claim: "groups".into(),
            actor_profile: Some(ClientKind::Agent),
            roles: None,
        },
    );
    Ok((config, idp))
}

/// Re-key the audience `from` of a dev configuration as `to`, in the
/// catalog, in every client's `audiences` and as a service's `resource`:
/// e.g. the logs MCP server's `https://mcp.logs.example.com` as the URL it
/// really serves (`http://127.0.0.1:PORT/mcp`), which MCP clients that check
/// RFC 9728 metadata against the server's URL require (RFC 9728 §3.3).
pub fn rename_resource(config: &mut Config, from: &str, to: &str) -> anyhow::Result<()> {
    let audience = config
        .audiences
        .remove(from)
        .ok_or_else(|| anyhow::anyhow!("the configuration has no audience {from}"))?;
    config.audiences.insert(to.to_owned(), audience);
    for client in config.clients.values_mut() {
        for a in client.audiences.iter_mut().filter(|a| *a == from) {
            *a = to.to_owned();
        }
        if client.resource.as_deref() == Some(from) {
            client.resource = Some(to.to_owned());
        }
    }
    Ok(())
}

/// Deployment B of the demo: a resource AS at `ras_issuer` that redeems
/// ID-JAGs from the broker at `broker_issuer`, fetching its keys over HTTP.
pub fn embedded_ras_config(ras_issuer: &str, listen: SocketAddr, broker_issuer: &str) -> anyhow::Result<Config> {
    let mut config = Config::from_toml("embedded resource AS", EMBEDDED_RAS_TOML)?;
    config.issuer = ras_issuer.to_owned();
    config.listen = listen.to_string();
    config.issuers.insert(
        "dev-broker".into(),
        IssuerConfig {
            issuer: broker_issuer.to_owned(),
            jwks_uri: Some(format!("{broker_issuer}/jwks")),
            discovery: false,
            jwks: None,
            trust: vec![Purpose::IdJag],
            algs: vec!["ES256".into()],
            groups_claim: "groups".into(),
            actor_profile: None,
            // The roles B defines, as A asserts them in its ID-JAGs.
            roles: Some(config.roles.keys().cloned().collect()),
        },
    );
    Ok(config)
}

/// The banner: what this is, and a walk-through that works as printed
/// (needs curl and jq). `exe`: this binary, for the auditor's step.
pub fn banner(issuer: &str, ras_issuer: &str, exe: &str) -> String {
    let te = "urn:ietf:params:oauth:grant-type:token-exchange";
    let jb = "urn:ietf:params:oauth:grant-type:jwt-bearer";
    format!(
        r#"
================================================================================
 xaa-broker — DEVELOPMENT MODE (embedded default)
   ephemeral signing key, in-memory state, built-in dev IdP, PUBLISHED demo
   secrets. Never expose this. For a real deployment: serve --config FILE.
================================================================================
 issuer   {issuer}
 metadata {issuer}/.well-known/oauth-authorization-server
 jwks     {issuer}/jwks
 dev IdP  {issuer}/dev/idp   (users: alice, bob, carol)
 demo resource AS (deployment B, a SaaS):  {ras_issuer}

 Try it (bash, curl, jq):

 B={issuer}
 RAS={ras_issuer}
 XAA={exe}

 # 1. alice signs in at the dev IdP; the ID token is for the triage agent
 ID_TOKEN=$(curl -s $B/dev/idp/id-token -d user=alice -d client_id=triage-agent | jq -r .id_token)

 # 2. Cross-App Access: exchange it for an ID-JAG for the SaaS authorization server (token_type N_A)
 ID_JAG=$(curl -s -u triage-agent:triage-agent-secret $B/token \
   -d grant_type={te} \
   -d requested_token_type=urn:ietf:params:oauth:token-type:id-jag \
   -d audience=$RAS -d resource=https://mcp.saas.example.com/mcp \
   -d subject_token=$ID_TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:id_token | jq -r .access_token)

 # 2b. ...and redeem it at the SaaS (deployment B): an access token for its MCP server
 curl -s -u triage-agent-at-saas:triage-agent-at-saas-secret $RAS/token \
   -d grant_type={jb} -d assertion=$ID_JAG | jq

 # 3. Hop token: the agent calls the logs MCP server for alice (act = the agent, new txn)
 HOP1=$(curl -s -u triage-agent:triage-agent-secret $B/token \
   -d grant_type={te} -d resource=https://mcp.logs.example.com \
   -d subject_token=$ID_TOKEN -d subject_token_type=urn:ietf:params:oauth:token-type:id_token | jq -r .access_token)

 # 4. Next hop: the logs MCP server calls the cost tool (act chain grows, txn kept)
 HOP2=$(curl -s -u mcp-logs:mcp-logs-secret $B/token \
   -d grant_type={te} -d resource=https://cost.example.com \
   -d subject_token=$HOP1 -d subject_token_type=urn:ietf:params:oauth:token-type:access_token | jq -r .access_token)

 # 5. Look inside (sub = alice, act = mcp:logs ← agent:triage, same txn as HOP1)
 for t in $HOP1 $HOP2; do jq -cR 'split(".")[1] | gsub("-";"+") | gsub("_";"/") | @base64d | fromjson | {{sub,aud,scope,txn,act}}' <<<"$t"; done

 # 6. The auditor: the logs MCP server reports the tool call it made with HOP1 (a hash of the arguments, never
 #    the arguments); then the whole transaction as a tree, with the scope the agent was refused and why
 curl -s -u mcp-logs:mcp-logs-secret $B/audit/events -d token=$HOP1 -d tool=search_logs -d category=read \
   -d outcome=succeeded -d args_sha256=$(printf '{{"query":"error"}}' | sha256sum | cut -c1-64) | jq -c
 TXN=$(jq -rR 'split(".")[1] | gsub("-";"+") | gsub("_";"/") | @base64d | fromjson | .txn' <<<"$HOP1")
 XAA_AUDIT_CLIENT_ID=auditor XAA_AUDIT_CLIENT_SECRET=auditor-secret $XAA audit trace $TXN --url $B
 echo "the picture: $B/audit/ui?txn=$TXN (user auditor, password auditor-secret)"
================================================================================
"#
    )
}

//! `POST /audit/chain`: the chains as stored, a page at a time, with their
//! signed checkpoints, for `xaa-broker audit verify --url`.
//!
//! Owns: who may read the chains (clients in `audit.clients`, authenticated
//! like every client through `endpoint::Call`), the form (`instance`,
//! `cursor`, `limit` 1..=5000, default 1000), and the answer: without
//! `instance`, the instances the store holds with their checkpoint counts
//! (and this instance's head); with it, `{instance, records, checkpoints
//! (first page only), next_cursor}`.
//! Every read is itself recorded, with what it asked (`query`).
//! Must never: answer a client that is not an auditor, or check the chain
//! itself (the auditor's tool does, with keys it chose to trust).

use serde::Serialize;
use serde_json::json;

use crate::audit::{AuditRecord, Checkpoint};
use crate::endpoint::Call;
use crate::error::{OAuthError, OAuthResult};
use crate::params::OAuthRequest;
use crate::state::AppState;

/// Records per page when the form names no `limit`, and the most it may.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 5000;

/// One page of one instance's chain.
#[derive(Debug, Serialize)]
pub struct ChainAnswer {
    pub instance: String,
    pub records: Vec<AuditRecord>,
    /// Every checkpoint kept for the instance, on the first page only.
    pub checkpoints: Vec<Checkpoint>,
    pub next_cursor: Option<String>,
}

/// Read a page of a chain, or the list of chains.
pub async fn chain(state: &AppState, req: &OAuthRequest) -> OAuthResult<serde_json::Value> {
    let params = &req.params;
    let mut call = Call::begin(state, &req.caller, "audit.chain");
    let result = async {
        let client = call.authenticate(req).await?;
        if !call.policy.audit.clients.contains(&client.id) {
            return Err(OAuthError::unauthorized_client(
                "audit.not_auditor",
                "this client may not read the audit trail (audit.clients)",
            ));
        }
        let limit = match params.get("limit") {
            None => DEFAULT_LIMIT,
            Some(l) => l
                .parse()
                .ok()
                .filter(|l| (1..=MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    OAuthError::invalid_request(
                        "audit.chain_limit",
                        format!("limit must be a number from 1 to {MAX_LIMIT}"),
                    )
                })?,
        };
        let unavailable = |e: crate::store::StoreError| OAuthError::unavailable("store.audit_query_failed", &e);
        let store = &state.store;
        call.audit.query = Some(match (params.get("instance"), params.get("cursor")) {
            (None, _) => "chain".to_owned(),
            (Some(i), None) => format!("chain instance={i}"),
            (Some(i), Some(c)) => format!("chain instance={i} cursor={c}"),
        });
        let Some(instance) = params.get("instance") else {
            let mut instances = Vec::new();
            for name in store.audit_instances().await.map_err(unavailable)? {
                let checkpoints = store.checkpoints(&name).await.map_err(unavailable)?;
                let mut entry = json!({
                    "instance": name,
                    "checkpoints": checkpoints.len(),
                    "last_checkpoint": checkpoints.last().map(|c| json!({"seq": c.seq, "hash": c.hash, "time": c.time})),
                });
                if name == state.instance {
                    let (seq, hash) = store.audit_head().await.map_err(unavailable)?;
                    entry["head"] = json!({"seq": seq, "hash": hash});
                }
                instances.push(entry);
            }
            return Ok(json!({"answered_by": state.instance, "instances": instances}));
        };
        let cursor = params.get("cursor");
        let page = store
            .audit_chain_page(instance, cursor, limit)
            .await
            .map_err(unavailable)?;
        let checkpoints = match cursor {
            None => store.checkpoints(instance).await.map_err(unavailable)?,
            Some(_) => Vec::new(),
        };
        let answer = ChainAnswer {
            instance: instance.to_owned(),
            records: page.records,
            checkpoints,
            next_cursor: page.next_cursor,
        };
        serde_json::to_value(answer).map_err(|e| OAuthError::internal("audit.chain_serialise", &e))
    }
    .await;
    call.finish(result).await
}

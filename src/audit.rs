//! The audit record: one per decision, granted or denied.
//!
//! Owns: the record's fields (specs/decisions.md §13), sealing it into a
//! per-instance hash chain (`hash = SHA-256(prev_hash ‖ canonical JSON of the
//! rest)`), checking a chain, and emitting each record as one JSON log line on
//! target `audit`.
//! Must never: hold a token, secret or assertion — only issuer + `jti` and a
//! SHA-256 fingerprint of a presented token.

use serde::{Deserialize, Serialize};

use crate::chain::Act;
use crate::error::OAuthError;
use crate::jose::{hex, sha256_hex};
use crate::policy::{Category, Withheld};
use crate::types::{Principal, ScopeSet};

/// What a resource server did with a token it received (a tool call or an
/// API method), as it reported it. Never the arguments: their SHA-256, and
/// an optional short summary the reporter redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolEvent {
    /// Tool or method name.
    pub tool: String,
    pub category: Category,
    pub outcome: ToolOutcome,
    /// When it happened, as reported (RFC 3339 UTC).
    pub at: String,
    /// SHA-256 (hex) of the arguments.
    pub args_sha256: String,
    /// Short, redacted by the reporter, capped and stripped of control
    /// characters here.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub summary: Option<String>,
    /// Pairs the report made before a call with the one made after it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub call_id: Option<String>,
}

/// A tool call's outcome: `allowed`/`denied` before it runs (the server's
/// own permission check), `succeeded`/`failed` after.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolOutcome {
    Allowed,
    Denied,
    Succeeded,
    Failed,
}

impl ToolOutcome {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "allowed" => Self::Allowed,
            "denied" => Self::Denied,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// A signed statement "instance's chain had `hash` at `seq` at `time`"
/// (issue: signed checkpoints). `jws` is a compact JWS (typ
/// `xaa-audit-checkpoint+jwt`) over exactly these fields, signed with the
/// audit key published at `/audit/jwks`: someone who can rewrite the store
/// but lacks the key cannot make a rewritten chain match it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub instance: String,
    pub seq: u64,
    pub hash: String,
    /// RFC 3339 UTC.
    pub time: String,
    pub jws: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Granted,
    #[default]
    Denied,
}

/// Identifies a presented token without holding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenFingerprint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// First 16 bytes of SHA-256 of the compact token, hex: lets an
    /// investigator match a token they hold without the log holding it.
    pub sha256: String,
}

impl TokenFingerprint {
    /// Name the validated token's issuer and `jti` (the hash is kept).
    pub fn identify(&mut self, iss: &str, jti: Option<&str>) {
        self.iss = Some(iss.to_owned());
        self.jti = jti.map(str::to_owned);
    }

    pub fn of(token: &str) -> Self {
        let mut h = sha256_hex(token.as_bytes());
        h.truncate(32);
        Self {
            iss: None,
            jti: None,
            sha256: h,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// UUIDv7 of the record.
    pub id: String,
    /// When the request began, RFC 3339 UTC.
    pub time: String,
    /// The instance whose hash chain holds the record (`XAA_INSTANCE`).
    pub instance: String,
    /// Position in that chain, from 1.
    pub seq: u64,
    /// `hash` of the previous record of the chain (64 zeros for the first).
    pub prev_hash: String,
    pub decision: Decision,
    /// The OAuth `error` answered, on a denial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The machine reason (`subject_token.expired`), or what a granted
    /// call did beyond answering (`revoked`, `introspection.not_for_caller`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What was asked: a grant's short name (`token-exchange`,
    /// `jwt-bearer`), or the endpoint (`introspection`, `revocation`,
    /// `admin.revoke`, `admin.audit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// The token type asked for (RFC 8693 §3 URI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// The token type issued (RFC 8693 §3 URI), when granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<String>,
    /// The correlation id of the chain the call concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    /// The authenticated client (never a client that failed to
    /// authenticate: those are noise summaries).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// How the client authenticated (`client_secret_basic`,
    /// `client_secret_post`, `private_key_jwt`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_auth_method: Option<String>,
    /// The user the call concerns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The issuer that vouched for `sub` (RFC 9493 `iss_sub`): a subject is
    /// only unique within its issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_iss: Option<String>,
    /// The delegation chain of the issued (or refused) token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Act>,
    /// The flat delegation list the subject token (or ID-JAG) carried beside
    /// `act` (`delegated_through`), as read (`chain::delegated_through`):
    /// each entry `{sub, iss, sub_profile}`, counted toward the depth and
    /// capped like `act` entries, never a substitute for `act`. Absent when
    /// the subject carried none.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub delegated_through: Vec<Act>,
    /// The presented subject token (or ID-JAG assertion), never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<TokenFingerprint>,
    /// The presented actor token, never the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_token: Option<TokenFingerprint>,
    /// The `aud` of the token asked for (an ID-JAG: the resource AS; an
    /// access token: its resource).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The `resource` claim of an ID-JAG (RFC 8707), issued or redeemed
    /// (of an array, ID-JAG issue 92, the one redeemed); absent when it
    /// names none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The `scope` parameter sent, canonical.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_requested: Option<String>,
    /// The scope issued, canonical, when granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope_granted: Option<String>,
    /// The RFC 7638 thumbprint of the key the request's DPoP proof proved
    /// (RFC 9449); a token issued to such a request is bound to it
    /// (`cnf.jkt`). Never the proof itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// The `jti` of the issued token, when granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_exp: Option<i64>,
    /// The `jti` of the token the call is about: the subject token an
    /// exchange started from (so a trace is a tree: `parent_jti` →
    /// `issued_jti`), or the token introspected or revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// Capped and stripped of control characters: attacker-chosen text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The requested scopes not granted, each with the first rule that
    /// withheld it (`policy::withheld`): what an auditor reads as
    /// "cost.approve withheld: human_only".
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub scope_withheld: Vec<Withheld>,
    /// A tool call reported by the resource server that received the token
    /// `parent_jti` (`POST /audit/events`); `grant` is then `tool_call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<ToolEvent>,
    /// What an audit read asked for (`txn=…`, `sub=… since=… until=…`):
    /// who looked at what is itself on the record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Reserved for the OpenTelemetry trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Empty while the record is being hashed.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub hash: String,
}

/// Longest user agent kept: it is attacker-controlled text.
const MAX_USER_AGENT: usize = 256;

impl AuditRecord {
    /// A new, unsealed record for a request.
    pub fn begin(at_ms: i64, source_ip: Option<String>, user_agent: Option<&str>) -> Self {
        Self {
            id: uuid::Uuid::now_v7().to_string(),
            time: format_time_ms(at_ms),
            source_ip,
            user_agent: user_agent.map(|ua| ua.chars().filter(|c| !c.is_control()).take(MAX_USER_AGENT).collect()),
            ..Self::default()
        }
    }

    /// `time` as Unix milliseconds (0 if unreadable: the store indexes by it).
    pub fn time_ms(&self) -> i64 {
        parse_time_ms(&self.time).unwrap_or(0)
    }

    /// Step: what was asked (a grant's short name, or the endpoint).
    pub fn asked(&mut self, what: &str) {
        self.grant = Some(what.chars().take(128).collect());
    }

    /// Step: the client authenticated, and how.
    pub fn authenticated(&mut self, client_id: &str, method: &str) {
        self.client_id = Some(client_id.to_owned());
        self.client_auth_method = Some(method.to_owned());
    }

    /// What a granted call did beyond answering (`revoked`,
    /// `introspection.not_for_caller`).
    pub fn note(&mut self, what: &str) {
        self.reason = Some(what.to_owned());
    }

    /// Step: the request named its target (RFC 8693 §2.1): the token type
    /// asked for, its audience, an ID-JAG's resource, the scope sent.
    pub fn target(&mut self, requested: &str, audience: &str, resource: Option<&str>, scope: Option<&ScopeSet>) {
        self.requested_token_type = Some(requested.to_owned());
        self.audience = Some(audience.to_owned());
        self.resource = resource.map(str::to_owned);
        if let Some(s) = scope {
            self.scope_requested = Some(s.to_string());
        }
    }

    /// Step: a subject token (or assertion) was presented; identified only
    /// by its fingerprint until it verifies.
    pub fn subject_presented(&mut self, token: &str) {
        self.subject_token = Some(TokenFingerprint::of(token));
    }

    /// Step: an actor token was presented.
    pub fn actor_presented(&mut self, token: &str) {
        self.actor_token = Some(TokenFingerprint::of(token));
    }

    /// Step: the subject token verified: who issued it, its `jti`, and the
    /// user it speaks for.
    pub fn subject_verified(&mut self, iss: &str, jti: Option<&str>, principal: &Principal) {
        if let Some(f) = &mut self.subject_token {
            f.identify(iss, jti);
        }
        self.about(jti, None, principal);
    }

    /// Step: the actor token verified.
    pub fn actor_verified(&mut self, iss: &str, jti: Option<&str>) {
        if let Some(f) = &mut self.actor_token {
            f.identify(iss, jti);
        }
    }

    /// Step: the chain is known: its correlation id and, once built, the
    /// delegation chain of the token to issue.
    pub fn chain(&mut self, txn: &str, act: Option<&Act>) {
        self.txn = Some(txn.to_owned());
        self.act = act.cloned();
    }

    /// Step: the subject's flat delegation list was read (specs/decisions.md
    /// §3, "The actor profile"): recorded whatever the decision.
    pub fn delegated_through(&mut self, entries: &[Act]) {
        self.delegated_through = entries.to_vec();
    }

    /// The token a call is about (introspected, revoked, exchanged from).
    pub fn about(&mut self, jti: Option<&str>, txn: Option<&str>, principal: &Principal) {
        self.parent_jti = jti.map(str::to_owned);
        if let Some(t) = txn {
            self.txn = Some(t.to_owned());
        }
        self.sub = Some(principal.sub.clone());
        self.sub_iss = Some(principal.iss.clone());
    }

    /// Step: what was issued (not yet released: the commit decides).
    /// Step: the request proved possession of a DPoP key (RFC 9449 §4.3).
    pub fn dpop_proved(&mut self, jkt: &str) {
        self.dpop_jkt = Some(jkt.to_owned());
    }

    pub fn issued(&mut self, jti: &str, exp: i64, token_type: &str, scope: &ScopeSet) {
        self.issued_jti = Some(jti.to_owned());
        self.issued_exp = Some(exp);
        self.issued_token_type = Some(token_type.to_owned());
        self.scope_granted = Some(scope.to_string());
    }

    pub fn deny(&mut self, err: &OAuthError) {
        self.decision = Decision::Denied;
        self.error = Some(err.code.as_str().to_owned());
        self.reason = Some(err.reason.to_owned());
        self.issued_jti = None;
        self.issued_exp = None;
        self.issued_token_type = None;
        self.scope_granted = None;
    }

    /// The hash, and the JSON it covers: the record without `hash`.
    fn digest_and_body(&self, prev_hash: &str) -> (String, Vec<u8>) {
        // `hash` is left out of the JSON when empty, as it is while a record
        // is being sealed: then the record itself is the body, no copy.
        let body = if self.hash.is_empty() {
            serde_json::to_vec(self)
        } else {
            let mut unsealed = self.clone();
            unsealed.hash.clear();
            serde_json::to_vec(&unsealed)
        }
        .unwrap_or_default();
        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(&body);
        (hex(&hasher.finish()), body)
    }

    fn digest(&self, prev_hash: &str) -> String {
        self.digest_and_body(prev_hash).0
    }

    /// Whether the record's hash still matches its content (not whether
    /// its chain is whole: that is `audit verify`).
    pub fn is_intact(&self) -> bool {
        self.digest(&self.prev_hash) == self.hash
    }

    /// The hash this record's content and `prev_hash` call for: equal to
    /// `hash` unless the record was edited after it was sealed
    /// (`chain_check` names the difference).
    pub fn expected_hash(&self) -> String {
        self.digest(&self.prev_hash)
    }

    /// Link this record after `prev_hash` as number `seq` of `instance`,
    /// and return the sealed record's JSON (what the stores keep, and what
    /// the memory store budgets by), serialised once: the hashed body with
    /// `hash` appended, which is exactly `serde_json::to_string(self)`
    /// since `hash` is the last field.
    pub fn seal(&mut self, instance: &str, seq: u64, prev_hash: &str) -> String {
        self.instance = instance.to_owned();
        self.seq = seq;
        self.prev_hash = prev_hash.to_owned();
        self.hash.clear();
        let (hash, mut body) = self.digest_and_body(prev_hash);
        self.hash.clone_from(&hash);
        // Serialising a record cannot fail (no map has non-string keys); if
        // it ever did, the empty answer makes the store refuse it.
        if body.pop() != Some(b'}') {
            return String::new();
        }
        // `{…}` becomes `{…,"hash":"…"}`.
        body.extend_from_slice(b",\"hash\":\"");
        body.extend_from_slice(hash.as_bytes());
        body.extend_from_slice(b"\"}");
        // Valid UTF-8: serde_json wrote it, and a hex digest was appended.
        String::from_utf8(body).unwrap_or_default()
    }

    /// Emit as one JSON line on target `audit`, for SIEM pipelines (not
    /// even serialised when `RUST_LOG` turns the `audit` target off).
    pub fn emit(&self) {
        if !tracing::enabled!(target: "audit", tracing::Level::INFO) {
            return;
        }
        match serde_json::to_string(self) {
            Ok(line) => tracing::info!(target: "audit", record = %line),
            Err(e) => tracing::error!(target: "audit", error = %e, "audit record not serialisable"),
        }
    }
}

/// A summary of unauthenticated noise (`noise`): one (source, reason,
/// named client) key's count over one interval. Kept by the store apart from
/// the hash chain, for a short retention (specs/decisions.md §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoiseSummary {
    /// UUIDv7.
    pub id: String,
    pub instance: String,
    /// An IPv4 address, an IPv6 `/64`, `unknown`, or `*` for the sources
    /// folded together once the interval had `MAX_KEYS` keys.
    pub source: String,
    /// The OAuth `error` answered.
    pub error: String,
    /// The machine reason, as in a denied audit record.
    pub reason: String,
    /// The configured client the requests named (never an unknown id).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    pub count: u64,
    /// RFC 3339 times (UTC, milliseconds) of the first and last request counted.
    pub first: String,
    pub last: String,
}

impl NoiseSummary {
    /// Emit as one JSON line on target `audit` (field `summary`), like records.
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(line) => tracing::info!(target: "audit", summary = %line),
            Err(e) => tracing::error!(target: "audit", error = %e, "noise summary not serialisable"),
        }
    }
}

/// Unix milliseconds as the RFC 3339 UTC text records carry.
pub fn format_time_ms(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A time as the audit API and commands accept it: Unix seconds, or RFC
/// 3339. Unix milliseconds.
pub fn parse_instant_ms(text: &str) -> Option<i64> {
    match text.parse::<i64>() {
        Ok(secs) => secs.checked_mul(1000),
        Err(_) => parse_time_ms(text),
    }
}

/// RFC 3339 text as Unix milliseconds.
pub fn parse_time_ms(text: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The genesis `prev_hash` of every instance's chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Check one instance's records, in `seq` order: each links to the previous
/// one and its hash matches its content. Returns the first broken `seq`.
pub fn verify_chain(records: &[AuditRecord]) -> Result<(), u64> {
    let mut prev: Option<&AuditRecord> = None;
    for r in records {
        let expected_prev = prev.map(|p| p.hash.as_str()).unwrap_or(r.prev_hash.as_str());
        if prev.is_some_and(|p| p.seq + 1 != r.seq) || r.prev_hash != expected_prev || r.digest(&r.prev_hash) != r.hash
        {
            return Err(r.seq);
        }
        prev = Some(r);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (0..n)
            .map(|i| {
                let mut r = AuditRecord::begin(1_800_000_000_000, Some("127.0.0.1".into()), Some("curl"));
                r.txn = Some(format!("t{i}"));
                r.seal("i1", i as u64 + 1, &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn seal_returns_exactly_the_sealed_records_json() {
        let mut r = AuditRecord::begin(1_800_000_000_000, Some("127.0.0.1".into()), Some("curl \"quoted\""));
        r.txn = Some("t-\u{e9}\n".into());
        r.sub = Some("alice".into());
        let json = r.seal("i1", 7, GENESIS);
        assert_eq!(json, serde_json::to_string(&r).unwrap());
        assert!(r.is_intact());
        // Sealing again (a retry after the head moved) starts from a clean hash.
        let again = r.seal("i1", 8, &"1".repeat(64));
        assert_eq!(again, serde_json::to_string(&r).unwrap());
        assert!(r.is_intact() && r.prev_hash == "1".repeat(64));
        let back: AuditRecord = serde_json::from_str(&again).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(()));
    }

    #[test]
    fn editing_a_record_breaks_the_chain_there() {
        let mut c = chain(5);
        c[2].sub = Some("mallory".into());
        assert_eq!(verify_chain(&c), Err(3));
    }

    #[test]
    fn deleting_a_record_breaks_the_chain() {
        let mut c = chain(5);
        c.remove(2);
        assert!(verify_chain(&c).is_err());
    }

    #[test]
    fn a_delegated_through_list_is_sealed_into_the_chain() {
        let mut c = chain(3);
        let entry = |sub: &str| Act {
            sub: sub.into(),
            iss: Some("https://partner".into()),
            sub_profile: Some("ai_agent".into()),
            act: None,
        };
        let mut r = AuditRecord::begin(1_800_000_000_000, None, None);
        r.delegated_through(&[entry("agent:z")]);
        let json = r.seal("i1", 4, &c[2].hash.clone());
        assert!(
            json.contains(
                r#""delegated_through":[{"sub":"agent:z","iss":"https://partner","sub_profile":"ai_agent"}]"#
            )
        );
        let back: AuditRecord = serde_json::from_str(&json).unwrap();
        assert!(back.is_intact(), "read back, it hashes the same");
        c.push(back);
        assert_eq!(verify_chain(&c), Ok(()));
        c[3].delegated_through[0].sub_profile = Some("service".into());
        assert_eq!(verify_chain(&c), Err(4), "an edited list breaks the chain");
        // A record without one has no such member: older records verify as before.
        assert!(!serde_json::to_string(&c[0]).unwrap().contains("delegated_through"));
    }

    #[test]
    fn user_agent_is_capped_and_stripped_of_control_characters() {
        let ua = format!("evil\n{}", "x".repeat(1000));
        let r = AuditRecord::begin(1_800_000_000_000, None, Some(&ua));
        let kept = r.user_agent.unwrap();
        assert_eq!(kept.chars().count(), MAX_USER_AGENT);
        assert!(!kept.contains('\n'));
    }
}

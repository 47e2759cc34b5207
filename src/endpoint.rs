//! The path every client-authenticated endpoint takes (token, introspection,
//! revocation, admin): authenticate → decide → commit replay marks, effects
//! and the audit record together → release the answer (or the error), which
//! `http` renders. Plain types in and out: no HTTP here.
//!
//! Owns: the rule that nothing leaves and nothing takes effect before its
//! audit record and replay marks are stored, in one atomic commit (fail
//! closed, specs/decisions.md §10); that a replayed client assertion is
//! recorded and answered as the authentication failure it is, whatever else
//! went wrong; and that every call of an authenticated client writes exactly
//! one audit record, granted or denied. A call refused before a client is
//! authenticated, or rate limited, is counted in the noise summaries instead
//! (specs/decisions.md §13). Where the rate limits are checked (`limits`):
//! the source before authentication, the client right after it. Each record
//! written is counted in `xaa_decisions_total`, each refusal before
//! authentication in `xaa_refused_unauthenticated_total` (`observe`), and
//! the commit is the `store_commit` step span.
//! Must never: hold endpoint-specific rules.

use std::net::IpAddr;
use std::sync::Arc;

use crate::audit::{AuditRecord, Decision};
use crate::client_auth;
use crate::error::{ErrorCode, OAuthError, OAuthResult};
use crate::params::{Caller, OAuthRequest};
use crate::policy::{Client, Policy};
use crate::state::AppState;
use crate::store::{Commit, CommitPlan, Effect, Mode, ReplayMark, RevocationGuard};
use crate::telemetry::{self, Step};
use crate::trust::validate::Validator;

/// One call in progress.
pub struct Call<'a> {
    pub state: &'a AppState,
    /// What was asked, for metrics: the endpoint, or the grant's short name
    /// once it parsed (static, so the label set stays bounded whatever
    /// `grant_type` a request sends).
    pub what: &'static str,
    /// The policy version this whole call uses.
    pub policy: Arc<Policy>,
    pub now: i64,
    pub audit: AuditRecord,
    /// One-time values seen in this call (client assertion / ID-JAG `jti`),
    /// the client assertion's first.
    pub marks: Vec<ReplayMark>,
    /// Release only if these tokens (subject, actor) are not revoked,
    /// checked inside the commit ...
    pub guards: Vec<RevocationGuard>,
    /// ... each with the error to answer if it is (same index).
    pub guard_errors: Vec<OAuthError>,
    /// What this call changes (revocations): applied by the same commit
    /// that records it, so a call that is refused changes nothing.
    pub effects: Vec<Effect>,
    /// The peer address: rate limits and noise summaries key on it.
    pub source: Option<IpAddr>,
    /// The configured client a request named but that did not authenticate
    /// (or was rate limited), for the noise summary.
    pub named_client: Option<String>,
}

impl<'a> Call<'a> {
    pub fn begin(state: &'a AppState, caller: &Caller, what: &'static str) -> Self {
        let source_ip = caller.source;
        // The one read of the clock for this request: everything below
        // (validation, the decision, the record) uses this instant.
        let now_ms = state.clock.now_ms();
        let mut audit = AuditRecord::begin(now_ms, source_ip.map(|ip| ip.to_string()), caller.user_agent.as_deref());
        audit.asked(what);
        // The record names the request's trace, so an auditor can open it.
        audit.trace_id = telemetry::current_ids().map(|ids| ids.trace_id);
        Self {
            state,
            what,
            policy: state.policy.load_full(),
            now: now_ms.div_euclid(1000),
            audit,
            marks: Vec::new(),
            guards: Vec::new(),
            guard_errors: Vec::new(),
            effects: Vec::new(),
            source: source_ip,
            named_client: None,
        }
    }

    pub fn validator(&self) -> Validator<'_> {
        Validator {
            policy: &self.policy,
            keys: &self.state.keys,
            jwks: &self.state.jwks,
            verified: &self.state.verified,
            now: self.now,
        }
    }

    /// Authenticate the client (RFC 6749 §2.3) and note it in the record.
    /// Rate limits (MCP EMA §7.5.1): a source with too many failed
    /// authentications is refused before any authentication work, a failure
    /// counts against its source, and a client over its rate is refused
    /// before any grant work.
    pub async fn authenticate(&mut self, req: &OAuthRequest) -> OAuthResult<Arc<Client>> {
        let client = telemetry::timed(Step::ClientAuthentication, self.authenticate_inner(req)).await?;
        telemetry::record_request("oauth.client_id", &client.id);
        Ok(client)
    }

    async fn authenticate_inner(&mut self, req: &OAuthRequest) -> OAuthResult<Arc<Client>> {
        let (authorization, params) = (req.authorization.as_deref(), &req.params);
        self.state.limits.check_source(&self.policy, self.source)?;
        let validator = Validator {
            policy: &self.policy,
            keys: &self.state.keys,
            jwks: &self.state.jwks,
            verified: &self.state.verified,
            now: self.now,
        };
        let (client, method) = match client_auth::authenticate(&validator, authorization, params, &mut self.marks).await
        {
            Ok(authenticated) => authenticated,
            Err(e) => {
                if e.code == ErrorCode::InvalidClient {
                    self.state.limits.note_failure(&self.policy, self.source);
                }
                self.named_client = client_auth::named_client(&self.policy, authorization, params);
                return Err(e);
            }
        };
        if let Err(e) = self.state.limits.check_client(&self.policy, &client) {
            self.named_client = Some(client.id.clone());
            return Err(e);
        }
        self.audit.authenticated(&client.id, method.name());
        Ok(client)
    }

    /// Store marks, effects and the granted record, then release `value`.
    /// If the store cannot be written, nothing is released and nothing takes
    /// effect: 503.
    pub async fn commit<T>(mut self, value: T) -> OAuthResult<T> {
        self.audit.decision = Decision::Granted;
        let plan = CommitPlan {
            mode: Mode::Grant,
            now: self.now,
            marks: &self.marks,
            guards: &self.guards,
            effects: &self.effects,
        };
        let committed = telemetry::timed(Step::StoreCommit, self.state.store.commit(plan, self.audit.clone())).await;
        match committed {
            Ok(Commit::Done(record)) => {
                crate::observe::decision(self.what, true, "", "");
                record.emit();
                telemetry::record_request_static("xaa.outcome", "granted");
                Ok(value)
            }
            Ok(Commit::Replayed { index }) => {
                let err = replay_error(&self.marks[index]);
                Err(self.deny(err).await)
            }
            Ok(Commit::Revoked { index }) => {
                let err = match self.guard_errors.get(index) {
                    Some(err) => err.clone(),
                    None => OAuthError::internal(
                        "store.revoked_without_guard",
                        &"store reported a revocation no guard asked about",
                    ),
                };
                Err(self.deny(err).await)
            }
            Err(e) => Err(OAuthError::unavailable("store.commit_failed", &e)),
        }
    }

    /// Record a denial and answer with the error. Nothing takes effect. The
    /// one-time values already seen are spent too, so a refused assertion
    /// cannot be retried — unless the client assertion itself was a replay:
    /// then the client never authenticated, nothing is spent on its behalf,
    /// and the record and the answer say so (`client_assertion.replayed`),
    /// whatever else was wrong. A failed audit write does not change the
    /// answer (nothing is released either way); it is logged.
    /// Returns the error to answer with.
    pub async fn deny(self, err: OAuthError) -> OAuthError {
        let answer = self.deny_inner(err).await;
        telemetry::record_request_static("xaa.outcome", "denied");
        telemetry::record_request_static("oauth.error", answer.code.as_str());
        telemetry::record_request_static("xaa.reason", answer.reason);
        answer
    }

    async fn deny_inner(mut self, err: OAuthError) -> OAuthError {
        self.effects.clear();
        // No authenticated client (or one over its rate): noise, counted in
        // the summaries rather than chained (decisions §13). No mark is
        // burned: before authentication there is none, and a rate-limited
        // client's assertion was not used (nothing was decided), so it stays
        // good for the retry after `Retry-After`.
        if self.audit.client_id.is_none() {
            crate::observe::refused_unauthenticated(err.code.as_str(), err.reason);
            self.state.noise.note(self.source, &err, self.named_client.as_deref());
            return err;
        }
        self.audit.deny(&err);
        let store = &self.state.store;
        let plan = CommitPlan {
            mode: Mode::Deny,
            now: self.now,
            marks: &self.marks,
            guards: &[],
            effects: &[],
        };
        let mut answer = err;
        let mut outcome = telemetry::timed(Step::StoreCommit, store.commit(plan, self.audit.clone())).await;
        if let Ok(Commit::Replayed { index }) = outcome {
            // A replayed client assertion is a failed authentication: it
            // counts against its source like any other.
            self.state.limits.note_failure(&self.policy, self.source);
            answer = replay_error(&self.marks[index]);
            self.audit.deny(&answer);
            outcome = telemetry::timed(
                Step::StoreCommit,
                store.commit(CommitPlan::record_only(Mode::Deny, self.now), self.audit),
            )
            .await;
        }
        match outcome {
            Ok(Commit::Done(record)) => {
                crate::observe::decision(self.what, false, answer.code.as_str(), answer.reason);
                record.emit()
            }
            Ok(Commit::Replayed { .. } | Commit::Revoked { .. }) => {}
            Err(e) => {
                tracing::error!(error = %e, reason = answer.reason, "audit record of a denial could not be written")
            }
        }
        answer
    }

    /// Release only if `guard` holds at commit, else answer with `err`.
    pub fn guard(&mut self, guard: RevocationGuard, err: OAuthError) {
        self.guards.push(guard);
        self.guard_errors.push(err);
    }

    /// Finish with `result`: commit on success, deny on error.
    pub async fn finish<T>(self, result: OAuthResult<T>) -> OAuthResult<T> {
        match result {
            Ok(value) => self.commit(value).await,
            Err(e) => Err(self.deny(e).await),
        }
    }
}

/// The error for a reused one-time value: a client assertion is client
/// authentication (`invalid_client`); a DPoP proof's `jti` is the proof's
/// failure (`invalid_dpop_proof`, RFC 9449 §11.1); an assertion grant is
/// `invalid_grant`.
fn replay_error(mark: &ReplayMark) -> OAuthError {
    if mark.authenticates {
        OAuthError::invalid_client("client_assertion.replayed", "client authentication failed")
    } else if mark.key.starts_with(crate::dpop::MARK_PREFIX) {
        OAuthError::invalid_dpop_proof("dpop.replayed", "the DPoP proof has already been used (jti)")
    } else {
        OAuthError::invalid_grant("assertion.replayed", "the assertion has already been used")
    }
}

//! The Redis store: shared state for many broker instances.
//!
//! Owns: one `ConnectionManager` (bounded connect and response timeouts, so a
//! dead Redis fails a request in about two seconds instead of hanging it),
//! the key layout under a prefix (default `xaa:`), the two Lua scripts that
//! make a commit (marks, guards, effects and the record) and `revoke`
//! atomic, sharing one revocation rule, and this instance's audit chain head
//! (seq + last hash), kept in memory and loaded from Redis at connect so a
//! restart with the same `XAA_INSTANCE` continues its chain. Commits go
//! through this instance's group committer (`commit.rs`): every commit
//! waiting is sealed in order and sent in one script call, one batch in
//! flight at a time, so appends stay in chain order without one round trip
//! per commit.
//!
//! Key layout (`{p}` is the prefix):
//! - `{p}mark:{key}`: a replay mark, expiring at its `expires_at`.
//! - `{p}rev:jti:{jti}`, `{p}rev:txn:{txn}`, `{p}rev:sub:{len}:{iss}:{sub}`: a
//!   revocation (value: the subject cut-off, or `0`), expiring at the latest
//!   `expires_at` it was given. The subject key is scoped by issuer, whose
//!   length prefixes it so no two keys can be confused.
//! - `{p}audit:{instance}`: a Stream of sealed records (field `record`, the
//!   record's JSON), trimmed by age (`AUDIT_RETENTION`). The only copy of a
//!   record: every index below holds references `{instance}|{stream id}`,
//!   so what a trace shows is exactly what `audit verify` checks.
//! - `{p}audit:{instance}:head`: a hash `seq`, `hash`: the chain head.
//! - `{p}audit:{instance}:checkpoints`: a list of signed checkpoints (JSON).
//! - `{p}audit:instances`: a set of the instances that wrote a chain.
//! - `{p}audit:txn:{txn}`: a list of references to that txn's records,
//!   oldest first, from every instance, expiring `AUDIT_RETENTION` after its
//!   last append.
//! - `{p}audit:time`: a sorted set of references scored by record time (Unix
//!   ms), and `{p}audit:sub:{len}:{sub}` the same for one user: the search
//!   indexes, trimmed by age on append.
//! - `{p}audit:jti:{jti}`: the reference of the record that issued `jti`,
//!   expiring a day after the token (tool-call reports by `jti`).
//! - `{p}noise`: a Stream of unauthenticated-noise summaries from every
//!   instance (fields `until`, the Unix ms it is kept until, and `summary`,
//!   its JSON), trimmed on append by age (`MINID ~`) and size (`MAXLEN ~`
//!   [`NOISE_MAX_ENTRIES`]), the key expiring one retention after the last
//!   append. Never hash-chained.
//!
//! Needs Redis 6.2 or later (`SET … PXAT`, `XADD … MINID`, exclusive
//! `XRANGE` bounds). The SHA-256 of the chain is computed in Rust
//! (`AuditRecord::seal`), never in Lua.
//!
//! Must never: put the URL (it may hold a password), a key or a value in an
//! error or a log line; errors carry only the kind of failure. Must never
//! report a commit as done unless the script said so.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, RedisError, RedisResult, Script};
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{
    AuditSink, ChainPage, Commit, CommitPlan, JTI_REPORT_GRACE_SECS, MAX_TRACE_RECORDS, Mode, Revocation, SearchPage,
    SearchQuery, Store, StoreError, TokenRef, issued_before_cutoff, revocation_key, sink_error, subject_key,
};
use crate::audit::NoiseSummary;
use crate::audit::{AuditRecord, Checkpoint, GENESIS};

mod commit;

/// Key prefix when the config names none.
pub const DEFAULT_PREFIX: &str = "xaa:";

/// How long audit records are kept (stream trimmed by `MINID`, per-txn lists
/// expire). Longer than any token lives, so an investigation of a live token
/// always finds its record.
pub const AUDIT_RETENTION: Duration = Duration::from_secs(90 * 24 * 3600);

/// Most noise summaries kept in `{p}noise` (approximately: `MAXLEN ~`),
/// about 300 bytes each.
pub const NOISE_MAX_ENTRIES: usize = 100_000;

/// Summaries per pipeline, so a large flush never stalls Redis in one batch.
const NOISE_BATCH: usize = 1000;

/// Each connection attempt and each reply gets this long.
const IO_TIMEOUT: Duration = Duration::from_secs(1);

/// A whole store operation (a reconnect included) gets this long: past it the
/// request fails closed (503) rather than wait on a dead Redis.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

/// How many times `commit` reseals and retries when the chain head in Redis
/// moved under it (another process appending as the same instance).
const HEAD_CONFLICT_RETRIES: usize = 3;

/// Checkpoints kept per instance (the oldest are dropped).
const MAX_CHECKPOINTS: isize = 100_000;

/// `XRANGE` page size for `audit_chain`: one huge reply would stall Redis for
/// every other client.
const CHAIN_PAGE: usize = 1000;

/// Recording a revocation, shared by both scripts so there is one rule: an
/// existing expiry is never shortened, and a subject cut-off only moves
/// forward (the larger one wins).
const REVOKE_FN_LUA: &str = r#"
local function revoke(key, at, value, is_cutoff, now)
  local ttl = redis.call('PTTL', key)
  if ttl > 0 then at = math.max(at, now + ttl) end
  if at <= now then return 0 end
  if is_cutoff == '1' then
    local current = redis.call('GET', key)
    if current and tonumber(current) and tonumber(current) > tonumber(value) then
      value = current
    end
  end
  redis.call('SET', key, value, 'PXAT', string.format('%.0f', at))
  return 1
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"#;

/// The revoke script (after `REVOKE_FN_LUA`). KEYS[1]: the revocation key.
/// ARGV: keep-until (Unix ms), value, `1` when the value is a subject cut-off.
const REVOKE_LUA: &str = r#"
return revoke(KEYS[1], tonumber(ARGV[1]), ARGV[2], ARGV[3], now)
"#;

/// When a failed operation may be tried again.
#[derive(Clone, Copy)]
enum Retry {
    /// Only if the command was certainly never sent (connection refused):
    /// for `commit`, which must not run twice.
    IfUnsent,
    /// After any connection failure: reads, and writes that give the same
    /// result when repeated (`revoke`).
    Idempotent,
}

impl Retry {
    fn allows(self, e: &RedisError) -> bool {
        match self {
            Retry::IfUnsent => e.is_connection_refusal(),
            Retry::Idempotent => e.is_io_error() || e.is_connection_dropped(),
        }
    }
}

/// The last record this instance appended.
struct Head {
    seq: u64,
    hash: String,
    /// A commit failed with its outcome unknown (the script may have run):
    /// reload from Redis before the next append.
    dirty: bool,
}

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    instance: String,
    head: Arc<Mutex<Head>>,
    /// The audit file, when configured.
    sink: Option<Arc<dyn AuditSink>>,
    /// This instance's committer, started by the first commit (so that it
    /// sees the sink `with_sink` adds).
    queue: OnceLock<commit::Queue>,
    revoke_script: Script,
}

impl RedisStore {
    /// Connect, and load `instance`'s chain head (a new instance starts at
    /// seq 1 after `GENESIS`).
    pub async fn connect(url: &str, prefix: &str, instance: &str) -> Result<Self, StoreError> {
        // `txn` and `:` in an instance name would make its keys collide with
        // the per-txn lists or another instance's head.
        if instance.is_empty() || instance == "txn" || instance.contains(':') {
            return Err(StoreError(
                "the instance name (XAA_INSTANCE) must be non-empty, not `txn`, and contain no `:`".into(),
            ));
        }
        // The parse error could quote the URL, and the URL may hold a password.
        let client =
            Client::open(url).map_err(|_| StoreError("store.url is not a valid redis:// or rediss:// URL".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(IO_TIMEOUT))
            .set_response_timeout(Some(IO_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = match tokio::time::timeout(OP_TIMEOUT * 2, ConnectionManager::new_with_config(client, config)).await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(store_error(&e)),
            Err(_) => return Err(timed_out()),
        };
        let store = Self {
            conn,
            prefix: prefix.to_owned(),
            instance: instance.to_owned(),
            head: Arc::new(Mutex::new(Head {
                seq: 0,
                hash: GENESIS.to_owned(),
                dirty: true,
            })),
            sink: None,
            queue: OnceLock::new(),
            revoke_script: Script::new(&format!("{REVOKE_FN_LUA}{REVOKE_LUA}")),
        };
        store.load_head(&mut *store.head.lock().await).await?;
        Ok(store)
    }

    /// Also write every record and checkpoint of this instance to `sink`.
    pub fn with_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    fn stream_key(&self, instance: &str) -> String {
        format!("{}audit:{instance}", self.prefix)
    }

    fn head_key(&self) -> String {
        format!("{}audit:{}:head", self.prefix, self.instance)
    }

    fn txn_key(&self, txn: &str) -> String {
        format!("{}audit:txn:{txn}", self.prefix)
    }

    fn checkpoints_key(&self, instance: &str) -> String {
        format!("{}audit:{instance}:checkpoints", self.prefix)
    }

    fn instances_key(&self) -> String {
        format!("{}audit:instances", self.prefix)
    }

    fn time_index_key(&self) -> String {
        format!("{}audit:time", self.prefix)
    }

    /// Length-prefixed, so no subject can name another index.
    fn sub_index_key(&self, sub: &str) -> String {
        format!("{}audit:sub:{}:{sub}", self.prefix, sub.len())
    }

    fn jti_key(&self, jti: &str) -> String {
        format!("{}audit:jti:{jti}", self.prefix)
    }

    /// A key the commit script names for an absent index and never writes.
    fn placeholder_key(&self) -> String {
        format!("{}audit:none", self.prefix)
    }

    fn noise_key(&self) -> String {
        format!("{}noise", self.prefix)
    }

    fn mark_key(&self, key: &str) -> String {
        format!("{}mark:{key}", self.prefix)
    }

    fn revocation_key(&self, r: &Revocation) -> String {
        format!("{}rev:{}", self.prefix, revocation_key(r))
    }

    /// Run one operation under `OP_TIMEOUT` (see [`run`]).
    async fn run<T, F, Fut>(&self, retry: Retry, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        run(&self.conn, retry, op).await
    }

    /// Replace the in-memory head with the one in Redis.
    async fn load_head(&self, head: &mut Head) -> Result<(), StoreError> {
        load_head(&self.conn, &self.head_key(), head).await
    }

    /// The records named by references `{instance}|{stream id}`, in the
    /// given order, in one pipelined round trip. A reference whose entry
    /// was trimmed (retention) is skipped.
    async fn fetch_refs(&self, refs: &[String]) -> Result<Vec<AuditRecord>, StoreError> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = ::redis::pipe();
        for r in refs {
            let (instance, id) = r
                .rsplit_once('|')
                .ok_or_else(|| StoreError("an audit index in redis holds a malformed reference".into()))?;
            pipe.cmd("XRANGE").arg(self.stream_key(instance)).arg(id).arg(id);
        }
        let pipe = &pipe;
        let entries: Vec<Vec<(String, Vec<String>)>> = self
            .run(Retry::Idempotent, |mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut records = Vec::with_capacity(entries.len());
        for entry in entries {
            if let Some((_, fields)) = entry.first() {
                records.push(record_field(fields)?);
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn commit(&self, plan: CommitPlan<'_>, record: AuditRecord) -> Result<Commit, StoreError> {
        let grant = plan.mode == Mode::Grant;
        // A denial checks no guard and applies no effect.
        let (guards, effects) = if grant {
            (plan.guards, plan.effects)
        } else {
            (&[][..], &[][..])
        };
        let marks = plan
            .marks
            .iter()
            .map(|m| {
                (
                    self.mark_key(&m.key),
                    m.expires_at.saturating_mul(1000),
                    m.authenticates,
                )
            })
            .collect();
        // Each guard's revocation keys; an absent jti/txn names a key that
        // is never set.
        let or_none = |k: Option<Revocation>| match k {
            Some(r) => self.revocation_key(&r),
            None => format!("{}rev:none", self.prefix),
        };
        let guards = guards
            .iter()
            .map(|g| {
                (
                    [
                        or_none(g.jti.clone().map(Revocation::Jti)),
                        or_none(g.txn.clone().map(Revocation::Txn)),
                        format!("{}rev:{}", self.prefix, subject_key(&g.principal)),
                    ],
                    g.iat.map(|i| i.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        let effects = effects
            .iter()
            .map(|e| {
                let (value, is_cutoff) = revocation_value(&e.revocation);
                (
                    self.revocation_key(&e.revocation),
                    e.expires_at.saturating_mul(1000),
                    value,
                    is_cutoff,
                )
            })
            .collect();
        let jti_key = record.issued_jti.as_deref().map(|j| self.jti_key(j));
        // A token may be reported on (tool calls) for a day past its exp.
        let jti_until = match (record.issued_exp, &jti_key) {
            (Some(exp), Some(_)) => (exp.saturating_add(JTI_REPORT_GRACE_SECS))
                .saturating_mul(1000)
                .to_string(),
            _ => String::new(),
        };
        let prepared = commit::Prepared {
            grant,
            marks,
            guards,
            effects,
            txn_key: record.txn.as_deref().map(|t| self.txn_key(t)),
            sub_key: record.sub.as_deref().map(|s| self.sub_index_key(s)),
            jti_key,
            jti_until,
            time_ms: record.time_ms(),
            record,
        };
        let queue = self.queue.get_or_init(|| {
            commit::Committer {
                conn: self.conn.clone(),
                instance: self.instance.clone(),
                head: self.head.clone(),
                head_key: self.head_key(),
                stream_key: self.stream_key(&self.instance),
                instances_key: self.instances_key(),
                time_key: self.time_index_key(),
                placeholder: self.placeholder_key(),
                sink: self.sink.clone(),
            }
            .spawn()
        });
        queue.commit(prepared).await
    }

    async fn revoke(&self, revocation: Revocation, expires_at: i64) -> Result<(), StoreError> {
        let key = self.revocation_key(&revocation);
        let (value, is_cutoff) = revocation_value(&revocation);
        let mut invocation = self.revoke_script.prepare_invoke();
        invocation
            .key(&key)
            .arg(expires_at.saturating_mul(1000))
            .arg(value)
            .arg(if is_cutoff { "1" } else { "0" });
        let invocation = &invocation;
        self.run(Retry::Idempotent, |mut c| async move {
            invocation.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    async fn is_revoked(&self, token: TokenRef<'_>, _now: i64) -> Result<bool, StoreError> {
        let jti = token.jti.map(|j| self.revocation_key(&Revocation::Jti(j.to_owned())));
        let txn = token.txn.map(|t| self.revocation_key(&Revocation::Txn(t.to_owned())));
        let sub = format!("{}rev:{}", self.prefix, subject_key(token.principal));
        let keys: Vec<&String> = jti.iter().chain(txn.iter()).chain([&sub]).collect();
        let keys = &keys;
        let values: Vec<Option<String>> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("MGET").arg(keys).query_async(&mut c).await
            })
            .await?;
        let Some((cutoff, by_id)) = values.split_last() else {
            return Err(StoreError("redis MGET returned no values".into()));
        };
        if by_id.iter().any(Option::is_some) {
            return Ok(true);
        }
        match cutoff {
            None => Ok(false),
            Some(cut) => {
                let cut: i64 = cut
                    .parse()
                    .map_err(|_| StoreError("a subject revocation in redis is malformed".into()))?;
                Ok(issued_before_cutoff(cut, token.iat))
            }
        }
    }

    async fn audit_by_txn(&self, txn: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let key = &self.txn_key(txn);
        let refs: Vec<String> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("LRANGE")
                    .arg(key)
                    .arg(0)
                    .arg(MAX_TRACE_RECORDS - 1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        self.fetch_refs(&refs).await
    }

    async fn audit_chain_page(
        &self,
        instance: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ChainPage, StoreError> {
        let key = &self.stream_key(instance);
        // A stream id is `ms-n`; anything else was never given by this store.
        let from = match cursor {
            None => "-".to_owned(),
            Some(c) if is_stream_id(c) => format!("({c}"),
            Some(_) => return Ok(ChainPage::default()),
        };
        let from = &from;
        let page: Vec<(String, Vec<String>)> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("XRANGE")
                    .arg(key)
                    .arg(from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let next_cursor = (page.len() == limit)
            .then(|| page.last().map(|(id, _)| id.clone()))
            .flatten();
        let mut records = Vec::with_capacity(page.len());
        for (_, fields) in page {
            records.push(record_field(&fields)?);
        }
        Ok(ChainPage { records, next_cursor })
    }

    async fn audit_search(&self, q: &SearchQuery) -> Result<SearchPage, StoreError> {
        let key = &match &q.sub {
            Some(sub) => self.sub_index_key(sub),
            None => self.time_index_key(),
        };
        // Cursor: `{score}:{ref}` of the last entry returned. Entries of one
        // score come in member order, so the ones up to it are skipped.
        let (from, last) = match q.cursor.as_deref() {
            None => (q.since_ms, None),
            Some(c) => match c.split_once(':').and_then(|(s, r)| Some((s.parse::<i64>().ok()?, r))) {
                Some((score, member)) => (score.max(q.since_ms), Some((score, member.to_owned()))),
                None => return Ok(SearchPage::default()),
            },
        };
        let mut refs: Vec<(String, i64)> = Vec::new();
        let mut offset = 0usize;
        let mut more = false;
        loop {
            let (from, until, off, count) = (from, q.until_ms, offset, q.limit + 1);
            let batch: Vec<(String, f64)> = self
                .run(Retry::Idempotent, |mut c| async move {
                    ::redis::cmd("ZRANGE")
                        .arg(key)
                        .arg(from)
                        .arg(format!("({until}"))
                        .arg("BYSCORE")
                        .arg("LIMIT")
                        .arg(off)
                        .arg(count)
                        .arg("WITHSCORES")
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let full = batch.len() == count;
            offset += batch.len();
            for (member, score) in batch {
                let score = score as i64;
                if last
                    .as_ref()
                    .is_some_and(|(s, m)| score == *s && member.as_str() <= m.as_str())
                {
                    continue;
                }
                if refs.len() == q.limit {
                    more = true;
                    break;
                }
                refs.push((member, score));
            }
            if more || !full {
                break;
            }
        }
        let next_cursor = if more {
            refs.last().map(|(m, s)| format!("{s}:{m}"))
        } else {
            None
        };
        let names: Vec<String> = refs.into_iter().map(|(m, _)| m).collect();
        let mut records = self.fetch_refs(&names).await?;
        if let Some(iss) = &q.iss {
            records.retain(|r| r.sub_iss.as_deref() == Some(iss.as_str()));
        }
        Ok(SearchPage { records, next_cursor })
    }

    async fn audit_by_issued_jti(&self, jti: &str) -> Result<Option<AuditRecord>, StoreError> {
        let key = &self.jti_key(jti);
        let reference: Option<String> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("GET").arg(key).query_async(&mut c).await
            })
            .await?;
        match reference {
            None => Ok(None),
            Some(r) => Ok(self.fetch_refs(&[r]).await?.into_iter().next()),
        }
    }

    async fn audit_instances(&self) -> Result<Vec<String>, StoreError> {
        let key = &self.instances_key();
        let mut names: Vec<String> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("SMEMBERS").arg(key).query_async(&mut c).await
            })
            .await?;
        names.sort();
        Ok(names)
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let mut head = tokio::time::timeout(OP_TIMEOUT, self.head.lock())
            .await
            .map_err(|_| StoreError("the audit chain is busy: earlier commits are waiting on redis".into()))?;
        if head.dirty {
            self.load_head(&mut head).await?;
        }
        Ok((head.seq, head.hash.clone()))
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let json = serde_json::to_string(checkpoint).map_err(|_| StoreError("checkpoint not serialisable".into()))?;
        let key = &self.checkpoints_key(&checkpoint.instance);
        // Under the chain's lock: the file gets it in order with the records.
        let _head = tokio::time::timeout(OP_TIMEOUT, self.head.lock())
            .await
            .map_err(|_| StoreError("the audit chain is busy: earlier commits are waiting on redis".into()))?;
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("RPUSH")
            .arg(key)
            .arg(&json)
            .ignore()
            .cmd("LTRIM")
            .arg(key)
            .arg(-MAX_CHECKPOINTS)
            .arg(-1)
            .ignore()
            .cmd("PEXPIRE")
            .arg(key)
            .arg(AUDIT_RETENTION.as_millis() as u64)
            .ignore();
        let pipe = &pipe;
        self.run(Retry::IfUnsent, |mut c| async move { pipe.exec_async(&mut c).await })
            .await?;
        if let Some(sink) = &self.sink {
            sink.append_checkpoint(checkpoint).map_err(|e| sink_error(&e))?;
        }
        Ok(())
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        let key = &self.checkpoints_key(instance);
        let raw: Vec<String> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("LRANGE").arg(key).arg(0).arg(-1).query_async(&mut c).await
            })
            .await?;
        raw.iter()
            .map(|j| serde_json::from_str(j).map_err(|_| StoreError("a checkpoint in redis is unreadable".into())))
            .collect()
    }

    async fn audit_chain(&self, instance: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let key = &self.stream_key(instance);
        let mut records = Vec::new();
        let mut start = "-".to_owned();
        loop {
            let from = &start;
            let page: Vec<(String, Vec<String>)> = self
                .run(Retry::Idempotent, |mut c| async move {
                    ::redis::cmd("XRANGE")
                        .arg(key)
                        .arg(from)
                        .arg("+")
                        .arg("COUNT")
                        .arg(CHAIN_PAGE)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            let full = page.len() == CHAIN_PAGE;
            let Some(last_id) = page.last().map(|(id, _)| id.clone()) else {
                break;
            };
            for (_, fields) in page {
                records.push(record_field(&fields)?);
            }
            if !full {
                break;
            }
            start = format!("({last_id}");
        }
        Ok(records)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run(Retry::Idempotent, |mut c| async move {
            ::redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(|_| ())
    }

    async fn append_unauthenticated(&self, summaries: &[NoiseSummary], retention: Duration) -> Result<(), StoreError> {
        let key = &self.noise_key();
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX).max(1);
        for batch in summaries.chunks(NOISE_BATCH) {
            // The broker's clock, not Redis's: a few seconds of skew do not
            // matter against a retention of hours.
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0);
            let until = now_ms.saturating_add(retention_ms);
            let mut pipe = ::redis::pipe();
            for s in batch {
                let json = serde_json::to_string(s).map_err(|_| StoreError("noise summary not serialisable".into()))?;
                pipe.cmd("XADD")
                    .arg(key)
                    .arg("MINID")
                    .arg("~")
                    .arg(now_ms.saturating_sub(retention_ms))
                    .arg("*")
                    .arg("until")
                    .arg(until)
                    .arg("summary")
                    .arg(json)
                    .ignore();
            }
            pipe.cmd("XTRIM")
                .arg(key)
                .arg("MAXLEN")
                .arg("~")
                .arg(NOISE_MAX_ENTRIES)
                .ignore();
            pipe.cmd("PEXPIRE").arg(key).arg(retention_ms).ignore();
            let pipe = &pipe;
            // Sent at most once: a repeated batch would double its counts.
            self.run(Retry::IfUnsent, |mut c| async move { pipe.exec_async(&mut c).await })
                .await?;
        }
        Ok(())
    }

    async fn unauthenticated(&self, limit: usize) -> Result<Vec<NoiseSummary>, StoreError> {
        let key = &self.noise_key();
        let entries: Vec<(String, Vec<String>)> = self
            .run(Retry::Idempotent, |mut c| async move {
                ::redis::cmd("XREVRANGE")
                    .arg(key)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let unreadable = || StoreError("a noise summary in redis is unreadable".into());
        let mut out = Vec::with_capacity(entries.len());
        for (_, fields) in entries {
            let field = |name: &str| {
                fields
                    .chunks(2)
                    .find(|kv| kv[0] == name)
                    .and_then(|kv| kv.get(1))
                    .ok_or_else(unreadable)
            };
            // `MINID ~` trims whole nodes: an entry past its retention may
            // linger until the next append, but is never returned.
            let until: u64 = field("until")?.parse().map_err(|_| unreadable())?;
            if until > now_ms {
                out.push(serde_json::from_str(field("summary")?).map_err(|_| unreadable())?);
            }
        }
        Ok(out)
    }
}

/// Run one operation under `OP_TIMEOUT`, trying once more when `retry`
/// says a failure can be retried safely (the manager reconnects after the
/// first failure, so the second try usually meets a live Redis).
async fn run<T, F, Fut>(conn: &ConnectionManager, retry: Retry, op: F) -> Result<T, StoreError>
where
    F: Fn(ConnectionManager) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let attempt = async {
        match op(conn.clone()).await {
            Err(e) if retry.allows(&e) => op(conn.clone()).await,
            other => other,
        }
    };
    match tokio::time::timeout(OP_TIMEOUT, attempt).await {
        Ok(result) => result.map_err(|e| store_error(&e)),
        Err(_) => Err(timed_out()),
    }
}

/// Replace `head` with the chain head stored at `key`.
async fn load_head(conn: &ConnectionManager, key: &str, head: &mut Head) -> Result<(), StoreError> {
    let (seq, hash): (Option<String>, Option<String>) = run(conn, Retry::Idempotent, |mut c| async move {
        ::redis::cmd("HMGET")
            .arg(key)
            .arg("seq")
            .arg("hash")
            .query_async(&mut c)
            .await
    })
    .await?;
    (head.seq, head.hash) = match (seq, hash) {
        (Some(seq), Some(hash)) => (
            seq.parse()
                .map_err(|_| StoreError("the audit chain head in redis is malformed".into()))?,
            hash,
        ),
        _ => (0, GENESIS.to_owned()),
    };
    head.dirty = false;
    Ok(())
}

/// The record of a stream entry: fields come as `[name, value, …]`, the
/// record's JSON under `record`.
fn record_field(fields: &[String]) -> Result<AuditRecord, StoreError> {
    let json = fields
        .chunks(2)
        .find(|kv| kv[0] == "record")
        .and_then(|kv| kv.get(1))
        .ok_or_else(|| StoreError("an audit stream entry in redis has no record".into()))?;
    serde_json::from_str(json).map_err(|_| StoreError("an audit record in redis is unreadable".into()))
}

/// `ms-n`, as Redis stream ids are.
fn is_stream_id(s: &str) -> bool {
    s.split_once('-').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
    })
}

/// The value a revocation key holds: the subject cut-off, or `0`.
fn revocation_value(r: &Revocation) -> (i64, bool) {
    match r {
        Revocation::SubjectBefore { before, .. } => (*before, true),
        _ => (0, false),
    }
}

/// What went wrong, by kind only: a server's detail can quote a key or a
/// value, and a connection error the address.
fn store_error(e: &RedisError) -> StoreError {
    let hint = if e.is_connection_refusal() {
        ", connection refused"
    } else if e.is_timeout() {
        ", timed out"
    } else if e.is_connection_dropped() {
        ", connection lost"
    } else {
        ""
    };
    let code = e.code().map(|c| format!(" {c}")).unwrap_or_default();
    StoreError(format!("redis error ({:?}{code}{hint})", e.kind()))
}

fn timed_out() -> StoreError {
    StoreError(format!("redis did not answer within {}s", OP_TIMEOUT.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rediss_urls_are_understood() {
        // Fails with "can't connect with TLS, the feature is not enabled"
        // when the TLS feature is missing from Cargo.toml.
        assert!(Client::open("rediss://:pw@redis.example.com:6380/0").is_ok());
    }

    #[test]
    fn errors_carry_the_kind_but_never_the_detail() {
        let e = RedisError::from((
            ::redis::ErrorKind::AuthenticationFailed,
            "auth failed",
            "password hunter2 for redis://:hunter2@host".to_owned(),
        ));
        let msg = store_error(&e).to_string();
        assert!(msg.contains("AuthenticationFailed"), "{msg}");
        assert!(!msg.contains("hunter2") && !msg.contains("host"), "{msg}");
    }
}

//! Group commit: this instance's commits to Redis, many per round trip.
//!
//! Owns: the commit Lua script, the queue that requests put their prepared
//! commits on, and the one task per instance (the committer) that takes
//! every commit waiting, seals their records in queue order after the chain
//! head, and sends them to Redis in one script call. While a batch is in
//! flight the next one gathers, so under load a round trip carries as many
//! commits as arrived during the last one, and with one request at a time
//! a commit goes out at once (no timer, no added latency).
//!
//! Why: each instance's audit records form one hash chain, so a record can
//! only be sealed once the one before it is known. Sealing per request
//! under a lock held across the Redis round trip capped an instance at one
//! commit per round trip (issue 12: Redis mode ran at 0.36 of memory mode).
//!
//! The guarantees are those of one commit at a time, commit by commit:
//! - the script runs each commit's checks (guards, then marks) before that
//!   commit's first write, and the commits in queue order, so a commit sees
//!   every earlier one (two requests spending the same mark in one batch:
//!   the second is `Replayed`);
//! - a refused commit (replayed mark, revoked guard) writes nothing: the
//!   script stops there, keeps what the commits before it wrote (a whole
//!   prefix of the chain), and answers how far it got; the committer
//!   answers the refused request and reseals the rest after the new head;
//! - a request is answered `Done` only once the script said its record and
//!   marks are in Redis (and, with an audit file, once the file has it);
//! - the chain head moves only with a written record (`-2`: someone else
//!   appended as this instance, reload and reseal).
//!
//! Must never: answer a request before the script has answered for it, or
//! reorder commits (the chain's order is the queue's).

use std::collections::VecDeque;
use std::sync::Arc;

use ::redis::Script;
use ::redis::aio::ConnectionManager;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::{HEAD_CONFLICT_RETRIES, Head, OP_TIMEOUT, REVOKE_FN_LUA, Retry, load_head, run};
use crate::audit::AuditRecord;
use crate::store::{AuditSink, Commit, StoreError, sink_error};

/// Most commits in one script call: a batch holds Redis for its whole run,
/// so a huge one would stall every other client of that Redis.
const MAX_BATCH: usize = 128;

/// Commits waiting for the committer. Past this a request waits for room
/// (up to `OP_TIMEOUT`), then fails closed.
const QUEUE: usize = 1024;

/// The commit script (after `REVOKE_FN_LUA`), for a batch of commits.
///
/// ARGV: the number of commits, the expected head hash, retention (ms),
/// instance; then per commit: mode (`grant`/`deny`), n marks, g guards, r
/// effects; per mark its deadline (Unix ms) and `1` if it authenticates;
/// per guard its iat (or ""); per effect keep-until (Unix ms), value and
/// `1` for a subject cut-off; then seq, hash, record JSON, record time
/// (Unix ms), the issued jti's keep-until (Unix ms, or "" when nothing was
/// issued), `1` when the record has a txn, `1` when it has a sub.
/// KEYS: stream, head, the instances set, the time index; then per commit
/// its n mark keys, per guard its jti, txn and subject revocation keys, its
/// r effect keys, the txn list, the user's index and the jti key (the last
/// three a never-written placeholder when absent).
///
/// Returns `{done, code}`: the first `done` commits were written, and
/// `code` says why it stopped: `-1` all written; `-2` the head is not the
/// one the batch was sealed after (nothing written); `-3` a key of commit
/// `done + 1` holds the wrong type; `-4` a key of the chain holds the wrong
/// type (nothing written); `i ≥ 0` (0-based) mark i of commit `done + 1` is
/// already set; `-(100 + j)` its guard j names a revoked token. Each
/// commit's checks run before its first write, so a refused commit writes
/// nothing. In `deny` mode only authenticating marks are checked, and the
/// others are set only if absent.
const COMMIT_LUA: &str = r#"
local c, prev, retention, instance = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4]
local stream, head, instances, timez = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local current = redis.call('HGET', head, 'hash')
if current and current ~= prev then return {0, -2} end
-- A key of the wrong type would fail mid-script after earlier writes.
local function is(key, kind)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == kind
end
if not (is(stream, 'stream') and is(head, 'hash') and is(instances, 'set') and is(timez, 'zset')) then
  return {0, -4}
end
local min_id = string.format('%.0f', math.max(0, now - retention))
local keep = string.format('%.0f', now + retention)
local done, last_seq, last_hash = 0, nil, nil
-- The txn lists and user indexes appended to: each expired (and trimmed)
-- once per batch, however many of its commits touched it.
local touched_txns, touched_subs = {}, {}
-- What the commits written so far share, written once per batch.
local function finish(code)
  for txn in pairs(touched_txns) do
    redis.call('PEXPIREAT', txn, keep)
  end
  for subz in pairs(touched_subs) do
    redis.call('ZREMRANGEBYSCORE', subz, '-inf', '(' .. min_id)
    redis.call('PEXPIREAT', subz, keep)
  end
  if done > 0 then
    redis.call('HSET', head, 'seq', last_seq, 'hash', last_hash)
    -- An instance that stops writing (a retired XAA_INSTANCE) fades after
    -- the retention period instead of leaving its chain behind for ever.
    redis.call('PEXPIREAT', stream, keep)
    redis.call('PEXPIREAT', head, keep)
    redis.call('SADD', instances, instance)
    redis.call('PEXPIREAT', instances, keep)
    redis.call('ZREMRANGEBYSCORE', timez, '-inf', '(' .. min_id)
    redis.call('PEXPIREAT', timez, keep)
  end
  return {done, code}
end
local a, k = 4, 4
for x = 1, c do
  local mode, n, g, r = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local ma = a + 4
  local ga = ma + 2 * n
  local ea = ga + g
  local ta = ea + 3 * r
  local gk = k + n
  local ek = gk + 3 * g
  local tk = ek + r
  local seq, hash, json, time_ms, jti_until = ARGV[ta + 1], ARGV[ta + 2], ARGV[ta + 3], ARGV[ta + 4], ARGV[ta + 5]
  local has_txn, has_sub = ARGV[ta + 6] == '1', ARGV[ta + 7] == '1'
  local txn, subz, jti = KEYS[tk + 1], KEYS[tk + 2], KEYS[tk + 3]
  if mode == 'grant' then
    for j = 1, g do
      local b = gk + 3 * (j - 1)
      local rev = redis.call('MGET', KEYS[b + 1], KEYS[b + 2], KEYS[b + 3])
      if rev[1] or rev[2] then return finish(-(99 + j)) end
      local cut, iat = rev[3], ARGV[ga + j]
      -- store::issued_before_cutoff: a token without iat cannot prove it
      -- came after the cut-off.
      if cut and (iat == '' or tonumber(iat) <= tonumber(cut)) then return finish(-(99 + j)) end
    end
    for i = 1, n do
      if redis.call('EXISTS', KEYS[k + i]) == 1 then return finish(i - 1) end
    end
  else
    for i = 1, n do
      if ARGV[ma + 2 * i] == '1' and redis.call('EXISTS', KEYS[k + i]) == 1 then return finish(i - 1) end
    end
  end
  -- (The jti key needs no check: SET replaces a value of any type.)
  if not ((not has_txn or is(txn, 'list')) and (not has_sub or is(subz, 'zset'))) then
    return finish(-3)
  end
  for i = 1, n do
    -- A deadline already past is a mark that would be gone at once.
    local at = ARGV[ma + 2 * i - 1]
    if tonumber(at) > now then
      if mode == 'grant' then
        redis.call('SET', KEYS[k + i], '1', 'PXAT', at)
      else
        redis.call('SET', KEYS[k + i], '1', 'PXAT', at, 'NX')
      end
    end
  end
  if mode == 'grant' then
    for e = 1, r do
      local b = ea + 3 * (e - 1)
      revoke(KEYS[ek + e], tonumber(ARGV[b + 1]), ARGV[b + 2], ARGV[b + 3], now)
    end
  end
  local id = redis.call('XADD', stream, 'MINID', '~', min_id, '*', 'record', json)
  local ref = instance .. '|' .. id
  redis.call('ZADD', timez, time_ms, ref)
  if has_txn then
    redis.call('RPUSH', txn, ref)
    touched_txns[txn] = true
  end
  if has_sub then
    redis.call('ZADD', subz, time_ms, ref)
    touched_subs[subz] = true
  end
  if jti_until ~= '' and tonumber(jti_until) > now then
    redis.call('SET', jti, ref, 'PXAT', jti_until)
  end
  done, last_seq, last_hash = x, seq, hash
  a, k = ta + 7, tk + 3
end
return finish(-1)
"#;

/// One request's commit with every key and argument worked out (in the
/// request's task, so the committer only seals and sends).
pub(super) struct Prepared {
    pub grant: bool,
    /// Key, deadline (Unix ms), whether it authenticates.
    pub marks: Vec<(String, i64, bool)>,
    /// The jti, txn and subject revocation keys, and the token's iat ("").
    pub guards: Vec<([String; 3], String)>,
    /// Key, keep-until (Unix ms), value, whether it is a subject cut-off.
    pub effects: Vec<(String, i64, i64, bool)>,
    pub txn_key: Option<String>,
    pub sub_key: Option<String>,
    pub jti_key: Option<String>,
    /// Unix ms, or "" when nothing was issued.
    pub jti_until: String,
    pub time_ms: i64,
    pub record: AuditRecord,
}

struct Job {
    commit: Prepared,
    /// The record's JSON as sealed for the batch being sent (for the file).
    sealed: String,
    reply: oneshot::Sender<Result<Commit, StoreError>>,
}

/// The queue into this instance's committer.
pub(super) struct Queue(mpsc::Sender<Job>);

impl Queue {
    /// Hand `commit` to the committer and wait for its outcome. Bounded: a
    /// full queue (Redis slow or gone) fails closed after `OP_TIMEOUT`, and
    /// the answer comes within two operations (the batch in flight, then
    /// this one's), else the request fails closed. A request that gave up
    /// before its batch formed is left out of it (nothing written).
    pub async fn commit(&self, commit: Prepared) -> Result<Commit, StoreError> {
        let (reply, answer) = oneshot::channel();
        match tokio::time::timeout(
            OP_TIMEOUT,
            self.0.send(Job {
                commit,
                sealed: String::new(),
                reply,
            }),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError("the audit committer has stopped".into())),
            Err(_) => return Err(busy()),
        }
        match tokio::time::timeout(OP_TIMEOUT * 2 + OP_TIMEOUT / 2, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(StoreError("the audit committer has stopped".into())),
            Err(_) => Err(busy()),
        }
    }
}

fn busy() -> StoreError {
    StoreError("the audit chain is busy: earlier commits are waiting on redis".into())
}

/// This instance's committer: the only writer of its chain head while it
/// runs (the head's lock is held across a batch; checkpoints take it
/// between batches).
pub(super) struct Committer {
    pub conn: ConnectionManager,
    pub instance: String,
    pub head: Arc<Mutex<Head>>,
    pub head_key: String,
    pub stream_key: String,
    pub instances_key: String,
    pub time_key: String,
    pub placeholder: String,
    pub sink: Option<Arc<dyn AuditSink>>,
}

impl Committer {
    /// Start the task; it ends when the queue's last sender is dropped.
    pub fn spawn(self) -> Queue {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(self.run(rx));
        Queue(tx)
    }

    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let script = Script::new(&format!("{REVOKE_FN_LUA}{COMMIT_LUA}"));
        let mut batch = VecDeque::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push_back(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push_back(job),
                    Err(_) => break,
                }
            }
            // Gone (timed out, client disconnected): write nothing for it.
            batch.retain(|job| !job.reply.is_closed());
            if batch.is_empty() {
                continue;
            }
            let mut head = self.head.lock().await;
            self.commit_batch(&script, &mut head, &mut batch).await;
            drop(head);
        }
    }

    /// Commit every job of `batch`, answering each; `batch` is empty after.
    async fn commit_batch(&self, script: &Script, head: &mut Head, batch: &mut VecDeque<Job>) {
        if let Some(sink) = &self.sink
            && let Err(e) = sink.ready()
        {
            return fail_all(batch, &sink_error(&e));
        }
        let mut conflicts = 0;
        while !batch.is_empty() {
            if head.dirty
                && let Err(e) = load_head(&self.conn, &self.head_key, head).await
            {
                return fail_all(batch, &e);
            }
            let invocation = match self.invocation(script, head, batch) {
                Ok(i) => i,
                Err(e) => return fail_all(batch, &e),
            };
            let invocation = &invocation;
            // Dirty until the outcome is known: on an error or a timeout
            // the script may have run.
            head.dirty = true;
            let (done, code) = match run(&self.conn, Retry::IfUnsent, |mut c| async move {
                invocation.invoke_async::<(i64, i64)>(&mut c).await
            })
            .await
            {
                Ok(outcome) => outcome,
                Err(e) => return fail_all(batch, &e),
            };
            let done = usize::try_from(done).unwrap_or(usize::MAX);
            if done > batch.len() {
                return fail_all(batch, &unexpected());
            }
            head.dirty = false;
            for job in batch.drain(..done) {
                head.seq = job.commit.record.seq;
                head.hash.clone_from(&job.commit.record.hash);
                // In the chain's order, so the file's order is the chain's.
                // The record is in Redis; if the file cannot take it the
                // sink keeps it for the next write, and this request fails
                // closed.
                let outcome = match &self.sink {
                    Some(sink) => match sink.append_record(&job.sealed) {
                        Ok(()) => Ok(Commit::Done(job.commit.record)),
                        Err(e) => Err(sink_error(&e)),
                    },
                    None => Ok(Commit::Done(job.commit.record)),
                };
                let _ = job.reply.send(outcome);
            }
            match code {
                -1 if batch.is_empty() => return,
                -2 if done == 0 => {
                    // Someone else appended as this instance: reseal after theirs.
                    tracing::warn!(instance = %self.instance, "audit chain head moved in redis; is another process using this XAA_INSTANCE?");
                    head.dirty = true;
                    conflicts += 1;
                    if conflicts >= HEAD_CONFLICT_RETRIES {
                        return fail_all(
                            batch,
                            &StoreError(
                                "the audit chain head kept moving; another process is using this XAA_INSTANCE".into(),
                            ),
                        );
                    }
                }
                -3 => answer_first(batch, Err(wrong_type())),
                -4 if done == 0 => return fail_all(batch, &wrong_type()),
                i if i >= 0 => {
                    let Some(job) = batch.front() else { return };
                    if (i as usize) < job.commit.marks.len() {
                        answer_first(batch, Ok(Commit::Replayed { index: i as usize }));
                    } else {
                        return fail_all(batch, &unexpected());
                    }
                }
                i if i <= -100 => {
                    let index = (-i - 100) as usize;
                    let Some(job) = batch.front() else { return };
                    if job.commit.grant && index < job.commit.guards.len() {
                        answer_first(batch, Ok(Commit::Revoked { index }));
                    } else {
                        return fail_all(batch, &unexpected());
                    }
                }
                _ => return fail_all(batch, &unexpected()),
            }
        }
    }

    /// Seal every record of `batch` in order after `head`, and build the one
    /// script call that commits them.
    fn invocation<'s>(
        &self,
        script: &'s Script,
        head: &Head,
        batch: &mut VecDeque<Job>,
    ) -> Result<::redis::ScriptInvocation<'s>, StoreError> {
        let mut inv = script.prepare_invoke();
        inv.arg(batch.len())
            .arg(&head.hash)
            .arg(super::AUDIT_RETENTION.as_millis() as i64)
            .arg(&self.instance);
        inv.key(&self.stream_key)
            .key(&self.head_key)
            .key(&self.instances_key)
            .key(&self.time_key);
        let (mut seq, mut prev) = (head.seq, head.hash.clone());
        for job in batch.iter_mut() {
            let c = &mut job.commit;
            seq += 1;
            let json = c.record.seal(&self.instance, seq, &prev);
            if json.is_empty() {
                return Err(StoreError("audit record not serialisable".into()));
            }
            prev.clone_from(&c.record.hash);
            inv.arg(if c.grant { "grant" } else { "deny" })
                .arg(c.marks.len())
                .arg(c.guards.len())
                .arg(c.effects.len());
            for (key, at, authenticates) in &c.marks {
                inv.arg(at).arg(u8::from(*authenticates));
                inv.key(key);
            }
            for (keys, iat) in &c.guards {
                inv.arg(iat);
                inv.key(&keys[0]).key(&keys[1]).key(&keys[2]);
            }
            for (key, at, value, is_cutoff) in &c.effects {
                inv.arg(at).arg(value).arg(if *is_cutoff { "1" } else { "0" });
                inv.key(key);
            }
            inv.arg(seq)
                .arg(&c.record.hash)
                .arg(&json)
                .arg(c.time_ms)
                .arg(&c.jti_until)
                .arg(u8::from(c.txn_key.is_some()))
                .arg(u8::from(c.sub_key.is_some()));
            inv.key(c.txn_key.as_ref().unwrap_or(&self.placeholder))
                .key(c.sub_key.as_ref().unwrap_or(&self.placeholder))
                .key(c.jti_key.as_ref().unwrap_or(&self.placeholder));
            // Kept for the audit file only: it gets the same bytes.
            if self.sink.is_some() {
                job.sealed = json;
            }
        }
        Ok(inv)
    }
}

fn wrong_type() -> StoreError {
    StoreError("redis error (WRONGTYPE: an audit key holds another type)".into())
}

fn unexpected() -> StoreError {
    StoreError("redis commit script returned an unexpected value".into())
}

/// Answer the first job of `batch` (the one the script stopped at).
fn answer_first(batch: &mut VecDeque<Job>, outcome: Result<Commit, StoreError>) {
    if let Some(job) = batch.pop_front() {
        let _ = job.reply.send(outcome);
    }
}

/// Answer every job of `batch` with `e` (nothing of theirs was written, or
/// it is unknown whether it was: either way no token leaves).
fn fail_all(batch: &mut VecDeque<Job>, e: &StoreError) {
    for job in batch.drain(..) {
        let _ = job.reply.send(Err(StoreError(e.0.clone())));
    }
}

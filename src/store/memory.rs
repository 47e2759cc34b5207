//! The in-memory store of the embedded default: one process, no Redis.
//!
//! Owns: expiring maps for replay marks and revocations (a `BTreeSet` of
//! deadlines, as in mini-redis, purged as writes arrive, so memory is bounded
//! by what is still live) and an audit log bounded by bytes, each record
//! kept as its sealed JSON, with a per-txn index; and
//! a ring of at most `MAX_NOISE_SUMMARIES` noise summaries, dropped when
//! their retention ends or the ring is full.
//! Must never: block the runtime for long: every operation holds one
//! `std::sync::Mutex` for a few map operations and never across an await.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{
    AuditSink, ChainPage, Commit, CommitPlan, MAX_TRACE_RECORDS, Mode, Revocation, SearchPage, SearchQuery, Store,
    StoreError, TokenRef, issued_before_cutoff, revocation_key, sink_error, subject_key,
};
use crate::audit::NoiseSummary;
use crate::audit::{AuditRecord, Checkpoint, GENESIS};
use crate::clock::{Clock, SystemClock};

/// Most noise summaries kept: about 250 bytes each.
pub const MAX_NOISE_SUMMARIES: usize = 50_000;

/// An expiring set of keys with values.
#[derive(Default)]
struct Expiring<V> {
    entries: HashMap<String, (i64, V)>,
    deadlines: BTreeSet<(i64, String)>,
}

impl<V> Expiring<V> {
    fn purge(&mut self, now: i64) {
        while let Some((at, key)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if self.entries.get(&key).is_some_and(|(exp, _)| *exp == at) {
                self.entries.remove(&key);
            }
        }
    }

    fn get(&self, key: &str, now: i64) -> Option<&V> {
        self.entries.get(key).filter(|(exp, _)| *exp > now).map(|(_, v)| v)
    }

    fn insert(&mut self, key: String, expires_at: i64, value: V) {
        if let Some((old, _)) = self.entries.get(&key) {
            self.deadlines.remove(&(*old, key.clone()));
        }
        self.deadlines.insert((expires_at, key.clone()));
        self.entries.insert(key, (expires_at, value));
    }
}

/// One record as kept: its sealed JSON, and the few fields the indexes and
/// searches need without parsing it. Keeping the JSON rather than the
/// record makes what the budget counts what the record occupies (a parsed
/// record is several times its JSON, in many small allocations), and a
/// commit moves the JSON in instead of copying the record.
struct Kept {
    seq: u64,
    time_ms: i64,
    sub: Option<Box<str>>,
    sub_iss: Option<Box<str>>,
    txn: Option<Box<str>>,
    issued_jti: Option<Box<str>>,
    json: Box<str>,
}

/// What a kept record costs beyond its strings: the struct and the
/// allocator's per-allocation overhead.
const KEPT_OVERHEAD: usize = 128;

impl Kept {
    fn new(record: &AuditRecord, json: String) -> Self {
        let boxed = |s: &Option<String>| s.as_deref().map(Box::from);
        Self {
            seq: record.seq,
            time_ms: record.time_ms(),
            sub: boxed(&record.sub),
            sub_iss: boxed(&record.sub_iss),
            txn: boxed(&record.txn),
            issued_jti: boxed(&record.issued_jti),
            json: json.into_boxed_str(),
        }
    }

    /// Bytes it weighs in the budget.
    fn size(&self) -> usize {
        let len = |s: &Option<Box<str>>| s.as_ref().map_or(0, |s| s.len());
        KEPT_OVERHEAD + self.json.len() + len(&self.sub) + len(&self.sub_iss) + len(&self.txn) + len(&self.issued_jti)
    }

    fn record(&self) -> Result<AuditRecord, StoreError> {
        serde_json::from_str(&self.json).map_err(|_| StoreError("an audit record in memory is unreadable".into()))
    }
}

struct AuditLog {
    records: VecDeque<Kept>,
    /// The sum of the kept records' sizes.
    bytes: usize,
    by_txn: HashMap<String, Vec<u64>>,
    /// The seq of the record that issued each `jti` still held.
    by_issued_jti: HashMap<String, u64>,
    next_seq: u64,
    last_hash: String,
    /// Oldest first, at most `MAX_CHECKPOINTS`.
    checkpoints: VecDeque<Checkpoint>,
}

impl AuditLog {
    fn get(&self, seq: u64) -> Option<&Kept> {
        let first = self.records.front()?.seq;
        self.records.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    }
}

/// Checkpoints the memory store keeps.
pub const MAX_CHECKPOINTS: usize = 10_000;

struct State {
    marks: Expiring<()>,
    /// Value: for subject revocations, the cut-off time; otherwise 0.
    revocations: Expiring<i64>,
    audit: AuditLog,
}

/// Audit records the memory store keeps at most.
pub const MAX_AUDIT_RECORDS: usize = 100_000;

pub struct MemoryStore {
    instance: String,
    max_audit_records: usize,
    max_audit_bytes: usize,
    state: Mutex<State>,
    /// Noise summaries, oldest first, each with the Unix second it is kept
    /// until. A lock of its own: a flush never waits on commits.
    noise: Mutex<VecDeque<(i64, NoiseSummary)>>,
    /// What "now" is for expiry: the broker's clock, injectable.
    clock: Arc<dyn Clock>,
    /// The audit file, when configured.
    sink: Option<Arc<dyn AuditSink>>,
}

impl MemoryStore {
    pub fn new(instance: impl Into<String>) -> Self {
        Self::with_capacity(instance, MAX_AUDIT_RECORDS)
    }

    /// Oldest audit records are dropped past `max_audit_records` (the memory
    /// store is for one process; durable audit needs Redis).
    pub fn with_capacity(instance: impl Into<String>, max_audit_records: usize) -> Self {
        Self::with_clock(instance, max_audit_records, Arc::new(SystemClock))
    }

    /// As [`MemoryStore::with_capacity`], judging expiry by `clock` (the
    /// broker's: tests move it instead of sleeping).
    pub fn with_clock(instance: impl Into<String>, max_audit_records: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            instance: instance.into(),
            max_audit_records,
            max_audit_bytes: usize::MAX,
            state: Mutex::new(State {
                marks: Expiring::default(),
                revocations: Expiring::default(),
                audit: AuditLog {
                    records: VecDeque::new(),
                    bytes: 0,
                    by_txn: HashMap::new(),
                    by_issued_jti: HashMap::new(),
                    next_seq: 1,
                    last_hash: GENESIS.to_owned(),
                    checkpoints: VecDeque::new(),
                },
            }),
            noise: Mutex::new(VecDeque::new()),
            sink: None,
        }
    }

    /// Keep the oldest audit records only while they total at most `bytes`
    /// (each its sealed JSON plus its index fields and a fixed overhead; the
    /// newest record is always kept): memory stays bounded by what records
    /// weigh, not by how many there are.
    pub fn with_audit_max_bytes(mut self, bytes: usize) -> Self {
        self.max_audit_bytes = bytes;
        self
    }

    /// Also write every record and checkpoint to `sink` (the audit file),
    /// continuing this instance's chain from the last record the sink holds
    /// for it: a restart with the same `XAA_INSTANCE` extends its chain.
    pub fn with_sink(mut self, sink: Arc<dyn AuditSink>) -> Self {
        if let Some((seq, hash)) = sink.head(&self.instance) {
            let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
            st.audit.next_seq = seq + 1;
            st.audit.last_hash = hash;
        }
        self.sink = Some(sink);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A memory cursor is the last `seq` returned; one this store never gave
/// reads as the end (an empty page, not an error).
fn parse_seq_cursor(cursor: Option<&str>) -> u64 {
    cursor.map_or(0, |c| c.parse().unwrap_or(u64::MAX))
}

/// Revoked by jti, by txn, or issued at or before its principal's cut-off
/// (a token without `iat` cannot prove it came after, so it counts as before).
fn revoked(st: &State, token: TokenRef<'_>, now: i64) -> bool {
    let hit = |key: String| st.revocations.get(&key, now).copied();
    if token
        .jti
        .is_some_and(|j| hit(revocation_key(&Revocation::Jti(j.to_owned()))).is_some())
        || token
            .txn
            .is_some_and(|t| hit(revocation_key(&Revocation::Txn(t.to_owned()))).is_some())
    {
        return true;
    }
    hit(subject_key(token.principal)).is_some_and(|cut| issued_before_cutoff(cut, token.iat))
}

/// Record a revocation: an expiry is never shortened and a subject cut-off
/// only moves forward (a later offboarding wins).
fn apply_revocation(st: &mut State, revocation: &Revocation, expires_at: i64, now: i64) {
    st.revocations.purge(now);
    let key = revocation_key(revocation);
    let value = match revocation {
        Revocation::SubjectBefore { before, .. } => {
            let existing = st.revocations.get(&key, now).copied().unwrap_or(i64::MIN);
            (*before).max(existing)
        }
        _ => 0,
    };
    let keep_until = st
        .revocations
        .entries
        .get(&key)
        .map(|(e, _)| (*e).max(expires_at))
        .unwrap_or(expires_at);
    if keep_until > now {
        st.revocations.insert(key, keep_until, value);
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn commit(&self, plan: CommitPlan<'_>, mut record: AuditRecord) -> Result<Commit, StoreError> {
        let now = plan.now;
        let mut st = self.lock();
        if let Some(sink) = &self.sink {
            sink.ready().map_err(|e| sink_error(&e))?;
        }
        st.marks.purge(now);
        let used = |st: &State, i: usize| st.marks.get(&plan.marks[i].key, now).is_some();
        match plan.mode {
            Mode::Grant => {
                if let Some(index) = plan.guards.iter().position(|g| revoked(&st, g.token(), now)) {
                    return Ok(Commit::Revoked { index });
                }
                if let Some(index) = (0..plan.marks.len()).find(|i| used(&st, *i)) {
                    return Ok(Commit::Replayed { index });
                }
                for m in plan.marks {
                    st.marks.insert(m.key.clone(), m.expires_at, ());
                }
                for e in plan.effects {
                    apply_revocation(&mut st, &e.revocation, e.expires_at, now);
                }
            }
            Mode::Deny => {
                if let Some(index) = (0..plan.marks.len()).find(|i| plan.marks[*i].authenticates && used(&st, *i)) {
                    return Ok(Commit::Replayed { index });
                }
                for (i, m) in plan.marks.iter().enumerate() {
                    if !used(&st, i) && m.expires_at > now {
                        st.marks.insert(m.key.clone(), m.expires_at, ());
                    }
                }
            }
        }
        let log = &mut st.audit;
        let seq = log.next_seq;
        let json = record.seal(&self.instance, seq, &log.last_hash);
        if json.is_empty() {
            return Err(StoreError("audit record not serialisable".into()));
        }
        log.next_seq += 1;
        log.last_hash.clone_from(&record.hash);
        if let Some(txn) = &record.txn {
            log.by_txn.entry(txn.clone()).or_default().push(seq);
        }
        if let Some(jti) = &record.issued_jti {
            log.by_issued_jti.insert(jti.clone(), seq);
        }
        // The file gets the line inside the chain's lock, so its order is the
        // chain's; if it cannot take it, the sink keeps it for the next write
        // and this request fails closed (below, once the chain has it).
        let filed = self.sink.as_ref().map(|sink| sink.append_record(&json));
        let kept = Kept::new(&record, json);
        log.bytes += kept.size();
        log.records.push_back(kept);
        while log.records.len() > self.max_audit_records || (log.bytes > self.max_audit_bytes && log.records.len() > 1)
        {
            let Some(old) = log.records.pop_front() else { break };
            log.bytes -= old.size();
            if let Some(jti) = &old.issued_jti {
                log.by_issued_jti.remove(&**jti);
            }
            if let Some(txn) = &old.txn
                && let Some(seqs) = log.by_txn.get_mut(&**txn)
            {
                seqs.retain(|s| *s != old.seq);
                if seqs.is_empty() {
                    log.by_txn.remove(&**txn);
                }
            }
        }
        if let Some(Err(e)) = filed {
            return Err(sink_error(&e));
        }
        Ok(Commit::Done(record))
    }

    async fn revoke(&self, revocation: Revocation, expires_at: i64) -> Result<(), StoreError> {
        apply_revocation(&mut self.lock(), &revocation, expires_at, self.clock.now());
        Ok(())
    }

    async fn is_revoked(&self, token: TokenRef<'_>, now: i64) -> Result<bool, StoreError> {
        Ok(revoked(&self.lock(), token, now))
    }

    async fn audit_by_txn(&self, txn: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let st = self.lock();
        let log = &st.audit;
        let Some(seqs) = log.by_txn.get(txn) else {
            return Ok(Vec::new());
        };
        seqs.iter()
            .filter_map(|s| log.get(*s))
            .take(MAX_TRACE_RECORDS)
            .map(Kept::record)
            .collect()
    }

    async fn audit_chain(&self, instance: &str) -> Result<Vec<AuditRecord>, StoreError> {
        if instance != self.instance {
            return Ok(Vec::new());
        }
        self.lock().audit.records.iter().map(Kept::record).collect()
    }

    async fn audit_chain_page(
        &self,
        instance: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<ChainPage, StoreError> {
        if instance != self.instance {
            return Ok(ChainPage::default());
        }
        let after = parse_seq_cursor(cursor);
        let st = self.lock();
        let records = st
            .audit
            .records
            .iter()
            .filter(|r| r.seq > after)
            .take(limit)
            .map(Kept::record)
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = match records.last() {
            Some(last) if st.audit.records.back().is_some_and(|b| b.seq > last.seq) => Some(last.seq.to_string()),
            _ => None,
        };
        Ok(ChainPage { records, next_cursor })
    }

    async fn audit_search(&self, q: &SearchQuery) -> Result<SearchPage, StoreError> {
        let after = parse_seq_cursor(q.cursor.as_deref());
        let st = self.lock();
        let mut records = Vec::new();
        let mut next_cursor = None;
        for r in st.audit.records.iter().filter(|r| r.seq > after) {
            let t = r.time_ms;
            let matches = t >= q.since_ms
                && t < q.until_ms
                && q.sub.as_deref().is_none_or(|s| r.sub.as_deref() == Some(s))
                && q.iss.as_deref().is_none_or(|i| r.sub_iss.as_deref() == Some(i));
            if !matches {
                continue;
            }
            if records.len() == q.limit {
                next_cursor = records.last().map(|l: &AuditRecord| l.seq.to_string());
                break;
            }
            records.push(r.record()?);
        }
        Ok(SearchPage { records, next_cursor })
    }

    async fn audit_by_issued_jti(&self, jti: &str) -> Result<Option<AuditRecord>, StoreError> {
        let st = self.lock();
        st.audit
            .by_issued_jti
            .get(jti)
            .and_then(|seq| st.audit.get(*seq))
            .map(Kept::record)
            .transpose()
    }

    async fn audit_instances(&self) -> Result<Vec<String>, StoreError> {
        Ok(vec![self.instance.clone()])
    }

    async fn audit_head(&self) -> Result<(u64, String), StoreError> {
        let st = self.lock();
        Ok((st.audit.next_seq - 1, st.audit.last_hash.clone()))
    }

    async fn append_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let mut st = self.lock();
        if let Some(sink) = &self.sink {
            sink.append_checkpoint(checkpoint).map_err(|e| sink_error(&e))?;
        }
        let kept = &mut st.audit.checkpoints;
        kept.push_back(checkpoint.clone());
        while kept.len() > MAX_CHECKPOINTS {
            kept.pop_front();
        }
        Ok(())
    }

    async fn checkpoints(&self, instance: &str) -> Result<Vec<Checkpoint>, StoreError> {
        if instance != self.instance {
            return Ok(Vec::new());
        }
        Ok(self.lock().audit.checkpoints.iter().cloned().collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn append_unauthenticated(&self, summaries: &[NoiseSummary], retention: Duration) -> Result<(), StoreError> {
        let now = self.clock.now();
        let keep_until = now.saturating_add(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
        let mut ring = self.noise.lock().unwrap_or_else(|e| e.into_inner());
        ring.retain(|(until, _)| *until > now);
        ring.extend(summaries.iter().map(|s| (keep_until, s.clone())));
        let excess = ring.len().saturating_sub(MAX_NOISE_SUMMARIES);
        ring.drain(..excess);
        Ok(())
    }

    async fn unauthenticated(&self, limit: usize) -> Result<Vec<NoiseSummary>, StoreError> {
        let now = self.clock.now();
        let ring = self.noise.lock().unwrap_or_else(|e| e.into_inner());
        Ok(ring
            .iter()
            .rev()
            .filter(|(until, _)| *until > now)
            .take(limit)
            .map(|(_, s)| s.clone())
            .collect())
    }
}

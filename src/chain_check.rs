//! Checking one instance's audit chain against its signed checkpoints
//! (`xaa-broker audit verify`, specs/decisions.md §22).
//!
//! Owns: the rules an auditor's check applies to records as they were read
//! (from a file, Redis or the broker's `/audit/chain`) — every record's
//! digest, its `prev_hash` link and `seq` continuity, the first break named
//! by record id and seq with what was expected and what was found — and the
//! checkpoint rules: a checkpoint's JWS (typ `xaa-audit-checkpoint+jwt`, a
//! key of the given set, a payload of exactly its four fields) and that the
//! record at its `seq` exists with exactly its `hash`. What no checkpoint
//! covers is reported as unanchored, never as verified.
//! Must never: do I/O (callers read the sources and hand over plain
//! values), or call a chain good that a checkpoint contradicts.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditRecord, Checkpoint, GENESIS};
use crate::jose::{Alg, UnverifiedJws};
use crate::trust::keyset::KeySet;

/// The JOSE `typ` of a checkpoint: a JWS of this type is never a token.
pub const CHECKPOINT_TYP: &str = "xaa-audit-checkpoint+jwt";

/// What a checkpoint's JWS signs: exactly these members, nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointPayload {
    pub instance: String,
    pub seq: u64,
    pub hash: String,
    pub time: String,
}

impl CheckpointPayload {
    pub fn of(cp: &Checkpoint) -> Self {
        Self {
            instance: cp.instance.clone(),
            seq: cp.seq,
            hash: cp.hash.clone(),
            time: cp.time.clone(),
        }
    }
}

/// Check a checkpoint's signature against `keys`: its own typ, an allowed
/// alg, a `kid` the set holds, a valid signature, and a payload equal to the
/// checkpoint's fields (a stored checkpoint whose fields were edited no
/// longer matches what was signed). The error says which.
pub fn verify_checkpoint(cp: &Checkpoint, keys: &KeySet) -> Result<(), &'static str> {
    let jws = UnverifiedJws::parse(&cp.jws).map_err(|_| "its jws is not a compact JWS")?;
    if jws.header.crit.is_some() {
        return Err("its jws has a crit header");
    }
    if jws.header.media_type().as_deref() != Some(CHECKPOINT_TYP) {
        return Err("its jws is not of typ xaa-audit-checkpoint+jwt");
    }
    let alg = Alg::parse(&jws.header.alg).ok_or("its jws uses an algorithm that is not allowed")?;
    let kid = jws.header.kid.as_deref().ok_or("its jws names no key (kid)")?;
    let verifier = keys
        .find(Some(kid), alg)
        .ok_or("signed by a key not in the audit key set")?;
    if !jws.verify(verifier.as_ref()) {
        return Err("bad signature");
    }
    let signed: CheckpointPayload = serde_json::from_value(serde_json::Value::Object(jws.payload.clone()))
        .map_err(|_| "its signed payload is not exactly {instance, seq, hash, time}")?;
    if signed != CheckpointPayload::of(cp) {
        return Err("its fields differ from what was signed");
    }
    Ok(())
}

/// The audit keys an auditor holds: a JWK Set (`/audit/jwks`) or one
/// public JWK (as `xaa-broker keys generate` prints it).
pub fn audit_key_set(doc: &serde_json::Value) -> Result<KeySet, String> {
    if doc.get("keys").is_some() {
        return KeySet::parse(doc, &Alg::ALL);
    }
    if doc.get("kty").is_some() {
        return KeySet::parse(&serde_json::json!({ "keys": [doc] }), &Alg::ALL);
    }
    Err("neither a JWK Set nor a JWK".into())
}

/// Read one stored record: the record, and whether the text is exactly the
/// JSON it was sealed as. A record with a field added, removed or
/// reordered still hashes by its parsed fields, so only this comparison
/// sees what the hash does not cover.
pub fn parse_record(json: &str) -> Result<(AuditRecord, bool), &'static str> {
    let record: AuditRecord = serde_json::from_str(json).map_err(|_| "not an audit record")?;
    let canonical = serde_json::to_string(&record).is_ok_and(|c| c == json);
    Ok((record, canonical))
}

/// Which link of a record does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// Not the seq after the previous record's (a record missing, or out of
    /// order).
    Seq,
    /// Does not name the previous record's hash.
    PrevHash,
    /// Its content does not hash to its `hash` (edited).
    Hash,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Seq => "seq",
            Link::PrevHash => "prev_hash",
            Link::Hash => "hash",
        }
    }
}

/// A broken link, named by the record that carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: u64,
    pub id: String,
    /// Position in the chain as read (0-based), so a reader can say where
    /// it sits (file and line).
    pub index: usize,
    pub link: Link,
    pub expected: String,
    pub found: String,
    /// Where the record was read (`audit.jsonl:17`, a stream id), filled by
    /// the reader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// A checkpoint the chain as read contradicts, or whose signature fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointFailure {
    pub seq: u64,
    pub time: String,
    pub problem: String,
}

/// Everything one check found about one instance's chain (`--json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub instance: String,
    /// No break, no failed checkpoint.
    pub ok: bool,
    pub records: usize,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// The last record's hash: what a head elsewhere can be compared with.
    pub last_hash: Option<String>,
    /// Links that do not hold, counted in the order read.
    pub breaks: usize,
    pub first_break: Option<Break>,
    pub checkpoints: usize,
    /// Checkpoints whose signature holds and whose record matches.
    pub checkpoints_verified: usize,
    pub checkpoint_failures: Vec<CheckpointFailure>,
    /// The highest seq a verified checkpoint covers.
    pub anchored_through: Option<u64>,
    /// Records after `anchored_through` (all of them without one): a
    /// truncation or rewrite there cannot be detected.
    pub unanchored: usize,
    /// Things an auditor should know that are not failures.
    pub notes: Vec<String>,
}

/// `keys`: the audit key set; `None` when checkpoints are not to be checked
/// (then they are still compared with the records, but anchor nothing).
pub fn check(
    instance: &str,
    records: &[AuditRecord],
    checkpoints: &[Checkpoint],
    keys: Option<&KeySet>,
) -> ChainReport {
    let mut report = ChainReport {
        instance: instance.to_owned(),
        ok: true,
        records: records.len(),
        first_seq: records.first().map(|r| r.seq),
        last_seq: records.last().map(|r| r.seq),
        last_hash: records.last().map(|r| r.hash.clone()),
        breaks: 0,
        first_break: None,
        checkpoints: checkpoints.len(),
        checkpoints_verified: 0,
        checkpoint_failures: Vec::new(),
        anchored_through: None,
        unanchored: 0,
        notes: Vec::new(),
    };
    check_links(&mut report, records);
    check_checkpoints(&mut report, records, checkpoints, keys);
    report.unanchored = match report.anchored_through {
        Some(through) => records.iter().filter(|r| r.seq > through).count(),
        None => records.len(),
    };
    if keys.is_none() && !checkpoints.is_empty() {
        report
            .notes
            .push("checkpoint signatures not checked (no audit keys): nothing is anchored".into());
    }
    report.ok = report.first_break.is_none() && report.checkpoint_failures.is_empty();
    report
}

fn check_links(report: &mut ChainReport, records: &[AuditRecord]) {
    let note_break = |report: &mut ChainReport, index: usize, link: Link, expected: String, found: String| {
        report.breaks += 1;
        if report.first_break.is_none() {
            let r = &records[index];
            report.first_break = Some(Break {
                seq: r.seq,
                id: r.id.clone(),
                index,
                link,
                expected,
                found,
                at: None,
            });
        }
    };
    for (i, r) in records.iter().enumerate() {
        match i.checked_sub(1).map(|p| &records[p]) {
            Some(prev) => {
                let want = prev.seq.saturating_add(1);
                if r.seq != want {
                    note_break(report, i, Link::Seq, want.to_string(), r.seq.to_string());
                } else if r.prev_hash != prev.hash {
                    note_break(report, i, Link::PrevHash, prev.hash.clone(), r.prev_hash.clone());
                }
            }
            None if r.seq == 1 && r.prev_hash != GENESIS => {
                note_break(report, i, Link::PrevHash, GENESIS.to_owned(), r.prev_hash.clone());
            }
            None if r.seq != 1 => report.notes.push(format!(
                "the chain starts at seq {} (earlier records trimmed by retention, or in another file)",
                r.seq
            )),
            None => {}
        }
        let expected = r.expected_hash();
        if expected != r.hash {
            note_break(report, i, Link::Hash, expected, r.hash.clone());
        }
    }
}

fn check_checkpoints(
    report: &mut ChainReport,
    records: &[AuditRecord],
    checkpoints: &[Checkpoint],
    keys: Option<&KeySet>,
) {
    let mut by_seq: HashMap<u64, &AuditRecord> = HashMap::with_capacity(records.len());
    for r in records {
        by_seq.entry(r.seq).or_insert(r);
    }
    let (first, last) = (report.first_seq, report.last_seq);
    let mut before_start = 0usize;
    for cp in checkpoints {
        let mut fail = |problem: String| {
            report.checkpoint_failures.push(CheckpointFailure {
                seq: cp.seq,
                time: cp.time.clone(),
                problem,
            })
        };
        if cp.instance != report.instance {
            fail(format!("signed for instance {:?}, not this one", cp.instance));
            continue;
        }
        let signed = match keys.map(|k| verify_checkpoint(cp, k)) {
            Some(Err(why)) => {
                fail(format!("signature: {why}"));
                continue;
            }
            Some(Ok(())) => true,
            None => false,
        };
        let matches = match by_seq.get(&cp.seq) {
            Some(r) if r.hash == cp.hash => true,
            Some(r) => {
                fail(format!(
                    "edited/reordered before checkpoint seq {}: the record at seq {} (id {}) has hash {}, the checkpoint says {}",
                    cp.seq, cp.seq, r.id, r.hash, cp.hash
                ));
                false
            }
            None if cp.seq == 0 => cp.hash == GENESIS,
            None => match (first, last) {
                (_, Some(last)) if cp.seq > last => {
                    fail(format!(
                        "truncated: checkpoint says seq {}, chain ends at {last}",
                        cp.seq
                    ));
                    false
                }
                (None, None) => {
                    fail(format!("truncated: checkpoint says seq {}, chain is empty", cp.seq));
                    false
                }
                (Some(first), _) if cp.seq < first => {
                    before_start += 1;
                    false
                }
                _ => {
                    fail(format!("the record at checkpoint seq {} is missing", cp.seq));
                    false
                }
            },
        };
        if signed && matches {
            report.checkpoints_verified += 1;
            report.anchored_through = report.anchored_through.max(Some(cp.seq));
        }
    }
    if before_start > 0 {
        report.notes.push(format!(
            "{before_start} checkpoint(s) precede the chain's first record and cannot be compared"
        ));
    }
}

impl ChainReport {
    /// Compare with a head kept elsewhere (Redis's `…:head`): a chain that
    /// ends before its own head was truncated. The head is not signed, so
    /// only a difference means something.
    pub fn against_head(&mut self, seq: u64, hash: &str) {
        let ends = self.last_seq.unwrap_or(0);
        if seq > ends {
            self.checkpoint_failures.push(CheckpointFailure {
                seq,
                time: String::new(),
                problem: format!("truncated: the chain head says seq {seq}, chain ends at {ends}"),
            });
        } else if seq == ends && seq > 0 && self.last_hash.as_deref() != Some(hash) {
            self.checkpoint_failures.push(CheckpointFailure {
                seq,
                time: String::new(),
                problem: format!("the chain head's hash at seq {seq} is not the last record's"),
            });
        }
        self.ok = self.first_break.is_none() && self.checkpoint_failures.is_empty();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::sign_compact;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord::begin(1_800_000_000_000 + seq as i64, None, None);
                r.txn = Some(format!("t{seq}"));
                r.seal("i1", seq, &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    struct Key {
        signer: Box<dyn josekit::jws::JwsSigner>,
        kid: String,
        set: KeySet,
    }

    fn key() -> Key {
        let jwk = Alg::ES256.generate().unwrap();
        let kid = jwk.key_id().unwrap().to_owned();
        let mut public = jwk.to_public_key().unwrap();
        public.set_key_id(&kid);
        public.set_algorithm("ES256");
        let set = KeySet::parse(
            &serde_json::json!({"keys": [serde_json::Value::Object(public.as_ref().clone())]}),
            &Alg::ALL,
        )
        .unwrap();
        Key {
            signer: Alg::ES256.signer(&jwk).unwrap(),
            kid,
            set,
        }
    }

    fn checkpoint_of(key: &Key, instance: &str, seq: u64, hash: &str) -> Checkpoint {
        let payload = CheckpointPayload {
            instance: instance.into(),
            seq,
            hash: hash.into(),
            time: "2027-01-15T08:00:00Z".into(),
        };
        let jws = sign_compact(key.signer.as_ref(), Alg::ES256, &key.kid, CHECKPOINT_TYP, &payload).unwrap();
        Checkpoint {
            instance: payload.instance,
            seq,
            hash: payload.hash,
            time: payload.time,
            jws,
        }
    }

    /// Re-seal every record from `from` (0-based) on: what someone who can
    /// write the store but holds no key can do to hide an edit.
    fn reseal_from(c: &mut [AuditRecord], from: usize) {
        let mut prev = if from == 0 {
            GENESIS.to_owned()
        } else {
            c[from - 1].hash.clone()
        };
        for r in &mut c[from..] {
            let seq = r.seq;
            r.seal("i1", seq, &prev);
            prev = r.hash.clone();
        }
    }

    #[test]
    fn an_intact_chain_with_a_checkpoint_at_its_head_is_fully_anchored() {
        let k = key();
        let c = chain(5);
        let cps = [
            checkpoint_of(&k, "i1", 3, &c[2].hash),
            checkpoint_of(&k, "i1", 5, &c[4].hash),
        ];
        let r = check("i1", &c, &cps, Some(&k.set));
        assert!(r.ok, "{r:?}");
        assert_eq!(
            (r.checkpoints_verified, r.anchored_through, r.unanchored),
            (2, Some(5), 0)
        );
        assert!(r.notes.is_empty(), "{:?}", r.notes);
    }

    #[test]
    fn records_after_the_last_checkpoint_are_counted_as_unanchored() {
        let k = key();
        let c = chain(7);
        let r = check("i1", &c, &[checkpoint_of(&k, "i1", 4, &c[3].hash)], Some(&k.set));
        assert!(r.ok);
        assert_eq!((r.anchored_through, r.unanchored), (Some(4), 3));
    }

    #[test]
    fn an_edited_record_is_named_with_its_expected_and_found_hash() {
        let mut c = chain(5);
        c[2].sub = Some("mallory".into());
        let r = check("i1", &c, &[], None);
        assert!(!r.ok);
        let b = r.first_break.unwrap();
        assert_eq!(
            (b.seq, b.id.as_str(), b.link, b.index),
            (3, c[2].id.as_str(), Link::Hash, 2)
        );
        assert_eq!(b.found, c[2].hash);
        assert_eq!(b.expected, c[2].expected_hash());
        assert_ne!(b.expected, b.found);
    }

    #[test]
    fn a_deleted_record_is_a_seq_break_at_the_record_after_it() {
        let mut c = chain(5);
        c.remove(2);
        let b = check("i1", &c, &[], None).first_break.unwrap();
        assert_eq!(
            (b.seq, b.link, b.expected.as_str(), b.found.as_str()),
            (4, Link::Seq, "3", "4")
        );
    }

    #[test]
    fn two_swapped_records_break_where_the_order_does() {
        let mut c = chain(5);
        c.swap(1, 2);
        let r = check("i1", &c, &[], None);
        let b = r.first_break.unwrap();
        assert_eq!((b.seq, b.link, b.index), (3, Link::Seq, 1));
        assert!(r.breaks >= 2, "{}", r.breaks);
    }

    #[test]
    fn a_first_record_that_does_not_link_to_genesis_is_a_break() {
        let mut c = chain(2);
        c[0].prev_hash = "f".repeat(64);
        c[0].hash = c[0].expected_hash();
        let b = check("i1", &c, &[], None).first_break.unwrap();
        assert_eq!((b.seq, b.link), (1, Link::PrevHash));
    }

    #[test]
    fn a_chain_rewritten_consistently_without_the_key_contradicts_its_checkpoint() {
        let k = key();
        let mut c = chain(6);
        let cps = [checkpoint_of(&k, "i1", 5, &c[4].hash)];
        c[1].sub = Some("mallory".into());
        reseal_from(&mut c, 1);
        let r = check("i1", &c, &cps, Some(&k.set));
        assert_eq!(r.first_break, None, "the links hold after a rewrite");
        assert!(!r.ok);
        assert!(
            r.checkpoint_failures[0]
                .problem
                .starts_with("edited/reordered before checkpoint seq 5"),
            "{:?}",
            r.checkpoint_failures
        );
        assert_eq!(r.anchored_through, None);
    }

    #[test]
    fn a_chain_cut_after_a_checkpoint_reports_the_truncation() {
        let k = key();
        let mut c = chain(6);
        let cps = [checkpoint_of(&k, "i1", 6, &c[5].hash)];
        c.truncate(4);
        let r = check("i1", &c, &cps, Some(&k.set));
        assert!(!r.ok);
        assert_eq!(
            r.checkpoint_failures[0].problem,
            "truncated: checkpoint says seq 6, chain ends at 4"
        );
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_or_edited_fails() {
        let (k, other) = (key(), key());
        let c = chain(3);
        let foreign = checkpoint_of(&other, "i1", 3, &c[2].hash);
        let r = check("i1", &c, &[foreign], Some(&k.set));
        assert!(!r.ok);
        assert_eq!(
            r.checkpoint_failures[0].problem,
            "signature: signed by a key not in the audit key set"
        );

        let mut edited = checkpoint_of(&k, "i1", 2, &c[1].hash);
        edited.seq = 3;
        edited.hash = c[2].hash.clone();
        let r = check("i1", &c, &[edited], Some(&k.set));
        assert_eq!(
            r.checkpoint_failures[0].problem,
            "signature: its fields differ from what was signed"
        );
    }

    #[test]
    fn a_jws_of_another_type_is_not_a_checkpoint() {
        let k = key();
        let c = chain(1);
        let mut cp = checkpoint_of(&k, "i1", 1, &c[0].hash);
        cp.jws = sign_compact(
            k.signer.as_ref(),
            Alg::ES256,
            &k.kid,
            "at+jwt",
            &CheckpointPayload::of(&cp),
        )
        .unwrap();
        let r = check("i1", &c, &[cp], Some(&k.set));
        assert_eq!(
            r.checkpoint_failures[0].problem,
            "signature: its jws is not of typ xaa-audit-checkpoint+jwt"
        );
    }

    #[test]
    fn without_keys_checkpoints_anchor_nothing_but_still_catch_a_mismatch() {
        let k = key();
        let mut c = chain(3);
        let cps = [checkpoint_of(&k, "i1", 3, &c[2].hash)];
        let r = check("i1", &c, &cps, None);
        assert!(r.ok);
        assert_eq!((r.anchored_through, r.unanchored), (None, 3));
        assert!(r.notes.iter().any(|n| n.contains("not checked")));
        c[2].sub = Some("x".into());
        reseal_from(&mut c, 2);
        assert!(!check("i1", &c, &cps, None).ok);
    }

    #[test]
    fn a_trimmed_start_is_a_note_not_a_failure() {
        let k = key();
        let full = chain(6);
        let cps = [
            checkpoint_of(&k, "i1", 2, &full[1].hash),
            checkpoint_of(&k, "i1", 6, &full[5].hash),
        ];
        let r = check("i1", &full[3..], &cps, Some(&k.set));
        assert!(r.ok, "{r:?}");
        assert_eq!(r.anchored_through, Some(6));
        assert!(r.notes.iter().any(|n| n.contains("starts at seq 4")), "{:?}", r.notes);
        assert!(r.notes.iter().any(|n| n.contains("precede")), "{:?}", r.notes);
    }

    #[test]
    fn a_head_beyond_the_last_record_is_a_truncation() {
        let c = chain(3);
        let mut r = check("i1", &c, &[], None);
        r.against_head(3, &c[2].hash);
        assert!(r.ok);
        r.against_head(5, "x");
        assert!(!r.ok);
        assert_eq!(
            r.checkpoint_failures[0].problem,
            "truncated: the chain head says seq 5, chain ends at 3"
        );
    }

    #[test]
    fn a_stored_record_must_be_exactly_the_json_it_was_sealed_as() {
        let c = chain(1);
        let json = serde_json::to_string(&c[0]).unwrap();
        assert_eq!(parse_record(&json).unwrap(), (c[0].clone(), true));
        let padded = json.replacen('{', "{\"extra\":1,", 1);
        assert_eq!(parse_record(&padded).map(|(_, canonical)| canonical), Ok(false));
        assert!(parse_record("{not json").is_err());
    }
}

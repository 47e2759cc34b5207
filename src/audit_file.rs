//! The audit file (`[audit] file`): a durable copy of this machine's chain
//! as JSON Lines, and the reader `audit verify --file` uses.
//!
//! Owns: appending every sealed record (its JSON exactly as sealed) and
//! every checkpoint (`{"checkpoint": {…}}`) as one line, in chain order
//! (the store calls it under its chain lock); O_APPEND; the fsync policy
//! (`always`: before the answer; `interval`: a background thread; `never`);
//! size-based rotation (the full file is renamed to
//! `<file>.<YYYYMMDDTHHMMSS.mmmZ>` and the chain continues in a new file);
//! the bounded backlog of lines a failed write left behind (written first
//! next time, so the copy stays complete and in order — fail closed: the
//! store refuses to commit while it cannot be written); finding each
//! instance's last record at open (a restart with the same `XAA_INSTANCE`
//! continues its chain); never appending to a torn last line. And reading:
//! a file with its rotated siblings, in order, per instance, with every
//! line that is not a whole record or checkpoint reported by file and line.
//! Must never: rewrite or drop a line once written, write a line out of
//! chain order, or accept a torn line silently.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::Serialize;

use crate::audit::{AuditRecord, Checkpoint};
use crate::chain_check::parse_record;
use crate::config::FsyncPolicy;
use crate::store::AuditSink;

/// Most lines kept after failed writes. The store asks `ready` before each
/// commit and refuses it while the backlog cannot be written, so at most one
/// record (and the checkpoints of a few ticks) ever wait here; the bound
/// only guards against a caller that does not.
pub const MAX_BACKLOG: usize = 1024;

/// How much of the end of a file is read at open to find each instance's
/// last record.
const TAIL_BYTES: u64 = 8 * 1024 * 1024;

/// The audit file sink.
pub struct AuditFile {
    path: PathBuf,
    fsync: FsyncPolicy,
    rotate_bytes: u64,
    inner: Arc<Mutex<Inner>>,
    /// Each instance's last record (`seq`, `hash`) found at open.
    heads: HashMap<String, (u64, String)>,
}

struct Inner {
    /// `None` after a rotation could not open the new file: reopened on
    /// the next write.
    file: Option<File>,
    /// Bytes in the current file, as far as we wrote them.
    len: u64,
    /// Lines not yet written (each with its newline), oldest first.
    backlog: VecDeque<String>,
    /// The file does not end with a newline (a crash, or a failed write
    /// that could not be undone): the next line starts on a new one.
    torn: bool,
    /// Written since the last fsync (`interval`).
    unsynced: bool,
}

impl AuditFile {
    /// Open (or create) `path` for appending. `fsync_interval` is used with
    /// `FsyncPolicy::Interval`; `rotate_bytes` 0 never rotates.
    pub fn open(path: &Path, fsync: FsyncPolicy, fsync_interval: Duration, rotate_bytes: u64) -> io::Result<Self> {
        let file = open_append(path)?;
        let len = file.metadata()?.len();
        let torn = len > 0 && last_byte(path)? != Some(b'\n');
        if torn {
            tracing::warn!(
                file = %path.display(),
                "the audit file's last line is torn (no newline: a write cut short); it is kept as it is, \
                 the next record starts a new line, and `audit verify` reports it"
            );
        }
        let heads = find_heads(path, len)?;
        let inner = Arc::new(Mutex::new(Inner {
            file: Some(file),
            len,
            backlog: VecDeque::new(),
            torn,
            unsynced: false,
        }));
        if fsync == FsyncPolicy::Interval {
            spawn_syncer(Arc::downgrade(&inner), fsync_interval)?;
        }
        Ok(Self {
            path: path.to_owned(),
            fsync,
            rotate_bytes,
            inner,
            heads,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `line` and write everything pending.
    fn append(&self, line: String) -> io::Result<()> {
        let mut st = self.lock();
        if st.backlog.len() >= MAX_BACKLOG {
            tracing::error!(file = %self.path.display(), "audit file backlog full: a line could not be kept");
            return Err(io::Error::other("the audit file backlog is full"));
        }
        st.backlog.push_back(line);
        self.write_pending(&mut st)
    }

    /// Write the backlog in order; sync when the policy says so.
    fn write_pending(&self, st: &mut Inner) -> io::Result<()> {
        if st.backlog.is_empty() {
            return Ok(());
        }
        while let Some(line) = st.backlog.pop_front() {
            if let Err(e) = self.write_line(st, &line) {
                // Kept, first in line for the next write.
                st.backlog.push_front(line);
                return Err(e);
            }
        }
        if self.fsync == FsyncPolicy::Always
            && let Some(f) = &st.file
        {
            f.sync_data()?;
            st.unsynced = false;
        }
        Ok(())
    }

    fn write_line(&self, st: &mut Inner, line: &str) -> io::Result<()> {
        if st.file.is_none() {
            let file = open_append(&self.path)?;
            st.len = file.metadata()?.len();
            st.torn = st.len > 0 && last_byte(&self.path)? != Some(b'\n');
            st.file = Some(file);
        }
        let needed = line.len() as u64 + u64::from(st.torn);
        if self.rotate_bytes > 0 && st.len > 0 && st.len + needed > self.rotate_bytes {
            self.rotate(st)?;
        }
        let Some(file) = st.file.as_mut() else {
            return Err(io::Error::other("the audit file is not open"));
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        if st.torn {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(line.as_bytes());
        match file.write_all(&bytes) {
            Ok(()) => {
                st.len += bytes.len() as u64;
                st.torn = false;
                st.unsynced = true;
                Ok(())
            }
            Err(e) => {
                // Undo a partial write, so the retry does not glue this
                // line to its own fragment; if that fails too, the next
                // line starts a new one and `verify` reports the fragment.
                if file.set_len(st.len).is_err() {
                    st.torn = true;
                    if let Ok(m) = file.metadata() {
                        st.len = m.len();
                    }
                }
                Err(e)
            }
        }
    }

    /// Rename the full file to `<file>.<UTC time>` and start a new one.
    fn rotate(&self, st: &mut Inner) -> io::Result<()> {
        if self.fsync != FsyncPolicy::Never
            && let Some(f) = &st.file
        {
            f.sync_all()?;
        }
        let target = rotated_name(&self.path)?;
        std::fs::rename(&self.path, &target)?;
        st.file = None;
        let file = open_append(&self.path)?;
        st.file = Some(file);
        st.len = 0;
        st.torn = false;
        if self.fsync != FsyncPolicy::Never {
            sync_dir(&self.path)?;
        }
        tracing::info!(file = %self.path.display(), rotated_to = %target.display(), "audit file rotated");
        Ok(())
    }
}

impl AuditSink for AuditFile {
    fn ready(&self) -> io::Result<()> {
        let mut st = self.lock();
        self.write_pending(&mut st)
    }

    fn append_record(&self, sealed_json: &str) -> io::Result<()> {
        let mut line = String::with_capacity(sealed_json.len() + 1);
        line.push_str(sealed_json);
        line.push('\n');
        self.append(line)
    }

    fn append_checkpoint(&self, checkpoint: &Checkpoint) -> io::Result<()> {
        let mut line = serde_json::to_string(&CheckpointLine { checkpoint }).map_err(io::Error::other)?;
        line.push('\n');
        self.append(line)
    }

    fn head(&self, instance: &str) -> Option<(u64, String)> {
        self.heads.get(instance).cloned()
    }
}

/// A checkpoint's line: `{"checkpoint": {…}}`.
#[derive(Serialize)]
struct CheckpointLine<'a> {
    checkpoint: &'a Checkpoint,
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o640);
    }
    opts.open(path)
}

fn last_byte(path: &Path) -> io::Result<Option<u8>> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    Ok(Some(b[0]))
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// `<file>.<YYYYMMDDTHHMMSS.mmmZ>` (UTC, zero-padded: name order is time
/// order), with `-N` appended in the unlikely case it exists.
fn rotated_name(path: &Path) -> io::Result<PathBuf> {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second].[subsecond digits:3]Z");
    let stamp = time::OffsetDateTime::now_utc()
        .format(&format)
        .map_err(io::Error::other)?;
    let base = path.as_os_str().to_string_lossy().into_owned();
    let mut candidate = PathBuf::from(format!("{base}.{stamp}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = PathBuf::from(format!("{base}.{stamp}-{n}"));
        n += 1;
    }
    Ok(candidate)
}

/// Whether `suffix` (after `<file>.`) is a rotation stamp.
fn is_rotation_stamp(suffix: &str) -> bool {
    let (stamp, extra) = match suffix.split_once('-') {
        Some((s, n)) => (s, Some(n)),
        None => (suffix, None),
    };
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() == 20
        && digits(0..8)
        && b[8] == b'T'
        && digits(9..15)
        && b[15] == b'.'
        && digits(16..19)
        && b[19] == b'Z'
        && extra.is_none_or(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()))
}

/// The rotated files of `path`, oldest first.
pub fn rotated_siblings(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Ok(Vec::new());
    };
    let dir = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{name}.");
    let mut found: Vec<(String, PathBuf)> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some(suffix) = file_name.strip_prefix(&prefix)
            && is_rotation_stamp(suffix)
        {
            found.push((suffix.to_owned(), dir.join(&file_name)));
        }
    }
    // By stamp, then by the `-N` of a collision, numerically.
    found.sort_by(|(a, _), (b, _)| {
        let key = |s: &str| match s.split_once('-') {
            Some((stamp, n)) => (stamp.to_owned(), n.parse::<u64>().unwrap_or(u64::MAX)),
            None => (s.to_owned(), 0),
        };
        key(a).cmp(&key(b))
    });
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// The files to read for `paths`: each path preceded by its rotated
/// siblings, every file once, in that order.
pub fn files_to_read(paths: &[PathBuf]) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        for f in rotated_siblings(p)?.into_iter().chain([p.clone()]) {
            let key = f.canonicalize().unwrap_or_else(|_| f.clone());
            if seen.insert(key) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

/// Each instance's last record in the tail of `path` — or, when `path`
/// holds no record at all (just rotated), in the tail of its newest
/// rotated sibling.
fn find_heads(path: &Path, len: u64) -> io::Result<HashMap<String, (u64, String)>> {
    let mut heads = tail_heads(path, len)?;
    if heads.is_empty()
        && let Some(newest) = rotated_siblings(path)?.pop()
    {
        let len = std::fs::metadata(&newest)?.len();
        heads = tail_heads(&newest, len)?;
    }
    Ok(heads)
}

fn tail_heads(path: &Path, len: u64) -> io::Result<HashMap<String, (u64, String)>> {
    let mut heads = HashMap::new();
    let start = len.saturating_sub(TAIL_BYTES);
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(start))?;
    let mut reader = BufReader::new(f);
    let mut line = Vec::new();
    if start > 0 {
        // The first line read is a fragment of a longer one.
        reader.read_until(b'\n', &mut line)?;
    }
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
            break;
        }
        let Ok(text) = std::str::from_utf8(&line[..line.len() - 1]) else {
            continue;
        };
        if text.starts_with("{\"checkpoint\":") {
            continue;
        }
        if let Ok((r, _)) = parse_record(text) {
            heads.insert(r.instance.clone(), (r.seq, r.hash.clone()));
        }
    }
    Ok(heads)
}

/// The background fsync of `interval` mode; ends when the file is dropped.
fn spawn_syncer(inner: Weak<Mutex<Inner>>, interval: Duration) -> io::Result<()> {
    std::thread::Builder::new()
        .name("audit-fsync".into())
        .spawn(move || {
            loop {
                std::thread::sleep(interval);
                let Some(inner) = inner.upgrade() else { return };
                // Sync a handle of our own, outside the lock: appends go on.
                let handle = {
                    let mut st = inner.lock().unwrap_or_else(|e| e.into_inner());
                    if !st.unsynced {
                        continue;
                    }
                    st.unsynced = false;
                    st.file.as_ref().and_then(|f| f.try_clone().ok())
                };
                if let Some(f) = handle
                    && let Err(e) = f.sync_data()
                {
                    tracing::error!(error = %e, "the audit file could not be synced to disk");
                    inner.lock().unwrap_or_else(|e| e.into_inner()).unsynced = true;
                }
            }
        })
        .map(|_| ())
}

/// A line that is not a whole record or checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LineProblem {
    pub file: String,
    /// 1-based.
    pub line: u64,
    pub problem: String,
}

/// One instance's lines, in file order.
#[derive(Debug, Default)]
pub struct InstanceLines {
    pub records: Vec<AuditRecord>,
    /// `file:line` of each record (same index).
    pub record_at: Vec<String>,
    pub checkpoints: Vec<Checkpoint>,
}

/// What a set of audit files holds.
#[derive(Debug, Default)]
pub struct ReadFiles {
    pub instances: BTreeMap<String, InstanceLines>,
    pub problems: Vec<LineProblem>,
}

/// Read `files` in the given order (see [`files_to_read`]).
pub fn read_files(files: &[PathBuf]) -> io::Result<ReadFiles> {
    let mut out = ReadFiles::default();
    for path in files {
        let name = path.display().to_string();
        let mut reader = BufReader::new(File::open(path)?);
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            number += 1;
            let mut problem = |what: String| {
                out.problems.push(LineProblem {
                    file: name.clone(),
                    line: number,
                    problem: what,
                })
            };
            let body = match line.strip_suffix(b"\n") {
                Some(body) => body,
                None => {
                    problem("torn line: no newline at the end of the file (a write cut short, e.g. by a crash)".into());
                    &line[..]
                }
            };
            let Ok(text) = std::str::from_utf8(body) else {
                problem("not UTF-8: not a line the broker wrote".into());
                continue;
            };
            if text.is_empty() {
                problem("empty line".into());
                continue;
            }
            let value: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(_) => {
                    problem("unparsable: not a JSON record or checkpoint".into());
                    continue;
                }
            };
            if let Some(cp) = value.get("checkpoint") {
                match serde_json::from_value::<Checkpoint>(cp.clone()) {
                    Ok(cp) if value.as_object().is_some_and(|o| o.len() == 1) => {
                        out.instances
                            .entry(cp.instance.clone())
                            .or_default()
                            .checkpoints
                            .push(cp);
                    }
                    _ => problem("unreadable checkpoint line".into()),
                }
                continue;
            }
            match parse_record(text) {
                Ok((record, canonical)) => {
                    if !canonical {
                        problem(format!(
                            "seq {} (id {}) is not the record as sealed: fields added, removed or reordered",
                            record.seq, record.id
                        ));
                    }
                    let lines = out.instances.entry(record.instance.clone()).or_default();
                    lines.records.push(record);
                    lines.record_at.push(format!("{name}:{number}"));
                }
                Err(_) => problem("unparsable: not an audit record".into()),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::GENESIS;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xaa-audit-file-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn records(instance: &str, from: u64, n: u64, prev: &str) -> Vec<AuditRecord> {
        let mut prev = prev.to_owned();
        (from..from + n)
            .map(|seq| {
                let mut r = AuditRecord::begin(1_800_000_000_000, Some("192.0.2.1".into()), Some("test"));
                r.txn = Some(format!("txn-{seq}"));
                r.seal(instance, seq, &prev);
                prev = r.hash.clone();
                r
            })
            .collect()
    }

    #[test]
    fn rotation_stamps_sort_in_time_order_and_nothing_else_counts() {
        assert!(is_rotation_stamp("20270115T080000.123Z"));
        assert!(is_rotation_stamp("20270115T080000.123Z-2"));
        assert!(!is_rotation_stamp("bak"));
        assert!(!is_rotation_stamp("20270115T080000.123Z.gz"));
        assert!(!is_rotation_stamp("20270115T080000Z"));
    }

    #[test]
    fn records_rotate_into_siblings_and_read_back_as_one_chain_in_order() {
        let path = temp_path("audit.jsonl");
        let file = AuditFile::open(&path, FsyncPolicy::Always, Duration::from_secs(1), 2_000).unwrap();
        let written = records("i1", 1, 12, GENESIS);
        for r in &written {
            file.append_record(&serde_json::to_string(r).unwrap()).unwrap();
        }
        let siblings = rotated_siblings(&path).unwrap();
        assert!(!siblings.is_empty(), "a 2 kB limit rotated ~600-byte lines");
        for f in siblings.iter().chain([&path]) {
            assert!(std::fs::metadata(f).unwrap().len() <= 2_000, "{}", f.display());
        }
        let read = read_files(&files_to_read(std::slice::from_ref(&path)).unwrap()).unwrap();
        assert_eq!(read.problems, []);
        assert_eq!(read.instances["i1"].records, written);
    }

    #[test]
    fn a_reopened_file_continues_each_instance_from_its_last_record() {
        let path = temp_path("audit.jsonl");
        let file = AuditFile::open(&path, FsyncPolicy::Never, Duration::from_secs(1), 0).unwrap();
        for r in records("i1", 1, 3, GENESIS).iter().chain(&records("i2", 1, 1, GENESIS)) {
            file.append_record(&serde_json::to_string(r).unwrap()).unwrap();
        }
        drop(file);
        let again = AuditFile::open(&path, FsyncPolicy::Never, Duration::from_secs(1), 0).unwrap();
        let read = read_files(std::slice::from_ref(&path)).unwrap();
        let last_of = |i: &str| read.instances[i].records.last().map(|r| (r.seq, r.hash.clone()));
        assert_eq!(again.head("i1"), last_of("i1"));
        assert_eq!(again.head("i2"), last_of("i2"));
        assert_eq!(again.head("i3"), None);
    }

    #[test]
    fn a_torn_last_line_is_never_appended_to_and_is_reported() {
        let path = temp_path("audit.jsonl");
        let rs = records("i1", 1, 2, GENESIS);
        let first = serde_json::to_string(&rs[0]).unwrap();
        std::fs::write(&path, format!("{first}\n{{\"id\":\"cut-")).unwrap();
        let file = AuditFile::open(&path, FsyncPolicy::Always, Duration::from_secs(1), 0).unwrap();
        assert_eq!(file.head("i1").map(|(s, _)| s), Some(1));
        file.append_record(&serde_json::to_string(&rs[1]).unwrap()).unwrap();
        let read = read_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(
            read.instances["i1"].records, rs,
            "the next record is whole, on its own line"
        );
        assert_eq!(read.problems.len(), 1, "{:?}", read.problems);
        assert_eq!(read.problems[0].line, 2);
        assert!(
            read.problems[0].problem.starts_with("unparsable"),
            "{:?}",
            read.problems
        );
    }

    #[test]
    fn a_missing_final_newline_is_reported_as_torn_even_when_the_line_parses() {
        let path = temp_path("audit.jsonl");
        let rs = records("i1", 1, 1, GENESIS);
        std::fs::write(&path, serde_json::to_string(&rs[0]).unwrap()).unwrap();
        let read = read_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(read.problems.len(), 1);
        assert!(read.problems[0].problem.starts_with("torn line"), "{:?}", read.problems);
    }

    #[test]
    fn a_failed_write_is_kept_and_written_first_when_the_file_is_back() {
        let path = temp_path("audit.jsonl");
        let file = AuditFile::open(&path, FsyncPolicy::Always, Duration::from_secs(1), 0).unwrap();
        let rs = records("i1", 1, 3, GENESIS);
        file.append_record(&serde_json::to_string(&rs[0]).unwrap()).unwrap();
        // Swap the open handle for a read-only one: every write fails.
        file.lock().file = Some(File::open(&path).unwrap());
        assert!(file.append_record(&serde_json::to_string(&rs[1]).unwrap()).is_err());
        assert!(file.ready().is_err(), "not ready while the line cannot be written");
        file.lock().file = None;
        file.ready().unwrap();
        file.append_record(&serde_json::to_string(&rs[2]).unwrap()).unwrap();
        let read = read_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(read.problems, []);
        assert_eq!(read.instances["i1"].records, rs);
    }

    #[test]
    fn checkpoint_lines_are_read_back_per_instance() {
        let path = temp_path("audit.jsonl");
        let file = AuditFile::open(&path, FsyncPolicy::Never, Duration::from_secs(1), 0).unwrap();
        let cp = Checkpoint {
            instance: "i1".into(),
            seq: 4,
            hash: "ab".repeat(32),
            time: "2027-01-15T08:00:00Z".into(),
            jws: "a.b.c".into(),
        };
        file.append_checkpoint(&cp).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("{\"checkpoint\":{\"instance\":\"i1\""), "{text}");
        let read = read_files(std::slice::from_ref(&path)).unwrap();
        assert_eq!(read.instances["i1"].checkpoints, [cp]);
    }
}

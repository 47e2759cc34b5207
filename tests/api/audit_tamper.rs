//! Tamper evidence an auditor can check (specs/decisions.md §22,
//! specs/operations.md "Audit file and verification"): signed checkpoints
//! every N records, published at `/audit/jwks`; the audit file (rotation,
//! restart, fail closed); and `xaa-broker audit verify` — the real binary —
//! naming each break someone made by editing, deleting, reordering,
//! truncating or tearing records in the file and in Redis, and a
//! consistent rewrite without the key. The memory store's chain cannot be
//! edited from outside: its records are read, tampered and checked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use xaa_broker::audit::{AuditRecord, Checkpoint};
use xaa_broker::chain_check::{self, Link};
use xaa_broker::config::Config;
use xaa_broker::jose::Alg;

use crate::support::redis::{redis_url, unique_prefix};
use crate::support::*;

/// A fresh directory for one test's files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xaa-tamper-{test}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An audit key on disk (`audit.checkpoint_key`) and its public JWK Set,
/// as an auditor would be handed it.
fn audit_key(dir: &Path) -> (PathBuf, PathBuf) {
    let (private, public) = xaa_broker::keys::generate_to_dir(Alg::ES256, &dir.join("keys")).unwrap();
    let jwks = dir.join("audit-jwks.json");
    let set = serde_json::json!({"keys": [Value::Object(public.as_ref().clone())]});
    std::fs::write(&jwks, set.to_string()).unwrap();
    (private, jwks)
}

/// The audit file in `dir`, signed checkpoints with the key, no rate limit
/// (tests make many requests at once), a checkpoint schedule that never
/// fires by itself unless `every` says so.
fn with_audit_file(c: &mut Config, file: &Path, key: &Path) {
    c.audit.file = Some(file.to_owned());
    c.audit.checkpoint_key = Some(key.to_owned());
    c.audit.checkpoint_every_records = 1_000_000;
    c.audit.checkpoint_every_secs = 86_400;
    c.limits.enabled = false;
}

/// `n` first hops, each granted: one record each.
async fn hops(app: &TestApp, n: usize) {
    for _ in 0..n {
        app.first_hop("triage-agent", LOGS).await.assert_ok();
    }
}

/// Run `xaa-broker audit verify ARGS`: its exit code and its output.
async fn verify(args: &[&str]) -> (i32, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_xaa-broker"))
            .args(["audit", "verify"])
            .args(&args)
            .env_remove("XAA_AUDIT_CLIENT_ID")
            .env_remove("XAA_AUDIT_CLIENT_SECRET")
            .output()
            .expect("run xaa-broker");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    })
    .await
    .unwrap()
}

/// Force a checkpoint of the head now (the schedule is tested on its own).
async fn checkpoint(app: &TestApp) -> Checkpoint {
    app.state
        .checkpoint(true)
        .await
        .expect("checkpoint written")
        .expect("the chain moved")
}

// ---------------------------------------------------------------------------
// Checkpoints and their keys
// ---------------------------------------------------------------------------

#[tokio::test]
async fn checkpoints_are_written_every_n_records_and_signed_by_a_key_audit_jwks_publishes() {
    let app = TestApp::spawn_with(|c| {
        c.audit.checkpoint_every_records = 3;
        c.limits.enabled = false;
    })
    .await;
    hops(&app, 7).await;
    let mut kept = Vec::new();
    for _ in 0..50 {
        kept = app.state.store.checkpoints(&app.state.instance).await.unwrap();
        if kept.iter().any(|c| c.seq == 7) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!kept.is_empty(), "no checkpoint within 5 s of 7 records (every 3)");
    assert!(kept.iter().all(|c| c.seq >= 3 && c.seq <= 7), "{kept:?}");

    let resp = app.http.get(app.url("/audit/jwks")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let header = |h: &str| resp.headers().get(h).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("content-type").as_deref(), Some("application/jwk-set+json"));
    assert!(header("cache-control").is_some_and(|c| c.contains("max-age=300")));
    let jwks: Value = resp.json().await.unwrap();
    assert!(jwks["keys"][0].get("d").is_none(), "no private member: {jwks}");
    let token_keys: Value = app.get("/jwks").await.body;
    assert_ne!(jwks["keys"][0]["kid"], token_keys["keys"][0]["kid"], "a key of its own");

    let keys = chain_check::audit_key_set(&jwks).unwrap();
    let chain = app.all_audit().await;
    for cp in &kept {
        assert_eq!(chain_check::verify_checkpoint(cp, &keys), Ok(()));
        assert_eq!(decode_part(&cp.jws, 0)["typ"], "xaa-audit-checkpoint+jwt");
        let record = chain.iter().find(|r| r.seq == cp.seq).unwrap();
        assert_eq!(record.hash, cp.hash, "a checkpoint signs the head it names");
    }
}

#[tokio::test]
async fn the_chain_api_is_for_auditors_only_and_verify_url_checks_it() {
    let app = TestApp::spawn_with(|c| c.limits.enabled = false).await;
    hops(&app, 4).await;
    checkpoint(&app).await;
    hops(&app, 1).await;

    refused_for(
        &app,
        app.post_form("/audit/chain", Auth::Basic("triage-agent"), &[]),
        "audit.not_auditor",
    )
    .await
    .assert_error(400, "unauthorized_client");
    app.post_form("/audit/chain", Auth::Basic("auditor"), &[("limit", "0")])
        .await
        .assert_error(400, "invalid_request");

    let listing = app.post_form("/audit/chain", Auth::Basic("auditor"), &[]).await;
    listing.assert_ok();
    assert_eq!(listing.body["instances"][0]["instance"], app.state.instance.as_str());
    assert_eq!(listing.body["instances"][0]["checkpoints"], 1);
    let page = app
        .post_form(
            "/audit/chain",
            Auth::Basic("auditor"),
            &[("instance", &app.state.instance), ("limit", "2")],
        )
        .await;
    page.assert_ok();
    assert_eq!(page.body["records"].as_array().unwrap().len(), 2);
    assert_eq!(page.body["checkpoints"].as_array().unwrap().len(), 1);
    let cursor = page.body["next_cursor"].as_str().expect("more pages").to_owned();
    let next = app
        .post_form(
            "/audit/chain",
            Auth::Basic("auditor"),
            &[("instance", &app.state.instance), ("limit", "2"), ("cursor", &cursor)],
        )
        .await;
    assert_eq!(next.body["records"][0]["seq"], 3);
    assert_eq!(next.body["checkpoints"], serde_json::json!([]), "first page only");

    let (code, out) = verify(&[
        "--url",
        &app.base,
        "--client-id",
        "auditor",
        "--client-secret",
        "auditor-secret",
    ])
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fetched from") && out.contains("/audit/jwks"), "{out}");
    assert!(out.contains(&format!("{}: ok", app.state.instance)), "{out}");
    assert!(out.contains("anchored through seq 4"), "{out}");

    let (code, out) = verify(&["--url", &app.base, "--client-id", "auditor", "--client-secret", "wrong"]).await;
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid_client"), "{out}");
}

#[tokio::test]
async fn without_keys_verify_says_checkpoints_cannot_be_checked_and_fails() {
    let dir = temp_dir("nokeys");
    let (key, _) = audit_key(&dir);
    let file = dir.join("audit.jsonl");
    let app = TestApp::spawn_with(|c| with_audit_file(c, &file, &key)).await;
    hops(&app, 2).await;
    checkpoint(&app).await;
    let path = file.to_str().unwrap();

    let (code, out) = verify(&["--file", path]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("checkpoints cannot be checked"), "{out}");
    let (code, out) = verify(&["--file", path, "--no-checkpoints"]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing anchored"), "{out}");
}

// ---------------------------------------------------------------------------
// The memory store: read, tamper, check
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_memory_chain_as_read_names_each_kind_of_break() {
    let app = TestApp::spawn_with(|c| c.limits.enabled = false).await;
    hops(&app, 6).await;
    checkpoint(&app).await;
    let store = &app.state.store;
    let instance = &app.state.instance;
    let records = store.audit_chain(instance).await.unwrap();
    let checkpoints = store.checkpoints(instance).await.unwrap();
    let keys = chain_check::audit_key_set(&app.get("/audit/jwks").await.body).unwrap();
    let check = |rs: &[AuditRecord]| chain_check::check(instance, rs, &checkpoints, Some(&keys));

    let intact = check(&records);
    assert!(intact.ok && intact.unanchored == 0, "{intact:?}");

    let mut edited = records.clone();
    edited[2].scope_granted = Some("logs.purge".into());
    let b = check(&edited).first_break.unwrap();
    assert_eq!((b.seq, b.id.as_str(), b.link), (3, records[2].id.as_str(), Link::Hash));

    let mut deleted = records.clone();
    deleted.remove(3);
    let b = check(&deleted).first_break.unwrap();
    assert_eq!((b.seq, b.link, b.expected.as_str()), (5, Link::Seq, "4"));

    let mut swapped = records.clone();
    swapped.swap(1, 2);
    let b = check(&swapped).first_break.unwrap();
    assert_eq!((b.seq, b.id.as_str(), b.link), (3, records[2].id.as_str(), Link::Seq));

    let truncated = check(&records[..4]);
    assert!(!truncated.ok);
    assert_eq!(
        truncated.checkpoint_failures[0].problem,
        "truncated: checkpoint says seq 6, chain ends at 4"
    );
}

// ---------------------------------------------------------------------------
// The audit file
// ---------------------------------------------------------------------------

/// A broker writing `dir/audit.jsonl`: records 1–6, a checkpoint at 6,
/// records 7–8, a checkpoint at 8. Returns the app, the file, the key set
/// file and the file's lines.
async fn file_chain(test: &str) -> (TestApp, PathBuf, PathBuf, Vec<String>) {
    let dir = temp_dir(test);
    let (key, jwks) = audit_key(&dir);
    let file = dir.join("audit.jsonl");
    let app = TestApp::spawn_with(|c| with_audit_file(c, &file, &key)).await;
    hops(&app, 6).await;
    checkpoint(&app).await;
    hops(&app, 2).await;
    checkpoint(&app).await;
    let lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 10, "8 records and 2 checkpoints, one per line");
    (app, file, jwks, lines)
}

/// The line index and record of `seq`.
fn record_line(lines: &[String], seq: u64) -> (usize, AuditRecord) {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.starts_with("{\"checkpoint\""))
        .map(|(i, l)| (i, serde_json::from_str::<AuditRecord>(l).unwrap()))
        .find(|(_, r)| r.seq == seq)
        .unwrap()
}

/// A tampered copy beside the original (the broker keeps writing its own).
fn write_copy(file: &Path, name: &str, content: &str) -> String {
    let copy = file.with_file_name(name);
    std::fs::write(&copy, content).unwrap();
    copy.to_str().unwrap().to_owned()
}

fn joined(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test]
async fn an_intact_file_verifies_across_a_rotation() {
    let dir = temp_dir("rotation");
    let (key, jwks) = audit_key(&dir);
    let file = dir.join("audit.jsonl");
    let app = TestApp::spawn_with(|c| {
        with_audit_file(c, &file, &key);
        c.audit.rotate_bytes = 65_536;
    })
    .await;
    // ~1 kB per record: past 64 KiB at least once.
    hops(&app, 40).await;
    checkpoint(&app).await;
    hops(&app, 60).await;
    checkpoint(&app).await;
    let rotated = xaa_broker::audit_file::rotated_siblings(&file).unwrap();
    assert!(!rotated.is_empty(), "the file rotated");
    for f in rotated.iter().chain([&file]) {
        assert!(std::fs::metadata(f).unwrap().len() <= 65_536, "{}", f.display());
    }
    let (code, out) = verify(&["--file", file.to_str().unwrap(), "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("{}: ok: 100 records (seq 1-100)", app.state.instance)),
        "{out}"
    );
    assert!(
        out.contains("2 of 2 checkpoints verified, anchored through seq 100"),
        "{out}"
    );
    assert!(out.contains(&format!("{} audit file(s)", rotated.len() + 1)), "{out}");
}

#[tokio::test]
async fn a_byte_edited_in_the_file_is_named_by_its_record() {
    let (_app, file, jwks, mut lines) = file_chain("file-edit").await;
    let (i, record) = record_line(&lines, 3);
    assert!(lines[i].contains("\"client_id\":\"triage-agent\""));
    lines[i] = lines[i].replacen("\"client_id\":\"triage-agent\"", "\"client_id\":\"triage-agenT\"", 1);
    let copy = write_copy(&file, "edited.jsonl", &joined(&lines));
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    let at = format!("{copy}:{}", i + 1);
    assert!(
        out.contains(&format!("BROKEN at seq 3 (record {}, {at}): hash expected", record.id)),
        "{out}"
    );
    assert!(
        out.contains("(1 broken link(s) in 8 records"),
        "only the edited record: {out}"
    );
}

#[tokio::test]
async fn a_line_deleted_from_the_file_is_named_by_the_record_after_it() {
    let (_app, file, jwks, mut lines) = file_chain("file-delete").await;
    let (i, _) = record_line(&lines, 4);
    let (_, next) = record_line(&lines, 5);
    lines.remove(i);
    let copy = write_copy(&file, "deleted.jsonl", &joined(&lines));
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN at seq 5 (record {}", next.id)) && out.contains("seq expected 4 found 5"),
        "{out}"
    );
}

#[tokio::test]
async fn two_lines_swapped_in_the_file_are_named() {
    let (_app, file, jwks, mut lines) = file_chain("file-swap").await;
    let (i, _) = record_line(&lines, 2);
    let (j, third) = record_line(&lines, 3);
    lines.swap(i, j);
    let copy = write_copy(&file, "swapped.jsonl", &joined(&lines));
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN at seq 3 (record {}", third.id)) && out.contains("seq expected 2 found 3"),
        "{out}"
    );
}

#[tokio::test]
async fn a_file_truncated_after_a_checkpoint_is_caught_by_the_checkpoints_kept_elsewhere() {
    let (app, file, jwks, lines) = file_chain("file-truncate").await;
    // Cut records 7 and 8 and the checkpoint after them: the file alone
    // cannot tell; the checkpoints the broker logged (and stored) can.
    let (i, _) = record_line(&lines, 7);
    let copy = write_copy(&file, "truncated.jsonl", &joined(&lines[..i]));
    let jwks = jwks.to_str().unwrap();
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks]).await;
    assert_eq!(code, 0, "the file alone ends at its last checkpoint: {out}");
    assert!(out.contains("anchored through seq 6"), "{out}");

    let kept = app.state.store.checkpoints(&app.state.instance).await.unwrap();
    let log: String = kept
        .iter()
        .map(|c| {
            let line = serde_json::json!({"level": "INFO", "target": "audit", "checkpoint": serde_json::to_string(c).unwrap()});
            format!("{line}\n{{\"level\":\"INFO\",\"message\":\"another event\"}}\n")
        })
        .collect();
    let log_file = write_copy(&file, "broker.log", &log);
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks, "--checkpoints", &log_file]).await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("truncated: checkpoint says seq 8, chain ends at 6"),
        "{out}"
    );

    // Cut inside a line: the torn line is reported where it is.
    let full = joined(&lines);
    let cut = full.len() - lines[9].len() / 2;
    let torn = write_copy(&file, "cut.jsonl", &full[..cut]);
    let (code, out) = verify(&["--file", &torn, "--jwks", jwks]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{torn}:10: torn line")), "{out}");
}

#[tokio::test]
async fn a_torn_last_line_is_reported_and_the_broker_never_appends_to_it() {
    let (_app, file, jwks, lines) = file_chain("file-torn").await;
    let (_, record) = record_line(&lines, 8);
    let text = format!("{}{}", joined(&lines), &serde_json::to_string(&record).unwrap()[..40]);
    let copy = write_copy(&file, "torn.jsonl", &text);
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{copy}:11: torn line")), "{out}");

    // A broker started on the torn file writes its next record on a line
    // of its own; the tear stays reported.
    let dir = file.parent().unwrap().to_owned();
    let key = std::fs::read_dir(dir.join("keys"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let torn_path = PathBuf::from(&copy);
    let next = TestApp::spawn_with(|c| with_audit_file(c, &torn_path, &key)).await;
    hops(&next, 1).await;
    checkpoint(&next).await;
    let (code, out) = verify(&["--file", &copy, "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("{copy}:11: unparsable")), "{out}");
    assert!(
        out.contains(&format!("{}: ok: 1 records", next.state.instance)),
        "{out}"
    );
}

/// The config of `app` as a file the real binary serves, listening on a
/// free port, with the audit file and key.
fn serve_config(app: &TestApp, dir: &Path, file: &Path, key: &Path) -> (PathBuf, String) {
    let mut config = app.config.clone();
    with_audit_file(&mut config, file, key);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    config.listen = format!("127.0.0.1:{port}");
    let path = dir.join("broker.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    (path, format!("http://127.0.0.1:{port}"))
}

/// Serve `config` with the real binary as `instance`, make `n` first hops
/// against it, and stop it with SIGTERM (a clean stop: its last records
/// are anchored by a shutdown checkpoint).
async fn serve_and_stop(app: &TestApp, config: &Path, base: &str, instance: &str, n: usize) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xaa-broker"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("XAA_INSTANCE", instance)
        .env_remove("XAA_CONFIG")
        .env_remove("XAA_LISTEN")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..100 {
        if app.http.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the broker answers");
    for _ in 0..n {
        let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
        let resp = app
            .http
            .post(format!("{base}/token"))
            .basic_auth("triage-agent", Some("triage-agent-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", TOKEN_EXCHANGE)
                    .append_pair("resource", LOGS)
                    .append_pair("subject_token", &id_token)
                    .append_pair("subject_token_type", ID_TOKEN)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let pid = child.id().to_string();
    let status = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status()
            .unwrap();
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success(), "a clean stop: {status}");
}

#[tokio::test]
async fn a_restart_with_the_same_instance_and_file_continues_the_chain() {
    let dir = temp_dir("restart");
    let (key, jwks) = audit_key(&dir);
    let file = dir.join("audit.jsonl");
    let app = TestApp::spawn().await;
    let (config, base) = serve_config(&app, &dir, &file, &key);
    serve_and_stop(&app, &config, &base, "broker-restart", 3).await;
    serve_and_stop(&app, &config, &base, "broker-restart", 2).await;

    let (code, out) = verify(&["--file", file.to_str().unwrap(), "--jwks", jwks.to_str().unwrap()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("broker-restart: ok: 5 records (seq 1-5), 2 of 2 checkpoints verified, anchored through seq 5"),
        "one chain across both runs, each run's end anchored at shutdown: {out}"
    );
}

#[tokio::test]
async fn when_the_audit_file_cannot_be_written_no_token_leaves() {
    let dir = temp_dir("failclosed");
    let (key, _) = audit_key(&dir);
    let file = dir.join("audit.jsonl");
    let app = TestApp::spawn_with(|c| {
        with_audit_file(c, &file, &key);
        c.audit.rotate_bytes = 65_536;
    })
    .await;
    hops(&app, 1).await;
    // The open file still takes lines; the rotation at 64 KiB cannot
    // rename it once its directory is gone.
    std::fs::remove_dir_all(&dir).unwrap();
    let mut granted = 0;
    let refused = loop {
        let resp = app.first_hop("triage-agent", LOGS).await;
        if resp.status != 200 {
            break resp;
        }
        granted += 1;
        assert!(granted < 200, "the file rotated, so a write failed by now");
    };
    assert!(granted >= 30, "served until the file could not be written ({granted})");
    refused.assert_error(503, "temporarily_unavailable");
    let before = app.all_audit().await.len();
    let again = app.first_hop("triage-agent", LOGS).await;
    again.assert_error(503, "temporarily_unavailable");
    assert_eq!(
        app.all_audit().await.len(),
        before,
        "nothing committed while the file is down"
    );
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// A broker on Redis with an audit key: records 1–6, a checkpoint at 6,
/// records 7–8, a checkpoint at 8.
struct RedisChain {
    app: TestApp,
    url: String,
    prefix: String,
    jwks: String,
    con: ::redis::aio::MultiplexedConnection,
    /// The stream's entries: (id, record JSON), in order.
    entries: Vec<(String, String)>,
}

async fn redis_chain(test: &str) -> Option<RedisChain> {
    let url = redis_url().await?;
    let prefix = unique_prefix(test);
    let dir = temp_dir(test);
    let (key, jwks) = audit_key(&dir);
    let keys = shared_signing_key();
    let app = TestApp::spawn_with(|c| {
        with_redis(c, &url, &prefix, &keys);
        c.audit.checkpoint_key = Some(key.clone());
        c.audit.checkpoint_every_records = 1_000_000;
        c.audit.checkpoint_every_secs = 86_400;
        c.limits.enabled = false;
    })
    .await;
    hops(&app, 6).await;
    checkpoint(&app).await;
    hops(&app, 2).await;
    checkpoint(&app).await;
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let con = client.get_multiplexed_async_connection().await.unwrap();
    let mut chain = RedisChain {
        app,
        url,
        prefix,
        jwks: jwks.to_str().unwrap().to_owned(),
        con,
        entries: Vec::new(),
    };
    let raw: Vec<(String, Vec<String>)> = ::redis::cmd("XRANGE")
        .arg(chain.stream())
        .arg("-")
        .arg("+")
        .query_async(&mut chain.con)
        .await
        .unwrap();
    chain.entries = raw.into_iter().map(|(id, f)| (id, f[1].clone())).collect();
    assert_eq!(chain.entries.len(), 8);
    Some(chain)
}

impl RedisChain {
    fn stream(&self) -> String {
        format!("{}audit:{}", self.prefix, self.app.state.instance)
    }

    fn record(&self, seq: u64) -> AuditRecord {
        serde_json::from_str(&self.entries[seq as usize - 1].1).unwrap()
    }

    /// Replace the stream with `entries` (ids kept, so the order is theirs).
    async fn rewrite(&mut self, entries: &[(String, String)]) {
        let stream = self.stream();
        let _: () = ::redis::cmd("DEL")
            .arg(&stream)
            .query_async(&mut self.con)
            .await
            .unwrap();
        for (id, json) in entries {
            let _: String = ::redis::cmd("XADD")
                .arg(&stream)
                .arg(id)
                .arg("record")
                .arg(json)
                .query_async(&mut self.con)
                .await
                .unwrap();
        }
    }

    async fn verify(&self) -> (i32, String) {
        verify(&["--redis", &self.url, "--prefix", &self.prefix, "--jwks", &self.jwks]).await
    }
}

#[tokio::test]
async fn an_intact_redis_chain_verifies() {
    let Some(chain) = redis_chain("tamper_intact").await else {
        return;
    };
    let (code, out) = chain.verify().await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!(
            "{}: ok: 8 records (seq 1-8), 2 of 2 checkpoints verified, anchored through seq 8",
            chain.app.state.instance
        )),
        "{out}"
    );
    assert!(!out.contains(&chain.url), "the URL is never printed: {out}");
}

#[tokio::test]
async fn a_record_edited_in_redis_is_named() {
    let Some(mut chain) = redis_chain("tamper_edit").await else {
        return;
    };
    let mut entries = chain.entries.clone();
    let original = chain.record(3);
    entries[2].1 = entries[2].1.replacen("\"sub\":\"alice\"", "\"sub\":\"mallory\"", 1);
    assert_ne!(entries[2].1, chain.entries[2].1);
    chain.rewrite(&entries).await;
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN at seq 3 (record {}", original.id)) && out.contains("hash expected"),
        "{out}"
    );
}

#[tokio::test]
async fn a_record_deleted_from_redis_is_named() {
    let Some(mut chain) = redis_chain("tamper_delete").await else {
        return;
    };
    let (id, _) = chain.entries[3].clone();
    let stream = chain.stream();
    let _: i64 = ::redis::cmd("XDEL")
        .arg(&stream)
        .arg(&id)
        .query_async(&mut chain.con)
        .await
        .unwrap();
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN at seq 5 (record {}", chain.record(5).id))
            && out.contains("seq expected 4 found 5"),
        "{out}"
    );
}

#[tokio::test]
async fn two_records_swapped_in_redis_are_named() {
    let Some(mut chain) = redis_chain("tamper_swap").await else {
        return;
    };
    let mut entries = chain.entries.clone();
    let (second, third) = (entries[1].1.clone(), entries[2].1.clone());
    entries[1].1 = third;
    entries[2].1 = second;
    chain.rewrite(&entries).await;
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("BROKEN at seq 3 (record {}", chain.record(3).id))
            && out.contains("seq expected 2 found 3"),
        "{out}"
    );
}

#[tokio::test]
async fn a_redis_chain_truncated_after_a_checkpoint_is_caught() {
    let Some(mut chain) = redis_chain("tamper_truncate").await else {
        return;
    };
    let stream = chain.stream();
    for (id, _) in &chain.entries[6..] {
        let _: i64 = ::redis::cmd("XDEL")
            .arg(&stream)
            .arg(id)
            .query_async(&mut chain.con)
            .await
            .unwrap();
    }
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!(
            "{}: FAILED at checkpoint seq 8: truncated: checkpoint says seq 8, chain ends at 6",
            chain.app.state.instance
        )),
        "{out}"
    );
}

#[tokio::test]
async fn a_consistent_rewrite_without_the_key_no_longer_matches_the_checkpoints() {
    let Some(mut chain) = redis_chain("tamper_rewrite").await else {
        return;
    };
    let instance = chain.app.state.instance.clone();
    // Someone with write access to Redis hides what record 2 said: they
    // reseal every record after it, and fix the head to match.
    let mut records: Vec<AuditRecord> = (1..=8).map(|s| chain.record(s)).collect();
    records[1].scope_granted = Some("logs.read logs.write logs.purge".into());
    let mut prev = records[0].hash.clone();
    for r in &mut records[1..] {
        let seq = r.seq;
        r.seal(&instance, seq, &prev);
        prev = r.hash.clone();
    }
    let entries: Vec<(String, String)> = chain
        .entries
        .iter()
        .zip(&records)
        .map(|((id, _), r)| (id.clone(), serde_json::to_string(r).unwrap()))
        .collect();
    chain.rewrite(&entries).await;
    let head = format!("{}audit:{instance}:head", chain.prefix);
    let _: () = ::redis::cmd("HSET")
        .arg(&head)
        .arg("hash")
        .arg(&prev)
        .query_async(&mut chain.con)
        .await
        .unwrap();
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("BROKEN"), "every link holds after the rewrite: {out}");
    assert!(
        out.contains(&format!(
            "{instance}: FAILED at checkpoint seq 6: edited/reordered before checkpoint seq 6"
        )),
        "{out}"
    );

    // Making the stored checkpoints agree needs the key: edited, they no
    // longer match what was signed.
    let list = format!("{}audit:{instance}:checkpoints", chain.prefix);
    let kept: Vec<String> = ::redis::cmd("LRANGE")
        .arg(&list)
        .arg(0)
        .arg(-1)
        .query_async(&mut chain.con)
        .await
        .unwrap();
    for (i, json) in kept.iter().enumerate() {
        let mut cp: Checkpoint = serde_json::from_str(json).unwrap();
        cp.hash = records[cp.seq as usize - 1].hash.clone();
        let _: () = ::redis::cmd("LSET")
            .arg(&list)
            .arg(i)
            .arg(serde_json::to_string(&cp).unwrap())
            .query_async(&mut chain.con)
            .await
            .unwrap();
    }
    let (code, out) = chain.verify().await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAILED at checkpoint seq 6: signature: its fields differ from what was signed"),
        "{out}"
    );
}

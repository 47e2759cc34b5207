//! `xaa-broker audit verify`: check every chain against its signed
//! checkpoints, from audit files, Redis, or a running broker.
//!
//! Owns: reading the sources (`--file`, offline, with rotated siblings;
//! `--redis`, the streams and checkpoint lists directly; `--url`, the
//! broker's `POST /audit/chain` as an auditor client), the audit keys
//! (`--jwks` file or URL; with `--url` alone, the broker's `/audit/jwks`,
//! said so), extra checkpoints from shipped log lines (`--checkpoints`),
//! and printing the report: one line per instance, `--json` for machines.
//! Exit 0 only when everything checks; 1 when something does not (or
//! could not be checked); 2 when a source cannot be read. The checks
//! themselves are pure (`crate::chain_check`).
//! Must never: print a record's content beyond its id, seq and hashes, or
//! the Redis URL (it may hold a password) or the client secret.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::audit::{AuditRecord, Checkpoint};
use crate::audit_file;
use crate::chain_check::{self, ChainReport, parse_record};
use crate::trust::keyset::KeySet;

/// Where the chains to check come from.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["file", "redis", "url"])))]
pub struct VerifyArgs {
    /// An audit file (repeatable), read offline. Each is preceded by its
    /// rotated siblings (`FILE.<YYYYMMDDTHHMMSS.mmmZ>`), oldest first;
    /// every file is read once, in that order.
    #[arg(long = "file", value_name = "PATH")]
    file: Vec<PathBuf>,
    /// Read every instance's chain and checkpoints from Redis directly.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// The deployment's `store.prefix`.
    #[arg(long, default_value = crate::store::redis::DEFAULT_PREFIX, requires = "redis")]
    prefix: String,
    /// A running broker: its `POST /audit/chain`, as a client listed in
    /// `audit.clients`.
    #[arg(long, value_name = "BROKER")]
    url: Option<String>,
    #[arg(long, env = "XAA_AUDIT_CLIENT_ID", requires = "url")]
    client_id: Option<String>,
    #[arg(long, env = "XAA_AUDIT_CLIENT_SECRET", hide_env_values = true, requires = "url")]
    client_secret: Option<String>,
    /// The audit public keys: a JWK Set or a JWK in a file, or a URL (a
    /// broker's `/audit/jwks`). With `--url` and no `--jwks`, that
    /// broker's `/audit/jwks` is used.
    #[arg(long, value_name = "FILE-or-URL")]
    jwks: Option<String>,
    /// More checkpoints (repeatable): a file of JSON lines holding them, as
    /// the broker logs them (`checkpoint` field) or as the audit file does.
    /// Checkpoints kept apart from the chain catch a truncation the
    /// chain's own copy cannot.
    #[arg(long = "checkpoints", value_name = "FILE")]
    checkpoints: Vec<PathBuf>,
    /// Check only this instance's chain.
    #[arg(long)]
    instance: Option<String>,
    /// Check the links only: without keys, checkpoints anchor nothing.
    #[arg(long)]
    no_checkpoints: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// One instance's chain as read.
#[derive(Default)]
struct Chain {
    records: Vec<AuditRecord>,
    /// Where each record was read (same index).
    at: Vec<String>,
    checkpoints: Vec<Checkpoint>,
    /// The head the source keeps apart from the records (Redis).
    head: Option<(u64, String)>,
}

/// Something in a source that is not a whole record or checkpoint.
#[derive(Debug, Serialize)]
struct Problem {
    at: String,
    problem: String,
}

/// Everything read from one source.
#[derive(Default)]
struct Gathered {
    source: String,
    chains: BTreeMap<String, Chain>,
    problems: Vec<Problem>,
}

#[derive(Serialize)]
struct Report {
    ok: bool,
    source: String,
    /// Where the audit keys came from, or why there are none.
    keys: String,
    /// False when checkpoint signatures could not be checked.
    checkpoints_checked: bool,
    instances: Vec<ChainReport>,
    problems: Vec<Problem>,
}

pub fn run(args: VerifyArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(verify(&args)) {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print_human(&report);
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut gathered = if !args.file.is_empty() {
        from_files(&args.file)?
    } else if let Some(url) = &args.redis {
        from_redis(url, &args.prefix, args.instance.as_deref()).await?
    } else if let Some(url) = &args.url {
        from_broker(&http, url, args).await?
    } else {
        bail!("name a source: --file, --redis or --url");
    };
    if let Some(only) = &args.instance {
        gathered.chains.retain(|name, _| name == only);
    }
    for path in &args.checkpoints {
        add_checkpoints(&mut gathered, path)?;
    }
    let (keys, keys_said): (Option<KeySet>, String) = match (&args.jwks, &args.url) {
        (Some(source), _) => {
            let set = load_keys(&http, source).await?;
            (Some(set), format!("audit keys from {source}"))
        }
        (None, Some(url)) if !args.no_checkpoints => {
            let source = format!("{}/audit/jwks", url.trim_end_matches('/'));
            let set = load_keys(&http, &source).await?;
            let said = format!(
                "audit keys fetched from {source}, served by the broker under check (pass --jwks with a copy you trust to check independently)"
            );
            (Some(set), said)
        }
        _ if args.no_checkpoints => (
            None,
            "no audit keys (--no-checkpoints): checkpoint signatures not checked".into(),
        ),
        _ => (
            None,
            "no audit keys: checkpoints cannot be checked; pass --jwks FILE-or-URL (a broker's /audit/jwks), or \
             --no-checkpoints to check the links only"
                .into(),
        ),
    };
    let mut instances = Vec::new();
    for (name, chain) in &gathered.chains {
        let mut report = chain_check::check(name, &chain.records, &chain.checkpoints, keys.as_ref());
        if let Some(b) = &mut report.first_break {
            b.at = chain.at.get(b.index).cloned();
        }
        if let Some((seq, hash)) = &chain.head {
            report.against_head(*seq, hash);
        }
        instances.push(report);
    }
    let checkpoints_checked = keys.is_some();
    let ok = (checkpoints_checked || args.no_checkpoints)
        && !instances.is_empty()
        && instances.iter().all(|r| r.ok)
        && gathered.problems.is_empty();
    Ok(Report {
        ok,
        source: gathered.source,
        keys: keys_said,
        checkpoints_checked,
        instances,
        problems: gathered.problems,
    })
}

fn from_files(paths: &[PathBuf]) -> anyhow::Result<Gathered> {
    let files = audit_file::files_to_read(paths).context("listing the audit files")?;
    let read = audit_file::read_files(&files).context("reading the audit files")?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut g = Gathered {
        source: format!("{} audit file(s): {}", files.len(), names.join(", ")),
        ..Gathered::default()
    };
    for (name, lines) in read.instances {
        g.chains.insert(
            name,
            Chain {
                records: lines.records,
                at: lines.record_at,
                checkpoints: lines.checkpoints,
                head: None,
            },
        );
    }
    g.problems = read
        .problems
        .into_iter()
        .map(|p| Problem {
            at: format!("{}:{}", p.file, p.line),
            problem: p.problem,
        })
        .collect();
    Ok(g)
}

/// Stream entries per `XRANGE`: one huge reply would stall Redis.
const REDIS_PAGE: usize = 1000;

async fn from_redis(url: &str, prefix: &str, only: Option<&str>) -> anyhow::Result<Gathered> {
    // The URL may hold a password: never in an error or the output.
    let client = ::redis::Client::open(url).map_err(|_| anyhow::anyhow!("--redis is not a redis:// URL"))?;
    let mut con = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow::anyhow!("redis did not answer within 5 s"))?
    .map_err(|e| anyhow::anyhow!("cannot connect to redis ({:?})", e.kind()))?;
    let redis_err = |e: ::redis::RedisError| anyhow::anyhow!("redis error ({:?})", e.kind());
    let mut names: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(format!("{prefix}audit:instances"))
        .query_async(&mut con)
        .await
        .map_err(redis_err)?;
    if let Some(only) = only
        && !names.iter().any(|n| n == only)
    {
        names.push(only.to_owned());
    }
    names.sort();
    let mut g = Gathered {
        source: format!("redis, prefix {prefix:?}"),
        ..Gathered::default()
    };
    for name in names {
        if only.is_some_and(|o| o != name) {
            continue;
        }
        let stream = format!("{prefix}audit:{name}");
        let mut chain = Chain::default();
        let mut from = "-".to_owned();
        loop {
            let page: Vec<(String, Vec<String>)> = ::redis::cmd("XRANGE")
                .arg(&stream)
                .arg(&from)
                .arg("+")
                .arg("COUNT")
                .arg(REDIS_PAGE)
                .query_async(&mut con)
                .await
                .map_err(redis_err)?;
            let full = page.len() == REDIS_PAGE;
            let Some(last) = page.last().map(|(id, _)| id.clone()) else {
                break;
            };
            for (id, fields) in page {
                let at = format!("{stream} {id}");
                let json = fields.chunks(2).find(|kv| kv[0] == "record").and_then(|kv| kv.get(1));
                match json.map(|j| parse_record(j)) {
                    Some(Ok((record, canonical))) => {
                        if !canonical {
                            g.problems.push(Problem {
                                at: at.clone(),
                                problem: format!(
                                    "seq {} (id {}) is not the record as sealed: fields added, removed or reordered",
                                    record.seq, record.id
                                ),
                            });
                        }
                        chain.records.push(record);
                        chain.at.push(at);
                    }
                    Some(Err(_)) => g.problems.push(Problem {
                        at,
                        problem: "unparsable: not an audit record".into(),
                    }),
                    None => g.problems.push(Problem {
                        at,
                        problem: "a stream entry without a record".into(),
                    }),
                }
            }
            if !full {
                break;
            }
            from = format!("({last}");
        }
        let raw: Vec<String> = ::redis::cmd("LRANGE")
            .arg(format!("{prefix}audit:{name}:checkpoints"))
            .arg(0)
            .arg(-1)
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        for (i, json) in raw.iter().enumerate() {
            match serde_json::from_str::<Checkpoint>(json) {
                Ok(cp) => chain.checkpoints.push(cp),
                Err(_) => g.problems.push(Problem {
                    at: format!("{prefix}audit:{name}:checkpoints[{i}]"),
                    problem: "unreadable checkpoint".into(),
                }),
            }
        }
        let (seq, hash): (Option<String>, Option<String>) = ::redis::cmd("HMGET")
            .arg(format!("{prefix}audit:{name}:head"))
            .arg("seq")
            .arg("hash")
            .query_async(&mut con)
            .await
            .map_err(redis_err)?;
        if let (Some(seq), Some(hash)) = (seq, hash) {
            match seq.parse() {
                Ok(seq) => chain.head = Some((seq, hash)),
                Err(_) => g.problems.push(Problem {
                    at: format!("{prefix}audit:{name}:head"),
                    problem: "unreadable chain head".into(),
                }),
            }
        }
        g.chains.insert(name, chain);
    }
    Ok(g)
}

async fn from_broker(http: &reqwest::Client, url: &str, args: &VerifyArgs) -> anyhow::Result<Gathered> {
    let (Some(id), Some(secret)) = (&args.client_id, &args.client_secret) else {
        bail!(
            "--url needs an auditor's credentials: --client-id and --client-secret (or XAA_AUDIT_CLIENT_ID and XAA_AUDIT_CLIENT_SECRET)"
        );
    };
    let endpoint = format!("{}/audit/chain", url.trim_end_matches('/'));
    let call = |form: Vec<(&'static str, String)>| {
        let endpoint = endpoint.clone();
        async move {
            let mut body = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &form {
                body.append_pair(k, v);
            }
            let resp = http
                .post(&endpoint)
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.finish())
                .send()
                .await
                .with_context(|| format!("POST {endpoint}"))?;
            let status = resp.status();
            let body: serde_json::Value = resp
                .json()
                .await
                .with_context(|| format!("POST {endpoint}: not a JSON answer"))?;
            if !status.is_success() {
                bail!(
                    "POST {endpoint}: {status} {} ({})",
                    body["error"].as_str().unwrap_or("?"),
                    body["error_description"].as_str().unwrap_or("")
                );
            }
            Ok::<_, anyhow::Error>(body)
        }
    };
    let listing = call(Vec::new()).await?;
    let mut names: Vec<String> = listing["instances"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["instance"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(only) = &args.instance {
        names.retain(|n| n == only);
        if names.is_empty() {
            names.push(only.clone());
        }
    }
    let mut g = Gathered {
        source: format!("broker {endpoint}"),
        ..Gathered::default()
    };
    for name in names {
        let mut chain = Chain::default();
        let mut cursor: Option<String> = None;
        loop {
            let mut form = vec![("instance", name.clone()), ("limit", "5000".to_owned())];
            if let Some(c) = &cursor {
                form.push(("cursor", c.clone()));
            }
            let page = call(form).await?;
            let records: Vec<AuditRecord> = serde_json::from_value(page["records"].clone())
                .with_context(|| format!("POST {endpoint}: unreadable records"))?;
            if cursor.is_none() {
                chain.checkpoints = serde_json::from_value(page["checkpoints"].clone())
                    .with_context(|| format!("POST {endpoint}: unreadable checkpoints"))?;
            }
            for r in records {
                chain.at.push(format!("{name} seq {}", r.seq));
                chain.records.push(r);
            }
            match page["next_cursor"].as_str() {
                Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        g.chains.insert(name, chain);
    }
    Ok(g)
}

/// A JWK Set (or one JWK) from a file or a URL.
async fn load_keys(http: &reqwest::Client, source: &str) -> anyhow::Result<KeySet> {
    let doc: serde_json::Value = if source.starts_with("https://") || source.starts_with("http://") {
        let resp = http.get(source).send().await.with_context(|| format!("GET {source}"))?;
        if !resp.status().is_success() {
            bail!("GET {source}: {}", resp.status());
        }
        resp.json().await.with_context(|| format!("GET {source}: not JSON"))?
    } else {
        let text = std::fs::read_to_string(source).with_context(|| format!("--jwks: cannot read {source}"))?;
        serde_json::from_str(&text).with_context(|| format!("--jwks: {source} is not JSON"))?
    };
    chain_check::audit_key_set(&doc).map_err(|e| anyhow::anyhow!("--jwks {source}: {e}"))
}

/// Checkpoints from a file of JSON lines: the audit file's
/// `{"checkpoint": {…}}`, a JSON log line whose `checkpoint` field holds
/// the checkpoint's JSON, a human log line `… checkpoint={…}`, or a bare
/// checkpoint. Other lines are skipped (a log holds other events).
fn add_checkpoints(g: &mut Gathered, path: &PathBuf) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("--checkpoints: cannot read {}", path.display()))?;
    for line in text.lines() {
        let cp = match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => match v.get("checkpoint") {
                Some(serde_json::Value::String(s)) => serde_json::from_str::<Checkpoint>(s).ok(),
                Some(obj) => serde_json::from_value::<Checkpoint>(obj.clone()).ok(),
                None => serde_json::from_value::<Checkpoint>(v).ok(),
            },
            Err(_) => line
                .find("checkpoint={")
                .and_then(|i| serde_json::from_str::<Checkpoint>(&line[i + "checkpoint=".len()..]).ok()),
        };
        if let Some(cp) = cp {
            let chain = g.chains.entry(cp.instance.clone()).or_default();
            if !chain.checkpoints.iter().any(|c| c.jws == cp.jws) {
                chain.checkpoints.push(cp);
            }
        }
    }
    Ok(())
}

/// The first 12 hex digits: enough to compare by eye.
fn short(hash: &str) -> String {
    match hash.get(..12) {
        Some(s) if hash.len() > 12 => format!("{s}…"),
        _ => hash.to_owned(),
    }
}

fn print_human(report: &Report) {
    println!("source: {}", report.source);
    println!("keys: {}", report.keys);
    for r in &report.instances {
        let span = match (r.first_seq, r.last_seq) {
            (Some(a), Some(b)) => format!("{} records (seq {a}-{b})", r.records),
            _ => "no records".to_owned(),
        };
        if let Some(b) = &r.first_break {
            let (expected, found) = match b.link {
                chain_check::Link::Seq => (b.expected.clone(), b.found.clone()),
                _ => (short(&b.expected), short(&b.found)),
            };
            println!(
                "{}: BROKEN at seq {} (record {}{}): {} expected {} found {} ({} broken link(s) in {span})",
                r.instance,
                b.seq,
                b.id,
                b.at.as_deref().map(|a| format!(", {a}")).unwrap_or_default(),
                b.link.as_str(),
                expected,
                found,
                r.breaks
            );
        } else if let Some(f) = r.checkpoint_failures.first() {
            println!("{}: FAILED at checkpoint seq {}: {}", r.instance, f.seq, f.problem);
        } else {
            let anchored = match r.anchored_through {
                Some(seq) => format!(
                    "{} of {} checkpoints verified, anchored through seq {seq}",
                    r.checkpoints_verified, r.checkpoints
                ),
                None => format!("{} checkpoints, none verified: nothing anchored", r.checkpoints),
            };
            let tail = if r.unanchored > 0 {
                format!(
                    "; {} record(s) after it not anchored (a truncation there cannot be detected)",
                    r.unanchored
                )
            } else {
                String::new()
            };
            println!("{}: ok: {span}, {anchored}{tail}", r.instance);
        }
        let skip = usize::from(r.first_break.is_none());
        for f in r.checkpoint_failures.iter().skip(skip) {
            println!("  checkpoint seq {}: {}", f.seq, f.problem);
        }
        for n in &r.notes {
            println!("  note: {n}");
        }
    }
    for p in &report.problems {
        println!("{}: {}", p.at, p.problem);
    }
    if report.instances.is_empty() {
        println!("no audit chain found: nothing was verified");
    }
    if report.ok {
        println!("verify: ok");
    } else {
        let failed = report.instances.iter().filter(|r| !r.ok).count();
        let mut why = vec![format!("{failed} of {} chain(s) failed", report.instances.len())];
        if !report.problems.is_empty() {
            why.push(format!("{} line problem(s)", report.problems.len()));
        }
        if !report.checkpoints_checked {
            why.push("checkpoints not checked".into());
        }
        println!("verify: FAILED ({})", why.join(", "));
    }
}

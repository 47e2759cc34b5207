//! The store contract (the `Store` trait, src/store/mod.rs), run against both
//! stores so they can never drift: each contract is one generic
//! `async fn(&dyn Store)`, and `contracts!` makes a `memory_store::<name>` and
//! a `redis_store::<name>` test of it (the Redis one on the shared test
//! server, under a prefix of its own). Then Redis-only behaviour (restarts, a
//! dead server) and the broker wired to Redis end to end.

use std::time::Duration;

use xaa_broker::audit::NoiseSummary;
use xaa_broker::audit::{AuditRecord, Decision, GENESIS, verify_chain};
use xaa_broker::config::StoreConfig;
use xaa_broker::store::redis::RedisStore;
use xaa_broker::store::{Commit, CommitPlan, Effect, Mode, ReplayMark, Revocation, RevocationGuard, Store};
use xaa_broker::types::Principal;
use xaa_broker::types::now_secs;

use crate::support::redis::{dedicated_redis, redis_url, unique_prefix};
use crate::support::*;

thread_local! {
    /// The memory store's manual clock, for the contract running on this
    /// thread (`#[tokio::test]` runs on one thread); none for Redis, which
    /// judges expiry by its own `TIME`.
    static CLOCK: std::cell::RefCell<Option<std::sync::Arc<xaa_broker::clock::ManualClock>>> =
        const { std::cell::RefCell::new(None) };
}

/// Now, as the store under test sees it.
fn now() -> i64 {
    use xaa_broker::clock::Clock;
    CLOCK
        .with(|c| c.borrow().as_ref().map(|m| m.now()))
        .unwrap_or_else(now_secs)
}

/// Let `ms` pass for the store under test: the memory store's clock moves;
/// Redis's only moves in real time, so wait.
async fn later(ms: u64) {
    let manual = CLOCK.with(|c| c.borrow().clone());
    match manual {
        Some(clock) => clock.advance_secs(ms.div_ceil(1000) as i64),
        None => tokio::time::sleep(Duration::from_millis(ms)).await,
    }
}

/// The instance every contract store writes as.
const INSTANCE: &str = "contract-i1";

macro_rules! contracts {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[tokio::test]
                async fn $name() {
                    // The memory store on a manual clock: time moves when
                    // the contract says so, no sleeping.
                    let clock = std::sync::Arc::new(xaa_broker::clock::ManualClock::new());
                    super::CLOCK.with(|c| *c.borrow_mut() = Some(clock.clone()));
                    let store = xaa_broker::store::memory::MemoryStore::with_clock(
                        super::INSTANCE,
                        xaa_broker::store::memory::MAX_AUDIT_RECORDS,
                        clock,
                    );
                    super::$name(&store).await;
                }
            )*
        }
        mod redis_store {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(store) = super::redis_store(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&store).await;
                }
            )*
        }
    };
}

contracts!(
    a_mark_can_be_committed_once,
    a_replayed_commit_writes_nothing_at_all,
    a_mark_expires,
    records_form_a_hash_chain,
    a_long_chain_reads_back_whole,
    audit_by_txn_returns_that_txn_oldest_first,
    revoke_by_jti,
    revoke_by_txn,
    revoke_subject_before_keeps_the_latest_cutoff,
    revocations_expire_but_are_never_shortened,
    a_guarded_commit_of_a_revoked_token_writes_nothing,
    a_guard_honours_the_subject_cutoff,
    guards_say_which_token_is_revoked,
    subject_cutoffs_are_scoped_by_issuer,
    an_effect_lands_only_with_its_commit,
    a_denial_spends_fresh_marks_and_overwrites_none,
    a_denial_after_a_replayed_authentication_spends_nothing,
    ping_answers,
    noise_summaries_read_back_newest_first_apart_from_the_chain,
    noise_summaries_expire_after_their_retention,
    concurrent_commits_form_one_chain,
    concurrent_commits_of_one_mark_grant_it_once,
    refused_commits_among_concurrent_ones_write_nothing,
);

/// A Redis store as `INSTANCE` under a prefix no other test uses, or `None`
/// when Redis tests are skipped.
async fn redis_store(test: &str) -> Option<RedisStore> {
    let url = redis_url().await?;
    Some(
        RedisStore::connect(&url, &unique_prefix(test), INSTANCE)
            .await
            .expect("connect to the test redis"),
    )
}

fn record(txn: Option<&str>) -> AuditRecord {
    let mut r = AuditRecord::begin(now() * 1000, Some("127.0.0.1".into()), Some("store-contract"));
    r.decision = Decision::Granted;
    r.txn = txn.map(str::to_owned);
    r.sub = Some("alice".into());
    r.issued_jti = Some(uuid::Uuid::now_v7().to_string());
    r
}

fn mark(key: &str, ttl: i64) -> ReplayMark {
    ReplayMark {
        key: key.to_owned(),
        expires_at: now() + ttl,
        authenticates: key.starts_with("client_assertion:"),
    }
}

#[track_caller]
fn done(c: Commit) -> AuditRecord {
    match c {
        Commit::Done(r) => r,
        Commit::Replayed { index } => panic!("expected Done, got Replayed {{ index: {index} }}"),
        Commit::Revoked { index } => panic!("expected Done, got Revoked {{ index: {index} }}"),
    }
}

/// A plan that grants: these marks and guards, no effects.
fn grant<'a>(marks: &'a [ReplayMark], guards: &'a [RevocationGuard]) -> CommitPlan<'a> {
    CommitPlan {
        mode: Mode::Grant,
        now: now(),
        marks,
        guards,
        effects: &[],
    }
}

async fn commit(store: &dyn Store, marks: &[ReplayMark], txn: Option<&str>) -> Commit {
    store.commit(grant(marks, &[]), record(txn)).await.expect("commit")
}

/// The issuer every contract user comes from, unless a test says otherwise.
const IDP: &str = "https://idp.example.com";

fn principal(sub: &str) -> Principal {
    Principal {
        iss: IDP.to_owned(),
        sub: sub.to_owned(),
    }
}

async fn chain_len(store: &dyn Store) -> usize {
    store.audit_chain(INSTANCE).await.expect("audit_chain").len()
}

/// A token of `sub` (from `IDP`) to check revocation against.
fn token(jti: &str, txn: &str, sub: &str, iat: Option<i64>) -> RevocationGuard {
    guard(jti, txn, sub, iat)
}

async fn revoked(store: &dyn Store, t: RevocationGuard) -> bool {
    store.is_revoked(t.token(), now()).await.expect("is_revoked")
}

async fn a_mark_can_be_committed_once(store: &dyn Store) {
    done(commit(store, &[mark("client_assertion:bot:j1", 60)], None).await);
    let again = commit(store, &[mark("client_assertion:bot:j1", 60)], None).await;
    assert!(matches!(again, Commit::Replayed { index: 0 }), "{again:?}");
    assert_eq!(chain_len(store).await, 1, "a replayed commit appends no record");
    done(commit(store, &[mark("client_assertion:bot:j2", 60)], None).await);
}

async fn a_replayed_commit_writes_nothing_at_all(store: &dyn Store) {
    done(commit(store, &[mark("id_jag:used", 60)], Some("t-replay")).await);
    let both = commit(
        store,
        &[mark("client_assertion:fresh", 60), mark("id_jag:used", 60)],
        Some("t-replay"),
    )
    .await;
    assert!(matches!(both, Commit::Replayed { index: 1 }), "{both:?}");
    assert_eq!(chain_len(store).await, 1);
    assert_eq!(store.audit_by_txn("t-replay").await.unwrap().len(), 1);
    // The first mark was not set either: it is still usable.
    done(commit(store, &[mark("client_assertion:fresh", 60)], None).await);
}

async fn a_mark_expires(store: &dyn Store) {
    done(commit(store, &[mark("id_jag:short", 1)], None).await);
    assert!(matches!(
        commit(store, &[mark("id_jag:short", 1)], None).await,
        Commit::Replayed { index: 0 }
    ));
    later(2100).await;
    done(commit(store, &[mark("id_jag:short", 60)], None).await);
    // A deadline already past sets nothing.
    done(commit(store, &[mark("id_jag:past", -5)], None).await);
    done(commit(store, &[mark("id_jag:past", 60)], None).await);
}

async fn records_form_a_hash_chain(store: &dyn Store) {
    let mut written = Vec::new();
    for i in 0..3 {
        written.push(done(commit(store, &[], Some(&format!("t{i}"))).await));
    }
    assert_eq!(written.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(written[0].prev_hash, GENESIS);
    assert_eq!(written[1].prev_hash, written[0].hash);
    assert_eq!(written[2].prev_hash, written[1].hash);
    assert!(written.iter().all(|r| r.instance == INSTANCE && r.hash.len() == 64));

    let chain = store.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain, written, "the stored chain is what commit returned");
    assert_eq!(verify_chain(&chain), Ok(()));
    assert!(store.audit_chain("some-other-instance").await.unwrap().is_empty());
}

async fn a_long_chain_reads_back_whole(store: &dyn Store) {
    for _ in 0..1005 {
        done(commit(store, &[], None).await);
    }
    let chain = store.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain.len(), 1005);
    assert!(chain.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    assert_eq!(verify_chain(&chain), Ok(()));
}

async fn audit_by_txn_returns_that_txn_oldest_first(store: &dyn Store) {
    let a1 = done(commit(store, &[], Some("txn-a")).await);
    let b1 = done(commit(store, &[], Some("txn-b")).await);
    done(commit(store, &[], None).await);
    let a2 = done(commit(store, &[], Some("txn-a")).await);

    assert_eq!(store.audit_by_txn("txn-a").await.unwrap(), [a1, a2]);
    assert_eq!(store.audit_by_txn("txn-b").await.unwrap(), [b1]);
    assert!(store.audit_by_txn("txn-unknown").await.unwrap().is_empty());
}

async fn revoke_by_jti(store: &dyn Store) {
    let now = now();
    assert!(!revoked(store, token("j1", "t1", "alice", Some(now))).await);
    store.revoke(Revocation::Jti("j1".into()), now + 60).await.unwrap();
    assert!(revoked(store, token("j1", "t1", "alice", Some(now))).await);
    assert!(
        !revoked(store, token("j2", "t1", "alice", Some(now))).await,
        "only that jti"
    );
    let no_jti = RevocationGuard {
        jti: None,
        txn: None,
        principal: principal("alice"),
        iat: Some(now),
    };
    assert!(!revoked(store, no_jti).await);
}

async fn revoke_by_txn(store: &dyn Store) {
    let now = now();
    store
        .revoke(Revocation::Txn("t-incident".into()), now + 60)
        .await
        .unwrap();
    assert!(revoked(store, token("j1", "t-incident", "alice", Some(now))).await);
    assert!(
        revoked(store, token("j-later", "t-incident", "bob", Some(now + 30))).await,
        "later tokens of the txn too"
    );
    assert!(!revoked(store, token("j1", "t-other", "alice", Some(now))).await);
}

async fn revoke_subject_before_keeps_the_latest_cutoff(store: &dyn Store) {
    let now = now();
    let cut = now - 100;
    let sub_before = |before| Revocation::SubjectBefore {
        principal: principal("alice"),
        before,
    };
    store.revoke(sub_before(cut), now + 60).await.unwrap();
    assert!(
        revoked(store, token("j1", "t1", "alice", Some(cut))).await,
        "iat = cut-off is revoked"
    );
    assert!(revoked(store, token("j1", "t1", "alice", Some(cut - 1))).await);
    assert!(
        !revoked(store, token("j1", "t1", "alice", Some(cut + 1))).await,
        "a later token is not"
    );
    assert!(
        revoked(store, token("j1", "t1", "alice", None)).await,
        "no iat: cannot prove it is later"
    );
    assert!(
        !revoked(store, token("j1", "t1", "bob", Some(cut))).await,
        "only that subject"
    );

    // An earlier cut-off never moves it back ...
    store.revoke(sub_before(cut - 50), now + 60).await.unwrap();
    assert!(revoked(store, token("j1", "t1", "alice", Some(cut))).await);
    // ... a later one moves it forward.
    store.revoke(sub_before(cut + 10), now + 60).await.unwrap();
    assert!(revoked(store, token("j1", "t1", "alice", Some(cut + 1))).await);
    assert!(!revoked(store, token("j1", "t1", "alice", Some(cut + 11))).await);
}

async fn revocations_expire_but_are_never_shortened(store: &dyn Store) {
    let now = now();
    store.revoke(Revocation::Jti("short".into()), now + 1).await.unwrap();
    store.revoke(Revocation::Jti("long".into()), now + 60).await.unwrap();
    store.revoke(Revocation::Jti("long".into()), now + 1).await.unwrap();
    store
        .revoke(
            Revocation::SubjectBefore {
                principal: principal("carol"),
                before: now,
            },
            now + 1,
        )
        .await
        .unwrap();
    assert!(revoked(store, token("short", "t", "x", Some(now))).await);
    assert!(revoked(store, token("x", "t", "carol", Some(now))).await);
    later(2100).await;
    assert!(!revoked(store, token("short", "t", "x", Some(now))).await, "expired");
    assert!(!revoked(store, token("x", "t", "carol", Some(now))).await, "expired");
    assert!(
        revoked(store, token("long", "t", "x", Some(now))).await,
        "a shorter expiry does not shorten"
    );
    // A revocation already past its expiry records nothing.
    store.revoke(Revocation::Jti("stale".into()), now - 5).await.unwrap();
    assert!(!revoked(store, token("stale", "t", "x", Some(now))).await);
}

async fn ping_answers(store: &dyn Store) {
    store.ping().await.expect("ping");
}

fn summary(reason: &str, count: u64) -> NoiseSummary {
    NoiseSummary {
        id: uuid::Uuid::now_v7().to_string(),
        instance: INSTANCE.into(),
        source: "198.51.100.7".into(),
        error: "invalid_client".into(),
        reason: reason.into(),
        client_id: Some("chat-app".into()),
        count,
        first: "2030-01-01T00:00:00Z".into(),
        last: "2030-01-01T00:00:59Z".into(),
    }
}

const DAY: Duration = Duration::from_secs(86_400);

/// Summaries of unauthenticated noise read back whole, newest first, up to
/// a limit, from a store area that is not the hash-chained trail.
async fn noise_summaries_read_back_newest_first_apart_from_the_chain(store: &dyn Store) {
    assert!(store.unauthenticated(10).await.unwrap().is_empty());
    let first = [summary("client_auth.missing", 3), summary("client_auth.bad_secret", 1)];
    store.append_unauthenticated(&first, DAY).await.unwrap();
    let second = [summary("rate_limit.source", 40)];
    store.append_unauthenticated(&second, DAY).await.unwrap();
    store.append_unauthenticated(&[], DAY).await.unwrap();

    let all = store.unauthenticated(10).await.unwrap();
    assert_eq!(all, [second[0].clone(), first[1].clone(), first[0].clone()]);
    assert_eq!(store.unauthenticated(2).await.unwrap(), all[..2]);
    assert_eq!(chain_len(store).await, 0, "summaries are not audit records");
    // And records are not summaries.
    done(commit(store, &[], None).await);
    assert_eq!(store.unauthenticated(10).await.unwrap(), all);
}

/// Each summary is kept for the retention it was appended with.
async fn noise_summaries_expire_after_their_retention(store: &dyn Store) {
    let short = summary("client_auth.missing", 1);
    store
        .append_unauthenticated(std::slice::from_ref(&short), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(store.unauthenticated(10).await.unwrap(), [short]);
    later(2100).await;
    assert!(store.unauthenticated(10).await.unwrap().is_empty(), "expired");
    let long = summary("client_auth.bad_secret", 2);
    store
        .append_unauthenticated(std::slice::from_ref(&long), DAY)
        .await
        .unwrap();
    assert_eq!(store.unauthenticated(10).await.unwrap(), [long]);
}

/// The memory store keeps a bounded ring of summaries: the oldest go.
#[tokio::test]
async fn memory_noise_summaries_are_bounded() {
    use xaa_broker::store::memory::{MAX_NOISE_SUMMARIES, MemoryStore};
    let store = MemoryStore::new(INSTANCE);
    let batch: Vec<NoiseSummary> = (0..1000).map(|i| summary("client_auth.missing", i)).collect();
    for _ in 0..(MAX_NOISE_SUMMARIES / 1000 + 3) {
        store.append_unauthenticated(&batch, DAY).await.unwrap();
    }
    let kept = store.unauthenticated(usize::MAX).await.unwrap();
    assert_eq!(kept.len(), MAX_NOISE_SUMMARIES);
    assert_eq!(kept[0], batch[999], "the newest is kept");
}

/// `{p}noise` is one stream for every instance, expiring one retention
/// after its last append.
#[tokio::test]
async fn redis_the_noise_stream_is_shared_and_expires() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("noise");
    let one = RedisStore::connect(&url, &prefix, INSTANCE).await.unwrap();
    let two = RedisStore::connect(&url, &prefix, "contract-i2").await.unwrap();
    one.append_unauthenticated(&[summary("client_auth.missing", 1)], DAY)
        .await
        .unwrap();
    let mut theirs = summary("client_auth.missing", 2);
    theirs.instance = "contract-i2".into();
    two.append_unauthenticated(std::slice::from_ref(&theirs), DAY)
        .await
        .unwrap();
    assert_eq!(
        one.unauthenticated(10).await.unwrap()[0],
        theirs,
        "any instance reads all"
    );
    let mut conn = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}noise");
    let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
    let day_ms = DAY.as_millis() as i64;
    assert!(ttl > day_ms - 60_000 && ttl <= day_ms, "PTTL {ttl}");
    let len: usize = ::redis::cmd("XLEN").arg(&key).query_async(&mut conn).await.unwrap();
    assert_eq!(len, 2);
}

// ---- Redis only ----

/// A broker restarted with the same instance name continues its chain; a new
/// instance starts its own at seq 1.
#[tokio::test]
async fn redis_a_restarted_instance_continues_its_chain() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("restart");
    let first = RedisStore::connect(&url, &prefix, INSTANCE).await.unwrap();
    done(commit(&first, &[], None).await);
    let second_record = done(commit(&first, &[], None).await);
    drop(first);

    let again = RedisStore::connect(&url, &prefix, INSTANCE).await.unwrap();
    let third = done(commit(&again, &[], None).await);
    assert_eq!((third.seq, third.prev_hash.as_str()), (3, second_record.hash.as_str()));
    assert_eq!(verify_chain(&again.audit_chain(INSTANCE).await.unwrap()), Ok(()));

    let other = RedisStore::connect(&url, &prefix, "contract-i2").await.unwrap();
    let fresh = done(commit(&other, &[], None).await);
    assert_eq!((fresh.seq, fresh.prev_hash.as_str()), (1, GENESIS));
    assert_eq!(
        other.audit_chain(INSTANCE).await.unwrap().len(),
        3,
        "any instance reads any chain"
    );
}

/// Two processes misconfigured with one instance name still write one
/// unbroken chain: the script refuses an append sealed after a stale head.
#[tokio::test]
async fn redis_two_processes_sharing_an_instance_keep_one_chain() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("shared-instance");
    let a = RedisStore::connect(&url, &prefix, INSTANCE).await.unwrap();
    let b = RedisStore::connect(&url, &prefix, INSTANCE).await.unwrap();
    for _ in 0..3 {
        done(commit(&a, &[], None).await);
        done(commit(&b, &[], None).await);
    }
    let chain = a.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(verify_chain(&chain), Ok(()));
}

/// A dead Redis fails every operation (fail closed), with an error that names
/// neither the server nor a value; once it is back the same store works.
#[tokio::test]
async fn redis_a_dead_server_fails_closed_and_the_store_recovers() {
    let Some(mut server) = dedicated_redis().await else {
        return;
    };
    let store = RedisStore::connect(&server.url(), "xaa:", INSTANCE).await.unwrap();
    done(commit(&store, &[mark("id_jag:before", 60)], Some("t-dead")).await);

    server.kill().await;
    let err = store
        .commit(grant(&[mark("id_jag:during", 60)], &[]), record(Some("t-dead")))
        .await
        .expect_err("no Redis, no commit");
    for leak in ["127.0.0.1", &server.port().to_string(), "id_jag", "t-dead"] {
        assert!(!err.0.contains(leak), "{err} mentions {leak}");
    }
    assert!(
        store
            .is_revoked(token("j", "t", "alice", None).token(), now())
            .await
            .is_err()
    );
    assert!(store.audit_by_txn("t-dead").await.is_err());
    assert!(store.ping().await.is_err());
    // Let the manager's reconnect attempts run out while the server is down,
    // as in a real outage.
    tokio::time::sleep(Duration::from_millis(500)).await;

    server.restart().await;
    store.ping().await.expect("ping after the restart");
    // The restarted server lost its data (no persistence): the chain head is
    // reloaded and the mark usable.
    let after = done(commit(&store, &[mark("id_jag:during", 60)], Some("t-dead")).await);
    assert_eq!(store.audit_by_txn("t-dead").await.unwrap(), [after]);
}

/// A read that meets the broken connection of a restarted Redis is retried
/// on a fresh one: no request fails for a Redis that is back.
#[tokio::test]
async fn redis_reads_go_through_right_after_a_restart() {
    let Some(mut server) = dedicated_redis().await else {
        return;
    };
    let store = RedisStore::connect(&server.url(), "xaa:", INSTANCE).await.unwrap();
    done(commit(&store, &[], Some("t-restart")).await);

    server.restart().await;
    assert!(!revoked(&store, token("j", "t", "alice", None)).await);
    assert!(
        store.audit_by_txn("t-restart").await.unwrap().is_empty(),
        "no persistence"
    );
    store.ping().await.unwrap();
    done(commit(&store, &[], Some("t-restart")).await);
}

/// A URL's password appears in no error.
#[tokio::test]
async fn redis_the_url_never_appears_in_an_error() {
    let Some(url) = redis_url().await else { return };
    let with_password = url.replace("redis://", "redis://:hunter2-pw@");
    let closed_port = format!("redis://:hunter2-pw@127.0.0.1:{}/", free_port());
    for bad in [with_password.as_str(), closed_port.as_str(), "redis://:hunter2-pw@[::1"] {
        let err = match RedisStore::connect(bad, "xaa:", INSTANCE).await {
            Ok(_) => panic!("connected with a wrong password"),
            Err(e) => e,
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker configured with the Redis store issues a token, and its audit
/// record is in Redis: another store on the same prefix reads it by txn.
#[tokio::test]
async fn redis_the_broker_commits_to_redis() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("broker");
    let app = TestApp::spawn_with(|c| {
        c.store = StoreConfig::Redis {
            url: url.clone(),
            prefix: Some(prefix.clone()),
        }
    })
    .await;
    let r = app.first_hop("triage-agent", LOGS).await;
    r.assert_ok();
    let claims = r.claims();
    let txn = claims["txn"].as_str().expect("txn claim");

    let reader = RedisStore::connect(&url, &prefix, "reader").await.unwrap();
    let records = reader.audit_by_txn(txn).await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let rec = &records[0];
    assert_eq!(rec.decision, Decision::Granted);
    assert_eq!(rec.instance, app.state.instance);
    assert_eq!(rec.issued_jti.as_deref(), claims["jti"].as_str());
    assert_eq!(
        verify_chain(&reader.audit_chain(&app.state.instance).await.unwrap()),
        Ok(())
    );
}

fn guard(jti: &str, txn: &str, sub: &str, iat: Option<i64>) -> RevocationGuard {
    RevocationGuard {
        jti: Some(jti.to_owned()),
        txn: Some(txn.to_owned()),
        principal: principal(sub),
        iat,
    }
}

/// The revocation check rides in the commit: a revoked subject token means
/// no marks, no record, and `Revoked` — by jti and by txn alike.
async fn a_guarded_commit_of_a_revoked_token_writes_nothing(store: &dyn Store) {
    let g = guard("j-guard", "t-guard", "alice", Some(now() - 10));
    let ok = store
        .commit(
            grant(&[mark("m-guard-1", 60)], std::slice::from_ref(&g)),
            record(Some("t-guard")),
        )
        .await
        .unwrap();
    done(ok);
    store
        .revoke(Revocation::Txn("t-guard".into()), now() + 60)
        .await
        .unwrap();
    let before = chain_len(store).await;
    let refused = store
        .commit(
            grant(&[mark("m-guard-2", 60)], std::slice::from_ref(&g)),
            record(Some("t-guard")),
        )
        .await
        .unwrap();
    assert!(matches!(refused, Commit::Revoked { index: 0 }), "{refused:?}");
    assert_eq!(chain_len(store).await, before, "nothing written");
    // The mark of the refused commit was not set either.
    done(commit(store, &[mark("m-guard-2", 60)], None).await);
    let by_jti = guard("j-guard-2", "t-other", "alice", Some(now()));
    store
        .revoke(Revocation::Jti("j-guard-2".into()), now() + 60)
        .await
        .unwrap();
    assert!(matches!(
        store.commit(grant(&[], &[by_jti]), record(None)).await.unwrap(),
        Commit::Revoked { index: 0 }
    ));
}

/// Offboarding: tokens issued at or before the cut-off (or without `iat`)
/// are refused; later ones pass.
async fn a_guard_honours_the_subject_cutoff(store: &dyn Store) {
    let cut = now();
    store
        .revoke(
            Revocation::SubjectBefore {
                principal: principal("bob"),
                before: cut,
            },
            cut + 60,
        )
        .await
        .unwrap();
    for iat in [Some(cut - 5), Some(cut), None] {
        let g = guard("j-bob", "t-bob", "bob", iat);
        assert!(
            matches!(
                store.commit(grant(&[], &[g]), record(None)).await.unwrap(),
                Commit::Revoked { index: 0 }
            ),
            "iat {iat:?}"
        );
    }
    let later = guard("j-bob-2", "t-bob-2", "bob", Some(cut + 1));
    done(store.commit(grant(&[], &[later]), record(None)).await.unwrap());
}

/// The stream and chain head of an instance that stops writing (a retired
/// `XAA_INSTANCE`, or the random name of a past start) expire after the
/// retention period instead of staying for ever.
#[tokio::test]
async fn redis_an_instances_audit_keys_expire_after_retention() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix("expiry");
    let store = RedisStore::connect(&url, &prefix, INSTANCE).await.expect("connect");
    done(commit(&store, &[], Some("t-expiry")).await);
    let mut conn = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let retention_ms = xaa_broker::store::redis::AUDIT_RETENTION.as_millis() as i64;
    for key in [
        format!("{prefix}audit:{INSTANCE}"),
        format!("{prefix}audit:{INSTANCE}:head"),
    ] {
        let ttl: i64 = ::redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(ttl > retention_ms - 60_000 && ttl <= retention_ms, "{key}: PTTL {ttl}");
    }
}

/// With a subject and an actor guard, the commit says which one is revoked.
async fn guards_say_which_token_is_revoked(store: &dyn Store) {
    let now = now();
    let subject = guard("j-subject", "t-two-guards", "alice", Some(now));
    let actor = guard("j-actor", "t-none", "agent:x", Some(now));
    store
        .revoke(
            Revocation::SubjectBefore {
                principal: principal("agent:x"),
                before: now,
            },
            now + 60,
        )
        .await
        .unwrap();
    let before = chain_len(store).await;
    let refused = store
        .commit(grant(&[mark("m-two-guards", 60)], &[subject, actor]), record(None))
        .await
        .unwrap();
    assert!(matches!(refused, Commit::Revoked { index: 1 }), "{refused:?}");
    assert_eq!(chain_len(store).await, before, "nothing written");
}

/// `bob` of one IdP is not `bob` of another: a cut-off names its issuer.
async fn subject_cutoffs_are_scoped_by_issuer(store: &dyn Store) {
    let now = now();
    let bob_of = |iss: &str| RevocationGuard {
        jti: None,
        txn: None,
        principal: Principal {
            iss: iss.to_owned(),
            sub: "bob".to_owned(),
        },
        iat: Some(now - 1),
    };
    store
        .revoke(
            Revocation::SubjectBefore {
                principal: bob_of("https://tenant-b.example.com").principal,
                before: now,
            },
            now + 60,
        )
        .await
        .unwrap();
    assert!(revoked(store, bob_of("https://tenant-b.example.com")).await);
    assert!(!revoked(store, bob_of("https://tenant-a.example.com")).await);
}

/// A revocation rides in a commit: applied when the commit is done, and not
/// at all when the commit is refused.
async fn an_effect_lands_only_with_its_commit(store: &dyn Store) {
    let now = now();
    let effect = |jti: &str| Effect {
        revocation: Revocation::Jti(jti.to_owned()),
        expires_at: now + 60,
    };
    done(commit(store, &[mark("client_assertion:bot:spent", 60)], None).await);
    let refused = store
        .commit(
            CommitPlan {
                mode: Mode::Grant,
                now,
                marks: &[mark("client_assertion:bot:spent", 60)],
                guards: &[],
                effects: &[effect("j-effect-refused")],
            },
            record(None),
        )
        .await
        .unwrap();
    assert!(matches!(refused, Commit::Replayed { index: 0 }), "{refused:?}");
    assert!(!revoked(store, token("j-effect-refused", "t", "alice", Some(now))).await);
    done(
        store
            .commit(
                CommitPlan {
                    mode: Mode::Grant,
                    now,
                    marks: &[mark("client_assertion:bot:fresh-effect", 60)],
                    guards: &[],
                    effects: &[effect("j-effect-done")],
                },
                record(None),
            )
            .await
            .unwrap(),
    );
    assert!(revoked(store, token("j-effect-done", "t", "alice", Some(now))).await);
}

fn deny<'a>(marks: &'a [ReplayMark]) -> CommitPlan<'a> {
    CommitPlan {
        mode: Mode::Deny,
        now: now(),
        marks,
        guards: &[],
        effects: &[],
    }
}

/// A denial records itself and spends every fresh one-time value it saw,
/// even beside one that was already used, without touching the used one.
async fn a_denial_spends_fresh_marks_and_overwrites_none(store: &dyn Store) {
    done(commit(store, &[mark("id_jag:deny-used", 60)], None).await);
    let before = chain_len(store).await;
    let marks = [
        mark("client_assertion:bot:deny-fresh", 60),
        mark("id_jag:deny-used", 60),
    ];
    let mut denied = record(None);
    denied.decision = Decision::Denied;
    done(store.commit(deny(&marks), denied).await.unwrap());
    assert_eq!(chain_len(store).await, before + 1, "the denial is recorded");
    let again = commit(store, &[mark("client_assertion:bot:deny-fresh", 60)], None).await;
    assert!(
        matches!(again, Commit::Replayed { index: 0 }),
        "a fresh client assertion never authenticates twice: {again:?}"
    );
}

/// If the client assertion of a denied request was itself a replay, the
/// client never authenticated: nothing is written, nothing else is spent.
async fn a_denial_after_a_replayed_authentication_spends_nothing(store: &dyn Store) {
    done(commit(store, &[mark("client_assertion:bot:replayed", 60)], None).await);
    let before = chain_len(store).await;
    let marks = [mark("client_assertion:bot:replayed", 60), mark("id_jag:victim", 60)];
    let mut denied = record(None);
    denied.decision = Decision::Denied;
    let outcome = store.commit(deny(&marks), denied).await.unwrap();
    assert!(matches!(outcome, Commit::Replayed { index: 0 }), "{outcome:?}");
    assert_eq!(chain_len(store).await, before, "nothing written");
    done(commit(store, &[mark("id_jag:victim", 60)], None).await);
}

/// The memory store keeps its audit trail by bytes, not by count: under
/// sustained load the oldest records go, what stays is within the budget,
/// the newest is always kept, and what stays still links up hash by hash.
#[tokio::test]
async fn the_memory_store_keeps_the_newest_records_within_its_byte_budget() {
    const BUDGET: usize = 64 * 1024;
    let store = xaa_broker::store::memory::MemoryStore::new(INSTANCE).with_audit_max_bytes(BUDGET);
    let mut last = None;
    for i in 0..400 {
        let txn = format!("budget-{i}");
        last = Some(done(store.commit(grant(&[], &[]), record(Some(&txn))).await.unwrap()));
    }
    let kept = store.audit_chain(INSTANCE).await.unwrap();
    let size: usize = kept
        .iter()
        .map(|r| {
            let mut unsealed = r.clone();
            unsealed.hash.clear();
            serde_json::to_vec(&unsealed).unwrap().len()
        })
        .sum();
    assert!(kept.len() < 400, "the oldest records were dropped");
    assert!(
        kept.len() > 10,
        "a budget of 64 KiB holds dozens of records: {}",
        kept.len()
    );
    assert!(size <= BUDGET, "{size} bytes kept over a {BUDGET}-byte budget");
    assert_eq!(
        kept.last().map(|r| &r.id),
        last.as_ref().map(|r| &r.id),
        "the newest is kept"
    );
    for pair in kept.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash, "what stays still links up");
        assert_eq!(pair[1].seq, pair[0].seq + 1);
    }
    assert!(
        store.audit_by_txn("budget-0").await.unwrap().is_empty(),
        "dropped records leave the txn index"
    );
}

/// Many requests at once (in Redis they share round trips: the group
/// commit) still make one chain: every record linked after the one before,
/// seq without gaps, and each request answered with its own record, the
/// one stored under its seq.
async fn concurrent_commits_form_one_chain(store: &dyn Store) {
    let answers = futures_util::future::join_all((0..300).map(|i| async move {
        let marks = [mark(&format!("id_jag:many-{i}"), 60)];
        let txn = format!("t-many-{i}");
        (txn.clone(), store.commit(grant(&marks, &[]), record(Some(&txn))).await)
    }))
    .await;
    let chain = store.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain.len(), 300);
    assert_eq!(verify_chain(&chain), Ok(()));
    assert!(chain.iter().enumerate().all(|(i, r)| r.seq == i as u64 + 1));
    for (txn, answer) in answers {
        let r = done(answer.expect("commit"));
        assert_eq!(r.txn.as_deref(), Some(txn.as_str()));
        assert_eq!(chain[(r.seq - 1) as usize], r, "the answer is the stored record");
    }
}

/// Fifty requests spending one single-use value at once: exactly one is
/// granted, the rest are told it was replayed, and only the one is recorded.
async fn concurrent_commits_of_one_mark_grant_it_once(store: &dyn Store) {
    let answers = futures_util::future::join_all((0..50).map(|_| async move {
        let marks = [mark("id_jag:contended", 60)];
        store.commit(grant(&marks, &[]), record(None)).await.expect("commit")
    }))
    .await;
    let granted = answers.iter().filter(|a| matches!(a, Commit::Done(_))).count();
    let replayed = answers
        .iter()
        .filter(|a| matches!(a, Commit::Replayed { index: 0 }))
        .count();
    assert_eq!((granted, replayed), (1, 49), "{answers:?}");
    let chain = store.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(verify_chain(&chain), Ok(()));
}

/// Refusals in the middle of a crowd (a revoked subject, a replayed
/// assertion) write nothing of theirs; the granted and denied requests
/// around them are chained in order, and a denial still spends its marks.
async fn refused_commits_among_concurrent_ones_write_nothing(store: &dyn Store) {
    store
        .revoke(Revocation::Jti("crowd-revoked".into()), now() + 60)
        .await
        .unwrap();
    let answers = futures_util::future::join_all((0..90).map(|i| async move {
        let (marks, guards, mode) = match i % 3 {
            0 => (
                vec![mark(&format!("id_jag:crowd-{i}"), 60)],
                vec![guard("crowd-revoked", "t-crowd", "alice", Some(now()))],
                Mode::Grant,
            ),
            1 => (vec![mark(&format!("id_jag:crowd-{i}"), 60)], vec![], Mode::Deny),
            _ => (vec![mark(&format!("id_jag:crowd-{i}"), 60)], vec![], Mode::Grant),
        };
        let plan = CommitPlan {
            mode,
            now: now(),
            marks: &marks,
            guards: &guards,
            effects: &[],
        };
        (
            i,
            store
                .commit(plan, record(Some(&format!("t-crowd-{i}"))))
                .await
                .expect("commit"),
        )
    }))
    .await;
    let mut written = 0;
    for (i, answer) in &answers {
        match (i % 3, answer) {
            (0, Commit::Revoked { index: 0 }) => {
                assert!(store.audit_by_txn(&format!("t-crowd-{i}")).await.unwrap().is_empty());
                // Nothing of a refused grant was written: its mark is still fresh.
                done(commit(store, &[mark(&format!("id_jag:crowd-{i}"), 60)], None).await);
                written += 1;
            }
            (1 | 2, Commit::Done(r)) => {
                assert_eq!(r.txn, Some(format!("t-crowd-{i}")));
                written += 1;
            }
            other => panic!("request {i}: unexpected {other:?}"),
        }
    }
    // A denial spends its mark like a grant does.
    let again = commit(store, &[mark("id_jag:crowd-1", 60)], None).await;
    assert!(matches!(again, Commit::Replayed { index: 0 }), "{again:?}");
    let chain = store.audit_chain(INSTANCE).await.unwrap();
    assert_eq!(chain.len(), written);
    assert_eq!(verify_chain(&chain), Ok(()));
}

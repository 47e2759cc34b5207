//! Policy reload (SIGHUP, specs/operations.md "Reloading the configuration"):
//! a good file swaps the policy atomically for new requests; a bad one keeps
//! the old policy and says why.

use std::path::PathBuf;

use xaa_broker::app::reload;

use crate::support::*;

/// The running app's config (the example, wired to the test's IdPs) as a
/// TOML file, with `edit` applied.
fn config_file(app: &TestApp, edit: impl FnOnce(&mut xaa_broker::config::Config)) -> PathBuf {
    let mut config = app.config.clone();
    edit(&mut config);
    let path = std::env::temp_dir().join(format!("xaa-reload-{}.toml", uuid::Uuid::now_v7().simple()));
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn a_reloaded_policy_applies_to_the_next_request() {
    let app = TestApp::spawn().await;
    let id_token = app.idp.id_token("alice", "triage-agent", &["developer", "sre"]);
    let before = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    assert_eq!(before.claims()["scope"], "logs.read logs.write");
    // Tighten the agent cap to read only.
    let path = config_file(&app, |c| c.agents.categories = vec![xaa_broker::policy::Category::Read]);
    reload(&app.state, &path).expect("a valid file reloads");
    let after = app
        .exchange_for_hop("triage-agent", &id_token, ID_TOKEN, LOGS, &[])
        .await;
    assert_eq!(after.claims()["scope"], "logs.read");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_bad_file_keeps_the_old_policy_and_names_the_problem() {
    let app = TestApp::spawn().await;
    let path = config_file(&app, |c| c.tokens.max_delegation_depth = 0);
    let err = reload(&app.state, &path).expect_err("an invalid file is refused");
    assert!(err.contains("tokens.max_delegation_depth"), "{err}");
    app.first_hop("triage-agent", LOGS).await.assert_ok();
    assert_eq!(app.state.policy.load().tokens.max_delegation_depth, 4);
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn the_issuer_cannot_change_without_a_restart() {
    let app = TestApp::spawn().await;
    let path = config_file(&app, |c| c.issuer = "https://elsewhere.example.com".into());
    let err = reload(&app.state, &path).expect_err("issuer change refused");
    assert!(err.contains("issuer"), "{err}");
    assert_eq!(app.state.policy.load().issuer, app.issuer);
    let _ = std::fs::remove_file(path);
}

//! The command line (README.md "Command line"), run as the real binary:
//! `config check` names every problem by its key, `keys generate` and `secret
//! generate` produce what the config needs, `token decode` claims no
//! verification.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use xaa_broker::jose::Alg;

use crate::support::sign_jws;

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "success={} stdout:\n{}\nstderr:\n{}",
            self.success, self.stdout, self.stderr
        )
    }
}

/// Run `xaa-broker args...` in `dir`, with no inherited `XAA*` variables and
/// the given extra environment.
fn xaa(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xaa-broker"));
    cmd.args(args).current_dir(dir);
    for (k, _) in std::env::vars() {
        if k.starts_with("XAA") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("the binary runs");
    Run {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("xaa-cli-{name}-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn example_text() -> String {
    std::fs::read_to_string(repo().join("examples/broker.toml")).unwrap()
}

/// Replace `from` (which must occur exactly once) with `to`.
#[track_caller]
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once in the example");
    text.replacen(from, to, 1)
}

/// The example with an ephemeral key instead of its (uncommitted) key file:
/// valid as is, so each bad config below differs from it by one problem.
fn valid_config() -> String {
    edit(
        &example_text(),
        r#"files = ["keys/broker-signing.private.jwk"]"#,
        "ephemeral = true",
    )
}

/// `config check` of `text` fails, non-zero, with a message naming `key`.
#[track_caller]
fn check_fails_naming(name: &str, text: &str, env: &[(&str, &str)], key: &str) {
    let dir = TempDir::new(name);
    let file = dir.write("broker.toml", text);
    let run = xaa(dir.path(), &["config", "check", &file], env);
    assert!(!run.success, "{run:?}");
    assert!(
        run.stderr.contains(&format!("key `{key}`")),
        "expected key `{key}` named: {run:?}"
    );
    assert!(run.stderr.contains(&file), "the file is named: {run:?}");
}

#[test]
fn config_check_of_the_example_fails_naming_keys_because_its_key_file_is_not_committed() {
    let run = xaa(repo(), &["config", "check", "examples/broker.toml"], &[]);
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains("examples/broker.toml"), "{run:?}");
    assert!(run.stderr.contains("key `keys`"), "{run:?}");
}

#[test]
fn config_check_of_the_example_succeeds_once_its_key_is_generated() {
    let dir = TempDir::new("example");
    let file = dir.write("broker.toml", &example_text());
    let keys = dir.path().join("keys");
    let generated = xaa(dir.path(), &["keys", "generate", "--out", keys.to_str().unwrap()], &[]);
    assert!(generated.success, "{generated:?}");
    let public: Value = serde_json::from_str(generated.stdout.trim()).unwrap();
    let kid = public["kid"].as_str().unwrap();
    std::fs::rename(
        keys.join(format!("{kid}.private.jwk")),
        keys.join("broker-signing.private.jwk"),
    )
    .unwrap();

    let run = xaa(dir.path(), &["config", "check", &file], &[]);
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains(": ok"), "{run:?}");
}

#[test]
fn config_check_accepts_the_example_with_an_ephemeral_key() {
    // The baseline every bad config below departs from by one edit.
    let dir = TempDir::new("valid");
    let file = dir.write("broker.toml", &valid_config());
    let run = xaa(dir.path(), &["config", "check", &file], &[]);
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains(": ok"), "{run:?}");
}

#[test]
fn config_check_rejects_an_unknown_field_naming_it() {
    let text = edit(&valid_config(), "max_delegation_depth = 4 ", "max_delegation_dept = 4 ");
    check_fails_naming("typo", &text, &[], "tokens.max_delegation_dept");
}

#[test]
fn config_check_rejects_a_client_naming_an_unknown_audience() {
    let text = edit(
        &valid_config(),
        r#"audiences = ["https://auth.saas.example.com", "https://mcp.logs.example.com"]"#,
        r#"audiences = ["https://auth.saas.example.com", "https://mcp.logs.example.com", "https://nowhere.example.com"]"#,
    );
    check_fails_naming("audience", &text, &[], "clients.chat-app.audiences[2]");
}

#[test]
fn config_check_rejects_a_plain_http_issuer_that_is_not_loopback() {
    let text = edit(
        &valid_config(),
        r#"issuer = "https://broker.example.com""#,
        r#"issuer = "http://broker.example.com""#,
    );
    check_fails_naming("http-issuer", &text, &[], "issuer");
}

#[test]
fn config_check_rejects_an_unsupported_alg_for_an_issuer() {
    let text = edit(
        &valid_config(),
        r#"algs = ["RS256", "ES256"]"#,
        r#"algs = ["RS256", "HS256"]"#,
    );
    check_fails_naming("alg", &text, &[], "issuers.corp-idp.algs");
}

#[test]
fn config_check_of_a_missing_file_fails_naming_it() {
    let dir = TempDir::new("missing");
    let file = dir.path().join("does-not-exist.toml").display().to_string();
    let run = xaa(dir.path(), &["config", "check", &file], &[]);
    assert!(!run.success, "{run:?}");
    assert!(run.stderr.contains(&file), "{run:?}");
    assert!(run.stderr.contains("not found"), "{run:?}");
}

#[test]
fn config_check_applies_env_overrides_and_names_the_overridden_key() {
    check_fails_naming(
        "env",
        &valid_config(),
        &[("XAA__TOKENS__MAX_DELEGATION_DEPTH", "0")],
        "tokens.max_delegation_depth",
    );
}

#[test]
fn secret_generate_prints_a_secret_and_its_sha256() {
    let dir = TempDir::new("secret");
    let run = xaa(dir.path(), &["secret", "generate"], &[]);
    assert!(run.success, "{run:?}");
    let mut lines = run.stdout.lines();
    let secret = lines
        .next()
        .and_then(|l| l.strip_prefix("client_secret = "))
        .expect("client_secret line");
    let hash = lines
        .next()
        .and_then(|l| l.strip_prefix("secret_sha256 = \"")?.strip_suffix('"'))
        .expect("secret_sha256 line");
    assert!(secret.len() >= 32, "a high-entropy secret: {secret:?}");
    let expected: String = openssl::sha::sha256(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);
}

#[test]
fn keys_generate_writes_a_private_jwk_with_mode_0600_and_prints_the_public_jwk() {
    let dir = TempDir::new("keys");
    let out = dir.path().join("keys");
    let run = xaa(dir.path(), &["keys", "generate", "--out", out.to_str().unwrap()], &[]);
    assert!(run.success, "{run:?}");
    let public: Value = serde_json::from_str(run.stdout.trim()).expect("stdout is the public JWK");
    let kid = public["kid"].as_str().expect("kid");
    assert_eq!(public["alg"], "ES256");
    for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
        assert!(public.get(private).is_none(), "{private} printed: {public}");
    }

    let path = out.join(format!("{kid}.private.jwk"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let private: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(
        private["d"].as_str().is_some_and(|d| !d.is_empty()),
        "a private key: {private}"
    );
    assert_eq!(private["kid"], kid);
    assert_eq!(
        (&private["x"], &private["y"]),
        (&public["x"], &public["y"]),
        "the printed key is its public half"
    );
}

#[test]
fn token_decode_prints_the_claims_and_says_nothing_was_verified() {
    let dir = TempDir::new("decode");
    let key = Alg::ES256.generate().unwrap();
    let claims = json!({"iss": "https://idp.example.com", "sub": "alice", "aud": "x", "exp": 1});
    let token = sign_jws(
        &key,
        json!({"alg": "ES256", "kid": key.key_id().unwrap(), "typ": "JWT"}),
        &claims,
    );
    let run = xaa(dir.path(), &["token", "decode", &token], &[]);
    assert!(run.success, "{run:?}");
    assert!(run.stdout.contains(r#""verified": false"#), "{run:?}");
    let out: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(out["claims"], claims);
    assert_eq!(out["header"]["kid"], key.key_id().unwrap());
}

#[test]
fn config_check_rejects_an_id_jag_audience_that_is_not_an_issuer_url() {
    // ID-JAG §4.3: the audience of an ID-JAG is the resource AS's issuer.
    let text = edit(
        &valid_config(),
        r#"[audiences."https://auth.saas.example.com"]"#,
        r#"[audiences."saas-as"]"#,
    );
    let text = text.replace(r#""https://auth.saas.example.com""#, r#""saas-as""#);
    check_fails_naming("id-jag-audience", &text, &[], "audiences.saas-as");
}

#[test]
fn config_check_rejects_a_stray_key_under_the_memory_store() {
    let text = edit(
        &valid_config(),
        "kind = \"memory\"\n",
        "kind = \"memory\"\nurl = \"redis://leftover\"\n",
    );
    check_fails_naming("memory-store", &text, &[], "store");
}

#[test]
fn config_check_rejects_a_zero_rate_limit_naming_it() {
    let text = edit(&valid_config(), "client_burst = 100 ", "client_burst = 0 ");
    check_fails_naming("zero-burst", &text, &[], "limits.client_burst");
    let text = edit(
        &valid_config(),
        "rate_limit = { per_second = 200, burst = 400 }",
        "rate_limit = { per_second = 0, burst = 400 }",
    );
    check_fails_naming("zero-client-rate", &text, &[], "clients.mcp-logs.rate_limit.per_second");
    let text = edit(&valid_config(), "client_per_second = 50 ", "client_per_minute = 50 ");
    check_fails_naming("limits-typo", &text, &[], "limits.client_per_minute");
}

#[test]
fn config_check_rejects_a_summary_retention_shorter_than_its_interval() {
    let text = edit(
        &valid_config(),
        "unauthenticated_retention_secs = 86400",
        "unauthenticated_retention_secs = 30",
    );
    check_fails_naming("retention", &text, &[], "audit.unauthenticated_retention_secs");
    let text = edit(
        &valid_config(),
        "unauthenticated_interval_secs = 60",
        "unauthenticated_interval_secs = 0",
    );
    check_fails_naming("interval", &text, &[], "audit.unauthenticated_interval_secs");
}

#[test]
fn config_check_takes_the_verified_cache_size_or_zero_and_refuses_a_useless_one() {
    for ok in ["0", "65536", "1073741824"] {
        let text = edit(
            &valid_config(),
            "verified_cache_bytes = 4194304 ",
            &format!("verified_cache_bytes = {ok} "),
        );
        let dir = TempDir::new("verified-ok");
        let file = dir.write("broker.toml", &text);
        let run = xaa(dir.path(), &["config", "check", &file], &[]);
        assert!(run.success, "{ok}: {run:?}");
    }
    for bad in ["1024", "1073741825"] {
        let text = edit(
            &valid_config(),
            "verified_cache_bytes = 4194304 ",
            &format!("verified_cache_bytes = {bad} "),
        );
        check_fails_naming("verified", &text, &[], "tokens.verified_cache_bytes");
    }
    check_fails_naming(
        "verified-negative",
        &edit(
            &valid_config(),
            "verified_cache_bytes = 4194304 ",
            "verified_cache_bytes = -1 ",
        ),
        &[],
        "tokens.verified_cache_bytes",
    );
}

#[test]
fn config_check_takes_the_memory_stores_byte_budget_and_refuses_a_useless_one() {
    let text = edit(
        &valid_config(),
        "kind = \"memory\"\n",
        "kind = \"memory\"\naudit_max_bytes = 33554432\n",
    );
    let dir = TempDir::new("budget-ok");
    let file = dir.write("broker.toml", &text);
    let run = xaa(dir.path(), &["config", "check", &file], &[]);
    assert!(run.success, "{run:?}");
    let text = edit(
        &valid_config(),
        "kind = \"memory\"\n",
        "kind = \"memory\"\naudit_max_bytes = 1024\n",
    );
    check_fails_naming("budget", &text, &[], "store.audit_max_bytes");
}

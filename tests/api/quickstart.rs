//! The embedded default, end to end, exactly as its banner prints it
//! (README.md "Quickstart"): the real binary in dev mode, the banner's
//! "Try it" walk-through run by bash with curl and jq. And the dev IdP exists
//! only in dev mode.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;

/// How long to wait for the banner before giving up (a hang guard, not a
/// timing assertion).
const BANNER_WAIT: Duration = Duration::from_secs(60);

/// `xaa-broker serve --dev` on a free loopback port, killed on drop (also
/// when the test fails).
struct DevBroker {
    child: Child,
    /// The banner, up to and including its closing line of '='.
    banner: Vec<String>,
}

impl DevBroker {
    fn start() -> DevBroker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_xaa-broker"))
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .env_remove("XAA_CONFIG")
            .env_remove("XAA_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        // Guard first: from here on, a failed read still kills the child.
        let mut broker = DevBroker {
            child,
            banner: Vec::new(),
        };

        // A thread keeps draining stdout so the server never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen_try_it = false;
        loop {
            let line = rx
                .recv_timeout(BANNER_WAIT)
                .unwrap_or_else(|e| panic!("no complete banner ({e}); got:\n{}", broker.banner.join("\n")));
            let closing = seen_try_it && is_rule(&line);
            seen_try_it |= line.contains("Try it");
            broker.banner.push(line);
            if closing {
                break;
            }
        }
        broker
    }

    /// The walk-through: from the line starting with `B=` to the end, each
    /// line without the banner's one-space indent.
    fn script(&self) -> String {
        let start = self
            .banner
            .iter()
            .position(|l| l.trim_start().starts_with("B="))
            .unwrap_or_else(|| panic!("no B= line in the banner:\n{}", self.banner.join("\n")));
        let body = &self.banner[start..self.banner.len() - 1];
        body.iter()
            .map(|l| l.strip_prefix(' ').unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The issuer the banner announces.
    fn issuer(&self) -> String {
        self.banner
            .iter()
            .find_map(|l| l.trim_start().strip_prefix("issuer"))
            .map(|rest| rest.trim().to_owned())
            .unwrap_or_else(|| panic!("no issuer line in the banner:\n{}", self.banner.join("\n")))
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_rule(line: &str) -> bool {
    let l = line.trim();
    !l.is_empty() && l.chars().all(|c| c == '=')
}

#[test]
fn the_banner_walk_through_works_as_printed() {
    let broker = DevBroker::start();
    let script = broker.script();
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walk-through failed ({}):\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    assert!(!stdout.contains("\"error\""), "no step may answer an error:\n{stdout}");
    assert!(
        stdout.contains("\"token_type\": \"Bearer\""),
        "step 2b redeems the ID-JAG at the resource AS for a Bearer token:\n{stdout}"
    );
    // Step 5 prints the two hops' claims as one JSON line each.
    let claims: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("act").is_some())
        .collect();
    let [hop1, hop2] = claims.as_slice() else {
        panic!("expected the two hops' claims:\n{stdout}");
    };

    assert_eq!(hop1["sub"], "alice", "{hop1}");
    assert_eq!(hop2["sub"], "alice", "{hop2}");
    assert_eq!(hop1["act"]["sub"], "agent:triage", "{hop1}");
    assert_eq!(hop2["act"]["sub"], "mcp:logs", "{hop2}");
    assert_eq!(hop2["act"]["act"]["sub"], "agent:triage", "{hop2}");
    assert!(hop1["txn"].as_str().is_some_and(|t| !t.is_empty()), "{hop1}");
    assert_eq!(hop1["txn"], hop2["txn"], "one chain, one txn");

    // Step 6: the tool call is recorded in alice's transaction, and the
    // trace shows both hops, the tool call under the first, and the scope
    // the agent's chain was refused with its reason.
    let txn = hop1["txn"].as_str().unwrap();
    assert!(
        stdout.contains(&format!("\"txn\":\"{txn}\"")) && stdout.contains("\"recorded\""),
        "step 6 records the tool call in the transaction:\n{stdout}"
    );
    let trace: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with(&format!("txn {txn}")))
        .collect();
    assert!(trace.first().is_some_and(|l| l.contains("user alice")), "{stdout}");
    let hop1_line = trace
        .iter()
        .position(|l| l.contains("GRANTED") && l.contains("→ https://mcp.logs.example.com"));
    let tool_line = trace
        .iter()
        .position(|l| l.contains("TOOL") && l.contains("search_logs"));
    let hop2_line = trace.iter().position(|l| l.contains("→ https://cost.example.com"));
    let (Some(h1), Some(t), Some(h2)) = (hop1_line, tool_line, hop2_line) else {
        panic!("the trace lacks a hop or the tool call:\n{stdout}");
    };
    assert!(
        h1 < t && t < h2,
        "the tool call is listed under the hop whose token it used:\n{stdout}"
    );
    assert!(trace[t].starts_with("  ") && trace[h2].starts_with("  ") && !trace[h1].starts_with(' '));
    assert!(trace[h2].contains("cost.approve withheld: human_only"), "{stdout}");
    assert!(
        stdout.contains(&format!("/audit/ui?txn={txn}")),
        "step 6 points at the page:\n{stdout}"
    );
}

/// The README's walk-through is the banner's, line for line (only the
/// addresses differ), so the documented commands are the tested ones.
#[test]
fn the_readme_walk_through_is_the_banners() {
    let broker = DevBroker::start();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let script = broker.script();
    let commands: Vec<&str> = script
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("B=") && !l.starts_with("RAS=") && !l.starts_with("XAA="))
        .collect();
    assert!(commands.len() >= 10, "{script}");
    for line in commands {
        assert!(readme.contains(line), "README.md lacks the banner line:\n{line}");
    }
}

#[tokio::test]
async fn the_dev_idp_is_served_in_dev_mode() {
    let broker = DevBroker::start();
    let issuer = broker.issuer();
    let http = reqwest::Client::new();
    let jwks = http.get(format!("{issuer}/dev/idp/jwks")).send().await.unwrap();
    assert_eq!(jwks.status(), 200);
    assert_eq!(
        jwks.headers().get("x-xaa-dev-mode").and_then(|v| v.to_str().ok()),
        Some("true")
    );
    let jwks: Value = jwks.json().await.unwrap();
    assert!(jwks["keys"].as_array().is_some_and(|k| !k.is_empty()), "{jwks}");

    let r = http
        .post(format!("{issuer}/dev/idp/id-token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("user=alice&client_id=triage-agent")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        decode_part(body["id_token"].as_str().unwrap(), 1)["iss"],
        format!("{issuer}/dev/idp")
    );
}

#[tokio::test]
async fn a_configured_deployment_has_no_dev_idp() {
    let app = TestApp::spawn().await;
    assert_eq!(app.get("/dev/idp/jwks").await.status, 404);
    assert_eq!(app.get("/dev/idp/.well-known/openid-configuration").await.status, 404);
    for endpoint in ["/dev/idp/id-token", "/dev/idp/actor-token"] {
        let r = app
            .post_form(
                endpoint,
                Auth::None,
                &[("user", "alice"), ("client_id", "triage-agent"), ("agent", "agent:x")],
            )
            .await;
        assert_eq!(r.status, 404, "{endpoint}: {}", r.body);
    }
}

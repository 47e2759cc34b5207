//! The real binary in dev mode (`xaa-broker serve --dev`), for tests that
//! need what only a process has: its own tracing subscriber (traces, the
//! audit record's `trace_id`, JSON logs) and the embedded default, with its
//! dev IdP's ID tokens; `FormBody`, a form-encoded body for a plain reqwest
//! request to it; and `trace_records`, a transaction as its auditor reads
//! it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A hang guard, not a timing assertion.
const WAIT: Duration = Duration::from_secs(60);

/// `xaa-broker serve --dev` exporting to `endpoint`, JSON logs on stderr
/// kept in `logs`; killed on drop.
pub struct DevBroker {
    child: Child,
    /// Its issuer, from the banner (`http://127.0.0.1:<port>`).
    pub issuer: String,
    /// Its stderr lines (JSON logs).
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl DevBroker {
    /// Exporting to `endpoint`, or nothing when `None`.
    pub fn start(endpoint: Option<&str>) -> DevBroker {
        Self::start_with(endpoint, &[])
    }

    /// [`DevBroker::start`] with more environment (`OTEL_TRACES_SAMPLER`, …).
    pub fn start_with(endpoint: Option<&str>, env: &[(&str, &str)]) -> DevBroker {
        let mut command = Command::new(env!("CARGO_BIN_EXE_xaa-broker"));
        command
            .env_remove("OTEL_TRACES_SAMPLER")
            .env_remove("OTEL_TRACES_SAMPLER_ARG");
        for (name, value) in env {
            command.env(name, value);
        }
        match endpoint {
            Some(endpoint) => command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
            None => command.env_remove("OTEL_EXPORTER_OTLP_ENDPOINT"),
        };
        let mut child = command
            .args(["serve", "--dev", "--listen", "127.0.0.1:0"])
            .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .env_remove("XAA_CONFIG")
            .env_remove("XAA_LISTEN")
            .env_remove("RUST_LOG")
            .env("XAA_LOG_FORMAT", "json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout after the banner: a closed pipe would kill the broker.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut broker = DevBroker {
            child,
            issuer: String::new(),
            logs,
        };
        while broker.issuer.is_empty() {
            let line = rx.recv_timeout(WAIT).expect("the banner names the issuer");
            if let Some(rest) = line.trim_start().strip_prefix("issuer") {
                broker.issuer = rest.trim().to_owned();
            }
        }
        broker
    }
}

impl DevBroker {
    /// An ID token for `user` from the dev IdP, its audience `client_id`
    /// (`POST /dev/idp/id-token`).
    pub async fn id_token(&self, user: &str, client_id: &str) -> String {
        let id: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/dev/idp/id-token", self.issuer))
            .form_body(&[("user", user), ("client_id", client_id)])
            .send()
            .await
            .expect("the dev IdP answers")
            .json()
            .await
            .expect("the dev IdP answers JSON");
        id["id_token"].as_str().expect("an id_token").to_owned()
    }

    /// The first hop: `client` (secret `<client>-secret`) exchanges an ID
    /// token for an access token for `resource` (RFC 8693).
    pub async fn first_hop(&self, client: &str, id_token: &str, resource: &str) -> String {
        let r: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(client, Some(format!("{client}-secret")))
            .form_body(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("resource", resource),
                ("subject_token", id_token),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
            ])
            .send()
            .await
            .expect("the broker answers")
            .json()
            .await
            .expect("the broker answers JSON");
        r["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("an access token: {r}"))
            .to_owned()
    }
}

impl Drop for DevBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A form body (RFC 6749 requests are form-encoded).
pub trait FormBody {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self;
}

impl FormBody for reqwest::RequestBuilder {
    fn form_body(self, pairs: &[(&str, &str)]) -> Self {
        self.header("content-type", "application/x-www-form-urlencoded").body(
            form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs)
                .finish(),
        )
    }
}

/// Records of `txn` as the auditor (`auditor`, in the embedded default and
/// examples/broker.toml) reads them at `issuer` (`POST /audit/trace`).
pub async fn trace_records(http: &reqwest::Client, issuer: &str, txn: &str) -> Vec<serde_json::Value> {
    let r: serde_json::Value = http
        .post(format!("{issuer}/audit/trace"))
        .basic_auth("auditor", Some("auditor-secret"))
        .form_body(&[("txn", txn)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["records"].as_array().cloned().unwrap_or_default()
}

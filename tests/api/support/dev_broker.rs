//! The real binary in dev mode (`xaa-broker serve --dev`), for tests that
//! need what only a process has: its own tracing subscriber (traces, the
//! audit record's `trace_id`, JSON logs) and the embedded default; and
//! `FormBody`, a form-encoded body for a plain reqwest request to it.

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

    /// An ID token for `user`, issued to `client_id` by the dev IdP.
    pub async fn id_token(&self, http: &reqwest::Client, user: &str, client_id: &str) -> String {
        let answer: serde_json::Value = http
            .post(format!("{}/dev/idp/id-token", self.issuer))
            .form_body(&[("user", user), ("client_id", client_id)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["id_token"].as_str().unwrap().to_owned()
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

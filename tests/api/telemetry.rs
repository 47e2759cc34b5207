//! Traces and correlated logs (specs/operations.md "Traces and log
//! correlation"): the real binary in dev mode exporting over OTLP/HTTP to a
//! real receiver in this test, which decodes the protobuf. The subscriber is
//! process-wide, so each test drives its own broker process.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

use crate::support::dev_broker::{DevBroker as Broker, FormBody, trace_records};

/// A hang guard, not a timing assertion.
const WAIT: Duration = Duration::from_secs(60);

/// Every span the receiver was sent.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Span>>>);

impl Received {
    fn in_trace(&self, trace_id: &str) -> Vec<Span> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect()
    }
}

/// A real OTLP/HTTP receiver: `POST /v1/traces`, protobuf.
async fn otlp_receiver() -> (String, Received) {
    let received = Received::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf body");
                let spans = request
                    .resource_spans
                    .into_iter()
                    .flat_map(|r| r.scope_spans)
                    .flat_map(|s| s.spans);
                store.0.lock().unwrap().extend(spans);
                ([("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn attr(span: &Span, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(s) => Some(s.clone()),
            AnyValue::IntValue(i) => Some(i.to_string()),
            AnyValue::BoolValue(b) => Some(b.to_string()),
            AnyValue::DoubleValue(d) => Some(d.to_string()),
            _ => None,
        })
}

fn txn_of(token: &str) -> String {
    use base64::Engine;
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["txn"].as_str().unwrap().to_owned()
}

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// One hop: `client` exchanges `subject` for a token for `resource`, inside
/// the caller's trace `trace_id`.
async fn hop(
    http: &reqwest::Client,
    b: &str,
    client: &str,
    resource: &str,
    subject: &str,
    subject_type: &str,
    trace_id: &str,
) -> String {
    let response = http
        .post(format!("{b}/token"))
        .basic_auth(client, Some(format!("{client}-secret")))
        .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-01"))
        .form_body(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", resource),
            ("subject_token", subject),
            ("subject_token_type", subject_type),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{client} → {resource}");
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// The caller's span (an MCP server's client span) in every traceparent.
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Spans of `trace_id` once the request span (kind server) and `steps` are there.
async fn wait_for_trace(received: &Received, trace_id: &str, at_least: usize) -> Vec<Span> {
    let start = Instant::now();
    loop {
        let spans = received.in_trace(trace_id);
        if spans.iter().any(|s| s.kind == 2) && spans.len() >= at_least {
            return spans;
        }
        assert!(start.elapsed() < WAIT, "no complete trace {trace_id}: {spans:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_hop_walk_through_is_one_trace_per_request_with_its_txn_on_every_span_and_no_secret() {
    let (endpoint, received) = otlp_receiver().await;
    let broker = Broker::start(Some(&endpoint));
    let b = broker.issuer.clone();
    let http = reqwest::Client::new();

    let id_token = broker.id_token("alice", "triage-agent").await;
    let traces = [
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "5bf92f3577b34da6a3ce929d0e0e4737",
        "6bf92f3577b34da6a3ce929d0e0e4738",
    ];
    let id_type = "urn:ietf:params:oauth:token-type:id_token";
    let at_type = "urn:ietf:params:oauth:token-type:access_token";
    let hop1 = hop(
        &http,
        &b,
        "triage-agent",
        "https://mcp.logs.example.com",
        &id_token,
        id_type,
        traces[0],
    )
    .await;
    let hop2 = hop(
        &http,
        &b,
        "mcp-logs",
        "https://cost.example.com",
        &hop1,
        at_type,
        traces[1],
    )
    .await;
    let hop3 = hop(
        &http,
        &b,
        "cost-tool",
        "https://incidents.example.com",
        &hop2,
        at_type,
        traces[2],
    )
    .await;
    let txn = txn_of(&hop1);
    assert_eq!(txn_of(&hop3), txn);

    // A refusal, in a trace of its own: the outcome, error and reason, and
    // still no secret.
    let denied_trace = "7bf92f3577b34da6a3ce929d0e0e4739";
    let denied = http
        .post(format!("{b}/token"))
        .basic_auth("mcp-logs", Some("mcp-logs-secret"))
        .header("traceparent", format!("00-{denied_trace}-{CALLER_SPAN}-01"))
        .form_body(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("resource", "https://cost.example.com"),
            ("subject_token", "not.a.token"),
            ("subject_token_type", at_type),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 400);

    let secrets = [
        id_token.as_str(),
        hop1.as_str(),
        hop2.as_str(),
        hop3.as_str(),
        "not.a.token",
        "triage-agent-secret",
        "mcp-logs-secret",
        "cost-tool-secret",
    ];
    let clients = ["triage-agent", "mcp-logs", "cost-tool"];
    let mut request_spans = Vec::new();
    for (trace_id, client) in traces.iter().zip(clients) {
        let spans = wait_for_trace(&received, trace_id, 5).await;
        let request: Vec<&Span> = spans.iter().filter(|s| s.kind == 2).collect();
        let [request] = request.as_slice() else {
            panic!("one request span per request: {spans:?}");
        };
        assert_eq!(request.name, "POST /token");
        assert_eq!(
            hex(&request.parent_span_id),
            CALLER_SPAN,
            "the caller's span is the parent"
        );
        assert_eq!(attr(request, "oauth.client_id").as_deref(), Some(client));
        assert_eq!(attr(request, "oauth.grant_type").as_deref(), Some("token-exchange"));
        assert_eq!(attr(request, "xaa.outcome").as_deref(), Some("granted"));
        assert_eq!(attr(request, "http.response.status_code").as_deref(), Some("200"));
        assert_eq!(attr(request, "http.request.method").as_deref(), Some("POST"));
        assert!(attr(request, "oauth.audience").is_some());
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        for step in [
            "client_authentication",
            "subject_validation",
            "decision",
            "sign",
            "store_commit",
        ] {
            assert!(names.contains(&step), "step {step} in {names:?}");
        }
        for span in &spans {
            assert_eq!(
                attr(span, "xaa.txn").as_deref(),
                Some(txn.as_str()),
                "xaa.txn on {}",
                span.name
            );
            assert!(
                span.parent_span_id == request.span_id
                    || span.span_id == request.span_id
                    || spans.iter().any(|p| p.span_id == span.parent_span_id),
                "{} is inside the request",
                span.name
            );
        }
        request_spans.push(hex(&request.span_id));
    }
    let denied_spans = wait_for_trace(&received, denied_trace, 2).await;
    let request = denied_spans.iter().find(|s| s.kind == 2).unwrap();
    assert_eq!(attr(request, "xaa.outcome").as_deref(), Some("denied"));
    assert_eq!(attr(request, "oauth.error").as_deref(), Some("invalid_request"));
    let reason = attr(request, "xaa.reason");
    assert!(reason.as_deref().is_some_and(|r| r.contains("token.")), "{reason:?}");

    // No attribute anywhere carries a token or a secret.
    for span in received.0.lock().unwrap().iter() {
        for kv in &span.attributes {
            let value = format!("{:?}", kv.value);
            for secret in secrets {
                assert!(!value.contains(secret), "{}.{} carries a credential", span.name, kv.key);
            }
        }
    }

    // The audit record names the exported trace.
    let records = trace_records(&http, &b, &txn).await;
    let recorded: Vec<&str> = records.iter().filter_map(|r| r["trace_id"].as_str()).collect();
    assert_eq!(recorded, traces, "each hop's record names its request's trace");

    // Every JSON log line of a request carries its trace id and a span id:
    // here the audit record's line.
    let logs = broker.logs.lock().unwrap().clone();
    for (trace_id, request_span) in traces.iter().zip(&request_spans) {
        let lines: Vec<Value> = logs
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["trace_id"] == *trace_id)
            .collect();
        assert!(!lines.is_empty(), "log lines of trace {trace_id}:\n{}", logs.join("\n"));
        for line in &lines {
            assert!(line["span_id"].as_str().is_some_and(|s| s.len() == 16), "{line}");
        }
        assert!(
            lines
                .iter()
                .any(|l| l["target"] == "audit" && l["span_id"] == request_span.as_str()),
            "the audit line of trace {trace_id} names the request span"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_fails_no_request() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let broker = Broker::start(Some(&endpoint));
    let b = broker.issuer.clone();
    let http = reqwest::Client::new();
    for _ in 0..20 {
        let id_token = broker.id_token("alice", "triage-agent").await;
        hop(
            &http,
            &b,
            "triage-agent",
            "https://mcp.logs.example.com",
            &id_token,
            "urn:ietf:params:oauth:token-type:id_token",
            "8bf92f3577b34da6a3ce929d0e0e4730",
        )
        .await;
    }
}

/// Without an endpoint nothing is exported, yet a caller's `traceparent`
/// still names the trace in the audit record and the JSON log lines (no
/// span id then: no span of ours has one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_the_callers_trace_id_still_reaches_the_record_and_the_logs() {
    let broker = Broker::start(None);
    let b = broker.issuer.clone();
    let http = reqwest::Client::new();
    let id_token = broker.id_token("alice", "triage-agent").await;
    let trace_id = "9bf92f3577b34da6a3ce929d0e0e4731";
    let hop1 = hop(
        &http,
        &b,
        "triage-agent",
        "https://mcp.logs.example.com",
        &id_token,
        "urn:ietf:params:oauth:token-type:id_token",
        trace_id,
    )
    .await;
    let records = trace_records(&http, &b, &txn_of(&hop1)).await;
    assert_eq!(records[0]["trace_id"], trace_id, "{records:?}");
    let start = Instant::now();
    let audit_line = loop {
        let found = broker
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["target"] == "audit" && v["trace_id"] == trace_id);
        if let Some(line) = found {
            break line;
        }
        let logs = broker.logs.lock().unwrap().join("\n");
        assert!(
            start.elapsed() < WAIT,
            "the audit line names the caller's trace:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(audit_line.get("span_id").is_none(), "{audit_line}");
}

/// docker-compose: the brokers' OTLP endpoint is a receiver the collector's
/// config enables, and that config's traces pipeline exports to Jaeger.
#[test]
fn docker_compose_sends_the_brokers_traces_through_the_collector_to_jaeger() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let compose: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("docker-compose.yml")).unwrap()).unwrap();
    let collector: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("deploy/otel/collector.yaml")).unwrap()).unwrap();
    let services = compose["services"].as_mapping().unwrap();

    // The collector service runs exactly that file.
    let svc = &compose["services"]["otel-collector"];
    let mounted = svc["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|v| v.starts_with("./deploy/otel/collector.yaml:"))
        .expect("the collector mounts deploy/otel/collector.yaml");
    let in_container = mounted.split(':').nth(1).unwrap();
    let command: Vec<&str> = svc["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(
        command.contains(&format!("--config={in_container}").as_str()),
        "{command:?}"
    );

    // The traces pipeline: from the otlp receiver to an exporter reaching Jaeger.
    let pipeline = &collector["service"]["pipelines"]["traces"];
    let names = |key: &str| -> Vec<String> {
        pipeline[key]
            .as_sequence()
            .unwrap_or_else(|| panic!("traces pipeline has {key}"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(names("receivers").contains(&"otlp".to_owned()));
    let to_jaeger = names("exporters").into_iter().any(|e| {
        let endpoint = collector["exporters"][e.as_str()]["endpoint"]
            .as_str()
            .unwrap_or_default();
        let host = endpoint.split("://").last().unwrap().split(':').next().unwrap();
        host == "jaeger" && services.contains_key("jaeger")
    });
    assert!(to_jaeger, "the traces pipeline exports to the jaeger service");
    assert_eq!(
        compose["services"]["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"].as_str(),
        Some("true")
    );

    // Each broker exports OTLP/HTTP (what we build) to the collector's HTTP receiver.
    let http_receiver = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
        .as_str()
        .expect("the otlp receiver enables http");
    let receiver_port = http_receiver.rsplit(':').next().unwrap();
    let mut brokers = 0;
    for (name, svc) in services {
        let Some(endpoint) = svc["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"].as_str() else {
            continue;
        };
        brokers += 1;
        let url = url::Url::parse(endpoint).unwrap();
        assert_eq!(url.scheme(), "http", "{name:?}");
        assert_eq!(url.host_str(), Some("otel-collector"), "{name:?}");
        assert_eq!(
            url.port().map(|p| p.to_string()).as_deref(),
            Some(receiver_port),
            "{name:?}"
        );
        assert!(svc["environment"]["OTEL_SERVICE_NAME"].as_str().is_some(), "{name:?}");
    }
    assert_eq!(brokers, 2, "both broker instances export");
}

/// The sampler is the SDK's, from `OTEL_TRACES_SAMPLER`: by default
/// (`parentbased_always_on`) a caller's unsampled trace is not exported, and
/// `always_off` exports nothing; either way the audit record still names the
/// caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sampler_decides_what_is_exported_and_the_record_names_the_trace_regardless() {
    let (endpoint, received) = otlp_receiver().await;
    let by_default = Broker::start(Some(&endpoint));
    let never = Broker::start_with(Some(&endpoint), &[("OTEL_TRACES_SAMPLER", "always_off")]);
    let http = reqwest::Client::new();
    let sampled = "abf92f3577b34da6a3ce929d0e0e4731";
    let unsampled = "bbf92f3577b34da6a3ce929d0e0e4732";
    let off = "cbf92f3577b34da6a3ce929d0e0e4733";
    let mut txns = Vec::new();
    for (broker, trace_id, flags) in [
        (&by_default, sampled, "01"),
        (&by_default, unsampled, "00"),
        (&never, off, "01"),
    ] {
        let id_token = broker.id_token("alice", "triage-agent").await;
        let answer: Value = http
            .post(format!("{}/token", broker.issuer))
            .basic_auth("triage-agent", Some("triage-agent-secret"))
            .header("traceparent", format!("00-{trace_id}-{CALLER_SPAN}-{flags}"))
            .form_body(&[
                ("grant_type", TOKEN_EXCHANGE),
                ("resource", "https://mcp.logs.example.com"),
                ("subject_token", &id_token),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        txns.push((broker, trace_id, txn_of(answer["access_token"].as_str().unwrap())));
    }
    wait_for_trace(&received, sampled, 5).await;
    // Ten schedule delays: whatever was going to be exported has been.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(received.in_trace(unsampled).is_empty(), "the caller did not sample it");
    assert!(received.in_trace(off).is_empty(), "OTEL_TRACES_SAMPLER=always_off");
    for (broker, trace_id, txn) in txns {
        let records = trace_records(&http, &broker.issuer, &txn).await;
        assert_eq!(records[0]["trace_id"], trace_id, "{records:?}");
    }
}

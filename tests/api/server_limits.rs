//! Connection and request limits (`[server]`, specs/operations.md
//! "Connection and request limits"): no client can hold a connection open
//! for ever, or crowd legitimate clients out of the connection table, and no
//! request outlives its deadline. Every test speaks raw TCP or HTTP to the
//! real broker on 127.0.0.1 and bounds each wait.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep, timeout};
use xaa_broker::config::Config;

use crate::support::*;

/// The broker's socket address (`app.base` without the scheme).
fn addr(app: &TestApp) -> SocketAddr {
    app.base
        .trim_start_matches("http://")
        .parse()
        .expect("base is http://IP:port")
}

async fn connect(app: &TestApp) -> TcpStream {
    timeout(Duration::from_secs(2), TcpStream::connect(addr(app)))
        .await
        .expect("connect in time")
        .expect("the broker accepts TCP")
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// One HTTP/1.1 response read from a raw stream: status, head, JSON body.
/// `None` if the server closed the connection first.
async fn read_response(stream: &mut (impl AsyncRead + Unpin)) -> Option<(u16, String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())
                        .flatten()
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let status = head.get(9..12)?.parse().ok()?;
            let body = serde_json::from_slice(&buf[end + 4..end + 4 + length]).unwrap_or(Value::Null);
            return Some((status, head, body));
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Read and discard until the server closes the connection (EOF or reset).
/// How long after `since` that happened, or `None` if it was still open
/// after `limit`.
async fn closed_within(stream: &mut (impl AsyncRead + Unpin), since: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let closed = timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    closed.ok().map(|()| since.elapsed())
}

/// Whether the server has already closed this connection.
async fn is_closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        timeout(Duration::from_millis(20), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

/// A key server that accepts connections and never answers: every fetch
/// from it hangs until the fetcher gives up.
async fn black_hole() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    format!("http://{addr}/jwks")
}

/// corp-idp's keys hang (fetch timeout 5 s) while requests have a short
/// deadline: a first hop is slow on purpose.
fn slow_upstream(config: &mut Config, jwks_uri: &str, request_timeout_ms: u64) {
    config.upstream.timeout_ms = 5000;
    config.server.request_timeout_ms = request_timeout_ms;
    config.server.body_read_timeout_ms = request_timeout_ms / 2;
    config
        .issuers
        .get_mut("corp-idp")
        .expect("the example trusts corp-idp")
        .jwks_uri = Some(jwks_uri.to_owned());
}

#[tokio::test]
async fn a_slowloris_head_is_cut_off_while_other_clients_are_served() {
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout_ms = 1000).await;
    let opened = Instant::now();
    let (mut reader, mut writer) = connect(&app).await.into_split();
    let dribble = tokio::spawn(async move {
        let head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: one-byte-at-a-time\r\n\r\n";
        for byte in head {
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
            sleep(Duration::from_millis(200)).await;
        }
    });

    // Meanwhile another client is answered at once.
    let asked = Instant::now();
    let r = timeout(Duration::from_secs(2), app.get("/healthz"))
        .await
        .expect("a normal request is answered during the slowloris");
    assert_eq!(r.status, 200);
    assert!(
        asked.elapsed() < Duration::from_millis(500),
        "took {:?}",
        asked.elapsed()
    );

    let closed = closed_within(&mut reader, opened, Duration::from_secs(5))
        .await
        .expect("the server closes a connection whose head takes too long");
    assert!(
        closed >= Duration::from_millis(900) && closed < Duration::from_millis(2500),
        "closed after {closed:?}, header_read_timeout_ms = 1000"
    );
    dribble.abort();
    assert_eq!(app.get("/healthz").await.status, 200, "and the broker keeps serving");
}

#[tokio::test]
async fn a_slow_body_is_refused_with_invalid_request_and_the_broker_keeps_serving() {
    let app = TestApp::spawn_with(|c| c.server.body_read_timeout_ms = 500).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(
            b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=",
        )
        .await
        .unwrap();
    let sent = Instant::now();

    let answer = timeout(Duration::from_secs(3), read_response(&mut stream))
        .await
        .expect("the server answers or closes within the bound");
    let elapsed = sent.elapsed();
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(2),
        "after {elapsed:?}, body_read_timeout_ms = 500"
    );
    if let Some((status, head, body)) = answer {
        assert_eq!(status, 400, "{head}\n{body}");
        assert_eq!(body["error"], "invalid_request", "{body}");
        assert!(head.to_ascii_lowercase().contains("cache-control: no-store"), "{head}");
        let closed = closed_within(&mut stream, Instant::now(), Duration::from_secs(2)).await;
        assert!(closed.is_some(), "a connection whose body was cut short is not reused");
    }
    assert_eq!(app.get("/healthz").await.status, 200, "the broker keeps serving");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_the_head_timeout() {
    let app = TestApp::spawn_with(|c| {
        c.server.header_read_timeout_ms = 300;
        c.server.idle_timeout_ms = 1500;
    })
    .await;
    let mut stream = connect(&app).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let (status, ..) = timeout(Duration::from_secs(2), read_response(&mut stream))
        .await
        .unwrap()
        .expect("answered");
    assert_eq!(status, 200);

    // Idle for longer than the head timeout: still open, and reusable.
    sleep(Duration::from_millis(700)).await;
    stream.write_all(HEALTHZ).await.unwrap();
    let (status, ..) = timeout(Duration::from_secs(2), read_response(&mut stream))
        .await
        .unwrap()
        .expect("a kept-alive connection idle for less than idle_timeout_ms is still served");
    assert_eq!(status, 200);

    let idle_from = Instant::now();
    let closed = closed_within(&mut stream, idle_from, Duration::from_secs(5))
        .await
        .expect("the idle connection is closed");
    assert!(
        closed >= Duration::from_millis(1300) && closed < Duration::from_millis(2500),
        "closed after {closed:?} idle, idle_timeout_ms = 1500"
    );
}

#[tokio::test]
async fn a_connection_flood_evicts_the_longest_idle_and_a_legitimate_client_is_still_served() {
    const CAP: usize = 20;
    const FLOOD: usize = 60;
    let app = TestApp::spawn_with(|c| {
        c.server.max_connections = CAP;
        // Long enough that only eviction closes anything during the test.
        c.server.header_read_timeout_ms = 30_000;
        c.server.idle_timeout_ms = 30_000;
    })
    .await;

    let mut flood = Vec::new();
    for i in 0..FLOOD {
        let mut stream = connect(&app).await;
        if i % 3 == 0 {
            stream
                .write_all(b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                .await
                .unwrap();
        }
        flood.push(stream);
    }

    let asked = Instant::now();
    let r = timeout(Duration::from_secs(5), app.get("/healthz"))
        .await
        .expect("a legitimate client is served despite the flood");
    assert_eq!(r.status, 200);
    assert!(asked.elapsed() < Duration::from_secs(2), "took {:?}", asked.elapsed());

    sleep(Duration::from_millis(300)).await;
    let mut closed = Vec::new();
    for stream in &mut flood {
        closed.push(is_closed(stream).await);
    }
    let open = closed.iter().filter(|c| !**c).count();
    // The legitimate client's (kept-alive) connection holds one slot.
    assert_eq!(
        open,
        CAP - 1,
        "the server holds at most {CAP} connections: {open} flood connections still open"
    );
    let evicted = FLOOD - open;
    assert!(
        closed[..evicted].iter().all(|c| *c),
        "the longest-idle connections are the ones closed: {closed:?}"
    );
}

#[tokio::test]
async fn at_the_cap_a_request_in_flight_is_never_cut_and_a_newcomer_waits_for_a_slot() {
    let hole = black_hole().await;
    let app = std::sync::Arc::new(
        TestApp::spawn_with(|c| {
            slow_upstream(c, &hole, 1000);
            c.server.max_connections = 2;
        })
        .await,
    );
    let mut slow = Vec::new();
    for _ in 0..2 {
        let app = app.clone();
        slow.push(tokio::spawn(async move { app.first_hop("chat-app", LOGS).await }));
    }
    sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    let newcomer = reqwest::Client::new()
        .get(app.url("/healthz"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("the newcomer is served once a slot frees");
    assert_eq!(newcomer.status(), 200);
    assert!(
        asked.elapsed() >= Duration::from_millis(500),
        "the newcomer was served after {:?}: before the requests in flight ended",
        asked.elapsed()
    );
    for r in slow {
        let r = timeout(Duration::from_secs(3), r).await.unwrap().unwrap();
        r.assert_error(503, "temporarily_unavailable");
    }
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_503_temporarily_unavailable() {
    let hole = black_hole().await;
    let app = TestApp::spawn_with(|c| slow_upstream(c, &hole, 500)).await;

    let asked = Instant::now();
    let r = timeout(Duration::from_secs(3), app.first_hop("chat-app", LOGS))
        .await
        .expect("answered by the deadline, not the 5 s upstream timeout");
    let elapsed = asked.elapsed();
    r.assert_error(503, "temporarily_unavailable");
    assert!(r.headers.contains_key("retry-after"), "Retry-After on a 503");
    assert!(
        elapsed >= Duration::from_millis(450) && elapsed < Duration::from_millis(1500),
        "answered after {elapsed:?}, request_timeout_ms = 500"
    );
    assert_eq!(app.issued_count().await, 0, "nothing issued");
    assert_eq!(app.get("/healthz").await.status, 200, "the broker keeps serving");
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_closes_idle_connections_and_stops_accepting() {
    let hole = black_hole().await;
    let app = TestApp::spawn_with(|c| slow_upstream(c, &hole, 1000)).await;
    let broker = addr(&app);

    let mut idle = connect(&app).await;
    idle.write_all(HEALTHZ).await.unwrap();
    let answered = timeout(Duration::from_secs(2), read_response(&mut idle)).await.unwrap();
    assert_eq!(answered.map(|(status, ..)| status), Some(200));

    let id_token = app.idp.id_token("alice", "chat-app", &["developer"]);
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", TOKEN_EXCHANGE)
        .append_pair("resource", LOGS)
        .append_pair("subject_token", &id_token)
        .append_pair("subject_token_type", ID_TOKEN)
        .finish();
    let in_flight = tokio::spawn(
        app.http
            .post(app.url("/token"))
            .basic_auth("chat-app", Some("chat-app-secret"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send(),
    );
    sleep(Duration::from_millis(200)).await;

    let stopping = Instant::now();
    drop(app);

    let closed = closed_within(&mut idle, stopping, Duration::from_secs(2)).await;
    assert!(closed.is_some(), "an idle connection is closed at shutdown");

    let refused = timeout(Duration::from_secs(2), async {
        loop {
            if TcpStream::connect(broker).await.is_err() {
                break;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "new connections are refused once shutting down");

    let response = timeout(Duration::from_secs(3), in_flight)
        .await
        .expect("the request in flight ends within its deadline")
        .unwrap()
        .expect("the request in flight gets a response, not a dropped connection");
    assert_eq!(response.status(), 503, "answered by its deadline");
}

/// The example config, with `[server]` edited, as `config check` loads it.
fn example_with(from: &str, to: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/broker.toml")).unwrap();
    assert_eq!(text.matches(from).count(), 1, "{from:?} occurs once in the example");
    let config = Config::from_toml("broker.toml", &text.replacen(from, to, 1)).map_err(|e| e.to_string())?;
    config.resolve("broker.toml").map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn a_zero_or_negative_server_limit_is_refused_at_load_naming_the_key() {
    assert_eq!(example_with("max_connections = 4096", "max_connections = 4096"), Ok(()));
    for (key, default) in [
        ("header_read_timeout_ms", "5000"),
        ("body_read_timeout_ms", "5000"),
        ("idle_timeout_ms", "30000"),
        ("request_timeout_ms", "10000"),
        ("max_connections", "4096"),
    ] {
        let from = format!("{key} = {default} ");
        for bad in ["0", "-1"] {
            let err = example_with(&from, &format!("{key} = {bad} ")).expect_err("refused");
            assert!(err.contains(&format!("key `server.{key}`")), "{key} = {bad}: {err}");
        }
        let err = example_with(&from, &format!("{key} = 0 ")).unwrap_err();
        assert!(err.contains(&format!("key `server.{key}`: must be positive")), "{err}");
    }
}

#[test]
fn a_body_deadline_not_shorter_than_the_request_deadline_is_refused() {
    let err = example_with("body_read_timeout_ms = 5000 ", "body_read_timeout_ms = 10000 ").unwrap_err();
    assert!(
        err.contains("key `server.body_read_timeout_ms`: must be less than server.request_timeout_ms"),
        "{err}"
    );
}

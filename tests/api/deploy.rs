//! The docker-compose deployment (it cannot run here: no Docker engine), kept
//! honest by checking exactly the config file and overrides it runs with.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use xaa_broker::jose::Alg;
use xaa_broker::keys::generate_to_dir;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Each broker service of docker-compose.yml: its `XAA__*` environment and
/// the host path mounted at /etc/xaa/broker.toml. A line scanner is enough
/// for our own file's shape, and spares a YAML dependency.
fn compose_brokers() -> BTreeMap<String, (BTreeMap<String, String>, String)> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|l| !l.starts_with(' '))
        {
            current = name.starts_with("broker-").then(|| name.to_owned());
            if let Some(n) = &current {
                out.insert(n.clone(), (BTreeMap::new(), String::new()));
            }
            continue;
        }
        let Some(service) = &current else { continue };
        let entry = out.get_mut(service).unwrap();
        let t = line.trim();
        if let Some((k, v)) = t.split_once(": ").filter(|(k, _)| k.starts_with("XAA__")) {
            entry.0.insert(k.to_owned(), yaml_unquote(v).to_owned());
        }
        if let Some(src) = t
            .strip_prefix("- ")
            .and_then(|m| m.strip_suffix(":/etc/xaa/broker.toml:ro"))
        {
            entry.1 = src.to_owned();
        }
    }
    out
}

/// A YAML scalar as the container sees it: without the quotes a value
/// needs when it holds YAML syntax (`'["10.0.0.0/8"]'`).
fn yaml_unquote(v: &str) -> &str {
    ['\'', '"']
        .iter()
        .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
        .unwrap_or(v)
}

#[test]
fn both_broker_services_run_one_config_with_the_redis_store() {
    let brokers = compose_brokers();
    assert_eq!(brokers.keys().collect::<Vec<_>>(), ["broker-1", "broker-2"]);
    let (env, config) = &brokers["broker-1"];
    assert_eq!(
        &brokers["broker-2"],
        &(env.clone(), config.clone()),
        "instances of one deployment share config"
    );
    assert_eq!(config, "./examples/broker.toml");
    assert_eq!(env.get("XAA__STORE__KIND").map(String::as_str), Some("redis"));
}

#[test]
fn the_compose_config_passes_config_check_with_its_overrides() {
    let (env, config) = compose_brokers().remove("broker-1").unwrap();
    let dir = std::env::temp_dir().join(format!("xaa-compose-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(dir.join("keys")).unwrap();
    std::fs::copy(Path::new(ROOT).join(&config), dir.join("broker.toml")).unwrap();
    // The key the config names, as an operator would create it.
    let (written, _) = generate_to_dir(Alg::ES256, &dir.join("keys")).unwrap();
    std::fs::rename(written, dir.join("keys/broker-signing.private.jwk")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_xaa-broker"))
        .args(["config", "check"])
        .arg(dir.join("broker.toml"))
        .envs(&env)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "config check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
}

#[test]
fn the_image_serves_the_path_compose_mounts() {
    let dockerfile = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).unwrap();
    assert!(dockerfile.contains(r#"CMD ["serve", "--config", "/etc/xaa/broker.toml"]"#));
}

/// specs/config.md ends with the complete example verbatim; it must be the
/// file the tests load, not a copy that drifted.
#[test]
fn the_config_reference_embeds_the_example_verbatim() {
    let example = std::fs::read_to_string(Path::new(ROOT).join("examples/broker.toml")).unwrap();
    let spec = std::fs::read_to_string(Path::new(ROOT).join("specs/config.md")).unwrap();
    assert!(
        spec.contains(&format!("```toml\n{example}```")),
        "specs/config.md's copy of examples/broker.toml is stale"
    );
}

/// deploy/prometheus/prometheus.yml scrapes `/metrics` of every broker
/// service on its metrics port (never the OAuth port), and the compose file
/// runs Prometheus with exactly that file.
#[test]
fn prometheus_scrapes_both_brokers_at_their_metrics_port() {
    let brokers = compose_brokers();
    let listen = brokers["broker-1"]
        .0
        .get("XAA__METRICS__LISTEN")
        .expect("a metrics listener");
    let port = listen.rsplit_once(':').map(|(_, p)| p).unwrap();
    assert_ne!(port, "8080", "metrics are never served on the OAuth port");
    let allow = &brokers["broker-1"].0["XAA__METRICS__ALLOW"];
    assert!(
        allow.contains("172.16.0.0/12"),
        "the compose network may scrape: {allow}"
    );

    let prometheus = std::fs::read_to_string(Path::new(ROOT).join("deploy/prometheus/prometheus.yml")).unwrap();
    let targets: Vec<&str> = prometheus
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- targets: [")?.strip_suffix(']'))
        .flat_map(|t| t.split(',').map(|s| s.trim().trim_matches('"')))
        .collect();
    let expected: Vec<String> = brokers.keys().map(|b| format!("{b}:{port}")).collect();
    assert_eq!(targets, expected, "every broker service, at its metrics port");
    assert!(prometheus.contains("metrics_path: /metrics"));

    let compose = std::fs::read_to_string(Path::new(ROOT).join("docker-compose.yml")).unwrap();
    let service = compose
        .split("\n  prometheus:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a prometheus service");
    assert!(
        service.contains("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro")
            && service.contains("--config.file=/etc/prometheus/prometheus.yml"),
        "{service}"
    );
}

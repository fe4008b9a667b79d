//! `evaluate` against Istio's documented examples and the mutations meshproof must catch.

use std::path::{Path, PathBuf};

use super::*;

pub(super) fn policies(yaml: &str) -> MeshPolicies {
    policies_in(yaml, MeshConfig::default())
}

pub(super) fn policies_in(yaml: &str, mesh: MeshConfig) -> MeshPolicies {
    parse_str(Path::new("test.yaml"), yaml, mesh).unwrap_or_else(|e| panic!("{e}"))
}

pub(super) fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/policy/istio/testdata")
        .join(name)
}

const HTTPBIN_V1: &[(&str, &str)] = &[("app", "httpbin"), ("version", "v1")];
const CURL: &str = "cluster.local/ns/default/sa/curl";

fn get(path: &str) -> Request {
    Request::http("foo", HTTPBIN_V1, 8080, "GET", path)
}

fn post(path: &str) -> Request {
    Request::http("foo", HTTPBIN_V1, 8080, "POST", path)
}

#[track_caller]
fn allowed(config: &MeshPolicies, request: &Request) -> AuthzDecision {
    let d = evaluate(config, request);
    assert!(d.allowed, "expected allowed: {}", d.explanation);
    d
}

#[track_caller]
fn denied(config: &MeshPolicies, request: &Request) -> AuthzDecision {
    let d = evaluate(config, request);
    assert!(!d.allowed, "expected denied: {}", d.explanation);
    d
}

const ALLOW_NOTHING: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing, namespace: foo}
spec: {}
";

const DENY_ALL: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: foo}
spec:
  action: DENY
  rules:
  - {}
";

const ALLOW_ALL: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all, namespace: foo}
spec:
  action: ALLOW
  rules:
  - {}
";

#[test]
fn no_policies_allow_everything() {
    let config = policies("");
    let d = allowed(&config, &get("/anything"));
    assert_eq!(d.action, AuthzAction::NoPolicies);
    assert_eq!(d.decided_by, None);
}

#[test]
fn allow_nothing_denies_every_request_in_its_namespace_only() {
    let config = policies(ALLOW_NOTHING);
    let d = denied(&config, &get("/").from_principal(CURL));
    assert_eq!(d.action, AuthzAction::NoAllowMatch);
    assert!(
        d.explanation.contains("foo/allow-nothing"),
        "{}",
        d.explanation
    );
    assert!(d.explanation.contains("no rules"), "{}", d.explanation);
    let elsewhere = Request::http("bar", HTTPBIN_V1, 8080, "GET", "/");
    assert_eq!(allowed(&config, &elsewhere).action, AuthzAction::NoPolicies);
}

#[test]
fn deny_all_denies_and_names_the_rule() {
    let config = policies(DENY_ALL);
    let d = denied(&config, &get("/").from_principal(CURL));
    assert_eq!(d.action, AuthzAction::Deny);
    let by = d.decided_by.expect("decided by deny-all");
    assert_eq!((by.name.as_str(), by.rule), ("deny-all", Some(0)));
    assert_eq!(by.file, PathBuf::from("test.yaml"));
    assert_eq!(by.line, 2);
    assert_eq!(by.detail_line, Some(8));
    assert_eq!(
        by.to_string(),
        "AuthorizationPolicy foo/deny-all rule[0] at test.yaml:8"
    );
}

#[test]
fn allow_all_allows_everything_even_next_to_allow_nothing() {
    let config = policies(&format!("{ALLOW_NOTHING}---{ALLOW_ALL}"));
    let d = allowed(&config, &post("/x"));
    assert_eq!(d.action, AuthzAction::Allow);
    assert_eq!(d.decided_by.map(|b| b.name), Some("allow-all".into()));
    // Plaintext too: `rules: [{}]` does not require an identity.
    allowed(&config, &get("/"));
}

#[test]
fn httpbin_reference_example() {
    let config =
        load(&testdata("httpbin"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let d = allowed(&config, &get("/info/headers").from_principal(CURL));
    let by = d.decided_by.expect("rule");
    assert_eq!((by.name.as_str(), by.rule), ("httpbin", Some(0)));
    assert!(by.file.ends_with("httpbin/authz.yaml"), "{by}");
    assert_eq!(by.line, 16);
    allowed(&config, &get("/info").from_principal(CURL));
    allowed(&config, &post("/data").from_principal(CURL));
    // Namespace `test` is the other source.
    allowed(
        &config,
        &get("/info").from_principal("cluster.local/ns/test/sa/anyone"),
    );
    // Operations pair methods with paths.
    denied(&config, &post("/info").from_principal(CURL));
    denied(&config, &get("/data").from_principal(CURL));
    denied(&config, &post("/data/x").from_principal(CURL));
    // Other callers, and plaintext.
    let d = denied(
        &config,
        &get("/info").from_principal("cluster.local/ns/default/sa/other"),
    );
    assert_eq!(d.action, AuthzAction::NoAllowMatch);
    assert!(
        d.explanation
            .contains("from[0].source.principals did not match"),
        "{}",
        d.explanation
    );
    denied(&config, &get("/info"));
    // The selector requires version v1.
    let v2 = Request::http(
        "foo",
        &[("app", "httpbin"), ("version", "v2")],
        8080,
        "GET",
        "/x",
    );
    assert_eq!(allowed(&config, &v2).action, AuthzAction::NoPolicies);
}

#[test]
fn deny_overrides_allow() {
    let config =
        load(&testdata("httpbin"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let dev = "cluster.local/ns/dev/sa/tool";
    // deny-dev-post applies to the whole namespace, before any ALLOW.
    let v2 = |m: &str| {
        Request::http(
            "foo",
            &[("app", "httpbin"), ("version", "v2")],
            8080,
            m,
            "/data",
        )
    };
    let d = denied(&config, &v2("POST").from_principal(dev));
    assert_eq!(d.action, AuthzAction::Deny);
    assert_eq!(d.decided_by.map(|b| b.name), Some("deny-dev-post".into()));
    allowed(&config, &v2("GET").from_principal(dev));
    // With allow-all added, the DENY still wins.
    let text = format!(
        "{}---{ALLOW_ALL}",
        std::fs::read_to_string(testdata("httpbin/authz.yaml")).unwrap_or_default()
    );
    let config = policies(&text);
    assert_eq!(
        denied(&config, &post("/data").from_principal(dev)).action,
        AuthzAction::Deny
    );
    allowed(&config, &get("/data").from_principal(dev));
}

#[test]
fn not_paths_and_not_principals() {
    // Deny callers without mTLS, except on /healthz.
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-mtls, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source:
        notPrincipals: [\"*\"]
    to:
    - operation:
        notPaths: [\"/healthz\"]
",
    );
    denied(&config, &get("/status"));
    allowed(&config, &get("/healthz"));
    allowed(&config, &get("/healthz?verbose=1"));
    allowed(&config, &get("/status").from_principal(CURL));
}

#[test]
fn path_prefix_stops_at_the_slash() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: quotes, namespace: foo}
spec:
  rules:
  - to:
    - operation:
        paths: [\"/quotes/*\", \"*.png\"]
",
    );
    allowed(&config, &get("/quotes/AAPL"));
    allowed(&config, &get("/quotes/"));
    allowed(&config, &get("/img/logo.png"));
    denied(&config, &get("/quotesXYZ"));
    denied(&config, &get("/quotes"));
    denied(&config, &get("/Quotes/AAPL"));
}

#[test]
fn ports_match_the_workload_port() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: port, namespace: foo}
spec:
  rules:
  - to:
    - operation:
        ports: [\"8080\"]
        methods: [\"GET\"]
",
    );
    allowed(&config, &get("/"));
    denied(&config, &Request::http("foo", HTTPBIN_V1, 9090, "GET", "/"));
}

const TCP_ECHO: &[(&str, &str)] = &[("app", "tcp-echo")];

#[test]
fn tcp_allow_on_ports_then_http_fields_drop_the_rule() {
    // Istio task "Authorization for TCP traffic".
    let ports = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-policy, namespace: foo}
spec:
  selector: {matchLabels: {app: tcp-echo}}
  action: ALLOW
  rules:
  - to:
    - operation:
        ports: [\"9000\", \"9001\"]
";
    let config = policies(ports);
    allowed(&config, &Request::tcp("foo", TCP_ECHO, 9000));
    allowed(&config, &Request::tcp("foo", TCP_ECHO, 9001));
    denied(&config, &Request::tcp("foo", TCP_ECHO, 9002));
    // Adding an HTTP-only field makes istiod drop the ALLOW rule on TCP: everything is denied.
    let config = policies(&ports.replace(
        "ports: [\"9000\", \"9001\"]",
        "methods: [\"GET\"]\n        ports: [\"9000\"]",
    ));
    let d = denied(&config, &Request::tcp("foo", TCP_ECHO, 9000));
    assert!(
        d.explanation.contains("dropped on this TCP port"),
        "{}",
        d.explanation
    );
    // The same policy still works for HTTP on that port.
    allowed(&config, &Request::http("foo", TCP_ECHO, 9000, "GET", "/"));
}

#[test]
fn tcp_deny_with_http_fields_denies_all_tcp() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tcp-deny, namespace: foo}
spec:
  selector: {matchLabels: {app: tcp-echo}}
  action: DENY
  rules:
  - to:
    - operation:
        methods: [\"GET\"]
",
    );
    assert_eq!(
        denied(&config, &Request::tcp("foo", TCP_ECHO, 9000)).action,
        AuthzAction::Deny
    );
    allowed(&config, &Request::http("foo", TCP_ECHO, 9000, "POST", "/"));
    denied(&config, &Request::http("foo", TCP_ECHO, 9000, "GET", "/"));
}

#[test]
fn audit_and_dry_run_decide_nothing() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit-all, namespace: foo}
spec:
  action: AUDIT
  rules:
  - {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-all-dry
  namespace: foo
  annotations:
    istio.io/dry-run: \"true\"
spec:
  action: DENY
  rules:
  - {}
",
    );
    let d = allowed(&config, &get("/"));
    assert_eq!(d.action, AuthzAction::NoPolicies);
    assert!(
        d.explanation.contains("AUDIT foo/audit-all"),
        "{}",
        d.explanation
    );
    assert!(
        d.explanation.contains("dry-run foo/deny-all-dry"),
        "{}",
        d.explanation
    );
}

#[test]
fn root_namespace_policies_apply_mesh_wide() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: httpbin-everywhere, namespace: istio-system}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from:
    - source: {principals: [\"cluster.local/ns/default/sa/curl\"]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-here, namespace: bar}
spec: {}
",
    );
    for ns in ["foo", "baz"] {
        let r = Request::http(ns, &[("app", "httpbin")], 80, "GET", "/");
        let d = denied(&config, &r);
        assert!(
            d.explanation.contains("istio-system/httpbin-everywhere"),
            "{}",
            d.explanation
        );
        allowed(&config, &r.from_principal(CURL));
    }
    // Selector does not match: the root policy does not apply; bar's allow-nothing does.
    allowed(
        &config,
        &Request::http("foo", &[("app", "other")], 80, "GET", "/"),
    );
    denied(
        &config,
        &Request::http("bar", &[("app", "other")], 80, "GET", "/"),
    );
    // A different root namespace makes it an ordinary namespace policy.
    let mesh = MeshConfig {
        root_namespace: "mesh-root".into(),
        ..MeshConfig::default()
    };
    let config = policies_in(&config_text_root(), mesh);
    allowed(
        &config,
        &Request::http("foo", &[("app", "httpbin")], 80, "GET", "/"),
    );
}

fn config_text_root() -> String {
    "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-all, namespace: istio-system}
spec:
  action: DENY
  rules: [{}]
"
    .into()
}

#[test]
fn root_namespace_deny_all() {
    let config = policies(&config_text_root());
    let d = denied(&config, &Request::http("anywhere", &[], 80, "GET", "/"));
    assert_eq!(
        d.decided_by.map(|b| b.namespace),
        Some("istio-system".into())
    );
}

#[test]
fn namespaces_need_the_ns_segment() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: by-namespace, namespace: foo}
spec:
  rules:
  - from:
    - source: {namespaces: [\"prod\"]}
",
    );
    // A custom schema puts `prod` in the path, but not as /ns/prod/: no namespace.
    denied(
        &config,
        &get("/").from_principal("tradepulse/prod/strategy"),
    );
    denied(&config, &get("/").from_principal("td/ns/prod"));
    allowed(&config, &get("/").from_principal("td/ns/prod/sa/strategy"));
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: not-namespace, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source: {notNamespaces: [\"prod\"]}
",
    );
    denied(
        &config,
        &get("/").from_principal("tradepulse/prod/strategy"),
    );
    allowed(&config, &get("/").from_principal("td/ns/prod/sa/strategy"));
}

#[test]
fn trust_domain_migration() {
    let mesh = MeshConfig {
        trust_domain: "soma-agent-hub.local".into(),
        ..MeshConfig::default()
    };
    let config = policies_in(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: orchestrator, namespace: soma}
spec:
  rules:
  - from:
    - source: {principals: [\"cluster.local/ns/soma/sa/gateway-api\"]}
",
        mesh,
    );
    let r = Request::http("soma", &[], 10001, "GET", "/");
    allowed(
        &config,
        &r.clone()
            .from_principal("soma-agent-hub.local/ns/soma/sa/gateway-api"),
    );
    denied(
        &config,
        &r.from_principal("cluster.local/ns/soma/sa/gateway-api"),
    );
}

#[test]
fn service_accounts_hosts_headers_and_ips() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: misc, namespace: foo}
spec:
  rules:
  - from:
    - source: {serviceAccounts: [\"curl\", \"test/tester\"]}
    to:
    - operation: {hosts: [\"httpbin.example.com\", \"*.internal\"]}
    when:
    - key: request.headers[x-env]
      values: [\"prod\"]
    - key: source.ip
      notValues: [\"10.0.0.0/8\"]
",
    );
    let ok = get("/")
        .from_principal("cluster.local/ns/foo/sa/curl")
        .with_host("HTTPBIN.example.com")
        .with_header("X-Env", "prod")
        .from_ip("192.168.1.2".parse().expect("ip"));
    allowed(&config, &ok);
    allowed(
        &config,
        &ok.clone().from_principal("cluster.local/ns/test/sa/tester"),
    );
    allowed(&config, &ok.clone().with_host("db.internal"));
    denied(
        &config,
        &ok.clone()
            .from_principal("cluster.local/ns/default/sa/curl"),
    );
    denied(&config, &ok.clone().with_host("httpbin.example.com:8000"));
    denied(
        &config,
        &ok.clone().from_ip("10.1.2.3".parse().expect("ip")),
    );
    let mut no_header = ok.clone();
    no_header.headers.clear();
    denied(&config, &no_header);
    // Repeated headers are joined with ',' before matching: "prod,dev" is not "prod".
    denied(&config, &ok.with_header("x-env", "dev"));
}

#[test]
fn request_principals_see_no_jwt() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: foo}
spec:
  rules:
  - from:
    - source: {requestPrincipals: [\"*\"]}
",
    );
    denied(&config, &get("/").from_principal(CURL));
    assert!(
        config
            .unsupported
            .iter()
            .any(|u| u.field.ends_with("requestPrincipals"))
    );
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-without-jwt, namespace: foo}
spec:
  action: DENY
  rules:
  - from:
    - source: {notRequestPrincipals: [\"*\"]}
",
    );
    denied(&config, &get("/").from_principal(CURL));
}

#[test]
fn custom_and_target_refs_are_not_applied() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz, namespace: foo}
spec:
  action: CUSTOM
  provider: {name: opa}
  rules: [{}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: gateway-only, namespace: foo}
spec:
  targetRefs:
  - {kind: Gateway, group: gateway.networking.k8s.io, name: ingress}
  action: DENY
  rules: [{}]
",
    );
    let d = allowed(&config, &get("/"));
    assert!(
        d.explanation.contains("CUSTOM foo/ext-authz not evaluated"),
        "{}",
        d.explanation
    );
    let fields: Vec<&str> = config
        .unsupported
        .iter()
        .map(|u| u.field.as_str())
        .collect();
    assert!(fields.contains(&"spec.action: CUSTOM"), "{fields:?}");
    assert!(fields.contains(&"spec.targetRefs"), "{fields:?}");
}

// --- The mutations the product must catch -------------------------------------------------

const STRATEGY: &str = "tradepulse/prod/strategy";
const MARKET: &[(&str, &str)] = &[("app", "market-data")];

fn quotes() -> Request {
    Request::http("market", MARKET, 8443, "GET", "/quotes/AAPL").from_principal(STRATEGY)
}

fn tradepulse(mutate: impl Fn(String) -> String) -> MeshPolicies {
    let text = std::fs::read_to_string(testdata("tradepulse.yaml")).unwrap_or_default();
    policies(&mutate(text))
}

#[test]
fn baseline_tradepulse_intents() {
    let config = tradepulse(|t| t);
    let d = allowed(&config, &quotes());
    assert_eq!(
        d.decided_by.map(|b| (b.name, b.rule)),
        Some(("market-data".into(), Some(0)))
    );
    allowed(
        &config,
        &quotes().from_principal("tradepulse/prod/strategy/optimizer"),
    );
    denied(
        &config,
        &quotes().from_principal("tradepulse/prod/execution"),
    );
    denied(
        &config,
        &quotes().from_principal("tradepulse/staging/strategy"),
    );
    let mut post = quotes();
    post.method = "POST".into();
    denied(&config, &post);
    let risk = Request::http("market", MARKET, 8443, "GET", "/positions/1")
        .from_principal("tradepulse/prod/risk");
    allowed(&config, &risk);
}

#[test]
fn mutation_allow_all_is_caught() {
    let config = tradepulse(|t| {
        format!(
            "{t}---{}",
            ALLOW_ALL.replace("namespace: foo", "namespace: market")
        )
    });
    let d = allowed(
        &config,
        &quotes().from_principal("tradepulse/prod/execution"),
    );
    assert_eq!(d.decided_by.map(|b| b.name), Some("allow-all".into()));
}

#[test]
fn mutation_deleted_allow_rule_is_caught() {
    let config = tradepulse(|t| {
        let start = t
            .find("  - from:\n    - source:\n        principals: [\"tradepulse/prod/risk\"]")
            .unwrap_or(t.len());
        t[..start].to_owned()
    });
    allowed(&config, &quotes());
    let risk = Request::http("market", MARKET, 8443, "GET", "/positions/1")
        .from_principal("tradepulse/prod/risk");
    denied(&config, &risk);
}

#[test]
fn mutation_path_typo_is_caught() {
    let config = tradepulse(|t| t.replace("/quotes/*", "/quote/*"));
    let d = denied(&config, &quotes());
    assert!(
        d.explanation.contains("paths did not match"),
        "{}",
        d.explanation
    );
}

#[test]
fn mutation_wrong_principal_is_caught() {
    let config = tradepulse(|t| {
        t.replace(
            "tradepulse/prod/strategy\"",
            "tradepulse/prod/strategy-typo\"",
        )
        .replace(
            "tradepulse/prod/strategy/*",
            "tradepulse/prod/strategy-typo/*",
        )
    });
    denied(&config, &quotes());
}

#[test]
fn mutation_permissive_instead_of_strict_is_caught() {
    let labels: Labels = MARKET
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect();
    let strict = tradepulse(|t| t);
    assert_eq!(
        mtls_mode(&strict, "market", &labels, 8443).0,
        MtlsMode::Strict
    );
    let permissive = tradepulse(|t| t.replacen("mode: STRICT", "mode: PERMISSIVE", 1));
    let (mode, by) = mtls_mode(&permissive, "market", &labels, 8443);
    assert_eq!(mode, MtlsMode::Permissive);
    assert_eq!(by.map(|b| b.namespace), Some("istio-system".into()));
}

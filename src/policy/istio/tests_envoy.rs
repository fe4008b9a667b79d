//! The compiled Envoy RBAC JSON, and a differential check: a small interpreter of that JSON (with
//! Envoy's RBAC semantics, written independently of `translate`) must reach `evaluate`'s verdict.

use serde_json::{Value as Json, json};

use super::regex::Regex;
use super::tests_eval::{policies, policies_in, testdata};
use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn compile(config: &MeshPolicies, ns: &str, l: &[(&str, &str)]) -> EnvoyRbac {
    envoy_rbac(config, ns, &labels(l), true)
}

fn policy<'j>(filter: &'j Json, name: &str) -> &'j Json {
    &filter["typed_config"]["rules"]["policies"][name]
}

#[test]
fn httpbin_example_compiles_like_istiod() {
    let config =
        load(&testdata("httpbin"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let rbac = compile(&config, "foo", &[("app", "httpbin"), ("version", "v1")]);
    assert_eq!(rbac.http.len(), 2, "DENY then ALLOW");
    assert_eq!(rbac.http[0]["typed_config"]["rules"]["action"], "DENY");
    assert_eq!(
        rbac.http[1],
        json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC",
                "rules": {
                    "action": "ALLOW",
                    "policies": {
                        "ns[foo]-policy[httpbin]-rule[0]": {
                            "permissions": [
                                {"and_rules": {"rules": [
                                    {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "GET"}}}]}},
                                    {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/info"}}}]}}
                                ]}},
                                {"and_rules": {"rules": [
                                    {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "POST"}}}]}},
                                    {"or_rules": {"rules": [{"url_path": {"path": {"exact": "/data"}}}]}}
                                ]}}
                            ],
                            "principals": [
                                {"and_ids": {"ids": [
                                    {"or_ids": {"ids": [{"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/default/sa/curl"}}}]}}
                                ]}},
                                {"and_ids": {"ids": [
                                    {"or_ids": {"ids": [{"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/test/.*"}}}}]}}
                                ]}}
                            ]
                        }
                    }
                }
            }
        })
    );
    assert_eq!(rbac.network.len(), 2);
    assert_eq!(rbac.network[1]["typed_config"]["stat_prefix"], "tcp.");
    assert_eq!(
        rbac.network[1]["typed_config"]["@type"],
        "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
    );
    // The ALLOW rule uses methods and paths: dropped on TCP, leaving an ALLOW that matches nothing.
    assert_eq!(
        rbac.network[1]["typed_config"]["rules"],
        json!({"action": "ALLOW", "policies": {}})
    );
    // The DENY rule loses `methods` on TCP: it denies every TCP connection from `dev`.
    assert_eq!(
        policy(&rbac.network[0], "ns[foo]-policy[deny-dev-post]-rule[0]")["permissions"],
        json!([{"and_rules": {"rules": [{"any": true}]}}])
    );
}

#[test]
fn no_policy_no_filter() {
    let rbac = compile(&policies(""), "foo", &[]);
    assert_eq!(rbac, EnvoyRbac::default());
}

#[test]
fn allow_nothing_and_allow_all_deny_all() {
    let config = policies(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: allow-nothing, namespace: foo}\nspec: {}\n",
    );
    let rbac = compile(&config, "foo", &[]);
    assert_eq!(rbac.http.len(), 1);
    assert_eq!(
        rbac.http[0]["typed_config"]["rules"],
        json!({"action": "ALLOW", "policies": {"ns[foo]-policy[allow-nothing]-rule[0]": {
            "permissions": [{"and_rules": {"rules": [{"not_rule": {"any": true}}]}}],
            "principals": [{"and_ids": {"ids": [{"not_id": {"any": true}}]}}]
        }}})
    );
    let config = policies(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all, namespace: foo}\nspec: {action: DENY, rules: [{}]}\n",
    );
    let rbac = compile(&config, "foo", &[]);
    assert_eq!(
        policy(&rbac.http[0], "ns[foo]-policy[deny-all]-rule[0]"),
        &json!({
            "permissions": [{"and_rules": {"rules": [{"any": true}]}}],
            "principals": [{"and_ids": {"ids": [{"any": true}]}}]
        })
    );
    assert_eq!(rbac.http[0]["typed_config"]["rules"]["action"], "DENY");
}

#[test]
fn field_forms() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: forms, namespace: foo}
spec:
  rules:
  - from:
    - source:
        principals: [\"td/ns/a/sa/b\", \"td/ns/a/*\", \"*/sa/b\", \"*\"]
        notNamespaces: [\"dev\"]
        ipBlocks: [\"10.0.0.0/8\"]
    to:
    - operation:
        paths: [\"/quotes/*\", \"*.png\", \"*\"]
        notPaths: [\"/admin\"]
        ports: [\"8443\"]
        hosts: [\"Example.com\"]
",
    );
    let rbac = compile(&config, "foo", &[]);
    let p = policy(&rbac.http[0], "ns[foo]-policy[forms]-rule[0]");
    assert_eq!(
        p["principals"][0]["and_ids"]["ids"],
        json!([
            {"or_ids": {"ids": [
                {"authenticated": {"principal_name": {"exact": "spiffe://td/ns/a/sa/b"}}},
                {"authenticated": {"principal_name": {"prefix": "spiffe://td/ns/a/"}}},
                {"authenticated": {"principal_name": {"safe_regex": {"regex": "spiffe://.*/sa/b"}}}},
                {"authenticated": {"principal_name": {"safe_regex": {"regex": ".+"}}}}
            ]}},
            {"not_id": {"or_ids": {"ids": [
                {"authenticated": {"principal_name": {"safe_regex": {"regex": ".*/ns/dev/.*"}}}}
            ]}}},
            {"or_ids": {"ids": [{"direct_remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 8}}]}}
        ])
    );
    assert_eq!(
        p["permissions"][0]["and_rules"]["rules"],
        json!([
            {"or_rules": {"rules": [{"header": {"name": ":authority", "string_match": {"exact": "Example.com", "ignore_case": true}}}]}},
            {"or_rules": {"rules": [
                {"url_path": {"path": {"prefix": "/quotes/"}}},
                {"url_path": {"path": {"suffix": ".png"}}},
                {"url_path": {"path": {"safe_regex": {"regex": ".+"}}}}
            ]}},
            {"not_rule": {"or_rules": {"rules": [{"url_path": {"path": {"exact": "/admin"}}}]}}},
            {"or_rules": {"rules": [{"destination_port": 8443}]}}
        ])
    );
}

#[test]
fn dry_run_goes_to_shadow_rules_and_audit_to_log() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: dry
  namespace: foo
  annotations: {istio.io/dry-run: \"true\"}
spec: {action: DENY, rules: [{}]}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: audit, namespace: foo}
spec: {action: AUDIT, rules: [{}]}
",
    );
    let rbac = compile(&config, "foo", &[]);
    assert_eq!(rbac.http.len(), 2);
    assert_eq!(rbac.http[0]["typed_config"]["rules"]["action"], "LOG");
    let deny = &rbac.http[1]["typed_config"];
    assert_eq!(deny.get("rules"), None, "a dry-run policy enforces nothing");
    assert_eq!(deny["shadow_rules"]["action"], "DENY");
    assert_eq!(deny["shadow_rules_stat_prefix"], "istio_dry_run_deny_");
}

#[test]
fn trust_domain_awareness() {
    let mesh = MeshConfig {
        trust_domain: "new.td".into(),
        trust_domain_aliases: vec!["old.td".into()],
        ..MeshConfig::default()
    };
    let config = policies_in(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: foo}\nspec:\n  rules:\n  - from:\n    - source: {principals: [\"cluster.local/ns/a/sa/b\"]}\n",
        mesh,
    );
    let ids = |aware: bool| {
        let rbac = envoy_rbac(&config, "foo", &Labels::new(), aware);
        policy(&rbac.http[0], "ns[foo]-policy[p]-rule[0]")["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"].clone()
    };
    assert_eq!(
        ids(true),
        json!([
            {"authenticated": {"principal_name": {"exact": "spiffe://new.td/ns/a/sa/b"}}},
            {"authenticated": {"principal_name": {"exact": "spiffe://old.td/ns/a/sa/b"}}}
        ])
    );
    assert_eq!(
        ids(false),
        json!([{"authenticated": {"principal_name": {"exact": "spiffe://cluster.local/ns/a/sa/b"}}}])
    );
}

#[test]
fn unsupported_of_applicable_policies_only() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  rules:
  - from:
    - source: {requestPrincipals: [\"*\"]}
",
    );
    assert_eq!(
        compile(&config, "foo", &[("app", "a")]).unsupported.len(),
        1
    );
    assert!(
        compile(&config, "foo", &[("app", "b")])
            .unsupported
            .is_empty()
    );
}

#[test]
fn json_uses_snake_case_field_names() {
    let config = policies(KITCHEN_SINK);
    let rbac = compile(&config, "foo", &[("app", "httpbin")]);
    fn walk(j: &Json, under_policies: bool) {
        match j {
            Json::Object(map) => {
                for (k, v) in map {
                    if !under_policies {
                        assert!(
                            k == "@type" || k.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                            "field {k:?} is not snake_case"
                        );
                    }
                    walk(v, k == "policies");
                }
            }
            Json::Array(items) => items.iter().for_each(|i| walk(i, false)),
            _ => {}
        }
    }
    for f in rbac.http.iter().chain(&rbac.network) {
        walk(f, false);
    }
}

// --- Differential check --------------------------------------------------------------------

/// Envoy's RBAC filter, read from the JSON: does this filter let the request through?
fn filter_passes(filter: &Json, req: &Request) -> bool {
    let Some(rules) = filter["typed_config"].get("rules") else {
        return true;
    };
    let matched = rules["policies"]
        .as_object()
        .is_some_and(|ps| ps.values().any(|p| policy_matches(p, req)));
    match rules["action"].as_str() {
        Some("ALLOW") => matched,
        Some("DENY") => !matched,
        _ => true,
    }
}

fn policy_matches(p: &Json, req: &Request) -> bool {
    let any =
        |key: &str, f: &dyn Fn(&Json) -> bool| p[key].as_array().is_some_and(|a| a.iter().any(f));
    any("permissions", &|j| permission(j, req)) && any("principals", &|j| principal(j, req))
}

fn permission(j: &Json, req: &Request) -> bool {
    let (key, v) = single(j);
    match key {
        "any" => true,
        "and_rules" => v["rules"]
            .as_array()
            .is_some_and(|a| a.iter().all(|r| permission(r, req))),
        "or_rules" => v["rules"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| permission(r, req))),
        "not_rule" => !permission(v, req),
        "header" => header(v, req),
        "url_path" => string(&v["path"], Some(req.url_path())),
        "destination_port" => v.as_u64() == Some(u64::from(req.destination.port)),
        "destination_ip" => cidr(v, req.destination.ip),
        "requested_server_name" => string(v, req.sni.as_deref()),
        "metadata" => false,
        other => panic!("unknown permission {other}"),
    }
}

fn principal(j: &Json, req: &Request) -> bool {
    let (key, v) = single(j);
    match key {
        "any" => true,
        "and_ids" => v["ids"]
            .as_array()
            .is_some_and(|a| a.iter().all(|r| principal(r, req))),
        "or_ids" => v["ids"]
            .as_array()
            .is_some_and(|a| a.iter().any(|r| principal(r, req))),
        "not_id" => !principal(v, req),
        "authenticated" => {
            let uri = req
                .source
                .principal
                .as_ref()
                .map(|p| format!("spiffe://{p}"));
            string(&v["principal_name"], uri.as_deref())
        }
        "direct_remote_ip" | "remote_ip" => cidr(v, req.source.ip),
        "header" => header(v, req),
        "metadata" => false,
        other => panic!("unknown principal {other}"),
    }
}

fn single(j: &Json) -> (&str, &Json) {
    let map = j.as_object().expect("object");
    assert_eq!(map.len(), 1, "{j}");
    map.iter()
        .next()
        .map(|(k, v)| (k.as_str(), v))
        .expect("one key")
}

fn string(m: &Json, value: Option<&str>) -> bool {
    let Some(value) = value else { return false };
    let fold = m["ignore_case"].as_bool() == Some(true);
    let norm = |s: &str| {
        if fold {
            s.to_ascii_lowercase()
        } else {
            s.to_owned()
        }
    };
    if let Some(e) = m["exact"].as_str() {
        norm(value) == norm(e)
    } else if let Some(p) = m["prefix"].as_str() {
        norm(value).starts_with(&norm(p))
    } else if let Some(s) = m["suffix"].as_str() {
        norm(value).ends_with(&norm(s))
    } else if let Some(r) = m["safe_regex"]["regex"].as_str() {
        Regex::new(r).expect("valid regex").is_full_match(value)
    } else {
        panic!("unknown string matcher {m}")
    }
}

fn header(h: &Json, req: &Request) -> bool {
    let value = req.header(h["name"].as_str().expect("name"));
    if h["present_match"].as_bool() == Some(true) {
        value.is_some()
    } else if h.get("string_match").is_some() {
        string(&h["string_match"], value.as_deref())
    } else if let Some(r) = h["safe_regex_match"]["regex"].as_str() {
        value.is_some_and(|v| Regex::new(r).expect("valid").is_full_match(&v))
    } else {
        panic!("unknown header matcher {h}")
    }
}

fn cidr(c: &Json, ip: Option<std::net::IpAddr>) -> bool {
    let text = format!(
        "{}/{}",
        c["address_prefix"].as_str().expect("prefix"),
        c["prefix_len"]
    );
    ip.is_some_and(|ip| {
        super::matcher::Cidr::parse(&text)
            .expect("cidr")
            .contains(ip)
    })
}

fn envoy_allows(config: &MeshPolicies, req: &Request) -> bool {
    let rbac = envoy_rbac(
        config,
        &req.destination.namespace,
        &req.destination.labels,
        true,
    );
    let filters = match req.protocol {
        Protocol::Http => &rbac.http,
        Protocol::Tcp => &rbac.network,
    };
    filters.iter().all(|f| filter_passes(f, req))
}

pub(super) const KITCHEN_SINK: &str = "
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: sink, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from:
    - source:
        principals: [\"cluster.local/ns/default/*\", \"*/sa/admin\"]
        notPrincipals: [\"cluster.local/ns/default/sa/blocked\"]
    - source:
        namespaces: [\"test\", \"team-*\"]
        ipBlocks: [\"10.0.0.0/8\"]
    to:
    - operation:
        methods: [\"GET\", \"HEAD\"]
        paths: [\"/api/*\", \"*.json\"]
        notPaths: [\"/api/private/*\"]
    - operation:
        ports: [\"9000\"]
    when:
    - key: request.headers[x-env]
      notValues: [\"staging*\"]
  - from:
    - source:
        serviceAccounts: [\"ops/robot\"]
    to:
    - operation:
        hosts: [\"*.example.com\"]
        notMethods: [\"DELETE\"]
    when:
    - key: destination.port
      values: [\"8080\"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-sink, namespace: istio-system}
spec:
  action: DENY
  rules:
  - from:
    - source:
        notPrincipals: [\"*\"]
    to:
    - operation:
        notPaths: [\"/healthz\"]
  - to:
    - operation:
        methods: [\"TRACE\"]
  - from:
    - source:
        remoteIpBlocks: [\"192.168.66.0/24\"]
";

fn requests() -> Vec<Request> {
    let principals = [
        None,
        Some("cluster.local/ns/default/sa/curl"),
        Some("cluster.local/ns/default/sa/blocked"),
        Some("cluster.local/ns/other/sa/admin"),
        Some("cluster.local/ns/test/sa/x"),
        Some("cluster.local/ns/team-a/sa/x"),
        Some("cluster.local/ns/ops/sa/robot"),
        Some("cluster.local/ns/ops/sa/robot2"),
        Some("tradepulse/prod/strategy"),
        Some("tradepulse/prod/strategy/optimizer"),
        Some("tradepulse/prod/risk"),
    ];
    let shapes: [(&str, &str, u16, &str); 10] = [
        ("GET", "/api/v1", 8080, "httpbin.example.com"),
        ("GET", "/api/private/x", 8080, "api.example.com"),
        ("HEAD", "/x.json?q=1", 8080, "x"),
        ("DELETE", "/api/v1", 8080, "api.example.com"),
        ("POST", "/data", 9000, "x"),
        ("TRACE", "/api/v1", 8080, "x"),
        ("GET", "/healthz", 8080, "x"),
        ("GET", "/quotes/AAPL", 8443, "x"),
        ("GET", "/quotesXYZ", 8443, "x"),
        ("GET", "/positions/1", 8443, "x"),
    ];
    let workloads: [(&str, &[(&str, &str)]); 3] = [
        ("foo", &[("app", "httpbin"), ("version", "v1")]),
        ("market", &[("app", "market-data")]),
        ("dev", &[("app", "other")]),
    ];
    let ips = ["10.1.2.3", "192.168.66.7", "172.16.0.1"];
    let mut out = Vec::new();
    for (ns, l) in workloads {
        for (i, p) in principals.iter().enumerate() {
            for (j, (m, path, port, host)) in shapes.iter().enumerate() {
                let mut r = Request::http(ns, l, *port, m, path)
                    .with_host(host)
                    .from_ip(ips[(i + j) % 3].parse().expect("ip"));
                if (i + j) % 4 == 0 {
                    r = r.with_header("x-env", "staging-2");
                }
                if let Some(p) = p {
                    r = r.from_principal(p);
                }
                out.push(r.clone());
                let mut tcp = Request::tcp(ns, l, *port);
                tcp.source = r.source.clone();
                out.push(tcp);
            }
        }
    }
    out
}

#[test]
fn compiled_json_enforces_what_evaluate_predicts() {
    let configs = [
        policies(KITCHEN_SINK),
        load(&testdata("httpbin"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        load(&testdata("tradepulse.yaml"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}")),
        policies(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: tcp, namespace: foo}\nspec:\n  rules:\n  - to:\n    - operation: {ports: [\"9000\"]}\n  - to:\n    - operation: {methods: [GET], ports: [\"8080\"]}\n",
        ),
    ];
    let requests = requests();
    let mut checked = 0;
    let (mut allowed, mut denied) = (0, 0);
    for config in &configs {
        for req in &requests {
            let decision = evaluate(config, req);
            assert_eq!(
                envoy_allows(config, req),
                decision.allowed,
                "Envoy JSON and evaluate disagree on {}: {}",
                req.describe(),
                decision.explanation
            );
            checked += 1;
            if decision.allowed {
                allowed += 1;
            } else {
                denied += 1;
            }
        }
    }
    assert!(
        checked > 2000 && allowed > 100 && denied > 100,
        "{checked} {allowed} {denied}"
    );
}

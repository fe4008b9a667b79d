//! Loading: files, folders, skipped kinds, locations, strict errors, unsupported fields.

use std::path::Path;

use super::tests_eval::testdata;
use super::*;

fn errors(yaml: &str) -> Vec<String> {
    match parse_str(Path::new("bad.yaml"), yaml, MeshConfig::default()) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[track_caller]
fn one_error(yaml: &str, line: u32, needle: &str) {
    let errs = errors(yaml);
    assert!(
        errs.iter()
            .any(|e| e.starts_with(&format!("bad.yaml:{line}:")) && e.contains(needle)),
        "no error at line {line} containing {needle:?}: {errs:#?}"
    );
    for e in &errs {
        assert!(!e.contains('\n'), "multi-line error: {e}");
    }
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  namespace: foo\nspec:\n{spec}"
    )
}

#[test]
fn loads_a_folder_and_counts_skipped_documents() {
    let config =
        load(&testdata("httpbin"), MeshConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.authorization_policies.len(), 2);
    assert_eq!(config.peer_authentications.len(), 3);
    let skipped: Vec<(&str, u32)> = config
        .skipped
        .iter()
        .map(|s| (s.kind.as_str(), s.line))
        .collect();
    assert_eq!(skipped, [("Service", 3), ("Deployment", 34)]);
    assert!(config.unsupported.is_empty(), "{:?}", config.unsupported);
    let deny = config
        .authorization_policies
        .iter()
        .find(|p| p.meta.name == "deny-dev-post")
        .expect("loaded");
    assert_eq!(deny.meta.line, 41);
    assert_eq!(deny.action, Action::Deny);
    assert_eq!(deny.rules[0].line, 49);
    assert_eq!(deny.rules[0].from[0].namespaces[0].text, "dev");
}

#[test]
fn missing_namespace_defaults_and_lists_unwrap() {
    let config = parse_str(
        Path::new("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: security.istio.io/v1\n  kind: AuthorizationPolicy\n  metadata: {name: a}\n  spec: {}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: c}\n",
        MeshConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.authorization_policies[0].meta.namespace, "default");
    assert_eq!(config.authorization_policies[0].meta.line, 4);
    assert_eq!(config.skipped.len(), 1);
}

#[test]
fn typo_in_a_field_name_is_an_error_with_a_hint() {
    one_error(
        &ap(
            "  rules:\n  - from:\n    - source:\n        principal: [\"cluster.local/ns/a/sa/b\"]\n",
        ),
        10,
        "unknown field `principal` in spec.rules[0].from[0].source (did you mean `principals`?)",
    );
    one_error(&ap("  acton: DENY\n"), 7, "unknown field `acton`");
    one_error(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  mtls: {mod: STRICT}\n",
        5,
        "unknown field `mod`",
    );
}

#[test]
fn wrong_types_are_errors() {
    one_error(
        &ap("  rules:\n  - to:\n    - operation:\n        ports: [8080]\n"),
        10,
        "is a number, not a string",
    );
    one_error(
        &ap("  rules:\n    from: []\n"),
        8,
        "spec.rules is a mapping",
    );
    one_error(&ap("  action: deny\n  rules: [{}]\n"), 7, "not an action");
    one_error(&ap("  selector: [app]\n"), 7, "spec.selector is a list");
}

#[test]
fn malformed_yaml_is_a_located_error() {
    let errs = errors("apiVersion: v1\nkind: AuthorizationPolicy\nmetadata: {name: [x\nspec: {}\n");
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with("bad.yaml:4:") || errs[0].starts_with("bad.yaml:3:"),
        "{errs:?}"
    );
    assert!(errs[0].contains("invalid YAML"), "{errs:?}");
}

#[test]
fn what_istio_rejects_is_rejected() {
    one_error(&ap("  action: DENY\n"), 7, "DENY policy without `rules`");
    one_error(
        &ap("  action: ALLOW\n  provider: {name: opa}\n  rules: [{}]\n"),
        8,
        "provider is set on a ALLOW policy",
    );
    one_error(
        &ap("  rules:\n  - from:\n    - source: {}\n"),
        9,
        "is empty",
    );
    one_error(&ap("  rules:\n  - from: []\n"), 8, "from is empty");
    one_error(
        &ap("  rules:\n  - from:\n    - {}\n"),
        9,
        "source is missing",
    );
    one_error(
        &ap("  rules:\n  - to:\n    - operation: {paths: [\"\"]}\n"),
        9,
        "empty string",
    );
    one_error(
        &ap("  rules:\n  - from:\n    - source: {ipBlocks: [\"10.0.0.0/33\"]}\n"),
        9,
        "prefix length",
    );
    one_error(
        &ap("  rules:\n  - to:\n    - operation: {ports: [\"http\"]}\n"),
        9,
        "not a decimal port",
    );
    one_error(
        &ap("  rules:\n  - when:\n    - key: destination.labels[app]\n      values: [x]\n"),
        9,
        "replaced by the workload selector",
    );
    one_error(
        &ap("  rules:\n  - when:\n    - key: request.headers[x]\n"),
        9,
        "neither values nor notValues",
    );
    one_error(
        &ap("  rules:\n  - from:\n    - source: {principals: [a], serviceAccounts: [b]}\n"),
        9,
        "serviceAccounts together with principals",
    );
    one_error(
        &ap("  rules:\n  - to:\n    - operation: {paths: [\"/{**}/{*}\"]}\n"),
        9,
        "{**} must be the last",
    );
    one_error(
        &ap("  selector: {matchLabels: {app: x}}\n  targetRefs: [{kind: Gateway, name: gw}]\n"),
        7,
        "both spec.selector and spec.targetRef",
    );
    one_error(&ap("  rules:\n  - ~\n"), 8, "spec.rules[0] is null");
    one_error(
        "apiVersion: security.istio.io/v2\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: {}\n",
        1,
        "does not exist in security.istio.io/v2",
    );
    one_error(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: x}\n",
        3,
        "no metadata.name",
    );
    one_error(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\nspec:\n  portLevelMtls: {8080: {mode: DISABLE}}\n",
        5,
        "cannot have portLevelMtls",
    );
    one_error(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: x\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAl}}\n",
        6,
        "not a TLS mode",
    );
}

#[test]
fn every_error_of_every_document_is_reported() {
    let errs = errors(&format!(
        "{}\n---\n{}",
        ap("  acton: DENY\n"),
        ap("  rules:\n  - to:\n    - operation: {ports: [80]}\n").replace("name: p", "name: q")
    ));
    assert_eq!(errs.len(), 2, "{errs:#?}");
}

#[test]
fn duplicate_objects_are_errors() {
    let doc = ap("  rules: [{}]\n");
    one_error(
        &format!("{doc}---\n{doc}"),
        9,
        "defined twice (also at bad.yaml:1)",
    );
}

#[test]
fn unsupported_fields_are_listed_never_ignored() {
    let spec = r#"  rules:
  - from:
    - source:
        requestPrincipals: ["issuer/subject"]
    to:
    - operation:
        paths: ["/api/{*}/items"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: experimental.envoy.filters.a.b[c]
      values: ["x"]
  - from:
    - source:
        principals: ["*[a-z]"]
"#;
    let config = parse_str(Path::new("u.yaml"), &ap(spec), MeshConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let got: Vec<(u32, &str)> = config
        .unsupported
        .iter()
        .map(|u| (u.line, u.field.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (10, "spec.rules[0].from[0].source.requestPrincipals"),
            (13, "spec.rules[0].to[0].operation.paths"),
            (15, "spec.rules[0].when[0].key: request.auth.claims[iss]"),
            (
                17,
                "spec.rules[0].when[1].key: experimental.envoy.filters.a.b[c]"
            ),
            (21, "spec.rules[1].from[0].source.principals"),
        ]
    );
    for u in &config.unsupported {
        assert_eq!(u.object, "AuthorizationPolicy foo/p");
        assert!(
            u.to_string()
                .starts_with(&format!("u.yaml:{}: AuthorizationPolicy foo/p: ", u.line))
        );
    }
}

#[test]
fn bad_dry_run_annotation_is_reported_and_enforced() {
    let config = parse_str(
        Path::new("d.yaml"),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: p\n  annotations: {istio.io/dry-run: \"maybe\"}\nspec:\n  action: DENY\n  rules: [{}]\n",
        MeshConfig::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!config.authorization_policies[0].dry_run);
    assert_eq!(config.unsupported.len(), 1);
}

#[test]
fn unreadable_paths_are_errors() {
    let err = load(
        Path::new("/nonexistent/meshproof.yaml"),
        MeshConfig::default(),
    )
    .expect_err("missing");
    assert!(
        err.to_string()
            .starts_with("/nonexistent/meshproof.yaml: cannot read manifest"),
        "{err}"
    );
}

//! PeerAuthentication composition and DestinationRule client TLS.

use super::tests_eval::{policies, policies_in, testdata};
use super::*;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn default_is_permissive() {
    assert_eq!(
        mtls_mode(&policies(""), "foo", &labels(&[]), 80),
        (MtlsMode::Permissive, None)
    );
}

#[test]
fn mesh_strict_namespace_permissive_workload_port_disable() {
    // Istio's documented layering (security/authentication/authn-policy).
    let config = load(&testdata("httpbin/peer.yml"), MeshConfig::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let finance = labels(&[("app", "finance")]);
    let (mode, by) = mtls_mode(&config, "bar", &labels(&[]), 8080);
    assert_eq!(mode, MtlsMode::Strict);
    let by = by.expect("mesh policy");
    assert_eq!(
        (by.namespace.as_str(), by.name.as_str(), by.line),
        ("istio-system", "default", 1)
    );

    let (mode, by) = mtls_mode(&config, "foo", &labels(&[("app", "httpbin")]), 8080);
    assert_eq!(mode, MtlsMode::Permissive);
    assert_eq!(
        by.map(|b| (b.namespace, b.name)),
        Some(("foo".into(), "default".into()))
    );

    assert_eq!(
        mtls_mode(&config, "foo", &finance, 9090).0,
        MtlsMode::Strict
    );
    let (mode, by) = mtls_mode(&config, "foo", &finance, 8080);
    assert_eq!(mode, MtlsMode::Disable);
    let by = by.expect("port-level");
    assert_eq!(
        (by.name.as_str(), by.line, by.detail_line),
        ("finance", 19, Some(31))
    );
    assert!(by.to_string().ends_with("peer.yml:31"), "{by}");
    // The workload selector is namespaced: finance in another namespace inherits the mesh.
    assert_eq!(
        mtls_mode(&config, "bar", &finance, 8080).0,
        MtlsMode::Strict
    );
}

#[test]
fn unset_inherits_and_root_selectors_are_ignored() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: root-selector, namespace: istio-system}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec:
  mtls: {mode: UNSET}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: finance, namespace: foo}
spec:
  selector: {matchLabels: {app: finance}}
  mtls: {mode: UNSET}
  portLevelMtls:
    8080: {mode: DISABLE}
    9000: {mode: UNSET}
",
    );
    let finance = labels(&[("app", "finance")]);
    let (mode, by) = mtls_mode(&config, "foo", &finance, 80);
    assert_eq!(mode, MtlsMode::Strict);
    assert_eq!(by.map(|b| b.namespace), Some("istio-system".into()));
    assert_eq!(
        mtls_mode(&config, "foo", &finance, 9000).0,
        MtlsMode::Strict
    );
    assert_eq!(
        mtls_mode(&config, "foo", &finance, 8080).0,
        MtlsMode::Disable
    );
    // Root-namespace selector policies are not workload policies anywhere.
    assert_eq!(mtls_mode(&config, "bar", &finance, 80).0, MtlsMode::Strict);
}

#[test]
fn oldest_namespace_policy_wins() {
    let config = policies(
        "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: b-newer, namespace: foo, creationTimestamp: \"2025-02-01T00:00:00Z\"}
spec:
  mtls: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a-older, namespace: foo, creationTimestamp: \"2025-01-01T00:00:00Z\"}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: 0-no-timestamp, namespace: foo}
spec:
  mtls: {mode: PERMISSIVE}
",
    );
    let (mode, by) = mtls_mode(&config, "foo", &labels(&[]), 80);
    assert_eq!(mode, MtlsMode::Strict);
    assert_eq!(by.map(|b| b.name), Some("a-older".into()));
}

const DRS: &str = "
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh-default, namespace: istio-system}
spec:
  host: \"*.local\"
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  exportTo: [\".\"]
  trafficPolicy:
    tls: {mode: DISABLE}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: ratings, namespace: bookinfo}
spec:
  host: ratings.bookinfo.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 10}}
    portLevelSettings:
    - port: {number: 9080}
      tls: {mode: DISABLE}
    tls:
      mode: MUTUAL
      clientCertificate: /etc/certs/cert.pem
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings-override, namespace: client}
spec:
  host: ratings.bookinfo.svc.cluster.local
  trafficPolicy:
    tls: {mode: SIMPLE}
";

#[test]
fn destination_rule_lookup_order_and_export() {
    let config = policies(DRS);
    let reviews = "reviews.bookinfo.svc.cluster.local";
    // Same namespace sees the private rule; short host resolved in the rule's namespace.
    let (mode, by) = client_tls_mode(&config, "bookinfo", reviews);
    assert_eq!(mode, Some(ClientTlsMode::Disable));
    assert_eq!(by.map(|b| b.name), Some("reviews".into()));
    assert_eq!(
        client_tls_mode(&config, "bookinfo", "reviews").0,
        Some(ClientTlsMode::Disable)
    );
    // Other namespaces do not see it (exportTo: .) and fall back to the root namespace wildcard.
    let (mode, by) = client_tls_mode(&config, "other", reviews);
    assert_eq!(mode, Some(ClientTlsMode::IstioMutual));
    assert_eq!(by.map(|b| b.name), Some("mesh-default".into()));
    // Service namespace rule, exported by default.
    assert_eq!(
        client_tls_mode(&config, "other", "ratings.bookinfo.svc.cluster.local").0,
        Some(ClientTlsMode::Mutual)
    );
    // Client namespace rule first.
    assert_eq!(
        client_tls_mode(&config, "client", "ratings.bookinfo.svc.cluster.local").0,
        Some(ClientTlsMode::Simple)
    );
    // No rule at all: auto mTLS.
    assert_eq!(
        client_tls_mode(&config, "other", "example.com"),
        (None, None)
    );
}

#[test]
fn destination_rule_unsupported_fields_are_listed() {
    let config = policies(DRS);
    let fields: Vec<&str> = config
        .unsupported
        .iter()
        .map(|u| u.field.as_str())
        .collect();
    for f in [
        "spec.trafficPolicy.portLevelSettings",
        "spec.trafficPolicy.connectionPool",
        "spec.trafficPolicy.tls.clientCertificate",
    ] {
        assert!(fields.contains(&f), "{f} missing from {fields:?}");
    }
    let u = config
        .unsupported
        .iter()
        .find(|u| u.field == "spec.trafficPolicy.portLevelSettings")
        .expect("listed");
    assert_eq!(u.object, "DestinationRule bookinfo/ratings");
    assert_eq!(u.line, 26);
}

#[test]
fn other_root_namespace() {
    let mesh = MeshConfig {
        root_namespace: "mesh".into(),
        ..MeshConfig::default()
    };
    let config = policies_in(DRS, mesh);
    // istio-system is now an ordinary namespace: its wildcard rule is exported everywhere, but
    // only looked up for services in istio-system.
    assert_eq!(
        client_tls_mode(&config, "other", "reviews.bookinfo.svc.cluster.local"),
        (None, None)
    );
}

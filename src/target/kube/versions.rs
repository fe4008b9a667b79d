//! Every version the kind and cluster targets pin, in one place.
//!
//! Bump a version here and nowhere else: `kind/cluster.yaml` and `kind/images.txt` carry copies
//! for people and for air-gapped preloading, and `tests/kube_versions.rs` fails when a copy and
//! this table disagree. [`TABLE`] feeds the README's versions table and each run's results
//! (`versions` in `results.json`).
//!
//! Provenance (so a bump knows where to look):
//! - kind and its default node image: `sigs.k8s.io/kind` v0.33.0,
//!   `pkg/apis/config/defaults/image.go` (the node image is pinned by digest);
//! - kubectl: `k8s.io/kubectl` v0.37.2 is Kubernetes v1.37.2 (one minor of skew from the node);
//! - helm: `helm.sh/helm/v3` v3.22.0 (every flag used here also exists in helm 4);
//! - Istio: 1.31.1 (`istio.io/client-go` v1.31.1 is cut with each Istio release);
//! - Gatekeeper: 3.23.1, the same version as the `gator` the lab cross-checks its Rego with
//!   (`scripts/install/gator.sh`);
//! - SPIRE: the hardened chart `spire` 0.25.0 (app 1.12.2) with `spire-crds` 0.6.0. The lab runs
//!   SPIRE 1.15.3 from source (`scripts/install/spire.sh`); the chart's own SPIRE is used on kind.

/// The kind CLI the lifecycle is written against.
pub const KIND: &str = "0.33.0";
/// The node image of every kind node, pinned by digest (kind v0.33.0's default).
pub const KIND_NODE_IMAGE: &str =
    "kindest/node:v1.37.0@sha256:a1ed56cfb0e7b93589bdf97c8cd566405a265939e3620fc4f5de89adff580ae5";
/// Kubernetes version of [`KIND_NODE_IMAGE`].
pub const KUBERNETES: &str = "1.37.0";
/// kubectl, within one minor of the node.
pub const KUBECTL: &str = "1.37.2";
/// helm 3 (helm 4 accepts the same flags).
pub const HELM: &str = "3.22.0";
/// Istio: charts `base`, `istiod`, `gateway`, and `istioctl`.
pub const ISTIO: &str = "1.31.1";
/// OPA Gatekeeper: chart `gatekeeper` (chart and app versions are equal).
pub const GATEKEEPER: &str = "3.23.1";
/// SPIRE hardened chart `spire` (server StatefulSet, agent DaemonSet, CSI driver, controller
/// manager).
pub const SPIRE_CHART: &str = "0.25.0";
/// SPIRE hardened chart `spire-crds` (ClusterSPIFFEID and friends).
pub const SPIRE_CRDS_CHART: &str = "0.6.0";
/// The SPIRE release [`SPIRE_CHART`] deploys (its `appVersion`).
pub const SPIRE: &str = "1.12.2";

/// Helm repositories, by chart family.
pub const ISTIO_REPO: &str = "https://istio-release.storage.googleapis.com/charts";
pub const GATEKEEPER_REPO: &str = "https://open-policy-agent.github.io/gatekeeper/charts";
pub const SPIRE_REPO: &str = "https://spiffe.github.io/helm-charts-hardened/";

/// Oldest versions the preflight accepts (older ones are reported with the pinned version to
/// install). Kept one or two minors below the pins so a slightly older CI image still runs.
pub const MIN_KIND: &str = "0.27.0";
pub const MIN_KUBECTL: &str = "1.30.0";
pub const MIN_HELM: &str = "3.14.0";
pub const MIN_ISTIOCTL: &str = "1.29.0";

/// The probe images the renderer puts in every probe workload (`render/workloads.rs`: an echo
/// app that answers as the service, and curl for requests sent from inside the pod).
/// `tests/kube_versions.rs` fails when the rendered manifests use other images.
pub const PROBE_IMAGES: &[&str] = &[
    "docker.io/hashicorp/http-echo:1.0.0",
    "docker.io/curlimages/curl:8.11.1",
];

/// Images the install pulls, for `kind load image-archive` on machines without registry access
/// (`kind/images.txt` is this list).
pub fn images() -> Vec<String> {
    let mut images = vec![
        format!("docker.io/istio/pilot:{ISTIO}"),
        format!("docker.io/istio/proxyv2:{ISTIO}"),
        format!("docker.io/openpolicyagent/gatekeeper:v{GATEKEEPER}"),
        format!("docker.io/openpolicyagent/gatekeeper-crds:v{GATEKEEPER}"),
        format!("ghcr.io/spiffe/spire-server:{SPIRE}"),
        format!("ghcr.io/spiffe/spire-agent:{SPIRE}"),
    ];
    images.extend(PROBE_IMAGES.iter().map(|s| (*s).to_owned()));
    images
}

/// One row of the versions table: component, version, where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pin {
    pub component: &'static str,
    pub version: &'static str,
    pub source: &'static str,
}

/// The versions table (README, results metadata).
pub const TABLE: &[Pin] = &[
    Pin {
        component: "kind",
        version: KIND,
        source: "https://github.com/kubernetes-sigs/kind/releases",
    },
    Pin {
        component: "kind node image",
        version: KIND_NODE_IMAGE,
        source: "kind/cluster.yaml",
    },
    Pin {
        component: "kubectl",
        version: KUBECTL,
        source: "https://dl.k8s.io/release/",
    },
    Pin {
        component: "helm",
        version: HELM,
        source: "https://github.com/helm/helm/releases",
    },
    Pin {
        component: "istio (base, istiod, gateway charts; istioctl)",
        version: ISTIO,
        source: ISTIO_REPO,
    },
    Pin {
        component: "gatekeeper chart",
        version: GATEKEEPER,
        source: GATEKEEPER_REPO,
    },
    Pin {
        component: "spire chart (hardened)",
        version: SPIRE_CHART,
        source: SPIRE_REPO,
    },
    Pin {
        component: "spire-crds chart (hardened)",
        version: SPIRE_CRDS_CHART,
        source: SPIRE_REPO,
    },
    Pin {
        component: "spire (deployed by the chart)",
        version: SPIRE,
        source: "https://github.com/spiffe/spire/releases",
    },
];

/// Compares dotted versions numerically (`1.9.0 < 1.10.0`); a leading `v` and anything after
/// the first character that is neither a digit nor a dot (`-rc.1`, `+g1234`, `-dispatcher`) are
/// ignored. `None` when `version` holds no number at all.
pub fn at_least(version: &str, minimum: &str) -> Option<bool> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        let v = v.trim().trim_start_matches('v');
        let core: String = v
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let parts: Vec<u64> = core
            .split('.')
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().ok())
            .collect::<Option<_>>()?;
        (!parts.is_empty()).then_some(parts)
    };
    let (have, want) = (parse(version)?, parse(minimum)?);
    for i in 0..have.len().max(want.len()) {
        let (a, b) = (
            have.get(i).copied().unwrap_or(0),
            want.get(i).copied().unwrap_or(0),
        );
        if a != b {
            return Some(a > b);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_and_ignore_suffixes() {
        assert_eq!(at_least("v1.32.4-dispatcher", "1.30.0"), Some(true));
        assert_eq!(at_least("1.9.0", "1.10.0"), Some(false));
        assert_eq!(at_least("v3.22.0+g1234", "3.14.0"), Some(true));
        assert_eq!(at_least("0.27", "0.27.0"), Some(true));
        assert_eq!(at_least("unknown", "1.0"), None);
    }

    #[test]
    fn the_node_image_is_pinned_by_digest_and_matches_kubernetes() {
        assert!(KIND_NODE_IMAGE.contains("@sha256:"));
        assert!(KIND_NODE_IMAGE.contains(&format!(":v{KUBERNETES}@")));
    }
}

//! The pinned versions live in one place (src/target/kube/versions.rs); the copies people and
//! air-gapped machines read — kind/cluster.yaml, kind/images.txt, kind/README.md, and the real
//! API server the tests build (scripts/install/kube.sh) — must agree
//! with it, and the probe images the renderer writes must be the ones preloaded.

use std::path::PathBuf;

use meshproof::target::kube::versions;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn kind_config_pins_every_node_to_the_pinned_image() {
    let config: serde_json::Value =
        serde_saphyr::from_str(&read("kind/cluster.yaml")).expect("YAML");
    assert_eq!(config["kind"], "Cluster");
    assert_eq!(config["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let nodes = config["nodes"].as_array().expect("nodes");
    assert!(nodes.iter().any(|n| n["role"] == "control-plane"));
    assert!(
        nodes.iter().any(|n| n["role"] == "worker"),
        "DaemonSets need a second node"
    );
    for node in nodes {
        assert_eq!(node["image"], versions::KIND_NODE_IMAGE, "{node}");
    }
    assert!(config.get("name").is_none(), "the name is given per run");
}

#[test]
fn images_txt_is_the_pinned_image_list() {
    let listed: Vec<String> = read("kind/images.txt")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    assert_eq!(listed, versions::images());
}

#[test]
fn rendered_probe_workloads_use_the_preloaded_images() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root().join("manifests")).expect("manifests/") {
        let workloads = entry.expect("entry").path().join("workloads.yaml");
        let Ok(text) = std::fs::read_to_string(&workloads) else {
            continue;
        };
        for line in text.lines() {
            if let Some(image) = line.trim().strip_prefix("image: ") {
                found.push(image.trim_matches('"').to_owned());
            }
        }
    }
    assert!(!found.is_empty());
    for image in &found {
        assert!(
            versions::PROBE_IMAGES.contains(&image.as_str()),
            "{image} is rendered but not pinned in versions::PROBE_IMAGES (and so not preloaded)"
        );
    }
}

#[test]
fn kind_readme_lists_every_pinned_version() {
    let readme = read("kind/README.md");
    for pin in versions::TABLE {
        assert!(
            readme.contains(pin.version),
            "kind/README.md does not mention {} {}",
            pin.component,
            pin.version
        );
    }
}

#[test]
fn the_real_apiserver_install_builds_the_pinned_kubernetes_and_kubectl() {
    let script = read("scripts/install/kube.sh");
    let pinned = |var: &str| {
        script
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{var}=\"")))
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("scripts/install/kube.sh sets no {var}"))
            .to_owned()
    };
    assert_eq!(pinned("KUBERNETES_VERSION"), versions::KUBERNETES);
    assert_eq!(pinned("KUBECTL_VERSION"), versions::KUBECTL);
}

#[test]
fn the_readme_states_every_pinned_version() {
    let readme = read("README.md");
    let section = readme
        .split("## Running on kind or an existing cluster")
        .nth(1)
        .expect("README has the kind/cluster section");
    for pin in versions::TABLE {
        assert!(
            section.contains(pin.version),
            "README does not state {} {}",
            pin.component,
            pin.version
        );
    }
}

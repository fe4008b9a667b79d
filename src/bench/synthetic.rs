//! Synthetic profiles for the static-verify scaling curve: `n` services in namespaces of ten
//! (one per team), each with one HTTP API endpoint, and `k` intents per service (70 % ALLOW to
//! the next services' API, the rest DENY of everything), plus SomaAgentHub's four admission
//! policies over every namespace. The manifests are written by [`crate::render::write`], exactly
//! as `meshproof render` writes them, so a verify of them passes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Services per namespace.
pub const TEAM_SIZE: usize = 10;

fn service(i: usize) -> String {
    format!("svc-{i:05}")
}

fn namespace(i: usize) -> String {
    format!("team-{:04}", i / TEAM_SIZE)
}

/// How many of a service's `k` intents are ALLOW (the rest are DENY).
pub fn allows_of(k: usize) -> usize {
    (k * 7).div_ceil(10)
}

/// The profile's YAML text: `n` services, `k` intents each (capped at `n − 1`, since a service
/// never calls itself and no intent repeats).
pub fn profile_yaml(n: usize, k: usize) -> String {
    let k = k.min(n.saturating_sub(1));
    let allows = allows_of(k);
    let mut y = String::with_capacity(n * (320 + k * 90));
    let _ = write!(
        y,
        "# Synthetic profile for `meshproof bench`: {n} services, {k} intents each.\n\
         apiVersion: meshproof.dev/v1alpha1\n\
         kind: Profile\n\
         metadata:\n  name: synthetic-{n}\n\
         spec:\n  trustDomain: synthetic.local\n\
         \x20 identity:\n    provider: istio-ca\n    schema: \"spiffe://synthetic.local/ns/{{namespace}}/sa/{{serviceAccount}}\"\n\
         \x20 controlPlane:\n    namespace: istio-system\n\
         \x20 mtls: STRICT\n\
         \x20 services:\n"
    );
    for i in 0..n {
        let _ = write!(
            y,
            "    - name: {s}\n      namespace: {ns}\n      serviceAccount: {s}\n      ports: [{{ name: http, port: 8080 }}]\n      endpoints:\n        - {{ name: api, path: /api/*, methods: [GET, POST] }}\n",
            s = service(i),
            ns = namespace(i)
        );
    }
    y.push_str("  intents:\n    allow:\n");
    if allows == 0 {
        y.truncate(y.len() - " allow:\n".len());
        y.push_str(" allow: []\n");
    }
    for i in 0..n {
        for d in 1..=allows {
            let _ = writeln!(
                y,
                "      - {{ from: {}, to: {}, endpoints: [api], reason: \"synthetic allow {d}\" }}",
                service(i),
                service((i + d) % n)
            );
        }
    }
    if k > allows {
        y.push_str("    deny:\n");
        for i in 0..n {
            for d in allows + 1..=k {
                let _ = writeln!(
                    y,
                    "      - {{ from: {}, to: {}, reason: \"synthetic deny {d}\" }}",
                    service(i),
                    service((i + d) % n)
                );
            }
        }
    } else {
        y.push_str("    deny: []\n");
    }
    y.push_str(
        "  ca:\n    root: { organization: Synthetic, validity: 3650d }\n    intermediate: { validity: 395d, rotateEvery: 365d, overlap: 30d }\n    workload: { ttl: 12h }\n",
    );
    y.push_str("  admission:\n    namespaces: [");
    let teams = n.div_ceil(TEAM_SIZE);
    for t in 0..teams {
        if t > 0 {
            y.push_str(", ");
        }
        y.push_str(&namespace(t * TEAM_SIZE));
    }
    y.push_str("]\n");
    y.push_str(
        "    policies:\n\
         \x20     - kind: K8sRequiredRegistry\n        name: synthetic-registry\n        parameters: { registries: [\"docker.io/\"] }\n        message: \"Image '{image}' from disallowed registry\"\n\
         \x20     - kind: K8sBlockPrivileged\n        name: synthetic-block-privileged\n        message: \"Container '{container}' is running in privileged mode\"\n\
         \x20     - kind: K8sRequiredResources\n        name: synthetic-required-resources\n        message: \"Container '{container}' missing resource requests\"\n\
         \x20     - kind: K8sRequiredLabels\n        name: synthetic-required-labels\n        parameters: { labels: [app, version] }\n        message: \"Pod '{name}' missing required label '{label}'\"\n",
    );
    y
}

/// A synthetic profile written to disk with its rendered manifests; removed on drop.
pub struct SyntheticMesh {
    pub dir: PathBuf,
    pub profile_path: PathBuf,
    pub yaml: String,
    pub services: usize,
    pub intents: usize,
    /// Manifest files written.
    pub manifest_files: usize,
}

impl SyntheticMesh {
    /// Writes `profile.yaml` and the rendered manifests into a fresh folder under `parent`.
    pub fn create(parent: &Path, n: usize, k: usize) -> Result<SyntheticMesh, String> {
        let dir = parent.join(format!("synthetic-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let yaml = profile_yaml(n, k);
        let profile_path = dir.join("profile.yaml");
        std::fs::write(&profile_path, &yaml)
            .map_err(|e| format!("{}: {e}", profile_path.display()))?;
        let mut mesh = SyntheticMesh {
            dir,
            profile_path,
            yaml,
            services: n,
            intents: 0,
            manifest_files: 0,
        };
        let profile = crate::profile::parse(&mesh.profile_path, &mesh.yaml)
            .map_err(|e| format!("the profile is refused: {e}"))?;
        mesh.intents = profile.intents.len();
        mesh.manifest_files = crate::render::write(&profile, None, &mesh.dir)?.len();
        Ok(mesh)
    }
}

impl Drop for SyntheticMesh {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_synthetic_profile_is_valid() {
        for (n, k) in [(2, 10), (12, 10), (30, 3)] {
            let text = profile_yaml(n, k);
            let profile = crate::profile::parse(Path::new("synthetic.yaml"), &text)
                .unwrap_or_else(|e| panic!("{n}: {e}\n{text}"));
            assert_eq!(profile.services.len(), n);
            assert_eq!(profile.intents.len(), n * k.min(n - 1));
        }
    }
}

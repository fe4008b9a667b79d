//! The lab target: the whole mesh on one machine, no cluster.
//!
//! Identity (this module, today): a real CA hierarchy per profile — corporate root → mesh
//! intermediate, built from the profile's CA policy by [`crate::pki`] — issuing an X.509-SVID to
//! every identity the profile promises, exactly as Istio's plug-in CA would. The plug-in CA files are
//! written to a private working directory (never into reports: they hold a private key) that is
//! removed when the lab is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::{MeshCa, PresentedChain, Target, TargetError};
use crate::pki::{CaSpec, Pki, Svid};
use crate::profile::{Identity, Profile};
use crate::spiffe::TrustBundle;

pub mod echo;
pub mod envoy;
pub mod mesh;
pub mod mesh_spire;
pub mod sds;
pub mod sidecar;
pub mod spire;

/// One profile's lab CA and the SVIDs it issued, keyed by SPIFFE ID.
pub struct LabPki {
    pub pki: Pki,
    pub svids: HashMap<String, Svid>,
    pub plugin_dir: PathBuf,
}

pub struct Lab {
    now: OffsetDateTime,
    workdir: PathBuf,
    pkis: Mutex<HashMap<String, Arc<LabPki>>>,
    // One cell per profile, so one profile's slow start (SPIRE) never holds up another's.
    meshes: Mutex<HashMap<String, Arc<OnceCell<Arc<mesh::LabMesh>>>>>,
    spires: Mutex<HashMap<String, Arc<OnceCell<SharedSpire>>>>,
}

/// A running SPIRE lab, shared by scenarios: readers observe, a drill takes the write lock.
pub type SharedSpire = Arc<tokio::sync::RwLock<spire::SpireLab>>;

impl Lab {
    /// A lab whose clock is fixed at `now` for the whole run, so every check judges one instant.
    pub fn new(now: OffsetDateTime) -> std::io::Result<Lab> {
        let workdir = std::env::temp_dir().join(format!(
            "meshproof-lab-{}-{}",
            std::process::id(),
            now.unix_timestamp_nanos()
        ));
        create_private_dir(&workdir)?;
        Ok(Lab {
            now,
            workdir,
            pkis: Mutex::new(HashMap::new()),
            meshes: Mutex::new(HashMap::new()),
            spires: Mutex::new(HashMap::new()),
        })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    /// The profile's lab PKI, created on first use.
    pub fn pki(&self, profile: &Profile) -> Result<Arc<LabPki>, TargetError> {
        let mut pkis = self
            .pkis
            .lock()
            .map_err(|_| self.error("lab state poisoned by an earlier failure"))?;
        if let Some(existing) = pkis.get(&profile.name) {
            return Ok(existing.clone());
        }
        let built = Arc::new(self.build(profile)?);
        pkis.insert(profile.name.clone(), built.clone());
        Ok(built)
    }

    /// The profile's live mesh (real Envoy sidecars), started on first use and kept for the run.
    pub async fn mesh(
        &self,
        profile: &Profile,
        configured: &crate::configured::Configured,
    ) -> Result<Arc<mesh::LabMesh>, TargetError> {
        let cell = self.cell(&self.meshes, &profile.name)?;
        cell.get_or_try_init(|| self.start_mesh(profile, configured))
            .await
            .cloned()
    }

    async fn start_mesh(
        &self,
        profile: &Profile,
        configured: &crate::configured::Configured,
    ) -> Result<Arc<mesh::LabMesh>, TargetError> {
        let started = if profile.provider == crate::profile::IdentityProvider::Spire {
            // Identities from the profile's SPIRE lab: every sidecar fed by an agent over SDS.
            let spire = self.spire(profile).await?;
            let spire = spire.read().await;
            mesh_spire::start(profile, configured, &spire)
                .await
                .map_err(|e| self.error(e.to_string()))?
                .mesh
        } else {
            let pki = self.pki(profile)?;
            let bundle = self.trust_bundle(profile)?;
            let dir = self.workdir.join(&profile.name).join("mesh");
            mesh::LabMesh::start(profile, configured, &pki, bundle, &dir)
                .await
                .map_err(|e| self.error(e.to_string()))?
        };
        Ok(Arc::new(started))
    }

    /// The start-once cell of `name` in `cells`.
    fn cell<T>(
        &self,
        cells: &Mutex<HashMap<String, Arc<OnceCell<T>>>>,
        name: &str,
    ) -> Result<Arc<OnceCell<T>>, TargetError> {
        let mut cells = cells
            .lock()
            .map_err(|_| self.error("lab state poisoned by an earlier failure"))?;
        Ok(cells.entry(name.to_owned()).or_default().clone())
    }

    /// The profile's SPIRE server and agents (real processes), started on first use with the
    /// lab's short TTLs and kept for the run. Only for profiles whose identity provider is SPIRE.
    pub async fn spire(&self, profile: &Profile) -> Result<SharedSpire, TargetError> {
        if profile.provider != crate::profile::IdentityProvider::Spire {
            return Err(self.error(format!("profile {} does not use SPIRE", profile.name)));
        }
        let cell = self.cell(&self.spires, &profile.name)?;
        cell.get_or_try_init(|| async {
            let started = spire::SpireLab::start(profile, spire::SpireLabConfig::default())
                .await
                .map_err(|e| self.error(e.to_string()))?;
            Ok(Arc::new(tokio::sync::RwLock::new(started)))
        })
        .await
        .cloned()
    }

    /// Versions of the SPIRE binaries, once a SPIRE lab has started.
    pub fn spire_report(&self) -> Option<spire::SpireLabReport> {
        let spires = self.spires.lock().ok()?;
        let lab = spires
            .values()
            .find_map(|cell| cell.get())?
            .try_read()
            .ok()?;
        Some(lab.report())
    }

    /// Versions of the lab's components that have started so far.
    pub fn envoy_version(&self) -> Option<String> {
        self.meshes
            .lock()
            .ok()?
            .values()
            .find_map(|cell| cell.get())
            .map(|m| m.envoy_version.clone())
    }

    fn build(&self, profile: &Profile) -> Result<LabPki, TargetError> {
        let pki =
            Pki::generate(&ca_spec(profile), self.now).map_err(|e| self.error(e.to_string()))?;
        let mut svids = HashMap::new();
        for identity in profile.identities() {
            let id = identity.spiffe_id.to_string();
            let svid = pki
                .issue_workload_svid(&id, self.now)
                .map_err(|e| self.error(e.to_string()))?;
            svids.insert(id, svid);
        }
        let plugin_dir = self.workdir.join(&profile.name).join("cacerts");
        create_private_dir(&plugin_dir)
            .map_err(|e| self.error(format!("{}: {e}", plugin_dir.display())))?;
        pki.write_plugin_ca(&plugin_dir)
            .map_err(|e| self.error(e.to_string()))?;
        Ok(LabPki {
            pki,
            svids,
            plugin_dir,
        })
    }

    fn error(&self, message: impl Into<String>) -> TargetError {
        TargetError {
            target: "lab".into(),
            message: message.into(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Stop every sidecar (their drop kills and reaps Envoy) before their files go away.
        // A poisoned lock still holds processes to stop.
        self.meshes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        self.spires
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        // For debugging a lab run: keep Envoy's logs and configs (never reports: keys live here).
        if std::env::var_os("MESHPROOF_KEEP_LAB").is_some() {
            eprintln!(
                "lab working directory kept (MESHPROOF_KEEP_LAB): {}",
                self.workdir.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.workdir);
    }
}

/// The PKI shape a profile's CA policy asks for.
pub fn ca_spec(profile: &Profile) -> CaSpec {
    CaSpec {
        trust_domain: profile.trust_domain.as_str().to_owned(),
        organization: profile.ca.organization.clone(),
        root_validity: profile.ca.root_validity,
        intermediate_validity: profile.ca.intermediate_validity,
        workload_ttl: profile.ca.workload_ttl,
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

impl Target for Lab {
    fn name(&self) -> &str {
        "lab"
    }

    fn trust_bundle(&self, profile: &Profile) -> Result<TrustBundle, TargetError> {
        let pki = self.pki(profile)?;
        TrustBundle::from_der(
            profile.trust_domain.clone(),
            [pki.pki.root().der().to_vec()],
        )
        .map_err(|e| self.error(e.to_string()))
    }

    fn workload_certificate(
        &self,
        profile: &Profile,
        identity: &Identity,
    ) -> Result<PresentedChain, TargetError> {
        let pki = self.pki(profile)?;
        let svid = pki
            .svids
            .get(&identity.spiffe_id.to_string())
            .ok_or_else(|| {
                self.error(format!(
                    "no workload certificate was issued to {}",
                    identity.spiffe_id
                ))
            })?;
        Ok(PresentedChain {
            chain: svid.chain_der().into_iter().map(<[u8]>::to_vec).collect(),
            source: format!("lab istio-ca SDS secret for {}", identity.label()),
        })
    }

    fn mesh_ca(&self, profile: &Profile) -> Result<MeshCa, TargetError> {
        let pki = self.pki(profile)?;
        Ok(MeshCa {
            root_der: pki.pki.root().der().to_vec(),
            intermediate_der: pki.pki.intermediate().der().to_vec(),
            plugin_dir: Some(pki.plugin_dir.clone()),
        })
    }
}

/// `meshproof pki init`: the profile's hierarchy on disk — Istio's plug-in CA files in `dir/cacerts`
/// and one SVID per identity in `dir/workloads/<label>/` (Istio's `/etc/certs` layout). Returns a
/// human summary naming serials and fingerprints; never key material.
pub fn init_pki(
    profile: &Profile,
    dir: &Path,
    now: OffsetDateTime,
) -> Result<String, crate::pki::PkiError> {
    use std::fmt::Write as _;
    let pki = Pki::generate(&ca_spec(profile), now)?;
    let plugin = pki.write_plugin_ca(&dir.join("cacerts"))?;
    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "{}: root serial {} sha256 {}",
        profile.name,
        pki.root().serial_hex(),
        pki.root().fingerprint_sha256()
    );
    let _ = writeln!(
        summary,
        "{}: intermediate serial {} sha256 {}",
        profile.name,
        pki.intermediate().serial_hex(),
        pki.intermediate().fingerprint_sha256()
    );
    let _ = writeln!(
        summary,
        "{}: plug-in CA files in {}",
        profile.name,
        plugin.ca_cert.parent().unwrap_or(dir).display()
    );
    let workloads = dir.join("workloads");
    for identity in profile.identities() {
        let svid = pki.issue_workload_svid(&identity.spiffe_id.to_string(), now)?;
        let name = identity.label().replace('/', "_");
        crate::pki::write_svid(&workloads, &name, &svid)?;
        let _ = writeln!(
            summary,
            "{}: {} serial {} until {}",
            profile.name,
            identity.spiffe_id,
            svid.serial_hex(),
            crate::checks::rfc3339(svid.not_after())
        );
    }
    Ok(summary)
}

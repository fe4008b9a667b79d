//! The lab target: the whole mesh on one machine, no cluster.
//!
//! Identity (istio-ca profiles): a real CA hierarchy per profile — corporate root → mesh
//! intermediate, built from the profile's CA policy by [`crate::pki`] — issuing an X.509-SVID to
//! every identity the profile promises, exactly as Istio's plug-in CA would. The plug-in CA files are
//! written to a private working directory (never into reports: they hold a private key) that is
//! removed when the lab is dropped.
//!
//! Time: the SVIDs issued when the PKI is built carry the profile's TTL at the lab's fixed clock
//! (what static checks and drills use). The run's live mesh ([`Lab::mesh`]) serves SVIDs of the
//! profile's TTL scaled down by the lab's [`TtlScale`] (`MESHPROOF_LAB_TTL_SCALE`), issued at the
//! real clock and renewed at half-life by a [`renewal::Renewal`] task that stops with the lab.
//! [`Lab::ttl_report`] says which TTLs were used, for reports.
//!
//! Ingress ([`Lab::ingress`]): for a profile with an ingress service, a real Envoy gateway that
//! terminates TLS for the profile's external host ([`external_host`]) with a certificate from
//! the lab's public CA and calls the mesh with the ingress workload's own SVID
//! ([`ingress::IngressGateway`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use super::{MeshCa, PresentedChain, Target, TargetError};
use crate::pki::{CaSpec, Pki, PublicCa, TtlScale};
use crate::profile::{Identity, Profile};
use crate::spiffe::TrustBundle;

pub mod echo;
pub mod envoy;
pub mod external;
pub mod ingress;
pub mod issued;
pub mod mesh;
pub mod mesh_spire;
pub mod renewal;
pub mod sds;
pub mod sidecar;
pub mod spire;

/// One profile's lab CA and the SVIDs it issued, by SPIFFE ID.
pub struct LabPki {
    pub pki: Pki,
    pub svids: issued::IssuedSvids,
    pub plugin_dir: PathBuf,
}

pub struct Lab {
    now: OffsetDateTime,
    workdir: PathBuf,
    ttl_scale: TtlScale,
    pkis: Mutex<HashMap<String, Arc<LabPki>>>,
    /// One cell per profile, so one profile's slow start (SPIRE) holds up no other profile.
    meshes: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<mesh::LabMesh>>>>>,
    renewals: Mutex<HashMap<String, Arc<renewal::Renewal>>>,
    ingresses: tokio::sync::Mutex<HashMap<String, Arc<ingress::IngressGateway>>>,
    public_ca: Mutex<Option<Arc<PublicCa>>>,
    spires: tokio::sync::Mutex<HashMap<String, SharedSpire>>,
}

/// The external host name a profile's ingress gateway serves in the lab. Neither runbook names
/// one, so the lab uses `<profile>.example`, a name reserved for examples (RFC 2606) that never
/// resolves outside the lab.
pub fn external_host(profile: &Profile) -> String {
    format!("{}.example", profile.name)
}

/// How long the public CA's root, and the host certificates it issues, are valid in the lab.
const PUBLIC_ROOT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);
const HOST_CERT_VALIDITY: Duration = Duration::from_secs(7 * 86_400);

/// A running SPIRE lab, shared by scenarios: readers observe, a drill takes the write lock.
pub type SharedSpire = Arc<tokio::sync::RwLock<spire::SpireLab>>;

impl Lab {
    /// A lab whose clock is fixed at `now` for the whole run, so every check judges one instant,
    /// with the TTL scale from the environment ([`TtlScale::from_env`]; a bad value is an error).
    pub fn new(now: OffsetDateTime) -> std::io::Result<Lab> {
        let scale = TtlScale::from_env().map_err(std::io::Error::other)?;
        Lab::with_ttl_scale(now, scale)
    }

    /// [`Lab::new`] with a given TTL scale.
    pub fn with_ttl_scale(now: OffsetDateTime, ttl_scale: TtlScale) -> std::io::Result<Lab> {
        let workdir = std::env::temp_dir().join(format!(
            "meshproof-lab-{}-{}",
            std::process::id(),
            now.unix_timestamp_nanos()
        ));
        create_private_dir(&workdir)?;
        Ok(Lab {
            now,
            workdir,
            ttl_scale,
            pkis: Mutex::new(HashMap::new()),
            meshes: Mutex::new(HashMap::new()),
            renewals: Mutex::new(HashMap::new()),
            ingresses: tokio::sync::Mutex::new(HashMap::new()),
            public_ca: Mutex::new(None),
            spires: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    pub fn now(&self) -> OffsetDateTime {
        self.now
    }

    pub fn ttl_scale(&self) -> TtlScale {
        self.ttl_scale
    }

    /// For reports: the TTL scale and what it made of each lab-CA mesh's workload TTL, once such
    /// a mesh has started (`None` before: no scaled certificate was issued).
    pub fn ttl_report(&self) -> Option<String> {
        let renewals = self.renewals.lock().ok()?;
        let mut profiles: Vec<&String> = renewals.keys().collect();
        profiles.sort();
        let pkis = self.pkis.lock().ok()?;
        let lines: Vec<String> = profiles
            .into_iter()
            .filter_map(|name| {
                let ttl = pkis.get(name)?.pki.spec().workload_ttl;
                Some(format!("{name}: {}", self.ttl_scale.describe(ttl)))
            })
            .collect();
        (!lines.is_empty()).then(|| lines.join("; "))
    }

    /// The renewal task of the profile's live mesh, once it runs (lab-CA profiles only: SPIRE
    /// renews its own SVIDs).
    pub fn renewal(&self, profile: &Profile) -> Option<Arc<renewal::Renewal>> {
        self.renewals.lock().ok()?.get(&profile.name).cloned()
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
        let cell = self
            .meshes
            .lock()
            .map_err(|_| self.error("lab state poisoned by an earlier failure"))?
            .entry(profile.name.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.start_mesh(profile, configured))
            .await
            .cloned()
    }

    async fn start_mesh(
        &self,
        profile: &Profile,
        configured: &crate::configured::Configured,
    ) -> Result<Arc<mesh::LabMesh>, TargetError> {
        if profile.provider != crate::profile::IdentityProvider::Spire {
            return self.renewing_mesh(profile, configured).await;
        }
        // Identities from the profile's SPIRE lab: every sidecar fed by an agent over SDS.
        let spire = self.spire(profile).await?;
        let spire = spire.read().await;
        let started = mesh_spire::start(profile, configured, &spire)
            .await
            .map_err(|e| self.error(e.to_string()))?
            .mesh;
        started.wire_apps();
        Ok(Arc::new(started))
    }

    /// A lab-CA mesh whose sidecars hold SVIDs of the scaled TTL, issued now and renewed at
    /// half-life from then on.
    async fn renewing_mesh(
        &self,
        profile: &Profile,
        configured: &crate::configured::Configured,
    ) -> Result<Arc<mesh::LabMesh>, TargetError> {
        let pki = self.pki(profile)?;
        let bundle = self.trust_bundle(profile)?;
        let ttl = self.ttl_scale.lab_ttl(profile.ca.workload_ttl);
        let mut issued = Vec::new();
        for identity in profile.lab_identities() {
            let issued_at = OffsetDateTime::now_utc();
            let svid = pki
                .pki
                .issue_svid(&identity.spiffe_id.to_string(), ttl, issued_at)
                .map_err(|e| self.error(e.to_string()))?;
            pki.svids.record(svid.clone()).map_err(|e| self.error(e))?;
            issued.push(renewal::Issued {
                label: identity.label(),
                svid,
                issued: tokio::time::Instant::now(),
                issued_at,
            });
        }
        let credentials = |identity: &Identity| {
            issued
                .iter()
                .find(|i| i.label == identity.label())
                .map(|i| sidecar::Credentials::from_svid(&i.svid))
                .ok_or_else(|| mesh::MeshError::Setup(format!("no SVID for {}", identity.label())))
        };
        let dir = self.workdir.join(&profile.name).join("mesh");
        let started = mesh::LabMesh::start_with(profile, configured, credentials, bundle, &dir)
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let started = Arc::new(started);
        let renewal = renewal::Renewal::start(&started, pki, ttl, issued);
        self.renewals
            .lock()
            .map_err(|_| self.error("lab state poisoned by an earlier failure"))?
            .insert(profile.name.clone(), Arc::new(renewal));
        Ok(started)
    }

    /// The profile's ingress gateway (a real Envoy, see [`ingress`]), started on first use in
    /// front of the profile's live mesh and kept for the run. Its one upstream is the service the
    /// profile allows the ingress to call; its own policy is the AuthorizationPolicies that
    /// select the ingress workload in the configured manifests.
    pub async fn ingress(
        &self,
        profile: &Profile,
        configured: &crate::configured::Configured,
    ) -> Result<Arc<ingress::IngressGateway>, TargetError> {
        let mut ingresses = self.ingresses.lock().await;
        if let Some(existing) = ingresses.get(&profile.name) {
            return Ok(existing.clone());
        }
        let mesh = self.mesh(profile, configured).await?;
        let host = external_host(profile);
        let spec = ingress::GatewaySpec::for_profile(profile, configured, &mesh, &host)
            .map_err(|e| self.error(e.to_string()))?;
        let server_cert = self
            .public_ca()?
            .issue_server_cert(&[&host], HOST_CERT_VALIDITY, OffsetDateTime::now_utc())
            .map_err(|e| self.error(e.to_string()))?;
        let started = if profile.provider == crate::profile::IdentityProvider::Spire {
            self.spire_gateway(profile, spec, &server_cert).await?
        } else {
            self.lab_ca_gateway(profile, spec, &server_cert).await?
        };
        let started = Arc::new(started);
        ingresses.insert(profile.name.clone(), started.clone());
        Ok(started)
    }

    /// A gateway whose SVID comes from the profile's SPIRE agent, Envoy running as the ingress
    /// workload's uid (the one SPIRE's `unix` attestor gives the ingress identity to).
    async fn spire_gateway(
        &self,
        profile: &Profile,
        spec: ingress::GatewaySpec,
        server_cert: &crate::pki::ServerCert,
    ) -> Result<ingress::IngressGateway, TargetError> {
        let fail = |e: &dyn std::fmt::Display| self.error(e.to_string());
        let spire = self.spire(profile).await?;
        let spire = spire.read().await;
        let workload = spire
            .workload(&spec.service)
            .ok_or_else(|| fail(&format!("{} has no SPIRE registration entry", spec.service)))?;
        let caller = &workload.caller;
        let agent = sidecar::SpireAgentSds {
            socket: spire
                .agent_socket(caller.agent)
                .ok_or_else(|| fail(&format!("no SPIRE agent {}", caller.agent)))?
                .to_owned(),
            spiffe_id: workload.spiffe_id.clone(),
            trust_domain: spire.trust_domain().clone(),
        };
        let located = envoy::EnvoyBinary::locate().map_err(|e| fail(&e))?;
        // The located binary may sit under a home directory other uids cannot enter.
        let exposed = spire.expose_binary(located.path()).map_err(|e| fail(&e))?;
        let bin = envoy::EnvoyBinary::at(exposed).map_err(|e| fail(&e))?;
        let home = spire.caller_dir(caller).map_err(|e| fail(&e))?;
        let identity = ingress::GatewayIdentity::Spire {
            agent: &agent,
            run_as: envoy::RunAs {
                uid: caller.uid,
                gid: caller.gid,
            },
        };
        let dir = ingress::fresh_dir(&home, "ingress-gateway");
        ingress::IngressGateway::start(&bin, spec, server_cert, identity, &dir)
            .await
            .map_err(|e| fail(&e))
    }

    /// A gateway holding the ingress identity's SVID from the lab CA (its initial one, of the
    /// profile's TTL: the renewal task renews the mesh's sidecars, not the gateway).
    async fn lab_ca_gateway(
        &self,
        profile: &Profile,
        spec: ingress::GatewaySpec,
        server_cert: &crate::pki::ServerCert,
    ) -> Result<ingress::IngressGateway, TargetError> {
        let pki = self.pki(profile)?;
        let svid = pki
            .svids
            .initial(&spec.spiffe_id.to_string())
            .ok_or_else(|| self.error(format!("no SVID for {}", spec.spiffe_id)))?;
        let credentials = sidecar::Credentials::from_svid(svid);
        let bin = envoy::EnvoyBinary::locate().map_err(|e| self.error(e.to_string()))?;
        let dir = ingress::fresh_dir(&self.workdir.join(&profile.name), "ingress-gateway");
        let identity = ingress::GatewayIdentity::File(&credentials);
        ingress::IngressGateway::start(&bin, spec, server_cert, identity, &dir)
            .await
            .map_err(|e| self.error(e.to_string()))
    }

    /// The lab's public CA (see [`crate::pki::PublicCa`]), created on first use.
    pub fn public_ca(&self) -> Result<Arc<PublicCa>, TargetError> {
        let mut slot = self
            .public_ca
            .lock()
            .map_err(|_| self.error("lab state poisoned by an earlier failure"))?;
        if let Some(ca) = slot.as_ref() {
            return Ok(ca.clone());
        }
        let ca = Arc::new(
            PublicCa::generate(
                "meshproof lab",
                PUBLIC_ROOT_VALIDITY,
                OffsetDateTime::now_utc(),
            )
            .map_err(|e| self.error(e.to_string()))?,
        );
        *slot = Some(ca.clone());
        Ok(ca)
    }

    /// The profile's SPIRE server and agents (real processes), started on first use with the
    /// lab's short TTLs and kept for the run. Only for profiles whose identity provider is SPIRE.
    pub async fn spire(&self, profile: &Profile) -> Result<SharedSpire, TargetError> {
        let mut spires = self.spires.lock().await;
        if let Some(existing) = spires.get(&profile.name) {
            return Ok(existing.clone());
        }
        if profile.provider != crate::profile::IdentityProvider::Spire {
            return Err(self.error(format!("profile {} does not use SPIRE", profile.name)));
        }
        let started = spire::SpireLab::start(profile, spire::SpireLabConfig::default())
            .await
            .map_err(|e| self.error(e.to_string()))?;
        let shared = Arc::new(tokio::sync::RwLock::new(started));
        spires.insert(profile.name.clone(), shared.clone());
        Ok(shared)
    }

    /// Versions of the SPIRE binaries, once a SPIRE lab has started.
    pub fn spire_report(&self) -> Option<spire::SpireLabReport> {
        let spires = self.spires.try_lock().ok()?;
        let lab = spires.values().next()?.try_read().ok()?;
        Some(lab.report())
    }

    /// Versions of the lab's components that have started so far.
    pub fn envoy_version(&self) -> Option<String> {
        self.meshes
            .lock()
            .ok()?
            .values()
            .find_map(|cell| cell.get().map(|m| m.envoy_version.clone()))
    }

    fn build(&self, profile: &Profile) -> Result<LabPki, TargetError> {
        let pki =
            Pki::generate(&ca_spec(profile), self.now).map_err(|e| self.error(e.to_string()))?;
        let svids = profile
            .identities()
            .iter()
            .map(|identity| pki.issue_workload_svid(&identity.spiffe_id.to_string(), self.now))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.error(e.to_string()))?;
        let svids = issued::IssuedSvids::new(svids);
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
        // Stop renewing and the gateways, then every sidecar (their drop kills and reaps Envoy),
        // before their files go away.
        if let Ok(mut renewals) = self.renewals.lock() {
            for renewal in renewals.values() {
                renewal.stop();
            }
            renewals.clear();
        }
        if let Ok(mut ingresses) = self.ingresses.try_lock() {
            ingresses.clear();
        }
        if let Ok(mut meshes) = self.meshes.lock() {
            meshes.clear();
        }
        if let Ok(mut spires) = self.spires.try_lock() {
            spires.clear();
        }
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
        // What the CA issued at the lab's fixed clock: the instant every static check judges.
        let svid = pki
            .svids
            .initial(&identity.spiffe_id.to_string())
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

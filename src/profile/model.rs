//! The intended trust model: what a runbook promises, validated and typed.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::schema::IdSchema;
use crate::spiffe::{SpiffeId, TrustDomain};

/// A validated profile. Every name it holds refers to something that exists in it.
#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub name: String,
    pub runbook: Option<String>,
    /// The file it was loaded from, for error messages and evidence.
    pub source: PathBuf,
    pub trust_domain: TrustDomain,
    pub provider: IdentityProvider,
    pub schema: IdSchema,
    pub environments: Vec<String>,
    pub lab_environment: Option<String>,
    pub control_plane_namespace: String,
    pub mtls: MtlsMode,
    pub services: Vec<Service>,
    pub intents: Vec<Intent>,
    pub egress: Option<Egress>,
    pub ca: CaPolicy,
    pub spire: Option<Spire>,
    pub admission: Option<Admission>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityProvider {
    /// Istio's CA with a plug-in intermediate (`cacerts`), as TradePulse runs it.
    IstioCa,
    /// SPIRE server and agents, as SomaAgentHub runs it.
    Spire,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MtlsMode {
    Strict,
    Permissive,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Workload,
    Ingress,
    /// A test workload from the runbook (e.g. SomaAgentHub's `test-service`).
    Probe,
}

#[derive(Clone, Debug, Serialize)]
pub struct Service {
    pub name: String,
    pub namespace: String,
    pub service_account: String,
    pub role: Role,
    pub repository_scope: Vec<String>,
    pub workloads: Vec<String>,
    pub ports: Vec<Port>,
    pub endpoints: Vec<Endpoint>,
    /// Set when the profile spells the ID out; it has been checked against the schema.
    pub spiffe_id: Option<SpiffeId>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Port {
    pub name: String,
    pub port: u16,
}

#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    pub name: String,
    /// Istio-style: exact (`/ready`), prefix (`/quotes/*`) or suffix (`*/health`).
    pub path: String,
    pub methods: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

/// A caller → callee promise from the runbook's table. No endpoints means every endpoint.
#[derive(Clone, Debug, Serialize)]
pub struct Intent {
    pub decision: Decision,
    pub from: String,
    pub to: String,
    pub endpoints: Vec<String>,
    pub reason: String,
    /// Line in the profile, so findings can cite the promise they test.
    pub line: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct Egress {
    pub gateway: String,
    pub deny_direct: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaPolicy {
    pub organization: String,
    pub root_validity: Duration,
    pub intermediate_validity: Duration,
    pub rotate_every: Duration,
    pub overlap: Duration,
    pub workload_ttl: Duration,
    pub plugin_secret: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Spire {
    pub cluster: String,
    pub node_attestor: String,
    pub entries: Vec<SpireEntry>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SpireEntry {
    pub service: String,
    pub spiffe_id: SpiffeId,
    pub selectors: Vec<String>,
    pub ttl: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct Admission {
    pub namespaces: Vec<String>,
    pub policies: Vec<AdmissionPolicy>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AdmissionPolicy {
    pub kind: String,
    pub name: String,
    pub parameters: serde_json::Value,
    /// The runbook's rejection text, with `{placeholders}` for the offending object's fields.
    pub message: String,
}

/// One workload identity the mesh must issue: a service family, optionally a workload qualifier,
/// in one environment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub service: String,
    pub workload: Option<String>,
    pub environment: Option<String>,
    pub spiffe_id: SpiffeId,
}

impl Identity {
    /// `strategy/optimizer@prod`-style label for reports.
    pub fn label(&self) -> String {
        let mut label = self.service.clone();
        if let Some(workload) = &self.workload {
            label.push('/');
            label.push_str(workload);
        }
        if let Some(environment) = &self.environment {
            label.push('@');
            label.push_str(environment);
        }
        label
    }
}

impl Profile {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Every identity the profile promises, across all environments, in profile order.
    pub fn identities(&self) -> Vec<Identity> {
        let environments: Vec<Option<&str>> = if self.schema.uses_environment() {
            self.environments.iter().map(|e| Some(e.as_str())).collect()
        } else {
            vec![None]
        };
        let mut out = Vec::new();
        for environment in environments {
            for service in &self.services {
                let qualifiers =
                    std::iter::once(None).chain(service.workloads.iter().map(|w| Some(w.as_str())));
                for workload in qualifiers {
                    // Validation proved every combination renders; skip defensively rather than panic.
                    if let Ok(spiffe_id) = self.schema.render(service, workload, environment) {
                        out.push(Identity {
                            service: service.name.clone(),
                            workload: workload.map(str::to_owned),
                            environment: environment.map(str::to_owned),
                            spiffe_id,
                        });
                    }
                }
            }
        }
        out
    }

    /// The identities that take part in a lab run: the lab environment only.
    pub fn lab_identities(&self) -> Vec<Identity> {
        let lab = self.lab_environment.as_deref();
        self.identities()
            .into_iter()
            .filter(|i| i.environment.is_none() || i.environment.as_deref() == lab)
            .collect()
    }

    pub fn identity_of(&self, service: &str) -> Option<SpiffeId> {
        self.lab_identity(self.service(service)?)
    }

    /// A service's identity in the lab environment.
    pub fn lab_identity(&self, service: &Service) -> Option<SpiffeId> {
        self.schema
            .render(service, None, self.lab_environment.as_deref())
            .ok()
    }
}

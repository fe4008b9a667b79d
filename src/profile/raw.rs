//! The profile file exactly as written: strict (unknown keys are errors) and located (spans), so
//! validation can point at the line that is wrong. Nothing outside `profile` sees these types.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::duration::HumanDuration;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    pub api_version: S<String>,
    pub kind: S<String>,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Metadata {
    pub name: S<String>,
    #[serde(default)]
    pub runbook: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    pub trust_domain: S<String>,
    pub identity: Identity,
    #[serde(default)]
    pub environments: Vec<S<String>>,
    #[serde(default)]
    pub lab_environment: Option<S<String>>,
    pub control_plane: ControlPlane,
    pub mtls: S<String>,
    pub services: Vec<Service>,
    pub intents: Intents,
    pub ca: Ca,
    #[serde(default)]
    pub spire: Option<Spire>,
    #[serde(default)]
    pub admission: Option<Admission>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Identity {
    pub provider: S<String>,
    pub schema: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlane {
    pub namespace: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Service {
    pub name: S<String>,
    pub namespace: S<String>,
    pub service_account: S<String>,
    #[serde(default)]
    pub spiffe_id: Option<S<String>>,
    #[serde(default)]
    pub role: Option<S<String>>,
    #[serde(default)]
    pub repository_scope: Vec<String>,
    #[serde(default)]
    pub workloads: Vec<S<String>>,
    pub ports: Vec<Port>,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Port {
    pub name: S<String>,
    pub port: S<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    pub name: S<String>,
    pub path: S<String>,
    pub methods: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Intents {
    #[serde(default)]
    pub allow: Vec<Intent>,
    #[serde(default)]
    pub deny: Vec<Intent>,
    #[serde(default)]
    pub egress: Option<Egress>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Intent {
    pub from: S<String>,
    pub to: S<String>,
    #[serde(default)]
    pub endpoints: Vec<S<String>>,
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Egress {
    pub gateway: String,
    #[serde(default)]
    pub deny_direct: Vec<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ca {
    pub root: CaRoot,
    pub intermediate: CaIntermediate,
    pub workload: CaWorkload,
    #[serde(default)]
    pub plugin_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaRoot {
    pub organization: S<String>,
    pub validity: S<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaIntermediate {
    pub validity: S<HumanDuration>,
    pub rotate_every: S<HumanDuration>,
    pub overlap: S<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaWorkload {
    pub ttl: S<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spire {
    pub cluster: String,
    pub node_attestor: S<String>,
    pub entries: Vec<SpireEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SpireEntry {
    pub service: S<String>,
    pub selectors: Vec<S<String>>,
    pub ttl: S<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Admission {
    pub namespaces: Vec<S<String>>,
    pub policies: Vec<AdmissionPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdmissionPolicy {
    pub kind: S<String>,
    pub name: S<String>,
    #[serde(default)]
    pub parameters: Option<serde_json::Value>,
    pub message: S<String>,
}

//! The configured Istio objects, as read from manifests: typed, validated the way Istio's own
//! admission webhook validates them, and located (file and line) for evidence.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// Mesh-wide settings that change how policies are interpreted (Istio's `MeshConfig`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MeshConfig {
    /// Policies here apply mesh-wide (`meshConfig.rootNamespace`). Default `istio-system`.
    pub root_namespace: String,
    /// The mesh trust domain (`meshConfig.trustDomain`). Default `cluster.local`.
    pub trust_domain: String,
    /// `meshConfig.trustDomainAliases`: principals in these trust domains are treated as ours.
    pub trust_domain_aliases: Vec<String>,
    /// Namespace of objects whose manifest has no `metadata.namespace` (what `kubectl apply`
    /// without `-n` does). Default `default`.
    pub default_namespace: String,
    /// Kubernetes cluster domain used to expand short DestinationRule hosts. Default
    /// `cluster.local`.
    pub domain_suffix: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            default_namespace: "default".into(),
            domain_suffix: "cluster.local".into(),
        }
    }
}

/// Where an object came from and who it is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ObjectMeta {
    pub kind: Kind,
    pub name: String,
    pub namespace: String,
    pub file: PathBuf,
    /// Line of the document's first key.
    pub line: u32,
    /// `metadata.creationTimestamp`, if the manifest carries one (exported objects do).
    pub creation_timestamp: Option<String>,
}

impl ObjectMeta {
    /// `AuthorizationPolicy foo/httpbin`.
    pub fn display_name(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The object kinds this module understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Kind {
    AuthorizationPolicy,
    PeerAuthentication,
    DestinationRule,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::AuthorizationPolicy => "AuthorizationPolicy",
            Kind::PeerAuthentication => "PeerAuthentication",
            Kind::DestinationRule => "DestinationRule",
        })
    }
}

/// A configured field that meshproof reads but does not (fully) model. Never silently ignored:
/// every one is listed, with what evaluation does instead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unsupported {
    pub file: PathBuf,
    pub line: u32,
    /// `AuthorizationPolicy foo/httpbin`.
    pub object: String,
    /// Path of the field, e.g. `spec.rules[0].from[0].source.requestPrincipals`.
    pub field: String,
    /// What is not modelled and how evaluation treats it.
    pub why: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: {}: {} is not supported: {}",
            self.file.display(),
            self.line,
            self.object,
            self.field,
            self.why
        )
    }
}

/// A document of another kind, skipped but counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub file: PathBuf,
    pub line: u32,
    pub api_version: String,
    pub kind: String,
}

/// The policy (and rule) that decided something, for "decided by X at file:line".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub file: PathBuf,
    /// Line of the object.
    pub line: u32,
    /// Index of the deciding rule (AuthorizationPolicy only).
    pub rule: Option<usize>,
    /// Line of the deciding rule, or of the deciding `portLevelMtls` entry.
    pub detail_line: Option<u32>,
}

impl PolicyRef {
    pub(crate) fn of(meta: &ObjectMeta) -> PolicyRef {
        PolicyRef {
            kind: meta.kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            file: meta.file.clone(),
            line: meta.line,
            rule: None,
            detail_line: None,
        }
    }
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)?;
        if let Some(rule) = self.rule {
            write!(f, " rule[{rule}]")?;
        }
        write!(
            f,
            " at {}:{}",
            self.file.display(),
            self.detail_line.unwrap_or(self.line)
        )
    }
}

/// `selector.matchLabels` (an empty map selects every workload).
pub type Labels = BTreeMap<String, String>;

/// An `AuthorizationPolicy` (security.istio.io v1 / v1beta1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuthorizationPolicy {
    pub meta: ObjectMeta,
    pub action: Action,
    /// `spec.selector.matchLabels`; `None` = the whole namespace (or mesh, in the root namespace).
    pub selector: Option<Labels>,
    /// `spec.targetRef` / `spec.targetRefs` as `group/kind/name`. Non-empty means the policy binds
    /// to a Gateway, waypoint or Service and Istio never applies it to a sidecar workload.
    pub target_refs: Vec<String>,
    /// `spec.provider.name` (CUSTOM only).
    pub provider: Option<String>,
    pub rules: Vec<Rule>,
    /// `istio.io/dry-run: "true"`: evaluated into shadow rules only, never enforced.
    pub dry_run: bool,
}

/// `spec.action`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Action {
    Allow,
    Deny,
    Audit,
    Custom,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Allow => "ALLOW",
            Action::Deny => "DENY",
            Action::Audit => "AUDIT",
            Action::Custom => "CUSTOM",
        })
    }
}

/// One `spec.rules[i]`: `from` entries OR'ed, `to` entries OR'ed, `when` conditions AND'ed, and
/// the three AND'ed together; an absent part matches everything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub line: u32,
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
}

/// A list of values as written, each with its line.
pub type Values = Vec<Value>;

/// One configured string value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Value {
    pub text: String,
    pub line: u32,
}

/// `rules[].from[].source`: fields AND'ed, values within a field OR'ed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Source {
    pub line: u32,
    pub principals: Values,
    pub not_principals: Values,
    pub request_principals: Values,
    pub not_request_principals: Values,
    pub namespaces: Values,
    pub not_namespaces: Values,
    pub service_accounts: Values,
    pub not_service_accounts: Values,
    pub ip_blocks: Values,
    pub not_ip_blocks: Values,
    pub remote_ip_blocks: Values,
    pub not_remote_ip_blocks: Values,
}

/// `rules[].to[].operation`: fields AND'ed, values within a field OR'ed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub line: u32,
    pub hosts: Values,
    pub not_hosts: Values,
    pub ports: Values,
    pub not_ports: Values,
    pub methods: Values,
    pub not_methods: Values,
    pub paths: Values,
    pub not_paths: Values,
}

/// `rules[].when[]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Condition {
    pub line: u32,
    pub key: String,
    pub values: Values,
    pub not_values: Values,
}

/// A `PeerAuthentication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerAuthentication {
    pub meta: ObjectMeta,
    /// `None` or empty = namespace-wide (mesh-wide in the root namespace).
    pub selector: Option<Labels>,
    pub mode: MtlsMode,
    pub port_level: BTreeMap<u16, PortMtls>,
}

/// One `portLevelMtls` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct PortMtls {
    pub mode: MtlsMode,
    pub line: u32,
}

/// `mtls.mode`. [`super::mtls_mode`] never returns `Unset`: it resolves inheritance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum MtlsMode {
    Unset,
    Disable,
    Permissive,
    Strict,
}

impl fmt::Display for MtlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MtlsMode::Unset => "UNSET",
            MtlsMode::Disable => "DISABLE",
            MtlsMode::Permissive => "PERMISSIVE",
            MtlsMode::Strict => "STRICT",
        })
    }
}

/// A `DestinationRule` (networking.istio.io v1 / v1beta1 / v1alpha3), reduced to what decides
/// the client-side TLS mode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DestinationRule {
    pub meta: ObjectMeta,
    /// `spec.host` as written.
    pub host: String,
    /// `spec.exportTo` (empty = exported everywhere, Istio's default).
    pub export_to: Vec<String>,
    /// Whether `spec.trafficPolicy` is present at all (the oldest rule with one wins a merge).
    pub has_traffic_policy: bool,
    /// `spec.trafficPolicy.tls.mode`.
    pub tls_mode: Option<ClientTlsMode>,
    /// Line of `tls.mode` (or of the object).
    pub tls_line: u32,
    /// `spec.workloadSelector` present: applies to selected client workloads only (not modelled).
    pub has_workload_selector: bool,
}

/// `trafficPolicy.tls.mode`: what the client sidecar originates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ClientTlsMode {
    Disable,
    Simple,
    Mutual,
    IstioMutual,
}

impl fmt::Display for ClientTlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientTlsMode::Disable => "DISABLE",
            ClientTlsMode::Simple => "SIMPLE",
            ClientTlsMode::Mutual => "MUTUAL",
            ClientTlsMode::IstioMutual => "ISTIO_MUTUAL",
        })
    }
}

/// Everything read from a set of manifests.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MeshPolicies {
    pub mesh: MeshConfig,
    /// In Istio's order: oldest `creationTimestamp` first, then name, then namespace (objects
    /// without a timestamp count as created together, as with one `kubectl apply`).
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub destination_rules: Vec<DestinationRule>,
    /// Fields read but not (fully) modelled, each with how evaluation treats it.
    pub unsupported: Vec<Unsupported>,
    /// Documents of other kinds.
    pub skipped: Vec<Skipped>,
}

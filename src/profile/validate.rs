//! Raw profile → validated [`Profile`]. Collects every problem in one pass, each with its line and
//! the form that was expected, rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::model::*;
use super::raw;
use super::schema::{IdSchema, SCHEMA_FORM, Var};
use crate::duration;
use crate::error::SourceError;
use crate::spiffe::{SpiffeId, TrustDomain};

pub const API_VERSION: &str = "meshproof.dev/v1alpha1";
const HTTP_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
];
const DNS_LABEL: &str =
    "a DNS-1123 label: lowercase letters, digits and '-', at most 63 characters";

struct Check<'a> {
    file: &'a Path,
    errors: Vec<SourceError>,
}

impl Check<'_> {
    fn at<T>(
        &mut self,
        span: &Spanned<T>,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        let loc = span.referenced;
        self.errors.push(
            SourceError::new(self.file, loc.line() as u32, loc.column() as u32, message)
                .expected(expected),
        );
    }

    fn dns_label(&mut self, what: &str, value: &Spanned<String>) {
        if !is_dns_label(&value.value) {
            self.at(
                value,
                format!("{what} \"{}\" is not a valid name", value.value),
                DNS_LABEL,
            );
        }
    }
}

pub fn validate(file: &Path, raw: raw::File) -> Result<Profile, Vec<SourceError>> {
    let mut c = Check {
        file,
        errors: Vec::new(),
    };
    if raw.api_version.value != API_VERSION {
        c.at(
            &raw.api_version,
            format!("apiVersion \"{}\" is not supported", raw.api_version.value),
            API_VERSION,
        );
    }
    if raw.kind.value != "Profile" {
        c.at(
            &raw.kind,
            format!("kind \"{}\" is not a profile", raw.kind.value),
            "Profile",
        );
    }
    c.dns_label("metadata.name", &raw.metadata.name);
    let spec = raw.spec;

    let trust_domain = match TrustDomain::parse(&spec.trust_domain.value) {
        Ok(td) => Some(td),
        Err(e) => {
            c.at(
                &spec.trust_domain,
                format!("trustDomain: {e}"),
                "a SPIFFE trust domain such as example.org",
            );
            None
        }
    };
    let provider = match spec.identity.provider.value.as_str() {
        "istio-ca" => IdentityProvider::IstioCa,
        "spire" => IdentityProvider::Spire,
        other => {
            c.at(
                &spec.identity.provider,
                format!("identity provider \"{other}\" is unknown"),
                "istio-ca or spire",
            );
            IdentityProvider::IstioCa
        }
    };
    let schema = trust_domain.as_ref().and_then(|td| {
        match IdSchema::parse(&spec.identity.schema.value, td) {
            Ok(schema) => Some(schema),
            Err(e) => {
                c.at(&spec.identity.schema, e, SCHEMA_FORM);
                None
            }
        }
    });
    let mtls = match spec.mtls.value.as_str() {
        "STRICT" => MtlsMode::Strict,
        "PERMISSIVE" => MtlsMode::Permissive,
        other => {
            c.at(
                &spec.mtls,
                format!("mtls \"{other}\" is not a mode"),
                "STRICT or PERMISSIVE",
            );
            MtlsMode::Strict
        }
    };

    let environments = environments(&mut c, &spec.environments, schema.as_ref());
    let lab_environment = spec.lab_environment.as_ref().map(|lab| {
        if !environments.contains(&lab.value) {
            c.at(
                lab,
                format!(
                    "labEnvironment \"{}\" is not one of the environments",
                    lab.value
                ),
                environments.join(", "),
            );
        }
        lab.value.clone()
    });
    if lab_environment.is_none() && schema.as_ref().is_some_and(IdSchema::uses_environment) {
        c.at(
            &spec.identity.schema,
            "the schema has {environment} but no labEnvironment is set",
            "labEnvironment: one of the environments",
        );
    }
    c.dns_label("controlPlane.namespace", &spec.control_plane.namespace);

    let services = services(&mut c, &spec.services, schema.as_ref());
    let by_name = ServicesByName::new(&services);
    let intents = intents(&mut c, &spec.intents, &by_name);
    let egress = spec.intents.egress.as_ref().map(|egress| Egress {
        gateway: egress.gateway.clone(),
        deny_direct: egress
            .deny_direct
            .iter()
            .filter(|name| by_name.known(&mut c, name, "egress.denyDirect").is_some())
            .map(|name| name.value.clone())
            .collect(),
    });
    let ca = ca_policy(&mut c, &spec.ca);
    let spire = spec
        .spire
        .as_ref()
        .map(|spire| spire_config(&mut c, spire, &by_name, schema.as_ref(), &ca, provider));
    if provider == IdentityProvider::Spire && spire.is_none() {
        c.at(
            &spec.identity.provider,
            "provider spire needs a spire: section with registration entries",
            "spec.spire.entries",
        );
    }
    let admission = spec.admission.as_ref().map(|a| admission(&mut c, a));

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    let (Some(trust_domain), Some(schema)) = (trust_domain, schema) else {
        return Err(c.errors);
    };
    let profile = Profile {
        name: raw.metadata.name.value,
        runbook: raw.metadata.runbook,
        source: file.to_path_buf(),
        trust_domain,
        provider,
        schema,
        environments,
        lab_environment,
        control_plane_namespace: spec.control_plane.namespace.value,
        mtls,
        services,
        intents,
        egress,
        ca,
        spire,
        admission,
    };
    identity_collisions(file, &profile, &spec.services)?;
    Ok(profile)
}

fn environments(c: &mut Check, raw: &[Spanned<String>], schema: Option<&IdSchema>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for env in raw {
        c.dns_label("environment", env);
        if !seen.insert(env.value.clone()) {
            c.at(
                env,
                format!("environment \"{}\" is listed twice", env.value),
                "each environment once",
            );
        }
    }
    if schema.is_some_and(IdSchema::uses_environment) && raw.is_empty() {
        // No span for a missing list; point at the schema that needs it instead.
    }
    raw.iter().map(|e| e.value.clone()).collect()
}

fn services(c: &mut Check, raw: &[raw::Service], schema: Option<&IdSchema>) -> Vec<Service> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for svc in raw {
        c.dns_label("service name", &svc.name);
        c.dns_label("namespace", &svc.namespace);
        c.dns_label("serviceAccount", &svc.service_account);
        if let Some(first) = seen.insert(svc.name.value.clone(), svc.name.referenced.line()) {
            c.at(
                &svc.name,
                format!(
                    "service \"{}\" is defined twice (first at line {first})",
                    svc.name.value
                ),
                "unique service names",
            );
        }
        let role = match svc.role.as_ref().map(|r| r.value.as_str()) {
            None | Some("workload") => Role::Workload,
            Some("ingress") => Role::Ingress,
            Some("probe") => Role::Probe,
            Some(other) => {
                if let Some(r) = &svc.role {
                    c.at(
                        r,
                        format!("role \"{other}\" is unknown"),
                        "workload, ingress or probe",
                    );
                }
                Role::Workload
            }
        };
        let mut workloads = Vec::new();
        for w in &svc.workloads {
            c.dns_label("workload", w);
            if workloads.contains(&w.value) {
                c.at(
                    w,
                    format!("workload \"{}\" is listed twice", w.value),
                    "each workload once",
                );
            }
            workloads.push(w.value.clone());
        }
        if !workloads.is_empty() && schema.is_some_and(|s| !s.uses(Var::Workload)) {
            c.at(
                &svc.workloads[0],
                format!(
                    "service \"{}\" has workloads but the schema has no [/{{workload}}]",
                    svc.name.value
                ),
                "a schema ending in [/{workload}]",
            );
        }
        let ports = ports(c, &svc.ports);
        let endpoints = endpoints(c, &svc.endpoints);
        let mut service = Service {
            name: svc.name.value.clone(),
            namespace: svc.namespace.value.clone(),
            service_account: svc.service_account.value.clone(),
            role,
            repository_scope: svc.repository_scope.clone(),
            workloads,
            ports,
            endpoints,
            spiffe_id: None,
        };
        if let (Some(written), Some(schema)) = (&svc.spiffe_id, schema) {
            service.spiffe_id = explicit_id(c, written, schema, &service);
        }
        out.push(service);
    }
    if raw.is_empty() {
        c.errors.push(
            SourceError::new(c.file, 0, 0, "spec.services is empty")
                .expected("at least one service"),
        );
    }
    out
}

/// An ID written out in the profile must be the one the schema gives that service.
fn explicit_id(
    c: &mut Check,
    written: &Spanned<String>,
    schema: &IdSchema,
    service: &Service,
) -> Option<SpiffeId> {
    let id = match SpiffeId::parse(&written.value) {
        Ok(id) => id,
        Err(e) => {
            c.at(
                written,
                format!("spiffeId \"{}\" is invalid: {e}", written.value),
                "spiffe://<trust-domain>/<path>",
            );
            return None;
        }
    };
    if schema.uses_environment() {
        c.at(
            written,
            "spiffeId cannot be written out when the schema has {environment}",
            "no spiffeId; it is derived from the schema",
        );
        return None;
    }
    match schema.render(service, None, None) {
        Ok(expected) if expected == id => Some(id),
        Ok(expected) => {
            c.at(
                written,
                format!("spiffeId {id} breaks the profile's schema {schema}"),
                expected.to_string(),
            );
            None
        }
        Err(e) => {
            c.at(written, e, SCHEMA_FORM);
            None
        }
    }
}

fn ports(c: &mut Check, raw: &[raw::Port]) -> Vec<Port> {
    let mut out: Vec<Port> = Vec::new();
    for p in raw {
        match u16::try_from(p.port.value) {
            Ok(port) if port > 0 => {
                if out.iter().any(|o| o.port == port) {
                    c.at(
                        &p.port,
                        format!("port {port} is listed twice"),
                        "each port once",
                    );
                }
                out.push(Port {
                    name: p.name.value.clone(),
                    port,
                });
            }
            _ => c.at(
                &p.port,
                format!("port {} is out of range", p.port.value),
                "1 to 65535",
            ),
        }
    }
    out
}

fn endpoints(c: &mut Check, raw: &[raw::Endpoint]) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    for e in raw {
        if out.iter().any(|o| o.name == e.name.value) {
            c.at(
                &e.name,
                format!("endpoint \"{}\" is defined twice", e.name.value),
                "unique endpoint names per service",
            );
        }
        let path = &e.path.value;
        let valid_path = (path.starts_with('/') || path.starts_with('*'))
            && path.matches('*').count() <= 1
            && (!path.contains('*') || path.starts_with('*') || path.ends_with('*'));
        if !valid_path {
            c.at(
                &e.path,
                format!("path \"{path}\" is not an Istio path pattern"),
                "/exact, /prefix/* or */suffix",
            );
        }
        if e.methods.is_empty() {
            c.at(
                &e.name,
                format!("endpoint \"{}\" lists no methods", e.name.value),
                "methods: [GET, ...]",
            );
        }
        for m in &e.methods {
            if !HTTP_METHODS.contains(&m.value.as_str()) {
                c.at(
                    m,
                    format!("method \"{}\" is not an HTTP method", m.value),
                    HTTP_METHODS.join(", "),
                );
            }
        }
        out.push(Endpoint {
            name: e.name.value.clone(),
            path: path.clone(),
            methods: e.methods.iter().map(|m| m.value.clone()).collect(),
        });
    }
    out
}

/// The services by name: every intent names two, so a lookup must not scan them all.
struct ServicesByName<'s> {
    services: &'s [Service],
    by_name: HashMap<&'s str, &'s Service>,
}

impl<'s> ServicesByName<'s> {
    fn new(services: &'s [Service]) -> Self {
        let mut by_name = HashMap::new();
        for s in services {
            // The first definition wins, as a duplicate is already an error.
            by_name.entry(s.name.as_str()).or_insert(s);
        }
        ServicesByName { services, by_name }
    }

    /// The service `name` names, or an error listing the known ones.
    fn known(&self, c: &mut Check, name: &Spanned<String>, field: &str) -> Option<&'s Service> {
        let found = self.by_name.get(name.value.as_str()).copied();
        if found.is_none() {
            let names: Vec<&str> = self.services.iter().map(|s| s.name.as_str()).collect();
            c.at(
                name,
                format!("{field} names unknown service \"{}\"", name.value),
                format!("one of {}", names.join(", ")),
            );
        }
        found
    }
}

fn intents(c: &mut Check, raw: &raw::Intents, services: &ServicesByName) -> Vec<Intent> {
    let rows = raw
        .allow
        .iter()
        .map(|i| (Decision::Allow, i))
        .chain(raw.deny.iter().map(|i| (Decision::Deny, i)));
    let mut out: Vec<Intent> = Vec::new();
    // Earlier intents of each caller → callee pair, as positions in `out`.
    let mut by_pair: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (decision, i) in rows {
        let from = services.known(c, &i.from, "intent from");
        let callee = services.known(c, &i.to, "intent to");
        if from.is_none() || callee.is_none() {
            continue;
        }
        if i.from.value == i.to.value {
            c.at(
                &i.from,
                format!("intent from \"{}\" to itself", i.from.value),
                "a caller and a different callee",
            );
            continue;
        }
        for e in &i.endpoints {
            if callee.is_some_and(|s| !s.endpoints.iter().any(|x| x.name == e.value)) {
                let names: Vec<&str> = callee
                    .map(|s| s.endpoints.iter().map(|x| x.name.as_str()).collect())
                    .unwrap_or_default();
                c.at(
                    e,
                    format!(
                        "endpoint \"{}\" is not an endpoint of \"{}\"",
                        e.value, i.to.value
                    ),
                    format!("one of {}", names.join(", ")),
                );
            }
        }
        let intent = Intent {
            decision,
            from: i.from.value.clone(),
            to: i.to.value.clone(),
            endpoints: i.endpoints.iter().map(|e| e.value.clone()).collect(),
            reason: i.reason.clone(),
            line: i.from.referenced.line() as u32,
        };
        let earlier_of_pair = by_pair
            .entry((i.from.value.as_str(), i.to.value.as_str()))
            .or_default();
        for earlier in earlier_of_pair.iter().map(|&k| &out[k]) {
            if earlier.from == intent.from
                && earlier.to == intent.to
                && overlaps(&earlier.endpoints, &intent.endpoints)
            {
                let (what, expected) = if earlier.decision == intent.decision {
                    ("repeats", "each caller → callee endpoint once")
                } else {
                    (
                        "contradicts",
                        "an endpoint either allowed or denied, not both",
                    )
                };
                c.at(
                    &i.from,
                    format!(
                        "intent {} → {} {what} the {:?} intent at line {} on {}",
                        intent.from,
                        intent.to,
                        earlier.decision,
                        earlier.line,
                        shared(&earlier.endpoints, &intent.endpoints)
                    )
                    .replace("Allow", "allow")
                    .replace("Deny", "deny"),
                    expected,
                );
            }
        }
        earlier_of_pair.push(out.len());
        out.push(intent);
    }
    out
}

/// Empty endpoint lists mean "every endpoint".
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.is_empty() || b.is_empty() || a.iter().any(|x| b.contains(x))
}

fn shared(a: &[String], b: &[String]) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => "every endpoint".to_owned(),
        (true, false) => b.join(", "),
        (false, true) => a.join(", "),
        (false, false) => a
            .iter()
            .filter(|x| b.contains(x))
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn ca_policy(c: &mut Check, raw: &raw::Ca) -> CaPolicy {
    let d = |s: &Spanned<duration::HumanDuration>| s.value.0;
    let (root, inter, rotate, overlap, ttl) = (
        &raw.root.validity,
        &raw.intermediate.validity,
        &raw.intermediate.rotate_every,
        &raw.intermediate.overlap,
        &raw.workload.ttl,
    );
    for (name, value) in [
        ("root.validity", root),
        ("intermediate.validity", inter),
        ("intermediate.rotateEvery", rotate),
        ("workload.ttl", ttl),
    ] {
        if d(value).is_zero() {
            c.at(
                value,
                format!("ca.{name} is zero"),
                "a positive duration like 12h",
            );
        }
    }
    let fmt = |x: Duration| duration::format(x);
    if d(inter) > d(root) {
        c.at(
            inter,
            format!(
                "intermediate validity {} outlives the root's {}",
                fmt(d(inter)),
                fmt(d(root))
            ),
            "an intermediate validity no longer than the root's",
        );
    }
    if d(inter) < d(rotate) + d(overlap) {
        c.at(inter, format!(
            "intermediate validity {} is shorter than rotateEvery {} plus overlap {}, so there would be a gap",
            fmt(d(inter)), fmt(d(rotate)), fmt(d(overlap))
        ), format!("at least {}", fmt(d(rotate) + d(overlap))));
    }
    if d(overlap) > d(rotate) {
        c.at(
            overlap,
            format!(
                "overlap {} is longer than rotateEvery {}",
                fmt(d(overlap)),
                fmt(d(rotate))
            ),
            "an overlap no longer than the rotation period",
        );
    }
    // A workload certificate issued just before an intermediate rotation must expire while the old
    // intermediate is still valid, or it outlives its issuer.
    if d(ttl) > d(overlap) {
        c.at(
            ttl,
            format!(
                "workload ttl {} is longer than the intermediate overlap {}",
                fmt(d(ttl)),
                fmt(d(overlap))
            ),
            format!("a ttl of at most {}", fmt(d(overlap))),
        );
    }
    CaPolicy {
        organization: raw.root.organization.value.clone(),
        root_validity: d(root),
        intermediate_validity: d(inter),
        rotate_every: d(rotate),
        overlap: d(overlap),
        workload_ttl: d(ttl),
        plugin_secret: raw.plugin_secret.clone(),
    }
}

fn spire_config(
    c: &mut Check,
    raw: &raw::Spire,
    services: &ServicesByName,
    schema: Option<&IdSchema>,
    ca: &CaPolicy,
    provider: IdentityProvider,
) -> Spire {
    if provider != IdentityProvider::Spire {
        c.at(
            &raw.node_attestor,
            "a spire: section is set but the identity provider is not spire",
            "identity.provider: spire",
        );
    }
    let mut entries: Vec<SpireEntry> = Vec::new();
    for e in &raw.entries {
        let Some(service) = services.known(c, &e.service, "spire entry") else {
            continue;
        };
        if entries.iter().any(|x| x.service == e.service.value) {
            c.at(
                &e.service,
                format!("spire entry for \"{}\" is defined twice", e.service.value),
                "one entry per service",
            );
        }
        if e.selectors.is_empty() {
            c.at(
                &e.service,
                "spire entry has no selectors",
                "selectors like k8s:sa:<name>",
            );
        }
        for s in &e.selectors {
            if s.value.split(':').count() < 2 || s.value.split(':').any(str::is_empty) {
                c.at(
                    s,
                    format!("selector \"{}\" is malformed", s.value),
                    "type:value, like k8s:ns:soma-agent-hub or unix:uid:1000",
                );
            }
        }
        let ttl = e.ttl.value.0;
        if ttl.is_zero() || ttl > ca.workload_ttl {
            c.at(
                &e.ttl,
                format!(
                    "entry ttl {} is outside the CA policy",
                    duration::format(ttl)
                ),
                format!(
                    "between 1s and the workload ttl {}",
                    duration::format(ca.workload_ttl)
                ),
            );
        }
        if let Some(schema) = schema {
            match schema.render(service, None, None) {
                Ok(spiffe_id) => entries.push(SpireEntry {
                    service: service.name.clone(),
                    spiffe_id,
                    selectors: e.selectors.iter().map(|s| s.value.clone()).collect(),
                    ttl,
                }),
                Err(err) => c.at(&e.service, err, SCHEMA_FORM),
            }
        }
    }
    Spire {
        cluster: raw.cluster.clone(),
        node_attestor: raw.node_attestor.value.clone(),
        entries,
    }
}

fn admission(c: &mut Check, raw: &raw::Admission) -> Admission {
    for ns in &raw.namespaces {
        c.dns_label("admission namespace", ns);
    }
    let mut policies: Vec<AdmissionPolicy> = Vec::new();
    for p in &raw.policies {
        if !p
            .kind
            .value
            .chars()
            .next()
            .is_some_and(|ch| ch.is_ascii_uppercase())
            || !p.kind.value.chars().all(|ch| ch.is_ascii_alphanumeric())
        {
            c.at(
                &p.kind,
                format!(
                    "constraint kind \"{}\" is not a CamelCase kind",
                    p.kind.value
                ),
                "a kind like K8sRequiredLabels",
            );
        }
        c.dns_label("constraint name", &p.name);
        if policies.iter().any(|x| x.name == p.name.value) {
            c.at(
                &p.name,
                format!("constraint \"{}\" is defined twice", p.name.value),
                "unique constraint names",
            );
        }
        if p.message.value.trim().is_empty() {
            c.at(
                &p.message,
                "constraint message is empty",
                "the runbook's rejection text",
            );
        }
        policies.push(AdmissionPolicy {
            kind: p.kind.value.clone(),
            name: p.name.value.clone(),
            parameters: p.parameters.clone().unwrap_or(serde_json::Value::Null),
            message: p.message.value.clone(),
        });
    }
    Admission {
        namespaces: raw.namespaces.iter().map(|n| n.value.clone()).collect(),
        policies,
    }
}

fn identity_collisions(
    file: &Path,
    profile: &Profile,
    raw: &[raw::Service],
) -> Result<(), Vec<SourceError>> {
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut errors = Vec::new();
    for identity in profile.identities() {
        let label = identity.label();
        if let Some(other) = seen.insert(identity.spiffe_id.to_string(), label.clone()) {
            let line = raw
                .iter()
                .find(|s| s.name.value == identity.service)
                .map(|s| &s.name);
            let (l, col) = line
                .map(|s| (s.referenced.line() as u32, s.referenced.column() as u32))
                .unwrap_or((0, 0));
            errors.push(
                SourceError::new(
                    file,
                    l,
                    col,
                    format!(
                        "{label} and {other} would share the identity {}",
                        identity.spiffe_id
                    ),
                )
                .expected("one SPIFFE ID per workload"),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

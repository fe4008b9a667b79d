//! istiod's translation of one AuthorizationPolicy rule into one Envoy RBAC policy
//! (`pilot/pkg/security/authz/model`: `New` + `MigrateTrustDomain` + `Generate`), kept as a tree
//! that [`super::evaluate`] *matches* and [`super::envoy`] *renders* — one translation, two uses.
//!
//! Shape, as istiod builds it: `permissions` holds one `and_rules` per `to` entry (or one for the
//! whole rule), `principals` one `and_ids` per `from` entry; inside, each field is an `or` of its
//! values followed by a `not(or(...))` of its not-values, then the `when` conditions of that side.
//! On a TCP filter chain HTTP-only fields cannot be generated: an ALLOW rule using one anywhere is
//! dropped entirely (smaller allow), a DENY/AUDIT rule just loses those values (wider deny).

use serde_json::{Value as Json, json};

use super::attr::{self, AttrKind};
use super::matcher::{self, Cidr, HeaderMatcher, StringMatcher};
use super::model::{Action, Condition, Operation, Rule, Source, Value};
use super::request::{Protocol, Request};
use super::trust;

/// Envoy `config.rbac.v3.Permission`.
#[derive(Clone, Debug, PartialEq)]
pub enum Perm {
    Any,
    Or(Vec<Perm>),
    Not(Box<Perm>),
    Header(HeaderMatcher),
    UrlPath(StringMatcher),
    DestPort(u16),
    DestIp(Cidr),
    Sni(StringMatcher),
    Metadata(Json),
}

/// Envoy `config.rbac.v3.Principal`.
#[derive(Clone, Debug, PartialEq)]
pub enum Princ {
    Any,
    Or(Vec<Princ>),
    Not(Box<Princ>),
    Authenticated(StringMatcher),
    DirectRemoteIp(Cidr),
    RemoteIp(Cidr),
    Header(HeaderMatcher),
    Metadata(Json),
}

impl Perm {
    fn never() -> Perm {
        Perm::Not(Box::new(Perm::Any))
    }

    pub fn matches(&self, req: &Request) -> bool {
        match self {
            Perm::Any => true,
            Perm::Or(items) => items.iter().any(|p| p.matches(req)),
            Perm::Not(inner) => !inner.matches(req),
            Perm::Header(h) => h.matches(req.header(&h.name).as_deref()),
            Perm::UrlPath(m) => req.protocol == Protocol::Http && m.matches(req.url_path()),
            Perm::DestPort(p) => req.destination.port == *p,
            Perm::DestIp(c) => req.destination.ip.is_some_and(|ip| c.contains(ip)),
            Perm::Sni(m) => req.sni.as_deref().is_some_and(|s| m.matches(s)),
            // No filter in the modelled sidecar writes dynamic metadata.
            Perm::Metadata(_) => false,
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Perm::Any => json!({ "any": true }),
            Perm::Or(items) => {
                let rules: Vec<Json> = items.iter().map(Perm::to_json).collect();
                json!({ "or_rules": { "rules": rules } })
            }
            Perm::Not(inner) => json!({ "not_rule": inner.to_json() }),
            Perm::Header(h) => json!({ "header": h.to_json() }),
            Perm::UrlPath(m) => json!({ "url_path": { "path": m.to_json() } }),
            Perm::DestPort(p) => json!({ "destination_port": p }),
            Perm::DestIp(c) => json!({ "destination_ip": c.to_json() }),
            Perm::Sni(m) => json!({ "requested_server_name": m.to_json() }),
            Perm::Metadata(m) => json!({ "metadata": m }),
        }
    }
}

impl Princ {
    fn never() -> Princ {
        Princ::Not(Box::new(Princ::Any))
    }

    pub fn matches(&self, req: &Request) -> bool {
        match self {
            Princ::Any => true,
            Princ::Or(items) => items.iter().any(|p| p.matches(req)),
            Princ::Not(inner) => !inner.matches(req),
            // Plaintext has no authenticated peer: every `authenticated` matcher fails.
            Princ::Authenticated(m) => req.peer_uri().is_some_and(|uri| m.matches(&uri)),
            Princ::DirectRemoteIp(c) | Princ::RemoteIp(c) => {
                req.source.ip.is_some_and(|ip| c.contains(ip))
            }
            Princ::Header(h) => h.matches(req.header(&h.name).as_deref()),
            Princ::Metadata(_) => false,
        }
    }

    pub fn to_json(&self) -> Json {
        match self {
            Princ::Any => json!({ "any": true }),
            Princ::Or(items) => {
                let ids: Vec<Json> = items.iter().map(Princ::to_json).collect();
                json!({ "or_ids": { "ids": ids } })
            }
            Princ::Not(inner) => json!({ "not_id": inner.to_json() }),
            Princ::Authenticated(m) => {
                json!({ "authenticated": { "principal_name": m.to_json() } })
            }
            Princ::DirectRemoteIp(c) => json!({ "direct_remote_ip": c.to_json() }),
            Princ::RemoteIp(c) => json!({ "remote_ip": c.to_json() }),
            Princ::Header(h) => json!({ "header": h.to_json() }),
            Princ::Metadata(m) => json!({ "metadata": m }),
        }
    }
}

/// One AND'ed part of a clause, labelled with the Istio field it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Part<T> {
    pub label: String,
    pub node: T,
}

/// One `from` (principals) or `to` (permissions) entry: all parts must match.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause<T> {
    pub label: String,
    pub parts: Vec<Part<T>>,
}

/// One generated Envoy policy: some permission clause AND some principal clause must match.
#[derive(Clone, Debug, PartialEq)]
pub struct GenRule {
    pub permissions: Vec<Clause<Perm>>,
    pub principals: Vec<Clause<Princ>>,
}

/// How one rule is generated for one filter chain.
#[derive(Clone, Copy, Debug)]
pub struct Gen<'a> {
    pub for_tcp: bool,
    pub action: Action,
    /// Namespace of the policy (default namespace of `serviceAccounts` values).
    pub policy_namespace: &'a str,
    /// Trust domain + aliases for principal migration; `None` compiles principals verbatim.
    pub trust_bundle: Option<&'a [String]>,
}

/// The rule was left out of the filter (ALLOW rule with an HTTP-only field on TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped(pub String);

impl GenRule {
    /// The never-matching policy istiod writes for a policy without rules.
    pub fn match_never() -> GenRule {
        GenRule {
            permissions: vec![Clause {
                label: "no rules".into(),
                parts: vec![Part {
                    label: "no rules".into(),
                    node: Perm::never(),
                }],
            }],
            principals: vec![Clause {
                label: "no rules".into(),
                parts: vec![Part {
                    label: "no rules".into(),
                    node: Princ::never(),
                }],
            }],
        }
    }

    /// Whether some permission clause and some principal clause match, every part of each.
    pub fn matches(&self, req: &Request) -> bool {
        let all = |parts: &[Part<Perm>]| parts.iter().all(|p| p.node.matches(req));
        let all_ids = |parts: &[Part<Princ>]| parts.iter().all(|p| p.node.matches(req));
        self.permissions.iter().any(|c| all(&c.parts))
            && self.principals.iter().any(|c| all_ids(&c.parts))
    }

    /// `Ok` if the rule matches; else why not (the first failing field).
    pub fn check(&self, req: &Request) -> Result<(), String> {
        let to = first_match(&self.permissions, |p: &Perm| p.matches(req));
        let from = first_match(&self.principals, |p: &Princ| p.matches(req));
        match (to, from) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(why), _) | (_, Err(why)) => Err(why),
        }
    }

    pub fn to_json(&self) -> Json {
        let perms: Vec<Json> = self
            .permissions
            .iter()
            .map(|c| {
                let mut parts: Vec<Json> = c.parts.iter().map(|p| p.node.to_json()).collect();
                if parts.is_empty() {
                    parts.push(Perm::Any.to_json());
                }
                json!({ "and_rules": { "rules": parts } })
            })
            .collect();
        let principals: Vec<Json> = self
            .principals
            .iter()
            .map(|c| {
                let mut parts: Vec<Json> = c.parts.iter().map(|p| p.node.to_json()).collect();
                if parts.is_empty() {
                    parts.push(Princ::Any.to_json());
                }
                json!({ "and_ids": { "ids": parts } })
            })
            .collect();
        json!({ "permissions": perms, "principals": principals })
    }
}

fn first_match<T>(clauses: &[Clause<T>], matches: impl Fn(&T) -> bool) -> Result<(), String> {
    let mut first_failure = None;
    for clause in clauses {
        match clause.parts.iter().find(|p| !matches(&p.node)) {
            None => return Ok(()),
            Some(part) => {
                first_failure.get_or_insert_with(|| format!("{} did not match", part.label));
            }
        }
    }
    Err(first_failure.unwrap_or_else(|| "nothing to match".into()))
}

/// Translates one rule.
pub fn generate(rule: &Rule, g: &Gen) -> Result<GenRule, Dropped> {
    let mut base_principal: Vec<Part<Princ>> = Vec::new();
    let mut base_permission: Vec<Part<Perm>> = Vec::new();
    for (i, condition) in rule.when.iter().enumerate() {
        when(condition, i, g, &mut base_principal, &mut base_permission)?;
    }
    let mut principals = Vec::new();
    for (j, source) in rule.from.iter().enumerate() {
        let mut parts = from_source(source, &format!("from[{j}].source"), g)?;
        parts.extend(base_principal.iter().cloned());
        principals.push(Clause {
            label: format!("from[{j}]"),
            parts,
        });
    }
    if rule.from.is_empty() {
        principals.push(Clause {
            label: "any source".into(),
            parts: base_principal,
        });
    }
    let mut permissions = Vec::new();
    for (j, op) in rule.to.iter().enumerate() {
        let mut parts = to_operation(op, &format!("to[{j}].operation"), g)?;
        parts.extend(base_permission.iter().cloned());
        permissions.push(Clause {
            label: format!("to[{j}]"),
            parts,
        });
    }
    if rule.to.is_empty() {
        permissions.push(Clause {
            label: "any operation".into(),
            parts: base_permission,
        });
    }
    Ok(GenRule {
        permissions,
        principals,
    })
}

/// Adds `or(values)` and `not(or(not_values))` for one field, dropping what cannot be generated
/// the way istiod's `checkError` does.
#[allow(clippy::too_many_arguments)]
fn field<T>(
    out: &mut Vec<Part<T>>,
    label: &str,
    not_label: &str,
    values: &[Value],
    not_values: &[Value],
    http_only: bool,
    g: &Gen,
    one: impl Fn(&str) -> Result<T, String>,
    or: fn(Vec<T>) -> T,
    not: fn(T) -> T,
) -> Result<(), Dropped> {
    for (list, negate) in [(values, false), (not_values, true)] {
        let mut items = Vec::new();
        for value in list {
            let generated = if g.for_tcp && http_only {
                Err(format!(
                    "{} is HTTP only",
                    if negate { not_label } else { label }
                ))
            } else {
                one(&value.text)
            };
            match generated {
                Ok(node) => items.push(node),
                Err(why) if g.action == Action::Allow => return Err(Dropped(why)),
                Err(_) => {}
            }
        }
        if !items.is_empty() {
            let node = or(items);
            out.push(if negate {
                Part {
                    label: not_label.to_owned(),
                    node: not(node),
                }
            } else {
                Part {
                    label: label.to_owned(),
                    node,
                }
            });
        }
    }
    Ok(())
}

fn princ_or(items: Vec<Princ>) -> Princ {
    Princ::Or(items)
}
fn princ_not(p: Princ) -> Princ {
    Princ::Not(Box::new(p))
}
fn perm_or(items: Vec<Perm>) -> Perm {
    Perm::Or(items)
}
fn perm_not(p: Perm) -> Perm {
    Perm::Not(Box::new(p))
}

fn authenticated(m: Result<StringMatcher, String>) -> Result<Princ, String> {
    // A value the regex engine refuses is reported at load time and never matches.
    Ok(m.map(Princ::Authenticated)
        .unwrap_or_else(|_| Princ::never()))
}

fn migrated(values: &[Value], g: &Gen) -> Vec<Value> {
    match g.trust_bundle {
        Some(bundle) => trust::migrate(values, bundle),
        None => values.to_vec(),
    }
}

fn from_source(s: &Source, path: &str, g: &Gen) -> Result<Vec<Part<Princ>>, Dropped> {
    let mut out = Vec::new();
    let l = |k: &str| format!("{path}.{k}");
    field(
        &mut out,
        &l("principals"),
        &l("notPrincipals"),
        &migrated(&s.principals, g),
        &migrated(&s.not_principals, g),
        false,
        g,
        |v| authenticated(matcher::principal(v)),
        princ_or,
        princ_not,
    )?;
    field(
        &mut out,
        &l("requestPrincipals"),
        &l("notRequestPrincipals"),
        &s.request_principals,
        &s.not_request_principals,
        true,
        g,
        |v| Ok(jwt_metadata("request.auth.principal", v)),
        princ_or,
        princ_not,
    )?;
    let ns = g.policy_namespace;
    field(
        &mut out,
        &l("serviceAccounts"),
        &l("notServiceAccounts"),
        &s.service_accounts,
        &s.not_service_accounts,
        false,
        g,
        |v| authenticated(matcher::service_account(ns, v)),
        princ_or,
        princ_not,
    )?;
    field(
        &mut out,
        &l("namespaces"),
        &l("notNamespaces"),
        &s.namespaces,
        &s.not_namespaces,
        false,
        g,
        |v| authenticated(matcher::namespace(v)),
        princ_or,
        princ_not,
    )?;
    field(
        &mut out,
        &l("remoteIpBlocks"),
        &l("notRemoteIpBlocks"),
        &s.remote_ip_blocks,
        &s.not_remote_ip_blocks,
        false,
        g,
        |v| Cidr::parse(v).map(Princ::RemoteIp),
        princ_or,
        princ_not,
    )?;
    field(
        &mut out,
        &l("ipBlocks"),
        &l("notIpBlocks"),
        &s.ip_blocks,
        &s.not_ip_blocks,
        false,
        g,
        |v| Cidr::parse(v).map(Princ::DirectRemoteIp),
        princ_or,
        princ_not,
    )?;
    Ok(out)
}

fn to_operation(o: &Operation, path: &str, g: &Gen) -> Result<Vec<Part<Perm>>, Dropped> {
    let mut out = Vec::new();
    let l = |k: &str| format!("{path}.{k}");
    field(
        &mut out,
        &l("hosts"),
        &l("notHosts"),
        &o.hosts,
        &o.not_hosts,
        true,
        g,
        |v| Ok(Perm::Header(matcher::host(v))),
        perm_or,
        perm_not,
    )?;
    field(
        &mut out,
        &l("methods"),
        &l("notMethods"),
        &o.methods,
        &o.not_methods,
        true,
        g,
        |v| Ok(Perm::Header(matcher::header(":method", v))),
        perm_or,
        perm_not,
    )?;
    field(
        &mut out,
        &l("paths"),
        &l("notPaths"),
        &o.paths,
        &o.not_paths,
        true,
        g,
        |v| {
            if matcher::is_path_template(v) {
                // Reported unsupported at load time; compiled and evaluated as never matching.
                return Ok(Perm::never());
            }
            matcher::istio_string(v, "").map(Perm::UrlPath)
        },
        perm_or,
        perm_not,
    )?;
    field(
        &mut out,
        &l("ports"),
        &l("notPorts"),
        &o.ports,
        &o.not_ports,
        false,
        g,
        |v| matcher::parse_port(v).map(Perm::DestPort),
        perm_or,
        perm_not,
    )?;
    Ok(out)
}

fn when(
    c: &Condition,
    i: usize,
    g: &Gen,
    principals: &mut Vec<Part<Princ>>,
    permissions: &mut Vec<Part<Perm>>,
) -> Result<(), Dropped> {
    let label = format!("when[{i}] {}", c.key);
    let not_label = format!("when[{i}] {} notValues", c.key);
    let Ok(kind) = AttrKind::classify(&c.key) else {
        // Rejected at load time; istiod skips the whole rule.
        return Err(Dropped(format!("unknown attribute {}", c.key)));
    };
    let http = kind.is_http_only();
    let key = c.key.as_str();
    let (values, not_values) = if kind == AttrKind::SourcePrincipal {
        (migrated(&c.values, g), migrated(&c.not_values, g))
    } else {
        (c.values.clone(), c.not_values.clone())
    };
    let (v, nv) = (&values[..], &not_values[..]);
    let pr = |out: &mut Vec<Part<Princ>>, one: &dyn Fn(&str) -> Result<Princ, String>| {
        field(
            out, &label, &not_label, v, nv, http, g, one, princ_or, princ_not,
        )
    };
    let pe = |out: &mut Vec<Part<Perm>>, one: &dyn Fn(&str) -> Result<Perm, String>| {
        field(
            out, &label, &not_label, v, nv, http, g, one, perm_or, perm_not,
        )
    };
    let ns = g.policy_namespace;
    match kind {
        AttrKind::SourceIp => pr(principals, &|v| Cidr::parse(v).map(Princ::DirectRemoteIp)),
        AttrKind::RemoteIp => pr(principals, &|v| Cidr::parse(v).map(Princ::RemoteIp)),
        AttrKind::SourceNamespace => pr(principals, &|v| authenticated(matcher::namespace(v))),
        AttrKind::SourceServiceAccount => pr(principals, &|v| {
            authenticated(matcher::service_account(ns, v))
        }),
        AttrKind::SourcePrincipal => pr(principals, &|v| authenticated(matcher::principal(v))),
        AttrKind::RequestAuth => pr(principals, &|v| Ok(jwt_metadata(key, v))),
        AttrKind::RequestHeader => {
            let name = attr::bracketed(key);
            pr(principals, &|v| Ok(Princ::Header(matcher::header(name, v))))
        }
        AttrKind::RequestInlineHeader => {
            let name = attr::bracketed(key);
            pr(principals, &|v| {
                Ok(matcher::inline_header(name, v)
                    .map(Princ::Header)
                    .unwrap_or_else(|_| Princ::never()))
            })
        }
        AttrKind::DestinationIp => pe(permissions, &|v| Cidr::parse(v).map(Perm::DestIp)),
        AttrKind::DestinationPort => {
            pe(permissions, &|v| matcher::parse_port(v).map(Perm::DestPort))
        }
        AttrKind::ConnectionSni => pe(permissions, &|v| {
            matcher::istio_string(v, "").map(Perm::Sni)
        }),
        AttrKind::EnvoyFilterMetadata => pe(permissions, &|v| {
            Ok(Perm::Metadata(filter_metadata(key, v)))
        }),
    }
}

/// istiod's `istio_authn` metadata matcher for JWT-derived attributes (never set in the model).
fn jwt_metadata<T: From<Json>>(key: &str, value: &str) -> T {
    let matcher = matcher::istio_string(value, "")
        .map(|m| m.to_json())
        .unwrap_or_else(|_| json!({ "exact": value }));
    let mut path = vec![json!({ "key": key })];
    let claims = key.strip_prefix("request.auth.claims");
    if let Some(rest) = claims {
        path = vec![json!({ "key": "request.auth.claims" })];
        for name in rest
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split("][")
        {
            path.push(json!({ "key": name }));
        }
    }
    let value = if claims.is_some() {
        json!({ "list_match": { "one_of": { "string_match": matcher } } })
    } else {
        json!({ "string_match": matcher })
    };
    T::from(json!({ "filter": "istio_authn", "path": path, "value": value }))
}

/// `experimental.envoy.filters.a.b[c]` → metadata matcher on filter `envoy.filters.a.b`, key `c`.
fn filter_metadata(key: &str, value: &str) -> Json {
    let trimmed = key
        .trim_start_matches("experimental.")
        .trim_end_matches(']');
    let (filter, field) = trimmed.split_once('[').unwrap_or((trimmed, ""));
    let (list, inner) = match value.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        Some(inner) => (true, inner),
        None => (false, value),
    };
    let m = matcher::istio_string(inner, "")
        .map(|m| m.to_json())
        .unwrap_or_else(|_| json!({ "exact": inner }));
    let value = if list {
        json!({ "list_match": { "one_of": { "string_match": m } } })
    } else {
        json!({ "string_match": m })
    };
    json!({ "filter": filter, "path": [{ "key": field }], "value": value })
}

impl From<Json> for Princ {
    fn from(j: Json) -> Princ {
        Princ::Metadata(j)
    }
}

impl From<Json> for Perm {
    fn from(j: Json) -> Perm {
        Perm::Metadata(j)
    }
}

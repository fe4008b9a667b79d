//! One `AuthorizationPolicy` rule — `from` sources, `to` operations, `when` conditions — read and
//! validated as Istio's webhook does, with unmodelled fields listed as unsupported.

use super::attr::{self, AttrKind};
use super::fields::{Ctx, Fields};
use super::matcher;
use super::model::{Action, Condition, Operation, Rule, Source, Values};
use super::yaml::{Located, Node, line};

const SOURCE_KEYS: &[&str] = &[
    "principals",
    "notPrincipals",
    "requestPrincipals",
    "notRequestPrincipals",
    "namespaces",
    "notNamespaces",
    "serviceAccounts",
    "notServiceAccounts",
    "ipBlocks",
    "notIpBlocks",
    "remoteIpBlocks",
    "notRemoteIpBlocks",
];

const OPERATION_KEYS: &[&str] = &[
    "hosts",
    "notHosts",
    "ports",
    "notPorts",
    "methods",
    "notMethods",
    "paths",
    "notPaths",
];

const ATTRIBUTES: &str = "a supported Istio attribute (source.ip, remote.ip, source.namespace, \
     source.principal, source.serviceAccount, request.headers[<name>], request.auth.*, \
     destination.ip, destination.port, connection.sni, experimental.envoy.filters.*)";
const NO_JWT: &str = "no JWT is modelled: evaluated as a request without a validated JWT \
     (values never match, notValues always match), which is what the sidecar does when \
     no RequestAuthentication accepted a token";

pub fn rule(ctx: &mut Ctx, node: &Located, i: usize, action: Action) -> Option<Rule> {
    let path = format!("spec.rules[{i}]");
    if node.value == Node::Null {
        ctx.error(
            node,
            format!("{path} is null"),
            "a rule mapping, or {} to match everything",
        );
        return None;
    }
    let fields = ctx.map(node, &path, &["from", "to", "when"])?;
    let mut rule = Rule {
        line: line(node),
        from: Vec::new(),
        to: Vec::new(),
        when: Vec::new(),
    };
    if let Some(from) = fields.get("from").filter(|n| n.value != Node::Null) {
        let items = ctx.list(from, &fields.path("from"));
        if items.is_empty() {
            ctx.error(
                from,
                format!("{path}.from is empty"),
                "at least one source, or no `from` at all",
            );
        }
        for (j, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}.from[{j}]");
            let source = wrapped(ctx, item, &item_path, "source")
                .and_then(|(n, p)| source(ctx, n, &p, action));
            rule.from.extend(source);
        }
    }
    if let Some(to) = fields.get("to").filter(|n| n.value != Node::Null) {
        let items = ctx.list(to, &fields.path("to"));
        if items.is_empty() {
            ctx.error(
                to,
                format!("{path}.to is empty"),
                "at least one operation, or no `to` at all",
            );
        }
        for (j, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}.to[{j}]");
            let operation = wrapped(ctx, item, &item_path, "operation")
                .and_then(|(n, p)| operation(ctx, n, &p));
            rule.to.extend(operation);
        }
    }
    if let Some(when) = fields.get("when") {
        for (j, item) in ctx.list(when, &fields.path("when")).into_iter().enumerate() {
            rule.when
                .extend(condition(ctx, item, &format!("{path}.when[{j}]"), action));
        }
    }
    Some(rule)
}

/// `{source: {...}}` / `{operation: {...}}`: the inner node, which must be present.
fn wrapped<'n>(
    ctx: &mut Ctx,
    node: &'n Located,
    path: &str,
    key: &str,
) -> Option<(&'n Located, String)> {
    let fields = ctx.map(node, path, &[key])?;
    match fields.get(key).filter(|n| n.value != Node::Null) {
        Some(inner) => Some((inner, fields.path(key))),
        None => {
            ctx.error(
                node,
                format!("{path}.{key} is missing"),
                format!("{key}: {{...}}"),
            );
            None
        }
    }
}

fn source(ctx: &mut Ctx, node: &Located, path: &str, action: Action) -> Option<Source> {
    let fields = ctx.map(node, path, SOURCE_KEYS)?;
    let mut get = |key: &str| -> Values {
        fields
            .get(key)
            .map(|n| non_empty(ctx, n, &fields.path(key)))
            .unwrap_or_default()
    };
    let source = Source {
        line: line(node),
        principals: get("principals"),
        not_principals: get("notPrincipals"),
        request_principals: get("requestPrincipals"),
        not_request_principals: get("notRequestPrincipals"),
        namespaces: get("namespaces"),
        not_namespaces: get("notNamespaces"),
        service_accounts: get("serviceAccounts"),
        not_service_accounts: get("notServiceAccounts"),
        ip_blocks: get("ipBlocks"),
        not_ip_blocks: get("notIpBlocks"),
        remote_ip_blocks: get("remoteIpBlocks"),
        not_remote_ip_blocks: get("notRemoteIpBlocks"),
    };
    let all = [
        &source.principals,
        &source.not_principals,
        &source.request_principals,
        &source.not_request_principals,
        &source.namespaces,
        &source.not_namespaces,
        &source.service_accounts,
        &source.not_service_accounts,
        &source.ip_blocks,
        &source.not_ip_blocks,
        &source.remote_ip_blocks,
        &source.not_remote_ip_blocks,
    ];
    if all.iter().all(|v| v.is_empty()) && written_empty(&fields) {
        ctx.error(
            node,
            format!("{path} is empty"),
            format!("at least one of {}", SOURCE_KEYS.join(", ")),
        );
    }
    let identity = source.principals.len()
        + source.not_principals.len()
        + source.namespaces.len()
        + source.not_namespaces.len();
    let accounts = source.service_accounts.len() + source.not_service_accounts.len();
    if identity > 0 && accounts > 0 {
        ctx.error(
            node,
            format!("{path} sets serviceAccounts together with principals or namespaces"),
            "serviceAccounts alone, or principals/namespaces without serviceAccounts",
        );
    }
    for key in [
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ] {
        if let Some(n) = fields.get(key) {
            check_each(
                ctx,
                n,
                &fields.path(key),
                matcher::Cidr::parse,
                "an IP address or CIDR range, e.g. 10.0.0.0/8",
            );
        }
    }
    for key in ["serviceAccounts", "notServiceAccounts"] {
        if let Some(n) = fields.get(key) {
            let values = if key == "serviceAccounts" {
                &source.service_accounts
            } else {
                &source.not_service_accounts
            };
            if values.len() > 16 {
                ctx.error(
                    n,
                    format!("{} has more than 16 values", fields.path(key)),
                    "at most 16 service accounts",
                );
            }
            check_each(
                ctx,
                n,
                &fields.path(key),
                attr::check_service_account,
                "<serviceAccount> or <namespace>/<serviceAccount>, without wildcards",
            );
        }
    }
    if action == Action::Custom
        && identity
            + accounts
            + source.request_principals.len()
            + source.not_request_principals.len()
            > 0
    {
        ctx.error(
            node,
            format!(
                "{path}: principals, namespaces, serviceAccounts and requestPrincipals are not \
                 supported with CUSTOM"
            ),
            "ipBlocks/remoteIpBlocks only in a CUSTOM policy's source",
        );
    }
    for key in ["requestPrincipals", "notRequestPrincipals"] {
        if let Some(k) = fields.key(key) {
            ctx.unsupported(line(k), &fields.path(key), NO_JWT);
        }
    }
    report_regex_values(
        ctx,
        &fields,
        "principals",
        &source.principals,
        matcher::principal_regex,
    );
    report_regex_values(
        ctx,
        &fields,
        "notPrincipals",
        &source.not_principals,
        matcher::principal_regex,
    );
    report_regex_values(
        ctx,
        &fields,
        "namespaces",
        &source.namespaces,
        matcher::namespace_regex,
    );
    report_regex_values(
        ctx,
        &fields,
        "notNamespaces",
        &source.not_namespaces,
        matcher::namespace_regex,
    );
    Some(source)
}

/// A value istiod turns into a RE2 regex that meshproof's matcher cannot evaluate is reported.
fn report_regex_values(
    ctx: &mut Ctx,
    fields: &Fields,
    key: &str,
    values: &Values,
    regex: fn(&str) -> Option<String>,
) {
    for v in values {
        if let Some(re) = regex(&v.text) {
            if let Err(e) = matcher::Regex::new(&re) {
                ctx.unsupported(
                    v.line,
                    &fields.path(key),
                    format!(
                        "value {:?} becomes the RE2 regex {re:?}, which meshproof cannot \
                         evaluate ({e}): treated as never matching, and compiled as such",
                        v.text
                    ),
                );
            }
        }
    }
}

fn operation(ctx: &mut Ctx, node: &Located, path: &str) -> Option<Operation> {
    let fields = ctx.map(node, path, OPERATION_KEYS)?;
    let mut get = |key: &str| -> Values {
        fields
            .get(key)
            .map(|n| non_empty(ctx, n, &fields.path(key)))
            .unwrap_or_default()
    };
    let operation = Operation {
        line: line(node),
        hosts: get("hosts"),
        not_hosts: get("notHosts"),
        ports: get("ports"),
        not_ports: get("notPorts"),
        methods: get("methods"),
        not_methods: get("notMethods"),
        paths: get("paths"),
        not_paths: get("notPaths"),
    };
    let all = [
        &operation.hosts,
        &operation.not_hosts,
        &operation.ports,
        &operation.not_ports,
        &operation.methods,
        &operation.not_methods,
        &operation.paths,
        &operation.not_paths,
    ];
    if all.iter().all(|v| v.is_empty()) && written_empty(&fields) {
        ctx.error(
            node,
            format!("{path} is empty"),
            format!("at least one of {}", OPERATION_KEYS.join(", ")),
        );
    }
    for key in ["ports", "notPorts"] {
        if let Some(n) = fields.get(key) {
            check_each(
                ctx,
                n,
                &fields.path(key),
                |v| matcher::parse_port(v).map(|_| ()),
                "a port number 0-65535 as a string, e.g. \"8080\"",
            );
        }
    }
    for key in ["paths", "notPaths"] {
        if let Some(n) = fields.get(key) {
            check_each(
                ctx,
                n,
                &fields.path(key),
                matcher::check_path_template,
                "a path, /prefix*, *suffix, *, or a template with {*} / {**} ({**} last)",
            );
            let values = if key == "paths" {
                &operation.paths
            } else {
                &operation.not_paths
            };
            for v in values.iter().filter(|v| matcher::is_path_template(&v.text)) {
                ctx.unsupported(
                    v.line,
                    &fields.path(key),
                    format!(
                        "path template {:?} (Envoy uri_template) is not modelled: treated as \
                         never matching, and compiled as such",
                        v.text
                    ),
                );
            }
        }
    }
    Some(operation)
}

/// `when` keys istiod understands; anything else is rejected by Istio's validation.
fn condition(ctx: &mut Ctx, node: &Located, path: &str, action: Action) -> Option<Condition> {
    let fields = ctx.map(node, path, &["key", "values", "notValues"])?;
    let key = fields
        .get("key")
        .and_then(|n| ctx.string(n, &fields.path("key")));
    let values = fields
        .get("values")
        .map(|n| non_empty(ctx, n, &fields.path("values")))
        .unwrap_or_default();
    let not_values = fields
        .get("notValues")
        .map(|n| non_empty(ctx, n, &fields.path("notValues")))
        .unwrap_or_default();
    let Some(key) = key.filter(|k| !k.text.is_empty()) else {
        ctx.error(
            node,
            format!("{path}.key is missing"),
            "key: one of Istio's attributes, e.g. request.headers[x-token]",
        );
        return None;
    };
    if values.is_empty() && not_values.is_empty() {
        ctx.error(
            node,
            format!(
                "{path}: neither values nor notValues is set for key {}",
                key.text
            ),
            "values and/or notValues",
        );
    }
    match AttrKind::classify(&key.text) {
        Err(why) => {
            if let Some(k) = fields.get("key") {
                ctx.error(k, format!("{path}.key {:?}: {why}", key.text), ATTRIBUTES);
            }
            return None;
        }
        Ok(kind) => {
            for list in ["values", "notValues"] {
                if let Some(n) = fields.get(list) {
                    check_each(
                        ctx,
                        n,
                        &fields.path(list),
                        |v| attr::validate_value(kind, v),
                        kind.expected(),
                    );
                }
            }
            if values.len() + not_values.len() > 16 && kind == AttrKind::SourceServiceAccount {
                ctx.error(
                    node,
                    format!("{path}: more than 16 service accounts"),
                    "at most 16 values",
                );
            }
            if action == Action::Custom && kind.is_identity() {
                ctx.error(
                    node,
                    format!("{path}: {} is not supported with CUSTOM", key.text),
                    "conditions on IPs, ports, headers or SNI in a CUSTOM policy",
                );
            }
            if let Some(why) = kind.unsupported_why() {
                ctx.unsupported(key.line, &format!("{path}.key: {}", key.text), why);
            }
            if kind == AttrKind::SourceNamespace {
                report_regex_values(ctx, &fields, "values", &values, matcher::namespace_regex);
                report_regex_values(
                    ctx,
                    &fields,
                    "notValues",
                    &not_values,
                    matcher::namespace_regex,
                );
            }
            if kind == AttrKind::SourcePrincipal {
                report_regex_values(ctx, &fields, "values", &values, matcher::principal_regex);
                report_regex_values(
                    ctx,
                    &fields,
                    "notValues",
                    &not_values,
                    matcher::principal_regex,
                );
            }
        }
    }
    Some(Condition {
        line: line(node),
        key: key.text,
        values,
        not_values,
    })
}

/// Whether every field is written as absent (`null` or `[]`), so a value that failed to parse
/// does not also report "empty".
fn written_empty(fields: &Fields) -> bool {
    fields.entries.iter().all(|(_, v)| match &v.value {
        Node::Null => true,
        Node::Seq(items) => items.is_empty(),
        _ => false,
    })
}

/// A list of strings where the empty string is an error (Istio's CheckEmptyValues).
fn non_empty(ctx: &mut Ctx, node: &Located, path: &str) -> Values {
    let values = ctx.strings(node, path);
    if values.iter().any(|v| v.text.is_empty()) {
        ctx.error(
            node,
            format!("{path} contains an empty string"),
            "non-empty values",
        );
    }
    values.into_iter().filter(|v| !v.text.is_empty()).collect()
}

fn check_each<T>(
    ctx: &mut Ctx,
    node: &Located,
    path: &str,
    check: impl Fn(&str) -> Result<T, String>,
    expected: &str,
) {
    if let Node::Seq(items) = &node.value {
        for (i, item) in items.iter().enumerate() {
            if let Node::Str(s) = &item.value {
                if let Err(e) = check(s) {
                    ctx.error(item, format!("{path}[{i}] {s:?}: {e}"), expected);
                }
            }
        }
    }
}

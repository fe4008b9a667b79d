//! `DestinationRule.spec` → [`DestinationRule`]: host, `exportTo` and the top-level
//! `trafficPolicy.tls.mode` are modelled; everything else is listed as unsupported.

use super::fields::{Ctx, Fields};
use super::model::{ClientTlsMode, DestinationRule, ObjectMeta};
use super::yaml::{Located, Node, line};

const TRAFFIC_POLICY_KEYS: &[&str] = &[
    "loadBalancer",
    "connectionPool",
    "outlierDetection",
    "tls",
    "portLevelSettings",
    "tunnel",
    "proxyProtocol",
    "retryBudget",
];
const TLS_KEYS: &[&str] = &[
    "mode",
    "clientCertificate",
    "privateKey",
    "caCertificates",
    "credentialName",
    "subjectAltNames",
    "sni",
    "insecureSkipVerify",
    "caCrl",
];

pub fn destination_rule(
    ctx: &mut Ctx,
    meta: ObjectMeta,
    spec: Option<&Located>,
) -> DestinationRule {
    let mut dr = DestinationRule {
        tls_line: meta.line,
        meta,
        host: String::new(),
        export_to: Vec::new(),
        has_traffic_policy: false,
        tls_mode: None,
        has_workload_selector: false,
    };
    let Some(spec) = spec.filter(|s| s.value != Node::Null) else {
        ctx.errors.push(
            crate::error::SourceError::new(
                ctx.file,
                dr.meta.line,
                1,
                "DestinationRule has no spec",
            )
            .expected("spec.host"),
        );
        return dr;
    };
    let Some(fields) = ctx.map(
        spec,
        "spec",
        &[
            "host",
            "trafficPolicy",
            "subsets",
            "exportTo",
            "workloadSelector",
        ],
    ) else {
        return dr;
    };
    match fields.get("host").and_then(|n| ctx.string(n, "spec.host")) {
        Some(host) if !host.text.is_empty() => dr.host = host.text,
        _ => ctx.error(
            spec,
            "spec.host is missing",
            "host: <service FQDN or short name>",
        ),
    }
    if let Some(node) = fields.get("exportTo") {
        dr.export_to = export_to(ctx, node);
    }
    if let Some(node) = fields
        .get("workloadSelector")
        .filter(|n| n.value != Node::Null)
    {
        dr.has_workload_selector = true;
        let _ = ctx.map(node, "spec.workloadSelector", &["matchLabels"]);
        ctx.unsupported(
            line(node),
            "spec.workloadSelector",
            "the rule applies only to the selected client workloads, which meshproof does not \
             model: it is never used for client_tls_mode",
        );
    }
    if let Some(node) = fields
        .get("trafficPolicy")
        .filter(|n| n.value != Node::Null)
    {
        dr.has_traffic_policy = true;
        if let Some((mode, at)) = traffic_policy(ctx, node, "spec.trafficPolicy", true) {
            dr.tls_mode = Some(mode);
            dr.tls_line = at;
        }
    }
    if let Some(node) = fields.get("subsets") {
        for (i, subset) in ctx.list(node, "spec.subsets").into_iter().enumerate() {
            let path = format!("spec.subsets[{i}]");
            let Some(f) = ctx.map(subset, &path, &["name", "labels", "trafficPolicy"]) else {
                continue;
            };
            if let Some(n) = f.get("name") {
                ctx.string(n, &f.path("name"));
            }
            if let Some(n) = f.get("labels") {
                ctx.labels(n, &f.path("labels"));
            }
            if let Some(tp) = f.get("trafficPolicy").filter(|n| n.value != Node::Null) {
                traffic_policy(ctx, tp, &f.path("trafficPolicy"), false);
                ctx.unsupported(
                    line(tp),
                    &f.path("trafficPolicy"),
                    "subset traffic policies (used only when a VirtualService routes to the \
                     subset) are not modelled: client_tls_mode reports the top-level policy",
                );
            }
        }
    }
    dr
}

/// Reads a traffic policy; returns the TLS mode and its line when `top` (the modelled one).
fn traffic_policy(
    ctx: &mut Ctx,
    node: &Located,
    path: &str,
    top: bool,
) -> Option<(ClientTlsMode, u32)> {
    let fields = ctx.map(node, path, TRAFFIC_POLICY_KEYS)?;
    let mut mode = None;
    for (key, value) in &fields.entries {
        let field = fields.path(&key.value);
        match key.value.as_str() {
            "tls" => mode = tls(ctx, value, &field, top),
            "portLevelSettings" if top => ctx.unsupported(
                line(*key),
                &field,
                "per-port TLS settings are not modelled: client_tls_mode reports the top-level \
                 tls.mode for every port",
            ),
            _ if top => ctx.unsupported(
                line(*key),
                &field,
                "not security-relevant to meshproof: not evaluated",
            ),
            _ => {}
        }
    }
    mode
}

fn tls(ctx: &mut Ctx, node: &Located, path: &str, report: bool) -> Option<(ClientTlsMode, u32)> {
    let fields: Fields = ctx.map(node, path, TLS_KEYS)?;
    let mut mode = None;
    for (key, value) in &fields.entries {
        let field = fields.path(&key.value);
        if key.value == "mode" {
            let parsed = match ctx.string(value, &field).as_ref().map(|v| v.text.as_str()) {
                None => None,
                Some("DISABLE") => Some(ClientTlsMode::Disable),
                Some("SIMPLE") => Some(ClientTlsMode::Simple),
                Some("MUTUAL") => Some(ClientTlsMode::Mutual),
                Some("ISTIO_MUTUAL") => Some(ClientTlsMode::IstioMutual),
                Some(other) => {
                    ctx.error(
                        *value,
                        format!("{field} \"{other}\" is not a TLS mode"),
                        "DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL",
                    );
                    None
                }
            };
            mode = parsed.map(|m| (m, line(*value)));
        } else if report {
            ctx.unsupported(
                line(*key),
                &field,
                "only the TLS mode is modelled (certificates, SNI and SAN checks are not)",
            );
        }
    }
    mode
}

fn export_to(ctx: &mut Ctx, node: &Located) -> Vec<String> {
    let values: Vec<String> = ctx
        .strings(node, "spec.exportTo")
        .into_iter()
        .map(|v| v.text)
        .collect();
    let valid = |v: &String| {
        v == "*"
            || v == "."
            || v == "~"
            || (!v.is_empty()
                && v.len() <= 63
                && v.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
    };
    if let Some(bad) = values.iter().find(|v| !valid(v)) {
        ctx.error(
            node,
            format!("spec.exportTo entry {bad:?} is invalid"),
            "*, ., ~ or namespace names",
        );
    }
    if values.iter().any(|v| v == "~") && values.len() > 1 {
        ctx.error(node, "spec.exportTo mixes ~ with other entries", "~ alone");
    }
    values
}

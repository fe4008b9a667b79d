//! `AuthorizationPolicy.spec` → [`AuthorizationPolicy`], validated as Istio's admission webhook
//! validates it (what the cluster would reject is an error here too), with every field that is
//! read but not modelled listed as [`super::Unsupported`].

use super::fields::{Ctx, Fields};
use super::model::{Action, AuthorizationPolicy, Labels, ObjectMeta};
use super::parse_rule::rule;
use super::yaml::{Located, Node, line};

const SPEC_KEYS: &[&str] = &[
    "selector",
    "targetRef",
    "targetRefs",
    "action",
    "provider",
    "rules",
];

/// Reads `spec` (absent or `null` = `{}`, which Istio treats as ALLOW with no rules).
pub fn authorization_policy(
    ctx: &mut Ctx,
    meta: ObjectMeta,
    spec: Option<&Located>,
    dry_run: bool,
) -> AuthorizationPolicy {
    let mut policy = AuthorizationPolicy {
        meta,
        action: Action::Allow,
        selector: None,
        target_refs: Vec::new(),
        provider: None,
        rules: Vec::new(),
        dry_run,
    };
    let Some(spec) = spec.filter(|s| s.value != Node::Null) else {
        return policy;
    };
    let Some(fields) = ctx.map(spec, "spec", SPEC_KEYS) else {
        return policy;
    };
    if let Some(node) = fields.get("action") {
        policy.action = action(ctx, node);
    }
    policy.selector = fields
        .get("selector")
        .map(|n| selector(ctx, n, "spec.selector"));
    policy.target_refs = target_refs(ctx, &fields);
    if policy.selector.is_some() && !policy.target_refs.is_empty() {
        if let Some(key) = fields.key("selector") {
            ctx.error(
                key,
                "both spec.selector and spec.targetRef(s) are set",
                "only one of targetRefs or selector",
            );
        }
    }
    if let Some(node) = fields.get("provider") {
        policy.provider = provider(ctx, node);
        if policy.action != Action::Custom {
            ctx.error(
                node,
                format!("spec.provider is set on a {} policy", policy.action),
                "provider only with action: CUSTOM",
            );
        }
    }
    let mut rule_items = 0;
    if let Some(node) = fields.get("rules") {
        let items = ctx.list(node, "spec.rules");
        rule_items = items.len();
        for (i, item) in items.into_iter().enumerate() {
            if let Some(rule) = rule(ctx, item, i, policy.action) {
                policy.rules.push(rule);
            }
        }
    }
    check_action(ctx, &policy, spec, rule_items);
    report_binding(ctx, &policy, &fields);
    policy
}

fn action(ctx: &mut Ctx, node: &Located) -> Action {
    match ctx
        .string(node, "spec.action")
        .as_ref()
        .map(|v| v.text.as_str())
    {
        Some("ALLOW") | None => Action::Allow,
        Some("DENY") => Action::Deny,
        Some("AUDIT") => Action::Audit,
        Some("CUSTOM") => Action::Custom,
        Some(other) => {
            ctx.error(
                node,
                format!("spec.action \"{other}\" is not an action"),
                "ALLOW, DENY, AUDIT or CUSTOM (upper case)",
            );
            Action::Allow
        }
    }
}

/// `selector: {matchLabels: {...}}` (shared with PeerAuthentication).
pub fn selector(ctx: &mut Ctx, node: &Located, path: &str) -> Labels {
    let Some(fields) = ctx.map(node, path, &["matchLabels"]) else {
        return Labels::new();
    };
    let Some(labels_node) = fields.get("matchLabels") else {
        return Labels::new();
    };
    let labels = ctx.labels(labels_node, &fields.path("matchLabels"));
    for (k, v) in &labels {
        if k.is_empty() || k.contains('*') || v.contains('*') {
            ctx.error(
                labels_node,
                format!("selector label {k:?}={v:?} is invalid"),
                "non-empty label keys without wildcards (Istio rejects '*' in selectors)",
            );
        }
    }
    labels
}

fn target_refs(ctx: &mut Ctx, fields: &Fields) -> Vec<String> {
    let mut refs = Vec::new();
    let mut read = |ctx: &mut Ctx, node: &Located, path: &str| {
        let Some(f) = ctx.map(node, path, &["group", "kind", "name", "namespace"]) else {
            return;
        };
        let get = |ctx: &mut Ctx, key: &str| {
            f.get(key)
                .and_then(|n| ctx.string(n, &f.path(key)))
                .map(|v| v.text)
                .unwrap_or_default()
        };
        let (group, kind, name) = (get(ctx, "group"), get(ctx, "kind"), get(ctx, "name"));
        if kind.is_empty() || name.is_empty() {
            ctx.error(node, format!("{path} lacks kind or name"), "kind and name");
        }
        refs.push(format!("{group}/{kind}/{name}"));
    };
    if let Some(node) = fields.get("targetRef").filter(|n| n.value != Node::Null) {
        read(ctx, node, "spec.targetRef");
    }
    if let Some(node) = fields.get("targetRefs") {
        for (i, item) in ctx.list(node, "spec.targetRefs").into_iter().enumerate() {
            read(ctx, item, &format!("spec.targetRefs[{i}]"));
        }
    }
    refs
}

fn provider(ctx: &mut Ctx, node: &Located) -> Option<String> {
    let fields = ctx.map(node, "spec.provider", &["name"])?;
    fields
        .get("name")
        .and_then(|n| ctx.string(n, "spec.provider.name"))
        .map(|v| v.text)
}

/// Istio rejects DENY and CUSTOM policies without rules (`rules: []` is the same as none).
fn check_action(ctx: &mut Ctx, policy: &AuthorizationPolicy, spec: &Located, rule_items: usize) {
    match policy.action {
        Action::Deny if rule_items == 0 => {
            ctx.error(
                spec,
                "a DENY policy without `rules` never triggers",
                "rules: [{}] to deny every request, or rules that say what to deny",
            );
        }
        Action::Custom => {
            if rule_items == 0 {
                ctx.error(
                    spec,
                    "a CUSTOM policy without `rules` never triggers",
                    "rules: [{}] to send every request to the provider",
                );
            }
            if policy.provider.as_deref().unwrap_or("").is_empty() {
                ctx.error(
                    spec,
                    "CUSTOM policy has no provider.name",
                    "provider: {name: <extension provider>}",
                );
            }
        }
        _ => {}
    }
}

/// Bindings Istio itself will not apply to a sidecar, and CUSTOM, are listed as unsupported.
fn report_binding(ctx: &mut Ctx, policy: &AuthorizationPolicy, fields: &Fields) {
    if !policy.target_refs.is_empty() {
        let key = fields.key("targetRefs").or_else(|| fields.key("targetRef"));
        ctx.unsupported(
            key.map(line).unwrap_or(policy.meta.line),
            "spec.targetRefs",
            format!(
                "targetRefs ({}) bind the policy to a Gateway, waypoint or Service; Istio \
                 ignores such a policy for sidecar workloads, and so do evaluate and \
                 envoy_rbac (it protects no sidecar)",
                policy.target_refs.join(", ")
            ),
        );
    }
    if policy.action == Action::Custom {
        let key = fields.key("action");
        ctx.unsupported(
            key.map(line).unwrap_or(policy.meta.line),
            "spec.action: CUSTOM",
            format!(
                "the external authorizer `{}` is not modelled: evaluate and envoy_rbac skip \
                 this policy (Istio would ask it before DENY and ALLOW)",
                policy.provider.as_deref().unwrap_or("")
            ),
        );
    }
}

//! AuthorizationPolicies → Envoy RBAC filter configs, the way istiod builds them for a sidecar
//! (`pilot/pkg/security/authz/builder`), in Envoy's proto3 JSON (snake_case field names).
//!
//! * One filter per action, in chain order: AUDIT (`action: LOG`, decides nothing), DENY, ALLOW.
//!   No policy of an action → no filter for it; so no ALLOW policy → no ALLOW filter → allowed.
//! * One Envoy policy per rule, named `ns[<ns>]-policy[<name>]-rule[<i>]`. A policy without
//!   rules gets istiod's never-matching policy (`not_rule: any` / `not_id: any`) as `rule[0]`,
//!   so an ALLOW `spec: {}` yields an ALLOW filter that matches nothing: deny all.
//! * `istio.io/dry-run` policies go to `shadow_rules` (stat prefix `istio_dry_run_allow_` /
//!   `istio_dry_run_deny_`); a filter with only shadow rules enforces nothing.
//! * CUSTOM policies are not compiled (no ext_authz is modelled; listed as unsupported).
//! * `http` is for HTTP ports (HCM filters), `network` for TCP ports (`stat_prefix: tcp.`),
//!   built with istiod's TCP rules: an ALLOW rule with any HTTP-only field (hosts, methods,
//!   paths, requestPrincipals, request.headers / request.auth.* conditions) is dropped — so an
//!   ALLOW policy whose every rule is HTTP-only denies all TCP traffic — and a DENY/AUDIT rule
//!   loses just those values (a DENY of `methods: [POST]` denies every TCP connection). A
//!   policy with only L4 fields compiles to the same rules in both.
//!
//! Matchers, as istiod writes them: principals → `authenticated.principal_name` on
//! `spiffe://<principal>` (exact / prefix; a `*x` suffix is the regex `spiffe://.*x`, `*` is
//! `.+`); namespaces → `safe_regex` `.*/ns/<ns>/.*`; paths → `url_path` exact / prefix /
//! suffix, so `/quotes/*` is prefix `/quotes/` (never `/quotes`, which would also match
//! `/quotesXYZ`); methods → `:method` header; hosts → `:authority`, any case; ports →
//! `destination_port`; notX → `not_rule` / `not_id`; `rules: [{}]` → `any: true`. Header
//! matchers use `string_match` (istiod's current form; the deprecated `exact_match` is not used).

use serde_json::{Map, Value as Json, json};

use super::index::PolicyIndex;
use super::model::{Action, AuthorizationPolicy, Labels, MeshPolicies, Unsupported};
use super::translate::{self, Gen, GenRule};
use super::trust;

pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
pub const HTTP_RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
pub const NETWORK_RBAC_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC";
/// istiod's stat prefix for the network RBAC filter.
pub const NETWORK_STAT_PREFIX: &str = "tcp.";

/// The RBAC filters for one workload's inbound sidecar.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvoyRbac {
    /// `http_filters` entries (`{name, typed_config}`), in chain order, before the router.
    pub http: Vec<Json>,
    /// Network `filters` entries for TCP filter chains, in chain order, before `tcp_proxy`.
    pub network: Vec<Json>,
    /// Unsupported fields of the policies that apply to this workload.
    pub unsupported: Vec<Unsupported>,
}

/// Compiles the policies that apply to a sidecar workload. `trust_domain_aware`: rewrite
/// `cluster.local/ns/...` principals (and those of trust domain aliases) into the mesh's trust
/// domains, as istiod does — this is what [`super::evaluate`] always models; `false` compiles
/// principals verbatim (only equivalent when the mesh trust domain is `cluster.local` without
/// aliases).
pub fn envoy_rbac(
    config: &MeshPolicies,
    workload_namespace: &str,
    labels: &Labels,
    trust_domain_aware: bool,
) -> EnvoyRbac {
    let applicable = PolicyIndex::new(config).applicable(workload_namespace, labels);
    let bundle = trust::bundle(&config.mesh);
    let bundle = trust_domain_aware.then_some(bundle.as_slice());
    let mut out = EnvoyRbac::default();
    for action in [Action::Audit, Action::Deny, Action::Allow] {
        let policies: Vec<&AuthorizationPolicy> = applicable
            .iter()
            .filter(|p| p.action == action)
            .copied()
            .collect();
        if policies.is_empty() {
            continue;
        }
        let http = rules(&policies, action, false, bundle);
        out.http.push(json!({
            "name": HTTP_RBAC,
            "typed_config": typed_config(HTTP_RBAC_TYPE, http, None),
        }));
        let tcp = rules(&policies, action, true, bundle);
        out.network.push(json!({
            "name": NETWORK_RBAC,
            "typed_config": typed_config(NETWORK_RBAC_TYPE, tcp, Some(NETWORK_STAT_PREFIX)),
        }));
    }
    let names: Vec<String> = applicable.iter().map(|p| p.meta.display_name()).collect();
    out.unsupported = config
        .unsupported
        .iter()
        .filter(|u| names.contains(&u.object))
        .cloned()
        .collect();
    out
}

/// The `rules` / `shadow_rules` of one filter.
struct Built {
    action: Action,
    enforce: Option<Map<String, Json>>,
    shadow: Option<Map<String, Json>>,
}

fn rules(
    policies: &[&AuthorizationPolicy],
    action: Action,
    for_tcp: bool,
    trust_bundle: Option<&[String]>,
) -> Built {
    let mut built = Built {
        action,
        enforce: None,
        shadow: None,
    };
    for policy in policies {
        let target = if policy.dry_run {
            built.shadow.get_or_insert_with(Map::new)
        } else {
            built.enforce.get_or_insert_with(Map::new)
        };
        let g = Gen {
            for_tcp,
            action,
            policy_namespace: &policy.meta.namespace,
            trust_bundle,
        };
        let name = |i: usize| {
            format!(
                "ns[{}]-policy[{}]-rule[{i}]",
                policy.meta.namespace, policy.meta.name
            )
        };
        for (i, rule) in policy.rules.iter().enumerate() {
            if let Ok(generated) = translate::generate(rule, &g) {
                target.insert(name(i), generated.to_json());
            }
        }
        if policy.rules.is_empty() {
            target.insert(name(0), GenRule::match_never().to_json());
        }
    }
    built
}

fn typed_config(type_url: &str, built: Built, stat_prefix: Option<&str>) -> Json {
    let action = match built.action {
        Action::Allow => "ALLOW",
        Action::Deny | Action::Custom => "DENY",
        Action::Audit => "LOG",
    };
    let mut config = Map::new();
    config.insert("@type".into(), json!(type_url));
    if let Some(prefix) = stat_prefix {
        config.insert("stat_prefix".into(), json!(prefix));
    }
    if let Some(policies) = built.enforce {
        config.insert(
            "rules".into(),
            json!({ "action": action, "policies": policies }),
        );
    }
    if let Some(policies) = built.shadow {
        config.insert(
            "shadow_rules".into(),
            json!({ "action": action, "policies": policies }),
        );
        let prefix = match built.action {
            Action::Allow => "istio_dry_run_allow_",
            Action::Deny => "istio_dry_run_deny_",
            _ => "",
        };
        if !prefix.is_empty() {
            config.insert("shadow_rules_stat_prefix".into(), json!(prefix));
        }
    }
    Json::Object(config)
}

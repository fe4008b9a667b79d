//! Who the enforcing ALLOW policies of a workload name as callers (`rules[].from[].source`).
//!
//! `verify` cannot judge every caller → callee pair of a large mesh, so its default-deny sample
//! looks first at the callers the configuration itself names: a caller an ALLOW policy names but
//! the profile does not allow is exactly where widened access hides (a wrong principal, a policy
//! copied from a neighbour). Naming is read, not decided: whether a named caller is really
//! allowed is still [`super::PolicyIndex::evaluate`]'s call.

use super::index::PolicyIndex;
use super::model::{Action, Labels};
use super::trust;

/// Caller patterns, in the order the policies (creation order) and their rules write them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamedSources {
    /// `principals` values after istiod's trust-domain migration: exact, `prefix*`, `*suffix`
    /// or `*`, without `spiffe://`.
    pub principals: Vec<String>,
    /// `namespaces` values as written (exact, `prefix*`, `*suffix` or `*`).
    pub namespaces: Vec<String>,
    /// `serviceAccounts` values as the principal suffix they match: `/ns/<ns>/sa/<sa>` (a bare
    /// `sa` is in the policy's namespace).
    pub service_account_suffixes: Vec<String>,
}

impl PolicyIndex<'_> {
    /// The callers the enforcing ALLOW policies applying to a workload name.
    pub fn named_sources(&self, namespace: &str, labels: &Labels) -> NamedSources {
        let mut named = NamedSources::default();
        let allows = self
            .applicable(namespace, labels)
            .into_iter()
            .filter(|p| p.action == Action::Allow && !p.dry_run);
        for policy in allows {
            for source in policy.rules.iter().flat_map(|r| &r.from) {
                named.principals.extend(
                    trust::migrate(&source.principals, self.bundle())
                        .into_iter()
                        .map(|v| v.text),
                );
                named
                    .namespaces
                    .extend(source.namespaces.iter().map(|v| v.text.clone()));
                named
                    .service_account_suffixes
                    .extend(
                        source
                            .service_accounts
                            .iter()
                            .map(|v| match v.text.split_once('/') {
                                Some((ns, sa)) => format!("/ns/{ns}/sa/{sa}"),
                                None => format!("/ns/{}/sa/{}", policy.meta.namespace, v.text),
                            }),
                    );
            }
        }
        named
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_eval::policies_in;
    use super::*;
    use crate::policy::istio::MeshConfig;

    #[test]
    fn names_come_from_enforcing_allow_policies_that_apply() {
        let config = policies_in(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: api, namespace: shop }
spec:
  selector: { matchLabels: { app: api } }
  rules:
  - from:
    - source: { principals: ["cluster.local/ns/web/sa/front", "td/ns/ops/*"] }
    - source: { namespaces: [batch] }
  - from:
    - source: { serviceAccounts: ["robot", "ops/cron"] }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: other-workload, namespace: shop }
spec:
  selector: { matchLabels: { app: cart } }
  rules: [{ from: [{ source: { principals: ["td/ns/x/sa/cart-caller"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny, namespace: shop }
spec:
  action: DENY
  rules: [{ from: [{ source: { principals: ["td/ns/x/sa/denied"] } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: shadow
  namespace: shop
  annotations: { "istio.io/dry-run": "true" }
spec:
  rules: [{ from: [{ source: { principals: ["td/ns/x/sa/shadow"] } }] }]
"#,
            MeshConfig {
                trust_domain: "td".into(),
                ..MeshConfig::default()
            },
        );
        let labels: Labels = [("app".to_owned(), "api".to_owned())].into();
        let named = PolicyIndex::new(&config).named_sources("shop", &labels);
        assert_eq!(named.principals, ["td/ns/web/sa/front", "td/ns/ops/*"]);
        assert_eq!(named.namespaces, ["batch"]);
        assert_eq!(
            named.service_account_suffixes,
            ["/ns/shop/sa/robot", "/ns/ops/sa/cron"]
        );
    }
}

//! Istio security policy semantics: AuthorizationPolicy, PeerAuthentication, DestinationRule —
//! read from manifests, judged the way Istio judges them, and compiled to the Envoy RBAC filters
//! istiod would push.
//!
//! # Security contract
//!
//! **Loading** ([`load`], [`load_all`], [`parse_str`]) accepts a file or a directory of `*.yaml`
//! / `*.yml` multi-document streams. Istio objects (`security.istio.io` v1/v1beta1
//! AuthorizationPolicy and PeerAuthentication, `networking.istio.io` v1/v1beta1/v1alpha3
//! DestinationRule) are read strictly: malformed YAML, wrong types, unknown keys (a typo such as
//! `principal:`), duplicate objects, and anything Istio's admission webhook would reject (empty
//! `from.source`, DENY without rules, `provider` on a non-CUSTOM policy, bad IPs, ports, path
//! templates or `when` keys...) are [`SourceError`](crate::error::SourceError)s at `file:line:col`,
//! all collected in one pass; never a panic. Other documents are skipped and counted
//! ([`MeshPolicies::skipped`]). Every object keeps its file and line. Fields that are read but not
//! fully modelled are never silently ignored: each is an [`Unsupported`] entry saying what
//! evaluation does instead (see below).
//!
//! **[`evaluate`]** decides a [`Request`] exactly as the destination's sidecar would:
//! policies of the root namespace (mesh-wide) and of the workload's namespace whose
//! `selector.matchLabels` is a subset of the workload's labels (no selector: every workload);
//! CUSTOM first, then DENY, then ALLOW; AUDIT and `istio.io/dry-run` policies decide nothing; with
//! any ALLOW policy applying the request must match one of its rules, otherwise it is allowed;
//! `spec: {}` allows nothing, `rules: [{}]` matches everything. Within a rule `from` entries are
//! OR'ed, fields of a source AND'ed, values of a field OR'ed (likewise `to` and `when`), `notX`
//! negates. Each rule is matched through istiod's own translation to Envoy RBAC, the same one
//! [`envoy::envoy_rbac`] renders, so the lab's Envoy enforces what `evaluate` predicts:
//!
//! * strings: exact, `abc*` prefix, `*abc` suffix, `*` = present / non-empty; paths are matched
//!   without the query string; `/quotes/*` is the prefix `/quotes/`, which `/quotesXYZ` and
//!   `/quotes` do not match; hosts ignore case; methods and headers do not;
//! * principals are matched against `spiffe://<principal>`; plaintext (`principal: None`)
//!   matches no `principals` / `namespaces` / `serviceAccounts` value, and every `notX` of them;
//! * **source namespaces** come from the principal, as istiod's regex `.*/ns/<ns>/.*` over the
//!   whole URI: the peer is in namespace `foo` iff its SPIFFE ID contains the segments
//!   `/ns/foo/` followed by more path. A principal without `ns/<x>/sa/<y>` — such as the custom
//!   schema `spiffe://tradepulse/prod/strategy` — has **no namespace**: `namespaces: [...]` never
//!   matches it and `notNamespaces` always does. Use `principals` for such meshes;
//! * `cluster.local/ns/...` principals are rewritten into the mesh trust domain and its aliases
//!   (istiod's trust-domain migration, [`MeshConfig::trust_domain`]);
//! * ports match the destination workload port; on a TCP request ([`Protocol::Tcp`]) an ALLOW
//!   rule using any HTTP-only field is dropped and a DENY rule loses those fields (so it denies
//!   more), as on Istio's TCP filter chains;
//! * `source.ip` / `ipBlocks` match the caller's address; `remote.ip` / `remoteIpBlocks` match it
//!   too (no X-Forwarded-For or PROXY protocol is modelled).
//!
//! **Where it deliberately differs from Istio** (each occurrence is an [`Unsupported`] entry):
//! CUSTOM policies are skipped (their external authorizer is unknown); no JWT is modelled, so
//! `requestPrincipals` and `request.auth.*` conditions see a request without a token (values
//! never match, notValues always do); `experimental.envoy.filters.*` metadata never matches;
//! path templates (`{*}`, `{**}`) never match; a principal/namespace value that becomes a regex
//! meshproof's RE2 subset cannot evaluate never matches (and is compiled that way). Policies with
//! `targetRef(s)` bind to Gateways/waypoints: Istio never applies them to a sidecar, and neither
//! does meshproof — they are reported because they protect no sidecar. Workloads are sidecars:
//! gateway and ambient (ztunnel/waypoint) enforcement is out of scope.
//!
//! **[`mtls_mode`]**: workload selector > namespace > mesh (root namespace) > PERMISSIVE, `UNSET`
//! inheriting, `portLevelMtls` per workload port (workload policies only), oldest first within a
//! scope. **[`client_tls_mode`]**: the DestinationRule TLS mode for a host (see
//! [`destination`] for the lookup and what is not modelled).
//!
//! Object order, which decides "oldest wins": `metadata.creationTimestamp`, then name, then
//! namespace (Istio's order); objects without a timestamp count as newer than those with one and
//! as created together, as after one `kubectl apply`.

mod attr;
pub mod destination;
pub mod envoy;
mod evaluate;
mod fields;
mod index;
mod load;
mod matcher;
mod model;
mod named;
mod parse_authz;
mod parse_dr;
mod parse_peer;
mod parse_rule;
mod peer;
mod regex;
mod request;
mod select;
mod translate;
mod trust;
mod yaml;

#[cfg(test)]
mod tests_envoy;
#[cfg(test)]
mod tests_eval;
#[cfg(test)]
mod tests_load;
#[cfg(test)]
mod tests_real_envoy;
#[cfg(test)]
mod tests_tls;

pub use destination::client_tls_mode;
pub use envoy::{EnvoyRbac, envoy_rbac};
pub use evaluate::{AuthzAction, AuthzDecision, Verdict, evaluate};
pub use index::PolicyIndex;
pub use load::{load, load_all, parse_str};
pub use model::*;
pub use named::NamedSources;
pub use peer::mtls_mode;
pub use request::{Caller, Protocol, Request, Workload};

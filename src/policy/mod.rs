//! Configured policy, read from Kubernetes manifests and judged the way the real engines judge it:
//! Istio authorization and peer authentication (`istio`), Gatekeeper admission in Rego (`gatekeeper`).

pub mod gatekeeper;
pub mod istio;

//! The `kind` and `cluster` targets: the real thing. A kind cluster created per run (or an
//! existing cluster reached through a kubeconfig context), Istio, Gatekeeper and SPIRE installed
//! at pinned versions, the profile's rendered manifests and probe workloads applied, and every
//! observation made through Kubernetes.
//!
//! # How the cluster is driven (decision)
//!
//! Through the real command-line tools — `kind`, `kubectl`, `helm`, `istioctl` (and `docker`,
//! which kind needs) — run with `std::process` behind one seam, [`tool::Toolbox`]: the program
//! is found on `PATH` or named by `MESHPROOF_<TOOL>`, its arguments are recorded, its stdout,
//! stderr and exit code captured, and every call has a named timeout. kube-rs is **not** used:
//! kubectl must be on the machine anyway (people debug with it, the runbooks are written in it),
//! kube + k8s-openapi would add minutes of CI build on two cores, and one mechanism —
//! `kubectl apply --server-side`, `create --dry-run=server`, `exec`, `get -o json`, `wait`,
//! `rollout status`, `patch`, `delete` — is easier to fake in tests and to audit in a run's
//! records than two. Everything the harness does to a cluster is a command line a person can
//! re-run by hand.
//!
//! # Security contract
//!
//! * The plug-in CA's private key (Istio's `cacerts`, SPIRE's upstream authority) reaches the
//!   cluster only on kubectl's **stdin** ([`tool::Stdin::Secret`]): never on a command line, in a
//!   record, a progress line, an error or a report. The kubeconfig kind writes for a run, and
//!   Istio's plug-in CA files (key `0600`), live in a private (0700) working directory that is
//!   removed when the target is dropped, after the cluster is deleted.
//! * Reads of secrets for a fault's undo are marked sensitive and held in memory only.
//! * Certificates read from sidecars come from Envoy's config dump, in which Envoy itself redacts
//!   private keys; only certificate chains are kept.
//!
//! # Layout
//!
//! [`versions`] pins every version in one place; [`preflight`] names every missing tool;
//! [`kind`] creates, reuses, keeps or deletes the cluster (also on Ctrl-C) and preloads images;
//! [`kubectl`] wraps the calls; [`install`] installs the stack (with [`spire_upstream`], the root
//! SPIRE profiles chain to); [`probe`], [`admission`],
//! [`certs`], [`health`], [`metrics`] observe, and [`live`] puts observations together the way
//! the live checklist steps ask for them; [`faults`] injects faults with their undo;
//! [`applicability`] says which scenarios a target can run; [`target`] implements [`Target`].
//!
//! [`Target`]: crate::target::Target

pub mod admission;
pub mod applicability;
pub mod certs;
pub mod faults;
pub mod health;
pub mod install;
pub mod kind;
pub mod kubectl;
pub mod live;
pub mod metrics;
pub mod preflight;
pub mod probe;
pub mod spire_upstream;
pub mod target;
pub mod tool;
pub mod versions;
pub mod wait;

pub use applicability::{Applicability, TargetKind};
pub use kind::{ClusterGuard, KindOptions};
pub use kubectl::Kubectl;
pub use preflight::{Preflight, PreflightError};
pub use target::KubeTarget;
pub use tool::{Program, Toolbox};
pub use wait::Timeouts;

/// Why the kube targets could not do what was asked. Every variant means the harness could not
/// run (exit code 2), never that a check failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("{0}")]
    Preflight(#[from] PreflightError),
    #[error("{0}")]
    Tool(#[from] tool::ToolError),
    #[error("{what}: gave up after the {timeout}")]
    Timeout {
        what: String,
        timeout: tool::Timeout,
    },
    #[error("{what}: unexpected answer: {reason}")]
    Parse { what: String, reason: String },
    #[error("{what}: {reason}")]
    Input { what: String, reason: String },
    #[error(
        "{what} is destructive and the target is an existing cluster: refused (pass --allow-destructive to run it)"
    )]
    DestructiveRefused { what: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Pki(#[from] crate::pki::PkiError),
}

impl KubeError {
    /// The CLI's exit code for this error: always 2 (the harness could not run).
    pub fn exit_code(&self) -> u8 {
        2
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> KubeError {
        let what = what.into();
        move |source| KubeError::Io { what, source }
    }

    pub(crate) fn parse(what: impl Into<String>, reason: impl Into<String>) -> KubeError {
        KubeError::Parse {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<KubeError> for crate::target::TargetError {
    fn from(error: KubeError) -> Self {
        crate::target::TargetError {
            target: "kube".into(),
            message: error.to_string(),
        }
    }
}

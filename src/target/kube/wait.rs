//! Waiting done right: every wait has a named limit, readiness is watched by the API server
//! (`kubectl wait`, `kubectl rollout status`, `helm --wait`: all watch-based), and eventual
//! consistency (a CRD not yet served, a webhook not yet answering) is retried with exponential
//! backoff inside a named budget. Nothing here sleeps a fixed time.

use std::time::{Duration, Instant};

use super::KubeError;
use super::tool::{Timeout, ToolError, Toolbox};

/// Every limit the kube targets use, by name. Each can be raised with
/// `MESHPROOF_TIMEOUT_<NAME>` (`MESHPROOF_TIMEOUT_HELM_INSTALL=15m`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// One plain kubectl/helm/istioctl call (a get, an apply, a version).
    pub call: Duration,
    /// `kind create cluster`, control plane ready included.
    pub cluster_create: Duration,
    /// `kind delete cluster`.
    pub cluster_delete: Duration,
    /// One `kind load image-archive`.
    pub image_load: Duration,
    /// One `helm upgrade --install --wait`.
    pub helm_install: Duration,
    /// One workload's rollout (`kubectl rollout status`, `kubectl wait`).
    pub rollout: Duration,
    /// A CRD becoming established / a ConstraintTemplate becoming created.
    pub established: Duration,
    /// Retrying an eventually-consistent call (new CRD not yet served, webhook not yet up).
    pub eventual: Duration,
    /// One request sent from a probe pod (`kubectl exec … curl`).
    pub probe: Duration,
    /// A fault's undo, back to ready.
    pub recovery: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        let m = |minutes: u64| Duration::from_secs(minutes * 60);
        Timeouts {
            call: Duration::from_secs(60),
            cluster_create: m(10),
            cluster_delete: m(3),
            image_load: m(5),
            helm_install: m(10),
            rollout: m(5),
            established: m(2),
            eventual: m(3),
            probe: Duration::from_secs(30),
            recovery: m(5),
        }
    }
}

macro_rules! named {
    ($($field:ident => $name:literal),* $(,)?) => {
        impl Timeouts {
            $(
                pub fn $field(&self) -> Timeout {
                    Timeout::new($name, self.$field)
                }
            )*

            /// Every timeout, named.
            pub fn all(&self) -> Vec<Timeout> {
                vec![$(self.$field()),*]
            }

            fn set(&mut self, name: &str, limit: Duration) -> bool {
                match name {
                    $($name => { self.$field = limit; true })*
                    _ => false,
                }
            }
        }
    };
}

named! {
    call => "call",
    cluster_create => "cluster-create",
    cluster_delete => "cluster-delete",
    image_load => "image-load",
    helm_install => "helm-install",
    rollout => "rollout",
    established => "established",
    eventual => "eventual",
    probe => "probe",
    recovery => "recovery",
}

impl Timeouts {
    /// The defaults, with `MESHPROOF_TIMEOUT_<NAME>` overrides from the environment.
    pub fn from_env() -> Result<Self, KubeError> {
        let mut timeouts = Timeouts::default();
        for timeout in Timeouts::default().all() {
            if let Ok(text) = std::env::var(timeout.env_var()) {
                let limit = crate::duration::parse(&text).map_err(|reason| KubeError::Input {
                    what: timeout.env_var(),
                    reason: format!("{reason}; expected e.g. 90s, 10m"),
                })?;
                timeouts.set(timeout.name, limit);
            }
        }
        Ok(timeouts)
    }

    /// Sets one limit by name (`--timeout rollout=10m` in a CLI).
    pub fn with(mut self, name: &str, limit: Duration) -> Result<Self, KubeError> {
        if self.set(name, limit) {
            Ok(self)
        } else {
            let names: Vec<&str> = self.all().iter().map(|t| t.name).collect();
            Err(KubeError::Input {
                what: format!("timeout {name:?}"),
                reason: format!("unknown timeout; expected one of {}", names.join(", ")),
            })
        }
    }

    /// `--timeout=300s` for kubectl/helm flags.
    pub fn flag(limit: Duration) -> String {
        format!("{}s", limit.as_secs().max(1))
    }
}

/// Exponential backoff between attempts of an eventually-consistent call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// For tests: retries without noticeable pauses.
    pub fn immediate() -> Self {
        Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(2),
        }
    }
}

/// What the API server says while it is still catching up. A call failing this way is retried;
/// any other failure is final.
pub fn is_transient(error: &ToolError) -> bool {
    const PATTERNS: &[&str] = &[
        "no matches for kind",
        "ensure CRDs are installed first",
        "the server could not find the requested resource",
        "failed calling webhook",
        "connection refused",
        // kubectl's own words for it, while the API server is not listening (yet, or again).
        "was refused - did you specify the right host or port",
        "the server is currently unable to handle the request",
        "i/o timeout",
        "TLS handshake timeout",
        "etcdserver: request timed out",
        "context deadline exceeded",
        "Internal error occurred",
        "the object has been modified",
        "no endpoints available for service",
        "connection reset by peer",
        "http2: client connection lost",
        // `rollout restart` stamps the second; a second restart within it is refused (seen on a
        // real API server when a fault's undo restarts what the fault had just restarted).
        "restart has already been triggered within the past second",
    ];
    match error {
        ToolError::Failed { stderr, .. } => PATTERNS.iter().any(|p| stderr.contains(p)),
        ToolError::TimedOut { .. } => true,
        _ => false,
    }
}

/// Calls `attempt` until it succeeds, a failure is not [`is_transient`], or `budget` runs out;
/// waits with exponential backoff between attempts and says so on the progress line.
pub fn retry<T>(
    tools: &Toolbox,
    what: &str,
    budget: Timeout,
    backoff: Backoff,
    mut attempt: impl FnMut() -> Result<T, ToolError>,
) -> Result<T, KubeError> {
    let deadline = Instant::now() + budget.limit;
    let mut pause = backoff.first;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        match attempt() {
            Ok(value) => return Ok(value),
            Err(error) if is_transient(&error) && Instant::now() + pause < deadline => {
                tools.say(&format!(
                    "  {what}: not ready yet (attempt {attempts}), retrying in {}: {}",
                    crate::duration::format(round_ms(pause)),
                    first_line(&error.to_string())
                ));
                std::thread::sleep(pause);
                pause = (pause * 2).min(backoff.max);
            }
            Err(error) if is_transient(&error) => {
                return Err(KubeError::Timeout {
                    what: format!("{what} (after {attempts} attempts; last: {error})"),
                    timeout: budget,
                });
            }
            Err(error) => return Err(KubeError::Tool(error)),
        }
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().min(u128::from(u64::MAX)) as u64)
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_set_by_name_and_unknown_names_are_refused() {
        let t = Timeouts::default()
            .with("rollout", Duration::from_secs(42))
            .map_err(|e| e.to_string());
        assert_eq!(t.map(|t| t.rollout().limit), Ok(Duration::from_secs(42)));
        let err = Timeouts::default()
            .with("rollot", Duration::from_secs(1))
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(err.is_err_and(|e| e.contains("expected one of call, cluster-create")));
    }

    #[test]
    fn transient_failures_are_told_from_final_ones() {
        let failed = |stderr: &str| ToolError::Failed {
            command: "kubectl apply".into(),
            status: "exit 1".into(),
            stderr: stderr.into(),
        };
        assert!(is_transient(&failed(
            "error: resource mapping not found for name: \"x\": no matches for kind \"K8sRequiredLabels\""
        )));
        assert!(is_transient(&failed(
            "Internal error occurred: failed calling webhook \"check-ignore-label.gatekeeper.sh\""
        )));
        assert!(is_transient(&failed(
            "error: failed to create patch for istiod: if restart has already been triggered within the past second, please wait before attempting to trigger another"
        )));
        assert!(is_transient(&failed(
            "The connection to the server 127.0.0.1:35883 was refused - did you specify the right host or port?"
        )));
        assert!(!is_transient(&failed(
            "The Deployment \"x\" is invalid: spec.template.spec.containers[0].image: Required value"
        )));
    }
}

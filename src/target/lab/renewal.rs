//! Renewal at half-life: the lab's istio-agent. Each workload's SVID is re-issued by the lab CA
//! when half of its lifetime has passed, and delivered to the running sidecar without a restart.
//!
//! # Contract
//!
//! [`Renewal::start`] takes a running [`LabMesh`] whose sidecars were started with SVIDs of the
//! lab TTL (see [`crate::pki::TtlScale`]), the [`LabPki`] that issued them and when each was
//! issued. One tokio task then, for every workload, sleeps until `issued + ttl / 2` (Istio's
//! default `SECRET_GRACE_PERIOD_RATIO` of 0.5, measured from the moment of issue: the lab CA
//! backdates `notBefore` by [`crate::pki::CLOCK_SKEW`] for peers' clocks, which is not lifetime
//! the workload had), issues a new SVID for the same SPIFFE ID with the same TTL, records it as
//! the identity's newest ([`super::issued::IssuedSvids::record`]), publishes it through the
//! sidecar's SDS directory (an atomic `..data` swap) and waits — bounded by the time left on the
//! old certificate — until Envoy's admin `/certs` serves the new serial. Every renewal is logged
//! as a [`RenewalRecord`] (old and new serial, when the old one was issued, when it was renewed,
//! how long Envoy took to serve it); every failure as a line in [`Renewal::failures`], and the
//! workload is retried after [`RETRY_AFTER`].
//!
//! Lifetime: the task holds the mesh only weakly, so it never keeps sidecars alive; it ends by
//! itself once the mesh is gone, and at once when the [`Renewal`] is stopped or dropped (the
//! lab stops it before its meshes). [`Renewal::is_running`] says whether the task still exists.
//! Drills start meshes of their own and own their certificates: nothing here touches them.
//!
//! The renewal log holds serials and times only; keys stay inside the issued SVIDs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::LabPki;
use super::mesh::LabMesh;
use super::sidecar::Credentials;

/// How soon a workload whose renewal failed is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// One renewal, as the task performed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RenewalRecord {
    pub label: String,
    pub spiffe_id: String,
    pub old_serial: String,
    pub new_serial: String,
    /// When the old SVID was issued (RFC 3339).
    pub old_issued_at: String,
    /// The old SVID's notAfter (RFC 3339).
    pub old_not_after: String,
    /// When the new SVID was issued (RFC 3339).
    pub renewed_at: String,
    /// Renewed this long after the old SVID was issued (ms).
    pub renewed_after_ms: u64,
    /// The lab TTL (ms): the old SVID's lifetime from its issue.
    pub ttl_ms: u64,
    /// From publishing the new SVID to Envoy serving it (ms).
    pub served_after_ms: u64,
    /// Time left on the old SVID when Envoy served the new one (ms); 0 if it had expired.
    pub margin_ms: u64,
}

impl RenewalRecord {
    /// How far into the old SVID's lifetime it was renewed (0.5 = at half-life).
    pub fn lifetime_fraction(&self) -> f64 {
        if self.ttl_ms == 0 {
            return f64::NAN;
        }
        self.renewed_after_ms as f64 / self.ttl_ms as f64
    }
}

/// One workload's current SVID, as the task tracks it.
struct Current {
    label: String,
    spiffe_id: String,
    serial: String,
    issued: Instant,
    issued_at: OffsetDateTime,
    not_after: OffsetDateTime,
    due: Instant,
}

struct Shared {
    records: Mutex<Vec<RenewalRecord>>,
    failures: Mutex<Vec<String>>,
    count: watch::Sender<usize>,
    running: AtomicBool,
}

/// Marks the task gone when its future is dropped (finished, aborted, or its runtime shut down).
struct RunningGuard(Arc<Shared>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

/// A mesh's renewal task (see the module docs).
pub struct Renewal {
    ttl: Duration,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Renewal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renewal")
            .field("ttl", &self.ttl)
            .field("renewals", &self.records().len())
            .field("running", &self.is_running())
            .finish()
    }
}

/// When one workload's SVID was issued, for [`Renewal::start`].
pub struct Issued {
    pub label: String,
    pub svid: crate::pki::Svid,
    pub issued: Instant,
    pub issued_at: OffsetDateTime,
}

impl Renewal {
    /// Starts renewing every workload of `mesh` whose current SVID is in `issued`, with SVIDs of
    /// `ttl` from `pki` (see the module docs).
    pub fn start(
        mesh: &Arc<LabMesh>,
        pki: Arc<LabPki>,
        ttl: Duration,
        issued: Vec<Issued>,
    ) -> Renewal {
        let (count, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            records: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            count,
            running: AtomicBool::new(true),
        });
        let current = issued
            .into_iter()
            .map(|i| Current {
                label: i.label,
                spiffe_id: i.svid.spiffe_id().to_owned(),
                serial: i.svid.serial_hex().to_owned(),
                issued: i.issued,
                issued_at: i.issued_at,
                not_after: i.svid.not_after(),
                due: i.issued + ttl / 2,
            })
            .collect();
        let guard = RunningGuard(shared.clone());
        let task = tokio::spawn(run(
            Arc::downgrade(mesh),
            pki,
            ttl,
            current,
            shared.clone(),
            guard,
        ));
        Renewal { ttl, shared, task }
    }

    /// The lab TTL every renewed SVID gets.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Every renewal so far, oldest first.
    pub fn records(&self) -> Vec<RenewalRecord> {
        lock(&self.shared.records).clone()
    }

    /// Every renewal that failed so far (each was retried).
    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared.failures).clone()
    }

    /// Waits, at most `bound`, for a renewal of `label` beyond the first `seen` records, and
    /// returns it.
    pub async fn next_of(
        &self,
        label: &str,
        seen: usize,
        bound: Duration,
    ) -> Option<RenewalRecord> {
        let mut changes = self.shared.count.subscribe();
        let wait = async {
            loop {
                if let Some(found) = lock(&self.shared.records)
                    .iter()
                    .skip(seen)
                    .find(|r| r.label == label)
                {
                    return found.clone();
                }
                if changes.changed().await.is_err() {
                    // The task is gone: no renewal will come.
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(bound, wait).await.ok()
    }

    /// Whether the task still exists (false once stopped, or once the mesh is gone).
    pub fn is_running(&self) -> bool {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Stops renewing (the task ends at its next await point).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Renewal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; the log is still the best record there is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn run(
    mesh: Weak<LabMesh>,
    pki: Arc<LabPki>,
    ttl: Duration,
    mut current: Vec<Current>,
    shared: Arc<Shared>,
    _guard: RunningGuard,
) {
    loop {
        let Some(next) = current.iter().map(|c| c.due).min() else {
            return;
        };
        tokio::time::sleep_until(next).await;
        let Some(mesh) = mesh.upgrade() else {
            return;
        };
        for workload in current.iter_mut().filter(|c| c.due <= Instant::now()) {
            match renew(&mesh, &pki, ttl, workload).await {
                Ok(record) => {
                    lock(&shared.records).push(record);
                    shared.count.send_modify(|n| *n += 1);
                }
                Err(e) => {
                    lock(&shared.failures).push(format!("{}: {e}", workload.label));
                    workload.due = Instant::now() + RETRY_AFTER;
                }
            }
        }
    }
}

/// Renews one workload and moves its schedule on.
async fn renew(
    mesh: &LabMesh,
    pki: &LabPki,
    ttl: Duration,
    workload: &mut Current,
) -> Result<RenewalRecord, String> {
    let issued = Instant::now();
    let issued_at = OffsetDateTime::now_utc();
    let svid = pki
        .pki
        .issue_svid(&workload.spiffe_id, ttl, issued_at)
        .map_err(|e| e.to_string())?;
    pki.svids.record(svid.clone())?;
    let published = Instant::now();
    mesh.push_credentials(&workload.label, &Credentials::from_svid(&svid))
        .map_err(|e| e.to_string())?;
    let left = (workload.not_after - issued_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    mesh.wait_serving(
        &[(workload.label.clone(), svid.serial_hex().to_owned())],
        left.max(RETRY_AFTER),
    )
    .await
    .map_err(|e| e.to_string())?;
    let served = Instant::now();
    let served_at = OffsetDateTime::now_utc();
    let margin: Duration = (workload.not_after - served_at)
        .try_into()
        .unwrap_or(Duration::ZERO);
    let record = RenewalRecord {
        label: workload.label.clone(),
        spiffe_id: workload.spiffe_id.clone(),
        old_serial: workload.serial.clone(),
        new_serial: svid.serial_hex().to_owned(),
        old_issued_at: crate::checks::rfc3339(workload.issued_at),
        old_not_after: crate::checks::rfc3339(workload.not_after),
        renewed_at: crate::checks::rfc3339(issued_at),
        renewed_after_ms: millis(issued - workload.issued),
        ttl_ms: millis(ttl),
        served_after_ms: millis(served - published),
        margin_ms: millis(margin),
    };
    *workload = Current {
        label: workload.label.clone(),
        spiffe_id: workload.spiffe_id.clone(),
        serial: svid.serial_hex().to_owned(),
        issued,
        issued_at,
        not_after: svid.not_after(),
        due: issued + ttl / 2,
    };
    Ok(record)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

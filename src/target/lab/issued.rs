//! [`IssuedSvids`]: every X509-SVID the lab CA issued to each identity during a run, oldest
//! first.
//!
//! # Contract
//!
//! * [`IssuedSvids::initial`] is the SVID issued when the lab PKI was built (at the lab's fixed
//!   clock, with the profile's TTL): what static identity checks judge, and what meshes that do
//!   not renew (drills, tests) start with.
//! * [`IssuedSvids::get`] is the newest SVID issued to the identity: what a renewing mesh has
//!   delivered (or is delivering) to the workload's sidecar. [`IssuedSvids::record`] appends one.
//! * Readers borrow: `get` returns `&Svid` that stays valid while the registry lives, because
//!   nothing is ever removed or moved — each SVID sits in its own heap node, linked to the next
//!   through a [`OnceLock`]. Appends never block readers. The history grows by one SVID per
//!   renewal (a few KiB); at the lab's default scale that is under a MiB for an hour of run.
//!
//! Key material stays in memory (inside each [`Svid`], whose key prints `redacted`).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::pki::Svid;

struct Issued {
    svid: Svid,
    next: OnceLock<Box<Issued>>,
}

impl Issued {
    fn new(svid: Svid) -> Issued {
        Issued {
            svid,
            next: OnceLock::new(),
        }
    }

    fn newest(&self) -> &Issued {
        let mut node = self;
        while let Some(next) = node.next.get() {
            node = next;
        }
        node
    }
}

/// The SVIDs issued per SPIFFE ID (see the module docs).
#[derive(Default)]
pub struct IssuedSvids {
    by_id: HashMap<String, Issued>,
}

impl IssuedSvids {
    /// A registry whose initial SVIDs are `initial` (keyed by their SPIFFE ID).
    pub fn new(initial: impl IntoIterator<Item = Svid>) -> IssuedSvids {
        IssuedSvids {
            by_id: initial
                .into_iter()
                .map(|svid| (svid.spiffe_id().to_owned(), Issued::new(svid)))
                .collect(),
        }
    }

    /// The newest SVID issued to `spiffe_id`.
    pub fn get(&self, spiffe_id: &str) -> Option<&Svid> {
        self.by_id.get(spiffe_id).map(|head| &head.newest().svid)
    }

    /// The SVID issued to `spiffe_id` when the registry was made.
    pub fn initial(&self, spiffe_id: &str) -> Option<&Svid> {
        self.by_id.get(spiffe_id).map(|head| &head.svid)
    }

    /// How many SVIDs `spiffe_id` has been issued, the initial one included.
    pub fn count(&self, spiffe_id: &str) -> usize {
        let mut node = self.by_id.get(spiffe_id);
        let mut n = 0;
        while let Some(issued) = node {
            n += 1;
            node = issued.next.get().map(|b| &**b);
        }
        n
    }

    /// Appends `svid` as the newest SVID of its SPIFFE ID. An identity the registry was not made
    /// with is refused: the lab CA issues only to the identities the profile promises.
    pub fn record(&self, svid: Svid) -> Result<(), String> {
        let id = svid.spiffe_id().to_owned();
        let Some(head) = self.by_id.get(&id) else {
            return Err(format!("{id} is not an identity of this lab"));
        };
        let mut node = Issued::new(svid);
        loop {
            // Another writer may append between finding the end and setting it: then retry
            // from the node it appended.
            match head.newest().next.set(Box::new(node)) {
                Ok(()) => return Ok(()),
                Err(lost) => node = *lost,
            }
        }
    }
}

impl Drop for IssuedSvids {
    // Unlinks each history iteratively: a long run's chain must not recurse once per node.
    fn drop(&mut self) {
        for (_, mut head) in self.by_id.drain() {
            let mut next = head.next.take();
            while let Some(mut node) = next {
                next = node.next.take();
            }
        }
    }
}

impl std::fmt::Debug for IssuedSvids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        for id in self.by_id.keys() {
            map.entry(id, &self.count(id));
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{CaSpec, Pki};

    #[test]
    fn newest_is_the_last_recorded_and_initial_stays() {
        let now = time::OffsetDateTime::now_utc();
        let pki = Pki::generate(&CaSpec::runbook("td", "Org"), now).unwrap();
        let a = "spiffe://td/a";
        let first = pki.issue_workload_svid(a, now).unwrap();
        let issued = IssuedSvids::new([first.clone()]);
        assert_eq!(issued.get(a).unwrap().serial_hex(), first.serial_hex());
        let borrowed = issued.get(a).unwrap();
        let second = pki.issue_workload_svid(a, now).unwrap();
        issued.record(second.clone()).unwrap();
        // An earlier borrow stays valid and unchanged; the newest is the second.
        assert_eq!(borrowed.serial_hex(), first.serial_hex());
        assert_eq!(issued.get(a).unwrap().serial_hex(), second.serial_hex());
        assert_eq!(issued.initial(a).unwrap().serial_hex(), first.serial_hex());
        assert_eq!(issued.count(a), 2);
        let stranger = pki.issue_workload_svid("spiffe://td/b", now).unwrap();
        assert!(issued.record(stranger).is_err());
        assert!(issued.get("spiffe://td/b").is_none());
        assert!(!format!("{issued:?}").contains("PRIVATE"));
    }
}

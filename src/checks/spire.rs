//! SPIRE checks (SomaAgentHub checklist: "SPIRE server running", "SPIRE agents running on all
//! nodes", "Workloads issued SVIDs").
//!
//! `spire.server` — the server answers its healthcheck and holds a registration entry for every
//! SPIFFE ID the profile registers. `spire.agents` — every agent is attested (listed by the server,
//! not banned, its own SVID unexpired) and answers its own healthcheck. `spire.svid` — each
//! registered workload fetches, over the Workload API, an X.509-SVID for exactly its registered
//! ID that validates against SPIRE's bundle (see `identity.svid`), and a workload with no entry
//! gets none. `rotation.spire-svid` — SPIRE replaces a workload's SVID before it expires.

pub const SERVER: &str = "spire.server";
pub const AGENTS: &str = "spire.agents";
pub const SVID: &str = "spire.svid";
pub const RENEWAL: &str = "rotation.spire-svid";

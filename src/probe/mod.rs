//! Probes: requests sent from one workload to another, and what was observed.

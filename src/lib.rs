//! meshproof — proves a zero-trust service mesh does what its runbook promises.
//!
//! Data flows one way: profile + manifests → model → checks → target → observations → results → reports.
//! The Gherkin step glue (`steps`) and the CLI sit on top; nothing below them knows about Gherkin.

pub mod duration;
pub mod error;
pub mod pki;
pub mod profile;
pub mod results;
pub mod report;
pub mod spiffe;
pub mod target;
pub mod checks;
pub mod runner;
#[path = "../steps/mod.rs"]
pub mod steps;

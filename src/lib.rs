//! meshproof — proves a zero-trust service mesh does what its runbook promises.
//!
//! Data flows one way: profile + manifests → model → checks → target → observations → results → reports.
//! The Gherkin step glue (`steps`) and the CLI sit on top; nothing below them knows about Gherkin.

pub mod bench;
pub mod checks;
pub mod configured;
pub mod cores;
pub mod drills;
pub mod duration;
pub mod error;
pub mod intents;
pub mod pki;
pub mod policy;
pub mod probe;
pub mod profile;
pub mod render;
pub mod report;
pub mod results;
pub mod runner;
pub mod spiffe;
#[path = "../steps/mod.rs"]
pub mod steps;
pub mod target;
pub mod verify;
pub mod yaml_limits;

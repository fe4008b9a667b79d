//! Step definitions: thin glue from Gherkin words to library calls. Steps fetch observations from
//! the target, hand them to a check, and record the check's verdict; they decide nothing themselves.

mod drills;
mod identity;
mod ingress;
mod live;
mod pki;
mod policy;
mod renewal;
mod spire;
mod world;

pub use world::{MeshWorld, RunContext};

/// Prefix of a step panic that means "the harness could not run this check" (exit 2), as opposed
/// to "the check ran and failed" (exit 1).
pub const HARNESS_ERROR: &str = "harness error: ";

/// Fails the step as a harness error: the check could not run, so nothing was proven either way.
macro_rules! harness_error {
    ($($arg:tt)*) => {
        panic!("{}{}", $crate::steps::HARNESS_ERROR, format!($($arg)*))
    };
}
pub(crate) use harness_error;

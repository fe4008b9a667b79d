//! `results.json`: the results model as is, for tools and for later reports (baselines, evidence).

use crate::results::RunResults;

pub fn render(results: &RunResults) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(results)
}

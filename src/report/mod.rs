//! Report writers. Each renders the same [`RunResults`](crate::results::RunResults).

pub mod console;
pub mod json;
pub mod junit;

use std::path::{Path, PathBuf};

use crate::results::RunResults;

/// Writes every report format into `dir` (created if needed); returns the files written.
pub fn write_all(results: &RunResults, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let junit = dir.join("junit.xml");
    std::fs::write(
        &junit,
        junit::render(results).map_err(std::io::Error::other)?,
    )?;
    let json = dir.join("results.json");
    std::fs::write(&json, json::render(results).map_err(std::io::Error::other)?)?;
    Ok(vec![junit, json])
}

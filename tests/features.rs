//! The Gherkin features as a cargo test target: every feature, every bundled profile, on the lab.
//! Fails if any scenario fails or errs, or if a service of a profile is missing from the JUnit.

use std::path::Path;

use meshproof::profile;
use meshproof::report;
use meshproof::runner::{RunOptions, run};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profiles = profile::resolve("all").expect("bundled profiles resolve");
    let results = run(RunOptions {
        profiles: profiles.clone(),
        features: root.join("features"),
        tags: None,
        progress: true,
        retries: 0,
        manifests: None,
    })
    .await
    .unwrap_or_else(|e| panic!("the harness could not run: {e}"));

    let dir = tempfile::tempdir().expect("temp dir");
    report::write_all(&results, dir.path()).expect("reports written");
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit.xml");
    for path in &profiles {
        let p = profile::load(path).expect("profile loads");
        for service in &p.services {
            assert!(
                junit.contains(&service.name),
                "junit.xml never names service {} of {}",
                service.name,
                p.name
            );
        }
    }
    print!("{}", report::console::summary(&results, None));
    std::process::exit(results.exit_code());
}

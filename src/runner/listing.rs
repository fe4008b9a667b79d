//! Which scenarios of the features a target runs and which it leaves out, and why, for the
//! console and the run's `applicability.md` (in the evidence bundle): a scenario a target cannot
//! serve is not run there, and must not silently vanish either.

use std::path::Path;

use cucumber::gherkin::tagexpr::TagOperation;
use cucumber::gherkin::{Feature, GherkinEnv};
use cucumber::tag::Ext as _;

use super::RunError;
use crate::target::kube::applicability::{Applicability, TargetKind, applies};

/// One scenario (or scenario outline) of the features, as a target sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// `features/mtls.feature:21`.
    pub place: String,
    pub name: String,
    pub applicability: Applicability,
}

/// Every scenario the user's `tags` select, with whether `target` runs it.
pub fn listing(
    features: &Path,
    user_tags: Option<&str>,
    target: TargetKind,
    allow_destructive: bool,
) -> Result<Vec<Listed>, RunError> {
    let selected = match user_tags {
        Some(expr) => Some(expr.parse::<TagOperation>().map_err(|e| RunError::Tags {
            expr: expr.to_owned(),
            reason: e.to_string(),
        })?),
        None => None,
    };
    let root = super::project_root(features);
    let mut out = Vec::new();
    let files = super::parser::feature_files(features).map_err(|e| RunError::Features {
        path: features.to_path_buf(),
        reason: e.to_string(),
    })?;
    for file in files {
        let feature =
            Feature::parse_path(&file, GherkinEnv::default()).map_err(|e| RunError::Features {
                path: file.clone(),
                reason: e.to_string(),
            })?;
        let place = file
            .strip_prefix(&root)
            .unwrap_or(&file)
            .display()
            .to_string();
        let rules = feature
            .rules
            .iter()
            .flat_map(|r| r.scenarios.iter().map(move |s| (r.tags.as_slice(), s)));
        let scenarios = feature.scenarios.iter().map(|s| (&[][..], s)).chain(rules);
        for (rule_tags, scenario) in scenarios {
            let tags: Vec<&String> = feature
                .tags
                .iter()
                .chain(rule_tags)
                .chain(&scenario.tags)
                .collect();
            if selected
                .as_ref()
                .is_some_and(|op| !op.eval(tags.iter().copied()))
            {
                continue;
            }
            out.push(Listed {
                place: format!("{place}:{}", scenario.position.line),
                name: scenario.name.clone(),
                applicability: applies(target, tags.iter().map(|t| t.as_str()), allow_destructive),
            });
        }
    }
    Ok(out)
}

/// The listing as Markdown: what ran on the target, and what did not, with why.
pub fn render_markdown(target: TargetKind, listed: &[Listed]) -> String {
    use std::fmt::Write as _;
    let (runs, left_out): (Vec<&Listed>, Vec<&Listed>) =
        listed.iter().partition(|l| l.applicability.runs());
    let mut text = format!(
        "# Scenarios on target {target}\n\n{} of {} selected scenarios apply to {target}.\n\n",
        runs.len(),
        listed.len()
    );
    if !left_out.is_empty() {
        text.push_str("## Not run on this target\n\n| scenario | where | why |\n|---|---|---|\n");
        for l in &left_out {
            let _ = writeln!(
                text,
                "| {} | {} | {} |",
                l.name,
                l.place,
                why(&l.applicability)
            );
        }
        text.push('\n');
    }
    text.push_str("## Run\n\n| scenario | where |\n|---|---|\n");
    for l in &runs {
        let _ = writeln!(text, "| {} | {} |", l.name, l.place);
    }
    text
}

/// Why a scenario is left out, in words.
pub fn why(applicability: &Applicability) -> String {
    match applicability {
        Applicability::Runs => "runs".into(),
        Applicability::NotOnTarget(reason) => reason.clone(),
        Applicability::NeedsAllowDestructive => {
            "@destructive: refused on an existing cluster without --allow-destructive".into()
        }
    }
}

//! Which scenarios a target can run, decided by tags alone, so the same feature files run
//! unchanged on every target:
//!
//! | tag | lab | kind | cluster |
//! |---|---|---|---|
//! | `@lab` | runs | skipped: needs the lab's own processes or CA | skipped |
//! | `@kube` | skipped: needs a Kubernetes cluster | runs | runs |
//! | `@destructive` | runs | runs (the cluster is the run's own) | only with `--allow-destructive` |
//! | anything else | runs | runs | runs |
//!
//! Tags are the scenario's own plus those of its feature, rule and examples block, as cucumber
//! evaluates them. [`tag_filter`] gives the same rule as a tag expression, to be AND-ed with the
//! user's `--tags`.

use std::fmt;

/// Where behaviour is observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Lab,
    Kind,
    Cluster,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Lab, TargetKind::Kind, TargetKind::Cluster];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Lab => "lab",
            TargetKind::Kind => "kind",
            TargetKind::Cluster => "cluster",
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a scenario runs on a target, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "decision", content = "reason", rename_all = "kebab-case")]
pub enum Applicability {
    Runs,
    /// The target cannot do what the scenario needs.
    NotOnTarget(String),
    /// A fault or drill on a cluster the run does not own.
    NeedsAllowDestructive,
}

impl Applicability {
    pub fn runs(&self) -> bool {
        matches!(self, Applicability::Runs)
    }
}

/// Tags that only the lab can serve.
pub const LAB_ONLY: &str = "lab";
/// Tags that only a Kubernetes target can serve.
pub const KUBE_ONLY: &str = "kube";
/// Faults and drills: they change the mesh while it runs.
pub const DESTRUCTIVE: &str = "destructive";

/// Decides from `tags` (with or without the leading `@`).
pub fn applies<'a>(
    target: TargetKind,
    tags: impl IntoIterator<Item = &'a str>,
    allow_destructive: bool,
) -> Applicability {
    let tags: Vec<&str> = tags
        .into_iter()
        .map(|t| t.trim_start_matches('@'))
        .collect();
    let has = |tag: &str| tags.contains(&tag);
    if has(LAB_ONLY) && target != TargetKind::Lab {
        return Applicability::NotOnTarget(format!(
            "@{LAB_ONLY}: needs the lab's own sidecars, processes or CA, which a cluster does not expose"
        ));
    }
    if has(KUBE_ONLY) && target == TargetKind::Lab {
        return Applicability::NotOnTarget(format!("@{KUBE_ONLY}: needs a Kubernetes cluster"));
    }
    if has(DESTRUCTIVE) && target == TargetKind::Cluster && !allow_destructive {
        return Applicability::NeedsAllowDestructive;
    }
    Applicability::Runs
}

/// The same rule as a cucumber tag expression (`not @lab and not @destructive`), or `None` when
/// the target runs everything.
pub fn tag_filter(target: TargetKind, allow_destructive: bool) -> Option<String> {
    let mut excluded = Vec::new();
    match target {
        TargetKind::Lab => excluded.push(KUBE_ONLY),
        TargetKind::Kind => excluded.push(LAB_ONLY),
        TargetKind::Cluster => {
            excluded.push(LAB_ONLY);
            if !allow_destructive {
                excluded.push(DESTRUCTIVE);
            }
        }
    }
    let parts: Vec<String> = excluded.iter().map(|t| format!("not @{t}")).collect();
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// `user` AND the target's filter, parenthesised so the user's `or` keeps its meaning.
pub fn combine_tags(
    user: Option<&str>,
    target: TargetKind,
    allow_destructive: bool,
) -> Option<String> {
    match (user, tag_filter(target, allow_destructive)) {
        (Some(user), Some(filter)) => Some(format!("({user}) and {filter}")),
        (Some(user), None) => Some(user.to_owned()),
        (None, filter) => filter,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_in_the_module_docs_holds() {
        use Applicability::*;
        use TargetKind::*;
        assert_eq!(applies(Lab, ["@live", "@lab"], false), Runs);
        assert!(matches!(
            applies(Kind, ["@live", "@lab"], false),
            NotOnTarget(_)
        ));
        assert!(matches!(applies(Lab, ["kube"], true), NotOnTarget(_)));
        assert_eq!(applies(Kind, ["@destructive"], false), Runs);
        assert_eq!(
            applies(Cluster, ["@destructive"], false),
            NeedsAllowDestructive
        );
        assert_eq!(applies(Cluster, ["@destructive"], true), Runs);
        assert_eq!(applies(Cluster, ["@checklist"], false), Runs);
    }

    #[test]
    fn filters_are_tag_expressions_that_keep_the_users_meaning() {
        assert_eq!(
            combine_tags(Some("@pki or @identity"), TargetKind::Cluster, false).as_deref(),
            Some("(@pki or @identity) and not @lab and not @destructive")
        );
        assert_eq!(
            combine_tags(None, TargetKind::Kind, false).as_deref(),
            Some("not @lab")
        );
        assert_eq!(
            combine_tags(None, TargetKind::Lab, false).as_deref(),
            Some("not @kube")
        );
    }
}

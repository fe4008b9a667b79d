//! Which configured objects apply to a workload, as istiod decides it
//! (`WorkloadPolicyMatcher.ShouldAttachPolicy`); for AuthorizationPolicies see
//! [`super::PolicyIndex::applicable`].

use super::model::Labels;

/// Whether `selector` selects a workload with `labels`: no selector selects every workload, and
/// so does an empty `matchLabels`; otherwise every selector label must be on the workload.
pub fn selects(selector: Option<&Labels>, labels: &Labels) -> bool {
    selector.is_none_or(|s| s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_semantics() {
        let labels: Labels = [
            ("app".to_owned(), "httpbin".to_owned()),
            ("version".to_owned(), "v1".to_owned()),
        ]
        .into_iter()
        .collect();
        assert!(selects(None, &labels));
        assert!(selects(Some(&Labels::new()), &labels));
        let s: Labels = [("app".to_owned(), "httpbin".to_owned())]
            .into_iter()
            .collect();
        assert!(selects(Some(&s), &labels));
        let s: Labels = [("app".to_owned(), "other".to_owned())]
            .into_iter()
            .collect();
        assert!(!selects(Some(&s), &labels));
    }
}

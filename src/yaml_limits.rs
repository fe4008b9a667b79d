//! Resource limits for YAML read from files.
//!
//! serde-saphyr's default budget (1,024 documents, 250,000 nodes, 1,000,000 events per stream)
//! guards against inputs that expand as they are read (alias bombs), but a mesh of a few thousand
//! services is a legitimate stream larger than that: `meshproof render` writes three documents per
//! service into workloads.yaml, and a 5,000-service profile holds over a million nodes. The limits
//! here grow with the text, never below the defaults: a file may hold what its bytes can spell,
//! and whatever aliases would add beyond that is still refused.

use serde_saphyr::Budget;

/// The budget for parsing `text`.
pub fn budget_for(text: &str) -> Budget {
    let bytes = text.len();
    let mut budget = Budget::default();
    // A document takes at least a `---` line, a node at least one byte, and a node at most two
    // events (start and end), plus a document's own two.
    budget.max_documents = budget.max_documents.max(bytes / 4);
    budget.max_nodes = budget.max_nodes.max(bytes);
    budget.max_events = budget.max_events.max(bytes.saturating_mul(3));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(bytes);
    budget
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documents(text: &str, budget: Option<Budget>) -> Result<usize, serde_saphyr::Error> {
        let options = serde_saphyr::options! { budget: budget };
        serde_saphyr::from_str_multiple_with_options::<serde_json::Value, Vec<_>>(text, options)
            .map(|docs| docs.len())
    }

    #[test]
    fn a_large_honest_stream_fits_where_the_default_budget_refuses_it() {
        let text = "---\nkind: ServiceAccount\nmetadata: {name: a}\n".repeat(2_000);
        assert!(documents(&text, Some(Budget::default())).is_err());
        assert_eq!(documents(&text, Some(budget_for(&text))).unwrap(), 2_000);
    }

    #[test]
    fn an_alias_bomb_is_still_refused() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for level in b'b'..=b'h' {
            let previous = (level - 1) as char;
            let level = level as char;
            text.push_str(&format!(
                "{level}: &{level} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"
            ));
        }
        let err = documents(&text, Some(budget_for(&text))).expect_err("10^8 nodes from 600 bytes");
        assert!(err.to_string().contains("budget"), "{err}");
    }
}

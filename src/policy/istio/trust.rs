//! istiod's trust-domain migration of principals (`MigrateTrustDomain`): a principal of the form
//! `<td>/ns/<ns>/sa/<sa>` whose trust domain is `cluster.local` or one of the mesh's trust
//! domains is rewritten into one principal per trust domain of the mesh (trust domain first,
//! then aliases). Anything else — `*/ns/...`, custom SPIFFE schemas like `tradepulse/prod/x`,
//! foreign trust domains — is kept as written.

use super::model::{MeshConfig, Value};

/// The mesh trust domain followed by its aliases.
pub fn bundle(mesh: &MeshConfig) -> Vec<String> {
    std::iter::once(mesh.trust_domain.clone())
        .chain(mesh.trust_domain_aliases.iter().cloned())
        .collect()
}

/// Rewrites principal values as istiod does.
pub fn migrate(values: &[Value], bundle: &[String]) -> Vec<Value> {
    let mut out = Vec::new();
    for value in values {
        let parts: Vec<&str> = value.text.split('/').collect();
        if parts.len() != 5 || parts[0] == "*" {
            out.push(value.clone());
            continue;
        }
        let td = parts[0];
        if !(td == "cluster.local" || string_match(td, bundle)) {
            out.push(value.clone());
            continue;
        }
        let mut expanded: Vec<Value> = Vec::new();
        for candidate in bundle {
            let text = if suffix_match(candidate, td) {
                value.text.clone()
            } else {
                format!("{candidate}/{}", parts[1..].join("/"))
            };
            if !expanded.iter().any(|v| v.text == text) {
                expanded.push(Value {
                    text,
                    line: value.line,
                });
            }
        }
        out.extend(expanded);
    }
    out
}

fn string_match(a: &str, list: &[String]) -> bool {
    list.iter().any(|s| {
        a == s
            || s == "*"
            || prefix_match(a, s)
            || prefix_match(s, a)
            || suffix_match(a, s)
            || suffix_match(s, a)
    })
}

fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_suffix('*').is_some_and(|p| a.starts_with(p))
}

fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern.strip_prefix('*').is_some_and(|p| a.ends_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(values: &[&str], bundle: &[&str]) -> Vec<String> {
        let values: Vec<Value> = values
            .iter()
            .map(|t| Value {
                text: (*t).into(),
                line: 1,
            })
            .collect();
        let bundle: Vec<String> = bundle.iter().map(|s| (*s).into()).collect();
        migrate(&values, &bundle)
            .into_iter()
            .map(|v| v.text)
            .collect()
    }

    #[test]
    fn cluster_local_means_our_trust_domains() {
        assert_eq!(
            texts(&["cluster.local/ns/a/sa/b"], &["soma.local"]),
            ["soma.local/ns/a/sa/b"]
        );
        assert_eq!(
            texts(&["td1/ns/a/sa/b"], &["td2", "td1"]),
            ["td2/ns/a/sa/b", "td1/ns/a/sa/b"]
        );
    }

    #[test]
    fn other_forms_are_kept() {
        assert_eq!(
            texts(&["tradepulse/prod/strategy"], &["tradepulse"]),
            ["tradepulse/prod/strategy"]
        );
        assert_eq!(texts(&["*/ns/a/sa/b"], &["x"]), ["*/ns/a/sa/b"]);
        assert_eq!(texts(&["other/ns/a/sa/b"], &["x"]), ["other/ns/a/sa/b"]);
        assert_eq!(
            texts(&["cluster.local/ns/a/sa/b"], &["cluster.local"]),
            ["cluster.local/ns/a/sa/b"]
        );
    }
}

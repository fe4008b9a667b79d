//! Reads `features/*.feature` and fills the `Examples` tables that ask for it from the selected
//! profiles, so one feature file checks every service of whatever profile it runs against.
//!
//! An `Examples` block tagged `@each-profile`, `@each-service`, `@each-sidecar`, `@each-identity` or
//! `@each-pair` gets one row per profile, per service (lab environment), per service behind a
//! sidecar (ingress gateways excluded), per identity (every environment, every workload qualifier;
//! on a cluster only the identities that have a workload there) or per caller → callee pair of services; `@only-ingress` beside it keeps only profiles with an ingress gateway, `@only-spire` only profiles whose
//! identity provider is SPIRE. Columns it may name: `profile`,
//! `service`, `identity`, `spiffe_id`, `namespace`, `service_account`, `environment`, `from`, `to`. Rows written in the file are kept and crossed with the
//! generated ones (so `| profile | fault |` with one row per fault runs every fault on every
//! profile).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cucumber::gherkin::{self, GherkinEnv};
use cucumber::{cli, feature::Ext as _, parser};
use futures::stream;

use crate::profile::Profile;
use crate::target::kube::TargetKind;

#[derive(Clone, Debug)]
pub struct ProfileParser {
    pub profiles: Vec<Arc<Profile>>,
    /// `@each-identity` rows: every identity the profile promises on the lab (its CA issues them
    /// all); on a cluster only those with a workload there ([`deployed_identities`]).
    ///
    /// [`deployed_identities`]: crate::target::kube::target::deployed_identities
    pub target: TargetKind,
}

const GENERATORS: &[&str] = &[
    "each-profile",
    "each-service",
    "each-sidecar",
    "each-identity",
    "each-pair",
];
const COLUMNS: &[&str] = &[
    "profile",
    "service",
    "identity",
    "spiffe_id",
    "namespace",
    "service_account",
    "environment",
    "from",
    "to",
];

impl<I: AsRef<Path>> cucumber::Parser<I> for ProfileParser {
    type Cli = cli::Empty;
    type Output = stream::Iter<std::vec::IntoIter<parser::Result<gherkin::Feature>>>;

    fn parse(self, input: I, _: cli::Empty) -> Self::Output {
        let features = feature_files(input.as_ref()).map(|files| {
            files
                .into_iter()
                .map(|path| {
                    let feature = gherkin::Feature::parse_path(&path, GherkinEnv::default())
                        .map_err(parser::Error::from)?;
                    let feature = self.fill(feature).map_err(|e| {
                        parser::Error::from(gherkin::ParseFileError::Reading {
                            path: path.clone(),
                            source: std::io::Error::other(e),
                        })
                    })?;
                    feature.expand_examples().map_err(parser::Error::from)
                })
                .collect::<Vec<_>>()
        });
        let features = features.unwrap_or_else(|e| {
            vec![Err(parser::Error::from(gherkin::ParseFileError::Reading {
                path: input.as_ref().to_path_buf(),
                source: e,
            }))]
        });
        stream::iter(features)
    }
}

pub(super) fn feature_files(input: &Path) -> std::io::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(input)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "feature"))
        .collect();
    files.sort();
    Ok(files)
}

impl ProfileParser {
    fn fill(&self, mut feature: gherkin::Feature) -> Result<gherkin::Feature, String> {
        let path = feature.path.clone().unwrap_or_default();
        let scenarios = feature.scenarios.iter_mut().chain(
            feature
                .rules
                .iter_mut()
                .flat_map(|r| r.scenarios.iter_mut()),
        );
        for scenario in scenarios {
            for examples in &mut scenario.examples {
                let generator = examples
                    .tags
                    .iter()
                    .find(|t| GENERATORS.contains(&t.as_str()))
                    .cloned();
                let rows = examples.table.as_ref().map_or(0, |t| t.rows.len());
                let Some(generator) = generator else {
                    // A header without rows runs nothing; silence here would read as a pass.
                    if rows < 2 {
                        return Err(format!(
                            "{}:{}: Examples with no rows (tag it with one of @{} to fill it from the profiles)",
                            path.display(),
                            examples.position.line,
                            GENERATORS.join(", @")
                        ));
                    }
                    continue;
                };
                let Some(table) = examples.table.as_mut() else {
                    return Err(format!(
                        "{}:{}: @{generator} examples need a header row",
                        path.display(),
                        examples.position.line
                    ));
                };
                let header = table.rows.first().cloned().unwrap_or_default();
                let authored: Vec<Vec<String>> = table.rows.iter().skip(1).cloned().collect();
                // `@only-spire` / `@only-ingress` narrow the generated rows to profiles whose identity
                // provider is SPIRE / that have an ingress gateway.
                let tagged = |tag: &str| examples.tags.iter().any(|t| t == tag);
                let (only_spire, only_ingress) = (tagged("only-spire"), tagged("only-ingress"));
                let keep = |p: &Profile| {
                    (!only_spire || p.provider == crate::profile::IdentityProvider::Spire)
                        && (!only_ingress
                            || p.services
                                .iter()
                                .any(|s| s.role == crate::profile::Role::Ingress))
                };
                let generated = self.rows(&generator, keep);
                let mut rows = vec![header.clone()];
                for values in &generated {
                    let authored_rows = if authored.is_empty() {
                        vec![vec![String::new(); header.len()]]
                    } else {
                        authored.clone()
                    };
                    for authored_row in authored_rows {
                        let mut row = Vec::with_capacity(header.len());
                        for (i, column) in header.iter().enumerate() {
                            if COLUMNS.contains(&column.as_str()) {
                                let value = values
                                    .iter()
                                    .find(|(k, _)| k == column)
                                    .map(|(_, v)| v.clone());
                                row.push(value.ok_or_else(|| {
                                    format!("{}:{}: column <{column}> is not available for @{generator}", path.display(), examples.position.line)
                                })?);
                            } else {
                                row.push(authored_row.get(i).cloned().unwrap_or_default());
                            }
                        }
                        rows.push(row);
                    }
                }
                table.rows = rows;
            }
        }
        Ok(feature)
    }

    fn rows(
        &self,
        generator: &str,
        keep: impl Fn(&Profile) -> bool,
    ) -> Vec<Vec<(&'static str, String)>> {
        let mut out = Vec::new();
        for profile in self.profiles.iter().filter(|p| keep(p)) {
            let name = profile.name.clone();
            match generator {
                "each-profile" => out.push(vec![("profile", name)]),
                "each-pair" => {
                    let callees = profile
                        .services
                        .iter()
                        .filter(|s| s.role != crate::profile::Role::Ingress);
                    for callee in callees {
                        for caller in profile.services.iter().filter(|s| s.name != callee.name) {
                            out.push(vec![
                                ("profile", name.clone()),
                                ("from", caller.name.clone()),
                                ("to", callee.name.clone()),
                            ]);
                        }
                    }
                }
                "each-service" | "each-sidecar" => {
                    let lab = profile.lab_identities();
                    // Sidecars: services that hold mesh traffic to mesh rules (not ingress gateways,
                    // which must accept external clients).
                    let services = profile.services.iter().filter(|s| {
                        generator == "each-service" || s.role != crate::profile::Role::Ingress
                    });
                    for service in services {
                        let identity = lab
                            .iter()
                            .find(|i| i.service == service.name && i.workload.is_none());
                        let id = identity
                            .map(|i| i.spiffe_id.to_string())
                            .unwrap_or_default();
                        out.push(vec![
                            ("profile", name.clone()),
                            ("service", service.name.clone()),
                            ("identity", identity.map(|i| i.label()).unwrap_or_default()),
                            ("spiffe_id", id),
                            ("namespace", service.namespace.clone()),
                            ("service_account", service.service_account.clone()),
                            (
                                "environment",
                                profile.lab_environment.clone().unwrap_or_default(),
                            ),
                        ]);
                    }
                }
                _ => {
                    let identities = match self.target {
                        TargetKind::Lab => profile.identities(),
                        TargetKind::Kind | TargetKind::Cluster => {
                            crate::target::kube::target::deployed_identities(profile)
                        }
                    };
                    for identity in identities {
                        out.push(vec![
                            ("profile", name.clone()),
                            ("service", identity.service.clone()),
                            ("identity", identity.label()),
                            ("spiffe_id", identity.spiffe_id.to_string()),
                            (
                                "environment",
                                identity.environment.clone().unwrap_or_default(),
                            ),
                        ]);
                    }
                }
            }
        }
        out
    }
}

//! Reading manifests: a file or a directory of `*.yaml` / `*.yml` (not recursive), each a
//! multi-document stream. Istio objects are parsed strictly; documents of other kinds are
//! skipped and counted; `kind: List` is unwrapped. All errors of all files are collected before
//! returning, so one run shows every mistake.

use std::path::{Path, PathBuf};

use super::fields::Ctx;
use super::model::{Kind, MeshConfig, MeshPolicies, ObjectMeta, Skipped};
use super::yaml::{self, Located, Node, line};
use super::{parse_authz, parse_dr, parse_peer};
use crate::error::{SourceError, SourceErrors};

const METADATA_KEYS: &[&str] = &[
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "generateName",
    "selfLink",
];
const DRY_RUN: &str = "istio.io/dry-run";

/// Loads one file or every `*.yaml` / `*.yml` file of a directory.
pub fn load(path: &Path, mesh: MeshConfig) -> Result<MeshPolicies, SourceErrors> {
    load_all(&[path.to_path_buf()], mesh)
}

/// Loads several files and/or directories into one configuration.
pub fn load_all(paths: &[PathBuf], mesh: MeshConfig) -> Result<MeshPolicies, SourceErrors> {
    let mut loader = Loader::new(mesh);
    for path in paths {
        loader.add_path(path);
    }
    loader.finish()
}

/// Parses manifest text; `file` names it in errors and evidence.
pub fn parse_str(file: &Path, text: &str, mesh: MeshConfig) -> Result<MeshPolicies, SourceErrors> {
    let mut loader = Loader::new(mesh);
    loader.add_text(file, text);
    loader.finish()
}

struct Loader {
    out: MeshPolicies,
    errors: Vec<SourceError>,
}

impl Loader {
    fn new(mesh: MeshConfig) -> Loader {
        Loader {
            out: MeshPolicies {
                mesh,
                ..MeshPolicies::default()
            },
            errors: Vec::new(),
        }
    }

    fn add_path(&mut self, path: &Path) {
        if path.is_dir() {
            let entries = match std::fs::read_dir(path) {
                Ok(entries) => entries,
                Err(e) => {
                    self.errors.push(
                        SourceError::new(path, 0, 0, format!("cannot read directory: {e}"))
                            .expected("a readable directory of *.yaml manifests"),
                    );
                    return;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
                .collect();
            files.sort();
            for file in files {
                self.add_file(&file);
            }
        } else {
            self.add_file(path);
        }
    }

    fn add_file(&mut self, file: &Path) {
        match std::fs::read_to_string(file) {
            Ok(text) => self.add_text(file, &text),
            Err(e) => self.errors.push(
                SourceError::new(file, 0, 0, format!("cannot read manifest: {e}"))
                    .expected("a readable UTF-8 YAML file"),
            ),
        }
    }

    fn add_text(&mut self, file: &Path, text: &str) {
        match yaml::documents(file, text) {
            Ok(docs) => {
                for doc in &docs {
                    self.add_document(file, doc);
                }
            }
            Err(e) => self.errors.push(e),
        }
    }

    fn add_document(&mut self, file: &Path, doc: &Located) {
        let mut ctx = Ctx::new(file);
        let Node::Map(entries) = &doc.value else {
            ctx.error(
                doc,
                format!("the document is {}", doc.value.kind()),
                "a Kubernetes object (apiVersion, kind, metadata, spec)",
            );
            self.errors.append(&mut ctx.errors);
            return;
        };
        let text_of = |key: &str| entries.iter().find(|(k, _)| k.value == key).map(|(_, v)| v);
        let api_version = text_of("apiVersion").and_then(|n| ctx.string(n, "apiVersion"));
        let kind = text_of("kind").and_then(|n| ctx.string(n, "kind"));
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            if ctx.errors.is_empty() {
                ctx.error(
                    doc,
                    "the document has no apiVersion or kind",
                    "a Kubernetes object with apiVersion and kind",
                );
            }
            self.errors.append(&mut ctx.errors);
            return;
        };
        let (group, version) = api_version
            .text
            .rsplit_once('/')
            .unwrap_or(("", api_version.text.as_str()));
        let known = match (group, kind.text.as_str()) {
            ("security.istio.io", "AuthorizationPolicy") => {
                Some((Kind::AuthorizationPolicy, &["v1", "v1beta1"][..]))
            }
            ("security.istio.io", "PeerAuthentication") => {
                Some((Kind::PeerAuthentication, &["v1", "v1beta1"][..]))
            }
            ("networking.istio.io", "DestinationRule") => {
                Some((Kind::DestinationRule, &["v1", "v1beta1", "v1alpha3"][..]))
            }
            ("", "List") if version == "v1" => {
                self.add_list(file, doc, entries);
                return;
            }
            _ => None,
        };
        let Some((kind, versions)) = known else {
            self.out.skipped.push(Skipped {
                file: file.to_path_buf(),
                line: line(doc),
                api_version: api_version.text,
                kind: kind.text,
            });
            return;
        };
        if !versions.contains(&version) {
            if let Some(node) = text_of("apiVersion") {
                ctx.error(
                    node,
                    format!("{kind} does not exist in {}", api_version.text),
                    format!("apiVersion {group}/{}", versions.join(" or ")),
                );
            }
            self.errors.append(&mut ctx.errors);
            return;
        }
        self.add_object(ctx, doc, kind);
    }

    fn add_list(
        &mut self,
        file: &Path,
        doc: &Located,
        entries: &[(serde_saphyr::Spanned<String>, Located)],
    ) {
        let mut ctx = Ctx::new(file);
        let _ = ctx.map(doc, "List", &["apiVersion", "kind", "items", "metadata"]);
        if let Some((_, items)) = entries.iter().find(|(k, _)| k.value == "items") {
            for item in ctx.list(items, "items") {
                self.add_document(file, item);
            }
        }
        self.errors.append(&mut ctx.errors);
    }

    fn add_object(&mut self, mut ctx: Ctx, doc: &Located, kind: Kind) {
        let Some(fields) = ctx.map(
            doc,
            "",
            &["apiVersion", "kind", "metadata", "spec", "status"],
        ) else {
            self.errors.append(&mut ctx.errors);
            return;
        };
        let Some((meta, dry_run)) =
            metadata(&mut ctx, fields.get("metadata"), doc, kind, &self.out.mesh)
        else {
            self.errors.append(&mut ctx.errors);
            return;
        };
        ctx.object = meta.display_name();
        let spec = fields.get("spec");
        match kind {
            Kind::AuthorizationPolicy => {
                let p = parse_authz::authorization_policy(&mut ctx, meta, spec, dry_run);
                self.out.authorization_policies.push(p);
            }
            Kind::PeerAuthentication => {
                let p = parse_peer::peer_authentication(&mut ctx, meta, spec);
                self.out.peer_authentications.push(p);
            }
            Kind::DestinationRule => {
                let d = parse_dr::destination_rule(&mut ctx, meta, spec);
                self.out.destination_rules.push(d);
            }
        }
        self.errors.append(&mut ctx.errors);
        self.out.unsupported.append(&mut ctx.unsupported);
    }

    fn finish(mut self) -> Result<MeshPolicies, SourceErrors> {
        let out = &mut self.out;
        let key = |m: &ObjectMeta| {
            (
                m.creation_timestamp.is_none(),
                m.creation_timestamp.clone(),
                m.name.clone(),
                m.namespace.clone(),
            )
        };
        out.authorization_policies.sort_by_key(|p| key(&p.meta));
        out.peer_authentications.sort_by_key(|p| key(&p.meta));
        out.destination_rules.sort_by_key(|p| key(&p.meta));
        let metas: Vec<&ObjectMeta> = out
            .authorization_policies
            .iter()
            .map(|p| &p.meta)
            .chain(out.peer_authentications.iter().map(|p| &p.meta))
            .chain(out.destination_rules.iter().map(|d| &d.meta))
            .collect();
        let mut duplicates = Vec::new();
        for (i, a) in metas.iter().enumerate() {
            if let Some(b) = metas[..i]
                .iter()
                .find(|b| b.kind == a.kind && b.name == a.name && b.namespace == a.namespace)
            {
                duplicates.push(
                    SourceError::new(
                        &a.file,
                        a.line,
                        1,
                        format!(
                            "{} is defined twice (also at {}:{})",
                            a.display_name(),
                            b.file.display(),
                            b.line
                        ),
                    )
                    .expected("one object per kind, namespace and name"),
                );
            }
        }
        self.errors.extend(duplicates);
        if self.errors.is_empty() {
            Ok(self.out)
        } else {
            Err(SourceErrors(self.errors))
        }
    }
}

/// `metadata`: name (required), namespace (else the mesh default), creationTimestamp, and the
/// `istio.io/dry-run` annotation.
fn metadata(
    ctx: &mut Ctx,
    node: Option<&Located>,
    doc: &Located,
    kind: Kind,
    mesh: &MeshConfig,
) -> Option<(ObjectMeta, bool)> {
    let Some(node) = node else {
        ctx.error(
            doc,
            format!("{kind} has no metadata"),
            "metadata: {name: ..., namespace: ...}",
        );
        return None;
    };
    let fields = ctx.map(node, "metadata", METADATA_KEYS)?;
    let name = fields
        .get("name")
        .and_then(|n| ctx.string(n, "metadata.name"));
    let Some(name) = name.filter(|n| !n.text.is_empty()) else {
        ctx.error(
            node,
            format!("{kind} has no metadata.name"),
            "metadata.name",
        );
        return None;
    };
    let namespace = fields
        .get("namespace")
        .and_then(|n| ctx.string(n, "metadata.namespace"))
        .map(|v| v.text)
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| mesh.default_namespace.clone());
    let creation_timestamp = fields
        .get("creationTimestamp")
        .and_then(|n| ctx.string(n, "metadata.creationTimestamp"))
        .map(|v| v.text);
    if let Some(n) = fields.get("labels") {
        ctx.labels(n, "metadata.labels");
    }
    let meta = ObjectMeta {
        kind,
        name: name.text,
        namespace,
        file: ctx.file.to_path_buf(),
        line: line(doc),
        creation_timestamp,
    };
    ctx.object = meta.display_name();
    let mut dry_run = false;
    if let Some(n) = fields.get("annotations") {
        let annotations = ctx.labels(n, "metadata.annotations");
        if let Some(value) = annotations.get(DRY_RUN) {
            match value.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => {
                    dry_run = kind == Kind::AuthorizationPolicy;
                }
                "0" | "f" | "F" | "false" | "FALSE" | "False" => {}
                other => ctx.unsupported(
                    line(n),
                    "metadata.annotations.istio.io/dry-run",
                    format!(
                        "{other:?} is not a boolean; Istio logs an error and enforces the \
                         policy, and so does meshproof"
                    ),
                ),
            }
        }
    }
    Some((meta, dry_run))
}

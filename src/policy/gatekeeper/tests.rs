use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;
use crate::profile::{self, Profile};

const DENIED: &str = "admission webhook \"validation.gatekeeper.sh\" denied the request: ";

fn soma() -> Profile {
    let path = profile::manifests_root().join("soma-agent-hub/profile.yaml");
    match profile::load(&path) {
        Ok(profile) => profile,
        Err(e) => panic!("bundled profile does not load: {e}"),
    }
}

fn rendered() -> Vec<Value> {
    render_templates(&soma())
}

fn admission_from(objects: &[Value]) -> Admission {
    match Admission::from_objects(Path::new("<rendered>"), objects) {
        Ok(a) => a,
        Err(e) => panic!("rendered policies do not load: {e}"),
    }
}

fn soma_admission() -> Admission {
    admission_from(&rendered())
}

fn runbook_pod(name: &str) -> Value {
    let (_, text) = RUNBOOK_PODS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no runbook pod {name}"));
    let docs = parse_documents(Path::new(name), text).expect("runbook pod parses");
    assert_eq!(docs.len(), 1);
    docs[0].object.clone()
}

fn yaml(text: &str) -> Value {
    let docs = parse_documents(Path::new("inline.yaml"), text).expect("test YAML parses");
    docs[0].object.clone()
}

fn load_err(file: &str, text: &str) -> Vec<SourceError> {
    let manifests = parse_documents(Path::new(file), text).expect("test YAML parses");
    match Admission::from_manifests(&manifests) {
        Ok(_) => panic!("expected a load error"),
        Err(SourceErrors(errors)) => errors,
    }
}

/// Rendered objects with one constraint's spec edited.
fn with_constraint(name: &str, edit: impl Fn(&mut Value)) -> Vec<Value> {
    let mut objects = rendered();
    let constraint = objects
        .iter_mut()
        .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no constraint {name}"));
    edit(constraint);
    objects
}

// ---- the runbook, word for word -------------------------------------------------------------

#[test]
fn runbook_bad_registry_is_denied_with_the_runbook_message() {
    let result = soma_admission().review(&runbook_pod("bad-registry"), Operation::Create);
    assert!(!result.allowed);
    assert_eq!(
        result.denial_text.as_deref(),
        Some(
            "admission webhook \"validation.gatekeeper.sh\" denied the request: \
             [soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry"
        )
    );
    assert_eq!(result.denials.len(), 1);
    assert_eq!(result.denials[0].kind, "K8sRequiredRegistry");
    assert_eq!(result.denials[0].action, EnforcementAction::Deny);
    assert_eq!(
        result.denials[0].details,
        json!({"container": "app", "image": "evil-registry.com/malware:latest"})
    );
}

#[test]
fn runbook_bad_privileged_is_denied_with_the_runbook_message() {
    let result = soma_admission().review(&runbook_pod("bad-privileged"), Operation::Create);
    assert!(!result.allowed);
    assert_eq!(
        result.denial_text.as_deref(),
        Some(
            "admission webhook \"validation.gatekeeper.sh\" denied the request: \
             [soma-block-privileged] Container 'app' is running in privileged mode"
        )
    );
}

#[test]
fn runbook_bad_resources_is_denied_for_requests_and_limits() {
    let result = soma_admission().review(&runbook_pod("bad-resources"), Operation::Create);
    assert!(!result.allowed);
    // Both lines; the runbook quotes the first ("missing resource requests").
    assert_eq!(
        result.denial_text.as_deref(),
        Some(
            "admission webhook \"validation.gatekeeper.sh\" denied the request: \
             [soma-required-resources] Container 'app' missing resource limits\n\
             [soma-required-resources] Container 'app' missing resource requests"
        )
    );
    assert_eq!(
        result.denials[1].details,
        json!({"container": "app", "missing_requests": ["cpu", "memory"]})
    );
}

#[test]
fn runbook_good_pod_is_admitted_without_warnings() {
    let result = soma_admission().review(&runbook_pod("good-pod"), Operation::Create);
    assert!(result.allowed, "{result:?}");
    assert!(result.denials.is_empty() && result.warnings.is_empty() && result.dry_run.is_empty());
    assert_eq!(result.denial_text, None);
    assert_eq!(result.error, None);
}

#[test]
fn runbook_fixtures_are_the_runbook_text() {
    let runbook = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/seeds/001_510eb5723871f4dd.txt"),
    );
    // The seed lives outside the crate; when it is present, every fixture is a verbatim block of it.
    if let Ok(runbook) = runbook {
        for (name, text) in RUNBOOK_PODS {
            let block = format!("cat <<'EOF' | kubectl apply -f -\n{text}EOF\n");
            assert!(runbook.contains(&block), "{name} is not verbatim");
        }
    }
}

#[test]
fn rendered_yaml_loads_with_lines_and_decides_the_same() {
    let text = render_yaml(&soma()).expect("renders");
    let manifests = parse_documents(Path::new("gatekeeper.yaml"), &text).expect("parses");
    assert_eq!(manifests.len(), 8);
    assert!(manifests.iter().all(|m| m.line > 0));
    let admission = Admission::from_manifests(&manifests).expect("loads");
    for (name, _) in RUNBOOK_PODS {
        let from_yaml = admission.review(&runbook_pod(name), Operation::Create);
        let from_values = soma_admission().review(&runbook_pod(name), Operation::Create);
        assert_eq!(from_yaml, from_values, "{name}");
    }
}

// ---- mutations: each safeguard is load-bearing ------------------------------------------------

#[test]
fn removing_the_registry_constraint_admits_bad_registry() {
    let objects: Vec<Value> = rendered()
        .into_iter()
        .filter(|o| o.pointer("/metadata/name") != Some(&json!("soma-registry-policy")))
        .collect();
    let result = admission_from(&objects).review(&runbook_pod("bad-registry"), Operation::Create);
    assert!(result.allowed);
    assert!(result.denials.is_empty());
}

#[test]
fn dryrun_admits_bad_registry_and_audit_still_finds_it() {
    let objects = with_constraint("soma-registry-policy", |c| {
        c["spec"]["enforcementAction"] = json!("dryrun");
    });
    let admission = admission_from(&objects);
    let pod = runbook_pod("bad-registry");
    let result = admission.review(&pod, Operation::Create);
    assert!(result.allowed);
    assert_eq!(result.denial_text, None);
    assert!(result.warning_texts.is_empty());
    assert_eq!(result.dry_run.len(), 1);
    let findings = admission.audit(&[Manifest::from_value("pods.yaml", pod)]);
    assert_eq!(findings.len(), 1);
    assert_eq!(findings[0].action, EnforcementAction::Dryrun);
    assert_eq!(findings[0].constraint, "soma-registry-policy");
    assert_eq!(
        findings[0].message,
        "Image 'evil-registry.com/malware:latest' from disallowed registry"
    );
    assert_eq!(
        findings[0].object.to_string(),
        "Pod/soma-agent-hub/bad-registry"
    );
}

#[test]
fn warn_admits_with_gatekeepers_warning_text() {
    let objects = with_constraint("soma-registry-policy", |c| {
        c["spec"]["enforcementAction"] = json!("warn");
    });
    let result = admission_from(&objects).review(&runbook_pod("bad-registry"), Operation::Create);
    assert!(result.allowed);
    assert_eq!(
        result.warning_texts,
        vec![
            "[soma-registry-policy] Image 'evil-registry.com/malware:latest' from disallowed registry"
        ]
    );
}

#[test]
fn scoped_enforcement_applies_per_enforcement_point() {
    let objects = with_constraint("soma-registry-policy", |c| {
        c["spec"]["enforcementAction"] = json!("scoped");
        c["spec"]["scopedEnforcementActions"] = json!([
            {"action": "warn", "enforcementPoints": [{"name": "validation.gatekeeper.sh"}]},
            {"action": "deny", "enforcementPoints": [{"name": "audit.gatekeeper.sh"}]},
        ]);
    });
    let admission = admission_from(&objects);
    let pod = runbook_pod("bad-registry");
    let result = admission.review(&pod, Operation::Create);
    assert!(result.allowed);
    assert_eq!(result.warnings.len(), 1);
    let findings = admission.audit(&[Manifest::from_value("p", pod)]);
    assert_eq!(findings[0].action, EnforcementAction::Deny);
}

#[test]
fn excluded_namespaces_are_respected_with_globs() {
    let objects = with_constraint("soma-registry-policy", |c| {
        c["spec"]["match"]["namespaces"] = json!(["*"]);
        c["spec"]["match"]["excludedNamespaces"] = json!(["kube-*", "*-system"]);
    });
    let admission = admission_from(&objects);
    let mut pod = runbook_pod("bad-registry");
    for (namespace, denied) in [
        ("kube-public", false),
        ("gatekeeper-system", false),
        ("soma-agent-hub", true),
        ("default", true),
    ] {
        pod["metadata"]["namespace"] = json!(namespace);
        let result = admission.review(&pod, Operation::Create);
        let registry_denied = result
            .denials
            .iter()
            .any(|d| d.constraint == "soma-registry-policy");
        assert_eq!(registry_denied, denied, "{namespace}");
    }
}

#[test]
fn namespaces_outside_the_profile_are_not_judged() {
    let mut pod = runbook_pod("bad-privileged");
    pod["metadata"]["namespace"] = json!("other");
    assert!(soma_admission().review(&pod, Operation::Create).allowed);
    // The request's namespace counts, as the API server sends it.
    let request = ReviewRequest::create(pod).namespace("soma-agent-hub");
    assert!(!soma_admission().review_request(&request).allowed);
}

#[test]
fn label_selector_is_respected() {
    let objects = with_constraint("soma-block-privileged", |c| {
        c["spec"]["match"]["labelSelector"] = json!({
            "matchLabels": {"app": "test"},
            "matchExpressions": [
                {"key": "version", "operator": "In", "values": ["v1", "v2"]},
                {"key": "exempt", "operator": "DoesNotExist"},
            ],
        });
    });
    let admission = admission_from(&objects);
    let pod = runbook_pod("bad-privileged");
    assert!(!admission.review(&pod, Operation::Create).allowed);
    let mut exempt = pod.clone();
    exempt["metadata"]["labels"]["exempt"] = json!("yes");
    assert!(admission.review(&exempt, Operation::Create).allowed);
    let mut v3 = pod.clone();
    v3["metadata"]["labels"]["version"] = json!("v3");
    assert!(admission.review(&v3, Operation::Create).allowed);
    let mut other_app = pod;
    other_app["metadata"]["labels"]["app"] = json!("other");
    assert!(admission.review(&other_app, Operation::Create).allowed);
}

#[test]
fn an_update_matches_when_the_old_object_does() {
    let objects = with_constraint("soma-block-privileged", |c| {
        c["spec"]["match"]["labelSelector"] = json!({"matchLabels": {"guarded": "yes"}});
    });
    let admission = admission_from(&objects);
    let old = {
        let mut p = runbook_pod("good-pod");
        p["metadata"]["labels"]["guarded"] = json!("yes");
        p
    };
    let mut new = runbook_pod("bad-privileged");
    new["metadata"]["name"] = json!("good-pod");
    // Dropping the label in the same update does not escape the constraint.
    let result = admission.review_request(&ReviewRequest::update(new, old));
    assert!(!result.allowed);
}

// ---- the four policies in depth ---------------------------------------------------------------

#[test]
fn init_and_ephemeral_containers_are_checked() {
    let admission = soma_admission();
    let mut pod = runbook_pod("good-pod");
    pod["spec"]["initContainers"] = json!([{
        "name": "setup", "image": "quay.io/tools/setup:1",
        "securityContext": {"privileged": true},
        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"cpu": "10m", "memory": "8Mi"}},
    }]);
    pod["spec"]["ephemeralContainers"] = json!([{
        "name": "debugger", "image": "evil.example/shell:1", "securityContext": {"privileged": true},
    }]);
    let result = admission.review(&pod, Operation::Update);
    let texts: Vec<String> = result
        .denials
        .iter()
        .map(Violation::gatekeeper_line)
        .collect();
    assert_eq!(
        texts,
        vec![
            "[soma-block-privileged] Container 'debugger' is running in privileged mode",
            "[soma-block-privileged] Container 'setup' is running in privileged mode",
            "[soma-registry-policy] Image 'evil.example/shell:1' from disallowed registry",
            "[soma-registry-policy] Image 'quay.io/tools/setup:1' from disallowed registry",
        ]
    );
    // Ephemeral containers may not carry resources in Kubernetes, so none are required of them.
    assert!(
        !result
            .denials
            .iter()
            .any(|d| d.message.contains("debugger") && d.kind == "K8sRequiredResources")
    );
}

#[test]
fn resources_need_cpu_and_memory_each() {
    let admission = soma_admission();
    let mut pod = runbook_pod("good-pod");
    pod["spec"]["containers"][0]["resources"]["requests"] = json!({"cpu": "100m"});
    pod["spec"]["containers"][0]["resources"]["limits"] = json!({"memory": "1Gi"});
    let result = admission.review(&pod, Operation::Create);
    let details: Vec<&Value> = result.denials.iter().map(|d| &d.details).collect();
    assert_eq!(
        details,
        vec![
            &json!({"container": "app", "missing_limits": ["cpu"]}),
            &json!({"container": "app", "missing_requests": ["memory"]}),
        ]
    );
}

#[test]
fn required_labels_name_the_pod_and_the_label() {
    let mut pod = runbook_pod("good-pod");
    pod["metadata"]["labels"] = json!({"app": "test"});
    let result = soma_admission().review(&pod, Operation::Create);
    assert_eq!(
        result
            .denial_text
            .as_deref()
            .map(|t| t.trim_start_matches(DENIED)),
        Some("[soma-required-labels] Pod 'good-pod' missing required label 'version'")
    );
}

#[test]
fn registry_match_is_a_prefix_match() {
    let admission = soma_admission();
    for (image, allowed) in [
        ("docker.io/alpine:latest", true),
        ("docker.io/library/nginx@sha256:abcd", true),
        ("alpine:latest", false),
        ("docker.io.evil.com/alpine", false),
        ("evil.com/docker.io/alpine", false),
    ] {
        let mut pod = runbook_pod("good-pod");
        pod["spec"]["containers"][0]["image"] = json!(image);
        assert_eq!(
            admission.review(&pod, Operation::Create).allowed,
            allowed,
            "{image}"
        );
    }
}

#[test]
fn deployments_are_judged_by_their_pod_template() {
    let deployment = yaml(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: soma-agent-hub}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: docker.io/nginx:1
          securityContext: {privileged: true}
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 200m, memory: 128Mi}
"#,
    );
    let result = soma_admission().review(&deployment, Operation::Create);
    let texts: Vec<String> = result
        .denials
        .iter()
        .map(Violation::gatekeeper_line)
        .collect();
    assert_eq!(
        texts,
        vec![
            "[soma-block-privileged] Container 'web' is running in privileged mode",
            "[soma-required-labels] Pod 'web' missing required label 'version'",
        ]
    );
    let cronjob = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": "soma-agent-hub"},
        "spec": {"jobTemplate": {"spec": {"template": {
            "metadata": {"labels": {"app": "x", "version": "1"}},
            "spec": {"containers": [{"name": "job", "image": "ghcr.io/x:1",
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}
        }}}},
    });
    let result = soma_admission().review(&cronjob, Operation::Create);
    assert_eq!(result.denials.len(), 1);
    assert_eq!(
        result.denials[0].message,
        "Image 'ghcr.io/x:1' from disallowed registry"
    );
}

#[test]
fn audit_reports_every_workload_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests = dir.path().join("workloads.yaml");
    std::fs::write(
        &manifests,
        format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cfg, namespace: soma-agent-hub}}\n---\n\
apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: db, namespace: soma-agent-hub}}\nspec:\n  template:\n    \
metadata: {{labels: {{app: db, version: v1}}}}\n    spec:\n      containers: [{{name: db, image: evil.io/db:1}}]\n---\n{}",
            RUNBOOK_PODS[0].1, RUNBOOK_PODS[3].1
        ),
    )
    .expect("write");
    let objects = load_manifests(&[dir.path()]).expect("loads");
    assert_eq!(objects.len(), 4);
    let written = std::fs::read_to_string(&manifests).expect("read");
    let statefulset = written
        .lines()
        .position(|l| l == "kind: StatefulSet")
        .expect("line") as u32; // 0-based index of `kind:` = 1-based line of `apiVersion:`
    let findings = soma_admission().audit(&objects);
    let summary: Vec<(String, u32, String)> = findings
        .iter()
        .map(|f| (f.object.to_string(), f.line, f.message.clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "Pod/soma-agent-hub/bad-registry".to_owned(),
                1,
                "Image 'evil-registry.com/malware:latest' from disallowed registry".to_owned()
            ),
            (
                "StatefulSet/soma-agent-hub/db".to_owned(),
                statefulset,
                "Image 'evil.io/db:1' from disallowed registry".to_owned()
            ),
            (
                "StatefulSet/soma-agent-hub/db".to_owned(),
                statefulset,
                "Container 'db' missing resource limits".to_owned()
            ),
            (
                "StatefulSet/soma-agent-hub/db".to_owned(),
                statefulset,
                "Container 'db' missing resource requests".to_owned()
            ),
        ]
    );
    assert!(findings.iter().all(|f| f.file == manifests));
}

// ---- loading: errors name file and line -------------------------------------------------------

const BROKEN_TEMPLATE: &str = r#"# a comment line
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata:
  name: k8sbroken
spec:
  crd:
    spec:
      names:
        kind: K8sBroken
  targets:
    - target: admission.k8s.gatekeeper.sh
      code:
        - engine: Rego
          source:
            version: v1
            rego: |
              package k8sbroken

              violation contains {"msg": msg} if {
                msg := "x" +
              }
"#;

#[test]
fn a_rego_syntax_error_names_the_file_and_the_yaml_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, BROKEN_TEMPLATE).expect("write");
    let errors = match Admission::load(&[&file]) {
        Ok(_) => panic!("a broken template must not load"),
        Err(SourceErrors(errors)) => errors,
    };
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(error.file, file);
    // `rego: |` is on line 17, so Rego line 1 is YAML line 18 and the bad line 4 is line 21.
    assert_eq!(error.line, 21, "{error}");
    assert!(
        error.message.contains("ConstraintTemplate k8sbroken"),
        "{error}"
    );
    assert!(
        error.message.contains("Rego v1 does not compile"),
        "{error}"
    );
    let shown = error.to_string();
    assert!(shown.starts_with(&format!("{}:{}:", file.display(), error.line)));
    assert!(!shown.contains('\n'));
}

#[test]
fn an_unsafe_variable_is_a_load_error_at_its_line() {
    let text = BROKEN_TEMPLATE.replace("msg := \"x\" +", "msg := undefined_var");
    let errors = load_err("unsafe.yaml", &text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 21, "{}", errors[0]);
}

#[test]
fn v1_syntax_in_the_legacy_rego_field_is_rejected_like_gatekeeper_does() {
    // Gatekeeper parses `rego:` as v0, where `contains`/`if` need future imports.
    let text = BROKEN_TEMPLATE
        .replace(
            "      code:\n        - engine: Rego\n          source:\n            version: v1\n            rego: |",
            "      rego: |",
        )
        .replace("msg := \"x\" +", "msg := \"x\"");
    let errors = load_err("legacy.yaml", &text);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("Rego v0"), "{}", errors[0]);
    // Rego line 3 (the rule head) of a block starting on YAML line 14.
    assert_eq!(errors[0].line, 16, "{}", errors[0]);
}

#[test]
fn legacy_v0_templates_still_work() {
    let text = r#"
apiVersion: templates.gatekeeper.sh/v1
kind: ConstraintTemplate
metadata: {name: k8sdenyall}
spec:
  crd: {spec: {names: {kind: K8sDenyAll}}}
  targets:
    - target: admission.k8s.gatekeeper.sh
      rego: |
        package k8sdenyall
        violation[{"msg": msg}] {
          msg := sprintf("%v is denied", [input.review.object.metadata.name])
        }
---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sDenyAll
metadata: {name: deny-everything}
"#;
    let manifests = parse_documents(Path::new("v0.yaml"), text).expect("parses");
    let admission = Admission::from_manifests(&manifests).expect("loads");
    assert_eq!(admission.templates()[0].rego_version, RegoVersion::V0);
    let result = admission.review(&runbook_pod("good-pod"), Operation::Create);
    assert_eq!(
        result.denial_text.as_deref(),
        Some(
            "admission webhook \"validation.gatekeeper.sh\" denied the request: [deny-everything] good-pod is denied"
        )
    );
}

#[test]
fn a_constraint_without_a_template_is_an_error() {
    let text = r#"
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sNoSuchThing
metadata:
  name: orphan
"#;
    let errors = load_err("orphan.yaml", text);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].file, PathBuf::from("orphan.yaml"));
    assert_eq!(errors[0].line, 3);
    assert!(
        errors[0]
            .message
            .contains("no ConstraintTemplate defines kind K8sNoSuchThing")
    );
}

#[test]
fn a_profile_policy_without_a_bundled_template_fails_to_load() {
    let mut objects = rendered();
    objects.retain(|o| o.pointer("/metadata/name") != Some(&json!("k8sblockprivileged")));
    let errors = match Admission::from_objects(Path::new("<rendered>"), &objects) {
        Ok(_) => panic!("must not load"),
        Err(SourceErrors(errors)) => errors,
    };
    assert!(errors[0].message.contains("K8sBlockPrivileged"));
}

#[test]
fn mistakes_in_constraints_are_load_errors_at_their_lines() {
    let template = BundledTemplate::find("K8sRequiredRegistry")
        .expect("bundled")
        .to_object();
    let mut text = render_yaml_of(&[template]);
    text.push_str(
        r#"---
apiVersion: constraints.gatekeeper.sh/v1beta1
kind: K8sRequiredRegistry
metadata:
  name: typo
spec:
  enforcementAction: block
  match:
    excludeNamespaces: [kube-system]
    labelSelector:
      matchExpressions:
        - {key: app, operator: In}
  parameters:
    registries: docker.io/
    registry: [docker.io/]
"#,
    );
    let errors = load_err("typo.yaml", &text);
    // Line numbers below count from the constraint's apiVersion line (= 1).
    let base = text
        .lines()
        .position(|l| l == "  name: typo")
        .expect("line") as u32
        - 3;
    let found: Vec<(u32, &str)> = errors
        .iter()
        .map(|e| (e.line - base, e.message.as_str()))
        .collect();
    assert_eq!(
        found,
        vec![
            (8, "unknown matcher \"excludeNamespaces\""),
            (11, "operator In for key \"app\" needs at least one value"),
            (13, "spec.parameters.registries must be of type array"),
            (14, "unknown parameter spec.parameters.registry"),
            (6, "unknown enforcementAction \"block\""),
        ]
    );
}

fn render_yaml_of(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| format!("---\n{}", serde_saphyr::to_string(o).expect("serializes")))
        .collect()
}

#[test]
fn duplicate_templates_and_constraints_are_errors() {
    let mut objects = rendered();
    objects.push(objects[0].clone());
    objects.push(objects[5].clone());
    let errors = match Admission::from_objects(Path::new("<rendered>"), &objects) {
        Ok(_) => panic!("must not load"),
        Err(SourceErrors(errors)) => errors,
    };
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn template_name_must_be_the_lowercased_kind() {
    let mut template = BundledTemplate::find("K8sBlockPrivileged")
        .expect("bundled")
        .to_object();
    template["metadata"]["name"] = json!("block-privileged");
    let errors = load_err("t.yaml", &render_yaml_of(&[template]));
    assert!(errors[0].message.contains("does not match its kind"));
}

#[test]
fn non_gatekeeper_objects_are_skipped_and_namespaces_remembered() {
    let text = r#"
apiVersion: v1
kind: Namespace
metadata: {name: soma-agent-hub, labels: {tier: core}}
---
apiVersion: v1
kind: Service
metadata: {name: x}
"#;
    let mut objects = with_constraint("soma-block-privileged", |c| {
        c["spec"]["match"]["namespaceSelector"] =
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["core"]}]});
    });
    objects.extend(
        parse_documents(Path::new("ns.yaml"), text)
            .expect("parses")
            .into_iter()
            .map(|m| m.object),
    );
    let admission = admission_from(&objects);
    assert_eq!(admission.templates().len(), 4);
    assert_eq!(admission.constraints().len(), 4);
    assert!(
        !admission
            .review(&runbook_pod("bad-privileged"), Operation::Create)
            .allowed
    );
    // An unknown namespace: Gatekeeper's matcher errors, the webhook fails open.
    let mut elsewhere = runbook_pod("bad-privileged");
    elsewhere["metadata"]["namespace"] = json!("unknown");
    let objects = with_constraint("soma-block-privileged", |c| {
        c["spec"]["match"]["namespaces"] = json!([]);
        c["spec"]["match"]["namespaceSelector"] = json!({"matchLabels": {"tier": "core"}});
    });
    let result = admission_from(&objects).review(&elsewhere, Operation::Create);
    assert!(result.error.is_some());
    assert!(result.allowed);
}

// ---- evaluation errors --------------------------------------------------------------------------

fn single_template(rego: &str) -> Admission {
    let objects = vec![
        json!({
            "apiVersion": "templates.gatekeeper.sh/v1",
            "kind": "ConstraintTemplate",
            "metadata": {"name": "k8sprobe"},
            "spec": {"crd": {"spec": {"names": {"kind": "K8sProbe"}}},
                     "targets": [{"target": ADMISSION_TARGET,
                                  "code": [{"engine": "Rego", "source": {"version": "v1", "rego": rego}}]}]},
        }),
        json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sProbe",
               "metadata": {"name": "probe"}}),
    ];
    admission_from(&objects)
}

#[test]
fn a_runtime_error_fails_closed_like_gatekeeper() {
    // `any` is a deprecated builtin regorus lacks: the error becomes the violation.
    let admission = single_template(
        "package k8sprobe\nviolation contains {\"msg\": \"x\"} if {\n  input.review.object.kind == \"Pod\"\n  any([true])\n}\n",
    );
    let result = admission.review(&runbook_pod("good-pod"), Operation::Create);
    assert!(!result.allowed);
    assert!(result.denials[0].message.contains("any"), "{result:?}");
}

#[test]
fn a_result_without_a_string_msg_fails_open_like_gatekeeper() {
    let admission =
        single_template("package k8sprobe\nviolation contains {\"msg\": 42} if {\n  true\n}\n");
    let result = admission.review(&runbook_pod("good-pod"), Operation::Create);
    assert!(result.allowed);
    assert!(
        result
            .error
            .as_deref()
            .unwrap_or("")
            .contains("no string msg")
    );
}

#[test]
fn review_input_follows_gatekeepers_contract() {
    let admission = single_template(
        r#"package k8sprobe
violation contains {"msg": msg} if {
  r := input.review
  msg := sprintf("%v %v/%v/%v %v %v %v %v", [r.operation, r.kind.group, r.kind.version, r.kind.kind, r.namespace, r.name, object.get(r.userInfo, "username", "-"), object.get(input.parameters, "p", "none")])
}
"#,
    );
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "n"}});
    let request = ReviewRequest::create(deployment).user("alice", &["devs"]);
    let result = admission.review_request(&request);
    assert_eq!(result.denials.len(), 1, "{result:?}");
    assert_eq!(
        result.denials[0].message,
        "CREATE apps/v1/Deployment n d alice none"
    );
    // DELETE reviews the old object.
    let old = runbook_pod("good-pod");
    let delete = ReviewRequest {
        old_object: Some(old),
        ..ReviewRequest::new(Operation::Delete, Value::Null)
    };
    let result = admission.review_request(&delete);
    assert_eq!(
        result.denials[0].message,
        "DELETE /v1/Pod soma-agent-hub good-pod - none"
    );
}

// ---- matching ---------------------------------------------------------------------------------

#[test]
fn wildcards_follow_gatekeeper() {
    let w = |s: &str| Wildcard(s.to_owned());
    assert!(w("kube-*").matches("kube-system"));
    assert!(!w("kube-*").matches("xkube-system"));
    assert!(w("*-system").matches("gatekeeper-system"));
    assert!(w("*mesh*").matches("the-mesh-ns"));
    assert!(w("*").matches("anything"));
    assert!(w("exact").matches("exact") && !w("exact").matches("exact2"));
}

#[test]
fn label_selector_operators_follow_kubernetes() {
    let labels = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let req = |key: &str, operator, values: &[&str]| LabelSelector {
        match_labels: Default::default(),
        match_expressions: vec![Requirement {
            key: key.to_owned(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }],
    };
    let present = labels(&[("tier", "web")]);
    let absent = labels(&[]);
    assert!(req("tier", Operator::In, &["web"]).matches(&present));
    assert!(!req("tier", Operator::In, &["web"]).matches(&absent));
    assert!(!req("tier", Operator::NotIn, &["web"]).matches(&present));
    assert!(req("tier", Operator::NotIn, &["web"]).matches(&absent));
    assert!(req("tier", Operator::Exists, &[]).matches(&present));
    assert!(req("tier", Operator::DoesNotExist, &[]).matches(&absent));
    assert!(LabelSelector::default().matches(&absent));
}

#[test]
fn kinds_and_scope_follow_gatekeeper() {
    let objects = with_constraint("soma-block-privileged", |c| {
        c["spec"]["match"] =
            json!({"kinds": [{"apiGroups": ["*"], "kinds": ["Pod"]}], "scope": "Cluster"});
    });
    let admission = admission_from(&objects);
    let pod = runbook_pod("bad-privileged");
    assert!(
        !admission
            .review(&pod, Operation::Create)
            .denials
            .iter()
            .any(|d| d.constraint == "soma-block-privileged")
    );
    let mut cluster_pod = pod;
    if let Some(m) = cluster_pod["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    assert!(
        admission
            .review(&cluster_pod, Operation::Create)
            .denials
            .iter()
            .any(|d| d.constraint == "soma-block-privileged")
    );
}

// ---- rendering ----------------------------------------------------------------------------------

#[test]
fn rendering_follows_the_profile() {
    let profile = soma();
    assert_eq!(policy_problems(&profile), Vec::<String>::new());
    let objects = render_templates(&profile);
    let names: Vec<&str> = objects
        .iter()
        .filter_map(|o| o.pointer("/metadata/name").and_then(Value::as_str))
        .collect();
    assert_eq!(
        names,
        vec![
            "k8srequiredregistry",
            "k8sblockprivileged",
            "k8srequiredresources",
            "k8srequiredlabels",
            "soma-registry-policy",
            "soma-block-privileged",
            "soma-required-resources",
            "soma-required-labels",
        ]
    );
    let registry = &objects[4];
    assert_eq!(
        registry["spec"]["match"]["namespaces"],
        json!(["soma-agent-hub"])
    );
    assert_eq!(
        registry["spec"]["parameters"]["registries"],
        json!(["docker.io/"])
    );
    assert_eq!(
        registry["spec"]["parameters"]["message"],
        json!("Image '{image}' from disallowed registry")
    );
    // Each admission policy's message is the profile's, verbatim.
    for policy in &profile.admission.as_ref().expect("admission").policies {
        let constraint = objects
            .iter()
            .find(|o| o["metadata"]["name"] == json!(policy.name))
            .expect("rendered");
        assert_eq!(
            constraint["spec"]["parameters"]["message"],
            json!(policy.message)
        );
    }
}

#[test]
fn the_profile_message_is_the_denial_text() {
    let objects = with_constraint("soma-registry-policy", |c| {
        c["spec"]["parameters"]["message"] =
            json!("{container} in {name}: {image} is not from an approved registry");
    });
    let result = admission_from(&objects).review(&runbook_pod("bad-registry"), Operation::Create);
    assert_eq!(
        result.denials[0].message,
        "app in bad-registry: evil-registry.com/malware:latest is not from an approved registry"
    );
}

#[test]
fn policy_problems_catch_unknown_kinds_and_placeholders() {
    let mut profile = soma();
    if let Some(admission) = profile.admission.as_mut() {
        admission.policies[0].message = "Image '{img}' refused".to_owned();
        admission.policies[1].kind = "K8sUnknown".to_owned();
    }
    let problems = policy_problems(&profile);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("{img}"));
    assert!(problems[1].contains("K8sUnknown"));
}

#[test]
fn bundled_templates_are_rego_v1_with_valid_schemas() {
    for template in BUNDLED {
        let object = template.to_object();
        assert!(
            object
                .pointer("/spec/crd/spec/validation/openAPIV3Schema/properties/message")
                .is_some(),
            "{}",
            template.kind
        );
        let admission = admission_from(&[object]);
        assert_eq!(admission.templates()[0].rego_version, RegoVersion::V1);
        assert!(
            !template.rego.contains("import rego.v1"),
            "Gatekeeper rejects that import"
        );
    }
}

use cucumber::{given, then, when};

use super::{MeshWorld, harness_error};
use crate::checks::{self, intents, mtls};
use crate::policy::gatekeeper::{Operation, load_manifests};
use crate::policy::istio::PolicyIndex;
use crate::target::on_cluster;

#[given("the manifests configured for it")]
fn the_manifests(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    match ctx.configured(&profile) {
        Ok(c) => world.configured = Some(c),
        Err(e) => harness_error!("{e}"),
    }
}

#[then(expr = "every request from {string} to {string} is predicted as the profile promises")]
fn predicted_as_promised(world: &mut MeshWorld, from: String, to: String) {
    let profile = world.profile();
    let configured = world.configured();
    let calls: Vec<_> = crate::intents::matrix(&profile)
        .into_iter()
        .filter(|c| c.from == from && c.to == to)
        .collect();
    if calls.is_empty() {
        harness_error!("the intent matrix has no request from {from} to {to}");
    }
    // Record every verdict, then fail with all mismatches at once.
    let policies = PolicyIndex::new(&configured.policies);
    let mut failures = Vec::new();
    for call in &calls {
        let result = intents::judge_static(&policies, call);
        if result.status == crate::results::Status::Failed {
            failures.push(result.summary.clone());
        }
        world.checks.push(result);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[then("PeerAuthentication makes mutual TLS STRICT on every port of every workload")]
fn strict_everywhere(world: &mut MeshWorld) {
    let profile = world.profile();
    let configured = world.configured();
    world.record(checks::verdict(
        mtls::STRICT,
        &profile.name,
        mtls::strict(&profile, &configured.policies),
    ));
}

#[then("every DestinationRule originates ISTIO_MUTUAL")]
fn destination_rules(world: &mut MeshWorld) {
    let profile = world.profile();
    let configured = world.configured();
    world.record(checks::verdict(
        mtls::DESTINATION_RULE,
        &profile.name,
        mtls::destination_rules(&profile, &configured.policies),
    ));
}

/// On the lab the ConstraintTemplates are evaluated in process; on a cluster the pod goes to the
/// API server as a server-side dry run, so Gatekeeper's own webhook decides.
#[when(expr = "the runbook's pod {string} is submitted for admission")]
async fn submit_pod(world: &mut MeshWorld, pod: String) {
    let ctx = world.ctx();
    let configured = world.configured();
    let Some(admission) = &configured.admission else {
        harness_error!("{} holds no ConstraintTemplates", configured.dir.display());
    };
    let file = configured.dir.join("cases").join(format!("{pod}.yaml"));
    let objects = load_manifests(&[&file]).unwrap_or_else(|e| harness_error!("{e}"));
    let Some(object) = objects.first() else {
        harness_error!("{} holds no object", file.display())
    };
    let decision = match ctx.kube() {
        Some(kube) => {
            let object = object.object.clone();
            on_cluster(kube, move |k| k.admission(&object))
                .await
                .unwrap_or_else(|e| harness_error!("{e}"))
        }
        None => admission.review(&object.object, Operation::Create),
    };
    world.admission = Some(decision);
}

#[then(expr = "it is {word}, with the message {string}")]
fn admission_outcome(world: &mut MeshWorld, outcome: String, message: String) {
    let Some(result) = world.admission.clone() else {
        harness_error!("nothing was submitted for admission")
    };
    let subject = world.profile().name.clone();
    let verdict = match (outcome.as_str(), result.allowed, &result.denial_text) {
        ("admitted", true, _) => Ok(("admitted".to_owned(), Vec::new())),
        ("denied", false, Some(text)) if text.contains(&message) => {
            Ok((text.clone(), vec![("denial".to_owned(), text.clone())]))
        }
        ("denied", false, text) => Err(format!(
            "denied, but not with \"{message}\": {}",
            text.as_deref().unwrap_or("no text")
        )),
        ("denied", true, _) => Err(format!("admitted, but the runbook expects \"{message}\"")),
        ("admitted", false, text) => Err(format!(
            "denied, but the runbook expects it admitted: {}",
            text.as_deref().unwrap_or("")
        )),
        (other, ..) => harness_error!("outcome \"{other}\" is not one of admitted, denied"),
    };
    world.record(checks::verdict("admission.decision", &subject, verdict));
}

#[then("every workload in the manifests passes admission audit")]
fn audit_clean(world: &mut MeshWorld) {
    let profile = world.profile();
    let configured = world.configured();
    world.record(checks::verdict(
        crate::verify::ADMISSION_AUDIT,
        &profile.name,
        crate::verify::admission_audit(&profile, &configured),
    ));
}

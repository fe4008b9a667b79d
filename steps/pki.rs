use cucumber::{then, when};

use super::{MeshWorld, harness_error};
use crate::checks::{self, identity, pki};
use crate::pki::Chaos;
use crate::spiffe::TrustBundle;
use crate::target::on_cluster;

fn mesh_ca(world: &MeshWorld) -> crate::target::MeshCa {
    let ctx = world.ctx();
    ctx.target()
        .mesh_ca(&world.profile())
        .unwrap_or_else(|e| harness_error!("{e}"))
}

#[then("the mesh intermediate is a CA signed by the corporate root, and both are valid now")]
fn hierarchy(world: &mut MeshWorld) {
    let ca = mesh_ca(world);
    let outcome = pki::hierarchy(&ca.root_der, &ca.intermediate_der, world.ctx().now());
    world.record(checks::verdict(
        pki::HIERARCHY,
        &world.profile().name,
        outcome,
    ));
}

#[then("the intermediate's validity covers the rotation period plus the overlap")]
fn rotation_policy(world: &mut MeshWorld) {
    let ca = mesh_ca(world);
    let profile = world.profile();
    let outcome = pki::rotation_policy(&ca.root_der, &ca.intermediate_der, &profile.ca);
    world.record(checks::verdict(
        pki::ROTATION_POLICY,
        &profile.name,
        outcome,
    ));
}

#[then("Istio's plug-in CA files are in place, the key readable by its owner only")]
async fn plugin_ca(world: &mut MeshWorld) {
    let ca = mesh_ca(world);
    let Some(dir) = ca.plugin_dir.as_deref() else {
        return plugin_ca_secret(world).await;
    };
    let outcome = pki::plugin_ca(dir, &ca.intermediate_der, &ca.root_der);
    world.record(checks::verdict(
        pki::PLUGIN_CA,
        &world.profile().name,
        outcome,
    ));
}

/// On a cluster the run did not install, the plug-in CA is the Secret istiod (or SPIRE) reads:
/// every file must be in it. Only the names of its keys are read, never their values.
async fn plugin_ca_secret(world: &mut MeshWorld) {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some(kube) = ctx.kube() else {
        harness_error!("the target exposes no plug-in CA directory");
    };
    let read = {
        let profile = profile.clone();
        on_cluster(kube, move |k| k.ca_secret_keys(&profile))
            .await
            .unwrap_or_else(|e| harness_error!("{e}"))
    };
    let missing: Vec<&str> = read
        .expected
        .iter()
        .filter(|k| !read.keys.contains(&(**k).to_owned()))
        .copied()
        .collect();
    let outcome = if missing.is_empty() {
        Ok((
            format!(
                "secret {} holds {} (values not read); the key's file mode is the cluster's RBAC on that secret, not checked here",
                read.secret,
                read.expected.join(", ")
            ),
            vec![("secret".into(), read.secret.clone())],
        ))
    } else {
        Err(format!(
            "secret {} lacks {} (holds {})",
            read.secret,
            missing.join(", "),
            read.keys.join(", ")
        ))
    };
    world.record(checks::verdict(pki::PLUGIN_CA, &profile.name, outcome));
}

#[when(expr = "the lab CA issues {string} a certificate with the fault {string}")]
fn issue_with_fault(world: &mut MeshWorld, label: String, fault: String) {
    let ctx = world.ctx();
    let profile = world.profile();
    let identity = world.identity(&label);
    let Some(chaos) = Chaos::ALL.into_iter().find(|c| c.name() == fault) else {
        let names: Vec<&str> = Chaos::ALL.iter().map(|c| c.name()).collect();
        harness_error!(
            "unknown fault \"{fault}\": expected one of {}",
            names.join(", ")
        );
    };
    let lab = ctx
        .lab
        .pki(&profile)
        .unwrap_or_else(|e| harness_error!("{e}"));
    let broken = lab
        .pki
        .issue_chaos(chaos, &identity.spiffe_id.to_string(), ctx.lab.now())
        .unwrap_or_else(|e| harness_error!("{e}"));
    // An expired trust anchor is the fault itself: the mesh still trusts it, and the check must
    // notice its dates. Every other fault is judged against the mesh's real bundle.
    if chaos == Chaos::ExpiredRoot {
        let bundle =
            TrustBundle::from_der(profile.trust_domain.clone(), [broken.root().der().to_vec()])
                .unwrap_or_else(|e| harness_error!("{e}"));
        world.bundle = Some(bundle);
    }
    world.chain = Some((
        broken.chain_der().into_iter().map(<[u8]>::to_vec).collect(),
        identity,
    ));
}

#[then(expr = "the workload certificate check refuses it, naming {string}")]
fn check_refuses(world: &mut MeshWorld, naming: String) {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some((chain, identity)) = world.chain.clone() else {
        harness_error!("no certificate was issued: a When step must issue one first");
    };
    let bundle = match world.bundle.clone() {
        Some(b) => b,
        None => ctx
            .target()
            .trust_bundle(&profile)
            .unwrap_or_else(|e| harness_error!("{e}")),
    };
    let outcome = match identity::svid(
        &chain,
        &bundle,
        &identity.spiffe_id,
        profile.ca.workload_ttl,
        ctx.lab.now(),
    ) {
        Ok(_) => Err("the broken certificate was accepted".to_owned()),
        // `naming` is a comma-separated list of phrases that must all appear in the finding.
        Err(finding) if naming.split(',').all(|part| finding.contains(part.trim())) => {
            Ok((format!("refused: {finding}"), Vec::new()))
        }
        Err(finding) => Err(format!(
            "refused for another reason than \"{naming}\": {finding}"
        )),
    };
    world.record(checks::verdict(
        "identity.svid-sensitivity",
        &identity.label(),
        outcome,
    ));
}

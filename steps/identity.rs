use cucumber::{given, then, when};

use super::{MeshWorld, harness_error};
use crate::checks::{self, identity};
use crate::spiffe::SpiffeId;

#[given(expr = "the profile {string}")]
fn the_profile(world: &mut MeshWorld, name: String) {
    world.select_profile(&name);
}

#[when(expr = "the workload certificate of {string} is read from the target")]
fn read_workload_certificate(world: &mut MeshWorld, label: String) {
    let ctx = world.ctx();
    let profile = world.profile();
    let identity = world.identity(&label);
    match ctx.target().workload_certificate(&profile, &identity) {
        Ok(presented) => world.chain = Some((presented.chain, identity)),
        Err(e) => harness_error!("{e}"),
    }
}

#[then(expr = "it is a valid X.509-SVID for {string} within the workload TTL")]
fn valid_svid(world: &mut MeshWorld, expected: String) {
    let ctx = world.ctx();
    let profile = world.profile();
    let Some((chain, identity)) = world.chain.clone() else {
        harness_error!("no certificate was read: a When step must read one first");
    };
    let expected = SpiffeId::parse(&expected).unwrap_or_else(|e| harness_error!("{expected}: {e}"));
    let bundle = match world.bundle.clone() {
        Some(b) => b,
        None => ctx
            .target()
            .trust_bundle(&profile)
            .unwrap_or_else(|e| harness_error!("{e}")),
    };
    let outcome = identity::svid(
        &chain,
        &bundle,
        &expected,
        profile.ca.workload_ttl,
        ctx.now(),
    );
    world.record(checks::verdict(identity::SVID, &identity.label(), outcome));
}

#[then("every identity of the profile is a valid SPIFFE ID that follows its schema")]
fn identities_follow_schema(world: &mut MeshWorld) {
    let profile = world.profile();
    let outcome = identity::schema(&profile);
    world.record(checks::verdict(identity::SCHEMA, &profile.name, outcome));
}

#[then(expr = "{string} is refused as a SPIFFE ID, naming {string}")]
fn refused_id(world: &mut MeshWorld, text: String, naming: String) {
    let outcome = match SpiffeId::parse(&text) {
        Ok(id) => Err(format!(
            "{id} was accepted, but the SPIFFE ID specification forbids it ({naming})"
        )),
        Err(e) if e.to_string().contains(&naming) => Ok((format!("refused: {e}"), Vec::new())),
        Err(e) => Err(format!(
            "refused for the wrong reason: {e}; expected a reason naming \"{naming}\""
        )),
    };
    world.record(checks::verdict("identity.spiffe-id-form", &text, outcome));
}

#[then(expr = "{string} is accepted as a SPIFFE ID")]
fn accepted_id(world: &mut MeshWorld, text: String) {
    let outcome = SpiffeId::parse(&text)
        .map(|id| (format!("accepted {id}"), Vec::new()))
        .map_err(|e| e.to_string());
    world.record(checks::verdict("identity.spiffe-id-form", &text, outcome));
}

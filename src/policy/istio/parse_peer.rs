//! `PeerAuthentication.spec` → [`PeerAuthentication`], with Istio's validation rules.

use std::collections::BTreeMap;

use super::fields::Ctx;
use super::matcher;
use super::model::{MtlsMode, ObjectMeta, PeerAuthentication, PortMtls};
use super::parse_authz::selector;
use super::yaml::{Located, Node, line};

pub fn peer_authentication(
    ctx: &mut Ctx,
    meta: ObjectMeta,
    spec: Option<&Located>,
) -> PeerAuthentication {
    let mut pa = PeerAuthentication {
        meta,
        selector: None,
        mode: MtlsMode::Unset,
        port_level: BTreeMap::new(),
    };
    let Some(spec) = spec.filter(|s| s.value != Node::Null) else {
        return pa;
    };
    let Some(fields) = ctx.map(spec, "spec", &["selector", "mtls", "portLevelMtls"]) else {
        return pa;
    };
    pa.selector = fields
        .get("selector")
        .filter(|n| n.value != Node::Null)
        .map(|n| selector(ctx, n, "spec.selector"));
    if let Some(node) = fields.get("mtls") {
        pa.mode = mtls(ctx, node, "spec.mtls");
    }
    if let Some(node) = fields
        .get("portLevelMtls")
        .filter(|n| n.value != Node::Null)
    {
        let Node::Map(entries) = &node.value else {
            ctx.error(
                node,
                format!("spec.portLevelMtls is {}", node.value.kind()),
                "a mapping of port numbers to {mode: ...}",
            );
            return pa;
        };
        if entries.is_empty() {
            ctx.error(
                node,
                "spec.portLevelMtls is empty",
                "at least one port, or no portLevelMtls",
            );
        }
        if pa.selector.as_ref().is_none_or(|s| s.is_empty()) {
            ctx.error(
                node,
                "a mesh- or namespace-wide PeerAuthentication cannot have portLevelMtls",
                "a selector with matchLabels next to portLevelMtls",
            );
        }
        for (key, value) in entries {
            let path = format!("spec.portLevelMtls.{}", key.value);
            match matcher::parse_port(&key.value) {
                Ok(port) if port > 0 => {
                    let mode = mtls(ctx, value, &path);
                    pa.port_level.insert(
                        port,
                        PortMtls {
                            mode,
                            line: line(key),
                        },
                    );
                }
                _ => ctx.error(
                    key,
                    format!("portLevelMtls key {:?} is not a port", key.value),
                    "a port number 1-65535",
                ),
            }
        }
    }
    pa
}

fn mtls(ctx: &mut Ctx, node: &Located, path: &str) -> MtlsMode {
    if node.value == Node::Null {
        return MtlsMode::Unset;
    }
    let Some(fields) = ctx.map(node, path, &["mode"]) else {
        return MtlsMode::Unset;
    };
    let Some(mode) = fields.get("mode") else {
        return MtlsMode::Unset;
    };
    match ctx
        .string(mode, &fields.path("mode"))
        .as_ref()
        .map(|v| v.text.as_str())
    {
        None | Some("UNSET") => MtlsMode::Unset,
        Some("DISABLE") => MtlsMode::Disable,
        Some("PERMISSIVE") => MtlsMode::Permissive,
        Some("STRICT") => MtlsMode::Strict,
        Some(other) => {
            ctx.error(
                mode,
                format!("{path}.mode \"{other}\" is not an mTLS mode"),
                "UNSET, DISABLE, PERMISSIVE or STRICT",
            );
            MtlsMode::Unset
        }
    }
}

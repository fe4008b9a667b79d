//! The attributes a `when` condition can name, as istiod classifies them: which side of the Envoy
//! policy they land on (principal or permission), whether they are HTTP-only, how their values
//! are validated, and which of them meshproof does not model.

use super::matcher;

/// A `when[].key`, classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrKind {
    /// `request.headers[<name>]`.
    RequestHeader,
    /// `request.experimental.inline.headers[<name>]`.
    RequestInlineHeader,
    SourceIp,
    RemoteIp,
    SourceNamespace,
    SourceServiceAccount,
    SourcePrincipal,
    /// `request.auth.principal`, `.audiences`, `.presenter`, `.claims[...]`.
    RequestAuth,
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    /// `experimental.envoy.filters.*[...]`.
    EnvoyFilterMetadata,
}

impl AttrKind {
    /// Istio's `ValidateAttribute`: unknown and retired attributes are errors.
    pub fn classify(key: &str) -> Result<AttrKind, String> {
        let map_key = |prefix: &str| -> Result<(), String> {
            let rest = &key[prefix.len()..];
            match (rest.find('['), rest.ends_with(']')) {
                (Some(0), true) if rest.len() > 2 => Ok(()),
                _ => Err(format!("bad key {key:?}: expected {prefix}[<name>]")),
            }
        };
        Ok(match key {
            "source.ip" => AttrKind::SourceIp,
            "remote.ip" => AttrKind::RemoteIp,
            "source.namespace" => AttrKind::SourceNamespace,
            "source.serviceAccount" => AttrKind::SourceServiceAccount,
            "source.principal" => AttrKind::SourcePrincipal,
            "request.auth.principal" | "request.auth.audiences" | "request.auth.presenter" => {
                AttrKind::RequestAuth
            }
            "destination.ip" => AttrKind::DestinationIp,
            "destination.port" => AttrKind::DestinationPort,
            "connection.sni" => AttrKind::ConnectionSni,
            "destination.namespace" => {
                return Err("destination.namespace is replaced by metadata.namespace".into());
            }
            "destination.name" | "destination.user" => {
                return Err(format!("{key} is deprecated (v1alpha1 only)"));
            }
            k if k.starts_with("destination.labels") => {
                return Err("destination.labels is replaced by the workload selector".into());
            }
            k if k.starts_with("request.experimental.inline.headers") => {
                map_key("request.experimental.inline.headers")?;
                AttrKind::RequestInlineHeader
            }
            k if k.starts_with("request.headers") => {
                map_key("request.headers")?;
                AttrKind::RequestHeader
            }
            k if k.starts_with("request.auth.claims") => {
                map_key("request.auth.claims")?;
                AttrKind::RequestAuth
            }
            k if k.starts_with("experimental.envoy.filters.") => {
                if !(k.contains('[') && k.ends_with(']')) {
                    return Err(format!(
                        "bad key {key:?}: expected experimental.envoy.filters.<filter>[<key>]"
                    ));
                }
                AttrKind::EnvoyFilterMetadata
            }
            _ => return Err("unknown attribute".into()),
        })
    }

    /// Conditions on the caller's identity (rejected in CUSTOM policies).
    pub fn is_identity(self) -> bool {
        matches!(
            self,
            AttrKind::SourceNamespace
                | AttrKind::SourceServiceAccount
                | AttrKind::SourcePrincipal
                | AttrKind::RequestAuth
        )
    }

    /// Cannot be evaluated on a TCP connection.
    pub fn is_http_only(self) -> bool {
        matches!(
            self,
            AttrKind::RequestHeader | AttrKind::RequestInlineHeader | AttrKind::RequestAuth
        )
    }

    /// Why meshproof does not model this attribute, if it does not.
    pub fn unsupported_why(self) -> Option<&'static str> {
        match self {
            AttrKind::RequestAuth => Some(
                "no JWT is modelled: evaluated as a request without a validated JWT \
                 (values never match, notValues always match)",
            ),
            AttrKind::EnvoyFilterMetadata => Some(
                "Envoy dynamic metadata is not modelled: values never match, notValues always \
                 match",
            ),
            _ => None,
        }
    }

    pub fn expected(self) -> &'static str {
        match self {
            AttrKind::SourceIp | AttrKind::RemoteIp | AttrKind::DestinationIp => {
                "an IP address or CIDR range, e.g. 10.0.0.0/8"
            }
            AttrKind::DestinationPort => "a port number 0-65535 as a string, e.g. \"8080\"",
            AttrKind::SourceServiceAccount => {
                "<serviceAccount> or <namespace>/<serviceAccount>, without wildcards"
            }
            _ => "a non-empty string",
        }
    }
}

/// Validates one value of a `when` condition.
pub fn validate_value(kind: AttrKind, value: &str) -> Result<(), String> {
    match kind {
        AttrKind::SourceIp | AttrKind::RemoteIp | AttrKind::DestinationIp => {
            matcher::Cidr::parse(value).map(|_| ())
        }
        AttrKind::DestinationPort => matcher::parse_port(value).map(|_| ()),
        AttrKind::SourceServiceAccount => check_service_account(value),
        _ => Ok(()),
    }
}

/// Istio's `CheckServiceAccount` for one value.
pub fn check_service_account(value: &str) -> Result<(), String> {
    if value.contains('*') {
        return Err("wildcards are not allowed".into());
    }
    if value.len() > 320 {
        return Err("longer than 320 characters".into());
    }
    match value.split_once('/') {
        Some((ns, sa)) if ns.is_empty() || sa.is_empty() || sa.contains('/') => {
            Err("expected <serviceAccount> or <namespace>/<serviceAccount>".into())
        }
        _ => Ok(()),
    }
}

/// The header name inside `request.headers[<name>]`.
pub fn bracketed(key: &str) -> &str {
    key.find('[')
        .and_then(|open| key.strip_suffix(']').map(|k| &k[open + 1..]))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_like_istio() {
        assert_eq!(
            AttrKind::classify("request.headers[x-token]"),
            Ok(AttrKind::RequestHeader)
        );
        assert!(AttrKind::classify("request.headers").is_err());
        assert!(AttrKind::classify("request.headers[]").is_err());
        assert!(AttrKind::classify("destination.labels[app]").is_err());
        assert!(AttrKind::classify("source.user").is_err());
        assert_eq!(
            AttrKind::classify("request.auth.claims[iss]"),
            Ok(AttrKind::RequestAuth)
        );
        assert_eq!(bracketed("request.headers[X-Token]"), "X-Token");
        assert!(check_service_account("ns/sa").is_ok());
        assert!(check_service_account("ns/sa/x").is_err());
        assert!(check_service_account("ns/*").is_err());
    }
}

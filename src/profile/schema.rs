//! A profile's SPIFFE ID schema, e.g. `spiffe://tradepulse/{environment}/{service}[/{workload}]` or
//! `spiffe://soma-agent-hub.local/ns/{namespace}/sa/{serviceAccount}`: rendered to mint the IDs a
//! profile promises, and matched to decide whether an ID someone wrote follows it.

use std::fmt;

use serde::Serialize;

use super::model::Service;
use crate::spiffe::{SpiffeId, TrustDomain};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Var {
    Environment,
    Service,
    Workload,
    Namespace,
    ServiceAccount,
}

impl Var {
    fn parse(name: &str) -> Option<Var> {
        Some(match name {
            "environment" => Var::Environment,
            "service" => Var::Service,
            "workload" => Var::Workload,
            "namespace" => Var::Namespace,
            "serviceAccount" => Var::ServiceAccount,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Segment {
    Literal(String),
    Var(Var),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IdSchema {
    pub text: String,
    pub trust_domain: TrustDomain,
    pub segments: Vec<Segment>,
    /// The trailing `[/...]` part, present only for identities that have it (a workload qualifier).
    pub optional: Vec<Segment>,
}

pub const SCHEMA_FORM: &str = "spiffe://<trust-domain>/<segment>/... where a segment is literal text or one of {environment}, {service}, {workload}, {namespace}, {serviceAccount}, and an optional tail is written [/{workload}]";

impl IdSchema {
    pub fn parse(text: &str, trust_domain: &TrustDomain) -> Result<IdSchema, String> {
        let prefix = format!("spiffe://{}", trust_domain);
        let rest = text.strip_prefix(&prefix).ok_or_else(|| {
            format!("schema \"{text}\" does not start with the profile's trust domain {prefix}")
        })?;
        let (required, optional) = match rest.find('[') {
            Some(open) => {
                let tail = rest[open..]
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .ok_or_else(|| {
                        format!("schema \"{text}\": an optional part must be one [..] at the end")
                    })?;
                (&rest[..open], tail)
            }
            None => (rest, ""),
        };
        let segments = parse_segments(required, text)?;
        let optional = parse_segments(optional, text)?;
        if optional.iter().any(|s| *s != Segment::Var(Var::Workload)) {
            return Err(format!(
                "schema \"{text}\": only [/{{workload}}] may be optional"
            ));
        }
        let schema = IdSchema {
            text: text.to_owned(),
            trust_domain: trust_domain.clone(),
            segments,
            optional,
        };
        if !schema.uses(Var::Service) && !schema.uses(Var::ServiceAccount) {
            return Err(format!(
                "schema \"{text}\" names no {{service}} or {{serviceAccount}}, so every workload would share one identity"
            ));
        }
        Ok(schema)
    }

    pub fn uses(&self, var: Var) -> bool {
        self.segments
            .iter()
            .chain(&self.optional)
            .any(|s| *s == Segment::Var(var))
    }

    pub fn uses_environment(&self) -> bool {
        self.uses(Var::Environment)
    }

    /// The ID of `service` (with an optional workload qualifier) in `environment`.
    pub fn render(
        &self,
        service: &Service,
        workload: Option<&str>,
        environment: Option<&str>,
    ) -> Result<SpiffeId, String> {
        let value = |var: Var| -> Result<String, String> {
            Ok(match var {
                Var::Environment => environment
                    .ok_or_else(|| format!("schema {} needs an environment", self.text))?
                    .to_owned(),
                Var::Service => service.name.clone(),
                Var::Workload => workload
                    .ok_or_else(|| format!("schema {} needs a workload", self.text))?
                    .to_owned(),
                Var::Namespace => service.namespace.clone(),
                Var::ServiceAccount => service.service_account.clone(),
            })
        };
        let mut parts = Vec::new();
        let optional: &[Segment] = if workload.is_some() {
            &self.optional
        } else {
            &[]
        };
        if workload.is_some() && self.optional.is_empty() {
            return Err(format!(
                "schema {} has no [/{{workload}}] qualifier",
                self.text
            ));
        }
        for segment in self.segments.iter().chain(optional) {
            parts.push(match segment {
                Segment::Literal(text) => text.clone(),
                Segment::Var(var) => value(*var)?,
            });
        }
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        SpiffeId::from_segments(&self.trust_domain, &parts).map_err(|e| e.to_string())
    }
}

impl fmt::Display for IdSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_segments(path: &str, whole: &str) -> Result<Vec<Segment>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let path = path
        .strip_prefix('/')
        .ok_or_else(|| format!("schema \"{whole}\": the path must start with '/'"))?;
    path.split('/')
        .map(|segment| {
            if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Var::parse(name).map(Segment::Var).ok_or_else(|| {
                    format!(
                        "schema \"{whole}\" has unknown placeholder {{{name}}}: expected environment, service, workload, namespace or serviceAccount"
                    )
                })
            } else if segment.is_empty() || segment.contains(['{', '}']) {
                Err(format!("schema \"{whole}\" has a malformed segment \"{segment}\""))
            } else {
                Ok(Segment::Literal(segment.to_owned()))
            }
        })
        .collect()
}

//! Preflight: before anything touches a cluster, every tool the target needs is looked up and
//! asked for its version, and *all* problems are reported at once — each with the version found
//! (if any), the version wanted, and how to install it. The CLI turns a [`PreflightError`] into
//! exit code 2.

use std::fmt;
use std::path::PathBuf;

use super::applicability::TargetKind;
use super::tool::{Call, Program, Timeout, Toolbox};
use super::versions;

/// How one tool fared.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ToolStatus {
    pub program: &'static str,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// The version it reported.
    pub version: Option<String>,
    /// Whether the target cannot run without it.
    pub required: bool,
    /// What is wrong, with how to fix it; `None` when it is usable.
    pub problem: Option<String>,
}

/// Every tool's status: what a run records as the tool versions it used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Preflight {
    pub target: &'static str,
    pub tools: Vec<ToolStatus>,
}

impl Preflight {
    /// `kubectl 1.37.2, helm 3.22.0, ...` for results metadata.
    pub fn versions(&self) -> Vec<(String, String)> {
        self.tools
            .iter()
            .filter_map(|t| Some((t.program.to_owned(), t.version.clone()?)))
            .collect()
    }

    /// Whether an optional tool is usable.
    pub fn has(&self, program: Program) -> bool {
        self.tools
            .iter()
            .any(|t| t.program == program.name() && t.problem.is_none())
    }
}

/// The tools a target cannot run without, every one named with how to get it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreflightError {
    pub target: &'static str,
    /// The required tools that are missing or unusable.
    pub problems: Vec<ToolStatus>,
}

impl fmt::Display for PreflightError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "preflight for --target {}: {} required tool(s) missing or unusable",
            self.target,
            self.problems.len()
        )?;
        for status in &self.problems {
            write!(
                f,
                "\n  - {}: {}",
                status.program,
                status.problem.as_deref().unwrap_or("unusable")
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for PreflightError {}

/// What `target` needs: (program, required, minimum version).
fn needs(target: TargetKind) -> Vec<(Program, bool, Option<&'static str>)> {
    match target {
        TargetKind::Kind => vec![
            (Program::Docker, true, None),
            (Program::Kind, true, Some(versions::MIN_KIND)),
            (Program::Kubectl, true, Some(versions::MIN_KUBECTL)),
            (Program::Helm, true, Some(versions::MIN_HELM)),
            (Program::Istioctl, false, Some(versions::MIN_ISTIOCTL)),
        ],
        TargetKind::Cluster => vec![
            (Program::Kubectl, true, Some(versions::MIN_KUBECTL)),
            (Program::Helm, false, Some(versions::MIN_HELM)),
            (Program::Istioctl, false, Some(versions::MIN_ISTIOCTL)),
        ],
        TargetKind::Lab => Vec::new(),
    }
}

/// Checks every tool `target` uses. `Err` lists every required tool that is missing, too old,
/// or (docker) has no engine behind it; optional tools only show in the `Ok` report.
pub fn check(
    tools: &Toolbox,
    target: TargetKind,
    timeout: Timeout,
) -> Result<Preflight, PreflightError> {
    let mut statuses = Vec::new();
    for (program, required, minimum) in needs(target) {
        statuses.push(status(tools, program, required, minimum, timeout));
    }
    let problems: Vec<ToolStatus> = statuses
        .iter()
        .filter(|s| s.required && s.problem.is_some())
        .cloned()
        .collect();
    if problems.is_empty() {
        Ok(Preflight {
            target: target.name(),
            tools: statuses,
        })
    } else {
        Err(PreflightError {
            target: target.name(),
            problems,
        })
    }
}

fn status(
    tools: &Toolbox,
    program: Program,
    required: bool,
    minimum: Option<&str>,
    timeout: Timeout,
) -> ToolStatus {
    let mut status = ToolStatus {
        program: program.name(),
        path: None,
        version: None,
        required,
        problem: None,
    };
    let optional = if required {
        ""
    } else {
        " (optional: sidecar certificates are read through kubectl exec instead)"
    };
    let path = match tools.resolve(program) {
        Ok(path) => path,
        Err(e) => {
            status.problem = Some(format!("{e}{optional}"));
            return status;
        }
    };
    status.path = Some(path.clone());
    let version_args: &[&str] = match program {
        Program::Docker => &["version", "--format", "{{.Client.Version}}"],
        Program::Kind => &["version"],
        Program::Kubectl => &["version", "--client", "-o", "json"],
        Program::Helm => &["version", "--short"],
        Program::Istioctl => &["version", "--remote=false"],
    };
    let found = tools.run(&Call::new(program, version_args.iter().copied(), timeout));
    let version = match &found {
        // docker exits non-zero without an engine but still prints its client version.
        Ok(out) => parse_version(program, &out.stdout),
        Err(_) => None,
    };
    status.version = version.clone();
    let shown = |v: &Option<String>| match v {
        Some(v) => format!("{v} found at {}", path.display()),
        None => format!("found at {} but its version is unreadable", path.display()),
    };
    match (&found, &version, minimum) {
        (Err(e), _, _) => {
            status.problem = Some(format!(
                "found at {} but `{}` failed: {e}; reinstall: {}",
                path.display(),
                program.name(),
                program.install_hint()
            ));
        }
        (Ok(_), Some(v), Some(min)) if versions::at_least(v, min) == Some(false) => {
            status.problem = Some(format!(
                "{} is older than the minimum {min}; install: {}",
                shown(&version),
                program.install_hint()
            ));
        }
        (Ok(_), None, _) if program != Program::Docker => {
            status.problem = Some(format!(
                "{}; install: {}",
                shown(&version),
                program.install_hint()
            ));
        }
        _ => {}
    }
    if program == Program::Docker && status.problem.is_none() {
        // kind needs a running engine, not just the client.
        let info = tools.run(&Call::new(
            program,
            ["info", "--format", "{{.ServerVersion}}"],
            timeout,
        ));
        let engine = match &info {
            Ok(out) if out.success() && !out.stdout.trim().is_empty() => Ok(out.stdout.trim()),
            Ok(out) => Err(first_line(&out.stderr).to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match engine {
            Ok(server) => {
                status.version = Some(format!(
                    "client {}, engine {server}",
                    version.as_deref().unwrap_or("unknown")
                ));
            }
            Err(why) => {
                status.problem = Some(format!(
                    "client {} found at {}, but no Docker engine answers ({why}); install: {}",
                    version.as_deref().unwrap_or("(version unreadable)"),
                    path.display(),
                    program.install_hint()
                ));
            }
        }
    }
    if status.problem.is_some() && !required {
        status.problem = status.problem.map(|p| format!("{p}{optional}"));
    }
    status
}

/// The version a tool printed, without a leading `v` and build suffixes kept as printed.
pub fn parse_version(program: Program, stdout: &str) -> Option<String> {
    if program == Program::Kubectl {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(stdout) {
            if let Some(v) = json
                .pointer("/clientVersion/gitVersion")
                .and_then(|v| v.as_str())
            {
                return Some(v.trim_start_matches('v').to_owned());
            }
        }
    }
    stdout
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .map(|token| token.trim_start_matches('v'))
        .find(|token| {
            let mut parts = token.split('.');
            let major = parts.next().is_some_and(is_number);
            let minor = parts
                .next()
                .is_some_and(|p| p.chars().next().is_some_and(|c| c.is_ascii_digit()));
            major && minor
        })
        .map(|token| {
            token
                .split('+')
                .next()
                .unwrap_or(token)
                .trim_end_matches('.')
                .to_owned()
        })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

fn first_line(text: &str) -> &str {
    text.trim().lines().next().unwrap_or("no output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_each_tools_own_output() {
        assert_eq!(
            parse_version(Program::Kind, "kind v0.33.0 go1.26.1 linux/amd64\n"),
            Some("0.33.0".into())
        );
        assert_eq!(
            parse_version(Program::Helm, "v3.22.0+g1a2b3c4\n"),
            Some("3.22.0".into())
        );
        assert_eq!(
            parse_version(
                Program::Kubectl,
                r#"{"clientVersion":{"gitVersion":"v1.32.4-dispatcher"}}"#
            ),
            Some("1.32.4-dispatcher".into())
        );
        assert_eq!(
            parse_version(Program::Istioctl, "client version: 1.31.1\n"),
            Some("1.31.1".into())
        );
        assert_eq!(
            parse_version(Program::Docker, "28.2.2\n"),
            Some("28.2.2".into())
        );
        assert_eq!(parse_version(Program::Kind, "no version here"), None);
    }
}

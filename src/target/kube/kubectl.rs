//! kubectl, bound to one cluster (a kubeconfig file and/or a context), with the few verbs the
//! targets use. Each method builds one command line; nothing here interprets cluster state
//! beyond parsing kubectl's JSON.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::KubeError;
use super::tool::{Call, Finished, Program, SecretBytes, Stdin, Timeout, Toolbox};
use super::wait::{self, Backoff, Timeouts};

/// The field manager of everything the harness applies (`kubectl get -o yaml --show-managed-fields`
/// shows which fields meshproof owns).
pub const FIELD_MANAGER: &str = "meshproof";

#[derive(Clone, Debug)]
pub struct Kubectl {
    tools: Toolbox,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    timeouts: Timeouts,
    backoff: Backoff,
}

impl Kubectl {
    pub fn new(
        tools: Toolbox,
        kubeconfig: Option<PathBuf>,
        context: Option<String>,
        timeouts: Timeouts,
    ) -> Self {
        Kubectl {
            tools,
            kubeconfig,
            context,
            timeouts,
            backoff: Backoff::default(),
        }
    }

    /// Pauses between retries (tests use [`Backoff::immediate`]).
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    pub fn tools(&self) -> &Toolbox {
        &self.tools
    }

    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    pub fn backoff(&self) -> Backoff {
        self.backoff
    }

    pub fn context(&self) -> Option<&str> {
        self.context.as_deref()
    }

    pub fn kubeconfig(&self) -> Option<&std::path::Path> {
        self.kubeconfig.as_deref()
    }

    /// `--kubeconfig FILE --context NAME`, for kubectl and helm alike (helm spells the context
    /// flag `--kube-context`).
    pub fn connection_args(&self, program: Program) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(path) = &self.kubeconfig {
            args.push("--kubeconfig".to_owned());
            args.push(path.display().to_string());
        }
        if let Some(context) = &self.context {
            args.push(match program {
                Program::Helm => "--kube-context".to_owned(),
                _ => "--context".to_owned(),
            });
            args.push(context.clone());
        }
        args
    }

    /// A kubectl call with the connection flags first.
    pub fn call<I, S>(&self, args: I, timeout: Timeout) -> Call
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut all = self.connection_args(Program::Kubectl);
        all.extend(args.into_iter().map(Into::into));
        Call::new(Program::Kubectl, all, timeout)
    }

    /// Runs a call, exit code judged.
    pub fn run_ok(&self, call: &Call) -> Result<Finished, KubeError> {
        Ok(self.tools.run_ok(call)?)
    }

    /// `kubectl version -o json`: the server answers (the context is reachable). Returns the
    /// server's version.
    pub fn server_version(&self) -> Result<String, KubeError> {
        let call = self.call(["version", "-o", "json"], self.timeouts.call());
        let out = self.tools.run(&call)?;
        let json: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        match json
            .pointer("/serverVersion/gitVersion")
            .and_then(Value::as_str)
        {
            Some(v) => Ok(v.to_owned()),
            None => Err(KubeError::Tool(super::tool::failed(&call, &out))),
        }
    }

    /// `kubectl apply --server-side` of `objects` (sent on stdin as one `List`), retried with
    /// backoff while the API server is still catching up (a CRD just created, a webhook not yet
    /// serving).
    pub fn apply(&self, what: &str, objects: &[Value]) -> Result<Finished, KubeError> {
        let list = json!({ "apiVersion": "v1", "kind": "List", "items": objects });
        let bytes = serde_json::to_vec(&list)
            .map_err(|e| KubeError::parse(what, format!("cannot encode objects: {e}")))?;
        let call = self
            .call(
                [
                    "apply",
                    "--server-side",
                    "--field-manager",
                    FIELD_MANAGER,
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
                self.timeouts.call(),
            )
            .stdin(Stdin::Text {
                label: format!("{what}: {} object(s)", objects.len()),
                bytes,
            });
        self.tools.say(&format!(
            "kubectl: applying {what} ({} object(s))",
            objects.len()
        ));
        wait::retry(
            &self.tools,
            &format!("apply {what}"),
            self.timeouts.eventual(),
            self.backoff,
            || self.tools.run_ok(&call),
        )
    }

    /// Server-side apply of a Secret whose data is secret: the object goes on stdin only.
    pub fn apply_secret(&self, what: &str, secret: &Value) -> Result<(), KubeError> {
        let bytes = serde_json::to_vec(secret)
            .map_err(|e| KubeError::parse(what, format!("cannot encode the secret: {e}")))?;
        let call = self
            .call(
                [
                    "apply",
                    "--server-side",
                    "--field-manager",
                    FIELD_MANAGER,
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
                self.timeouts.call(),
            )
            .stdin(Stdin::Secret {
                label: what.to_owned(),
                bytes: SecretBytes::new(bytes),
            });
        self.tools
            .say(&format!("kubectl: applying {what} (on stdin, not logged)"));
        wait::retry(
            &self.tools,
            &format!("apply {what}"),
            self.timeouts.eventual(),
            self.backoff,
            || self.tools.run_ok(&call),
        )
        .map(|_| ())
    }

    /// `kubectl get KIND [NAME] -n NS -o json`.
    pub fn get_json(
        &self,
        kind: &str,
        name: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Value, KubeError> {
        let call = self.call(get_args(kind, name, namespace, &[]), self.timeouts.call());
        let out = self.run_ok(&call)?;
        serde_json::from_str(&out.stdout)
            .map_err(|e| KubeError::parse(call.command_line(), format!("not JSON: {e}")))
    }

    /// Like [`get_json`](Self::get_json) for objects holding secrets: the output is never
    /// recorded or quoted in errors.
    pub fn get_json_sensitive(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Value, KubeError> {
        let call = self
            .call(
                get_args(kind, Some(name), namespace, &[]),
                self.timeouts.call(),
            )
            .sensitive_output();
        let out = self.run_ok(&call)?;
        serde_json::from_str(&out.stdout).map_err(|_| {
            KubeError::parse(
                call.command_line(),
                "not JSON (content withheld: it may hold secrets)",
            )
        })
    }

    /// One field by JSONPath (`{.data.ca-cert\.pem}`); `Ok(None)` when the object is not found.
    pub fn get_field(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        jsonpath: &str,
    ) -> Result<Option<String>, KubeError> {
        let output = format!("jsonpath={jsonpath}");
        let call = self.call(
            get_args(kind, Some(name), namespace, &["-o", &output]),
            self.timeouts.call(),
        );
        let out = self.tools.run(&call)?;
        if out.success() {
            Ok(Some(out.stdout))
        } else if out.stderr.contains("NotFound") || out.stderr.contains("not found") {
            Ok(None)
        } else {
            Err(KubeError::Tool(super::tool::failed(&call, &out)))
        }
    }

    /// `kubectl wait --for=CONDITION KIND/NAME -n NS --timeout=…` (watch-based).
    pub fn wait_for(
        &self,
        resource: &str,
        namespace: Option<&str>,
        condition: &str,
        timeout: Timeout,
    ) -> Result<(), KubeError> {
        let mut args = vec!["wait".to_owned(), format!("--for={condition}")];
        args.push(resource.to_owned());
        if let Some(ns) = namespace {
            args.push("-n".into());
            args.push(ns.into());
        }
        args.push(format!("--timeout={}", Timeouts::flag(timeout.limit)));
        self.tools.say(&format!(
            "kubectl: waiting for {resource} {condition} ({timeout})"
        ));
        self.watch(args, timeout, &format!("{resource}: {condition}"))
    }

    /// `kubectl rollout status KIND/NAME -n NS --timeout=…` (watch-based).
    pub fn rollout_status(
        &self,
        resource: &str,
        namespace: &str,
        timeout: Timeout,
    ) -> Result<(), KubeError> {
        let args = vec![
            "rollout".to_owned(),
            "status".to_owned(),
            resource.to_owned(),
            "-n".to_owned(),
            namespace.to_owned(),
            format!("--timeout={}", Timeouts::flag(timeout.limit)),
        ];
        self.tools.say(&format!(
            "kubectl: waiting for {resource} in {namespace} to roll out ({timeout})"
        ));
        self.watch(
            args,
            timeout,
            &format!("rollout of {resource} in {namespace}"),
        )
    }

    /// Runs a watch-based wait whose own `--timeout` is `timeout`; both kubectl reporting the
    /// timeout and the call outliving it are reported as that named timeout.
    fn watch(&self, args: Vec<String>, timeout: Timeout, what: &str) -> Result<(), KubeError> {
        // The process gets a little longer than its own --timeout so kubectl reports first.
        let call = self.call(
            args,
            Timeout::new(timeout.name, timeout.limit + Duration::from_secs(15)),
        );
        match self.tools.run(&call)? {
            out if out.success() => Ok(()),
            out if out.stderr.contains("timed out") || out.stderr.contains("deadline exceeded") => {
                Err(KubeError::Timeout {
                    what: format!("{what} ({})", super::tool::excerpt(&out.stderr)),
                    timeout,
                })
            }
            out => Err(KubeError::Tool(super::tool::failed(&call, &out))),
        }
    }

    /// `kubectl exec -n NS TARGET -c CONTAINER -- COMMAND…`; any exit code is returned (the
    /// command's own, e.g. curl's), only a failure to run at all is an error.
    pub fn exec(
        &self,
        namespace: &str,
        target: &str,
        container: &str,
        command: &[String],
        timeout: Timeout,
    ) -> Result<Finished, KubeError> {
        let mut args = vec![
            "exec".to_owned(),
            "-n".to_owned(),
            namespace.to_owned(),
            target.to_owned(),
            "-c".to_owned(),
            container.to_owned(),
            "--".to_owned(),
        ];
        args.extend(command.iter().cloned());
        Ok(self.tools.run(&self.call(args, timeout))?)
    }

    /// Like [`exec`](Self::exec), with `stdin` written to the command (`kubectl exec -i`), e.g.
    /// a throwaway client certificate and key for a probe: never on a command line.
    pub fn exec_stdin(
        &self,
        namespace: &str,
        target: &str,
        container: &str,
        command: &[String],
        stdin: Stdin,
        timeout: Timeout,
    ) -> Result<Finished, KubeError> {
        let mut args = vec![
            "exec".to_owned(),
            "-i".to_owned(),
            "-n".to_owned(),
            namespace.to_owned(),
            target.to_owned(),
            "-c".to_owned(),
            container.to_owned(),
            "--".to_owned(),
        ];
        args.extend(command.iter().cloned());
        Ok(self.tools.run(&self.call(args, timeout).stdin(stdin))?)
    }

    /// `kubectl create --dry-run=server -o json -f -`: admission (webhooks included) without
    /// persisting anything. Returns the finished call; the caller reads acceptance or the
    /// denial from it.
    pub fn create_dry_run(&self, object: &Value) -> Result<Finished, KubeError> {
        let bytes = serde_json::to_vec(object)
            .map_err(|e| KubeError::parse("dry-run object", e.to_string()))?;
        let call = self
            .call(
                ["create", "--dry-run=server", "-o", "json", "-f", "-"],
                self.timeouts.call(),
            )
            .stdin(Stdin::Text {
                label: format!("dry-run {}", describe(object)),
                bytes,
            });
        Ok(self.tools.run(&call)?)
    }

    /// `kubectl patch KIND NAME -n NS --type TYPE -p PATCH`. The patch is on the command line:
    /// never use this for secret data (use [`apply_secret`](Self::apply_secret)).
    pub fn patch(
        &self,
        kind: &str,
        name: &str,
        namespace: Option<&str>,
        patch_type: &str,
        patch: &Value,
    ) -> Result<(), KubeError> {
        let mut args = vec!["patch".to_owned(), kind.to_owned(), name.to_owned()];
        if let Some(ns) = namespace {
            args.push("-n".into());
            args.push(ns.into());
        }
        args.push("--type".into());
        args.push(patch_type.into());
        args.push("-p".into());
        args.push(patch.to_string());
        self.run_ok(&self.call(args, self.timeouts.call()))
            .map(|_| ())
    }

    /// `kubectl delete KIND NAME -n NS --wait=false`.
    pub fn delete(&self, kind: &str, name: &str, namespace: Option<&str>) -> Result<(), KubeError> {
        let mut args = vec!["delete".to_owned(), kind.to_owned(), name.to_owned()];
        if let Some(ns) = namespace {
            args.push("-n".into());
            args.push(ns.into());
        }
        args.push("--wait=false".into());
        self.run_ok(&self.call(args, self.timeouts.call()))
            .map(|_| ())
    }

    /// `kubectl replace -f -` of a previously read object (its `resourceVersion` and other
    /// server-set fields removed), from stdin; `secret` keeps the bytes out of every record.
    pub fn replace(&self, what: &str, object: &Value, secret: bool) -> Result<(), KubeError> {
        let bytes = serde_json::to_vec(&restorable(object))
            .map_err(|e| KubeError::parse(what, e.to_string()))?;
        let stdin = if secret {
            Stdin::Secret {
                label: what.to_owned(),
                bytes: SecretBytes::new(bytes),
            }
        } else {
            Stdin::Text {
                label: what.to_owned(),
                bytes,
            }
        };
        let call = self
            .call(["replace", "-f", "-"], self.timeouts.call())
            .stdin(stdin);
        wait::retry(
            &self.tools,
            &format!("restore {what}"),
            self.timeouts.eventual(),
            self.backoff,
            || self.tools.run_ok(&call),
        )
        .map(|_| ())
    }

    /// The name of one pod matching `selector` in `namespace` (the first, by name).
    pub fn pod_name(&self, namespace: &str, selector: &str) -> Result<String, KubeError> {
        let call = self.call(
            ["get", "pods", "-n", namespace, "-l", selector, "-o", "json"],
            self.timeouts.call(),
        );
        let out = self.run_ok(&call)?;
        let json: Value = serde_json::from_str(&out.stdout)
            .map_err(|e| KubeError::parse(call.command_line(), e.to_string()))?;
        let mut names: Vec<&str> = json["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
            .collect();
        names.sort_unstable();
        names
            .first()
            .map(|n| (*n).to_owned())
            .ok_or_else(|| KubeError::Input {
                what: format!("pods -l {selector} in {namespace}"),
                reason: "none found".into(),
            })
    }
}

fn get_args(
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
    output: &[&str],
) -> Vec<String> {
    let mut args = vec!["get".to_owned(), kind.to_owned()];
    if let Some(name) = name {
        args.push(name.to_owned());
    }
    if let Some(ns) = namespace {
        args.push("-n".to_owned());
        args.push(ns.to_owned());
    }
    if output.is_empty() {
        args.push("-o".to_owned());
        args.push("json".to_owned());
    } else {
        args.extend(output.iter().map(|s| (*s).to_owned()));
    }
    args
}

/// `Kind namespace/name` of an object, for labels.
pub fn describe(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or("object");
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("?");
    match object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// An object as read from the server, made fit to be written back: server-set metadata
/// (`resourceVersion`, `uid`, `creationTimestamp`, `managedFields`, `generation`) and `status`
/// removed.
pub fn restorable(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in [
            "resourceVersion",
            "uid",
            "creationTimestamp",
            "managedFields",
            "generation",
            "selfLink",
        ] {
            meta.remove(key);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

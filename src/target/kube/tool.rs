//! The one seam between meshproof and the cluster tools: `docker`, `kind`, `kubectl`, `helm`,
//! `istioctl`, run through `std::process`.
//!
//! # Contract
//!
//! * **Where a program comes from.** `MESHPROOF_<NAME>` (e.g. `MESHPROOF_KUBECTL=/opt/k/kubectl`)
//!   when set, otherwise the first executable `<name>` on the search path (`PATH` by default). A
//!   [`Toolbox`] built for tests takes an explicit search path instead, so fake executables can
//!   stand in for the real ones without touching the test process's environment.
//! * **What is recorded.** Every call leaves a [`Record`]: program, resolved path, arguments,
//!   what went on stdin (a label and a byte count, never the bytes), exit code, whether it timed
//!   out, how long it took. Records are evidence of what the harness did to a cluster.
//! * **Secrets never go on a command line.** A secret (the plug-in CA key) is passed as
//!   [`Stdin::Secret`]: written to the child's stdin, redacted in `Debug`, and recorded only as
//!   `secret (<n> bytes)`. No record holds a call's stdout; output marked [`Output::Sensitive`]
//!   (a `kubectl get secret -o json`) is flagged in its record, and callers never quote it in
//!   an error. Error excerpts of
//!   stderr are scanned with the report secret scanner and lines that look like a key or token
//!   are withheld.
//! * **Every call has a named timeout.** [`Timeout`] pairs a limit with a name (`rollout`,
//!   `helm-install`, ...), and a call that runs out is killed and reported by that name, with the
//!   environment variable that raises it.
//! * **No polling in the normal path.** Output is drained by two reader threads; the caller
//!   waits on a channel with the call's deadline, so a call returns the moment its program exits.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The programs the kube targets drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Program {
    Docker,
    Kind,
    Kubectl,
    Helm,
    Istioctl,
}

impl Program {
    pub const ALL: [Program; 5] = [
        Program::Docker,
        Program::Kind,
        Program::Kubectl,
        Program::Helm,
        Program::Istioctl,
    ];

    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Program::Docker => "docker",
            Program::Kind => "kind",
            Program::Kubectl => "kubectl",
            Program::Helm => "helm",
            Program::Istioctl => "istioctl",
        }
    }

    /// The environment variable that points at a specific executable.
    pub fn override_var(self) -> &'static str {
        match self {
            Program::Docker => "MESHPROOF_DOCKER",
            Program::Kind => "MESHPROOF_KIND",
            Program::Kubectl => "MESHPROOF_KUBECTL",
            Program::Helm => "MESHPROOF_HELM",
            Program::Istioctl => "MESHPROOF_ISTIOCTL",
        }
    }

    /// How to install it (one line, for the preflight report).
    pub fn install_hint(self) -> String {
        use super::versions::{HELM, ISTIO, KIND, KUBECTL};
        match self {
            Program::Docker => {
                "Docker Engine from https://docs.docker.com/engine/install/, running \
                 (kind runs its nodes as containers)"
                    .to_owned()
            }
            Program::Kind => format!(
                "go install sigs.k8s.io/kind@v{KIND}, or download https://kind.sigs.k8s.io/dl/v{KIND}/kind-linux-amd64"
            ),
            Program::Kubectl => format!(
                "download https://dl.k8s.io/release/v{KUBECTL}/bin/linux/amd64/kubectl (or your distribution's kubectl / kubernetes-client package)"
            ),
            Program::Helm => format!(
                "download https://get.helm.sh/helm-v{HELM}-linux-amd64.tar.gz (https://helm.sh/docs/intro/install/)"
            ),
            Program::Istioctl => format!(
                "curl -L https://istio.io/downloadIstio | ISTIO_VERSION={ISTIO} sh - (then put istio-{ISTIO}/bin on PATH)"
            ),
        }
    }
}

impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A time limit with a name, so an expired one can be named in the error and raised by its
/// environment variable (see [`super::wait::Timeouts`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeout {
    pub name: &'static str,
    pub limit: Duration,
}

impl Timeout {
    pub fn new(name: &'static str, limit: Duration) -> Self {
        Timeout { name, limit }
    }

    /// `MESHPROOF_TIMEOUT_HELM_INSTALL` for `helm-install`.
    pub fn env_var(&self) -> String {
        format!(
            "MESHPROOF_TIMEOUT_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timeout '{}' ({}; raise it with {})",
            self.name,
            crate::duration::format(self.limit),
            self.env_var()
        )
    }
}

/// Bytes that must never be printed: `Debug` and `Display` say how many there are, nothing more.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }
    /// The bytes: secret.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes({} bytes, redacted)", self.0.len())
    }
}

/// What a call writes to the program's stdin.
#[derive(Clone, Debug)]
pub enum Stdin {
    /// Public content (manifests); recorded as its label and size.
    Text { label: String, bytes: Vec<u8> },
    /// A secret (a Secret object holding a private key); recorded as `secret (<n> bytes)`.
    Secret { label: String, bytes: SecretBytes },
}

impl Stdin {
    fn bytes(&self) -> &[u8] {
        match self {
            Stdin::Text { bytes, .. } => bytes,
            Stdin::Secret { bytes, .. } => bytes.expose(),
        }
    }

    fn describe(&self) -> String {
        match self {
            Stdin::Text { label, bytes } => format!("{label} ({} bytes)", bytes.len()),
            Stdin::Secret { label, bytes } => format!("{label}: secret ({} bytes)", bytes.len()),
        }
    }
}

/// Whether a call's stdout may be copied into records and errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    #[default]
    Plain,
    /// Holds secrets (e.g. a Secret read back for a fault's undo): returned, never recorded.
    Sensitive,
}

/// One invocation to make.
#[derive(Clone, Debug)]
pub struct Call {
    pub program: Program,
    pub args: Vec<String>,
    pub stdin: Option<Stdin>,
    pub timeout: Timeout,
    pub output: Output,
}

impl Call {
    pub fn new<I, S>(program: Program, args: I, timeout: Timeout) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Call {
            program,
            args: args.into_iter().map(Into::into).collect(),
            stdin: None,
            timeout,
            output: Output::Plain,
        }
    }

    pub fn stdin(mut self, stdin: Stdin) -> Self {
        self.stdin = Some(stdin);
        self
    }

    pub fn sensitive_output(mut self) -> Self {
        self.output = Output::Sensitive;
        self
    }

    /// `kubectl get pods -n x`: the command line as a person would type it (arguments with
    /// spaces or shell metacharacters quoted). Never holds a secret: secrets go on stdin.
    pub fn command_line(&self) -> String {
        command_line(self.program, &self.args)
    }
}

fn command_line(program: Program, args: &[String]) -> String {
    let mut line = program.name().to_owned();
    for arg in args {
        line.push(' ');
        let plain = !arg.is_empty()
            && arg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%^".contains(c) || !c.is_ascii());
        if plain {
            line.push_str(arg);
        } else {
            line.push('\'');
            line.push_str(&arg.replace('\'', r"'\''"));
            line.push('\'');
        }
    }
    line
}

/// What a finished call produced.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The exit code; `None` when the program was killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Evidence of one call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Record {
    pub program: &'static str,
    pub path: PathBuf,
    pub args: Vec<String>,
    /// What went on stdin: a label and a size, never content.
    pub stdin: Option<String>,
    pub code: Option<i32>,
    pub timed_out: bool,
    /// The call read secrets (its output was held in memory only).
    pub sensitive_output: bool,
    #[serde(serialize_with = "as_millis")]
    pub elapsed: Duration,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// Why a call did not produce what was asked for.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("{program} not found ({looked}); install: {hint}")]
    NotFound {
        program: Program,
        looked: String,
        hint: String,
    },
    #[error("cannot run {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within the {timeout}; it was stopped")]
    TimedOut { command: String, timeout: Timeout },
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        /// An excerpt, with anything that looks like a secret withheld.
        stderr: String,
    },
}

impl ToolError {
    /// The failed call's stderr excerpt, when it ran and failed.
    pub fn stderr(&self) -> Option<&str> {
        match self {
            ToolError::Failed { stderr, .. } => Some(stderr),
            _ => None,
        }
    }
}

/// Progress lines for a person watching a run (stderr in the CLI, a buffer in tests).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// Runs the programs; cheap to clone (clones share the records).
#[derive(Clone)]
pub struct Toolbox {
    inner: Arc<Inner>,
}

struct Inner {
    search_path: Vec<PathBuf>,
    overrides: BTreeMap<Program, PathBuf>,
    env: Vec<(OsString, OsString)>,
    records: Mutex<Vec<Record>>,
    progress: Option<Progress>,
}

impl fmt::Debug for Toolbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Toolbox")
            .field("search_path", &self.inner.search_path)
            .field("overrides", &self.inner.overrides)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Toolbox`].
pub struct ToolboxBuilder {
    search_path: Vec<PathBuf>,
    overrides: BTreeMap<Program, PathBuf>,
    env: Vec<(OsString, OsString)>,
    progress: Option<Progress>,
}

impl ToolboxBuilder {
    /// Uses `program` at `path` whatever the search path holds.
    pub fn program(mut self, program: Program, path: impl Into<PathBuf>) -> Self {
        self.overrides.insert(program, path.into());
        self
    }

    /// Sets an environment variable for every child (tests: where the fakes log).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn progress(mut self, progress: Progress) -> Self {
        self.progress = Some(progress);
        self
    }

    pub fn build(self) -> Toolbox {
        Toolbox {
            inner: Arc::new(Inner {
                search_path: self.search_path,
                overrides: self.overrides,
                env: self.env,
                records: Mutex::new(Vec::new()),
                progress: self.progress,
            }),
        }
    }
}

impl Toolbox {
    /// The machine's tools: `PATH`, and `MESHPROOF_<NAME>` overrides from the environment.
    pub fn from_env() -> ToolboxBuilder {
        let search_path = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        let mut builder = ToolboxBuilder {
            search_path,
            overrides: BTreeMap::new(),
            env: Vec::new(),
            progress: None,
        };
        for program in Program::ALL {
            if let Some(path) = std::env::var_os(program.override_var()) {
                if !path.is_empty() {
                    builder = builder.program(program, PathBuf::from(path));
                }
            }
        }
        builder
    }

    /// Only these directories are searched, and no override is read from the environment.
    pub fn with_search_path(search_path: Vec<PathBuf>) -> ToolboxBuilder {
        ToolboxBuilder {
            search_path,
            overrides: BTreeMap::new(),
            env: Vec::new(),
            progress: None,
        }
    }

    /// Where `program` would be run from.
    pub fn resolve(&self, program: Program) -> Result<PathBuf, ToolError> {
        if let Some(path) = self.inner.overrides.get(&program) {
            return if is_executable(path) {
                Ok(path.clone())
            } else {
                Err(ToolError::NotFound {
                    program,
                    looked: format!(
                        "{}={} is not an executable file",
                        program.override_var(),
                        path.display()
                    ),
                    hint: program.install_hint(),
                })
            };
        }
        for dir in &self.inner.search_path {
            let candidate = dir.join(program.name());
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
        Err(ToolError::NotFound {
            program,
            looked: format!("not on PATH and {} is not set", program.override_var()),
            hint: program.install_hint(),
        })
    }

    /// Prints a progress line (when a progress sink is set).
    pub fn say(&self, line: &str) {
        if let Some(progress) = &self.inner.progress {
            progress(line);
        }
    }

    /// Every call made so far, in order.
    pub fn records(&self) -> Vec<Record> {
        self.inner
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Runs `call`; any exit code is `Ok` (the caller judges it). `Err` when the program could
    /// not be found or started, or ran past its timeout (it is then killed).
    pub fn run(&self, call: &Call) -> Result<Finished, ToolError> {
        let path = self.resolve(call.program)?;
        let started = Instant::now();
        let mut command = Command::new(&path);
        command
            .args(&call.args)
            .stdin(if call.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if !self.inner.search_path.is_empty() {
            if let Ok(joined) = std::env::join_paths(&self.inner.search_path) {
                command.env("PATH", joined);
            }
        }
        for (key, value) in &self.inner.env {
            command.env(key, value);
        }
        let mut child = command.spawn().map_err(|source| ToolError::Spawn {
            path: path.clone(),
            source,
        })?;

        let (sender, receiver) = mpsc::channel::<(Stream, Vec<u8>)>();
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            spawn_reader(Stream::Out, out, sender.clone());
            readers += 1;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(Stream::Err, err, sender.clone());
            readers += 1;
        }
        drop(sender);
        if let (Some(mut pipe), Some(stdin)) = (child.stdin.take(), call.stdin.as_ref()) {
            let bytes = stdin.bytes().to_vec();
            // A writer thread: a program that does not read its stdin must not block us.
            std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
                // Dropping the pipe closes it: the program sees EOF.
            });
        }

        let deadline = started + call.timeout.limit;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut timed_out = false;
        while readers > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match receiver.recv_timeout(left) {
                Ok((Stream::Out, bytes)) => {
                    stdout = bytes;
                    readers -= 1;
                }
                Ok((Stream::Err, bytes)) => {
                    stderr = bytes;
                    readers -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let code = if timed_out {
            let _ = child.kill();
            let _ = child.wait();
            None
        } else {
            wait_until(&mut child, deadline, &mut timed_out)
        };
        let elapsed = started.elapsed();
        self.record(Record {
            program: call.program.name(),
            path,
            args: call.args.clone(),
            stdin: call.stdin.as_ref().map(Stdin::describe),
            code,
            timed_out,
            sensitive_output: call.output == Output::Sensitive,
            elapsed,
        });
        if timed_out {
            return Err(ToolError::TimedOut {
                command: call.command_line(),
                timeout: call.timeout,
            });
        }
        Ok(Finished {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            elapsed,
        })
    }

    /// [`run`](Self::run), and a non-zero exit is an error carrying a stderr excerpt.
    pub fn run_ok(&self, call: &Call) -> Result<Finished, ToolError> {
        let finished = self.run(call)?;
        if finished.success() {
            Ok(finished)
        } else {
            Err(failed(call, &finished))
        }
    }

    fn record(&self, record: Record) {
        if let Ok(mut records) = self.inner.records.lock() {
            records.push(record);
        }
    }
}

/// The error for a call that exited non-zero.
pub fn failed(call: &Call, finished: &Finished) -> ToolError {
    ToolError::Failed {
        command: call.command_line(),
        status: match finished.code {
            Some(code) => format!("exit {code}"),
            None => "killed by a signal".to_owned(),
        },
        stderr: excerpt(&finished.stderr),
    }
}

/// At most 2000 characters of `text`, trimmed, with every line that looks like a private key,
/// token or other credential withheld.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 2000;
    let mut out = String::new();
    for line in text.trim().lines() {
        let findings = crate::report::secrets::scan_text(Path::new("stderr"), line);
        if !out.is_empty() {
            out.push('\n');
        }
        match findings.first() {
            Some(finding) => out.push_str(&format!("[line withheld: it holds {}]", finding.kind)),
            None => out.push_str(line),
        }
        if out.len() > MAX {
            let mut end = MAX;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push_str(" …");
            break;
        }
    }
    if out.is_empty() {
        "(no output on stderr)".to_owned()
    } else {
        out
    }
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

fn spawn_reader<R: Read + Send + 'static>(
    stream: Stream,
    mut reader: R,
    sender: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = reader.read_to_end(&mut buf);
        let _ = sender.send((stream, buf));
    });
}

/// Both pipes are closed, so the program is exiting: reap it. A program that closed its pipes
/// but lingers is given until the deadline (checked with a short, growing pause) and then killed.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
    timed_out: &mut bool,
) -> Option<i32> {
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code(),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(None) => {
                *timed_out = true;
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Err(_) => return child.wait().ok().and_then(|s| s.code()),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_quote_what_a_shell_would_split() {
        let line = command_line(
            Program::Kubectl,
            &[
                "exec".into(),
                "--".into(),
                "curl".into(),
                "-w".into(),
                "%{http_code} x".into(),
                "it's".into(),
            ],
        );
        assert_eq!(line, r"kubectl exec -- curl -w '%{http_code} x' 'it'\''s'");
    }

    #[test]
    fn secrets_print_as_their_size_only() {
        let stdin = Stdin::Secret {
            label: "cacerts".into(),
            bytes: SecretBytes::new(b"-----BEGIN PRIVATE KEY-----".to_vec()),
        };
        assert_eq!(stdin.describe(), "cacerts: secret (27 bytes)");
        assert!(!format!("{stdin:?}").contains("PRIVATE"));
    }

    #[test]
    fn excerpts_withhold_lines_that_hold_a_key() {
        let text = "error: bad\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n";
        let out = excerpt(text);
        assert!(out.contains("error: bad"));
        assert!(!out.contains("BEGIN EC PRIVATE KEY"), "{out}");
    }

    #[test]
    fn timeouts_name_their_variable() {
        let t = Timeout::new("helm-install", Duration::from_secs(600));
        assert_eq!(t.env_var(), "MESHPROOF_TIMEOUT_HELM_INSTALL");
        assert!(t.to_string().contains("'helm-install' (10m"), "{t}");
    }
}

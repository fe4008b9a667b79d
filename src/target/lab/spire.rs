//! SPIRE in the lab: real `spire-server` and `spire-agent` processes issuing the identities a
//! profile's `spire:` section registers, the way SomaAgentHub's runbook runs SPIRE (section 3).
//!
//! # Contract
//!
//! * **Binaries.** [`SpireBinaries::locate`] looks for each binary at `$MESHPROOF_SPIRE_SERVER` /
//!   `$MESHPROOF_SPIRE_AGENT` (when set, it must be executable: a wrong value is an error, not a
//!   reason to pick another binary), then on `$PATH`, then in
//!   `${MESHPROOF_CACHE:-$HOME/.cache/meshproof}/bin` (where `scripts/install/spire.sh` puts the
//!   pinned [`PINNED_VERSION`]). Not found is [`SpireError::NotFound`] with
//!   `install_hint: "scripts/setup"`. Versions (`--version`) are read for reports.
//! * **Lab.** [`SpireLab::start`] builds, in a fresh directory under the system temp dir:
//!   a server (sqlite3 datastore, `join_token` node attestor, `disk` key manager so a restarted
//!   server keeps its CA, the profile's trust domain and CA organisation, and the lab-short
//!   [`SpireLabConfig::ca_ttl`] / [`SpireLabConfig::x509_svid_ttl`], both reported), waits for
//!   `spire-server healthcheck`, then starts [`SpireLabConfig::agents`] agents, each with its own
//!   data dir, socket, `unix` workload attestor and one-time join token, bootstrapped with the
//!   server's bundle (no `insecure_bootstrap`), and waits until `agent list` shows every one of
//!   them attested and each agent's own healthcheck passes. Finally it registers every profile
//!   entry and waits until every workload holds its SVID. Every wait polls with a bound
//!   ([`SpireLabConfig::wait`]); none is a fixed sleep.
//! * **Workload identity in the lab.** The profile's selectors are Kubernetes ones
//!   (`k8s:ns:…`, `k8s:sa:…`), which a machine without a kubelet cannot produce. Each distinct
//!   selector set (one Kubernetes workload) becomes one lab workload that the `unix` attestor can
//!   really tell apart: as root, its own uid and gid ([`SpireLabConfig::uid_base`] + n, e.g.
//!   21000, 21001, …; no passwd entry is needed, the attestor reads the numbers from the kernel);
//!   otherwise ([`Isolation::Path`]) its own hard link (or copy) of the fetching binary, selected
//!   with `unix:path:` (a symlink would not do: the kernel resolves it, and `/proc/<pid>/exe`
//!   names the target). Workload n is served by agent `n % agents`; its entry's parent is that
//!   agent's node alias (below). The entry's `-x509SVIDTTL` is the lab TTL; the profile's TTL is
//!   kept alongside for reports.
//! * **Join tokens are secrets.** A token is read from `token generate` and written only to the
//!   file `spire-agent` reads (`join_token_file`, SPIRE's documented alternative to
//!   `-joinToken` on the command line, where any local user could read it from
//!   `/proc/<pid>/cmdline`): mode 0600 inside the private (0700) directory, deleted as soon as
//!   the agent has attested. Tokens live for [`TOKEN_TTL`] and are single-use. SPIRE names an
//!   agent `spiffe://<td>/spire/agent/join_token/<token>`, so every CLI output and log tail
//!   passes through redaction before it is parsed, returned, or quoted in an error: the token
//!   becomes `redacted-agent-<i>-token-<n>`. Workload entries never name an agent ID: each token
//!   is generated with `-spiffeID` = the agent's stable node alias
//!   `spiffe://<td>/lab/node/<cluster>/agent-<i>`, which is also what survives re-attestation.
//!   Server and agents log at `WARN` into the private directory only (SPIRE's own datastore there
//!   also holds tokens and agent IDs; it goes with the directory).
//! * **Directories.** `<root>/private` (0700) holds configs, datastore, CA keys, agent keys,
//!   token files and logs. Workloads running under other uids must reach the agent sockets and a
//!   copy of the fetching binary, so in [`Isolation::Uid`] `<root>` itself is 0711 (enter, not
//!   list) and `<root>/public` (0755) holds `agent-<i>/api.sock`, `bin/` and per-fetch output
//!   directories owned by the fetching uid (0700, removed right after reading: they hold a key).
//! * **Fetching.** [`SpireLab::fetch_x509`] runs `spire-agent api fetch x509 -socketPath …
//!   -write <dir>` as the caller (its uid/gid via `CommandExt::uid`/`gid`, or its own binary
//!   path), and returns each SVID's chain and bundle (DER); private keys are deleted unread. A
//!   caller SPIRE does not recognise gets [`SpireError::NoIdentity`].
//! * **Lifetime.** Every process is spawned with `kill_on_drop`; [`SpireLab::shutdown`] kills
//!   and reaps them all and removes the directory; dropping the lab does the same without
//!   waiting for the reaping more than briefly. Stops are SIGKILL (std has no other signal
//!   without `libc`): for the drills that is a crash, which sqlite's journal survives.
//!
//! SPIRE behaviour the lab relies on (1.15.3): agents learn about new or deleted entries, new
//! bundle contents and tainted authorities on their sync, after the server's entry cache reload
//! (both every 5 s by default; the lab sets [`SpireLabConfig::sync_interval`], 1 s), so such
//! changes reach workloads within about two intervals; workload
//! SVIDs are backdated 10 s (`notBefore`) and renewed once past half of `notBefore..notAfter`.
//!
//! Known limits: join-token agents cannot re-attest with an expired SVID, so
//! [`SpireLab::start_agent`] after a long stop issues a fresh token for the same node alias (a new
//! agent ID; entries keep working because they name the alias). The server's port is chosen
//! free just before start; another process could take it in between (the start then fails with
//! the server's log). Like the lab's Envoys, SPIRE processes outlive a harness that is itself
//! SIGKILLed (no `PR_SET_PDEATHSIG` without `libc`).

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use time::OffsetDateTime;
use tokio::process::{Child, Command};

use crate::profile::Profile;
use crate::spiffe::{SpiffeId, TrustBundle, TrustDomain, parse_pem_chain};

#[path = "spire_cli.rs"]
pub mod cli;
#[path = "spire_envoy.rs"]
mod sds;

pub use cli::{AgentInfo, AuthorityState, AuthorityStates, BundleAuthority, BundleInfo, Entry};
pub use sds::{
    SDS_CLUSTER, SDS_DEFAULT_BUNDLE, SDS_DEFAULT_SVID, sds_certificate, sds_cluster, sds_secret,
    sds_validation_context,
};

/// Names the `spire-server` binary explicitly.
pub const SERVER_ENV: &str = "MESHPROOF_SPIRE_SERVER";
/// Names the `spire-agent` binary explicitly.
pub const AGENT_ENV: &str = "MESHPROOF_SPIRE_AGENT";
/// What installs SPIRE.
pub const INSTALL_HINT: &str = "scripts/setup";
/// The version `scripts/install/spire.sh` builds and this module was verified against.
pub const PINNED_VERSION: &str = "1.15.3";
/// First uid handed to lab workloads when running as root.
pub const DEFAULT_UID_BASE: u32 = 21000;
/// Join token lifetime: long enough for an agent to start and attest, short enough that an
/// unused one is soon worthless.
pub const TOKEN_TTL: Duration = Duration::from_secs(120);
/// Offset from the uid base for callers made by [`SpireLab::new_caller`] (never registered).
const EXTRA_CALLER_UID_OFFSET: u32 = 500;
/// Bound for one CLI invocation.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);
/// The Workload API call's own deadline (`api fetch x509 -timeout`).
const FETCH_TIMEOUT: &str = "5s";
/// How much of a process log an error quotes.
const LOG_TAIL_LINES: usize = 20;
/// First and longest interval between polls.
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

/// Why SPIRE could not be found, started, asked or read. Messages never contain a join token or
/// key material: command lines carry no secrets, and outputs and log tails are redacted.
#[derive(Debug, thiserror::Error)]
pub enum SpireError {
    #[error(
        "{binary} not found (searched: {}); install it with {install_hint}",
        display_paths(searched)
    )]
    NotFound {
        binary: &'static str,
        searched: Vec<PathBuf>,
        install_hint: &'static str,
    },
    #[error("{}: cannot read its version: {reason}", path.display())]
    Version { path: PathBuf, reason: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    Command {
        command: String,
        status: String,
        output: String,
    },
    #[error("`{command}`: unexpected output: {reason}")]
    Parse { command: String, reason: String },
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("{process} exited ({status}); log tail:\n{log_tail}")]
    Exited {
        process: String,
        status: String,
        log_tail: String,
    },
    /// The agent recognised no registration entry for the caller (the Workload API's
    /// `PermissionDenied: no identity issued`).
    #[error("{caller} (agent {agent}): no identity issued: {message}")]
    NoIdentity {
        caller: String,
        agent: usize,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<SpireError> for super::super::TargetError {
    fn from(error: SpireError) -> Self {
        super::super::TargetError {
            target: "lab (spire)".into(),
            message: error.to_string(),
        }
    }
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> SpireError {
    let context = context.into();
    move |source| SpireError::Io { context, source }
}

// ---------------------------------------------------------------------------------------------
// Binaries

/// The SPIRE binaries and the versions they report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SpireBinaries {
    pub server: PathBuf,
    pub agent: PathBuf,
    pub server_version: String,
    pub agent_version: String,
}

impl SpireBinaries {
    /// Finds both binaries (see the module docs for the order) and reads their versions. Runs
    /// `--version` synchronously (a few milliseconds each): call it once per lab.
    pub fn locate() -> Result<SpireBinaries, SpireError> {
        let server = locate_binary("spire-server", SERVER_ENV)?;
        let agent = locate_binary("spire-agent", AGENT_ENV)?;
        Ok(SpireBinaries {
            server_version: read_version(&server)?,
            agent_version: read_version(&agent)?,
            server,
            agent,
        })
    }

    /// True when both report the version `scripts/install/spire.sh` pins.
    pub fn is_pinned(&self) -> bool {
        self.server_version == PINNED_VERSION && self.agent_version == PINNED_VERSION
    }
}

/// `${MESHPROOF_CACHE:-$HOME/.cache/meshproof}/bin`, where `scripts/install/spire.sh` installs.
pub fn cache_bin_dir() -> PathBuf {
    let cache = std::env::var_os("MESHPROOF_CACHE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map_or_else(|| PathBuf::from("/"), PathBuf::from)
                .join(".cache")
                .join("meshproof")
        });
    cache.join("bin")
}

fn locate_binary(name: &'static str, env: &str) -> Result<PathBuf, SpireError> {
    if let Some(explicit) = std::env::var_os(env).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(explicit);
        if is_executable(&path) {
            return Ok(path);
        }
        return Err(SpireError::NotFound {
            binary: name,
            searched: vec![path],
            install_hint: INSTALL_HINT,
        });
    }
    let mut searched = Vec::new();
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    for dir in path_dirs.into_iter().chain([cache_bin_dir()]) {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return Ok(candidate);
        }
        searched.push(candidate);
    }
    Err(SpireError::NotFound {
        binary: name,
        searched,
        install_hint: INSTALL_HINT,
    })
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// SPIRE prints its version (`1.15.3`, or `1.15.3-dev-<hash>` for unstamped builds) on stderr.
fn read_version(path: &Path) -> Result<String, SpireError> {
    let output = std::process::Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SpireError::Version {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    parse_version(&text).ok_or_else(|| SpireError::Version {
        path: path.to_owned(),
        reason: format!("unrecognised output {:?}", text.trim()),
    })
}

/// The first line that starts with a digit, e.g. `1.15.3`.
pub fn parse_version(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
}

// ---------------------------------------------------------------------------------------------
// Configuration and public data

/// The lab's knobs. Short TTLs stand in for hours so that renewal and rotation happen in
/// seconds; reports state which were used.
#[derive(Clone, Debug, Serialize)]
pub struct SpireLabConfig {
    /// Number of agents (nodes), at least 1; the runbook's DaemonSet means at least 2.
    pub agents: usize,
    /// Server `ca_ttl`. SPIRE prepares the next authority at 1/2 and activates it at 5/6 of it.
    #[serde(serialize_with = "ser_duration")]
    pub ca_ttl: Duration,
    /// Server `default_x509_svid_ttl` (also the agents' own SVID TTL) and every lab entry's
    /// `-x509SVIDTTL`. SPIRE wants it at most `ca_ttl / 6`.
    #[serde(serialize_with = "ser_duration")]
    pub x509_svid_ttl: Duration,
    /// Agents' `sync_interval` and the server's `cache_reload_interval` (both `experimental`;
    /// SPIRE's default is 5 s each): how soon a new entry, bundle or due renewal reaches a
    /// workload. The lab's short TTLs need a short one, or a renewal waits for the next sync.
    #[serde(serialize_with = "ser_duration")]
    pub sync_interval: Duration,
    /// First workload uid/gid when running as root.
    pub uid_base: u32,
    /// Bound on every wait (server healthy, agents attested, an SVID arriving, ...).
    #[serde(serialize_with = "ser_duration")]
    pub wait: Duration,
    /// `None`: [`Isolation::Uid`] when running as root, else [`Isolation::Path`]. Forcing
    /// `Path` as root exercises the non-root fallback; forcing `Uid` without root is an error.
    pub isolation: Option<Isolation>,
}

impl Default for SpireLabConfig {
    fn default() -> Self {
        SpireLabConfig {
            agents: 2,
            ca_ttl: Duration::from_secs(120),
            x509_svid_ttl: Duration::from_secs(20),
            sync_interval: Duration::from_secs(1),
            uid_base: DEFAULT_UID_BASE,
            wait: Duration::from_secs(30),
            isolation: None,
        }
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format(*d))
}

fn ser_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How lab workloads are told apart by the `unix` workload attestor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// Running as root: each workload runs under its own uid/gid (`unix:uid:<n>`).
    Uid,
    /// Not root: each workload execs its own link/copy of the binary (`unix:path:<file>`).
    Path,
}

/// Who calls the Workload API: which agent, as which uid/gid, with which binary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Caller {
    /// Names the caller in errors and reports (the service name for profile workloads).
    pub label: String,
    /// Index of the agent whose socket it calls.
    pub agent: usize,
    pub uid: u32,
    pub gid: u32,
    /// Whether the lab switches to `uid`/`gid` when running it ([`Isolation::Uid`]).
    pub switch_user: bool,
    /// The binary it runs (`spire-agent`, for `api fetch x509`).
    pub exe: PathBuf,
    pub isolation: Isolation,
}

impl Caller {
    /// The `unix` selectors that single this caller out, as an entry would list them.
    pub fn selectors(&self) -> Vec<String> {
        match self.isolation {
            Isolation::Uid => vec![format!("unix:uid:{}", self.uid)],
            Isolation::Path => vec![format!("unix:path:{}", self.exe.display())],
        }
    }

    /// A selector the attestor reports for a *different* process, never for this one: added to
    /// [`Caller::selectors`] it makes an entry this caller cannot match.
    pub fn mismatching_selector(&self) -> String {
        format!("unix:gid:{}", self.gid.wrapping_add(1))
    }
}

/// A profile registration as the lab runs it.
#[derive(Clone, Debug, Serialize)]
pub struct LabWorkload {
    pub service: String,
    pub spiffe_id: SpiffeId,
    /// The profile's (Kubernetes) selectors this workload stands for.
    pub profile_selectors: Vec<String>,
    /// The profile's TTL (what production entries use).
    #[serde(serialize_with = "ser_duration")]
    pub profile_ttl: Duration,
    /// The TTL the lab registered instead.
    #[serde(serialize_with = "ser_duration")]
    pub lab_ttl: Duration,
    /// The unix selectors the lab registered in place of the profile's.
    pub selectors: Vec<String>,
    pub parent_id: SpiffeId,
    pub entry_id: String,
    pub caller: Caller,
}

/// A registration request.
#[derive(Clone, Debug)]
pub struct EntrySpec {
    pub spiffe_id: SpiffeId,
    /// The agent whose node alias becomes the parent.
    pub agent: usize,
    pub selectors: Vec<String>,
    /// `None`: the server default.
    pub x509_svid_ttl: Option<Duration>,
}

/// A healthcheck answer. `healthy: false` is an observation, not an error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub healthy: bool,
    /// What the healthcheck printed (redacted).
    pub message: String,
}

/// One X.509-SVID as the Workload API returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Svid {
    pub spiffe_id: SpiffeId,
    /// DER, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    /// The caller's trust domain bundle (DER roots) delivered with the SVID.
    pub bundle_der: Vec<Vec<u8>>,
}

impl Svid {
    pub fn leaf(&self) -> &[u8] {
        self.chain_der.first().map_or(&[], Vec::as_slice)
    }

    /// Leaf serial, lowercase hex without leading zero bytes (the form
    /// [`crate::spiffe::VerifiedSvid::serial_hex`] and Envoy's `/certs` use).
    pub fn serial_hex(&self) -> String {
        let hex = crate::pki::serial_hex(self.leaf()).unwrap_or_default();
        let mut s = hex.as_str();
        // DER keeps a leading zero byte on serials whose top bit is set; it is not part of the
        // number.
        while s.len() > 2 {
            match s.strip_prefix("00") {
                Some(rest) => s = rest,
                None => break,
            }
        }
        s.to_owned()
    }

    pub fn sha256(&self) -> String {
        crate::pki::fingerprint_sha256(self.leaf())
    }

    /// The leaf's validity window.
    pub fn validity(&self) -> Option<(OffsetDateTime, OffsetDateTime)> {
        let (_, cert) = x509_parser::parse_x509_certificate(self.leaf()).ok()?;
        let validity = cert.validity();
        Some((
            validity.not_before.to_datetime(),
            validity.not_after.to_datetime(),
        ))
    }

    /// notAfter − notBefore of the leaf.
    pub fn lifetime(&self) -> Option<Duration> {
        let (from, to) = self.validity()?;
        Duration::try_from(to - from).ok()
    }

    /// The authority that signed the leaf (its Authority Key Identifier, lowercase hex), which
    /// is SPIRE's authority ID of the signing X.509 authority.
    pub fn authority_id(&self) -> Option<String> {
        cli::authority_key_id(self.leaf())
    }

    /// The delivered bundle as a [`TrustBundle`] of the SVID's trust domain.
    pub fn trust_bundle(&self) -> Result<TrustBundle, SpireError> {
        TrustBundle::from_der(
            self.spiffe_id.trust_domain().clone(),
            self.bundle_der.iter().cloned(),
        )
        .map_err(|e| SpireError::Invalid(format!("bundle delivered with {}: {e}", self.spiffe_id)))
    }
}

/// How long the lab's start took, phase by phase.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StartTimings {
    /// `spire-server run` spawned → `healthcheck` passes.
    #[serde(serialize_with = "ser_millis", rename = "server_healthy_ms")]
    pub server_healthy: Duration,
    /// First agent spawned → every agent listed as attested and healthy.
    #[serde(serialize_with = "ser_millis", rename = "agents_attested_ms")]
    pub agents_attested: Duration,
    /// All profile entries created.
    #[serde(serialize_with = "ser_millis", rename = "entries_created_ms")]
    pub entries_created: Duration,
    /// First `entry create` → every profile workload holds its SVID (the agents' sync).
    #[serde(serialize_with = "ser_millis", rename = "workloads_served_ms")]
    pub workloads_served: Duration,
}

/// What a report needs to say about the lab SPIRE: versions, parameters, mapping, timings.
#[derive(Clone, Debug, Serialize)]
pub struct SpireLabReport {
    pub binaries: SpireBinaries,
    pub trust_domain: String,
    pub isolation: Isolation,
    pub config: SpireLabConfig,
    /// Agents' own SVID TTL (SPIRE defaults it to `default_x509_svid_ttl`).
    #[serde(serialize_with = "ser_duration")]
    pub agent_svid_ttl: Duration,
    pub agent_aliases: Vec<String>,
    pub workloads: Vec<LabWorkload>,
    pub timings: StartTimings,
}

// ---------------------------------------------------------------------------------------------
// Processes, secrets, polling

/// A join token. Deliberately neither `Display` nor a useful `Debug`.
struct Redaction {
    secret: String,
    label: String,
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

fn redact(redactions: &[Redaction], text: &str) -> String {
    redactions
        .iter()
        .fold(text.to_owned(), |acc, r| acc.replace(&r.secret, &r.label))
}

/// A supervised SPIRE process with its log file.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, program: &Path, args: &[&str], log: &Path) -> Result<Proc, SpireError> {
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(log)
            .map_err(io_error(format!("{}: create log", log.display())))?;
        let stderr = file
            .try_clone()
            .map_err(io_error(format!("{}: clone log handle", log.display())))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .map_err(io_error(format!("spawn {} ({})", name, program.display())))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    /// `Some(status)` once the process has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    async fn stop(&mut self, bound: Duration) -> Result<(), SpireError> {
        // Already gone is fine: stopping is idempotent.
        let _ = self.child.start_kill();
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(io_error(format!("wait for {}", self.name))(e)),
            Err(_) => Err(SpireError::Timeout {
                what: format!("{} to exit after SIGKILL", self.name),
                waited: bound,
                last: "still running".into(),
            }),
        }
    }

    fn kill_now(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn log_tail(path: &Path, redactions: &[Redaction]) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
    let tail = lines
        .iter()
        .skip(skip)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    redact(redactions, &tail)
}

/// A bounded poll: short intervals first (SPIRE answers in milliseconds), backing off to
/// [`POLL_MAX`], failing with what was last seen once `limit` has passed.
struct Poll {
    what: String,
    start: Instant,
    limit: Duration,
    interval: Duration,
}

impl Poll {
    fn new(what: impl Into<String>, limit: Duration) -> Poll {
        Poll {
            what: what.into(),
            start: Instant::now(),
            limit,
            interval: POLL_FIRST,
        }
    }

    async fn next(&mut self, last: &str) -> Result<(), SpireError> {
        if self.start.elapsed() >= self.limit {
            return Err(SpireError::Timeout {
                what: self.what.clone(),
                waited: self.start.elapsed(),
                last: last.to_owned(),
            });
        }
        tokio::time::sleep(self.interval).await;
        self.interval = (self.interval * 2).min(POLL_MAX);
        Ok(())
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// The output of one CLI run, redacted.
struct CliOutput {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl CliOutput {
    fn combined(&self) -> String {
        let text = format!("{}\n{}", self.stdout.trim(), self.stderr.trim());
        text.trim().to_owned()
    }
}

fn create_dir(dir: &Path, mode: u32) -> Result<(), SpireError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(io_error(format!("{}: create directory", dir.display())))?;
    // `mode` on create is filtered by the umask and ignored for existing directories.
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("{}: chmod {mode:o}", dir.display())))
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), SpireError> {
    let mut file = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io_error(format!("{}: create", path.display())))?;
    file.write_all(contents)
        .map_err(io_error(format!("{}: write", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("{}: chmod {mode:o}", path.display())))
}

/// A hard link to `source` at `dest` (cheap, and a distinct path for `unix:path:`), else a copy.
fn link_or_copy(source: &Path, dest: &Path) -> Result<(), SpireError> {
    let source =
        fs::canonicalize(source).map_err(io_error(format!("{}: resolve", source.display())))?;
    let _ = fs::remove_file(dest);
    if fs::hard_link(&source, dest).is_err() {
        fs::copy(&source, dest).map_err(io_error(format!(
            "copy {} to {}",
            source.display(),
            dest.display()
        )))?;
    }
    fs::set_permissions(dest, fs::Permissions::from_mode(0o755))
        .map_err(io_error(format!("{}: chmod 755", dest.display())))
}

/// Removes a directory when dropped (fetch output: it holds a private key).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// HCL string literal.
fn hcl(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn hcl_path(path: &Path) -> String {
    hcl(&path.to_string_lossy())
}

/// Go duration syntax, always in seconds (Go has no `d` unit).
fn go_duration(d: Duration) -> String {
    format!("{}s", d.as_secs().max(1))
}

fn current_ids() -> Result<(u32, u32), SpireError> {
    // The owner of /proc/self is the effective uid/gid: no libc needed.
    let meta = fs::metadata("/proc/self").map_err(io_error("/proc/self: stat"))?;
    Ok((meta.uid(), meta.gid()))
}

fn free_port() -> Result<u16, SpireError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(io_error("pick a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(io_error("pick a free port"))
}

// ---------------------------------------------------------------------------------------------
// The lab

struct AgentSlot {
    alias: SpiffeId,
    /// Private: config, data dir, keys, token file, log.
    dir: PathBuf,
    /// Public: the Workload API / SDS socket.
    socket: PathBuf,
    /// Redaction label of the token the agent last attested with; its agent ID ends in it.
    token_label: Option<String>,
    tokens_issued: u32,
    proc: Option<Proc>,
}

/// Running SPIRE server and agents with the profile's entries registered. See the module docs.
pub struct SpireLab {
    bins: SpireBinaries,
    config: SpireLabConfig,
    trust_domain: TrustDomain,
    cluster: String,
    isolation: Isolation,
    own_ids: (u32, u32),
    root: PathBuf,
    private: PathBuf,
    public: PathBuf,
    fetch_bin: PathBuf,
    server_port: u16,
    server_socket: PathBuf,
    server: Option<Proc>,
    agents: Vec<AgentSlot>,
    workloads: Vec<LabWorkload>,
    redactions: Vec<Redaction>,
    timings: StartTimings,
    fetch_seq: AtomicU64,
    next_extra_uid: AtomicU32,
}

impl fmt::Debug for SpireLab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpireLab")
            .field("trust_domain", &self.trust_domain.as_str())
            .field("root", &self.root)
            .field("agents", &self.agents.len())
            .field("workloads", &self.workloads.len())
            .finish_non_exhaustive()
    }
}

static LAB_SEQ: AtomicU64 = AtomicU64::new(0);

impl SpireLab {
    /// Locates SPIRE and starts a lab for `profile` (which must have a `spire:` section).
    pub async fn start(profile: &Profile, config: SpireLabConfig) -> Result<SpireLab, SpireError> {
        let bins = SpireBinaries::locate()?;
        SpireLab::start_with(bins, profile, config).await
    }

    /// [`SpireLab::start`] with binaries found elsewhere.
    pub async fn start_with(
        bins: SpireBinaries,
        profile: &Profile,
        config: SpireLabConfig,
    ) -> Result<SpireLab, SpireError> {
        let spire = profile.spire.as_ref().ok_or_else(|| {
            SpireError::Invalid(format!(
                "profile {} has no spire: section to register",
                profile.name
            ))
        })?;
        if config.agents == 0 {
            return Err(SpireError::Invalid(
                "a SPIRE lab needs at least one agent".into(),
            ));
        }
        if config.x509_svid_ttl < Duration::from_secs(2) || config.ca_ttl <= config.x509_svid_ttl {
            return Err(SpireError::Invalid(format!(
                "x509_svid_ttl {:?} must be at least 2s and below ca_ttl {:?}",
                config.x509_svid_ttl, config.ca_ttl
            )));
        }
        let own_ids = current_ids()?;
        let isolation = match (config.isolation, own_ids.0 == 0) {
            (Some(Isolation::Uid), false) => {
                return Err(SpireError::Invalid(
                    "uid isolation needs root (to run workloads under their own uids)".into(),
                ));
            }
            (Some(forced), _) => forced,
            (None, true) => Isolation::Uid,
            (None, false) => Isolation::Path,
        };
        let root = std::env::temp_dir().join(format!(
            "meshproof-spire-{}-{}-{}",
            std::process::id(),
            OffsetDateTime::now_utc().unix_timestamp_nanos(),
            LAB_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        // Other uids may enter (not list) the root to reach `public/`; `private/` stays 0700.
        let root_mode = if isolation == Isolation::Uid {
            0o711
        } else {
            0o700
        };
        create_dir(&root, root_mode)?;
        let private = root.join("private");
        let public = root.join("public");
        let trust_domain = profile.trust_domain.clone();
        let cluster = spire.cluster.clone();
        let mut lab = SpireLab {
            fetch_bin: public.join("bin").join("spire-agent"),
            server_socket: private.join("server").join("api.sock"),
            bins,
            config,
            trust_domain,
            cluster,
            isolation,
            own_ids,
            root,
            private,
            public,
            server_port: 0,
            server: None,
            agents: Vec::new(),
            workloads: Vec::new(),
            redactions: Vec::new(),
            timings: StartTimings::default(),
            fetch_seq: AtomicU64::new(0),
            next_extra_uid: AtomicU32::new(0),
        };
        // From here on a failure drops `lab`, which kills whatever was started and removes the
        // directory.
        lab.boot(profile).await?;
        Ok(lab)
    }

    async fn boot(&mut self, profile: &Profile) -> Result<(), SpireError> {
        create_dir(&self.private, 0o700)?;
        create_dir(&self.public, 0o755)?;
        create_dir(&self.public.join("bin"), 0o755)?;
        create_dir(&self.public.join("fetch"), 0o755)?;
        create_dir(&self.private.join("server").join("data"), 0o700)?;
        link_or_copy(&self.bins.agent.clone(), &self.fetch_bin)?;

        self.server_port = free_port()?;
        self.write_server_config(&profile.ca.organization)?;
        self.timings.server_healthy = self.start_server().await?;

        let bundle_pem = self
            .server_cli(&["bundle", "show", "-format", "pem"])
            .await?;
        for i in 0..self.config.agents {
            let alias = SpiffeId::from_segments(
                &self.trust_domain,
                &["lab", "node", &self.cluster, &format!("agent-{i}")],
            )
            .map_err(|e| {
                SpireError::Invalid(format!("node alias for cluster {:?}: {e}", self.cluster))
            })?;
            let dir = self.private.join(format!("agent-{i}"));
            create_dir(&dir.join("data"), 0o700)?;
            let socket_dir = self.public.join(format!("agent-{i}"));
            create_dir(&socket_dir, 0o755)?;
            write_file(
                &dir.join("bootstrap-bundle.pem"),
                bundle_pem.as_bytes(),
                0o600,
            )?;
            self.agents.push(AgentSlot {
                alias,
                dir,
                socket: socket_dir.join("api.sock"),
                token_label: None,
                tokens_issued: 0,
                proc: None,
            });
        }
        let started = Instant::now();
        for i in 0..self.agents.len() {
            self.spawn_agent(i, true).await?;
        }
        for i in 0..self.agents.len() {
            self.wait_agent_ready(i, started).await?;
        }
        self.timings.agents_attested = started.elapsed();

        let started = Instant::now();
        self.register_profile(profile).await?;
        self.timings.entries_created = started.elapsed();
        // Ready means every workload holds its SVID, not just that the entries exist: agents
        // learn about new entries on their next sync (`sync_interval`).
        for workload in &self.workloads {
            self.wait_for_svid(&workload.caller, &workload.spiffe_id)
                .await?;
        }
        self.timings.workloads_served = started.elapsed();
        Ok(())
    }

    fn write_server_config(&self, organization: &str) -> Result<(), SpireError> {
        let server_dir = self.private.join("server");
        let config = format!(
            r#"server {{
    bind_address = "127.0.0.1"
    bind_port = "{port}"
    socket_path = {socket}
    trust_domain = {td}
    data_dir = {data}
    log_level = "WARN"
    ca_ttl = "{ca_ttl}"
    default_x509_svid_ttl = "{svid_ttl}"
    default_jwt_svid_ttl = "{svid_ttl}"
    experimental {{
        cache_reload_interval = "{sync}"
    }}
    ca_subject {{
        organization = [{org}]
        common_name = ""
    }}
}}

plugins {{
    DataStore "sql" {{
        plugin_data {{
            database_type = "sqlite3"
            connection_string = {db}
        }}
    }}
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            keys_path = {keys}
        }}
    }}
}}
"#,
            port = self.server_port,
            socket = hcl_path(&self.server_socket),
            td = hcl(self.trust_domain.as_str()),
            data = hcl_path(&server_dir.join("data")),
            ca_ttl = go_duration(self.config.ca_ttl),
            svid_ttl = go_duration(self.config.x509_svid_ttl),
            sync = go_duration(self.config.sync_interval),
            org = hcl(organization),
            db = hcl_path(&server_dir.join("data").join("datastore.sqlite3")),
            keys = hcl_path(&server_dir.join("data").join("keys.json")),
        );
        write_file(&server_dir.join("server.conf"), config.as_bytes(), 0o600)
    }

    fn write_agent_config(
        &self,
        i: usize,
        token_file: Option<&Path>,
    ) -> Result<PathBuf, SpireError> {
        let slot = self.slot(i)?;
        let token_line = token_file
            .map(|p| format!("    join_token_file = {}\n", hcl_path(p)))
            .unwrap_or_default();
        let config = format!(
            r#"agent {{
    data_dir = {data}
    log_level = "WARN"
    server_address = "127.0.0.1"
    server_port = "{port}"
    socket_path = {socket}
    trust_bundle_path = {bundle}
    trust_domain = {td}
    experimental {{
        sync_interval = "{sync}"
    }}
{token_line}}}

plugins {{
    NodeAttestor "join_token" {{
        plugin_data {{}}
    }}
    KeyManager "disk" {{
        plugin_data {{
            directory = {data}
        }}
    }}
    WorkloadAttestor "unix" {{
        plugin_data {{
            discover_workload_path = true
            workload_size_limit = -1
        }}
    }}
}}
"#,
            data = hcl_path(&slot.dir.join("data")),
            port = self.server_port,
            socket = hcl_path(&slot.socket),
            bundle = hcl_path(&slot.dir.join("bootstrap-bundle.pem")),
            td = hcl(self.trust_domain.as_str()),
            sync = go_duration(self.config.sync_interval),
        );
        let path = slot.dir.join("agent.conf");
        write_file(&path, config.as_bytes(), 0o600)?;
        Ok(path)
    }

    fn slot(&self, i: usize) -> Result<&AgentSlot, SpireError> {
        self.agents.get(i).ok_or_else(|| {
            SpireError::Invalid(format!("no agent {i} (lab has {})", self.agents.len()))
        })
    }

    fn slot_mut(&mut self, i: usize) -> Result<&mut AgentSlot, SpireError> {
        let count = self.agents.len();
        self.agents
            .get_mut(i)
            .ok_or_else(|| SpireError::Invalid(format!("no agent {i} (lab has {count})")))
    }

    /// Starts agent `i`; with `new_token`, first issues a join token for its node alias.
    async fn spawn_agent(&mut self, i: usize, new_token: bool) -> Result<(), SpireError> {
        let token_file = self.slot(i)?.dir.join("join-token");
        let token_file = if new_token {
            let alias = self.slot(i)?.alias.to_string();
            let token = self.generate_token(&alias).await?;
            let slot = self.slot_mut(i)?;
            slot.tokens_issued += 1;
            let label = format!("redacted-agent-{i}-token-{}", slot.tokens_issued);
            slot.token_label = Some(label.clone());
            write_file(&token_file, token.as_bytes(), 0o600)?;
            self.redactions.push(Redaction {
                secret: token,
                label,
            });
            Some(token_file)
        } else {
            None
        };
        let config = self.write_agent_config(i, token_file.as_deref())?;
        let slot = self.slot(i)?;
        let log = slot.dir.join("agent.log");
        let config_arg = config.to_string_lossy().into_owned();
        let proc = Proc::spawn(
            &format!("spire-agent {i}"),
            &self.bins.agent,
            &["run", "-config", &config_arg],
            &log,
        )?;
        self.slot_mut(i)?.proc = Some(proc);
        Ok(())
    }

    /// `token generate`, read without redaction (it *is* the secret) and never echoed.
    async fn generate_token(&self, alias: &str) -> Result<String, SpireError> {
        let ttl = TOKEN_TTL.as_secs().to_string();
        let socket = self.server_socket.to_string_lossy().into_owned();
        let args = [
            "token",
            "generate",
            "-spiffeID",
            alias,
            "-ttl",
            &ttl,
            "-output",
            "json",
            "-socketPath",
            &socket,
        ];
        let out = self.run(&self.bins.server, &args, true, None).await?;
        let command = describe(&self.bins.server, &args);
        if !out.success {
            // stderr of a failed generate carries no token (none was made).
            let output = redact(&self.redactions, &out.combined());
            return Err(SpireError::Command {
                command,
                status: out.status,
                output,
            });
        }
        cli::parse_token(&out.stdout).map_err(|_| SpireError::Parse {
            command,
            // Never quote the output: it may hold the token.
            reason: "no token in the answer".into(),
        })
    }

    /// Waits until agent `i` is listed as attested under its current token and its own
    /// healthcheck passes; then deletes the token file (the agent read it at start).
    async fn wait_agent_ready(&mut self, i: usize, started: Instant) -> Result<(), SpireError> {
        let expected = self.agent_spiffe_id(i);
        let remaining = self.config.wait.saturating_sub(started.elapsed());
        let mut poll = Poll::new(format!("agent {i} to attest and report healthy"), remaining);
        loop {
            self.check_agent_alive(i)?;
            let attested = match &expected {
                Some(id) => self
                    .agents()
                    .await
                    .map(|agents| agents.iter().any(|a| &a.spiffe_id == id))
                    .unwrap_or(false),
                None => true,
            };
            let health = if attested {
                self.agent_healthcheck(i).await?
            } else {
                Health {
                    healthy: false,
                    message: "not attested yet".into(),
                }
            };
            if health.healthy {
                break;
            }
            poll.next(&health.message).await?;
        }
        let _ = fs::remove_file(self.slot(i)?.dir.join("join-token"));
        Ok(())
    }

    fn check_agent_alive(&mut self, i: usize) -> Result<(), SpireError> {
        let redactions = &self.redactions;
        let slot = self
            .agents
            .get_mut(i)
            .ok_or_else(|| SpireError::Invalid(format!("no agent {i}")))?;
        if let Some(proc) = slot.proc.as_mut() {
            if let Some(status) = proc.exited() {
                return Err(SpireError::Exited {
                    process: proc.name.clone(),
                    status,
                    log_tail: log_tail(&proc.log, redactions),
                });
            }
        }
        Ok(())
    }

    fn check_server_alive(&mut self) -> Result<(), SpireError> {
        if let Some(proc) = self.server.as_mut() {
            if let Some(status) = proc.exited() {
                return Err(SpireError::Exited {
                    process: proc.name.clone(),
                    status,
                    log_tail: log_tail(&proc.log, &self.redactions),
                });
            }
        }
        Ok(())
    }

    async fn register_profile(&mut self, profile: &Profile) -> Result<(), SpireError> {
        let Some(spire) = profile.spire.as_ref() else {
            return Ok(());
        };
        // One lab workload per distinct selector set: two entries with the same Kubernetes
        // selectors name the same pod, so they share a lab workload too.
        let mut by_selectors: BTreeMap<Vec<String>, Caller> = BTreeMap::new();
        let mut workloads = Vec::new();
        for entry in &spire.entries {
            let mut key = entry.selectors.clone();
            key.sort();
            let next = by_selectors.len();
            let caller = match by_selectors.get(&key) {
                Some(caller) => caller.clone(),
                None => {
                    let n = u32::try_from(next)
                        .map_err(|_| SpireError::Invalid("too many workloads".into()))?;
                    let caller = self.make_caller(&entry.service, next % self.agents.len(), n)?;
                    by_selectors.insert(key, caller.clone());
                    caller
                }
            };
            let spec = EntrySpec {
                spiffe_id: entry.spiffe_id.clone(),
                agent: caller.agent,
                selectors: caller.selectors(),
                x509_svid_ttl: Some(self.config.x509_svid_ttl),
            };
            let created = self.create_entry(&spec).await?;
            workloads.push(LabWorkload {
                service: entry.service.clone(),
                spiffe_id: entry.spiffe_id.clone(),
                profile_selectors: entry.selectors.clone(),
                profile_ttl: entry.ttl,
                lab_ttl: self.config.x509_svid_ttl,
                selectors: spec.selectors,
                parent_id: self.slot(caller.agent)?.alias.clone(),
                entry_id: created.id,
                caller,
            });
        }
        self.workloads = workloads;
        Ok(())
    }

    /// A caller identity: uid/gid `uid_base + n` (root), or its own binary link (not root).
    fn make_caller(&self, label: &str, agent: usize, n: u32) -> Result<Caller, SpireError> {
        self.slot(agent)?;
        match self.isolation {
            Isolation::Uid => {
                let id = self.config.uid_base.checked_add(n).ok_or_else(|| {
                    SpireError::Invalid(format!(
                        "uid_base {} + {n} overflows",
                        self.config.uid_base
                    ))
                })?;
                Ok(Caller {
                    label: label.to_owned(),
                    agent,
                    uid: id,
                    gid: id,
                    switch_user: true,
                    exe: self.fetch_bin.clone(),
                    isolation: Isolation::Uid,
                })
            }
            Isolation::Path => {
                let dir = self
                    .public
                    .join("callers")
                    .join(format!("{n}-{}", sanitize(label)));
                create_dir(&dir, 0o755)?;
                let exe = dir.join("spire-agent");
                link_or_copy(&self.fetch_bin, &exe)?;
                // The attestor reports the kernel's view of the path: canonical.
                let exe = fs::canonicalize(&exe)
                    .map_err(io_error(format!("{}: resolve", exe.display())))?;
                Ok(Caller {
                    label: label.to_owned(),
                    agent,
                    uid: self.own_ids.0,
                    gid: self.own_ids.1,
                    switch_user: false,
                    exe,
                    isolation: Isolation::Path,
                })
            }
        }
    }

    /// A fresh caller on `agent` that no entry names (for negative checks and new entries).
    pub fn new_caller(&self, label: &str, agent: usize) -> Result<Caller, SpireError> {
        let n = EXTRA_CALLER_UID_OFFSET + self.next_extra_uid.fetch_add(1, Ordering::Relaxed);
        self.make_caller(label, agent, n)
    }

    // -- accessors ------------------------------------------------------------------------------

    pub fn binaries(&self) -> &SpireBinaries {
        &self.bins
    }

    pub fn config(&self) -> &SpireLabConfig {
        &self.config
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    pub fn workloads(&self) -> &[LabWorkload] {
        &self.workloads
    }

    pub fn workload(&self, service: &str) -> Option<&LabWorkload> {
        self.workloads.iter().find(|w| w.service == service)
    }

    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }

    /// Agent `i`'s Workload API / SDS socket (what [`sds_cluster`] takes).
    pub fn agent_socket(&self, i: usize) -> Option<&Path> {
        self.agents.get(i).map(|a| a.socket.as_path())
    }

    /// Agent `i`'s stable node alias (the parent of its workloads' entries).
    pub fn agent_alias(&self, i: usize) -> Option<&SpiffeId> {
        self.agents.get(i).map(|a| &a.alias)
    }

    /// Agent `i`'s current agent ID as [`SpireLab::agents`] shows it (token redacted).
    pub fn agent_spiffe_id(&self, i: usize) -> Option<String> {
        let label = self.agents.get(i)?.token_label.as_ref()?;
        Some(format!(
            "spiffe://{}/spire/agent/join_token/{label}",
            self.trust_domain
        ))
    }

    pub fn timings(&self) -> &StartTimings {
        &self.timings
    }

    pub fn report(&self) -> SpireLabReport {
        SpireLabReport {
            binaries: self.bins.clone(),
            trust_domain: self.trust_domain.to_string(),
            isolation: self.isolation,
            config: self.config.clone(),
            agent_svid_ttl: self.config.x509_svid_ttl,
            agent_aliases: self.agents.iter().map(|a| a.alias.to_string()).collect(),
            workloads: self.workloads.clone(),
            timings: self.timings.clone(),
        }
    }

    /// A directory owned by `caller` (0700) where it may keep files, e.g. a sidecar's bootstrap
    /// and log. Removed with the lab.
    pub fn caller_dir(&self, caller: &Caller) -> Result<PathBuf, SpireError> {
        let dir = self.public.join("home").join(sanitize(&caller.label));
        create_dir(&self.public.join("home"), 0o755)?;
        create_dir(&dir, 0o700)?;
        if caller.switch_user {
            std::os::unix::fs::chown(&dir, Some(caller.uid), Some(caller.gid))
                .map_err(io_error(format!("{}: chown {}", dir.display(), caller.uid)))?;
        }
        Ok(dir)
    }

    /// A link to `binary` that every caller may execute (the original may sit under a home
    /// directory other uids cannot enter, e.g. `/root/.cache/meshproof`).
    pub fn expose_binary(&self, binary: &Path) -> Result<PathBuf, SpireError> {
        let name = binary
            .file_name()
            .ok_or_else(|| SpireError::Invalid(format!("{}: no file name", binary.display())))?;
        let dest = self.public.join("bin").join(name);
        link_or_copy(binary, &dest)?;
        Ok(dest)
    }

    // -- CLI plumbing ---------------------------------------------------------------------------

    /// Runs a SPIRE CLI, optionally as a caller, bounded by [`CLI_TIMEOUT`].
    async fn run(
        &self,
        program: &Path,
        args: &[&str],
        raw: bool,
        caller: Option<(&Caller, &Path)>,
    ) -> Result<CliOutput, SpireError> {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((caller, dir)) = caller {
            command.current_dir(dir);
            if caller.switch_user {
                command.uid(caller.uid).gid(caller.gid);
            }
        }
        let output = tokio::time::timeout(CLI_TIMEOUT, command.output())
            .await
            .map_err(|_| SpireError::Timeout {
                what: describe(program, args),
                waited: CLI_TIMEOUT,
                last: "no answer".into(),
            })?
            .map_err(io_error(format!("run {}", describe(program, args))))?;
        let clean = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes).into_owned();
            if raw {
                text
            } else {
                redact(&self.redactions, &text)
            }
        };
        Ok(CliOutput {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: clean(&output.stdout),
            stderr: clean(&output.stderr),
        })
    }

    /// `spire-server <args> -socketPath <server socket>`: stdout on success.
    async fn server_cli(&self, args: &[&str]) -> Result<String, SpireError> {
        let socket = self.server_socket.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-socketPath", &socket]);
        let out = self.run(&self.bins.server, &all, false, None).await?;
        if out.success {
            Ok(out.stdout)
        } else {
            let output = out.combined();
            Err(SpireError::Command {
                command: describe(&self.bins.server, args),
                status: out.status,
                output,
            })
        }
    }

    async fn server_json<T>(
        &self,
        args: &[&str],
        parse: impl FnOnce(&str) -> cli::ParseResult<T>,
    ) -> Result<T, SpireError> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-output", "json"]);
        let text = self.server_cli(&all).await?;
        parse(&text).map_err(|reason| SpireError::Parse {
            command: describe(&self.bins.server, args),
            reason,
        })
    }

    // -- lifecycle -----------------------------------------------------------------------------

    /// Starts (or restarts) the server on its existing config and data, and waits for
    /// `healthcheck`. Returns spawn-to-healthy.
    pub async fn start_server(&mut self) -> Result<Duration, SpireError> {
        if self.server.is_some() {
            return Err(SpireError::Invalid(
                "spire-server is already running".into(),
            ));
        }
        let config = self.private.join("server").join("server.conf");
        let log = self.private.join("server").join("server.log");
        let config_arg = config.to_string_lossy().into_owned();
        self.server = Some(Proc::spawn(
            "spire-server",
            &self.bins.server,
            &["run", "-config", &config_arg],
            &log,
        )?);
        let mut poll = Poll::new("spire-server healthcheck", self.config.wait);
        loop {
            self.check_server_alive()?;
            let health = self.healthcheck().await?;
            if health.healthy {
                return Ok(poll.elapsed());
            }
            poll.next(&health.message).await?;
        }
    }

    /// Kills the server (a crash, for drills). Agents keep serving cached SVIDs meanwhile.
    pub async fn stop_server(&mut self) -> Result<(), SpireError> {
        if let Some(mut proc) = self.server.take() {
            proc.stop(self.config.wait).await?;
        }
        Ok(())
    }

    /// Kills agent `i`. Its socket stops answering; the server keeps listing it until its SVID
    /// expires (it can no longer renew).
    pub async fn stop_agent(&mut self, i: usize) -> Result<(), SpireError> {
        let bound = self.config.wait;
        if let Some(mut proc) = self.slot_mut(i)?.proc.take() {
            proc.stop(bound).await?;
        }
        Ok(())
    }

    /// Starts agent `i` again and waits until it is attested and healthy. It resumes with its
    /// cached SVID when that is still valid; otherwise (join tokens do not re-attest) it gets a
    /// fresh token for the same node alias, i.e. a new agent ID. Returns spawn-to-ready.
    pub async fn start_agent(&mut self, i: usize) -> Result<Duration, SpireError> {
        if self.slot(i)?.proc.is_some() {
            return Err(SpireError::Invalid(format!("agent {i} is already running")));
        }
        let current = self.agent_spiffe_id(i);
        // Resuming needs the cached SVID to outlive the restart itself.
        let margin = time::Duration::seconds(3);
        let now = OffsetDateTime::now_utc();
        let svid_still_valid = match &current {
            Some(id) => self.agents().await?.iter().any(|a| {
                &a.spiffe_id == id && a.x509svid_expires_at.is_some_and(|t| t - now > margin)
            }),
            None => false,
        };
        let started = Instant::now();
        self.spawn_agent(i, !svid_still_valid).await?;
        self.wait_agent_ready(i, started).await?;
        Ok(started.elapsed())
    }

    /// Stops every process (killed and reaped) and removes the lab directory.
    pub async fn shutdown(mut self) -> Result<(), SpireError> {
        let bound = self.config.wait;
        let mut first_error = None;
        for slot in &mut self.agents {
            if let Some(mut proc) = slot.proc.take() {
                if let Err(e) = proc.stop(bound).await {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(mut proc) = self.server.take() {
            if let Err(e) = proc.stop(bound).await {
                first_error.get_or_insert(e);
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.root) {
            first_error.get_or_insert(io_error(format!("{}: remove", self.root.display()))(e));
        }
        first_error.map_or(Ok(()), Err)
    }

    // -- observations --------------------------------------------------------------------------

    /// `spire-server healthcheck`.
    pub async fn healthcheck(&self) -> Result<Health, SpireError> {
        let socket = self.server_socket.to_string_lossy().into_owned();
        let out = self
            .run(
                &self.bins.server,
                &["healthcheck", "-socketPath", &socket],
                false,
                None,
            )
            .await?;
        Ok(Health {
            healthy: out.success,
            message: out.combined(),
        })
    }

    /// `spire-agent healthcheck` against agent `i`'s socket.
    pub async fn agent_healthcheck(&self, i: usize) -> Result<Health, SpireError> {
        let socket = self.slot(i)?.socket.to_string_lossy().into_owned();
        let out = self
            .run(
                &self.bins.agent,
                &["healthcheck", "-socketPath", &socket],
                false,
                None,
            )
            .await?;
        Ok(Health {
            healthy: out.success,
            message: out.combined(),
        })
    }

    /// `entry show`: every registration entry (profile workloads and node aliases).
    pub async fn entries(&self) -> Result<Vec<Entry>, SpireError> {
        self.server_json(&["entry", "show"], cli::parse_entries)
            .await
    }

    /// `agent list`: attested agents (IDs redacted).
    pub async fn agents(&self) -> Result<Vec<AgentInfo>, SpireError> {
        self.server_json(&["agent", "list"], cli::parse_agents)
            .await
    }

    /// `entry create` for `spec`, parented on the agent's node alias.
    pub async fn create_entry(&self, spec: &EntrySpec) -> Result<Entry, SpireError> {
        let spiffe_id = spec.spiffe_id.to_string();
        let parent = self.slot(spec.agent)?.alias.to_string();
        let ttl = spec.x509_svid_ttl.map(|t| t.as_secs().max(1).to_string());
        let mut args = vec![
            "entry",
            "create",
            "-spiffeID",
            &spiffe_id,
            "-parentID",
            &parent,
        ];
        for selector in &spec.selectors {
            args.extend(["-selector", selector.as_str()]);
        }
        if let Some(ttl) = &ttl {
            args.extend(["-x509SVIDTTL", ttl.as_str()]);
        }
        self.server_json(&args, cli::parse_entry_created).await
    }

    /// `entry delete -entryID <id>`.
    pub async fn delete_entry(&self, entry_id: &str) -> Result<(), SpireError> {
        let deleted = self
            .server_json(
                &["entry", "delete", "-entryID", entry_id],
                cli::parse_entry_deleted,
            )
            .await?;
        if deleted == entry_id {
            Ok(())
        } else {
            Err(SpireError::Invalid(format!(
                "asked to delete entry {entry_id}, SPIRE deleted {deleted}"
            )))
        }
    }

    /// `localauthority x509 show`.
    pub async fn localauthority_x509_show(&self) -> Result<AuthorityStates, SpireError> {
        self.server_json(
            &["localauthority", "x509", "show"],
            cli::parse_authority_states,
        )
        .await
    }

    /// `localauthority x509 prepare`: a new authority, published in the bundle, not signing yet.
    pub async fn localauthority_x509_prepare(&self) -> Result<AuthorityState, SpireError> {
        self.server_json(&["localauthority", "x509", "prepare"], |t| {
            cli::parse_authority_result(t, "prepared_authority")
        })
        .await
    }

    /// `localauthority x509 activate`: the prepared authority starts signing.
    pub async fn localauthority_x509_activate(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, SpireError> {
        self.server_json(
            &[
                "localauthority",
                "x509",
                "activate",
                "-authorityID",
                authority_id,
            ],
            |t| cli::parse_authority_result(t, "activated_authority"),
        )
        .await
    }

    /// `localauthority x509 taint`: the old authority is marked; agents re-issue SVIDs it
    /// signed right away.
    pub async fn localauthority_x509_taint(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, SpireError> {
        self.server_json(
            &[
                "localauthority",
                "x509",
                "taint",
                "-authorityID",
                authority_id,
            ],
            |t| cli::parse_authority_result(t, "tainted_authority"),
        )
        .await
    }

    /// `localauthority x509 revoke`: the tainted authority leaves the bundle.
    pub async fn localauthority_x509_revoke(
        &self,
        authority_id: &str,
    ) -> Result<AuthorityState, SpireError> {
        self.server_json(
            &[
                "localauthority",
                "x509",
                "revoke",
                "-authorityID",
                authority_id,
            ],
            |t| cli::parse_authority_result(t, "revoked_authority"),
        )
        .await
    }

    /// `bundle show`: the trust domain's roots, with their authority IDs and taint flags.
    pub async fn bundle_show(&self) -> Result<BundleInfo, SpireError> {
        self.server_json(&["bundle", "show"], cli::parse_bundle)
            .await
    }

    /// The server's current bundle as a [`TrustBundle`] (independent of what agents deliver).
    pub async fn trust_bundle(&self) -> Result<TrustBundle, SpireError> {
        let bundle = self.bundle_show().await?;
        TrustBundle::from_der(
            self.trust_domain.clone(),
            bundle.x509_authorities.into_iter().map(|a| a.der),
        )
        .map_err(|e| SpireError::Invalid(format!("server bundle: {e}")))
    }

    // -- the Workload API ------------------------------------------------------------------------

    /// `spire-agent api fetch x509 -write <dir>` as `caller`, against its agent. The private
    /// keys SPIRE writes are deleted with the directory, unread.
    pub async fn fetch_x509(&self, caller: &Caller) -> Result<Vec<Svid>, SpireError> {
        let socket = self
            .slot(caller.agent)?
            .socket
            .to_string_lossy()
            .into_owned();
        let n = self.fetch_seq.fetch_add(1, Ordering::Relaxed);
        let dir = self.public.join("fetch").join(n.to_string());
        create_dir(&dir, 0o700)?;
        let _cleanup = RemoveOnDrop(dir.clone());
        if caller.switch_user {
            std::os::unix::fs::chown(&dir, Some(caller.uid), Some(caller.gid))
                .map_err(io_error(format!("{}: chown {}", dir.display(), caller.uid)))?;
        }
        let dir_arg = dir.to_string_lossy().into_owned();
        let args = [
            "api",
            "fetch",
            "x509",
            "-socketPath",
            &socket,
            "-timeout",
            FETCH_TIMEOUT,
            "-write",
            &dir_arg,
        ];
        let out = self
            .run(&caller.exe, &args, false, Some((caller, &dir)))
            .await?;
        let command = format!("{} (as {})", describe(&caller.exe, &args), caller.label);
        if !out.success {
            let message = out.combined();
            if message.contains("no identity issued") {
                return Err(SpireError::NoIdentity {
                    caller: caller.label.clone(),
                    agent: caller.agent,
                    message,
                });
            }
            return Err(SpireError::Command {
                command,
                status: out.status,
                output: message,
            });
        }
        let ids = cli::parse_fetched_ids(&out.stdout);
        if ids.is_empty() {
            return Err(SpireError::Parse {
                command,
                reason: "no SPIFFE ID in the answer".into(),
            });
        }
        let mut svids = Vec::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            let spiffe_id = SpiffeId::parse(id).map_err(|e| SpireError::Parse {
                command: command.clone(),
                reason: format!("SPIFFE ID {id:?}: {e}"),
            })?;
            let read = |name: String| -> Result<Vec<Vec<u8>>, SpireError> {
                let path = dir.join(&name);
                let pem = fs::read_to_string(&path)
                    .map_err(io_error(format!("{}: read", path.display())))?;
                parse_pem_chain(&pem).map_err(|e| SpireError::Parse {
                    command: command.clone(),
                    reason: format!("{name}: {e}"),
                })
            };
            svids.push(Svid {
                spiffe_id,
                chain_der: read(format!("svid.{i}.pem"))?,
                bundle_der: read(format!("bundle.{i}.pem"))?,
            });
        }
        Ok(svids)
    }

    /// Polls [`SpireLab::fetch_x509`] until `caller` holds an SVID for `expected` (e.g. after
    /// creating its entry). Returns the SVIDs and how long it took.
    pub async fn wait_for_svid(
        &self,
        caller: &Caller,
        expected: &SpiffeId,
    ) -> Result<(Vec<Svid>, Duration), SpireError> {
        let mut poll = Poll::new(
            format!("{} to receive {expected}", caller.label),
            self.config.wait,
        );
        loop {
            let last = match self.fetch_x509(caller).await {
                Ok(svids) if svids.iter().any(|s| &s.spiffe_id == expected) => {
                    return Ok((svids, poll.elapsed()));
                }
                Ok(svids) => format!(
                    "got {}",
                    svids
                        .iter()
                        .map(|s| s.spiffe_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => e.to_string(),
            };
            poll.next(&last).await?;
        }
    }

    /// Polls until `caller` gets no identity at all (e.g. after its entry was deleted). Returns
    /// the refusal and how long it took.
    pub async fn wait_for_no_identity(
        &self,
        caller: &Caller,
    ) -> Result<(SpireError, Duration), SpireError> {
        let mut poll = Poll::new(
            format!("{} to lose its identity", caller.label),
            self.config.wait,
        );
        loop {
            let last = match self.fetch_x509(caller).await {
                Err(e @ SpireError::NoIdentity { .. }) => return Ok((e, poll.elapsed())),
                Ok(svids) => format!(
                    "still holds {}",
                    svids
                        .iter()
                        .map(|s| s.spiffe_id.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Err(e) => e.to_string(),
            };
            poll.next(&last).await?;
        }
    }
}

impl Drop for SpireLab {
    fn drop(&mut self) {
        let mut procs: Vec<&mut Proc> = self
            .agents
            .iter_mut()
            .filter_map(|a| a.proc.as_mut())
            .chain(self.server.as_mut())
            .collect();
        for proc in &mut procs {
            proc.kill_now();
        }
        // Reap briefly so the directory is not removed under a still-writing process; the
        // runtime reaps anything slower (kill_on_drop).
        let deadline = Instant::now() + Duration::from_secs(2);
        for proc in &mut procs {
            while proc.exited().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A command line for messages. The lab never puts a secret on a command line.
fn describe(program: &Path, args: &[&str]) -> String {
    let name = program
        .file_name()
        .map_or_else(|| program.to_string_lossy(), |n| n.to_string_lossy());
    format!("{name} {}", args.join(" "))
}

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_token_occurrence() {
        let redactions = vec![Redaction {
            secret: "6f1c-secret".into(),
            label: "redacted-agent-0-token-1".into(),
        }];
        let text = "spiffe://td/spire/agent/join_token/6f1c-secret and 6f1c-secret";
        let clean = redact(&redactions, text);
        assert!(!clean.contains("6f1c-secret"));
        assert_eq!(clean.matches("redacted-agent-0-token-1").count(), 2);
        assert_eq!(format!("{:?}", redactions[0]), "redacted-agent-0-token-1");
    }

    #[test]
    fn hcl_strings_are_escaped() {
        assert_eq!(hcl(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(go_duration(Duration::from_secs(120)), "120s");
    }

    #[test]
    fn version_is_first_numeric_line() {
        assert_eq!(parse_version("\n1.15.3\n").as_deref(), Some("1.15.3"));
        assert_eq!(
            parse_version("1.15.3-dev-unk").as_deref(),
            Some("1.15.3-dev-unk")
        );
        assert_eq!(parse_version("usage: ..."), None);
    }

    #[test]
    fn callers_select_by_uid_or_path() {
        let caller = Caller {
            label: "orchestrator".into(),
            agent: 1,
            uid: 21001,
            gid: 21001,
            switch_user: true,
            exe: PathBuf::from("/lab/public/bin/spire-agent"),
            isolation: Isolation::Uid,
        };
        assert_eq!(caller.selectors(), ["unix:uid:21001"]);
        assert_eq!(caller.mismatching_selector(), "unix:gid:21002");
        let by_path = Caller {
            isolation: Isolation::Path,
            switch_user: false,
            ..caller
        };
        assert_eq!(
            by_path.selectors(),
            ["unix:path:/lab/public/bin/spire-agent"]
        );
    }
}

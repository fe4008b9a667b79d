//! The kind cluster's lifecycle: one cluster per run, named after the run, created from the
//! config in `kind/` (node image pinned by digest), its kubeconfig written to the run's private
//! working directory (the user's `~/.kube/config` is never touched), images preloaded from a
//! folder of archives for air-gapped machines, and deleted when the run ends — also when it fails
//! half-way or is interrupted (Ctrl-C / SIGTERM) — unless `--keep` asks to keep it or `--reuse`
//! found it already there.
//!
//! ```text
//! kind get clusters
//! kind create cluster --name NAME --config kind/cluster.yaml --kubeconfig WORKDIR/kubeconfig --wait 600s
//!   (or, --reuse and NAME exists: kind export kubeconfig --name NAME --kubeconfig WORKDIR/kubeconfig)
//! kind load image-archive DIR/a.tar --name NAME        (each archive of --images DIR, sorted)
//! ...
//! kind delete cluster --name NAME --kubeconfig WORKDIR/kubeconfig   (unless kept or reused)
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use super::KubeError;
use super::kubectl::Kubectl;
use super::tool::{Call, Program, Timeout, Toolbox};
use super::wait::Timeouts;

/// How the run wants its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindOptions {
    /// The cluster's name ([`cluster_name`] gives one per run).
    pub name: String,
    /// The kind config (`kind/cluster.yaml`).
    pub config: PathBuf,
    /// Use the cluster of that name if it exists (and then never delete it).
    pub reuse: bool,
    /// Keep the cluster after the run.
    pub keep: bool,
    /// A folder of image archives (`docker save` output) to load into every node.
    pub images: Option<PathBuf>,
    /// A private directory for the run's kubeconfig.
    pub workdir: PathBuf,
}

/// `meshproof-<run id>`, lowercased, with anything kind would refuse replaced by `-`.
pub fn cluster_name(run_id: &str) -> String {
    let cleaned: String = run_id
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("meshproof-{}", cleaned.trim_matches('-'));
    name.truncate(50);
    name.trim_end_matches('-').to_owned()
}

/// A kind cluster in use by this run. Dropping it deletes the cluster unless it is kept or was
/// reused; [`ClusterGuard::finish`] does the same and reports a failed delete.
#[derive(Debug)]
pub struct ClusterGuard {
    tools: Toolbox,
    name: String,
    kubeconfig: PathBuf,
    /// This run created it (so this run deletes it, unless kept).
    created: bool,
    keep: bool,
    timeouts: Timeouts,
    /// This guard's entry in the interrupt handler's list.
    registration: Option<u64>,
}

impl ClusterGuard {
    /// Creates (or, with `reuse`, finds) the cluster and preloads images. Any failure after the
    /// cluster exists deletes it again (unless kept or reused) before the error is returned.
    pub fn up(
        tools: &Toolbox,
        options: &KindOptions,
        timeouts: &Timeouts,
    ) -> Result<ClusterGuard, KubeError> {
        validate_name(&options.name)?;
        let kubeconfig = options.workdir.join("kubeconfig");
        let existing = list_clusters(tools, timeouts.call())?;
        let exists = existing.iter().any(|c| c == &options.name);
        if exists && !options.reuse {
            return Err(KubeError::Input {
                what: format!("kind cluster {}", options.name),
                reason: "already exists; pass --reuse to run against it, or pick another name"
                    .into(),
            });
        }
        let mut guard = ClusterGuard {
            tools: tools.clone(),
            name: options.name.clone(),
            kubeconfig: kubeconfig.clone(),
            created: !exists,
            keep: options.keep,
            timeouts: timeouts.clone(),
            registration: None,
        };
        if exists {
            tools.say(&format!(
                "kind: reusing cluster {} (it will be left running)",
                options.name
            ));
            tools.run_ok(&Call::new(
                Program::Kind,
                [
                    "export",
                    "kubeconfig",
                    "--name",
                    &options.name,
                    "--kubeconfig",
                    &path_arg(&kubeconfig),
                ],
                timeouts.call(),
            ))?;
            return Ok(guard);
        }
        // Armed before creating: an interrupt during `kind create` still deletes what it made.
        guard.arm()?;
        tools.say(&format!(
            "kind: creating cluster {} from {} ({})",
            options.name,
            options.config.display(),
            timeouts.cluster_create()
        ));
        tools.run_ok(&Call::new(
            Program::Kind,
            [
                "create",
                "cluster",
                "--name",
                &options.name,
                "--config",
                &path_arg(&options.config),
                "--kubeconfig",
                &path_arg(&kubeconfig),
                "--wait",
                &Timeouts::flag(timeouts.cluster_create),
            ],
            // kind's own --wait plus the time to pull and start the node containers.
            Timeout::new("cluster-create", timeouts.cluster_create * 2),
        ))?;
        if let Some(dir) = &options.images {
            guard.load_images(dir)?;
        }
        Ok(guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// kind's context name for the cluster.
    pub fn context(&self) -> String {
        format!("kind-{}", self.name)
    }

    /// The run's own kubeconfig (in its private working directory).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// Whether this run created the cluster (rather than reusing it).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Whether the run will delete the cluster when it ends.
    pub fn deletes_on_drop(&self) -> bool {
        self.created && !self.keep
    }

    /// A kubectl bound to this cluster.
    pub fn kubectl(&self) -> Kubectl {
        Kubectl::new(
            self.tools.clone(),
            Some(self.kubeconfig.clone()),
            Some(self.context()),
            self.timeouts.clone(),
        )
    }

    /// `kind load image-archive` for every `.tar` archive in `dir`, in name order.
    pub fn load_images(&self, dir: &Path) -> Result<Vec<PathBuf>, KubeError> {
        let archives = image_archives(dir)?;
        for archive in &archives {
            self.tools.say(&format!(
                "kind: loading {} into {}",
                archive.display(),
                self.name
            ));
            self.tools.run_ok(&Call::new(
                Program::Kind,
                [
                    "load",
                    "image-archive",
                    &path_arg(archive),
                    "--name",
                    &self.name,
                ],
                self.timeouts.image_load(),
            ))?;
        }
        Ok(archives)
    }

    /// Ends the run's use of the cluster: deletes it unless kept or reused, and says which.
    pub fn finish(mut self) -> Result<(), KubeError> {
        self.disarm();
        let result = self.delete_if_owned();
        // Drop must not delete a second time.
        self.created = false;
        result
    }

    fn delete_if_owned(&self) -> Result<(), KubeError> {
        if !self.created {
            return Ok(());
        }
        if self.keep {
            self.tools.say(&format!(
                "kind: keeping cluster {} (--keep); delete it with: kind delete cluster --name {}",
                self.name, self.name
            ));
            return Ok(());
        }
        self.teardown().run().map_err(KubeError::Tool)
    }

    fn teardown(&self) -> Teardown {
        Teardown {
            tools: self.tools.clone(),
            name: self.name.clone(),
            kubeconfig: self.kubeconfig.clone(),
            timeout: self.timeouts.cluster_delete(),
        }
    }

    fn arm(&mut self) -> Result<(), KubeError> {
        if self.keep {
            return Ok(());
        }
        self.registration = Some(interrupt::register(self.teardown())?);
        Ok(())
    }

    fn disarm(&mut self) {
        if let Some(id) = self.registration.take() {
            interrupt::unregister(id);
        }
    }
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        self.disarm();
        if let Err(e) = self.delete_if_owned() {
            self.tools.say(&format!(
                "kind: could not delete cluster {}: {e}",
                self.name
            ));
        }
    }
}

/// What deleting the cluster takes; shared with the interrupt handler.
#[derive(Debug)]
struct Teardown {
    tools: Toolbox,
    name: String,
    kubeconfig: PathBuf,
    timeout: Timeout,
}

impl Teardown {
    fn run(&self) -> Result<(), super::tool::ToolError> {
        self.tools
            .say(&format!("kind: deleting cluster {}", self.name));
        self.tools
            .run_ok(&Call::new(
                Program::Kind,
                [
                    "delete",
                    "cluster",
                    "--name",
                    &self.name,
                    "--kubeconfig",
                    &path_arg(&self.kubeconfig),
                ],
                self.timeout,
            ))
            .map(|_| ())
    }
}

/// `kind get clusters`: the names of existing clusters ("No kind clusters found." goes to
/// stderr, so stdout is empty then).
pub fn list_clusters(tools: &Toolbox, timeout: Timeout) -> Result<Vec<String>, KubeError> {
    let out = tools.run_ok(&Call::new(Program::Kind, ["get", "clusters"], timeout))?;
    Ok(out
        .stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// The `.tar` archives in `dir`, sorted by name; an error when there are none (the user asked
/// for preloading, and silently loading nothing would fail later as image pull errors).
pub fn image_archives(dir: &Path) -> Result<Vec<PathBuf>, KubeError> {
    let entries =
        std::fs::read_dir(dir).map_err(KubeError::io(format!("--images {}", dir.display())))?;
    let mut archives: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "tar"))
        .collect();
    archives.sort();
    if archives.is_empty() {
        return Err(KubeError::Input {
            what: format!("--images {}", dir.display()),
            reason: "holds no .tar image archives; create them with `docker save IMAGE -o DIR/NAME.tar` for each line of kind/images.txt".into(),
        });
    }
    Ok(archives)
}

fn validate_name(name: &str) -> Result<(), KubeError> {
    let ok = !name.is_empty()
        && name.len() <= 50
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !name.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(KubeError::Input {
            what: format!("kind cluster name {name:?}"),
            reason: "expected at most 50 lowercase letters, digits, '-' or '.'".into(),
        })
    }
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// Ctrl-C and SIGTERM (what CI sends on cancel) while a cluster is armed: delete it, then exit
/// 130. One handler thread per process, started with the first armed cluster; the handler is
/// registered before `register` returns, so there is no window in which an interrupt kills the
/// process the default way and leaves the cluster behind.
mod interrupt {
    use super::*;

    type Slots = Arc<Mutex<Vec<(u64, Teardown)>>>;

    struct Handler {
        slots: Slots,
        next: Mutex<u64>,
    }

    static HANDLER: OnceLock<Result<Handler, String>> = OnceLock::new();

    fn handler() -> Result<&'static Handler, KubeError> {
        HANDLER
            .get_or_init(start)
            .as_ref()
            .map_err(|reason| KubeError::Io {
                what: "installing the Ctrl-C handler that deletes the cluster".into(),
                source: std::io::Error::other(reason.clone()),
            })
    }

    fn start() -> Result<Handler, String> {
        let slots: Slots = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread_slots = slots.clone();
        std::thread::Builder::new()
            .name("meshproof-interrupt".into())
            .spawn(move || watch(thread_slots, ready_tx))
            .map_err(|e| e.to_string())?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Handler {
                slots,
                next: Mutex::new(0),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the interrupt thread ended before it was ready".into()),
        }
    }

    fn watch(slots: Slots, ready: std::sync::mpsc::Sender<Result<(), String>>) {
        use tokio::signal::unix::{SignalKind, signal};
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let which = runtime.block_on(async {
            let mut int = match signal(SignalKind::interrupt()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return None;
                }
            };
            let mut term = match signal(SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    let _ = ready.send(Err(e.to_string()));
                    return None;
                }
            };
            let _ = ready.send(Ok(()));
            tokio::select! {
                _ = int.recv() => Some("interrupt"),
                _ = term.recv() => Some("terminate"),
            }
        });
        let Some(which) = which else { return };
        let teardowns: Vec<Teardown> = match slots.lock() {
            Ok(mut slots) => slots.drain(..).map(|(_, t)| t).collect(),
            Err(_) => Vec::new(),
        };
        for teardown in teardowns {
            eprintln!(
                "meshproof: {which} received: deleting kind cluster {}",
                teardown.name
            );
            if let Err(e) = teardown.run() {
                eprintln!(
                    "meshproof: could not delete kind cluster {}: {e}",
                    teardown.name
                );
            }
        }
        std::process::exit(130);
    }

    pub(super) fn register(teardown: Teardown) -> Result<u64, KubeError> {
        let handler = handler()?;
        let id = {
            let mut next = handler.next.lock().map_err(|_| poisoned())?;
            *next += 1;
            *next
        };
        handler
            .slots
            .lock()
            .map_err(|_| poisoned())?
            .push((id, teardown));
        Ok(id)
    }

    pub(super) fn unregister(id: u64) {
        if let Some(Ok(handler)) = HANDLER.get() {
            if let Ok(mut slots) = handler.slots.lock() {
                slots.retain(|(i, _)| *i != id);
            }
        }
    }

    fn poisoned() -> KubeError {
        KubeError::Io {
            what: "the interrupt handler's state".into(),
            source: std::io::Error::other("poisoned by an earlier panic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_are_per_run_and_acceptable_to_kind() {
        assert_eq!(
            cluster_name("20261122-212004-095c"),
            "meshproof-20261122-212004-095c"
        );
        assert!(validate_name(&cluster_name("Run_ID/with spaces")).is_ok());
        assert!(validate_name("Bad_Name").is_err());
    }
}

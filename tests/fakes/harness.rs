//! Test harness for the fake cluster tools in `tests/fakes/` (see `lib.sh` there): a private
//! bin folder holding the chosen fakes, the log they record their argv into, canned answers
//! (rules), and a `Toolbox` that finds only those fakes.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use meshproof::target::kube::tool::Toolbox;

pub const ALL: &[&str] = &["docker", "kind", "kubectl", "helm", "istioctl"];

pub struct Fakes {
    pub dir: tempfile::TempDir,
    pub bin: PathBuf,
    pub log: PathBuf,
    pub rules: PathBuf,
    pub workdir: PathBuf,
    progress: Arc<Mutex<Vec<String>>>,
    docker_engine_down: bool,
}

fn fakes_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fakes")
}

impl Fakes {
    /// Every fake on the search path.
    pub fn new() -> Self {
        Self::with(ALL)
    }

    /// Only `tools` on the search path (the others are "not installed").
    pub fn with(tools: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        for tool in tools {
            std::os::unix::fs::symlink(fakes_dir().join(tool), bin.join(tool)).expect("symlink");
        }
        let workdir = dir.path().join("work");
        std::fs::create_dir_all(&workdir).expect("workdir");
        let log = dir.path().join("calls.log");
        let rules = dir.path().join("rules");
        std::fs::write(&rules, "").expect("rules");
        Fakes {
            bin,
            log,
            rules,
            workdir,
            dir,
            progress: Arc::new(Mutex::new(Vec::new())),
            docker_engine_down: false,
        }
    }

    pub fn docker_engine_down(mut self) -> Self {
        self.docker_engine_down = true;
        self
    }

    /// A toolbox that finds only the fakes, logging into this harness.
    pub fn toolbox(&self) -> Toolbox {
        let progress = self.progress.clone();
        let mut builder = Toolbox::with_search_path(vec![self.bin.clone()])
            .env("MESHPROOF_FAKE_LOG", &self.log)
            .env("MESHPROOF_FAKE_RULES", &self.rules)
            .env("MESHPROOF_FAKE_STATE", self.dir.path().join("state"))
            .progress(Arc::new(move |line: &str| {
                if let Ok(mut p) = progress.lock() {
                    p.push(line.to_owned());
                }
            }));
        if self.docker_engine_down {
            builder = builder.env("MESHPROOF_FAKE_DOCKER_ENGINE", "down");
        }
        builder.build()
    }

    /// Answer calls matching `pattern` (a shell glob on "tool arg1 arg2 ...").
    pub fn rule(&self, pattern: &str, code: i32, stdout: &str, stderr: &str) {
        self.rule_times(pattern, code, stdout, stderr, None);
    }

    /// Like [`rule`](Self::rule), for the first `times` matches only.
    pub fn rule_times(
        &self,
        pattern: &str,
        code: i32,
        stdout: &str,
        stderr: &str,
        times: Option<u32>,
    ) {
        let escape = |s: &str| s.replace('\\', "\\\\").replace('\n', "\\n");
        let line = format!(
            "{pattern}\x1f{code}\x1f{}\x1f{}\x1f{}\n",
            escape(stdout),
            escape(stderr),
            times.map(|t| t.to_string()).unwrap_or_default()
        );
        let mut text = std::fs::read_to_string(&self.rules).unwrap_or_default();
        text.push_str(&line);
        std::fs::write(&self.rules, text).expect("rules");
    }

    /// Every recorded call: tool name then arguments.
    pub fn calls(&self) -> Vec<Vec<String>> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| l.split('\t').map(str::to_owned).collect())
            .collect()
    }

    /// Calls as command lines (`kind get clusters`), for readable assertions.
    pub fn lines(&self) -> Vec<String> {
        self.calls().iter().map(|c| c.join(" ")).collect()
    }

    /// What call number `index` received on stdin.
    pub fn stdin_of(&self, index: usize) -> Option<String> {
        std::fs::read_to_string(
            PathBuf::from(format!("{}.stdin", self.log.display())).join(index.to_string()),
        )
        .ok()
    }

    /// Every (call index, stdin) pair recorded.
    pub fn stdins(&self) -> Vec<(usize, String)> {
        let dir = PathBuf::from(format!("{}.stdin", self.log.display()));
        let mut out: Vec<(usize, String)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let index = e.file_name().to_string_lossy().parse().ok()?;
                Some((index, std::fs::read_to_string(e.path()).ok()?))
            })
            .collect();
        out.sort();
        out
    }

    pub fn progress(&self) -> Vec<String> {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Whether the fake kind still has the cluster.
    pub fn cluster_exists(&self, name: &str) -> bool {
        self.dir.path().join("state/clusters").join(name).exists()
    }

    /// Makes the fake kind believe `name` exists (created by someone else).
    pub fn existing_cluster(&self, name: &str) {
        let dir = self.dir.path().join("state/clusters");
        std::fs::create_dir_all(&dir).expect("state");
        std::fs::write(dir.join(name), "").expect("cluster");
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn kind_config() -> PathBuf {
    root().join("kind/cluster.yaml")
}

pub fn profile(name: &str) -> meshproof::profile::Profile {
    meshproof::profile::load(&root().join("manifests").join(name).join("profile.yaml"))
        .expect("bundled profile loads")
}

pub fn configured(profile: &meshproof::profile::Profile) -> meshproof::configured::Configured {
    meshproof::configured::load(profile, &meshproof::configured::default_dir(profile))
        .expect("bundled manifests load")
}

/// Strings, for comparing with `vec![...]` of literals.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

pub fn display(path: &Path) -> String {
    path.display().to_string()
}

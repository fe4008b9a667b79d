//! The `meshproof` command line. Parses arguments, calls the library, maps outcomes to exit codes:
//! 0 every check passed, 1 a check failed, 2 the harness could not run (bad input, missing tool).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use meshproof::profile;
use meshproof::report;
use meshproof::runner::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "meshproof",
    version,
    about = "Proves a zero-trust service mesh does what its runbook promises, and writes the evidence.",
    long_about = "Proves a zero-trust service mesh does what its runbook promises, and writes the evidence.\n\n\
        A profile (manifests/<name>/profile.yaml) states the intended trust model: trust domain, services, \
        allowed and denied intents, CA policy. Gherkin features (features/*.feature) state the checks. \
        A target is where behaviour is observed; `lab` runs everything on this machine.",
    after_help = "Exit codes: 0 every check passed, 1 a check failed, 2 the harness could not run.\n\
        Examples:\n  meshproof run                                  # every bundled profile on the lab\n  \
        meshproof run --profile tradepulse --tags @pki\n  meshproof profile check manifests/*/profile.yaml\n  \
        meshproof pki init --profile tradepulse --out ./cacerts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the checklist features against a target and write reports to reports/<run-id>/.
    Run(RunArgs),
    /// Run game-day drills on the lab: inject a fault (expired intermediate, SPIRE outage,
    /// allow-all drift, ...) under steady traffic, measure time to detect and to recover and the
    /// failed requests, then undo the fault and verify the undo. Drills are data in
    /// scenarios/*.yaml (see scenarios/README.md). Exit 0 every drill passed, 1 a drill failed
    /// its bounds or undo, 2 a drill could not run, 130 interrupted (the fault was undone first).
    #[command(after_help = "Examples:\n  \
        meshproof drill --all\n  \
        meshproof drill expired-intermediate allow-all-drift\n  \
        meshproof drill --scenarios ./my-drills --all --out reports/gameday")]
    Drill {
        /// Drill names (file stems in the scenarios folder) or paths to drill files.
        #[arg(required_unless_present = "all")]
        names: Vec<String>,
        /// Every drill in the scenarios folder, one after another.
        #[arg(long, conflicts_with = "names")]
        all: bool,
        /// Folder of drill files [default: scenarios/].
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Report folder [default: reports/<run-id>/].
        #[arg(long)]
        out: Option<PathBuf>,
        /// No per-phase progress lines on stderr.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Validate profile files without running anything.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Work with the lab PKI (corporate root → mesh intermediate → workload SVIDs).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Write the Kubernetes manifests that implement a profile (namespaces, STRICT mTLS,
    /// AuthorizationPolicies for every intent, DestinationRules, Gatekeeper, SPIRE, probes).
    Render {
        #[arg(long, short)]
        profile: String,
        #[arg(long)]
        out: PathBuf,
        /// The environment whose identities the policies name [default: the profile's lab one].
        #[arg(long)]
        environment: Option<String>,
    },
    /// Statically check configured manifests against a profile's intents: Istio's decision for
    /// every request of every caller → callee pair an intent names and of a default-deny sample
    /// of the other pairs, STRICT mTLS, admission audit. Exit 1 on any mismatch.
    #[command(
        after_help = "Default-deny sample (the pairs no intent names): for every callee a few callers \
            without an intent (first those its ALLOW policies name, then services of its namespace, \
            callers of its neighbours, the nearest services in profile order), and for every caller \
            a few callees (its namespace, callees of the services it may call, the nearest); every \
            endpoint and method of each pair. Deterministic and linear in the mesh size; a small mesh \
            is covered exhaustively. The summary line gives the sample's bounds and how many pairs \
            were judged. --exhaustive judges every pair (quadratic: for small meshes)."
    )]
    Verify {
        #[arg(long, short, default_value = "all")]
        profile: String,
        /// Manifests folder [default: the profile's own folder, manifests/<profile>/].
        #[arg(long)]
        manifests: Option<PathBuf>,
        /// List every verdict, not only the failures.
        #[arg(long, short)]
        verbose: bool,
        /// Judge every caller → callee pair, not a default-deny sample of those no intent names.
        #[arg(long)]
        exhaustive: bool,
    },
    /// Audit evidence bundles.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// Measure meshproof: full lab runs, probes through Envoy beside the raw TLS handshake rate,
    /// static verify on 100/1,000/5,000 synthetic services, in-process admission beside gator,
    /// report generation for 10,000 results, peak memory. Prints a table of medians and ratios.
    Bench {
        /// Parts to measure (lab, probes, verify, admission, report) [default: all].
        #[arg(long, value_delimiter = ',')]
        parts: Vec<String>,
        /// Repetitions of every micro-benchmark.
        #[arg(long, default_value_t = 5)]
        repetitions: usize,
        /// Also write the figures as reports (results.json with `bench`, report.html with the
        /// plots, summary.md with the tables) to this folder.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check that the tools a kind or cluster target needs are installed (docker with a running
    /// engine, kind, kubectl, helm, istioctl), with their versions and how to install what is
    /// missing. Exit 0 ready, 2 not ready. (`run --target kind|cluster` does this first.)
    Preflight {
        #[arg(long, value_enum, default_value = "kind")]
        target: ClusterKind,
    },
    /// Submit an object (YAML file) to the profile's admission policies; prints Gatekeeper's
    /// denial text. Exit 0 admitted, 1 denied.
    Admit {
        #[arg(long, short)]
        profile: String,
        /// Manifests folder holding the ConstraintTemplates [default: the profile's folder].
        #[arg(long)]
        manifests: Option<PathBuf>,
        file: PathBuf,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// Everything on this machine, no cluster.
    Lab,
    /// A kind cluster per profile, created, installed, checked and deleted by the run.
    Kind,
    /// An existing cluster (--context NAME): nothing installed, @destructive refused unless
    /// --allow-destructive.
    Cluster,
}

#[derive(Clone, Copy, ValueEnum)]
enum ClusterKind {
    /// A kind cluster meshproof creates and deletes.
    Kind,
    /// An existing cluster (a kubeconfig context).
    Cluster,
}

#[derive(clap::Args)]
struct RunArgs {
    /// A bundled profile name (tradepulse, soma-agent-hub), `all`, or a path to a profile.yaml.
    #[arg(long, short, default_value = "all")]
    profile: String,
    /// Where behaviour is observed.
    #[arg(long, short, value_enum, default_value = "lab")]
    target: TargetKind,
    /// Cucumber tag expression selecting scenarios, e.g. '@pki', '@identity and not @static'.
    #[arg(long)]
    tags: Option<String>,
    /// Report directory [default: reports/<run-id>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// A .feature file or a directory of them [default: the project's features/].
    #[arg(long)]
    features: Option<PathBuf>,
    /// Judge this manifests folder instead of each profile's own manifests/<profile>/ (use with a
    /// single --profile).
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// Re-run a failed scenario up to N times; reports count it once, with its final outcome.
    #[arg(long, default_value_t = 0, value_name = "N")]
    retries: usize,
    /// An earlier run's folder (or its results.json): list what changed since, widened access
    /// (denied then, allowed now) first, then newly failing checks. Written to regressions.md.
    #[arg(long, value_name = "DIR")]
    baseline: Option<PathBuf>,
    /// Ed25519 key (PKCS#8 PEM or DER, e.g. `openssl genpkey -algorithm ed25519`) that signs the
    /// evidence bundle [default: a fresh key per run; its public half is printed and recorded].
    #[arg(long, value_name = "FILE")]
    signing_key: Option<PathBuf>,
    /// Print only the summary, not a line per scenario.
    #[arg(long, short)]
    quiet: bool,
    #[command(flatten)]
    cluster: Box<ClusterArgs>,
}

/// Options of `--target kind` and `--target cluster`.
#[derive(clap::Args)]
struct ClusterArgs {
    /// cluster: the kubeconfig context to check [default: the current context].
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// cluster: the kubeconfig file [default: kubectl's].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// cluster: also run @destructive scenarios (faults, drills) on it.
    #[arg(long)]
    allow_destructive: bool,
    /// kind: run against an existing kind cluster (NAME, or meshproof-<profile>) and leave it
    /// running; created first if it does not exist (and kept with --keep).
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    reuse: Option<String>,
    /// kind: keep the cluster after the run.
    #[arg(long)]
    keep: bool,
    /// kind: load every .tar image archive of DIR into the nodes (air-gapped machines).
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// kind: the cluster config [default: the project's kind/cluster.yaml].
    #[arg(long, value_name = "FILE")]
    kind_config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Check that profile files are valid; prints every problem as file:line:column.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Check a run's evidence bundle: every file's SHA-256 against the manifest, no file missing
    /// or added, and the Ed25519 signature. Exit 0 intact, 1 tampered, 2 unreadable.
    Verify {
        /// A run folder (reports/<run-id>) or its evidence/ folder.
        dir: PathBuf,
        /// The public key the bundle must be signed with (hex, base64, PEM, or a file holding
        /// one) [default: the key recorded in the bundle, which proves integrity, not origin].
        #[arg(long)]
        public_key: Option<String>,
    },
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Generate the profile's CA hierarchy and write Istio's plug-in CA files and one SVID per
    /// identity to DIR (private keys 0600; never printed).
    Init {
        #[arg(long, short)]
        profile: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Run(args) => run(args),
        Command::Drill {
            names,
            all,
            scenarios,
            out,
            quiet,
        } => meshproof::drills::cli::main(meshproof::drills::cli::Options {
            names,
            all,
            scenarios,
            out,
            quiet,
        }),
        Command::Profile(ProfileCommand::Check { files }) => profile_check(&files),
        Command::Pki(PkiCommand::Init { profile, out }) => pki_init(&profile, &out),
        Command::Evidence(EvidenceCommand::Verify { dir, public_key }) => {
            evidence_verify(&dir, public_key.as_deref())
        }
        Command::Preflight { target } => preflight(target),
        Command::Bench {
            parts,
            repetitions,
            out,
        } => bench(&parts, repetitions, out.as_deref()),
        Command::Render {
            profile,
            out,
            environment,
        } => render(&profile, &out, environment.as_deref()),
        Command::Verify {
            profile,
            manifests,
            verbose,
            exhaustive,
        } => verify(&profile, manifests.as_deref(), verbose, exhaustive),
        Command::Admit {
            profile,
            manifests,
            file,
        } => admit(&profile, manifests.as_deref(), &file),
    };
    ExitCode::from(code)
}

/// `println!` that treats a closed stdout (`meshproof verify | head`) as the reader being done,
/// not as a crash.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(141);
        }
    }};
}

fn harness_failure(message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    2
}

fn run(args: RunArgs) -> u8 {
    let target = match run_target(args.target, &args.cluster) {
        Ok(t) => t,
        Err(e) => return harness_failure(e),
    };
    let profiles = match profile::resolve(&args.profile) {
        Ok(p) => p,
        Err(e) => return harness_failure(e),
    };
    let features = args.features.unwrap_or_else(default_features);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return harness_failure(format!("cannot start the async runtime: {e}")),
    };
    let on_cluster = target.kind() != meshproof::target::kube::TargetKind::Lab;
    let listing = if on_cluster {
        match not_run_here(&features, args.tags.as_deref(), &target) {
            Ok(l) => Some(l),
            Err(e) => return harness_failure(e),
        }
    } else {
        None
    };
    let options = RunOptions {
        profiles,
        features,
        tags: args.tags,
        progress: !args.quiet,
        retries: args.retries,
        manifests: args.manifests,
    };
    // Ctrl-C or SIGTERM (a CI timeout) ends the run: dropping the run drops the lab, and the lab
    // stops every process it started (Envoys, SPIRE) before we exit; a kind cluster the run
    // created is deleted by its own interrupt handler. Nothing is left behind.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = runner::run_on(options, target) => Some(r),
            _ = interrupted() => None,
        }
    });
    let results = match outcome {
        Some(Ok(r)) => r,
        Some(Err(e)) => return harness_failure(e),
        None => {
            drop(runtime);
            eprintln!("interrupted: every lab process was stopped; no reports were written");
            return 130;
        }
    };
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&results.run_id));
    let key = match args
        .signing_key
        .as_deref()
        .map(report::evidence::SigningKey::from_file)
        .transpose()
    {
        Ok(k) => k,
        Err(e) => return harness_failure(e),
    };
    let baseline = match args
        .baseline
        .as_deref()
        .map(report::baseline::load)
        .transpose()
    {
        Ok(b) => b,
        Err(e) => return harness_failure(format!("--baseline {e}")),
    };
    if let Some(listing) = &listing {
        // Into the run folder before the reports, so the signed evidence bundle includes it.
        let file = dir.join("applicability.md");
        let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, listing));
        if let Err(e) = written {
            return harness_failure(format!("cannot write {}: {e}", file.display()));
        }
    }
    let regressions = baseline
        .as_ref()
        .map(|b| report::baseline::compare(b, &results));
    if let Some(r) = &regressions {
        // Into the run folder before the reports, so the signed evidence bundle includes it.
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            std::fs::write(
                dir.join("regressions.md"),
                report::baseline::render_markdown(r),
            )
        });
        if let Err(e) = written {
            return harness_failure(format!(
                "cannot write {}: {e}",
                dir.join("regressions.md").display()
            ));
        }
    }
    let options = report::ReportOptions {
        versions: Default::default(),
        signing_key: key.as_ref(),
    };
    let written = match report::write_all_with(&results, &dir, &options) {
        Ok(w) => w,
        Err(e) => {
            return harness_failure(format!("cannot write reports to {}: {e}", dir.display()));
        }
    };
    say!(
        "{}",
        report::console::summary(&results, Some(&dir)).trim_end()
    );
    say!(
        "evidence: {} signed by {}",
        dir.join("evidence").display(),
        written.public_key
    );
    if let Some(r) = &regressions {
        say!(
            "since baseline {}: {} widened access, {} newly failing, {} fixed (regressions.md)",
            r.baseline_run,
            r.widened.len(),
            r.newly_failing.len(),
            r.fixed.len()
        );
        for w in r.widened.iter().take(10) {
            say!("  WIDENED  {w}");
        }
    }
    results.exit_code() as u8
}

/// The run's target from `--target` and its options; an option that does not belong to the
/// chosen target is an error rather than silently ignored.
fn run_target(target: TargetKind, args: &ClusterArgs) -> Result<runner::TargetOptions, String> {
    use meshproof::target::kube::probe::ProbeConfig;
    use meshproof::target::kube::target::ClusterRun;
    use meshproof::target::kube::{Timeouts, Toolbox};
    let kind_only = [
        ("--reuse", args.reuse.is_some()),
        ("--keep", args.keep),
        ("--images", args.images.is_some()),
        ("--kind-config", args.kind_config.is_some()),
    ];
    let cluster_only = [
        ("--context", args.context.is_some()),
        ("--kubeconfig", args.kubeconfig.is_some()),
        ("--allow-destructive", args.allow_destructive),
    ];
    let misplaced = |flags: &[(&str, bool)], belongs: &str| {
        flags
            .iter()
            .find(|(_, given)| *given)
            .map(|(flag, _)| format!("{flag} is an option of --target {belongs}"))
    };
    let wrong = match target {
        TargetKind::Lab => misplaced(&kind_only, "kind").or(misplaced(&cluster_only, "cluster")),
        TargetKind::Kind => misplaced(&cluster_only, "cluster"),
        TargetKind::Cluster => misplaced(&kind_only, "kind"),
    };
    if let Some(message) = wrong {
        return Err(message);
    }
    if target == TargetKind::Lab {
        return Ok(runner::TargetOptions::Lab);
    }
    let access = runner::ClusterAccess {
        tools: Toolbox::from_env()
            .progress(std::sync::Arc::new(|line: &str| eprintln!("  {line}")))
            .build(),
        timeouts: Timeouts::from_env().map_err(|e| e.to_string())?,
    };
    Ok(match target {
        TargetKind::Kind => runner::TargetOptions::Kind(
            access,
            runner::KindSettings {
                name: args.reuse.clone().filter(|n| !n.is_empty()),
                config: args
                    .kind_config
                    .clone()
                    .unwrap_or_else(|| project_file("kind/cluster.yaml")),
                reuse: args.reuse.is_some(),
                keep: args.keep,
                images: args.images.clone(),
                probes: ProbeConfig::default(),
            },
        ),
        _ => runner::TargetOptions::Cluster(
            access,
            ClusterRun {
                context: args.context.clone(),
                kubeconfig: args.kubeconfig.clone(),
                allow_destructive: args.allow_destructive,
                probes: ProbeConfig::default(),
            },
        ),
    })
}

/// Prints the scenarios the target leaves out (and why), and returns the listing as Markdown for
/// the run folder.
fn not_run_here(
    features: &std::path::Path,
    tags: Option<&str>,
    target: &runner::TargetOptions,
) -> Result<String, runner::RunError> {
    let listed = runner::listing(features, tags, target.kind(), target.allow_destructive())?;
    let left_out: Vec<_> = listed.iter().filter(|l| !l.applicability.runs()).collect();
    eprintln!(
        "target {}: {} of {} selected scenarios apply; not run here:",
        target.kind(),
        listed.len() - left_out.len(),
        listed.len()
    );
    for l in &left_out {
        eprintln!(
            "  not run  {}  {}  ({})",
            l.place,
            l.name,
            runner::why(&l.applicability)
        );
    }
    Ok(runner::listing_markdown(target.kind(), &listed))
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn default_features() -> PathBuf {
    project_file("features")
}

/// `rel` in the working directory when it is there, else in the project meshproof was built from.
fn project_file(rel: &str) -> PathBuf {
    let local = PathBuf::from(rel);
    if local.exists() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
    }
}

fn profile_check(files: &[PathBuf]) -> u8 {
    let mut code = 0;
    for file in files {
        match profile::load(file) {
            Ok(p) => say!(
                "{}: ok — profile {}, {} services, {} identities, {} intents",
                file.display(),
                p.name,
                p.services.len(),
                p.identities().len(),
                p.intents.len()
            ),
            Err(e) => {
                eprintln!("{e}");
                code = 2;
            }
        }
    }
    code
}

fn pki_init(selector: &str, out: &std::path::Path) -> u8 {
    let paths = match profile::resolve(selector) {
        Ok(p) => p,
        Err(e) => return harness_failure(e),
    };
    for path in paths {
        let profile = match profile::load(&path) {
            Ok(p) => p,
            Err(e) => return harness_failure(e),
        };
        let dir = out.join(&profile.name);
        match meshproof::target::lab::init_pki(&profile, &dir, time::OffsetDateTime::now_utc()) {
            Ok(summary) => say!("{}", summary.trim_end()),
            Err(e) => return harness_failure(format!("{}: {e}", dir.display())),
        }
    }
    0
}

fn load_one(selector: &str) -> Result<Vec<profile::Profile>, u8> {
    let paths = profile::resolve(selector).map_err(harness_failure)?;
    paths
        .iter()
        .map(|p| profile::load(p).map_err(harness_failure))
        .collect()
}

fn render(selector: &str, out: &std::path::Path, environment: Option<&str>) -> u8 {
    let profiles = match load_one(selector) {
        Ok(p) => p,
        Err(code) => return code,
    };
    for profile in &profiles {
        let dir = if profiles.len() > 1 {
            out.join(&profile.name)
        } else {
            out.to_path_buf()
        };
        match meshproof::render::write(profile, environment, &dir) {
            Ok(files) => {
                for f in files {
                    say!("{}", f.display());
                }
            }
            Err(e) => return harness_failure(e),
        }
    }
    0
}

fn verify(
    selector: &str,
    manifests: Option<&std::path::Path>,
    verbose: bool,
    exhaustive: bool,
) -> u8 {
    use meshproof::results::Status;
    use meshproof::verify::Sampling;
    let sampling = if exhaustive {
        Sampling::Exhaustive
    } else {
        Sampling::DefaultDeny
    };
    let profiles = match load_one(selector) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let mut failed = 0;
    for profile in &profiles {
        let dir = manifests
            .map(std::path::Path::to_path_buf)
            .unwrap_or_else(|| meshproof::configured::default_dir(profile));
        let configured = match meshproof::configured::load(profile, &dir) {
            Ok(c) => c,
            Err(e) => return harness_failure(e),
        };
        let verification = meshproof::verify::verify(profile, &configured, sampling);
        let results = verification.results;
        let bad: Vec<_> = results
            .iter()
            .filter(|r| r.status != Status::Passed)
            .collect();
        for r in &results {
            if verbose || r.status != Status::Passed {
                let mark = if r.status == Status::Passed {
                    "pass"
                } else {
                    "FAIL"
                };
                say!("  {mark:>4}  {:<22} {}", r.check, r.summary);
            }
        }
        say!(
            "{}: {} verdicts against {}, {} failed; judged {}",
            profile.name,
            results.len(),
            dir.display(),
            bad.len(),
            verification.coverage
        );
        failed += bad.len();
    }
    say!(
        "{} passed, {} failed",
        if failed == 0 { profiles.len() } else { 0 },
        failed
    );
    u8::from(failed > 0)
}

fn admit(selector: &str, manifests: Option<&std::path::Path>, file: &std::path::Path) -> u8 {
    let profiles = match load_one(selector) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let Some(profile) = profiles.first() else {
        return harness_failure("no profile");
    };
    let dir = manifests
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| meshproof::configured::default_dir(profile));
    let configured = match meshproof::configured::load(profile, &dir) {
        Ok(c) => c,
        Err(e) => return harness_failure(e),
    };
    let Some(admission) = &configured.admission else {
        return harness_failure(format!(
            "{}: no ConstraintTemplates; expected a manifests folder with gatekeeper.yaml",
            dir.display()
        ));
    };
    let objects = match meshproof::policy::gatekeeper::load_manifests(&[file]) {
        Ok(o) => o,
        Err(e) => return harness_failure(e),
    };
    let mut code = 0;
    for object in objects {
        let result = admission.review(
            &object.object,
            meshproof::policy::gatekeeper::Operation::Create,
        );
        let name = format!("{}/{}", object.reference().kind, object.reference().name);
        for w in &result.warning_texts {
            say!("Warning: {w}");
        }
        match &result.denial_text {
            Some(text) if !result.allowed => {
                say!("{name}: denied\n{text}");
                code = 1;
            }
            _ => say!("{name}: admitted"),
        }
    }
    code
}

fn evidence_verify(dir: &std::path::Path, public_key: Option<&str>) -> u8 {
    use report::evidence::{self, PublicKey};
    let key = match public_key {
        None => None,
        Some(text) if std::path::Path::new(text).is_file() => {
            match PublicKey::from_file(std::path::Path::new(text)) {
                Ok(k) => Some(k),
                Err(e) => return harness_failure(e),
            }
        }
        Some(text) => match PublicKey::parse(text) {
            Ok(k) => Some(k),
            Err(e) => return harness_failure(e),
        },
    };
    let bundle = if dir.join("evidence").is_dir() {
        dir.join("evidence")
    } else {
        dir.to_path_buf()
    };
    match evidence::verify(&bundle, key.as_ref()) {
        Ok(report) => {
            say!("{report}");
            u8::from(!report.is_clean())
        }
        Err(e) => harness_failure(e),
    }
}

fn preflight(target: ClusterKind) -> u8 {
    use meshproof::target::kube::{Timeouts, Toolbox, applicability::TargetKind, preflight};
    let kind = match target {
        ClusterKind::Kind => TargetKind::Kind,
        ClusterKind::Cluster => TargetKind::Cluster,
    };
    let tools = Toolbox::from_env().build();
    let timeouts = match Timeouts::from_env() {
        Ok(t) => t,
        Err(e) => return harness_failure(e),
    };
    match preflight::check(&tools, kind, timeouts.call()) {
        Ok(report) => {
            for (tool, version) in report.versions() {
                say!("  ok  {tool} {version}");
            }
            say!("{}: every tool is ready", kind.name());
            0
        }
        Err(e) => harness_failure(e),
    }
}

fn bench(parts: &[String], repetitions: usize, out: Option<&Path>) -> u8 {
    use meshproof::bench::{self, BenchOptions, Part};
    let mut options = BenchOptions {
        repetitions,
        progress: true,
        ..BenchOptions::default()
    };
    options.meshproof_bin = std::env::current_exe().ok();
    if !parts.is_empty() {
        let mut chosen = Vec::new();
        for name in parts {
            match Part::parse(name) {
                Some(p) => chosen.push(p),
                None => {
                    return harness_failure(format!(
                        "--parts {name}: expected lab, probes, verify, admission or report"
                    ));
                }
            }
        }
        options.parts = chosen;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return harness_failure(format!("cannot start the async runtime: {e}")),
    };
    let report = runtime.block_on(bench::run_all(options));
    say!("{}", bench::render_table(&report).trim_end());
    let Some(dir) = out else { return 0 };
    let results = meshproof::results::RunResults {
        run_id: format!("bench-{}", report.started.replace(':', "")),
        meshproof_version: report.meshproof_version.clone(),
        target: "bench".into(),
        started: report.started.clone(),
        duration: std::time::Duration::from_secs_f64(report.wall_seconds),
        tags: None,
        profiles: Vec::new(),
        versions: [
            ("meshproof", Some(report.meshproof_version.clone())),
            ("envoy", report.envoy_version.clone()),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k.to_owned(), v?)))
        .collect(),
        scenarios: Vec::new(),
        harness_errors: Vec::new(),
        drills: Vec::new(),
        bench: Some(report),
    };
    match meshproof::report::write_all(&results, dir) {
        Ok(_) => {
            say!("reports: {}", dir.display());
            0
        }
        Err(e) => harness_failure(format!("cannot write reports to {}: {e}", dir.display())),
    }
}

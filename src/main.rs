//! The `meshproof` command line. Parses arguments, calls the library, maps outcomes to exit codes:
//! 0 every check passed, 1 a check failed, 2 the harness could not run (bad input, missing tool).

use std::path::PathBuf;
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
    /// Validate profile files without running anything.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Work with the lab PKI (corporate root → mesh intermediate → workload SVIDs).
    #[command(subcommand)]
    Pki(PkiCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetKind {
    /// Everything on this machine, no cluster.
    Lab,
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
    /// Re-run a failed scenario up to N times; reports count it once, with its final outcome.
    #[arg(long, default_value_t = 0, value_name = "N")]
    retries: usize,
    /// Print only the summary, not a line per scenario.
    #[arg(long, short)]
    quiet: bool,
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
        Command::Profile(ProfileCommand::Check { files }) => profile_check(&files),
        Command::Pki(PkiCommand::Init { profile, out }) => pki_init(&profile, &out),
    };
    ExitCode::from(code)
}

fn harness_failure(message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    2
}

fn run(args: RunArgs) -> u8 {
    let TargetKind::Lab = args.target;
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
    let options = RunOptions {
        profiles,
        features,
        tags: args.tags,
        progress: !args.quiet,
        retries: args.retries,
    };
    let results = match runtime.block_on(runner::run(options)) {
        Ok(r) => r,
        Err(e) => return harness_failure(e),
    };
    let dir = args
        .out
        .unwrap_or_else(|| PathBuf::from("reports").join(&results.run_id));
    if let Err(e) = report::write_all(&results, &dir) {
        return harness_failure(format!("cannot write reports to {}: {e}", dir.display()));
    }
    print!("{}", report::console::summary(&results, Some(&dir)));
    results.exit_code() as u8
}

fn default_features() -> PathBuf {
    let local = PathBuf::from("features");
    if local.is_dir() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("features")
    }
}

fn profile_check(files: &[PathBuf]) -> u8 {
    let mut code = 0;
    for file in files {
        match profile::load(file) {
            Ok(p) => println!(
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
            Ok(summary) => print!("{summary}"),
            Err(e) => return harness_failure(format!("{}: {e}", dir.display())),
        }
    }
    0
}

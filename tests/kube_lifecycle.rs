//! The kind cluster's lifecycle, through the fake `kind` in tests/fakes/ (it records its argv and
//! keeps the clusters it "created"): create / reuse / keep / delete, image preloading, and the
//! delete on Ctrl-C, each asserted on the exact command lines.

#[path = "fakes/harness.rs"]
mod fakes;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fakes::{Fakes, display, kind_config};
use meshproof::target::kube::kind::{ClusterGuard, KindOptions, cluster_name};
use meshproof::target::kube::tool::Toolbox;
use meshproof::target::kube::{KubeError, Timeouts};

fn options(fakes: &Fakes, name: &str) -> KindOptions {
    KindOptions {
        name: name.to_owned(),
        config: kind_config(),
        reuse: false,
        keep: false,
        images: None,
        workdir: fakes.workdir.clone(),
    }
}

fn create_line(fakes: &Fakes, name: &str) -> String {
    format!(
        "kind create cluster --name {name} --config {} --kubeconfig {}/kubeconfig --wait 600s",
        display(&kind_config()),
        display(&fakes.workdir)
    )
}

fn delete_line(fakes: &Fakes, name: &str) -> String {
    format!(
        "kind delete cluster --name {name} --kubeconfig {}/kubeconfig",
        display(&fakes.workdir)
    )
}

#[test]
fn kind_lifecycle_through_fake_kind_records_create_and_delete() {
    let fakes = Fakes::new();
    let name = cluster_name("tradepulse-20261122-212004-095c");
    let guard = ClusterGuard::up(
        &fakes.toolbox(),
        &options(&fakes, &name),
        &Timeouts::default(),
    )
    .expect("cluster up");
    assert!(fakes.cluster_exists(&name));
    assert_eq!(guard.context(), format!("kind-{name}"));
    assert!(guard.deletes_on_drop());
    guard.finish().expect("cluster deleted");
    assert_eq!(
        fakes.lines(),
        vec![
            "kind get clusters".to_owned(),
            create_line(&fakes, &name),
            delete_line(&fakes, &name),
        ]
    );
    assert!(!fakes.cluster_exists(&name));
}

#[test]
fn kind_guard_dropped_through_fake_kind_deletes_the_cluster() {
    let fakes = Fakes::new();
    {
        let _guard = ClusterGuard::up(
            &fakes.toolbox(),
            &options(&fakes, "dropped"),
            &Timeouts::default(),
        )
        .expect("cluster up");
        // A run that fails half-way returns early: the guard is dropped, not finished.
    }
    assert_eq!(fakes.lines().last(), Some(&delete_line(&fakes, "dropped")));
    assert!(!fakes.cluster_exists("dropped"));
}

#[test]
fn kind_reuse_through_fake_kind_exports_kubeconfig_and_never_deletes() {
    let fakes = Fakes::new();
    fakes.existing_cluster("shared");
    let mut opts = options(&fakes, "shared");
    opts.reuse = true;
    let guard = ClusterGuard::up(&fakes.toolbox(), &opts, &Timeouts::default()).expect("reused");
    assert!(!guard.created());
    assert!(!guard.deletes_on_drop());
    guard.finish().expect("finished");
    assert_eq!(
        fakes.lines(),
        vec![
            "kind get clusters".to_owned(),
            format!(
                "kind export kubeconfig --name shared --kubeconfig {}/kubeconfig",
                display(&fakes.workdir)
            ),
        ]
    );
    assert!(
        fakes.cluster_exists("shared"),
        "a reused cluster is never deleted"
    );
}

#[test]
fn kind_reuse_through_fake_kind_creates_when_absent_and_then_deletes() {
    let fakes = Fakes::new();
    let mut opts = options(&fakes, "absent");
    opts.reuse = true;
    let guard = ClusterGuard::up(&fakes.toolbox(), &opts, &Timeouts::default()).expect("created");
    assert!(guard.created());
    guard.finish().expect("deleted");
    assert_eq!(fakes.lines().last(), Some(&delete_line(&fakes, "absent")));
}

#[test]
fn kind_existing_cluster_through_fake_kind_is_refused_without_reuse() {
    let fakes = Fakes::new();
    fakes.existing_cluster("taken");
    let err = ClusterGuard::up(
        &fakes.toolbox(),
        &options(&fakes, "taken"),
        &Timeouts::default(),
    )
    .expect_err("refused");
    assert!(matches!(err, KubeError::Input { .. }), "{err}");
    assert!(err.to_string().contains("--reuse"), "{err}");
    assert_eq!(fakes.lines(), vec!["kind get clusters".to_owned()]);
    assert!(
        fakes.cluster_exists("taken"),
        "someone else's cluster is left alone"
    );
}

#[test]
fn kind_keep_through_fake_kind_leaves_the_cluster_and_says_how_to_delete_it() {
    let fakes = Fakes::new();
    let mut opts = options(&fakes, "kept");
    opts.keep = true;
    let guard = ClusterGuard::up(&fakes.toolbox(), &opts, &Timeouts::default()).expect("up");
    guard.finish().expect("kept");
    assert!(fakes.cluster_exists("kept"));
    assert!(!fakes.lines().iter().any(|l| l.starts_with("kind delete")));
    assert!(
        fakes
            .progress()
            .iter()
            .any(|l| l.contains("kind delete cluster --name kept")),
        "{:?}",
        fakes.progress()
    );
}

#[test]
fn kind_images_through_fake_kind_loads_every_archive_in_name_order() {
    let fakes = Fakes::new();
    let images = fakes.path("images");
    std::fs::create_dir_all(&images).expect("dir");
    for file in ["b-istio-proxyv2.tar", "a-istio-pilot.tar", "notes.txt"] {
        std::fs::write(images.join(file), "archive").expect("write");
    }
    let mut opts = options(&fakes, "airgap");
    opts.images = Some(images.clone());
    let guard = ClusterGuard::up(&fakes.toolbox(), &opts, &Timeouts::default()).expect("up");
    guard.finish().expect("deleted");
    let loads: Vec<String> = fakes
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("kind load"))
        .collect();
    assert_eq!(
        loads,
        vec![
            format!(
                "kind load image-archive {}/a-istio-pilot.tar --name airgap",
                display(&images)
            ),
            format!(
                "kind load image-archive {}/b-istio-proxyv2.tar --name airgap",
                display(&images)
            ),
        ]
    );
}

#[test]
fn kind_images_through_fake_kind_without_archives_fails_and_still_deletes() {
    let fakes = Fakes::new();
    let images = fakes.path("empty");
    std::fs::create_dir_all(&images).expect("dir");
    let mut opts = options(&fakes, "noimages");
    opts.images = Some(images);
    let err =
        ClusterGuard::up(&fakes.toolbox(), &opts, &Timeouts::default()).expect_err("no archives");
    assert!(
        err.to_string().contains("holds no .tar image archives"),
        "{err}"
    );
    assert_eq!(fakes.lines().last(), Some(&delete_line(&fakes, "noimages")));
    assert!(!fakes.cluster_exists("noimages"));
}

#[test]
fn kind_create_failure_through_fake_kind_is_reported_with_kinds_stderr() {
    let fakes = Fakes::new();
    fakes.rule(
        "kind create cluster *",
        1,
        "",
        "ERROR: failed to create cluster: failed to ensure docker network: command \"docker network ls\" failed\n",
    );
    let err = ClusterGuard::up(
        &fakes.toolbox(),
        &options(&fakes, "broken"),
        &Timeouts::default(),
    )
    .expect_err("create fails");
    let text = err.to_string();
    assert!(text.contains("kind create cluster --name broken"), "{text}");
    assert!(text.contains("failed to ensure docker network"), "{text}");
    // Whatever kind left behind is deleted.
    assert_eq!(fakes.lines().last(), Some(&delete_line(&fakes, "broken")));
}

/// The child half of the Ctrl-C test: creates a cluster through the fakes named in the
/// environment, says READY, and waits to be interrupted. Does nothing in a normal test run.
#[test]
fn interrupted_child_process() {
    let Some(bin) = std::env::var_os("MESHPROOF_TEST_CHILD_BIN") else {
        return;
    };
    let var = |k: &str| std::env::var_os(k).unwrap_or_default();
    let tools = Toolbox::with_search_path(vec![PathBuf::from(bin)])
        .env("MESHPROOF_FAKE_LOG", var("MESHPROOF_FAKE_LOG"))
        .env("MESHPROOF_FAKE_STATE", var("MESHPROOF_FAKE_STATE"))
        .build();
    let options = KindOptions {
        name: "interrupted".into(),
        config: kind_config(),
        reuse: false,
        keep: false,
        images: None,
        workdir: PathBuf::from(var("MESHPROOF_TEST_CHILD_WORKDIR")),
    };
    let _guard = ClusterGuard::up(&tools, &options, &Timeouts::default()).expect("up");
    println!("READY");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("not interrupted within 60 s");
}

#[test]
fn kind_interrupt_through_fake_kind_deletes_the_cluster_and_exits_130() {
    let fakes = Fakes::new();
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "interrupted_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("MESHPROOF_TEST_CHILD_BIN", &fakes.bin)
        .env("MESHPROOF_FAKE_LOG", &fakes.log)
        .env("MESHPROOF_FAKE_STATE", fakes.path("state"))
        .env("MESHPROOF_TEST_CHILD_WORKDIR", &fakes.workdir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("child starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if line.contains("READY") {
            ready = true;
            break;
        }
    }
    assert!(ready, "the child never created its cluster");
    assert!(fakes.cluster_exists("interrupted"));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "child ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
    }
    assert_eq!(exit.code(), Some(130), "stderr: {stderr}");
    assert!(
        stderr.contains("deleting kind cluster interrupted"),
        "{stderr}"
    );
    assert_eq!(
        fakes.lines().last(),
        Some(&delete_line(&fakes, "interrupted"))
    );
    assert!(!fakes.cluster_exists("interrupted"));
}

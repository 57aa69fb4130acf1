//! The official OCI distribution-spec conformance suites (prebuilt beside the repository in
//! `../shared/tools/oci-conformance/`), each against a freshly started server: any failure fails
//! the build. Outside CI, a checkout without the suites skips; in CI their absence fails.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::TestServer;

fn runner() -> Option<PathBuf> {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/oci-conformance/run.sh");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the OCI conformance suites are required in CI: {} is missing",
            p.display()
        );
    }
    None
}

/// Runs one suite and returns (passed, failed, the runner's output).
async fn run_suite(suite: &'static str) -> Option<(u64, u64, String)> {
    let run = runner()?;
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    s.repo("acme", "other", false).await;
    let reports = s.dir.path().join("reports");
    let (url, admin) = (s.url.clone(), s.admin.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg(run)
            .args([url.as_str(), "acme/app/image", "acme/other/image"])
            .env("OCI_SUITE", suite)
            .env("OCI_USERNAME", "admin")
            .env("OCI_PASSWORD", admin)
            .env("OCI_REPORT_BASE", reports)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the suite did not run:\n{text}");
    let last = text
        .lines()
        .rev()
        .find(|l| l.starts_with("conformance: "))
        .unwrap_or_else(|| panic!("no summary line:\n{text}"))
        .to_owned();
    let num = |word: &str| -> u64 {
        last.split(", ")
            .find(|p| p.ends_with(word))
            .and_then(|p| p.trim_start_matches("conformance: ").split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot read {word} from {last:?}"))
    };
    eprintln!("{suite}: {last}");
    s.stop().await;
    Some((num("passed"), num("failed"), text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oci_conformance_v1_1_1_has_no_failures() {
    if let Some((passed, failed, text)) = run_suite("v111").await {
        assert!(failed == 0 && passed >= 70, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oci_conformance_main_has_no_failures() {
    if let Some((passed, failed, text)) = run_suite("next").await {
        assert!(failed == 0 && passed >= 800, "{text}");
    }
}

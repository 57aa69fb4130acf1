//! `pfai mirror` against a real upstream: Debian's `docker-registry` (CNCF distribution 2.8)
//! started on a free port with a temp config, populated with skopeo (a multi-platform index,
//! a single image, a tag the pattern leaves out) and with raw OCI PUTs (a referrer and its
//! fallback tag `sha256-<hex>`, since distribution 2.8 has no referrers API).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{require_tool, Cli, TestServer};
use crate::registry::skopeo_ok;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data-fixtures/oci");

/// A running `docker-registry`, killed on drop.
struct Upstream {
    child: Child,
    host: String,
    root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn upstream() -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let port = free_port();
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}, delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            root.display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = Upstream {
        child,
        host: format!("127.0.0.1:{port}"),
        root,
        _dir: dir,
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http
            .get(format!("http://{}/v2/", up.host))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return up;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("docker-registry did not start");
}

/// `skopeo copy` of a fixture layout into the upstream (on the blocking pool).
async fn push_fixture(up: &Upstream, layout: &str, dest: &str) {
    let (src, dst) = (
        format!("oci:{FIXTURES}/{layout}:v1"),
        format!("docker://{}/{dest}", up.host),
    );
    tokio::task::spawn_blocking(move || {
        skopeo_ok(&["copy", "--all", "--dest-tls-verify=false", &src, &dst]);
    })
    .await
    .unwrap();
}

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

/// A blob into the upstream by the two-step upload distribution 2.8 speaks.
async fn upstream_blob(http: &reqwest::Client, up: &Upstream, name: &str, data: &[u8]) -> String {
    let d = sha(data);
    let r = http
        .post(format!("http://{}/v2/{name}/blobs/uploads/", up.host))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let url = if loc.starts_with("http") {
        loc
    } else {
        format!("http://{}{loc}", up.host)
    };
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = http
        .put(format!("{url}{sep}digest={d}"))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    d
}

async fn upstream_manifest(
    http: &reqwest::Client,
    up: &Upstream,
    name: &str,
    reference: &str,
    ct: &str,
    body: &[u8],
) {
    let r = http
        .put(format!(
            "http://{}/v2/{name}/manifests/{reference}",
            up.host
        ))
        .header("content-type", ct)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
}

/// The digest a registry answers for `name:reference` (HEAD with every manifest type).
async fn digest_at(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    reference: &str,
) -> Option<String> {
    let r = http
        .head(format!("{base}/v2/{name}/manifests/{reference}"))
        .header(
            "accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::OK {
        return None;
    }
    Some(
        r.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_owned(),
    )
}

/// Pushes an SBOM-like referrer of `subject` and the fallback tag index that lists it.
async fn push_referrer(http: &reqwest::Client, up: &Upstream, name: &str, subject: &str) -> String {
    let empty = upstream_blob(http, up, name, b"{}").await;
    let sbom = upstream_blob(http, up, name, b"{\"sbom\":\"mirror test\"}").await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.sbom.v1",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/vnd.example.sbom.v1", "digest": sbom, "size": 23}],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1}
    }))
    .unwrap();
    let md = sha(&m);
    upstream_manifest(
        http,
        up,
        name,
        &md,
        "application/vnd.oci.image.manifest.v1+json",
        &m,
    )
    .await;
    let idx = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md, "size": m.len(),
            "artifactType": "application/vnd.example.sbom.v1"
        }]
    }))
    .unwrap();
    let tag = subject.replace(':', "-");
    upstream_manifest(
        http,
        up,
        name,
        &tag,
        "application/vnd.oci.image.index.v1+json",
        &idx,
    )
    .await;
    md
}

/// `pfai mirror run ID --json`: the report and whether the command succeeded.
fn run_mirror(cli: &Cli<'_>, cwd: &Path, token: &str, id: &str) -> (Value, bool) {
    let out = cli.run(
        cwd,
        Some(token),
        &["mirror", "run", id, "-R", "acme/base", "--json"],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let report: Value = serde_json::from_str(stdout.lines().next().unwrap_or("null"))
        .unwrap_or_else(|_| {
            panic!(
                "no report: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (report, out.status.success())
}

/// Both external programs (each required in CI, see `.ci/run`).
fn tools() -> bool {
    require_tool("skopeo") & require_tool("docker-registry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_copies_matching_tags_all_platforms_and_referrers_once_and_repoints_moved_tags_unless_protected(
) {
    if !tools() {
        return;
    }
    let up = upstream().await;
    let http = reqwest::Client::new();
    let name = "lib/app";
    push_fixture(&up, "layout-multi", "lib/app:v1").await;
    push_fixture(&up, "layout-single", "lib/app:v2").await;
    push_fixture(&up, "layout-single", "lib/app:dev").await;
    let upbase = format!("http://{}", up.host);
    let v1 = digest_at(&http, &upbase, name, "v1").await.unwrap();
    let v2 = digest_at(&http, &upbase, name, "v2").await.unwrap();
    let referrer = push_referrer(&http, &up, name, &v2).await;
    // A signature-like referrer of one platform of the v1 index, not of the index itself.
    let index: Value = http
        .get(format!("{upbase}/v2/{name}/manifests/v1"))
        .header("accept", "application/vnd.oci.image.index.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let platform = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let child_referrer = push_referrer(&http, &up, name, &platform).await;

    let s = TestServer::start().await;
    s.repo("acme", "base", false).await;
    let cli = Cli::new(&s);
    let cwd = s.dir.path().to_owned();
    let out = cli.ok(
        &cwd,
        &[
            "mirror",
            "add",
            &format!("{upbase}/{name}"),
            "--to",
            "acme/base/app",
            "--tags",
            "v*",
        ],
    );
    assert!(out.contains("mirror 1 added"), "{out}");

    // First run: v1 (an index and its two platforms) with the referrer of one platform, v2
    // and its referrer; not `dev`.
    let (r, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(ok, "{r}");
    assert_eq!(r["tagsCreated"], json!(["v1", "v2"]), "{r}");
    assert_eq!(r["manifestsCopied"], 6, "{r}");
    assert_eq!(r["referrersCopied"], 2, "{r}");
    assert!(r["blobsCopied"].as_u64().unwrap() >= 4, "{r}");
    assert!(r["bytesCopied"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["error"], Value::Null, "{r}");
    let here = s.url.clone();
    let img = "acme/base/app";
    assert_eq!(digest_at(&http, &here, img, "v1").await, Some(v1.clone()));
    assert_eq!(digest_at(&http, &here, img, "v2").await, Some(v2.clone()));
    assert_eq!(digest_at(&http, &here, img, "dev").await, None);
    let (st, refs) = s
        .call(
            Method::GET,
            &format!("/v2/{img}/referrers/{v2}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(refs["manifests"][0]["digest"], referrer, "{refs}");
    let (st, refs) = s
        .call(
            Method::GET,
            &format!("/v2/{img}/referrers/{platform}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(refs["manifests"][0]["digest"], child_referrer, "{refs}");

    // Second run: nothing to copy.
    let (r, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(ok, "{r}");
    assert_eq!(r["tagsUnchanged"], json!(["v1", "v2"]), "{r}");
    assert_eq!(r["tagsCreated"], json!([]), "{r}");
    assert_eq!(r["manifestsCopied"], 0, "{r}");
    assert_eq!(r["blobsCopied"], 0, "{r}");

    // Upstream moves v1 (to the single image) and v2 (to the index); v2 is protected here.
    let (st, rule) = s
        .post(
            "/api/v1/forge/acme/base/tag-protections",
            Some(&s.admin),
            json!({"pattern": "v2", "target": "registry"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    push_fixture(&up, "layout-single", "lib/app:v1").await;
    push_fixture(&up, "layout-multi", "lib/app:v2").await;
    let (r, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(ok, "{r}");
    assert_eq!(r["tagsMoved"], json!(["v1"]), "{r}");
    assert_eq!(r["tagsProtected"], json!(["v2"]), "{r}");
    assert_eq!(
        r["blobsCopied"], 0,
        "the single image's blobs were here: {r}"
    );
    assert_eq!(digest_at(&http, &here, img, "v1").await, Some(v2.clone()));
    assert_eq!(digest_at(&http, &here, img, "v2").await, Some(v2.clone()));

    // The list never shows credentials; skopeo pulls the mirrored index from pfai.
    let list = cli.ok(&cwd, &["mirror", "list", "-R", "acme/base", "--json"]);
    assert!(!list.contains("password\""), "{list}");
    assert!(list.contains("\"lastRun\""), "{list}");
    let (host, out_dir) = (
        s.url.trim_start_matches("http://").to_owned(),
        s.dir.path().join("pulled"),
    );
    tokio::task::spawn_blocking(move || {
        let dest = format!("oci:{}:v1", out_dir.display());
        skopeo_ok(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &format!("docker://{host}/acme/base/app:v1"),
            &dest,
        ]);
    })
    .await
    .unwrap();

    // Remove: gone from the list, what it copied stays.
    cli.ok(&cwd, &["mirror", "remove", "1", "-R", "acme/base"]);
    let list = cli.ok(&cwd, &["mirror", "list", "-R", "acme/base"]);
    assert!(list.contains("no mirrors"), "{list}");
    assert_eq!(digest_at(&http, &here, img, "v1").await, Some(v2));
}

/// The blob file distribution keeps for `digest`.
fn blob_file(root: &Path, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join(format!(
        "docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_run_stopped_by_the_upstream_midway_is_finished_by_the_next_run_without_recopying() {
    if !tools() {
        return;
    }
    let up = upstream().await;
    let http = reqwest::Client::new();
    push_fixture(&up, "layout-multi", "lib/app:v1").await;
    let upbase = format!("http://{}", up.host);
    // The last layer of the index's last platform goes missing upstream.
    let accept =
        "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
    let idx: Value = http
        .get(format!("{upbase}/v2/lib/app/manifests/v1"))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = idx["manifests"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let m: Value = http
        .get(format!("{upbase}/v2/lib/app/manifests/{last}"))
        .header("accept", accept)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let layer = m["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let file = blob_file(&up.root, &layer);
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();

    let s = TestServer::start().await;
    s.repo("acme", "base", false).await;
    let cli = Cli::new(&s);
    let cwd = s.dir.path().to_owned();
    // Credentials given in a file are stored but never shown.
    let creds = s.dir.path().join("creds");
    std::fs::write(&creds, "mirror:s3cret-upstream\n").unwrap();
    cli.ok(
        &cwd,
        &[
            "mirror",
            "add",
            &format!("{upbase}/lib/app"),
            "--to",
            "acme/base/app",
            "--creds-file",
            creds.to_str().unwrap(),
        ],
    );
    let (r1, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(!ok, "the run must fail while a blob is missing: {r1}");
    assert!(r1["error"].as_str().unwrap().contains(&layer), "{r1}");
    assert_eq!(r1["tagsCreated"], json!([]), "{r1}");
    let copied_first = r1["blobsCopied"].as_u64().unwrap();
    assert!(copied_first >= 1, "{r1}");
    assert_eq!(
        digest_at(&http, &s.url, "acme/base/app", "v1").await,
        None,
        "no tag before its tree is complete"
    );

    std::fs::rename(&aside, &file).unwrap();
    let (r2, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(ok, "{r2}");
    assert_eq!(r2["tagsCreated"], json!(["v1"]), "{r2}");
    // The first platform (complete in the first run) is not fetched again; of the last
    // platform only the blob that was missing is downloaded.
    assert_eq!(r2["manifestsCopied"], 2, "{r1} {r2}");
    assert_eq!(r2["blobsCopied"], 1, "{r1} {r2}");
    let (r3, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(ok, "{r3}");
    assert_eq!(r3["tagsUnchanged"], json!(["v1"]), "{r3}");
    assert_eq!(r3["blobsCopied"], 0, "{r3}");
    let v1 = digest_at(&http, &upbase, "lib/app", "v1").await;
    assert_eq!(digest_at(&http, &s.url, "acme/base/app", "v1").await, v1);

    let list = cli.ok(&cwd, &["mirror", "list", "-R", "acme/base", "--json"]);
    assert!(!list.contains("s3cret-upstream"), "{list}");
    assert!(
        list.contains("\"hasPassword\": true") || list.contains("\"hasPassword\":true"),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_from_a_private_upstream_sends_the_creds_file_only_when_challenged_and_is_refused_without(
) {
    // The upstream is another pfai, whose /v2/ answers 401 with a Basic challenge.
    let up = TestServer::start().await;
    up.repo("corp", "tools", true).await;
    let remote = crate::harness::Remote {
        url: up.url.clone(),
        token: up.admin.clone(),
    };
    let (_, digest) = remote
        .push_image("corp/tools/cli", "1.0", b"private layer bytes")
        .await;

    let s = TestServer::start().await;
    s.repo("acme", "base", false).await;
    let cli = Cli::new(&s);
    let cwd = s.dir.path().to_owned();
    let upstream = format!("{}/corp/tools/cli", up.url);
    cli.ok(
        &cwd,
        &["mirror", "add", &upstream, "--to", "acme/base/anon"],
    );
    let creds = s.dir.path().join("creds");
    std::fs::write(&creds, format!("x:{}\n", up.admin)).unwrap();
    cli.ok(
        &cwd,
        &[
            "mirror",
            "add",
            &upstream,
            "--to",
            "acme/base/cli",
            "--creds-file",
            creds.to_str().unwrap(),
        ],
    );
    let (r, ok) = run_mirror(&cli, &cwd, &s.admin, "1");
    assert!(!ok, "{r}");
    assert!(r["error"].as_str().unwrap().contains("credentials"), "{r}");
    let (r, ok) = run_mirror(&cli, &cwd, &s.admin, "2");
    assert!(ok, "{r}");
    assert_eq!(r["tagsCreated"], json!(["1.0"]), "{r}");
    let http = reqwest::Client::new();
    assert_eq!(
        digest_at(&http, &s.url, "acme/base/cli", "1.0").await,
        Some(digest)
    );
    let list = cli.ok(&cwd, &["mirror", "list", "-R", "acme/base", "--json"]);
    assert!(
        !list.contains(&up.admin),
        "the upstream token leaked: {list}"
    );

    // Only repository admins manage mirrors; a reader gets 404/403, never the list.
    let reader = s.user("reader").await;
    let (st, _) = s
        .get("/api/v1/forge/acme/base/mirrors", Some(&reader))
        .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    let (st, _) = s
        .post(
            "/api/v1/forge/acme/base/mirrors/2/run",
            Some(&reader),
            json!(null),
        )
        .await;
    assert!(
        st == StatusCode::FORBIDDEN || st == StatusCode::NOT_FOUND,
        "{st}"
    );
    // A target outside the repository is refused.
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/base/mirrors",
            Some(&s.admin),
            json!({"upstream": upstream, "image": "other/repo/x"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn periodic_mirror_runs_by_itself_without_a_client() {
    let up = TestServer::start().await;
    up.repo("corp", "tools", false).await;
    let remote = crate::harness::Remote {
        url: up.url.clone(),
        token: up.admin.clone(),
    };
    let (_, digest) = remote
        .push_image("corp/tools/cli", "2.0", b"periodic")
        .await;
    let s = TestServer::start().await;
    s.repo("acme", "base", false).await;
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/base/mirrors",
            Some(&s.admin),
            json!({"upstream": format!("{}/corp/tools/cli", up.url), "image": "acme/base/cli", "everySeconds": 60}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(v.get("password").is_none(), "{v}");
    // The server looks for due mirrors every 30 s; a new one is due at once.
    let http = reqwest::Client::new();
    // The tag is pointed before the run's report is stored: wait for both.
    for _ in 0..90 {
        if digest_at(&http, &s.url, "acme/base/cli", "2.0").await == Some(digest.clone()) {
            let (_, list) = s
                .get("/api/v1/forge/acme/base/mirrors", Some(&s.admin))
                .await;
            if !list[0]["lastRun"].is_null() {
                assert_eq!(list[0]["lastRun"]["tagsCreated"], json!(["2.0"]), "{list}");
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    panic!("the periodic mirror did not run within 90 s");
}

//! Air-gap bundles end to end: a repository with commits, tags, a tag rule, releases with
//! assets, a multi-platform image with a referrer and a BLAKE3 image on server A, exported with
//! the real `pfai` binary, imported into a fresh server B and compared; a second import, an
//! incremental export, damaged files, a protected tag that differs, `git clone` of the bundle's
//! git bundle and `skopeo` reading the file as an OCI layout.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, require_tool, Cli, TestServer};
use crate::registry::skopeo_ok;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn digest_of(alg: &str, data: &[u8]) -> String {
    match alg {
        "blake3" => format!("blake3:{}", blake3::hash(data).to_hex()),
        _ => pfai::ids::Digest::sha256_of(data).to_string(),
    }
}

async fn push_blob(s: &TestServer, name: &str, alg: &str, data: &[u8]) -> String {
    let d = digest_of(alg, data);
    let r = s
        .req(
            Method::POST,
            &format!("/v2/{name}/blobs/uploads/?digest={d}"),
            Some(&s.admin),
        )
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

async fn put_manifest(s: &TestServer, name: &str, reference: &str, ct: &str, body: &[u8]) {
    let r = s
        .req(
            Method::PUT,
            &format!("/v2/{name}/manifests/{reference}"),
            Some(&s.admin),
        )
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

/// An image manifest for one platform; returns (bytes, sha256 digest).
async fn push_platform(
    s: &TestServer,
    name: &str,
    alg: &str,
    arch: &str,
    layer: &[u8],
) -> (Vec<u8>, String) {
    let config = format!(
        r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
    );
    let cd = push_blob(s, name, alg, config.as_bytes()).await;
    let ld = push_blob(s, name, alg, layer).await;
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}]
    }))
    .unwrap();
    let d = digest_of("sha256", &m);
    put_manifest(s, name, &d, OCI_MANIFEST, &m).await;
    (m, d)
}

/// What one source server holds, to compare a target against.
struct Source {
    s: TestServer,
    wc: PathBuf,
    work: tempfile::TempDir,
}

fn tar_layer(seed: &str) -> Vec<u8> {
    // Any bytes do for the registry; a real tar keeps skopeo's layer handling honest.
    let mut b = tar::Builder::new(Vec::new());
    let data = format!("file of {seed}\n").into_bytes();
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, format!("{seed}.txt"), data.as_slice())
        .unwrap();
    b.into_inner().unwrap()
}

/// Server A: acme/app with two commits on main, tags v0.9 and v1 (annotated), a `v*` rule,
/// releases v0.9 (prerelease), v1 (Latest, two assets) and a draft; image acme/app/img:v1 (an
/// index of two platforms with an SBOM referrer) and acme/app/b3:v1 with BLAKE3 blobs.
async fn source() -> Source {
    let s = TestServer::start().await;
    let work = tempfile::tempdir().unwrap();
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["tag", "v0.9"]);
    std::fs::write(wc.join("main.c"), "int main(){return 0;}\n").unwrap();
    git_ok(&wc, &["add", "main.c"]);
    git_ok(&wc, &["commit", "-q", "-m", "code"]);
    git_ok(&wc, &["tag", "-a", "v1", "-m", "version one"]);
    git_ok(&wc, &["push", "-q", "origin", "main", "--tags"]);
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&s.admin),
            json!({"pattern": "v*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for (tag, pre, body) in [
        ("v0.9", true, "early"),
        ("v1", false, "## Notes\n\nthe first one"),
    ] {
        let (st, v) = s
            .post(
                "/api/v1/forge/acme/app/releases",
                Some(&s.admin),
                json!({"tagName": tag, "name": format!("Release {tag}"), "body": body, "prerelease": pre}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": "v2-draft", "name": "next", "body": "wip", "draft": true, "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for (name, data) in [
        ("app-linux.bin", b"linux binary bytes".to_vec()),
        ("app.txt", vec![b'x'; 300_000]),
    ] {
        let (st, v) = s.upload_asset("acme/app", "v1", name, data, &s.admin).await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (_, amd) = push_platform(&s, "acme/app/img", "sha256", "amd64", &tar_layer("amd")).await;
    let (_, arm) = push_platform(&s, "acme/app/img", "sha256", "arm64", &tar_layer("arm")).await;
    let size = |d: &str, m: &[u8]| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": m.len()});
    let amd_m = s_manifest(&s, "acme/app/img", &amd).await;
    let arm_m = s_manifest(&s, "acme/app/img", &arm).await;
    let mut a = size(&amd, &amd_m);
    a["platform"] = json!({"architecture": "amd64", "os": "linux"});
    let mut b = size(&arm, &arm_m);
    b["platform"] = json!({"architecture": "arm64", "os": "linux"});
    let index = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [a, b]}),
    )
    .unwrap();
    put_manifest(&s, "acme/app/img", "v1", OCI_INDEX, &index).await;
    // An SBOM-like referrer of the index.
    let sbom = b"{\"sbom\":true}";
    let sd = push_blob(&s, "acme/app/img", "sha256", sbom).await;
    let empty = push_blob(&s, "acme/app/img", "sha256", b"{}").await;
    let referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sd, "size": sbom.len()}],
        "subject": {"mediaType": OCI_INDEX, "digest": digest_of("sha256", &index), "size": index.len()}
    }))
    .unwrap();
    put_manifest(
        &s,
        "acme/app/img",
        &digest_of("sha256", &referrer),
        OCI_MANIFEST,
        &referrer,
    )
    .await;
    let (b3m, _) = push_platform(&s, "acme/app/b3", "blake3", "amd64", &tar_layer("b3")).await;
    put_manifest(&s, "acme/app/b3", "v1", OCI_MANIFEST, &b3m).await;
    Source { s, wc, work }
}

async fn s_manifest(s: &TestServer, name: &str, reference: &str) -> Vec<u8> {
    let r = s
        .req(
            Method::GET,
            &format!("/v2/{name}/manifests/{reference}"),
            Some(&s.admin),
        )
        .header("accept", format!("{OCI_MANIFEST}, {OCI_INDEX}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{name}@{reference}");
    r.bytes().await.unwrap().to_vec()
}

/// Every ref of a repository as `git ls-remote` sees it.
fn refs(s: &TestServer, repo: &str) -> BTreeMap<String, String> {
    let out = std::process::Command::new("git")
        .args(["ls-remote", &s.git_url(repo, Some(&s.admin))])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, n)| *n != "HEAD")
        .map(|(o, n)| (n.to_owned(), o.to_owned()))
        .collect()
}

/// The releases of a repository less what a server assigns (ids, URLs, counters), with each
/// asset's SHA-256 read from its download.
async fn releases(s: &TestServer, repo: &str) -> Vec<Value> {
    let (st, v) = s
        .get(&format!("/api/v1/forge/{repo}/releases"), Some(&s.admin))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let mut out = Vec::new();
    for r in v.as_array().unwrap() {
        let mut assets = Vec::new();
        for a in r["assets"].as_array().unwrap() {
            let url = a["downloadUrl"].as_str().unwrap().to_owned();
            let bytes = s
                .http
                .get(&url)
                .header("accept", "application/octet-stream")
                .bearer_auth(&s.admin)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assets.push(json!({
                "name": a["name"], "label": a["label"], "contentType": a["contentType"],
                "size": a["size"], "sha256": digest_of("sha256", &bytes),
            }));
        }
        out.push(json!({
            "tag": r["tagName"], "name": r["name"], "body": r["body"], "draft": r["draft"],
            "prerelease": r["prerelease"], "created": r["createdAt"], "published": r["publishedAt"],
            "target": r["targetCommit"], "tagCommit": r["tagCommit"], "latest": r["latest"],
            "author": r["author"]["username"], "assets": assets,
        }));
    }
    out
}

/// The tar's entry names in order, and each blob's data offset and size.
fn entries(file: &Path) -> Vec<(String, u64, u64)> {
    let mut ar = tar::Archive::new(std::fs::File::open(file).unwrap());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            (p, e.raw_file_position(), e.size())
        })
        .collect()
}

fn read_entry(file: &Path, name: &str) -> Vec<u8> {
    let mut ar = tar::Archive::new(std::fs::File::open(file).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if String::from_utf8_lossy(&e.path_bytes()) == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in {}", file.display());
}

fn blob_entry(d: &str) -> String {
    let (alg, hex) = d.split_once(':').unwrap();
    format!("blobs/{alg}/{hex}")
}

/// The index.json descriptors of one kind.
fn index_of(file: &Path, kind: &str) -> Vec<Value> {
    let index: Value = serde_json::from_slice(&read_entry(file, "index.json")).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["annotations"]["vnd.pfai.kind"] == kind)
        .cloned()
        .collect()
}

async fn fresh_target() -> TestServer {
    let b = TestServer::start().await;
    let (st, v) = b
        .post("/api/v1/orgs", Some(&b.admin), json!({"name": "acme"}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    b
}

fn export(a: &TestServer, dir: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["bundle", "export", "--repo", "acme/app", "-o"];
    let o = out.to_str().unwrap();
    args.push(o);
    args.extend_from_slice(extra);
    Cli::new(a).ok(dir, &args);
    assert!(!PathBuf::from(format!("{o}.part")).exists());
}

/// Report lines with this outcome.
fn count(report: &str, outcome: &str) -> usize {
    report
        .lines()
        .filter(|l| l.split_whitespace().next() == Some(outcome))
        .count()
}

fn import(b: &TestServer, dir: &Path, file: &Path) -> String {
    Cli::new(b).ok(dir, &["bundle", "import", file.to_str().unwrap()])
}

async fn raw_import(b: &TestServer, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = b
        .req(Method::POST, "/api/v1/bundles/import", Some(&b.admin))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn assert_same_images(a: &TestServer, b: &TestServer) {
    for (name, tag) in [("acme/app/img", "v1"), ("acme/app/b3", "v1")] {
        let ma = s_manifest(a, name, tag).await;
        let mb = s_manifest(b, name, tag).await;
        assert_eq!(ma, mb, "{name}:{tag} differs");
    }
    // The referrer and every platform came along, byte for byte.
    let index = s_manifest(a, "acme/app/img", "v1").await;
    let d = digest_of("sha256", &index);
    let (_, ra) = a
        .get(&format!("/v2/acme/app/img/referrers/{d}"), Some(&a.admin))
        .await;
    let (_, rb) = b
        .get(&format!("/v2/acme/app/img/referrers/{d}"), Some(&b.admin))
        .await;
    assert_eq!(ra["manifests"].as_array().map(Vec::len), Some(1), "{ra}");
    assert_eq!(ra, rb);
    let v: Value = serde_json::from_slice(&index).unwrap();
    for m in v["manifests"].as_array().unwrap() {
        let d = m["digest"].as_str().unwrap();
        assert_eq!(
            s_manifest(a, "acme/app/img", d).await,
            s_manifest(b, "acme/app/img", d).await
        );
    }
    // The BLAKE3 image's blobs keep their algorithm.
    let b3: Value = serde_json::from_slice(&s_manifest(b, "acme/app/b3", "v1").await).unwrap();
    let layer = b3["layers"][0]["digest"].as_str().unwrap();
    assert!(layer.starts_with("blake3:"), "{b3}");
    let r = b
        .req(
            Method::GET,
            &format!("/v2/acme/app/b3/blobs/{layer}"),
            Some(&b.admin),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(digest_of("blake3", &r.bytes().await.unwrap()), layer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_moves_git_releases_and_images_to_a_fresh_server_and_a_second_import_changes_nothing(
) {
    let src = source().await;
    let a = &src.s;
    let file = src.work.path().join("acme.tar");
    export(a, src.work.path(), &file, &[]);

    // The layout: oci-layout first, index.json last, blobs content-addressed.
    let names: Vec<String> = entries(&file).into_iter().map(|e| e.0).collect();
    assert_eq!(names.first().map(String::as_str), Some("oci-layout"));
    assert_eq!(names.last().map(String::as_str), Some("index.json"));
    assert!(
        names.iter().any(|n| n.starts_with("blobs/blake3/")),
        "{names:?}"
    );
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a blob written twice");
    // The draft travels (the admin can read it); every release has a manifest.
    assert_eq!(index_of(&file, "release").len(), 3);

    let b = fresh_target().await;
    let out = import(&b, src.work.path(), &file);
    assert!(out.contains("created   repo    acme/app"), "{out}");
    assert_eq!(count(&out, "refused"), 0, "{out}");

    assert_eq!(refs(a, "acme/app"), refs(&b, "acme/app"));
    assert_eq!(
        releases(a, "acme/app").await,
        releases(&b, "acme/app").await
    );
    let (_, la) = a
        .get("/api/v1/forge/acme/app/releases/latest", Some(&a.admin))
        .await;
    let (_, lb) = b
        .get("/api/v1/forge/acme/app/releases/latest", Some(&b.admin))
        .await;
    assert_eq!(la["tagName"], "v1", "{la}");
    assert_eq!(lb["tagName"], "v1", "{lb}");
    let (_, rules) = b
        .get("/api/v1/forge/acme/app/tag-protections", Some(&b.admin))
        .await;
    assert_eq!(rules[0]["pattern"], "v*", "{rules}");
    assert_same_images(a, &b).await;
    // The imported repository serves a clone like any other.
    let clone = src.work.path().join("clone-b");
    git_ok(
        src.work.path(),
        &[
            "clone",
            "-q",
            &b.git_url("acme/app", Some(&b.admin)),
            clone.to_str().unwrap(),
        ],
    );
    assert!(clone.join("main.c").is_file());

    // Twice: nothing changes, and the report says so item by item.
    let again = import(&b, src.work.path(), &file);
    for o in ["created", "updated", "refused"] {
        assert_eq!(count(&again, o), 0, "{again}");
    }
    assert!(count(&again, "unchanged") >= 10, "{again}");
    assert!(again.contains("unchanged release acme/app@v1"), "{again}");
    assert!(
        again.contains("unchanged image   acme/app/img:v1"),
        "{again}"
    );
    assert_eq!(
        releases(a, "acme/app").await,
        releases(&b, "acme/app").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_incremental_bundle_carries_only_what_the_earlier_one_lacks_and_applies_on_top() {
    let src = source().await;
    let a = &src.s;
    let first = src.work.path().join("first.tar");
    export(a, src.work.path(), &first, &[]);
    let b = fresh_target().await;
    import(&b, src.work.path(), &first);

    // New on A: a commit and tag v2, its release with an asset, a new image tag.
    std::fs::write(src.wc.join("NEWS"), "v2\n").unwrap();
    git_ok(&src.wc, &["add", "NEWS"]);
    git_ok(&src.wc, &["commit", "-q", "-m", "news"]);
    git_ok(&src.wc, &["tag", "v2"]);
    git_ok(&src.wc, &["push", "-q", "origin", "main", "--tags"]);
    let (st, v) = a
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&a.admin),
            json!({"tagName": "v2", "name": "Release v2", "body": "second"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, v) = a
        .upload_asset(
            "acme/app",
            "v2",
            "app-v2.bin",
            b"version two".to_vec(),
            &a.admin,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (m2, _) = push_platform(a, "acme/app/img", "sha256", "amd64", &tar_layer("v2")).await;
    put_manifest(a, "acme/app/img", "v2", OCI_MANIFEST, &m2).await;

    let second = src.work.path().join("second.tar");
    export(
        a,
        src.work.path(),
        &second,
        &["--since", first.to_str().unwrap()],
    );
    let old: std::collections::HashSet<String> = entries(&first).into_iter().map(|e| e.0).collect();
    let new = entries(&second);
    // Only the repository's own small documents repeat (its JSON, rules, the empty config).
    let repeated: Vec<&(String, u64, u64)> = new
        .iter()
        .filter(|e| e.0.starts_with("blobs/") && old.contains(&e.0))
        .collect();
    assert!(repeated.iter().all(|e| e.2 < 1024), "{repeated:?}");
    assert!(repeated.len() <= 3, "{repeated:?}");
    let rel: Vec<String> = index_of(&second, "release")
        .iter()
        .map(|d| {
            d["annotations"]["vnd.pfai.release.tag"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(rel, vec!["v2".to_owned()]);
    // The git bundle is incremental: prerequisites in its header.
    let repo = &index_of(&second, "repo")[0];
    let m: Value = serde_json::from_slice(&read_entry(
        &second,
        &blob_entry(repo["digest"].as_str().unwrap()),
    ))
    .unwrap();
    let git = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.pfai.git.bundle.v2")
        .expect("a git layer");
    let gb = read_entry(&second, &blob_entry(git["digest"].as_str().unwrap()));
    let header = String::from_utf8_lossy(&gb[..gb.len().min(2000)]).into_owned();
    assert!(header.lines().any(|l| l.starts_with('-')), "{header}");

    let out = import(&b, src.work.path(), &second);
    assert!(out.contains("created   release acme/app@v2"), "{out}");
    assert!(
        out.contains("created   ref     acme/app refs/tags/v2"),
        "{out}"
    );
    assert!(
        out.contains("updated   ref     acme/app refs/heads/main"),
        "{out}"
    );
    assert!(out.contains("created   image   acme/app/img:v2"), "{out}");
    assert_eq!(refs(a, "acme/app"), refs(&b, "acme/app"));
    assert_eq!(
        releases(a, "acme/app").await,
        releases(&b, "acme/app").await
    );
    assert_eq!(
        s_manifest(a, "acme/app/img", "v2").await,
        s_manifest(&b, "acme/app/img", "v2").await
    );

    // The first (older) bundle again: like a push without --force, it must not rewind main.
    let main_now = refs(&b, "acme/app")["refs/heads/main"].clone();
    let out = Cli::new(&b).run(
        src.work.path(),
        Some(&b.admin),
        &["bundle", "import", first.to_str().unwrap()],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.lines().any(|l| l.starts_with("refused")
            && l.contains("refs/heads/main")
            && l.contains("fast-forward")),
        "{stdout}"
    );
    assert_eq!(refs(&b, "acme/app")["refs/heads/main"], main_now);

    // The incremental bundle alone, on a server that lacks the earlier one, is refused whole.
    let c = fresh_target().await;
    let (st, v) = raw_import(&c, std::fs::read(&second).unwrap()).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains("earlier"), "{v}");
    let (st, _) = c.get("/api/v1/forge/acme/app", Some(&c.admin)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flipped_byte_or_a_cut_file_is_refused_naming_the_item_before_anything_is_visible() {
    let src = source().await;
    // 24 MiB after the damaged blob: the server must still answer the client that sends them.
    let (st, v) = src
        .s
        .upload_asset(
            "acme/app",
            "v1",
            "big.bin",
            vec![7u8; 24 << 20],
            &src.s.admin,
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let file = src.work.path().join("acme.tar");
    export(&src.s, src.work.path(), &file, &[]);
    let bytes = std::fs::read(&file).unwrap();
    let b = fresh_target().await;

    // A flipped byte inside the 300 kB asset: refused, naming the blob.
    let (name, pos, _) = entries(&file)
        .into_iter()
        .find(|e| e.2 == 300_000)
        .expect("the asset's entry");
    let mut bad = bytes.clone();
    bad[pos as usize + 1000] ^= 0x01;
    let (st, v) = raw_import(&b, bad).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v.to_string().contains(&name), "{v}");
    assert!(v.to_string().contains("does not match its digest"), "{v}");

    let flipped = src.work.path().join("flipped.tar");
    let mut bad = bytes.clone();
    bad[pos as usize + 1000] ^= 0x01;
    std::fs::write(&flipped, bad).unwrap();
    let (_, err) = Cli::new(&b).fails(
        src.work.path(),
        Some(&b.admin),
        &["bundle", "import", flipped.to_str().unwrap()],
    );
    assert!(
        err.contains("does not match its digest") && err.contains(&name),
        "{err}"
    );

    // The same file cut in the middle of that blob, and cut before its index.
    for cut in [pos as usize + 5000, bytes.len() - 2048] {
        let (st, v) = raw_import(&b, bytes[..cut].to_vec()).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert!(v.to_string().contains("truncated"), "{v}");
    }
    // The CLI says the same and exits non-zero.
    let cut = src.work.path().join("cut.tar");
    std::fs::write(&cut, &bytes[..pos as usize + 5000]).unwrap();
    let (_, err) = Cli::new(&b).fails(
        src.work.path(),
        Some(&b.admin),
        &["bundle", "import", cut.to_str().unwrap()],
    );
    assert!(err.contains("truncated"), "{err}");

    // Nothing became visible: no repository, no image, no staged leftovers.
    let (st, _) = b.get("/api/v1/forge/acme/app", Some(&b.admin)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, cat) = b.get("/v2/_catalog", Some(&b.admin)).await;
    assert_eq!(
        cat["repositories"].as_array().map(Vec::len),
        Some(0),
        "{cat}"
    );
    let uploads = b.data_dir().join("uploads");
    let left: Vec<_> = std::fs::read_dir(&uploads)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // The undamaged file still imports.
    let out = import(&b, src.work.path(), &file);
    assert!(out.contains("created   release acme/app@v1"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_protected_tag_that_differs_on_the_target_is_reported_not_moved() {
    let src = source().await;
    let file = src.work.path().join("acme.tar");
    export(&src.s, src.work.path(), &file, &[]);

    // B already has acme/app with its own v1 (another commit), protected by `v*`.
    let b = fresh_target().await;
    let (st, v) = b
        .post(
            "/api/v1/forge/repos",
            Some(&b.admin),
            json!({"owner": "acme", "name": "app", "private": false}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let wc = b.checkout("acme/app", &b.admin);
    git_ok(&wc, &["tag", "v1"]);
    git_ok(&wc, &["push", "-q", "origin", "--tags"]);
    let (st, v) = b
        .post(
            "/api/v1/forge/acme/app/tag-protections",
            Some(&b.admin),
            json!({"pattern": "v*"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let before = refs(&b, "acme/app")["refs/tags/v1"].clone();

    let out = Cli::new(&b).run(
        src.work.path(),
        Some(&b.admin),
        &["bundle", "import", file.to_str().unwrap()],
        None,
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("refused")
            && l.contains("refs/tags/v1")
            && l.contains("protected")),
        "{stdout}"
    );
    assert_eq!(refs(&b, "acme/app")["refs/tags/v1"], before);
    // The rest went in: the other tag and the images.
    assert_eq!(
        refs(&b, "acme/app")["refs/tags/v0.9"],
        refs(&src.s, "acme/app")["refs/tags/v0.9"]
    );
    assert_same_images(&src.s, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn git_clones_the_bundled_repository_and_skopeo_reads_its_images() {
    let src = source().await;
    let file = src.work.path().join("acme.tar");
    export(&src.s, src.work.path(), &file, &[]);

    let repo = &index_of(&file, "repo")[0];
    let m: Value = serde_json::from_slice(&read_entry(
        &file,
        &blob_entry(repo["digest"].as_str().unwrap()),
    ))
    .unwrap();
    let git = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["mediaType"] == "application/vnd.pfai.git.bundle.v2")
        .expect("a git layer");
    let gb = src.work.path().join("app.bundle");
    std::fs::write(
        &gb,
        read_entry(&file, &blob_entry(git["digest"].as_str().unwrap())),
    )
    .unwrap();
    let clone = src.work.path().join("from-bundle");
    git_ok(
        src.work.path(),
        &["clone", "-q", gb.to_str().unwrap(), clone.to_str().unwrap()],
    );
    assert!(clone.join("main.c").is_file());
    let tags = git_ok(&clone, &["tag", "--list"]);
    assert!(tags.contains("v1") && tags.contains("v0.9"), "{tags}");

    if !require_tool("skopeo") {
        return;
    }
    let out = src.work.path().join("img-dir");
    let src_ref = format!("oci-archive:{}:acme/app/img:v1", file.display());
    skopeo_ok(&["copy", "--all", &src_ref, &format!("dir:{}", out.display())]);
    let got = std::fs::read(out.join("manifest.json")).unwrap();
    assert_eq!(got, s_manifest(&src.s, "acme/app/img", "v1").await);
    // (The BLAKE3 image is in the file too, but skopeo 1.9 knows no `blake3:` digests.)
}

/// The `pfai` binary run as a client of `url` (no saved login).
fn pfai_client(url: &str, token: &str, cwd: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pfai"))
        .args(args)
        .current_dir(cwd)
        .env("PFAI_URL", url)
        .env("PFAI_TOKEN", token)
        .env("XDG_CONFIG_HOME", cwd.join("xdg"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_import_killed_midway_finishes_on_a_rerun_without_duplicates() {
    // A: 30 releases with an asset each, so the import takes a while to apply.
    let a = TestServer::start().await;
    a.repo("acme", "app", false).await;
    let wc = a.checkout("acme/app", &a.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    for i in 0..30 {
        let tag = format!("v1.{i}");
        let (st, v) = a
            .post(
                "/api/v1/forge/acme/app/releases",
                Some(&a.admin),
                json!({"tagName": tag, "name": tag, "body": format!("release {i}"), "targetCommit": "main"}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let data = vec![i as u8; 64 << 10];
        let (st, v) = a
            .upload_asset("acme/app", &tag, &format!("app-{i}.bin"), data, &a.admin)
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (m, _) = push_platform(&a, "acme/app/img", "sha256", "amd64", &tar_layer("k")).await;
    put_manifest(&a, "acme/app/img", "v1", OCI_MANIFEST, &m).await;
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("acme.tar");
    export(&a, work.path(), &file, &[]);

    // B: the real binary, killed with -9 once the import has begun to apply.
    let bdir = tempfile::tempdir().unwrap();
    let mut b = crate::binary::start(bdir.path());
    let token = std::fs::read_to_string(bdir.path().join("data/initial-admin-token"))
        .unwrap()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/api/v1/orgs", b.url))
        .bearer_auth(&token)
        .json(&json!({"name": "acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (url, tok, cwd, f) = (
        b.url.clone(),
        token.clone(),
        work.path().to_owned(),
        file.to_str().unwrap().to_owned(),
    );
    let client =
        std::thread::spawn(move || pfai_client(&url, &tok, &cwd, &["bundle", "import", &f]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    // Killed once the first releases are in: some done, some not (or all, on a fast machine).
    loop {
        let r = http
            .get(format!("{}/api/v1/forge/acme/app/releases", b.url))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let n = if r.status() == StatusCode::OK {
            r.json::<Value>()
                .await
                .ok()
                .and_then(|v| v.as_array().map(Vec::len))
                .unwrap_or(0)
        } else {
            0
        };
        if n >= 3 || client.is_finished() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the import never began"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    crate::binary::signal(&b.child, "KILL");
    b.child.wait().unwrap();
    let first = client.join().unwrap();
    let (_, rels) = a
        .get("/api/v1/forge/acme/app/releases?limit=100", Some(&a.admin))
        .await;
    assert_eq!(rels.as_array().map(Vec::len), Some(30));

    // Restarted on the same data: the re-run finishes the job, nothing twice.
    let mut b = crate::binary::start(bdir.path());
    let before: Value = http
        .get(format!(
            "{}/api/v1/forge/acme/app/releases?limit=100",
            b.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(Value::Null);
    eprintln!(
        "killed with {:?} of 30 releases applied",
        before.as_array().map(Vec::len)
    );
    let out = pfai_client(
        &b.url,
        &token,
        work.path(),
        &["bundle", "import", file.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "first run: {}\nre-run: {stdout}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count(&stdout, "refused"), 0, "{stdout}");
    let (_, want) = a
        .get("/api/v1/forge/acme/app/releases?limit=100", Some(&a.admin))
        .await;
    let got: Value = http
        .get(format!(
            "{}/api/v1/forge/acme/app/releases?limit=100",
            b.url
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let summary = |v: &Value| -> Vec<(String, Vec<String>)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let assets = r["assets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| format!("{} {}", a["name"], a["sha256"]))
                    .collect();
                (r["tagName"].as_str().unwrap().to_owned(), assets)
            })
            .collect()
    };
    assert_eq!(summary(&got), summary(&want));
    let r = http
        .get(format!("{}/v2/acme/app/img/manifests/v1", b.url))
        .basic_auth("x", Some(&token))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().to_vec(), m);
    crate::binary::signal(&b.child, "TERM");
    b.child.wait().unwrap();
    // The killed import's scratch directory went at the restart; the re-run's after it.
    let left: Vec<_> = std::fs::read_dir(bdir.path().join("data/uploads"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_holds_only_what_the_caller_may_read_and_only_owner_admins_may_import() {
    let src = source().await;
    let a = &src.s;
    let reader = a.user("reader").await;
    a.repo("acme", "secret", true).await;

    // A reader of acme/app gets its published releases, not the draft.
    let file = src.work.path().join("reader.tar");
    let cli = Cli::new(a);
    let out = cli.run(
        src.work.path(),
        Some(&reader),
        &[
            "bundle",
            "export",
            "--repo",
            "acme/app",
            "-o",
            file.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags: Vec<String> = index_of(&file, "release")
        .iter()
        .map(|d| {
            d["annotations"]["vnd.pfai.release.tag"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(tags.len(), 2, "{tags:?}");
    assert!(!tags.contains(&"v2-draft".to_owned()), "{tags:?}");

    // A private repository the caller cannot see is not found, and no file is left.
    let secret = src.work.path().join("secret.tar");
    let (_, err) = cli.fails(
        src.work.path(),
        Some(&reader),
        &[
            "bundle",
            "export",
            "--repo",
            "acme/secret",
            "-o",
            secret.to_str().unwrap(),
        ],
    );
    assert!(err.contains("not found"), "{err}");
    assert!(!secret.exists());
    assert!(!PathBuf::from(format!("{}.part", secret.display())).exists());

    // Importing needs admin rights on the owner: refused whole, nothing created.
    let b = fresh_target().await;
    let mallory = b.user("mallory").await;
    let (_, err) = Cli::new(&b).fails(
        src.work.path(),
        Some(&mallory),
        &["bundle", "import", file.to_str().unwrap()],
    );
    assert!(err.contains("admin rights on acme"), "{err}");
    let (st, _) = b.get("/api/v1/forge/acme/app", Some(&b.admin)).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Anonymous callers are turned away before any byte is read.
    let (st, _) = raw_import_as(&b, None, std::fs::read(&file).unwrap()).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

async fn raw_import_as(b: &TestServer, token: Option<&str>, bytes: Vec<u8>) -> (StatusCode, Value) {
    let r = b
        .req(Method::POST, "/api/v1/bundles/import", token)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let st = r.status();
    (st, r.json().await.unwrap_or(Value::Null))
}

/// The README's "Air-gapped install" block, run as written: each command line with bash, the
/// lines before "carry the file across" against server A, the rest against server B.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_air_gapped_walkthrough_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("## Air-gapped install")
        .nth(1)
        .expect("the README has the section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let src = source().await;
    src.s.repo("acme", "base", false).await;
    let b = fresh_target().await;
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_pfai"))
        .parent()
        .unwrap()
        .to_owned();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut target = &src.s;
    let mut ran = 0;
    for line in block.lines() {
        if line.contains("carry the file across") {
            target = &b;
        }
        let cmd = line.split(" #").next().unwrap().trim();
        if cmd.is_empty() || cmd.starts_with('#') {
            continue;
        }
        let out = std::process::Command::new("bash")
            .args(["-c", cmd])
            .current_dir(src.work.path())
            .env("PATH", &path)
            .env("PFAI_URL", &target.url)
            .env("PFAI_TOKEN", &target.admin)
            .env("XDG_CONFIG_HOME", src.work.path().join("xdg"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert_eq!(ran, 5);
    assert_eq!(refs(&src.s, "acme/app"), refs(&b, "acme/app"));
    let (st, _) = b.get("/api/v1/forge/acme/base", Some(&b.admin)).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_that_fails_before_its_first_byte_answers_an_error_and_keeps_no_file() {
    let src = source().await;
    // An asset file vanishes from disk after its row was written (a damaged store).
    let assets = src.s.data_dir().join("assets/acme/app");
    let mut victim = None;
    for rel in std::fs::read_dir(&assets).unwrap().flatten() {
        for f in std::fs::read_dir(rel.path()).unwrap().flatten() {
            if f.file_name().to_string_lossy().ends_with("app.txt") {
                victim = Some(f.path());
            }
        }
    }
    std::fs::remove_file(victim.expect("the asset file")).unwrap();
    let err = failed_export(&src);
    assert!(
        err.contains("stopped the bundle before its first byte"),
        "{err}"
    );
    // Failing before its first byte, the export answers with an error status (a cut before
    // any header looks like an unreachable server); the server log has the cause.
    let (st, v) = src
        .s
        .post(
            "/api/v1/bundles/export",
            Some(&src.s.admin),
            json!({"repos": ["acme/app"]}),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{v}");
}

/// The same after the first chunk went out (the images' blobs are gone; the release assets
/// before them fill more than one chunk): the stream is cut, and the CLI keeps nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_export_cut_after_its_first_bytes_leaves_no_file_that_looks_complete() {
    let src = source().await;
    let blobs = src.s.data_dir().join("blobs");
    let mut gone = 0;
    for f in crate::harness::walk_files(&blobs) {
        std::fs::remove_file(f).unwrap();
        gone += 1;
    }
    assert!(gone > 0);
    // Whether the client read the answer's head before the cut depends on timing; it says
    // the server stopped the bundle either way.
    let err = failed_export(&src);
    assert!(err.contains("the server stopped the bundle"), "{err}");
}

/// `pfai bundle export` of a damaged store: it fails, leaves neither the file nor its `.part`,
/// and returns what it said.
fn failed_export(src: &Source) -> String {
    let file = src.work.path().join("failed.tar");
    let args = ["bundle", "export", "--repo", "acme/app", "-o"];
    let (_, err) = Cli::new(&src.s).fails(
        src.work.path(),
        Some(&src.s.admin),
        &[&args[..], &[file.to_str().unwrap()]].concat(),
    );
    assert!(!file.exists(), "{err}");
    assert!(
        !PathBuf::from(format!("{}.part", file.display())).exists(),
        "{err}"
    );
    err
}

/// An attestation signed by the target says what the target checked: the commit its tag points
/// at there and the importer as publisher, never a publisher or commit the file merely claims.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_imported_immutable_release_is_attested_with_the_target_commit_and_the_importer() {
    use base64::Engine as _;
    let src = source().await;
    let a = &src.s;
    // alice (a user only A has) publishes v3 on A.
    let alice = a.user("alice").await;
    a.collaborator("acme/app", "alice", "write").await;
    git_ok(&src.wc, &["tag", "v3"]);
    git_ok(&src.wc, &["push", "-q", "origin", "--tags"]);
    let (st, v) = a
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&alice),
            json!({"tagName": "v3", "name": "Release v3", "body": "by alice"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!(v["author"]["username"], "alice", "{v}");
    let file = src.work.path().join("acme.tar");
    export(a, src.work.path(), &file, &[]);

    // B turns immutable releases on for acme, then imports as its admin.
    let b = fresh_target().await;
    let (st, _) = b
        .call(
            Method::PATCH,
            "/api/v1/orgs/acme/settings",
            Some(&b.admin),
            Some(json!({"immutableReleases": true})),
        )
        .await;
    assert!(st.is_success(), "{st}");
    import(&b, src.work.path(), &file);
    let (st, rel) = b
        .get("/api/v1/forge/acme/app/releases/v3", Some(&b.admin))
        .await;
    assert_eq!(st, StatusCode::OK, "{rel}");
    assert_eq!(
        rel["author"]["username"], "admin",
        "alice is no user here: {rel}"
    );
    let (st, env) = b
        .get(
            "/api/v1/forge/acme/app/releases/v3/attestation",
            Some(&b.admin),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{env}");
    let payload = base64::engine::general_purpose::STANDARD
        .decode(env["payload"].as_str().unwrap())
        .unwrap();
    let stmt: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(stmt["predicate"]["publisher"], "admin", "{stmt}");
    assert_eq!(
        stmt["predicate"]["commit"],
        refs(&b, "acme/app")["refs/tags/v3"].as_str(),
        "{stmt}"
    );
}

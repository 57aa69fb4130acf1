//! Published releases as read-only OCI artifacts at `/v2/<owner>/<repo>/releases:<tag>`: raw OCI
//! reads (manifest, blobs with their digests, Range, tags, referrers and the attestation
//! envelope verified against the served key), visibility, determinism across requests and a
//! restart, refusals of every write, `skopeo copy` into an OCI layout and `oras pull` (the
//! Python client from PyPI) of the assets.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, oras_pull, require_oras, require_tool, TestServer};
use crate::registry::{error_code, skopeo, skopeo_ok, Oci};

const REL: &str = "/api/v1/forge/acme/app/releases";
const NAME: &str = "acme/app/releases";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

fn tarball() -> Vec<u8> {
    (0..70_000u32).map(|i| (i % 251) as u8).collect()
}

/// Uploads an asset with an explicit content type.
async fn upload(s: &TestServer, repo: &str, tag: &str, name: &str, ct: &str, data: &[u8]) {
    let part = reqwest::multipart::Part::bytes(data.to_vec())
        .file_name(name.to_owned())
        .mime_str(ct)
        .unwrap();
    let r = s
        .req(
            Method::POST,
            &format!("/api/v1/forge/{repo}/releases/{tag}/assets"),
            Some(&s.admin),
        )
        .multipart(reqwest::multipart::Form::new().part("file", part))
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

/// `acme/<repo>` with one commit pushed and immutable releases on (so published releases are
/// attested); `v1.0.0` published with two assets, `v0.9.0` published without any, `v2.0.0` a
/// draft with one asset.
async fn setup(s: &TestServer, repo: &str, private: bool) {
    s.repo("acme", repo, private).await;
    let full = format!("acme/{repo}");
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("/api/v1/forge/{full}/settings"),
            Some(&s.admin),
            Some(json!({"immutableReleases": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let wc = s.checkout(&full, &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let rel = format!("/api/v1/forge/{full}/releases");
    for (tag, draft) in [("v1.0.0", true), ("v0.9.0", false), ("v2.0.0", true)] {
        let (st, v) = s
            .post(
                &rel,
                Some(&s.admin),
                json!({"tagName": tag, "targetCommit": "main", "draft": draft, "name": format!("Release {tag}")}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    upload(
        s,
        &full,
        "v1.0.0",
        "app.tar.gz",
        "application/gzip",
        &tarball(),
    )
    .await;
    upload(
        s,
        &full,
        "v1.0.0",
        "checksums.txt",
        "text/plain; charset=utf-8",
        b"abc  app.tar.gz\n",
    )
    .await;
    upload(
        s,
        &full,
        "v2.0.0",
        "secret.bin",
        "application/octet-stream",
        b"draft",
    )
    .await;
    let (st, v) = s
        .call(
            Method::PATCH,
            &format!("{rel}/v1.0.0"),
            Some(&s.admin),
            Some(json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

async fn get(oci: &Oci<'_>, path: &str) -> reqwest::Response {
    oci.req(Method::GET, path).send().await.unwrap()
}

/// GETs a manifest; returns (bytes, Docker-Content-Digest).
async fn manifest(oci: &Oci<'_>, name: &str, reference: &str) -> (Vec<u8>, String) {
    let r = oci
        .req(Method::GET, &format!("/v2/{name}/manifests/{reference}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{reference}");
    assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
    let d = r.headers()["docker-content-digest"]
        .to_str()
        .unwrap()
        .to_owned();
    let b = r.bytes().await.unwrap().to_vec();
    assert_eq!(sha(&b), d, "the digest header is the digest of the bytes");
    (b, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_release_is_an_oci_artifact_whose_layers_are_its_assets_and_whose_attestation_verifies(
) {
    let s = TestServer::start().await;
    setup(&s, "app", false).await;
    let oci = Oci::new(&s, None);

    let (bytes, digest) = manifest(&oci, NAME, "v1.0.0").await;
    let m: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["artifactType"], "application/vnd.pfai.release.v1");
    assert_eq!(
        m["config"],
        json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": EMPTY_DIGEST, "size": 2})
    );
    let (_, rel) = s.get(&format!("{REL}/v1.0.0"), None).await;
    assert_eq!(
        m["annotations"]["org.opencontainers.image.version"],
        "v1.0.0"
    );
    assert_eq!(m["annotations"]["dev.pfai.release.name"], "Release v1.0.0");
    assert_eq!(
        m["annotations"]["org.opencontainers.image.revision"],
        rel["targetCommit"]
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.created"],
        rel["publishedAt"]
    );
    let layers = m["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2, "{m}");
    let expect = [
        ("app.tar.gz", "application/gzip", tarball()),
        ("checksums.txt", "text/plain", b"abc  app.tar.gz\n".to_vec()),
    ];
    for (layer, (name, mt, data)) in layers.iter().zip(&expect) {
        assert_eq!(
            layer["annotations"]["org.opencontainers.image.title"],
            *name
        );
        assert_eq!(layer["mediaType"], *mt);
        assert_eq!(layer["size"], data.len());
        assert_eq!(layer["digest"], sha(data));
        // The blob is the asset itself, with its digest.
        let r = get(&oci, &format!("/v2/{NAME}/blobs/{}", sha(data))).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["docker-content-digest"], sha(data).as_str());
        let body = r.bytes().await.unwrap();
        assert_eq!(sha(&body), sha(data));
        assert_eq!(&body[..], &data[..]);
    }
    // Range and HEAD on an asset blob.
    let td = sha(&tarball());
    let r = oci
        .req(Method::GET, &format!("/v2/{NAME}/blobs/{td}"))
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-1999/{}", tarball().len()).as_str()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &tarball()[1000..2000]);
    let r = oci
        .req(Method::HEAD, &format!("/v2/{NAME}/blobs/{td}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-length"],
        tarball().len().to_string().as_str()
    );
    // The config blob, and a digest that is no asset of a published release (the draft's).
    let r = get(&oci, &format!("/v2/{NAME}/blobs/{EMPTY_DIGEST}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], b"{}");
    let r = get(&oci, &format!("/v2/{NAME}/blobs/{}", sha(b"draft"))).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );

    // By digest too; HEAD gives the same digest.
    let (again, _) = manifest(&oci, NAME, &digest).await;
    assert_eq!(again, bytes);
    let r = oci
        .req(Method::HEAD, &format!("/v2/{NAME}/manifests/v1.0.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(
        r.headers()["content-length"],
        bytes.len().to_string().as_str()
    );

    // A release without assets: the empty layer.
    let (empty, _) = manifest(&oci, NAME, "v0.9.0").await;
    let e: Value = serde_json::from_slice(&empty).unwrap();
    assert_eq!(e["layers"][0]["digest"], EMPTY_DIGEST);

    // Tags: the published releases only.
    let r = get(&oci, &format!("/v2/{NAME}/tags/list")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let t: Value = r.json().await.unwrap();
    assert_eq!(
        t,
        json!({"name": NAME, "tags": ["latest", "v0.9.0", "v1.0.0"]})
    );
    let r = get(&oci, &format!("/v2/{NAME}/tags/list?n=1")).await;
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["tags"], json!(["latest"]));
    let next = &link[1..link.find('>').unwrap()];
    let t: Value = get(&oci, next).await.json().await.unwrap();
    assert_eq!(t["tags"], json!(["v0.9.0"]), "{link}");
    // `latest` is the repository's Latest release (what clients pull without a tag).
    let (latest, latest_digest) = manifest(&oci, NAME, "latest").await;
    assert_eq!((latest, latest_digest), (bytes.clone(), digest.clone()));

    // Referrers: the attestation, as an artifact manifest whose subject is the release.
    let r = get(&oci, &format!("/v2/{NAME}/referrers/{digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let idx: Value = r.json().await.unwrap();
    let refs = idx["manifests"].as_array().unwrap();
    assert_eq!(refs.len(), 1, "{idx}");
    assert_eq!(
        refs[0]["artifactType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    let ref_digest = refs[0]["digest"].as_str().unwrap().to_owned();
    let (att_bytes, _) = manifest(&oci, NAME, &ref_digest).await;
    assert_eq!(refs[0]["size"], att_bytes.len());
    let att: Value = serde_json::from_slice(&att_bytes).unwrap();
    assert_eq!(att["subject"]["digest"], digest.as_str());
    assert_eq!(att["subject"]["size"], bytes.len());
    assert_eq!(att["subject"]["mediaType"], OCI_MANIFEST);
    let env_digest = att["layers"][0]["digest"].as_str().unwrap().to_owned();
    let r = get(&oci, &format!("/v2/{NAME}/blobs/{env_digest}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let envelope = r.bytes().await.unwrap().to_vec();
    assert_eq!(sha(&envelope), env_digest);
    // It is the release's attestation, it verifies against the served key, and it names the
    // layers' digests.
    let rest_env = s
        .req(Method::GET, &format!("{REL}/v1.0.0/attestation"), None)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&rest_env[..], &envelope[..]);
    let (_, keys) = s.get("/api/v1/attestation/keys", None).await;
    let key = pfai::attest::PublicKey::from_b64(keys[0]["publicKey"].as_str().unwrap()).unwrap();
    pfai::attest::Envelope::parse(&envelope)
        .unwrap()
        .verify(&[key])
        .unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(
                serde_json::from_slice::<Value>(&envelope).unwrap()["payload"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap(),
    )
    .unwrap();
    for layer in layers {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(
            payload["subject"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["digest"]["sha256"] == hex
                    && s["name"] == layer["annotations"]["org.opencontainers.image.title"]),
            "{payload}"
        );
    }
    // The filter, and a subject with no referrers.
    let r = get(
        &oci,
        &format!("/v2/{NAME}/referrers/{digest}?artifactType=application/x-other"),
    )
    .await;
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["manifests"], json!([]));
    let r = get(&oci, &format!("/v2/{NAME}/referrers/{}", sha(b"nothing"))).await;
    assert_eq!(r.status(), StatusCode::OK);
    let idx: Value = r.json().await.unwrap();
    assert_eq!(idx["manifests"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drafts_are_invisible_and_a_private_repositorys_releases_need_read_access() {
    let s = TestServer::start().await;
    setup(&s, "app", true).await;
    let reader = s.user("reader").await;
    let stranger = s.user("stranger").await;
    s.collaborator("acme/app", "reader", "read").await;

    // Anonymous: the registry's challenge, on every read.
    let anon = Oci::new(&s, None);
    let d = sha(&tarball());
    for path in [
        format!("/v2/{NAME}/manifests/v1.0.0"),
        format!("/v2/{NAME}/blobs/{d}"),
        format!("/v2/{NAME}/tags/list"),
        format!("/v2/{NAME}/referrers/{d}"),
    ] {
        let r = get(&anon, &path).await;
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("Basic"),
            "{path}"
        );
        assert_eq!(
            error_code(r).await,
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into()),
            "{path}"
        );
    }
    // A signed-in user without access: the name is unknown.
    let r = get(
        &Oci::new(&s, Some(&stranger)),
        &format!("/v2/{NAME}/manifests/v1.0.0"),
    )
    .await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    // A reader: everything, the asset bytes included.
    let rd = Oci::new(&s, Some(&reader));
    manifest(&rd, NAME, "v1.0.0").await;
    let r = get(&rd, &format!("/v2/{NAME}/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(&r.bytes().await.unwrap()[..], &tarball()[..]);

    // Drafts: unknown, even to the admin, by tag, in the tag list and by their assets.
    let admin = Oci::new(&s, Some(&s.admin));
    let r = get(&admin, &format!("/v2/{NAME}/manifests/v2.0.0")).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = get(&admin, &format!("/v2/{NAME}/blobs/{}", sha(b"draft"))).await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "BLOB_UNKNOWN".into())
    );
    let t: Value = get(&admin, &format!("/v2/{NAME}/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["tags"], json!(["latest", "v0.9.0", "v1.0.0"]));
    // Back to draft is refused for an immutable release; a mutable repository's release that
    // goes back to draft disappears at once.
    s.repo("acme", "mutable", false).await;
    let wc = s.checkout("acme/mutable", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/mutable/releases",
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    manifest(&admin, "acme/mutable/releases", "v1").await;
    let (st, v) = s
        .call(
            Method::PATCH,
            "/api/v1/forge/acme/mutable/releases/v1",
            Some(&s.admin),
            Some(json!({"draft": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = get(&admin, "/v2/acme/mutable/releases/manifests/v1").await;
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let t: Value = get(&admin, "/v2/acme/mutable/releases/tags/list")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(t["tags"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_release_manifest_digest_is_the_same_across_requests_and_a_restart() {
    let s = TestServer::start().await;
    setup(&s, "app", false).await;
    let oci = Oci::new(&s, None);
    let (b1, d1) = manifest(&oci, NAME, "v1.0.0").await;
    let (b2, d2) = manifest(&oci, NAME, "v1.0.0").await;
    assert_eq!((b1.clone(), d1.clone()), (b2, d2));
    let idx: Value = get(&oci, &format!("/v2/{NAME}/referrers/{d1}"))
        .await
        .json()
        .await
        .unwrap();
    let att1 = idx["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let tmp = s.stop().await;
    let s = TestServer::start_in(tmp, |_| {}).await;
    let oci = Oci::new(&s, None);
    let (b3, d3) = manifest(&oci, NAME, "v1.0.0").await;
    assert_eq!((b3, d3.clone()), (b1, d1));
    let idx: Value = get(&oci, &format!("/v2/{NAME}/referrers/{d3}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(idx["manifests"][0]["digest"], att1.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_and_deletes_to_the_releases_name_are_refused_even_for_admins() {
    let s = TestServer::start().await;
    setup(&s, "app", false).await;
    let admin = Oci::new(&s, Some(&s.admin));
    let (bytes, digest) = manifest(&admin, NAME, "v1.0.0").await;
    let td = sha(&tarball());
    let attempts: Vec<(Method, String, Vec<u8>)> = vec![
        (
            Method::PUT,
            format!("/v2/{NAME}/manifests/v1.0.0"),
            bytes.clone(),
        ),
        (
            Method::PUT,
            format!("/v2/{NAME}/manifests/v9"),
            bytes.clone(),
        ),
        (
            Method::DELETE,
            format!("/v2/{NAME}/manifests/v1.0.0"),
            vec![],
        ),
        (
            Method::DELETE,
            format!("/v2/{NAME}/manifests/{digest}"),
            vec![],
        ),
        (Method::DELETE, format!("/v2/{NAME}/blobs/{td}"), vec![]),
        (Method::POST, format!("/v2/{NAME}/blobs/uploads/"), vec![]),
        (
            Method::POST,
            format!("/v2/{NAME}/blobs/uploads/?digest={}", sha(b"x")),
            b"x".to_vec(),
        ),
        (
            Method::POST,
            format!("/v2/{NAME}/blobs/uploads/?mount={td}&from=acme/app/releases"),
            vec![],
        ),
    ];
    for (m, path, body) in attempts {
        let r = admin
            .req(m.clone(), &path)
            .header("content-type", OCI_MANIFEST)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let st = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}: {v}");
        assert_eq!(v["errors"][0]["code"], "DENIED", "{m} {path}");
        assert!(
            v["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("reserved"),
            "{v}"
        );
        // Anonymous: asked to authenticate first, like any push.
        let r = Oci::new(&s, None)
            .req(m.clone(), &path)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{m} {path}");
    }
    // Nothing changed.
    let (after, d) = manifest(&admin, NAME, "v1.0.0").await;
    assert_eq!((after, d), (bytes, digest));
    let r = get(&admin, &format!("/v2/{NAME}/manifests/v9")).await;
    assert_eq!(error_code(r).await.0, StatusCode::NOT_FOUND);
    // Other names under the repository, `releases` deeper down included, stay pushable.
    let r = admin
        .req(
            Method::POST,
            &format!(
                "/v2/acme/app/releases/x/blobs/uploads/?digest={}",
                sha(b"x")
            ),
        )
        .body(b"x".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copies_a_release_into_an_oci_layout_with_the_assets_as_layers() {
    if !require_tool("skopeo") {
        return;
    }
    let s = TestServer::start().await;
    setup(&s, "app", true).await;
    let host = s.url.trim_start_matches("http://").to_owned();
    let creds = format!("x:{}", s.admin);
    let layout = s.dir.path().join("layout");
    let dest = format!("oci:{}:v1.0.0", layout.display());
    let src = format!("docker://{host}/{NAME}:v1.0.0");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data-fixtures/oci/layout-single:v1"
    );
    let push_to = format!("docker://{host}/{NAME}:v9");
    let (out, refused) = tokio::task::spawn_blocking(move || {
        let out = skopeo_ok(&[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &src,
            &dest,
        ]);
        let refused = skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{fixture}"),
            &push_to,
        ]);
        (out, refused)
    })
    .await
    .unwrap();
    assert!(
        !refused.status.success(),
        "a push to the releases name succeeded"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("reserved") || err.contains("denied"), "{err}");
    let oci = Oci::new(&s, Some(&s.admin));
    let (bytes, digest) = manifest(&oci, NAME, "v1.0.0").await;
    // The layout's manifest is the served one, byte for byte, and each layer file is the asset.
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest.as_str(), "{out}");
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    assert_eq!(blob(&digest), bytes);
    assert_eq!(blob(&sha(&tarball())), tarball());
    assert_eq!(blob(&sha(b"abc  app.tar.gz\n")), b"abc  app.tar.gz\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oras_pulls_a_releases_assets_under_their_file_names() {
    if !require_oras() {
        return;
    }
    let s = TestServer::start().await;
    setup(&s, "app", true).await;
    let host = s.url.trim_start_matches("http://").to_owned();
    let dir = s.dir.path().join("oras-out");
    std::fs::create_dir(&dir).unwrap();
    let token = s.admin.clone();
    let pulled = tokio::task::spawn_blocking({
        let (host, dir) = (host.clone(), dir.clone());
        move || oras_pull(&host, &format!("{host}/{NAME}:v1.0.0"), &dir, &token)
    })
    .await
    .unwrap();
    assert!(pulled.0, "{}", pulled.1);
    assert_eq!(std::fs::read(dir.join("app.tar.gz")).unwrap(), tarball());
    assert_eq!(
        std::fs::read(dir.join("checksums.txt")).unwrap(),
        b"abc  app.tar.gz\n"
    );
}

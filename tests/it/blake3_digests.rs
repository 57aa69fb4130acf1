//! `blake3:` content addressing end to end over raw HTTP: monolithic, chunked (with and without
//! `digest-algorithm`) and mounted uploads verified with BLAKE3, manifests that reference BLAKE3
//! blobs and are pushed by a BLAKE3 digest, referrers, fsck and GC; and the BLAKE3 every release
//! asset carries beside its SHA-256.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{git_ok, oras_pull, require_oras, walk_files, TestServer};
use crate::registry::{error_code, Oci};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn b3(data: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(data).to_hex())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blake3_blobs_and_manifests_are_verified_and_served_like_sha256() {
    let s = TestServer::start_with(|c| c.limits.gc_grace_secs = 0).await;
    s.repo("acme", "app", false).await;
    s.repo("acme", "other", false).await;
    let o = Oci::new(&s, Some(&s.admin));

    // Monolithic: the digest is checked with BLAKE3; a wrong one is DIGEST_INVALID, and the
    // SHA-256 of the same bytes is a different blob.
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let cd = b3(&config);
    let r = o
        .req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={cd}"),
        )
        .body(config.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], cd.as_str());
    let wrong = b3(b"something else");
    let (st, code) = error_code(
        o.req(
            Method::POST,
            &format!("/v2/acme/app/blobs/uploads/?digest={wrong}"),
        )
        .body(config.clone())
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let short = format!("blake3:{}", "a".repeat(63));
    let (st, code) = error_code(
        o.req(Method::HEAD, &format!("/v2/acme/app/blobs/{short}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{code}");

    // Chunked, the session opened for BLAKE3.
    let layer: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let ld = b3(&layer);
    let r = o
        .req(
            Method::POST,
            "/v2/acme/app/blobs/uploads/?digest-algorithm=blake3",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let mut loc = r.headers()["location"].to_str().unwrap().to_owned();
    for (i, chunk) in layer.chunks(1 << 20).enumerate() {
        let start = i << 20;
        let r = o
            .req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        loc = r.headers()["location"].to_str().unwrap().to_owned();
    }
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = o
        .req(Method::PUT, &format!("{loc}{sep}digest={ld}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );

    // Chunked in a default (SHA-256) session, closed with a BLAKE3 digest: re-hashed, and
    // refused when it does not match.
    let extra = b"a blob closed by its blake3 digest".to_vec();
    let ed = b3(&extra);
    for (digest, want) in [
        (b3(b"not these bytes"), StatusCode::BAD_REQUEST),
        (ed.clone(), StatusCode::CREATED),
    ] {
        let r = o
            .req(Method::POST, "/v2/acme/app/blobs/uploads/")
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let r = o
            .req(Method::PATCH, &loc)
            .header("content-type", "application/octet-stream")
            .body(extra.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = o
            .req(Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{digest}");
    }

    // POST, then one PUT carrying every byte (what most clients do): hashed with the PUT's
    // algorithm from the first byte; a wrong digest is still refused.
    let single = b"one PUT with the whole blob".to_vec();
    for (digest, want) in [
        (b3(b"other bytes"), StatusCode::BAD_REQUEST),
        (b3(&single), StatusCode::CREATED),
    ] {
        let r = o
            .req(Method::POST, "/v2/acme/app/blobs/uploads/")
            .send()
            .await
            .unwrap();
        let loc = r.headers()["location"].to_str().unwrap().to_owned();
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = o
            .req(Method::PUT, &format!("{loc}{sep}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(single.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), want, "{digest}");
    }

    // Pulls: whole and by range, with the BLAKE3 digest echoed.
    let r = o
        .req(Method::GET, &format!("/v2/acme/app/blobs/{ld}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], ld.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[..]);
    let r = o
        .req(Method::GET, &format!("/v2/acme/app/blobs/{ld}"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &layer[10..20]);

    // A mount into another repository.
    let r = o
        .req(
            Method::POST,
            &format!("/v2/acme/other/blobs/uploads/?mount={ld}&from=acme/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], ld.as_str());

    // A manifest referencing the BLAKE3 blobs, pushed by its own BLAKE3 digest.
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}]
    }))
    .unwrap();
    let md = b3(&m);
    let r = o
        .req(Method::PUT, &format!("/v2/acme/app/manifests/{md}"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    // Pushed by the wrong BLAKE3 digest: refused.
    let r = o
        .req(
            Method::PUT,
            &format!("/v2/acme/app/manifests/{}", b3(b"other")),
        )
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    let (st, code) = error_code(r).await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    let r = o
        .req(Method::GET, &format!("/v2/acme/app/manifests/{md}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], md.as_str());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &m[..]);
    // A manifest naming a BLAKE3 blob the repository lacks is refused.
    let missing = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": b3(b"absent"), "size": 6}]
    }))
    .unwrap();
    let (st, code) = error_code(
        o.req(Method::PUT, "/v2/acme/app/manifests/broken")
            .header("content-type", OCI_MANIFEST)
            .body(missing)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );

    // A referrer whose subject is the BLAKE3 manifest, listed under that digest.
    let art = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": cd, "size": config.len()},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": md, "size": m.len()}
    }))
    .unwrap();
    let ad = b3(&art);
    let r = o
        .req(Method::PUT, &format!("/v2/acme/app/manifests/{ad}"))
        .header("content-type", OCI_MANIFEST)
        .body(art.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(r.headers()["oci-subject"], md.as_str());
    let v: Value = o
        .req(Method::GET, &format!("/v2/acme/app/referrers/{md}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], ad.as_str(), "{v}");

    // Tag it; fsck is clean; a flipped byte in the BLAKE3 layer file is found.
    let r = o
        .req(Method::PUT, "/v2/acme/app/manifests/v1")
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], sha256_of(&m).as_str());
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["problems"], 0, "{v}");
    let path = s
        .data_dir()
        .join("blobs/blake3")
        .join(&ld[7..9])
        .join(&ld[7..]);
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let (_, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(v["corrupt"], json!([ld]), "{v}");

    // GC: the unreferenced BLAKE3 blob goes once nothing links it; referenced ones stay.
    let r = o
        .req(Method::DELETE, &format!("/v2/acme/app/blobs/{ed}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let (st, v) = s
        .call(
            Method::POST,
            "/api/v1/admin/gc?graceSeconds=0",
            Some(&s.admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The blob pushed by one PUT was never referenced either.
    let mut gone = vec![ed.clone(), b3(b"one PUT with the whole blob")];
    gone.sort();
    assert_eq!(v["blobs"], json!(gone), "{v}");
    assert!(!s
        .data_dir()
        .join("blobs/blake3")
        .join(&ed[7..9])
        .join(&ed[7..])
        .exists());
    let r = o
        .req(Method::HEAD, &format!("/v2/acme/app/blobs/{cd}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

fn sha256_of(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_asset_carries_blake3_and_fsck_verifies_with_it() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let (st, v) = s
        .post(
            "/api/v1/forge/acme/app/releases",
            Some(&s.admin),
            json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 199) as u8).collect();
    let (st, a) = s
        .upload_asset("acme/app", "v1", "tool.bin", data.clone(), &s.admin)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    assert_eq!(a["blake3"], blake3::hash(&data).to_hex().as_str(), "{a}");
    assert_eq!(a["sha256"], &sha256_of(&data)[7..], "{a}");
    let (_, rel) = s
        .get("/api/v1/forge/acme/app/releases/v1", Some(&s.admin))
        .await;
    assert_eq!(rel["assets"][0]["blake3"], a["blake3"], "{rel}");

    // A tampered file is found (by its BLAKE3, the cheaper re-hash).
    let (_, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(v["problems"], 0, "{v}");
    let file = walk_files(&s.data_dir().join("assets"))
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-tool.bin"))
        .unwrap();
    let mut perm = std::fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&file, perm).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[100] ^= 0x80;
    std::fs::write(&file, &bytes).unwrap();
    let (_, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(v["findings"][0]["kind"], "asset_corrupt", "{v}");
    assert!(
        v["findings"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("BLAKE3"),
        "{v}"
    );
}

/// An artifact whose config, layer and manifest are all addressed by BLAKE3, pulled by the oras
/// Python client by tag and by the manifest's BLAKE3 digest. (That client pushes SHA-256 only,
/// so the push is raw HTTP; it fetches whatever digest a manifest names.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oras_pulls_an_artifact_addressed_by_blake3() {
    if !require_oras() {
        return;
    }
    let s = TestServer::start().await;
    s.repo("acme", "tools", false).await;
    let o = Oci::new(&s, Some(&s.admin));
    let config = b"{}".to_vec();
    let file: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    for blob in [&config, &file] {
        let r = o
            .req(
                Method::POST,
                &format!("/v2/acme/tools/blobs/uploads/?digest={}", b3(blob)),
            )
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.acme.tool",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": b3(&config), "size": config.len()},
        "layers": [{
            "mediaType": "application/octet-stream",
            "digest": b3(&file),
            "size": file.len(),
            "annotations": {"org.opencontainers.image.title": "tool.bin"}
        }]
    }))
    .unwrap();
    let md = b3(&m);
    for reference in [md.as_str(), "v1"] {
        let r = o
            .req(
                Method::PUT,
                &format!("/v2/acme/tools/manifests/{reference}"),
            )
            .header("content-type", OCI_MANIFEST)
            .body(m.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "{reference}");
    }

    let host = s.url.trim_start_matches("http://").to_owned();
    let targets = [
        format!("{host}/acme/tools:v1"),
        format!("{host}/acme/tools@{md}"),
    ];
    for (i, target) in targets.into_iter().enumerate() {
        let dir = s.dir.path().join(format!("oras-{i}"));
        std::fs::create_dir(&dir).unwrap();
        let token = s.admin.clone();
        let pulled = tokio::task::spawn_blocking({
            let (host, dir, target) = (host.clone(), dir.clone(), target.clone());
            move || oras_pull(&host, &target, &dir, &token)
        })
        .await
        .unwrap();
        assert!(pulled.0, "{target}: {}", pulled.1);
        let got = std::fs::read(dir.join("tool.bin")).unwrap();
        assert_eq!(b3(&got), b3(&file), "{target}");
    }
}

//! Upgrades: a data directory written by an older pfai (the schema-1 fixture, made by
//! `data-fixtures/upgrade/make-schema-1.sh` with the binary of that time) opens with this one,
//! is migrated in place, keeps a copy of the old database, and serves everything it held.

use std::process::Command;

use reqwest::{Method, StatusCode};

use crate::harness::{git_ok, TestServer};

/// Unpacks the fixture as `<tmp>/data`.
fn unpack_schema_1() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data-fixtures/upgrade/schema-1.tar.gz"
    );
    let out = Command::new("tar")
        .args(["-xzf", fixture, "-C"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    std::fs::rename(dir.path().join("schema-1"), dir.path().join("data")).unwrap();
    dir
}

async fn stored_schema(s: &TestServer) -> u32 {
    s.core()
        .db
        .read(|txn| {
            let meta = txn.open_table(pfai::storage::tables::META)?;
            let v = meta.get("schema_version")?.map(|v| v.value().to_vec());
            Ok::<_, pfai::storage::StorageError>(v)
        })
        .await
        .unwrap()
        .map(|v| u32::from_le_bytes(v.try_into().unwrap()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_dir_from_schema_1_is_upgraded_and_serves_all_it_held() {
    let s = TestServer::start_in(unpack_schema_1(), |_| {}).await;
    let data = s.data_dir();
    assert_eq!(stored_schema(&s).await, pfai::storage::SCHEMA_VERSION);
    if pfai::storage::SCHEMA_VERSION > 1 {
        assert!(
            data.join("pfai.redb.schema-1").is_file(),
            "the pre-upgrade copy of the database is kept"
        );
    }
    let admin = s.admin.clone();
    let alice = std::fs::read_to_string(data.join("alice-token"))
        .unwrap()
        .trim()
        .to_owned();

    // Users and tokens.
    let (st, me) = s.get("/api/v1/user", Some(&alice)).await;
    assert_eq!(st, StatusCode::OK, "{me}");
    assert_eq!(me["username"], "alice");

    // The release, its asset byte for byte, through alice's collaborator role on a private repo.
    let (st, rel) = s
        .get("/api/v1/forge/acme/app/releases/v1.0.0", Some(&alice))
        .await;
    assert_eq!(st, StatusCode::OK, "{rel}");
    assert_eq!(rel["name"], "One");
    assert_eq!(rel["body"], "First release");
    let asset = s
        .req(
            Method::GET,
            "/api/v1/forge/acme/app/releases/latest/assets/hello.txt",
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(asset.status(), StatusCode::OK);
    assert_eq!(&asset.bytes().await.unwrap()[..], b"schema-1 asset bytes\n");

    // The git tag, the protection rule that guards it.
    let (st, tags) = s.get("/api/v1/forge/acme/app/tags", Some(&alice)).await;
    assert_eq!(st, StatusCode::OK, "{tags}");
    assert!(tags.to_string().contains("v1.0.0"), "{tags}");
    let (st, rules) = s
        .get("/api/v1/forge/acme/app/tag-protections", Some(&admin))
        .await;
    assert_eq!(st, StatusCode::OK, "{rules}");
    assert!(rules.to_string().contains("\"v*\""), "{rules}");
    // A rule from before targets existed still protects git tags only, with the admin override.
    assert_eq!(rules[0]["target"], "git", "{rules}");
    assert_eq!(rules[0]["immutable"], false, "{rules}");
    let clone = tempfile::tempdir().unwrap();
    git_ok(
        clone.path(),
        &["clone", "-q", &s.git_url("acme/app", Some(&alice)), "app"],
    );
    git_ok(&clone.path().join("app"), &["rev-parse", "v1.0.0^{commit}"]);
    let refused = crate::harness::git(
        &clone.path().join("app"),
        &["push", "-q", "origin", ":refs/tags/v1.0.0"],
    );
    assert!(
        !refused.status.success(),
        "the protected tag stays protected"
    );

    // The image, by tag and by digest.
    let manifest = "sha256:ac39bd6fbca6e45c280c6e6f2ff4635dd5c99e3b4bd542723a6871e00b0e3b31";
    let r = s
        .req(Method::GET, "/v2/acme/app/web/manifests/1.0", None)
        .basic_auth("x", Some(&alice))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"], manifest);
    let body: serde_json::Value = r.json().await.unwrap();
    for layer in body["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let r = s
            .req(Method::GET, &format!("/v2/acme/app/web/blobs/{d}"), None)
            .basic_auth("x", Some(&alice))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let bytes = r.bytes().await.unwrap();
        assert_eq!(pfai::ids::Digest::sha256_of(&bytes).to_string(), d);
    }

    // Schema 2 counted the stores' objects (what /metrics reports) from the rows.
    let text = s
        .req(Method::GET, "/metrics", None)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(gauge("pfai_asset_objects"), 1.0);
    assert_eq!(gauge("pfai_asset_bytes"), 21.0);
    assert_eq!(
        gauge("pfai_blob_objects"),
        2.0,
        "the image's config and layer"
    );
    assert!(gauge("pfai_blob_bytes") > 0.0);
    // Schema 2 backfilled the storage usage: the 21-byte asset plus the image's distinct blobs.
    let mut blobs = std::collections::BTreeMap::new();
    blobs.insert(
        body["config"]["digest"].as_str().unwrap().to_owned(),
        body["config"]["size"].as_u64().unwrap(),
    );
    for layer in body["layers"].as_array().unwrap() {
        blobs.insert(
            layer["digest"].as_str().unwrap().to_owned(),
            layer["size"].as_u64().unwrap(),
        );
    }
    let expected = 21 + blobs.values().sum::<u64>();
    let (st, q) = s.get("/api/v1/admin/quotas/acme", Some(&admin)).await;
    assert_eq!(st, StatusCode::OK, "{q}");
    assert_eq!(q["usedBytes"], expected, "{q}");

    // Nothing lost or inconsistent; the asset stored by schema 1 has no BLAKE3 until
    // `fsck --repair` computes it (after re-verifying its SHA-256 in the same pass).
    let release = "/api/v1/forge/acme/app/releases/v1.0.0";
    let (st, rel) = s.get(release, Some(&admin)).await;
    assert_eq!(st, StatusCode::OK, "{rel}");
    assert!(rel["assets"][0].get("blake3").is_none(), "{rel}");
    let (st, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&admin), None)
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    let kinds: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["asset_blake3_missing"], "{report}");
    let (st, report) = s
        .call(
            Method::POST,
            "/api/v1/admin/fsck?repair=true",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["problems"], 0, "{report}");
    let (_, rel) = s.get(release, Some(&admin)).await;
    assert_eq!(
        rel["assets"][0]["blake3"].as_str(),
        Some(blake3::hash(b"schema-1 asset bytes\n").to_hex().as_str()),
        "{rel}"
    );
    let (_, report) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&admin), None)
        .await;
    assert_eq!(report["problems"], 0, "{report}");

    // A second start does not upgrade again.
    let dir = s.stop().await;
    let s = TestServer::start_in(dir, |_| {}).await;
    assert_eq!(stored_schema(&s).await, pfai::storage::SCHEMA_VERSION);
    s.stop().await;
}

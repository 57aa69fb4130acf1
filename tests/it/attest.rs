//! Release attestations: the key endpoint and key file, the envelope written on publish, and
//! `pfai release verify` / `verify-asset` online and offline.

use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{git_ok, Cli, TestServer};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

/// A port nothing listens on (bound, then released).
fn closed_port_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attestation_key_is_listed_anonymously_and_its_private_key_is_0600() {
    let s = TestServer::start().await;
    let (st, keys) = s.get("/api/v1/attestation/keys", None).await;
    assert_eq!(st, StatusCode::OK, "{keys}");
    let keys = keys.as_array().unwrap().clone();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let k = &keys[0];
    assert_eq!(k["algorithm"], "ed25519");
    assert_eq!(k["current"], true);
    let raw = B64.decode(k["publicKey"].as_str().unwrap()).unwrap();
    assert_eq!(raw.len(), 32);
    let keyid = k["keyid"].as_str().unwrap().to_owned();
    assert_eq!(keyid, sha256_hex(&raw));
    assert!(k["publicKeyPem"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let dir = s.data_dir().join("attestation");
    let pk8 = dir.join(format!("key-{keyid}.pk8"));
    let mode = std::fs::metadata(&pk8).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", pk8.display());
    // The web UI shows the same key to anyone, PEM included.
    let page = s
        .req(reqwest::Method::GET, "/-/attestation-keys", None)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.unwrap();
    assert!(page.contains(&keyid), "{page}");
    assert!(page.contains("-----BEGIN PUBLIC KEY-----"), "{page}");

    // Restart: same key. Rotate (private key moved away): a new current key, the old listed.
    let tmp = s.stop().await;
    let s = TestServer::start_in(tmp, |_| {}).await;
    let (_, again) = s.get("/api/v1/attestation/keys", None).await;
    assert_eq!(again[0]["keyid"].as_str(), Some(keyid.as_str()));
    std::fs::rename(&pk8, s.dir.path().join("old-key.pk8")).unwrap();
    let tmp = s.stop().await;
    let s = TestServer::start_in(tmp, |_| {}).await;
    let (_, rotated) = s.get("/api/v1/attestation/keys", None).await;
    let rotated = rotated.as_array().unwrap().clone();
    assert_eq!(rotated.len(), 2, "{rotated:?}");
    let old = rotated
        .iter()
        .find(|k| k["keyid"] == keyid.as_str())
        .unwrap();
    assert_eq!(old["current"], false);
    assert_eq!(rotated.iter().filter(|k| k["current"] == true).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn published_release_is_attested_and_verifies_online_and_offline() {
    let s = TestServer::start().await;
    let mut cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(&root, &["repo", "create", "acme/app"]);
    cli.ok(
        &root,
        &["repo", "edit", "acme/app", "--immutable-releases=true"],
    );
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]).trim().to_owned();
    std::fs::create_dir(wc.join("dist")).unwrap();
    let tarball: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(wc.join("dist/app.tar.gz"), &tarball).unwrap();
    std::fs::write(wc.join("dist/checksums.txt"), "abc\n").unwrap();
    let r = ["-R", "acme/app"];

    // Draft, assets, publish: the attestation appears only with the publish.
    cli.ok(
        &root,
        &[
            &["release", "create", "v1.0.0", "--target", "main", "--draft"][..],
            &r,
            &[
                wc.join("dist/app.tar.gz").to_str().unwrap(),
                wc.join("dist/checksums.txt").to_str().unwrap(),
            ],
        ]
        .concat(),
    );
    let att_path = "/api/v1/forge/acme/app/releases/v1.0.0/attestation";
    let (st, _) = s.get(att_path, Some(&s.admin)).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "a draft has no attestation");
    cli.ok(
        &root,
        &[&["release", "edit", "v1.0.0", "--draft=false"][..], &r].concat(),
    );

    let resp = s
        .req(reqwest::Method::GET, att_path, None)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get("content-disposition")
        .is_some_and(|v| v.to_str().unwrap().contains("attachment")));
    let envelope_bytes = resp.bytes().await.unwrap().to_vec();
    // The release page's download link serves the same bytes through the web session edge.
    let web = s
        .req(
            reqwest::Method::GET,
            "/acme/app/releases/attestation/v1.0.0",
            None,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(web.status(), StatusCode::OK);
    assert_eq!(web.bytes().await.unwrap().to_vec(), envelope_bytes);
    let env: Value = serde_json::from_slice(&envelope_bytes).unwrap();
    assert_eq!(env["payloadType"], "application/vnd.in-toto+json");
    let payload = B64.decode(env["payload"].as_str().unwrap()).unwrap();
    let stmt: Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(stmt["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(
        stmt["predicateType"],
        "https://pfai.dev/attestation/release/v1"
    );
    assert_eq!(stmt["predicate"]["repository"], "acme/app");
    assert_eq!(stmt["predicate"]["tag"], "v1.0.0");
    assert_eq!(stmt["predicate"]["commit"], head.as_str());
    assert_eq!(stmt["predicate"]["publisher"], "admin");
    let subjects = stmt["subject"].as_array().unwrap();
    assert_eq!(subjects.len(), 2, "{stmt}");
    let tar = subjects.iter().find(|s| s["name"] == "app.tar.gz").unwrap();
    assert_eq!(tar["digest"]["sha256"], sha256_hex(&tarball).as_str());
    // The payload is canonical JSON: what re-serializing with sorted keys gives.
    assert!(std::str::from_utf8(&payload)
        .unwrap()
        .starts_with("{\"_type\":"));

    // Online: against the server's keys, and against a key file.
    let out = cli.ok(&root, &[&["release", "verify", "v1.0.0"][..], &r].concat());
    assert!(out.contains("verified"), "{out}");
    let files = s.dir.path().join("verify-files");
    std::fs::create_dir(&files).unwrap();
    let (_, keys) = s.get("/api/v1/attestation/keys", None).await;
    let keys_json = files.join("keys.json");
    std::fs::write(&keys_json, keys.to_string()).unwrap();
    let pem = files.join("key.pem");
    std::fs::write(&pem, keys[0]["publicKeyPem"].as_str().unwrap()).unwrap();
    let att = files.join("v1.0.0.intoto.json");
    std::fs::write(&att, &envelope_bytes).unwrap();
    cli.ok(
        &root,
        &[
            &[
                "release",
                "verify",
                "v1.0.0",
                "--key",
                pem.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    let tar_file = wc.join("dist/app.tar.gz");
    cli.ok(
        &root,
        &[
            &[
                "release",
                "verify-asset",
                "v1.0.0",
                tar_file.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );

    // A modified local copy is refused, naming the file.
    let mut bad = tarball.clone();
    bad[1000] ^= 1;
    let bad_dir = files.join("bad");
    std::fs::create_dir(&bad_dir).unwrap();
    let bad_file = bad_dir.join("app.tar.gz");
    std::fs::write(&bad_file, &bad).unwrap();
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            &[
                "release",
                "verify-asset",
                "v1.0.0",
                bad_file.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    assert!(err.contains("does not match the attested"), "{err}");

    // A tampered envelope (payload edited, signature kept) is refused.
    let tampered_stmt = String::from_utf8(payload.clone())
        .unwrap()
        .replace(&sha256_hex(&tarball), &sha256_hex(&bad));
    let mut tampered = env.clone();
    tampered["payload"] = Value::String(B64.encode(tampered_stmt));
    let tampered_file = files.join("tampered.json");
    std::fs::write(&tampered_file, tampered.to_string()).unwrap();
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            &[
                "release",
                "verify-asset",
                "v1.0.0",
                bad_file.to_str().unwrap(),
                "--attestation",
                tampered_file.to_str().unwrap(),
                "--key",
                keys_json.to_str().unwrap(),
            ][..],
            &r,
        ]
        .concat(),
    );
    assert!(err.contains("signature does not verify"), "{err}");

    // Offline: nothing listens at PFAI_URL, only the two files are used.
    cli.url = closed_port_url();
    for key in [&keys_json, &pem] {
        let out = cli.ok(
            &root,
            &[
                "release",
                "verify",
                "v1.0.0",
                "--attestation",
                att.to_str().unwrap(),
                "--key",
                key.to_str().unwrap(),
            ],
        );
        assert!(out.contains("verified (offline)"), "{out}");
    }
    let offline = |file: &std::path::Path| {
        vec![
            "release".to_owned(),
            "verify-asset".into(),
            "v1.0.0".into(),
            file.to_str().unwrap().into(),
            "--attestation".into(),
            att.to_str().unwrap().into(),
            "--key".into(),
            pem.to_str().unwrap().into(),
        ]
    };
    let args = offline(&tar_file);
    cli.ok(&root, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let args = offline(&bad_file);
    let (_, err) = cli.fails(
        &root,
        None,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert!(err.contains("does not match the attested"), "{err}");
    // The envelope of another tag is not accepted for this one.
    let (_, err) = cli.fails(
        &root,
        None,
        &[
            "release",
            "verify",
            "v2.0.0",
            "--attestation",
            att.to_str().unwrap(),
            "--key",
            pem.to_str().unwrap(),
        ],
    );
    assert!(err.contains("is for tag v1.0.0"), "{err}");
    // A key that did not sign it is refused.
    std::fs::write(
        files.join("other.json"),
        r#"[{"publicKey":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]"#,
    )
    .unwrap();
    let (_, err) = cli.fails(
        &root,
        None,
        &[
            "release",
            "verify",
            "v1.0.0",
            "--attestation",
            att.to_str().unwrap(),
            "--key",
            files.join("other.json").to_str().unwrap(),
        ],
    );
    assert!(err.contains("signature does not verify"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn attestation_only_for_immutable_releases_and_hidden_like_a_private_release() {
    let s = TestServer::start().await;
    s.repo("alice", "secret", true).await;
    let wc = s.checkout("alice/secret", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    // Without the setting a published release is not attested.
    let (st, v) = s
        .post(
            "/api/v1/forge/alice/secret/releases",
            Some(&s.admin),
            serde_json::json!({"tagName": "v0", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = s
        .get(
            "/api/v1/forge/alice/secret/releases/v0/attestation",
            Some(&s.admin),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, v) = s
        .call(
            reqwest::Method::PATCH,
            "/api/v1/forge/alice/secret/settings",
            Some(&s.admin),
            Some(serde_json::json!({"immutableReleases": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .post(
            "/api/v1/forge/alice/secret/releases",
            Some(&s.admin),
            serde_json::json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let path = "/api/v1/forge/alice/secret/releases/v1/attestation";
    let (st, _) = s.get(path, Some(&s.admin)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.get(path, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

/// The README's "worked example without pfai" is what a third-party verifier runs: extracted
/// from the README and run as written with bash, jq, coreutils and the openssl CLI against a
/// real attestation, it passes; with one byte of an asset changed, or a signature from another
/// key, it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_openssl_example_verifies_an_attestation_without_pfai() {
    for tool in ["jq", "openssl", "sha256sum", "bash"] {
        if !crate::harness::require_tool(tool) {
            return;
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let marker = "<!-- attestation-openssl-example -->\n```sh\n";
    let at = readme
        .find(marker)
        .expect("the example's marker in the README")
        + marker.len();
    let script = &readme[at..at + readme[at..].find("```").unwrap()];

    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let (st, v) = s
        .call(
            reqwest::Method::PATCH,
            "/api/v1/forge/acme/app/settings",
            Some(&s.admin),
            Some(serde_json::json!({"immutableReleases": true})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let rel = "/api/v1/forge/acme/app/releases";
    let (st, v) = s
        .post(
            rel,
            Some(&s.admin),
            serde_json::json!({"tagName": "v1.2.3", "targetCommit": "main", "draft": true}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let assets: [(&str, Vec<u8>); 2] = [
        (
            "app.tar.gz",
            (0..70_000u32).map(|i| (i % 253) as u8).collect(),
        ),
        ("release notes.txt", b"hello\n".to_vec()),
    ];
    for (name, data) in &assets {
        let (st, v) = s
            .upload_asset("acme/app", "v1.2.3", name, data.clone(), &s.admin)
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = s
        .call(
            reqwest::Method::PATCH,
            &format!("{rel}/v1.2.3"),
            Some(&s.admin),
            Some(serde_json::json!({"draft": false})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let envelope = s
        .req(
            reqwest::Method::GET,
            &format!("{rel}/v1.2.3/attestation"),
            None,
        )
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let (_, keys) = s.get("/api/v1/attestation/keys", None).await;

    let dir = s.dir.path().join("third-party");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("att.json"), &envelope).unwrap();
    std::fs::write(dir.join("keys.json"), keys.to_string()).unwrap();
    for (name, data) in &assets {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let run = || {
        std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(&dir)
            .output()
            .unwrap()
    };
    let out = run();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Signature Verified Successfully"), "{text}");
    assert!(text.contains("app.tar.gz: OK"), "{text}");

    // One byte of an asset changed: the digest check fails.
    let mut bad = assets[0].1.clone();
    bad[7] ^= 1;
    std::fs::write(dir.join("app.tar.gz"), &bad).unwrap();
    assert!(!run().status.success(), "a changed asset must fail");
    std::fs::write(dir.join("app.tar.gz"), &assets[0].1).unwrap();
    assert!(run().status.success());

    // A signature that is not the key's: openssl refuses it.
    let mut env: Value = serde_json::from_slice(&envelope).unwrap();
    let mut sig = B64
        .decode(env["signatures"][0]["sig"].as_str().unwrap())
        .unwrap();
    sig[0] ^= 1;
    env["signatures"][0]["sig"] = Value::String(B64.encode(sig));
    std::fs::write(dir.join("att.json"), env.to_string()).unwrap();
    let out = run();
    assert!(!out.status.success(), "a bad signature must fail");
}

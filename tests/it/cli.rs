//! The `pfai` client binary against a real server: the seed's command lines, repo inference,
//! `--json`, streaming upload/download with verification, and errors with exit codes.

use std::process::Output;

use serde_json::Value;

use crate::harness::{git_ok, Cli, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn release_commands_from_a_checkout() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    let out = cli.ok(&root, &["repo", "create", "acme/app"]);
    assert!(out.trim().ends_with("/acme/app.git"), "{out}");
    // A real checkout whose origin points at the server: the repo is inferred from it.
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);

    std::fs::write(
        wc.join("CHANGELOG-v1.2.3.md"),
        "## Changes\n- auth\n- analytics\n",
    )
    .unwrap();
    std::fs::create_dir(wc.join("dist")).unwrap();
    let tarball: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
    std::fs::write(wc.join("dist/proxifai-linux-amd64.tar.gz"), &tarball).unwrap();
    std::fs::write(wc.join("dist/checksums.txt"), "abc\n").unwrap();

    // The seed's command line (body from a file's contents) plus assets.
    let body = std::fs::read_to_string(wc.join("CHANGELOG-v1.2.3.md")).unwrap();
    cli.ok(
        &wc,
        &[
            "release",
            "create",
            "v1.2.3",
            "--target",
            "main",
            "--title",
            "v1.2.3 — Auth & analytics improvements",
            "--body",
            &body,
            "--prerelease",
            "dist/proxifai-linux-amd64.tar.gz",
            "dist/checksums.txt",
        ],
    );
    let v: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "view", "v1.2.3", "--json"])).unwrap();
    assert_eq!(v["name"], "v1.2.3 — Auth & analytics improvements");
    assert_eq!(v["body"], body.as_str());
    assert_eq!(v["prerelease"], true);
    assert_eq!(v["assets"].as_array().unwrap().len(), 2);
    // Each asset carries its BLAKE3 beside its SHA-256 in `--json`.
    let tar = v["assets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "proxifai-linux-amd64.tar.gz")
        .unwrap();
    assert_eq!(
        tar["blake3"],
        blake3::hash(&tarball).to_hex().as_str(),
        "{v}"
    );
    assert_eq!(
        tar["sha256"],
        pfai::util::sha256_hex(&tarball).as_str(),
        "{v}"
    );

    // --body-file - from stdin, as the seed pipes git-cliff.
    let out = cli.run(
        &wc,
        Some(&s.admin),
        &[
            "release",
            "create",
            "v1.3.0",
            "--target",
            "main",
            "--body-file",
            "-",
        ],
        Some("notes from stdin\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "view", "latest", "--json"])).unwrap();
    assert_eq!(
        (v["tagName"].as_str(), v["body"].as_str()),
        (Some("v1.3.0"), Some("notes from stdin\n"))
    );

    // A draft, listed with markers; then published with edit.
    cli.ok(
        &wc,
        &["release", "create", "v2.0.0", "--target", "main", "--draft"],
    );
    let table = cli.ok(&wc, &["release", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TITLE"), "{table}");
    assert!(
        lines[1].contains("v2.0.0") && lines[1].contains("Draft"),
        "{table}"
    );
    assert!(
        lines[2].contains("v1.3.0") && lines[2].contains("Latest"),
        "{table}"
    );
    assert!(
        lines[3].contains("v1.2.3") && lines[3].contains("Pre-release"),
        "{table}"
    );
    let list: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "list", "--json", "--limit", "2"])).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2);
    cli.ok(
        &wc,
        &[
            "release",
            "edit",
            "v2.0.0",
            "--draft=false",
            "--title",
            "Two",
        ],
    );
    let v: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "view", "latest", "--json"])).unwrap();
    assert_eq!(
        (v["tagName"].as_str(), v["name"].as_str()),
        (Some("v2.0.0"), Some("Two"))
    );
    let text = cli.ok(&wc, &["release", "view", "v1.2.3"]);
    assert!(
        text.contains("proxifai-linux-amd64.tar.gz") && text.contains("Pre-release"),
        "{text}"
    );

    // Upload: duplicate refused without --clobber, replaced with it.
    let (code, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "upload", "v1.2.3", "dist/checksums.txt"],
    );
    assert_eq!(code, 1);
    assert!(err.contains("--clobber"), "{err}");
    std::fs::write(wc.join("dist/checksums.txt"), "def\n").unwrap();
    cli.ok(
        &wc,
        &[
            "release",
            "upload",
            "v1.2.3",
            "dist/checksums.txt",
            "--clobber",
        ],
    );

    // Download with a pattern into a directory, verified.
    let out_dir = root.join("downloads");
    cli.ok(
        &wc,
        &[
            "release",
            "download",
            "v1.2.3",
            "--pattern",
            "*.tar.gz",
            "--dir",
            out_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(out_dir.join("proxifai-linux-amd64.tar.gz")).unwrap(),
        tarball
    );
    assert!(!out_dir.join("checksums.txt").exists());
    cli.ok(
        &wc,
        &[
            "release",
            "download",
            "v1.2.3",
            "--dir",
            out_dir.to_str().unwrap(),
            "--skip-existing",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.join("checksums.txt")).unwrap(),
        "def\n"
    );

    // The seed's delete-asset line, then delete.
    cli.ok(&wc, &["release", "delete-asset", "v1.2.3", "checksums.txt"]);
    let v: Value =
        serde_json::from_str(&cli.ok(&wc, &["release", "view", "v1.2.3", "--json"])).unwrap();
    assert_eq!(v["assets"].as_array().unwrap().len(), 1);
    let (code, err) = cli.fails(&wc, Some(&s.admin), &["release", "delete", "v1.2.3"]);
    assert_eq!(code, 1);
    assert!(err.contains("--yes"), "{err}");
    cli.ok(&wc, &["release", "delete", "v1.2.3", "--yes"]);
    let (_, err) = cli.fails(&wc, Some(&s.admin), &["release", "view", "v1.2.3"]);
    assert!(
        err.contains("release v1.2.3 not found in acme/app"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tags_rules_repos_tokens_packages_and_maintenance() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(
        &root,
        &["repo", "create", "acme/app", "--description", "the app"],
    );
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let r = ["-R", "acme/app"];

    cli.ok(
        &root,
        &[
            &["tag", "create", "v1.0.0", "--target", "main", "-m", "first"][..],
            &r,
        ]
        .concat(),
    );
    cli.ok(&root, &[&["tag", "create", "nightly"][..], &r].concat());
    let tags: Value =
        serde_json::from_str(&cli.ok(&root, &[&["tag", "list", "--json"][..], &r].concat()))
            .unwrap();
    assert_eq!(tags.as_array().unwrap().len(), 2);
    assert_eq!(tags[1]["message"].as_str().unwrap().trim(), "first");

    cli.ok(
        &root,
        &[&["protected-tag", "create", "v*"][..], &r].concat(),
    );
    let table = cli.ok(&root, &[&["protected-tag", "list"][..], &r].concat());
    assert!(table.contains("v*"), "{table}");
    let listing = cli.ok(&root, &[&["tag", "list"][..], &r].concat());
    assert!(
        listing
            .lines()
            .any(|l| l.contains("v1.0.0") && l.contains("protected")),
        "{listing}"
    );
    // A write collaborator cannot delete the protected tag.
    let dev = s.user("dev").await;
    s.collaborator("acme/app", "dev", "write").await;
    let (code, err) = cli.fails(
        &root,
        Some(&dev),
        &[&["tag", "delete", "v1.0.0"][..], &r].concat(),
    );
    assert_eq!(code, 1);
    assert!(err.contains("protected"), "{err}");
    cli.ok(
        &root,
        &[&["protected-tag", "delete", "v*"][..], &r].concat(),
    );
    cli.ok(&root, &[&["tag", "delete", "v1.0.0"][..], &r].concat());
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[&["tag", "delete", "v1.0.0"][..], &r].concat(),
    );
    assert!(err.contains("tag v1.0.0 not found in acme/app"), "{err}");

    let v: Value =
        serde_json::from_str(&cli.ok(&root, &["repo", "view", "acme/app", "--json"])).unwrap();
    assert_eq!(v["description"], "the app");
    let view = cli.ok(&wc, &["repo", "view"]);
    assert!(view.starts_with("acme/app"), "{view}");

    // Tokens work for later commands.
    let t = cli.ok(&root, &["token", "create", "ci"]);
    let out = cli.run(&root, Some(t.trim()), &["repo", "view", "acme/app"], None);
    assert!(out.status.success());

    // Packages after a push, GC and fsck.
    let remote = crate::harness::Remote {
        url: s.url.clone(),
        token: s.admin.clone(),
    };
    remote
        .push_image("acme/app/web", "v1", b"layer bytes")
        .await;
    let pk: Value =
        serde_json::from_str(&cli.ok(&root, &[&["packages", "list", "--json"][..], &r].concat()))
            .unwrap();
    assert_eq!(pk[0]["name"], "acme/app/web");
    let tags = cli.ok(&root, &[&["packages", "tags", "web"][..], &r].concat());
    assert!(tags.contains("v1") && tags.contains("sha256:"), "{tags}");
    let out = cli.ok(&root, &["gc", "--dry-run"]);
    assert!(out.contains("would remove 0 blob(s)"), "{out}");
    let out = cli.ok(&root, &["fsck"]);
    assert!(out.contains("checked 2 blob(s)"), "{out}");
    let (code, err) = cli.fails(&root, Some(&dev), &["gc"]);
    assert_eq!(code, 1);
    assert!(err.contains("site admins"), "{err}");

    cli.ok(&root, &["repo", "delete", "acme/app", "--yes"]);
    let (_, err) = cli.fails(&root, Some(&s.admin), &["repo", "view", "acme/app"]);
    assert!(err.contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_errors_and_exit_codes() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();

    // No token anywhere.
    let (code, err) = cli.fails(&root, None, &["org", "create", "acme"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no token: run `pfai login` or set PFAI_TOKEN"),
        "{err}"
    );
    // A wrong token.
    let (code, err) = cli.fails(&root, Some("pfai_bad"), &["org", "create", "acme"]);
    assert_eq!(code, 1);
    assert!(err.contains("pfai login"), "{err}");
    // Usage errors exit 2.
    let (code, _) = cli.fails(&root, None, &["release", "create"]);
    assert_eq!(code, 2);
    let (code, _) = cli.fails(&root, None, &["nonsense"]);
    assert_eq!(code, 2);
    // No repository and not in a checkout.
    let (code, err) = cli.fails(&root, Some(&s.admin), &["release", "list"]);
    assert_eq!(code, 1);
    assert!(err.contains("-R owner/repo"), "{err}");
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &["release", "list", "-R", "not a repo"],
    );
    assert!(err.contains("expected owner/repo"), "{err}");
    // Bad input reaches the user as the server's message.
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(&root, &["repo", "create", "acme/app"]);
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            "release", "create", "bad..tag", "--target", "main", "-R", "acme/app",
        ],
    );
    assert!(err.contains("tag name"), "{err}");
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            "release",
            "create",
            "v1",
            "-R",
            "acme/app",
            "missing-file.bin",
        ],
    );
    assert!(err.contains("missing-file.bin is not a file"), "{err}");

    // login --token-stdin saves a 0600 file that later commands use without PFAI_TOKEN.
    let out = cli.run(
        &root,
        None,
        &["login", "--token-stdin"],
        Some(&format!("{}\n", s.admin)),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = cli.config.join("pfai/config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let out = cli.run(&root, None, &["repo", "view", "acme/app"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli.run(
        &root,
        None,
        &["login", "--token-stdin"],
        Some("pfai_wrong\n"),
    );
    assert!(!out.status.success());
    cli.run(&root, None, &["logout"], None);
    assert!(!cfg.exists());

    // Completions.
    let out = cli.ok(&root, &["completion", "bash"]);
    assert!(out.contains("pfai") && out.contains("release"));
    // --help on a command carries an example.
    let out = cli.ok(&root, &["release", "download", "--help"]);
    assert!(out.contains("Example: pfai release download"), "{out}");
    // Every command and subcommand's --help carries an example.
    let top = cli.ok(&root, &["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{commands:?}");
    for c in &commands {
        let help = cli.ok(&root, &[c.as_str(), "--help"]);
        assert!(help.contains("Example: "), "pfai {c} --help has no example");
        for sub in help
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|s| *s != "help")
        {
            let h = cli.ok(&root, &[c.as_str(), sub, "--help"]);
            assert!(
                h.contains("Example: "),
                "pfai {c} {sub} --help has no example"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_pushes_pulls_and_reads_manifests() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "bench"]);
    cli.ok(&root, &["repo", "create", "bench/blobs"]);
    let url = s.url.clone();
    let base = ["--url", url.as_str(), "--token", s.admin.as_str()];
    // Monolithic and chunked pushes with verified pulls, then pull-only of the same seed.
    let out = cli.ok(
        &root,
        &[
            &[
                "bench",
                "blobs",
                "--size",
                "3MiB",
                "--count",
                "2",
                "--concurrency",
                "2",
                "--json",
            ][..],
            &base,
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    // The machine facts come with the figures.
    assert!(v["facts"]["cpus"].as_u64().unwrap() >= 1, "{v}");
    assert!(v["facts"]["memory_gib"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["facts"]["url"], url.as_str());
    let v = &v["phases"];
    assert_eq!(v[0]["phase"], "push");
    assert_eq!(v[0]["bytes"], 6 << 20);
    assert_eq!(
        (v[1]["phase"].as_str(), v[1]["errors"].as_u64()),
        (Some("pull"), Some(0))
    );
    assert_eq!(v[1]["verified"], true);
    let out = cli.ok(
        &root,
        &[
            &[
                "bench", "blobs", "--size", "3MiB", "--count", "1", "--chunk", "1MiB", "--json",
            ][..],
            &base,
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let v = &v["phases"];
    assert_eq!(
        (v[0]["phase"].as_str(), v[1]["errors"].as_u64()),
        (Some("push (chunked)"), Some(0))
    );
    // Every digest algorithm, monolithic and chunked: the server verifies each push with the
    // algorithm named, the pulls are verified with it, and the digests say which it was.
    for alg in ["blake3", "sha512", "sha256"] {
        for chunk in [None, Some("1MiB")] {
            let mut args = vec![
                "bench", "blobs", "--size", "3MiB", "--count", "1", "--digest", alg, "--json",
            ];
            args.extend(chunk.map(|c| ["--chunk", c]).into_iter().flatten());
            let out = cli.ok(&root, &[&args[..], &base].concat());
            let v: Value = serde_json::from_str(&out).unwrap();
            let d = v["digests"][0].as_str().unwrap();
            assert!(d.starts_with(&format!("{alg}:")), "{alg} {chunk:?}: {v}");
            let p = &v["phases"];
            assert_eq!(
                (
                    p[1]["phase"].as_str(),
                    p[1]["errors"].as_u64(),
                    p[1]["verified"].as_bool()
                ),
                (Some("pull"), Some(0), Some(true)),
                "{alg} {chunk:?}: {v}"
            );
            // Checked with the hash crates directly, not pfai's own hasher.
            let r = crate::registry::Oci::new(&s, Some(&s.admin))
                .req(reqwest::Method::GET, &format!("/v2/bench/blobs/blobs/{d}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), reqwest::StatusCode::OK, "{d}");
            assert_eq!(r.headers()["docker-content-digest"], d, "{d}");
            let bytes = r.bytes().await.unwrap();
            assert_eq!(bytes.len(), 3 << 20);
            let hex = match alg {
                "blake3" => blake3::hash(&bytes).to_hex().to_string(),
                "sha512" => hex::encode(<sha2::Sha512 as sha2::Digest>::digest(&bytes)),
                _ => hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)),
            };
            assert_eq!(d, format!("{alg}:{hex}"));
        }
    }
    let out = cli.ok(
        &root,
        &[
            &[
                "bench",
                "blobs",
                "--size",
                "3MiB",
                "--count",
                "2",
                "--pull-only",
                "--pulls",
                "2",
            ][..],
            &base,
        ]
        .concat(),
    );
    assert!(out.lines().any(|l| l.starts_with("pull")), "{out}");
    // One summary line per figure, saying whether the data was checked.
    assert!(
        out.lines()
            .any(|l| l.starts_with("pull: ") && l.contains("MiB/s") && l.ends_with("; verified)")),
        "{out}"
    );
    let out = cli.ok(
        &root,
        &[
            &[
                "bench",
                "manifests",
                "--duration",
                "1s",
                "--concurrency",
                "4",
                "--json",
            ][..],
            &base,
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let v = &v["phases"];
    assert!(v[0]["requests_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v[0]["errors"], 0);
    assert_eq!(v[0]["verified"], true);

    // Mixed: all three kinds run at once on a schedule, each reported, none failing.
    let out = cli.ok(
        &root,
        &[
            &[
                "bench",
                "mixed",
                "--duration",
                "2s",
                "--rate",
                "60",
                "--mix",
                "1:2:3",
                "--push-size",
                "256KiB",
                "--pull-size",
                "512KiB",
                "--pool",
                "2",
                "--json",
            ][..],
            &base,
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["target_rate"], 60.0);
    assert!(v["started"].as_u64().unwrap() >= 100, "{v}");
    let kinds: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["errors"], 0, "{p}");
            assert_eq!(p["verified"], true, "{p}");
            p["phase"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        kinds,
        ["mixed push", "mixed pull", "mixed manifest GET"],
        "{v}"
    );
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[&["bench", "mixed", "--mix", "0:0:0"][..], &base].concat(),
    );
    assert!(err.contains("PUSH:PULL:MANIFEST"), "{err}");
    // A registry that refuses us: the bench fails with the registry's answer, exit 1.
    let (code, err) = cli.fails(
        &root,
        None,
        &[
            "bench",
            "blobs",
            "--url",
            &url,
            "--token",
            "pfai_wrong",
            "--size",
            "1MiB",
            "--count",
            "1",
        ],
    );
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

/// `pfai repo create acme/x.git` used to succeed and leave a repository cloned as `x.git.git`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cli_repo_create_refuses_names_ending_in_dot_git() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    let (code, err) = cli.fails(&root, Some(&s.admin), &["repo", "create", "acme/x.git"]);
    assert_eq!(code, 1);
    assert!(err.contains(".git"), "{err}");
    let (st, _) = s.get("/api/v1/forge/acme/x.git", Some(&s.admin)).await;
    assert_eq!(st, reqwest::StatusCode::NOT_FOUND);
    cli.ok(&root, &["repo", "create", "acme/x"]);
}

async fn upload_asset(s: &TestServer, tag: &str, name: &str, data: &[u8]) -> u64 {
    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name(name.to_owned());
    let r = s
        .req(
            reqwest::Method::POST,
            &format!("/api/v1/forge/acme/app/releases/{tag}/assets"),
            Some(&s.admin),
        )
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_u64().unwrap()
}

fn findings(out: &Output) -> (Value, Vec<(String, String)>) {
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut list: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let what = ["tag", "path"]
                .iter()
                .find_map(|k| f[*k].as_str())
                .unwrap_or("")
                .to_owned();
            (f["kind"].as_str().unwrap().to_owned(), what)
        })
        .collect();
    list.sort();
    (v, list)
}

/// fsck checked only blobs: a missing or altered asset file, stray files in assets/ and
/// uploads/, and a tag left by a kill between creating it and recording its release went
/// unnoticed. Each is reported, `--repair` fixes what is safe, and a pushed tag is never touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_reports_and_repairs_asset_upload_and_release_tag_damage() {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let first = git_ok(&wc, &["rev-parse", "HEAD"]);
    std::fs::write(wc.join("second"), "2\n").unwrap();
    git_ok(&wc, &["add", "second"]);
    git_ok(&wc, &["commit", "-q", "-m", "second"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let second = git_ok(&wc, &["rev-parse", "HEAD"]);
    git_ok(&wc, &["tag", "pushed", &first]);
    git_ok(&wc, &["push", "-q", "origin", "pushed"]);
    let base = "/api/v1/forge/acme/app/releases";
    let (st, rel) = s
        .post(
            base,
            Some(&s.admin),
            serde_json::json!({"tagName": "v1", "targetCommit": "main"}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{rel}");
    let rid = rel["id"].as_u64().unwrap();
    let gone = upload_asset(&s, "v1", "gone.bin", b"will be deleted").await;
    let bad = upload_asset(&s, "v1", "bad.bin", b"will be altered").await;
    upload_asset(&s, "v1", "good.bin", b"stays intact").await;
    // A draft published later: its tag is created then, and leaves no record either.
    let (st, _) = s
        .post(
            base,
            Some(&s.admin),
            serde_json::json!({"tagName": "v2", "targetCommit": first, "draft": true}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED);
    let (st, _) = s
        .call(
            reqwest::Method::PATCH,
            &format!("{base}/v2"),
            Some(&s.admin),
            Some(serde_json::json!({"draft": false})),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::OK);

    // Damage the stopped server's data dir by hand.
    let dir = s.stop().await;
    let data = dir.path().join("data");
    let rel_dir = data.join(format!("assets/acme/app/{rid}"));
    std::fs::remove_file(rel_dir.join(format!("{gone}-gone.bin"))).unwrap();
    let bad_path = rel_dir.join(format!("{bad}-bad.bin"));
    let mut perm = std::fs::metadata(&bad_path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&bad_path, perm).unwrap();
    std::fs::write(&bad_path, b"will be ALTERED").unwrap();
    std::fs::write(rel_dir.join("999-stray.bin"), b"stray").unwrap();
    std::fs::create_dir_all(data.join("assets/acme/app/42")).unwrap();
    std::fs::write(data.join("assets/acme/app/42/7-old.tar.gz"), b"old").unwrap();
    // What a GC killed between its commit and its unlinks leaves: a blob file without a row.
    let stray_hex = "ab".repeat(32);
    let stray_blob = data.join(format!("blobs/sha256/ab/{stray_hex}"));
    std::fs::create_dir_all(stray_blob.parent().unwrap()).unwrap();
    std::fs::write(&stray_blob, b"collected").unwrap();
    // Files outside the asset layout are not ours: never reported, never removed.
    let foreign = [
        data.join("assets/NOTES.txt"),
        data.join("assets/acme/app/notes.txt"),
        data.join(format!("assets/acme/app/{rid}/checksums-by-hand.txt")),
    ];
    for f in &foreign {
        std::fs::write(f, b"operator's").unwrap();
    }
    // What a kill between the tag and the release's commit leaves: the tag and its record
    // (v9); a record whose tag was moved by a push since (v8); one whose tag was never made (v7).
    let bare = data.join("repos/acme/app.git");
    git_ok(&bare, &["update-ref", "refs/tags/v9", &first]);
    git_ok(&bare, &["update-ref", "refs/tags/v8", &second]);
    {
        let db = pfai::storage::Db::open(&data.join("pfai.redb")).unwrap();
        let commit = first.clone();
        db.write(move |txn| {
            let mut t = txn.open_table(pfai::storage::tables::PENDING_RELEASE_TAGS)?;
            for tag in ["v9", "v8", "v7"] {
                t.insert(("acme/app", tag), commit.as_str())?;
            }
            Ok::<_, pfai::storage::StorageError>(())
        })
        .await
        .unwrap();
    }

    let s = TestServer::start_in(dir, |_| {}).await;
    // Stray upload data (the startup purge removes such files, so it is dropped after start).
    std::fs::write(s.data_dir().join("uploads/0123abcd"), b"partial").unwrap();
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let expected: Vec<(String, String)> = {
        let mut v: Vec<(String, String)> = [
            ("asset_corrupt", format!("acme/app/{rid}/{bad}-bad.bin")),
            ("asset_missing", format!("acme/app/{rid}/{gone}-gone.bin")),
            ("orphan_asset_file", format!("acme/app/{rid}/999-stray.bin")),
            ("orphan_asset_file", "acme/app/42/7-old.tar.gz".into()),
            ("orphan_blob_file", format!("blobs/sha256/ab/{stray_hex}")),
            ("orphan_release_tag", "v9".into()),
            ("orphan_upload_file", "uploads/0123abcd".into()),
            ("stale_pending_tag", "v7".into()),
            ("stale_pending_tag", "v8".into()),
        ]
        .into_iter()
        .map(|(k, w)| (k.to_owned(), w))
        .collect();
        v.sort();
        v
    };
    let out = cli.run(&root, Some(&s.admin), &["fsck", "--json"], None);
    assert_eq!(out.status.code(), Some(1));
    let (v, found) = findings(&out);
    assert_eq!(found, expected, "{v:#}");
    assert_eq!(v["problems"], 9);
    let corrupt = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "asset_corrupt")
        .unwrap();
    assert_eq!(corrupt["repository"], "acme/app");
    assert_eq!(corrupt["release"], "v1");
    assert_eq!(corrupt["asset"], "bad.bin");
    // The human form names each finding too.
    let out = cli.run(&root, Some(&s.admin), &["fsck"], None);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("orphan_release_tag: repository acme/app, tag v9"),
        "{text}"
    );
    // Nothing was changed by a plain fsck.
    assert!(rel_dir.join("999-stray.bin").exists());

    let out = cli.run(&root, Some(&s.admin), &["fsck", "--repair", "--json"], None);
    assert_eq!(out.status.code(), Some(1), "damaged assets remain");
    let (v, found) = findings(&out);
    assert_eq!(found, expected, "{v:#}");
    for f in v["findings"].as_array().unwrap() {
        let damaged = f["kind"] == "asset_corrupt" || f["kind"] == "asset_missing";
        assert_eq!(f["repaired"].is_null(), damaged, "{f}");
    }
    assert_eq!(v["problems"], 2);
    assert!(!rel_dir.join("999-stray.bin").exists());
    assert!(!s
        .data_dir()
        .join("assets/acme/app/42/7-old.tar.gz")
        .exists());
    assert!(!s.data_dir().join("uploads/0123abcd").exists());
    for f in &foreign {
        assert!(f.exists(), "{} was removed", f.display());
    }
    assert!(!stray_blob.exists());
    let refs = git_ok(&bare_of(&s), &["show-ref", "--tags"]);
    assert!(!refs.contains("refs/tags/v9"), "{refs}");
    assert!(
        refs.contains(&format!("{first} refs/tags/pushed")),
        "{refs}"
    );
    assert!(refs.contains(&format!("{second} refs/tags/v8")), "{refs}");
    assert!(refs.contains("refs/tags/v1") && refs.contains("refs/tags/v2"));

    // The operator deletes the damaged assets (re-uploading is theirs to do): clean.
    for id in [gone, bad] {
        let (st, _) = s
            .call(
                reqwest::Method::DELETE,
                &format!("{base}/v1/assets/{id}"),
                Some(&s.admin),
                None,
            )
            .await;
        assert_eq!(st, reqwest::StatusCode::NO_CONTENT);
    }
    let out = cli.run(&root, Some(&s.admin), &["fsck", "--json"], None);
    let (v, found) = findings(&out);
    assert!(out.status.success(), "{v:#}");
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(v["assetsChecked"], 1);
    let (st, rel) = s.get(&format!("{base}/v1"), None).await;
    assert_eq!(st, reqwest::StatusCode::OK);
    let url = rel["assets"][0]["downloadUrl"].as_str().unwrap().to_owned();
    let got = s.http.get(url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(got.as_ref(), b"stays intact");
}

fn bare_of(s: &TestServer) -> std::path::PathBuf {
    s.data_dir().join("repos/acme/app.git")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_assets_uploads_downloads_verifies_and_cleans_up() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(&root, &["repo", "create", "acme/app"]);
    let wc = s.checkout("acme/app", &s.admin);
    crate::harness::git_ok(&wc, &["push", "-q", "origin", "main"]);
    let url = s.url.clone();
    let base = [
        "--url",
        url.as_str(),
        "--token",
        s.admin.as_str(),
        "--repo",
        "acme/app",
    ];
    let out = cli.ok(
        &root,
        &[
            &[
                "bench",
                "assets",
                "--size",
                "2MiB",
                "--count",
                "3",
                "--concurrency",
                "2",
                "--pulls",
                "2",
                "--json",
            ][..],
            &base,
        ]
        .concat(),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    let up = &v["phases"][0];
    assert_eq!(up["phase"], "asset upload");
    assert_eq!(up["bytes"], 6 << 20);
    assert_eq!(
        (up["errors"].as_u64(), up["verified"].as_bool()),
        (Some(0), Some(true))
    );
    let down = &v["phases"][1];
    assert_eq!(down["phase"], "asset download");
    assert_eq!(down["bytes"], 12 << 20, "each asset twice");
    assert_eq!(
        (down["errors"].as_u64(), down["verified"].as_bool()),
        (Some(0), Some(true))
    );
    // The release made for the run is gone afterwards...
    let tag = v["release"].as_str().unwrap();
    let (st, _) = s
        .get(
            &format!("/api/v1/forge/acme/app/releases/{tag}"),
            Some(&s.admin),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::NOT_FOUND);
    // ...unless --keep; a text run ends with one summary line per figure.
    let out = cli.ok(
        &root,
        &[
            &[
                "bench", "assets", "--size", "1MiB", "--count", "1", "--keep",
            ][..],
            &base,
        ]
        .concat(),
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("asset upload: ") && l.contains("MiB/s")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("asset download: ")),
        "{out}"
    );
    let (_, list) = s
        .get("/api/v1/forge/acme/app/releases", Some(&s.admin))
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    // A repository without commits cannot hold the draft: the server's reason is shown.
    cli.ok(&root, &["repo", "create", "acme/empty"]);
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            "bench",
            "assets",
            "--url",
            &url,
            "--token",
            &s.admin,
            "--repo",
            "acme/empty",
        ],
    );
    assert!(err.contains("default branch"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bench_tags_makes_tags_and_checks_every_page_it_times() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "bench"]);
    cli.ok(&root, &["repo", "create", "bench/blobs"]);
    let url = s.url.clone();
    let base = ["--url", url.as_str(), "--token", s.admin.as_str()];
    let args = [
        "bench",
        "tags",
        "--count",
        "250",
        "--page",
        "100",
        "--duration",
        "300ms",
        "--concurrency",
        "4",
        "--json",
    ];
    let out = cli.ok(&root, &[&args[..], &base].concat());
    let v: Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["errors"], 0, "{p}");
            p["phase"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        names,
        [
            "tag PUT",
            "tags/list first page",
            "tags/list middle page",
            "tags/list last page"
        ]
    );
    assert_eq!(
        v["phases"][0]["requests_per_s"].as_f64().map(|r| r > 0.0),
        Some(true)
    );
    let (_, list) = s
        .get("/v2/bench/blobs/tags/list?n=1000", Some(&s.admin))
        .await;
    assert_eq!(
        list["tags"].as_array().map(Vec::len),
        Some(251),
        "250 and `bench`"
    );
    // --from makes only the tags above it.
    let grow = [
        "bench",
        "tags",
        "--count",
        "260",
        "--from",
        "250",
        "--page",
        "100",
        "--duration",
        "100ms",
        "--json",
    ];
    let out = cli.ok(&root, &[&grow[..], &base].concat());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["phases"][0]["requests_per_s"].as_f64().map(|r| r > 0.0),
        Some(true)
    );
    let (_, list) = s
        .get("/v2/bench/blobs/tags/list?n=1000", Some(&s.admin))
        .await;
    assert_eq!(list["tags"].as_array().map(Vec::len), Some(261));
    // --existing reuses them; a page that does not hold the tags expected is an error.
    let existing = [
        "bench",
        "tags",
        "--count",
        "260",
        "--page",
        "100",
        "--duration",
        "300ms",
        "--existing",
        "--json",
    ];
    let out = cli.ok(&root, &[&existing[..], &base].concat());
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["phases"].as_array().map(Vec::len), Some(3));
    // Its summary lines count tag pages in requests, not in MiB.
    let out = cli.ok(&root, &[&existing[..existing.len() - 1], &base].concat());
    for pos in ["first", "middle", "last"] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(&format!("tags/list {pos} page: "))
                    && l.contains(" req/s (")
                    && l.ends_with("; verified)")),
            "{out}"
        );
    }
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &[
            &[
                "bench",
                "tags",
                "--count",
                "300",
                "--existing",
                "--duration",
                "100ms",
            ][..],
            &base,
        ]
        .concat(),
    );
    assert!(err.contains("expected"), "{err}");
}

//! `gh release` habits against a real server and a real checkout: the flags as a `gh` user
//! types them, the default target, short SHAs, and errors that name the real cause.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::harness::{git_ok, Cli, TestServer};

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// An org, a repo, and a pushed checkout of it; returns the checkout and its head commit.
fn setup(s: &TestServer, cli: &Cli) -> (std::path::PathBuf, String) {
    let root = s.dir.path().to_owned();
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(&root, &["repo", "create", "acme/app"]);
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let head = git_ok(&wc, &["rev-parse", "HEAD"]);
    (wc, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gh_release_create_list_view_flags_work_as_gh_users_type_them() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let (wc, head) = setup(&s, &cli);
    std::fs::write(wc.join("app.bin"), b"binary bytes").unwrap();

    // No --target and no tag: made on the default branch, like gh. -t -n -p, file#label.
    cli.ok(
        &wc,
        &[
            "release",
            "create",
            "v1.0.0",
            "-t",
            "One",
            "-n",
            "## Notes\n- a",
            "-p",
            "app.bin#Linux build",
        ],
    );
    let v = json(&cli.ok(&wc, &["release", "view", "v1.0.0", "--json"]));
    assert_eq!(v["tagExists"], true);
    assert_eq!(v["tagCommit"], head.as_str(), "{v}");
    assert_eq!(v["name"], "One");
    assert_eq!(v["prerelease"], true);
    assert_eq!(v["assets"][0]["label"], "Linux build", "{v}");
    // --json with a field list prints only those, gh's names included.
    let v = json(&cli.ok(
        &wc,
        &[
            "release",
            "view",
            "v1.0.0",
            "--json",
            "tagName,isPrerelease",
        ],
    ));
    assert_eq!(
        v,
        serde_json::json!({"tagName": "v1.0.0", "isPrerelease": true})
    );
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "view", "v1.0.0", "--json", "nope"],
    );
    assert!(
        err.contains("unknown JSON field") && err.contains("tagName"),
        "{err}"
    );

    // -F - (stdin), -d; a short SHA as --target.
    let short = &head[..7];
    let out = cli.run(
        &wc,
        Some(&s.admin),
        &[
            "release", "create", "v1.1.0", "-F", "-", "-d", "--target", short,
        ],
        Some("from stdin\n"),
    );
    assert!(out.status.success(), "{}", text(&out).1);
    let v = json(&cli.ok(&wc, &["release", "view", "v1.1.0", "--json", "body,draft"]));
    assert_eq!(
        v,
        serde_json::json!({"body": "from stdin\n", "draft": true})
    );
    cli.ok(
        &wc,
        &[
            "release", "create", "v2.0.0", "--target", short, "--notes", "2",
        ],
    );
    let v = json(&cli.ok(&wc, &["release", "view", "v2.0.0", "--json", "tagCommit"]));
    assert_eq!(v["tagCommit"], head.as_str());

    // list: -L, --exclude-drafts, --exclude-pre-releases, --json fields.
    let tags = |args: &[&str]| -> Vec<String> {
        let mut a = vec!["release", "list", "--json", "tagName"];
        a.extend_from_slice(args);
        json(&cli.ok(&wc, &a))
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["tagName"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(tags(&[]).len(), 3);
    assert_eq!(tags(&["-L", "1"]).len(), 1);
    let mut t = tags(&["--exclude-drafts"]);
    t.sort();
    assert_eq!(t, ["v1.0.0", "v2.0.0"]);
    assert_eq!(
        tags(&["--exclude-drafts", "--exclude-pre-releases"]),
        ["v2.0.0"]
    );
    let plain = json(&cli.ok(&wc, &["release", "list", "--json"]));
    assert!(
        plain[0].get("assets").is_some(),
        "plain --json keeps every field"
    );

    // --verify-tag refuses a tag that does not exist, and creates nothing.
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "create", "v9", "--verify-tag"],
    );
    assert!(
        err.contains("does not exist") && err.contains("--verify-tag"),
        "{err}"
    );
    cli.fails(&wc, Some(&s.admin), &["release", "view", "v9"]);
    cli.ok(&wc, &["tag", "create", "v3.0.0", "--target", "main"]);
    cli.ok(&wc, &["release", "create", "v3.0.0", "--verify-tag"]);

    // view on a pipe prints the notes as written.
    let out = cli.ok(&wc, &["release", "view", "v1.0.0"]);
    assert!(out.contains("## Notes"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn download_delete_and_upload_refuse_what_gh_refuses() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let (wc, _) = setup(&s, &cli);
    std::fs::write(wc.join("a.txt"), b"text a").unwrap();
    std::fs::write(wc.join("b.bin"), b"bin b").unwrap();
    std::fs::write(wc.join("c.zip"), b"zip c").unwrap();
    std::fs::create_dir(wc.join("dist")).unwrap();

    // A directory as an asset is named as one; nothing is created.
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "create", "v1", "a.txt", "dist"],
    );
    assert!(err.contains("dist is a directory"), "{err}");
    cli.fails(&wc, Some(&s.admin), &["release", "view", "v1"]);
    cli.ok(&wc, &["release", "create", "v1", "a.txt", "b.bin", "c.zip"]);

    // upload checks every file before uploading any.
    std::fs::write(wc.join("d.txt"), b"d").unwrap();
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "upload", "v1", "d.txt", "missing.txt"],
    );
    assert!(
        err.contains("missing.txt") && err.contains("nothing was uploaded"),
        "{err}"
    );
    let v = json(&cli.ok(&wc, &["release", "view", "v1", "--json", "assets"]));
    assert_eq!(
        v["assets"].as_array().unwrap().len(),
        3,
        "d.txt was not uploaded"
    );

    // download: repeatable -p, refusing to overwrite, --skip-existing, --clobber, -O.
    let out_dir = wc.join("out");
    let out_s = out_dir.to_str().unwrap();
    cli.ok(
        &wc,
        &[
            "release", "download", "v1", "-p", "*.txt", "-p", "*.bin", "-D", out_s,
        ],
    );
    assert_eq!(std::fs::read(out_dir.join("a.txt")).unwrap(), b"text a");
    assert_eq!(std::fs::read(out_dir.join("b.bin")).unwrap(), b"bin b");
    assert!(!out_dir.join("c.zip").exists());
    std::fs::write(out_dir.join("a.txt"), b"mine").unwrap();
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "download", "v1", "-D", out_s],
    );
    assert!(
        err.contains("already exists") && err.contains("--clobber"),
        "{err}"
    );
    assert!(
        !out_dir.join("c.zip").exists(),
        "refused before downloading anything"
    );
    cli.ok(
        &wc,
        &["release", "download", "v1", "-D", out_s, "--skip-existing"],
    );
    assert_eq!(std::fs::read(out_dir.join("a.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read(out_dir.join("c.zip")).unwrap(), b"zip c");
    cli.ok(
        &wc,
        &["release", "download", "v1", "-D", out_s, "--clobber"],
    );
    assert_eq!(std::fs::read(out_dir.join("a.txt")).unwrap(), b"text a");
    let stdout = cli.ok(
        &wc,
        &["release", "download", "v1", "-p", "*.zip", "-O", "-"],
    );
    assert_eq!(stdout, "zip c");
    let one = wc.join("one.bin");
    cli.ok(
        &wc,
        &[
            "release",
            "download",
            "v1",
            "-p",
            "b.*",
            "-O",
            one.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&one).unwrap(), b"bin b");
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "download", "v1", "-O", "-"],
    );
    assert!(err.contains("--output takes one asset"), "{err}");

    // delete: without a terminal and without -y gh refuses; --cleanup-tag removes the tag.
    let (_, err) = cli.fails(&wc, Some(&s.admin), &["release", "delete", "v1"]);
    assert!(err.contains("--yes required"), "{err}");
    cli.ok(&wc, &["release", "view", "v1"]);
    cli.ok(&wc, &["release", "delete", "v1", "-y", "--cleanup-tag"]);
    let tags = json(&cli.ok(&wc, &["tag", "list", "--json"]));
    assert_eq!(tags.as_array().unwrap().len(), 0, "{tags}");
}

/// A 404 HTML server: what a wrong port or a proxy's default page answers.
async fn not_pfai_server() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let body = "<html><body>Not Found</body></html>";
                let reply = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_name_the_server_the_remote_and_the_flag_not_a_symptom() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let root = s.dir.path().to_owned();
    let args = ["repo", "view", "acme/app"];

    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let (_, err) = text(&cli.run_at(&closed, &root, Some(&s.admin), &args, None));
    assert!(
        err.contains(&format!("cannot connect to {closed}")),
        "{err}"
    );
    assert!(
        err.contains("`pfai serve` running") && err.contains("PFAI_URL"),
        "{err}"
    );
    // No scheme.
    let bare = s.url.trim_start_matches("http://");
    let (_, err) = text(&cli.run_at(bare, &root, Some(&s.admin), &args, None));
    assert!(
        err.contains("no scheme") && err.contains(&format!("http://{bare}")),
        "{err}"
    );
    // Another web server.
    let other = not_pfai_server().await;
    let (_, err) = text(&cli.run_at(&other, &root, Some(&s.admin), &args, None));
    assert!(err.contains("does not look like a pfai server"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // Repo inference: the remote on PFAI_URL's host, whatever its name; which one is said.
    cli.ok(&root, &["org", "create", "acme"]);
    cli.ok(&root, &["repo", "create", "acme/app"]);
    let wc = s.checkout("acme/app", &s.admin);
    git_ok(&wc, &["remote", "rename", "origin", "pfai"]);
    git_ok(
        &wc,
        &["remote", "add", "origin", "git@github.com:acme/app.git"],
    );
    let out = cli.run(&wc, Some(&s.admin), &["release", "list"], None);
    let (_, err) = text(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("git remote pfai"), "{err}");
    git_ok(&wc, &["remote", "remove", "pfai"]);
    let (_, err) = cli.fails(&wc, Some(&s.admin), &["release", "list"]);
    assert!(err.contains("no git remote is on the server"), "{err}");
    assert!(err.contains("origin → github.com"), "{err}");
    let (_, err) = cli.fails(Path::new("/"), Some(&s.admin), &["release", "list"]);
    assert!(err.contains("-R owner/repo"), "{err}");

    // An empty repository has no default branch: the message names the CLI flag.
    let (_, err) = cli.fails(
        &root,
        Some(&s.admin),
        &["release", "create", "v1", "-R", "acme/app"],
    );
    assert!(
        err.contains("--target") && !err.contains("targetCommit"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ambiguous_short_sha_is_refused_by_name() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let (wc, _) = setup(&s, &cli);
    // Write blobs into the server's repository until two share a 4-digit prefix.
    let bare = s.data_dir().join("repos/acme/app.git");
    assert!(bare.is_dir(), "{}", bare.display());
    let mut seen = std::collections::HashMap::new();
    let mut prefix = None;
    for batch in 0..20 {
        let files: Vec<String> = (0..200)
            .map(|i| {
                let p = wc.join(format!("blob-{batch}-{i}"));
                std::fs::write(&p, format!("{batch} {i}")).unwrap();
                p.to_string_lossy().into_owned()
            })
            .collect();
        let mut a = vec![
            "--git-dir",
            bare.to_str().unwrap(),
            "hash-object",
            "-w",
            "--",
        ];
        a.extend(files.iter().map(String::as_str));
        for id in git_ok(&wc, &a).lines() {
            if let Some(prev) = seen.insert(id[..4].to_owned(), id.to_owned()) {
                if prev != id {
                    prefix = Some(id[..4].to_owned());
                }
            }
        }
        if prefix.is_some() {
            break;
        }
    }
    let prefix = prefix.expect("a shared 4-digit prefix among 4000 objects");
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "create", "v1", "--target", &prefix],
    );
    assert!(err.contains("ambiguous"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_closed_pipe_ends_the_client_quietly() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let (wc, _) = setup(&s, &cli);
    cli.ok(&wc, &["tag", "create", "v1", "--target", "main"]);
    let exe = env!("CARGO_BIN_EXE_pfai");
    for cmd in [
        format!("{exe} completion bash | head -1"),
        // The reader is gone before the first write: EPIPE every time.
        format!("(sleep 0.5; exec {exe} completion bash) | true"),
        format!("(sleep 0.5; exec {exe} tag list) | true"),
    ] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!("{cmd}; echo \"status=${{PIPESTATUS[0]}}\" >&2"))
            .current_dir(&wc)
            .env("PFAI_URL", &s.url)
            .env("PFAI_TOKEN", &s.admin)
            .env("XDG_CONFIG_HOME", &cli.config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{cmd}: {err}"
        );
        assert!(
            err.contains("status=0") || err.contains("status=141"),
            "{cmd}: {err}"
        );
    }
}

/// The tags of the server's copy of `acme/app`, as `git ls-remote` sees them: name -> commit.
fn remote_tags(wc: &Path) -> std::collections::HashMap<String, String> {
    git_ok(wc, &["ls-remote", "--tags", "origin"])
        .lines()
        .filter_map(|l| {
            let (sha, name) = l.split_once('\t')?;
            Some((name.strip_prefix("refs/tags/")?.to_owned(), sha.to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edit_tag_and_target_move_a_release_like_gh_release_edit() {
    let s = TestServer::start().await;
    let cli = Cli::new(&s);
    let (wc, first) = setup(&s, &cli);
    git_ok(&wc, &["commit", "-q", "--allow-empty", "-m", "second"]);
    git_ok(&wc, &["push", "-q", "origin", "main"]);
    let second = git_ok(&wc, &["rev-parse", "HEAD"]);
    let view = |tag: &str| json(&cli.ok(&wc, &["release", "view", tag, "--json"]));

    // A draft is renamed and re-targeted; its tag is made only when it is published.
    cli.ok(
        &wc,
        &["release", "create", "v1.0.0-rc", "-d", "--target", &first],
    );
    cli.ok(
        &wc,
        &[
            "release",
            "edit",
            "v1.0.0-rc",
            "--tag",
            "v1.0.0",
            "--target",
            "main",
        ],
    );
    let v = view("v1.0.0");
    assert_eq!(v["tagName"], "v1.0.0");
    assert_eq!(v["targetCommit"], second.as_str(), "{v}");
    assert_eq!(v["tagExists"], false);
    let (_, err) = cli.fails(&wc, Some(&s.admin), &["release", "view", "v1.0.0-rc"]);
    assert!(err.contains("v1.0.0-rc"), "{err}");
    cli.ok(&wc, &["release", "edit", "v1.0.0", "--draft=false"]);
    assert_eq!(remote_tags(&wc)["v1.0.0"], second);

    // A published release moved to a new tag gets it made at its commit; the old tag stays.
    std::fs::write(wc.join("a.bin"), b"asset bytes").unwrap();
    cli.ok(&wc, &["release", "upload", "v1.0.0", "a.bin"]);
    let out = cli.ok(&wc, &["release", "edit", "v1.0.0", "--tag", "v1.0.1"]);
    assert!(out.contains("/releases/tag/v1.0.1"), "{out}");
    let tags = remote_tags(&wc);
    assert_eq!(tags["v1.0.1"], second);
    assert_eq!(tags["v1.0.0"], second, "the old tag is left as it was");
    let v = view("v1.0.1");
    assert_eq!(v["tagExists"], true);
    assert_eq!(v["assets"][0]["name"], "a.bin", "{v}");
    let dl = s.dir.path().join("dl");
    let dl_s = dl.to_str().unwrap();
    cli.ok(&wc, &["release", "download", "v1.0.1", "--dir", dl_s]);
    assert_eq!(std::fs::read(dl.join("a.bin")).unwrap(), b"asset bytes");
    // Naming its own tag again moves nothing, even after the tag moved in git.
    git_ok(&wc, &["fetch", "-q", "--tags", "origin"]);
    git_ok(&wc, &["tag", "-f", "v1.0.1", &first]);
    git_ok(&wc, &["push", "-q", "-f", "origin", "v1.0.1"]);
    cli.ok(
        &wc,
        &[
            "release", "edit", "v1.0.1", "--tag", "v1.0.1", "-t", "renamed",
        ],
    );
    let v = view("v1.0.1");
    assert_eq!(v["targetCommit"], second.as_str(), "{v}");
    assert_eq!(v["tagCommit"], first.as_str(), "{v}");
    git_ok(&wc, &["tag", "-f", "v1.0.1", &second]);
    git_ok(&wc, &["push", "-q", "-f", "origin", "v1.0.1"]);
    // The old name is free again for another release.
    cli.ok(&wc, &["release", "create", "v1.0.0", "-n", "again"]);

    // Moving onto an existing tag takes that tag's commit; a target naming another commit
    // is refused, since the tag would not move.
    git_ok(&wc, &["tag", "v0.9.0", &first]);
    git_ok(&wc, &["push", "-q", "origin", "v0.9.0"]);
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &[
            "release", "edit", "v1.0.1", "--tag", "v0.9.0", "--target", &second,
        ],
    );
    assert!(err.contains("already exists at"), "{err}");
    assert_eq!(view("v1.0.1")["tagName"], "v1.0.1", "nothing changed");
    cli.ok(&wc, &["release", "edit", "v1.0.1", "--tag", "v0.9.0"]);
    let v = view("v0.9.0");
    assert_eq!(v["targetCommit"], first.as_str(), "{v}");
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "edit", "v0.9.0", "--target", &second],
    );
    assert!(err.contains("already exists at"), "{err}");

    // A tag another release is anchored on, or `latest`, is refused by name.
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "edit", "v0.9.0", "--tag", "v1.0.0"],
    );
    assert!(
        err.contains("a release for tag v1.0.0 already exists"),
        "{err}"
    );
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "edit", "v0.9.0", "--tag", "latest"],
    );
    assert!(err.contains("reserved"), "{err}");

    // An immutable release keeps its tag and commit, and no tag is made for the attempt.
    cli.ok(
        &wc,
        &["repo", "edit", "acme/app", "--immutable-releases=true"],
    );
    cli.ok(&wc, &["release", "create", "v2.0.0"]);
    let (_, err) = cli.fails(
        &wc,
        Some(&s.admin),
        &["release", "edit", "v2.0.0", "--tag", "v2.0.1"],
    );
    assert!(err.contains("immutable"), "{err}");
    assert!(!remote_tags(&wc).contains_key("v2.0.1"));
    assert_eq!(view("v2.0.0")["tagName"], "v2.0.0");
}

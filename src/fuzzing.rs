//! Fuzz bodies, as plain library functions: `fuzz/fuzz_targets/*.rs` call them under libFuzzer,
//! and `cargo test` replays every committed corpus file and past crash through them on stable.
//! Each must never panic on any input; where a parser accepts, the invariants it promises are
//! asserted here.

use crate::domain::registry::{manifest, upload};
use crate::http::reply::{parse_range, RangeSpec};
use crate::ids::{AssetName, Digest, GitTagName, OciName, OciTag, Reference, RepoPath, Slug};

/// A fuzz body.
pub type Target = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("manifest", manifest),
    ("ids", ids),
    ("ranges", ranges),
    ("codec", codec),
    ("push_commands", push_commands),
    ("storage_model", storage_model),
    ("bundle_reader", bundle_reader),
    ("multipart_upload", multipart_upload),
];

/// Manifest parse + validate. The first byte picks the Content-Type.
pub fn manifest(data: &[u8]) {
    let Some((sel, body)) = data.split_first() else {
        return;
    };
    let ct = [
        Some(manifest::OCI_MANIFEST),
        Some(manifest::OCI_INDEX),
        Some(manifest::DOCKER_MANIFEST),
        Some(manifest::DOCKER_LIST),
        None,
    ][*sel as usize % 5];
    if let Ok(p) = manifest::parse(ct, body) {
        // Accepted documents are of a known type, and every digest they name is valid.
        assert!(matches!(
            p.media_type.as_str(),
            manifest::OCI_MANIFEST
                | manifest::OCI_INDEX
                | manifest::DOCKER_MANIFEST
                | manifest::DOCKER_LIST
        ));
        for d in p.blobs.iter().chain(p.children.iter()) {
            assert_eq!(&Digest::parse(&d.to_string()).expect("re-parse"), d);
        }
        assert!(manifest::is_index(&p.media_type) || p.children.is_empty());
    }
}

/// Digest, reference and name validators: accepted values round-trip and are path-safe.
pub fn ids(data: &[u8]) {
    let s = String::from_utf8_lossy(data);
    if let Ok(d) = Digest::parse(&s) {
        assert_eq!(d.to_string(), s);
        assert!(!d.hex().contains(['/', '.']));
    }
    if let Ok(n) = OciName::parse(&s) {
        assert!(n.as_str().len() <= 255);
        assert!(!n
            .as_str()
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".."));
        let _ = n.repo();
    }
    if let Ok(t) = OciTag::parse(&s) {
        assert!(t.as_str().len() <= 128);
    }
    let _ = Reference::parse(&s);
    if let Ok(t) = GitTagName::parse(&s) {
        assert!(!t.as_str().starts_with('-') && !t.as_str().contains(".."));
    }
    if let Ok(a) = AssetName::parse(&s) {
        assert!(!a.as_str().contains(['/', '\\', '\0']));
    }
    if let Ok(sl) = Slug::parse(&s) {
        assert!(!sl.as_str().contains(['/', '.']) || !sl.as_str().starts_with('.'));
    }
    let _ = RepoPath::parse_key(&s);
}

/// `Range` (downloads) and `Content-Range` (uploads) parsers: bounds always hold.
pub fn ranges(data: &[u8]) {
    if data.len() < 8 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap_or([0; 8])) % (1 << 40);
    let s = String::from_utf8_lossy(&data[8..]);
    if let RangeSpec::Partial(a, b) = parse_range(Some(&s), size) {
        assert!(a <= b && b < size);
    }
    if let Some(r) = upload::parse_content_range(&s) {
        assert!(r.end >= r.start);
    }
}

/// The record codec decodes arbitrary bytes into every record type without panicking, and
/// what decodes re-encodes to a decodable value (the body lives with the codec, in `storage`).
pub fn codec(data: &[u8]) {
    crate::storage::fuzz::codec(data)
}

/// Differential: the server's reader of a push's command section against a model of how
/// `git receive-pack` reads it ([`git_model`]), then the pre-receive hook on what git hands it.
/// The first byte picks the pusher's role and the protection patterns, the second the tags of
/// immutable releases; the rest is the push body. Whenever the server's reader lets a push
/// through, git must apply no update the reader did not see (the reader's names choose which
/// immutable tags reach the hook); and the hook must refuse every move or delete of a protected
/// tag by a non-admin, and of an immutable tag by anyone, among the updates git applies.
pub fn push_commands(data: &[u8]) {
    use crate::domain::git_tag::{pre_receive, HookInput};
    use crate::git::http_backend::parse_ref_updates;
    const PATTERNS: [&str; 4] = ["v*", "release-*", "*", "v1.[0-9]"];
    const IMMUTABLE: [&str; 3] = ["v1", "v1.0", "r"];
    let [sel, imm, body @ ..] = data else { return };
    let role = ["read", "write", "admin"][usize::from(sel % 3)];
    let patterns: Vec<&str> = (0..4)
        .filter(|i| sel >> (2 + i) & 1 == 1)
        .map(|i| PATTERNS[i])
        .collect();
    let immutable: Vec<&str> = (0..3)
        .filter(|i| imm >> i & 1 == 1)
        .map(|i| IMMUTABLE[i])
        .collect();

    let gate = parse_ref_updates(body);
    if let Ok((ups, _)) = &gate {
        for u in ups {
            assert!([40, 64].contains(&u.old.len()) && [40, 64].contains(&u.new.len()));
            assert!(!u.name.is_empty() && !u.name.contains([' ', '\n', '\0']));
        }
    }
    let (Ok((ups, true)), Ok(cmds)) = (&gate, git_model::read_commands(body)) else {
        return;
    };
    let seen: std::collections::HashSet<&str> = ups.iter().map(|u| u.name.as_str()).collect();
    let applied: Vec<&git_model::Command> = cmds.iter().filter(|c| git_model::applied(c)).collect();
    for c in &applied {
        assert!(
            seen.contains(c.name.as_str()),
            "git applies {c:?}, which the server's reader did not see ({ups:?})"
        );
    }

    // The hook, on the lines git writes to its standard input for the updates it applies.
    let stdin: String = applied
        .iter()
        .map(|c| format!("{} {} {}\n", c.old, c.new, c.name))
        .collect();
    let rules = serde_json::to_string(&patterns).unwrap_or_default();
    let locked = serde_json::to_string(&immutable).unwrap_or_default();
    let verdict = pre_receive(&HookInput {
        role: Some(role),
        rules_json: Some(&rules),
        push_cert: None,
        updates: &stdin,
        immutable_json: Some(&locked),
    });
    let zero = |s: &str| s.bytes().all(|b| b == b'0');
    let globs: Vec<globset::GlobMatcher> = patterns
        .iter()
        .filter_map(|p| globset::Glob::new(p).ok().map(|g| g.compile_matcher()))
        .collect();
    for c in &applied {
        let Some(tag) = c.name.strip_prefix("refs/tags/") else {
            continue;
        };
        // Only a real creation (no old value, a new one) is free.
        let changes_existing = !zero(&c.old) || zero(&c.new);
        if immutable.contains(&tag) {
            assert!(
                verdict.is_err(),
                "the hook let {c:?} touch an immutable tag"
            );
        }
        if changes_existing && role != "admin" && globs.iter().any(|g| g.is_match(tag)) {
            assert!(
                verdict.is_err(),
                "the hook let a {role} change protected {c:?}"
            );
        }
    }
}

mod git_model;

/// Model-based: random operations on a redb table of codec records, compared with a
/// `BTreeMap` after every committed transaction (the body lives in `storage`).
pub fn storage_model(data: &[u8]) {
    crate::storage::fuzz::storage_model(data)
}

/// The bundle reader of `pfai bundle import`: any bytes as the uploaded tar. A file it accepts
/// staged only blobs whose content hashes to their name, under the scratch directory.
pub fn bundle_reader(data: &[u8]) {
    let mut rnd = [0u8; 8];
    crate::util::fill_random(&mut rnd);
    let dir = std::env::temp_dir().join(format!("pfai-fuzz-bundle-{}", hex::encode(rnd)));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    if let Some(blobs) = crate::domain::bundle::read_and_plan(data, &dir) {
        for (digest, path) in blobs {
            assert!(
                path.starts_with(&dir),
                "{path:?} outside the scratch directory"
            );
            let d = Digest::parse(&digest).expect("staged digests are valid");
            let bytes = std::fs::read(&path).expect("staged blob");
            assert_eq!(Digest::of(d.algorithm(), &bytes), d);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A release asset upload's multipart body, any bytes, through warp's reader and the rules
/// pfai applies to each part: whatever file name, field name or part content type it carries,
/// an accepted asset has a name without path separators, a `Content-Disposition` that is a
/// valid header value, a content type that is one too, and a label without control characters.
/// The first byte picks the form's boundary.
pub fn multipart_upload(data: &[u8]) {
    multipart_accepted(data);
}

/// `multipart_upload`, returning how many parts the rules accepted (so a test can tell the
/// seeds reach them).
fn multipart_accepted(data: &[u8]) -> usize {
    use crate::domain::release::UploadMeta;
    use futures_util::StreamExt;
    static RT: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    const BOUNDARIES: [&str; 4] = ["pfai", "X-BOUNDARY", "----WebKitFormBoundary7MA4YWxk", "a"];
    let Some(rt) = RT
        .get_or_init(|| tokio::runtime::Builder::new_current_thread().build().ok())
        .as_ref()
    else {
        return 0;
    };
    let [sel, body @ ..] = data else { return 0 };
    let boundary = BOUNDARIES[usize::from(sel % 4)];
    rt.block_on(async {
        let form = warp::test::request()
            .method("POST")
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .filter(&warp::multipart::form().max_length(1 << 20))
            .await;
        let Ok(mut form) = form else { return 0 };
        let mut accepted = 0;
        while let Some(Ok(part)) = form.next().await {
            let meta = UploadMeta {
                name: crate::http::part_file_name(&part),
                label: Some(part.name().to_owned()),
                content_type: part.content_type().map(str::to_owned),
            };
            if let Ok(a) = meta.check() {
                assert!(!a.name.as_str().contains(['/', '\\', '\0']), "{a:?}");
                let cd = crate::http::reply::content_disposition(a.name.as_str());
                assert!(
                    warp::http::HeaderValue::from_str(&cd).is_ok(),
                    "Content-Disposition {cd:?} is not a header value"
                );
                assert!(
                    warp::http::HeaderValue::from_str(&a.content_type).is_ok(),
                    "content type {:?} is not a header value",
                    a.content_type
                );
                assert!(!a.label.chars().any(char::is_control), "{a:?}");
                accepted += 1;
            }
            let mut bytes = part.stream();
            while let Some(Ok(_)) = bytes.next().await {}
        }
        accepted
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed corpus file (`data-fixtures/fuzz/<target>/`) and every past
    /// crash (`fuzz/artifacts/<target>/`) through its target.
    #[test]
    fn corpora_and_past_crashes_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut replayed = 0;
        for (name, f) in TARGETS {
            for dir in [
                root.join("data-fixtures/fuzz").join(name),
                root.join("fuzz/artifacts").join(name),
            ] {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for e in rd.flatten() {
                    let data = std::fs::read(e.path()).unwrap();
                    f(&data);
                    replayed += 1;
                }
            }
        }
        assert!(
            replayed >= TARGETS.len(),
            "every target has seeds ({replayed} replayed)"
        );
    }

    /// A target whose seeds never get past warp's reader would fuzz the reader, not our rules.
    #[test]
    fn multipart_seeds_reach_the_asset_rules() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data-fixtures/fuzz/multipart_upload");
        let seed = |n: &str| std::fs::read(dir.join(n)).unwrap();
        assert_eq!(multipart_accepted(&seed("plain")), 1);
        assert_eq!(
            multipart_accepted(&seed("path-in-name")),
            1,
            "the path is cut"
        );
        assert_eq!(
            multipart_accepted(&seed("no-filename")),
            0,
            "a name is required"
        );
    }
}

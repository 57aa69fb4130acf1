//! Tag lookup and one tag-list page with 100 000 tags in one repository (must cost O(page),
//! not O(tags)), and release-list pages with 10 000 releases. Data is written straight into the
//! tables once; the measured calls go through the domain like a request would.

use criterion::{criterion_group, criterion_main, Criterion};
use pfai::domain::registry::{self, manifest};
use pfai::domain::{release, Core, Limits, Page};
use pfai::http::render;
use pfai::ids::{OciName, OciTag, Reference, RepoPath};
use pfai::storage::records::{ManifestMeta, Release, Repo};
use pfai::storage::{codec, tables};

const TAGS: usize = 100_000;
const RELEASES: u64 = 10_000;

fn setup(rt: &tokio::runtime::Runtime) -> (tempfile::TempDir, std::sync::Arc<Core>) {
    let dir = tempfile::tempdir().unwrap();
    let core = Core::open(
        &dir.path().join("data"),
        &dir.path().join("assets"),
        Limits::default(),
    )
    .unwrap();
    let repo = RepoPath::new("bench", "app").unwrap();
    core.git.init(&repo).unwrap();
    rt.block_on(core.db.write(|txn| {
        let r = Repo {
            id: 1,
            owner: "bench".into(),
            name: "app".into(),
            private: false,
            description: String::new(),
            created_at: 0,
        };
        txn.open_table(tables::REPOS)?
            .insert("bench/app", codec::encode(&r)?.as_slice())?;
        let m = ManifestMeta {
            media_type: manifest::OCI_MANIFEST.into(),
            artifact_type: None,
            subject: None,
            blobs: vec![],
            children: vec![],
            platforms: vec![],
            total_size: 0,
            annotations_json: "null".into(),
            pushed_at: 0,
            bytes: b"{}".to_vec(),
        };
        let d = format!("sha256:{}", "a".repeat(64));
        txn.open_table(tables::MANIFESTS)?
            .insert(("bench/app", d.as_str()), codec::encode(&m)?.as_slice())?;
        let mut tags = txn.open_table(tables::OCI_TAGS)?;
        for i in 0..TAGS {
            tags.insert(("bench/app", format!("t{i:06}").as_str()), d.as_str())?;
        }
        let mut rel = txn.open_table(tables::RELEASES)?;
        let mut order = txn.open_table(tables::RELEASE_ORDER)?;
        let mut by_tag = txn.open_table(tables::RELEASES_BY_TAG)?;
        for id in 1..=RELEASES {
            let r = Release {
                id,
                repo: "bench/app".into(),
                tag_name: format!("v{id}"),
                name: format!("v{id}"),
                body: "notes".into(),
                draft: id % 50 == 0,
                prerelease: id % 7 == 0,
                author: "admin".into(),
                target_commit: String::new(),
                commit_sha: String::new(),
                created_at: id as i64,
                published_at: (id % 50 != 0).then_some(id as i64),
            };
            rel.insert(id, codec::encode(&r)?.as_slice())?;
            let ord = if r.published_at.is_some() {
                u64::MAX - id
            } else {
                0
            };
            order.insert(("bench/app", ord, u64::MAX - id), ())?;
            by_tag.insert(("bench/app", r.tag_name.as_str()), id)?;
        }
        Ok::<_, pfai::storage::StorageError>(())
    }))
    .unwrap();
    (dir, core)
}

fn lookups(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (_dir, core) = setup(&rt);
    let name = OciName::parse("bench/app").unwrap();
    let repo = RepoPath::new("bench", "app").unwrap();
    let mut g = c.benchmark_group("lookups");
    g.bench_function("tag_lookup_of_100k", |b| {
        let r = Reference::Tag(OciTag::parse("t099999").unwrap());
        b.iter(|| {
            rt.block_on(registry::get_manifest(&core, None, &name, &r))
                .unwrap()
        })
    });
    g.bench_function("tag_list_page_100_of_100k_first", |b| {
        b.iter(|| {
            rt.block_on(registry::list_tags(&core, None, &name, Some(100), None))
                .unwrap()
        })
    });
    g.bench_function("tag_list_page_100_of_100k_middle", |b| {
        b.iter(|| {
            rt.block_on(registry::list_tags(
                &core,
                None,
                &name,
                Some(100),
                Some("t050000".into()),
            ))
            .unwrap()
        })
    });
    g.bench_function("release_list_page_1_of_10k", |b| {
        let p = Page::new(Some(1), Some(30)).unwrap();
        b.iter(|| {
            let list = rt.block_on(release::list(&core, None, &repo, p)).unwrap();
            render::releases("http://x", &repo, &list)
        })
    });
    g.bench_function("release_list_page_100_of_10k", |b| {
        let p = Page::new(Some(100), Some(30)).unwrap();
        b.iter(|| {
            let list = rt.block_on(release::list(&core, None, &repo, p)).unwrap();
            render::releases("http://x", &repo, &list)
        })
    });
    g.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);

//! Blob store write + verify (SHA-256 overlapped with the disk write), mmap read throughput,
//! and manifest parse + validate for each fixture kind. Fixed seeds; run with `cargo bench`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pfai::ids::{Algorithm, Digest};
use pfai::storage::blob::{BlobStore, Hasher, Sink, TempGuard};

const MIB: usize = 1 << 20;

fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn blob_store(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = BlobStore::open(dir.path()).unwrap();
    let size = 64 * MIB;
    let chunks: Vec<bytes::Bytes> = data(size, 7)
        .chunks(MIB)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let mut g = c.benchmark_group("blob_store");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let mut n = 0u64;
    g.bench_function("write_verify_publish_64MiB", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(async {
                let path = store.uploads_dir().join(format!("bench-{n}"));
                let file = std::fs::File::create(&path).unwrap();
                let guard = TempGuard::new(path);
                let mut sink = Sink::start(file, Hasher::new(Algorithm::Sha256));
                for c in &chunks {
                    sink.push(c.clone()).await.unwrap();
                }
                let w = sink.finish(true).await.unwrap();
                let d = w.hasher.digest();
                store.publish(guard.path(), &d, w.bytes).unwrap();
                drop(guard);
                store.remove(&d).unwrap();
            })
        })
    });
    // mmap read: publish once, then touch every byte of a zero-copy slice.
    let all: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let d = Digest::sha256_of(&all);
    let p = store.uploads_dir().join("read-src");
    std::fs::write(&p, &all).unwrap();
    store.publish(&p, &d, all.len() as u64).unwrap();
    g.bench_function("mmap_read_64MiB", |b| {
        b.iter(|| {
            let m = store.map(&d).unwrap();
            let s = m.slice(0, m.len());
            // Read every byte (8 at a time), as a consumer of the blob would.
            s.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .fold(0u64, u64::wrapping_add)
        })
    });
    g.finish();
}

fn manifest_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_parse");
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data-fixtures/oci/manifests/valid");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for p in files {
        let bytes = std::fs::read(&p).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let ct = v["mediaType"]
            .as_str()
            .unwrap_or(pfai::domain::registry::manifest::OCI_MANIFEST)
            .to_owned();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &bytes, |b, bytes| {
            b.iter(|| pfai::domain::registry::manifest::parse(Some(&ct), bytes).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, blob_store, manifest_parse);
criterion_main!(benches);

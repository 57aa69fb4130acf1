//! The OCI registry at /v2/ against the real server: raw HTTP for every spec path and failure
//! case, and the real `skopeo` for end-to-end copies.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{require_tool, TestServer};

fn sha(data: &[u8]) -> String {
    pfai::ids::Digest::sha256_of(data).to_string()
}

/// A raw-HTTP OCI client with basic auth (also used by the BLAKE3 tests).
pub(crate) struct Oci<'a> {
    s: &'a TestServer,
    token: Option<String>,
}

impl<'a> Oci<'a> {
    pub(crate) fn new(s: &'a TestServer, token: Option<&str>) -> Self {
        Oci {
            s,
            token: token.map(str::to_owned),
        }
    }

    pub(crate) fn req(&self, m: Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.s.http.request(m, format!("{}{path}", self.s.url));
        match &self.token {
            Some(t) => r.basic_auth("ignored", Some(t)),
            None => r,
        }
    }

    async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let d = sha(data);
        let r = self
            .req(
                Method::POST,
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
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

    async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        ct: &str,
        body: &[u8],
    ) -> reqwest::Response {
        self.req(Method::PUT, &format!("/v2/{name}/manifests/{reference}"))
            .header("content-type", ct)
            .body(body.to_vec())
            .send()
            .await
            .unwrap()
    }

    /// Pushes config + one layer + an OCI manifest; returns (manifest bytes, digest).
    async fn push_image(&self, name: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, String) {
        let config = br#"{"architecture":"amd64","os":"linux"}"#;
        let cd = self.push_blob(name, config).await;
        let ld = self.push_blob(name, layer).await;
        let m = image_manifest(&cd, config.len(), &ld, layer.len());
        let r = self.put_manifest(name, tag, OCI_MANIFEST, &m).await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        let d = sha(&m);
        (m, d)
    }
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn image_manifest(cd: &str, clen: usize, ld: &str, llen: usize) -> Vec<u8> {
    // Deliberately odd whitespace: the registry must keep the bytes exactly.
    format!(
        "{{ \"schemaVersion\": 2,\n  \"mediaType\": \"{OCI_MANIFEST}\",\n  \"config\": {{\"mediaType\": \"application/vnd.oci.image.config.v1+json\", \"digest\": \"{cd}\", \"size\": {clen}}},\n  \"layers\": [{{\"mediaType\": \"application/vnd.oci.image.layer.v1.tar+gzip\", \"digest\": \"{ld}\", \"size\": {llen}}}] }}\n"
    )
    .into_bytes()
}

/// The status and the first OCI error code of a response.
pub(crate) async fn error_code(r: reqwest::Response) -> (StatusCode, String) {
    let st = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (st, v["errors"][0]["code"].as_str().unwrap_or("").to_owned())
}

async fn setup() -> TestServer {
    let s = TestServer::start().await;
    s.repo("acme", "app", false).await;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn base_endpoint_and_access() {
    let s = setup().await;
    s.repo("acme", "secret", true).await;
    let reader = s.user("reader").await;
    let outsider = s.user("outsider").await;
    s.collaborator("acme/app", "reader", "read").await;
    let admin = Oci::new(&s, Some(&s.admin));
    let anon = Oci::new(&s, None);

    let r = anon.req(Method::GET, "/v2/").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert_eq!(
        admin
            .req(Method::GET, "/v2/")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let bad = Oci::new(&s, Some("pfai_wrong"));
    assert_eq!(
        error_code(bad.req(Method::GET, "/v2/").send().await.unwrap()).await,
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED".into())
    );

    let (_, d) = admin.push_image("acme/app", "v1", b"layer").await;
    admin.push_image("acme/secret", "v1", b"secret layer").await;

    // Public: anonymous pulls work; pushes need write.
    assert_eq!(
        anon.req(Method::GET, "/v2/acme/app/manifests/v1")
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let (st, code) = error_code(
        anon.req(Method::POST, "/v2/acme/app/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    let rd = Oci::new(&s, Some(&reader));
    let (st, code) = error_code(
        rd.req(Method::POST, "/v2/acme/app/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));
    let (st, code) = error_code(
        rd.req(Method::DELETE, &format!("/v2/acme/app/manifests/{d}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (StatusCode::FORBIDDEN, "DENIED"));

    // Private: anonymous gets a challenge, outsiders NAME_UNKNOWN, same as a missing repo.
    let (st, code) = error_code(
        anon.req(Method::GET, "/v2/acme/secret/manifests/v1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (st, code.as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    let out = Oci::new(&s, Some(&outsider));
    let secret = error_code(
        out.req(Method::GET, "/v2/acme/secret/manifests/v1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    let missing = error_code(
        out.req(Method::GET, "/v2/acme/nothere/manifests/v1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(secret, (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into()));
    assert_eq!(secret, missing);
    let (st, code) = error_code(
        out.req(Method::POST, "/v2/acme/secret/blobs/uploads/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));

    // The catalog lists only what the caller can read.
    let cat: Value = out
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cat["repositories"], json!(["acme/app"]));
    let cat: Value = admin
        .req(Method::GET, "/v2/_catalog")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cat["repositories"], json!(["acme/app", "acme/secret"]));

    // Path tricks are rejected as names before any authorization (raw requests: an HTTP
    // client library would normalise the dots itself).
    for path in [
        "/v2/acme/app/../secret/tags/list",
        "/v2/acme/app/%2e%2e/secret/tags/list",
        "/v2/acme%2Fsecret/x/tags/list",
        "/v2/acme//secret/tags/list",
        "/v2/ACME/app/tags/list",
    ] {
        let (status, body) = raw_get(&s, path, &s.admin).await;
        assert!(
            status == 400 && body.contains("NAME_INVALID"),
            "{path}: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_every_way_and_digest_checks() {
    let s = setup().await;
    let o = Oci::new(&s, Some(&s.admin));
    let n = "acme/app";

    // Monolithic, and the zero-byte blob.
    let d = o.push_blob(n, b"hello").await;
    let r = o
        .req(Method::HEAD, &format!("/v2/{n}/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-length"], "5");
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let empty = o.push_blob(n, b"").await;
    let r = o
        .req(Method::GET, &format!("/v2/{n}/blobs/{empty}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            r.status(),
            r.headers()["content-length"].to_str().unwrap().to_owned()
        ),
        (StatusCode::OK, "0".into())
    );

    // POST + PUT with the body.
    let r = o
        .req(Method::POST, &format!("/v2/{n}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(r.headers()["range"], "0-0");
    let data = b"post then put".to_vec();
    let r = o
        .req(Method::PUT, &format!("{loc}?digest={}", sha(&data)))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        r.headers()["location"].to_str().unwrap(),
        format!("/v2/{n}/blobs/{}", sha(&data))
    );

    // Chunked: status 0-0 when empty, in-order chunks, an out-of-order chunk refused with 416.
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let r = o
        .req(Method::POST, &format!("/v2/{n}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = o.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(
        (r.status(), r.headers()["range"].to_str().unwrap()),
        (StatusCode::NO_CONTENT, "0-0")
    );
    let r = o
        .req(Method::PATCH, &loc)
        .header("content-range", "0-99999")
        .header("content-type", "application/octet-stream")
        .body(big[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status(), r.headers()["range"].to_str().unwrap()),
        (StatusCode::ACCEPTED, "0-99999")
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = o
        .req(Method::PATCH, &loc)
        .header("content-range", "150000-199999")
        .body(big[150_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.headers()["range"], "0-99999");
    assert!(r.headers().get("location").is_some());
    let r = o.req(Method::GET, &loc).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-99999", "nothing was appended");
    // A PATCH without Content-Range streams on (the docker client's way).
    let r = o
        .req(Method::PATCH, &loc)
        .body(big[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["range"], "0-199999");
    // Hostile Content-Range values: 400/416, never a crash, nothing appended.
    for bad in [
        "abc",
        "5-1",
        "-5",
        "0-99999999999999999999999",
        "bytes=0-1",
        " - ",
    ] {
        let r = o
            .req(Method::PATCH, &loc)
            .header("content-range", bad)
            .body(vec![1u8; 2])
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == StatusCode::BAD_REQUEST
                || r.status() == StatusCode::RANGE_NOT_SATISFIABLE,
            "{bad}: {}",
            r.status()
        );
    }
    // The last chunk with the PUT, out of order: 416; in order: 201.
    let r = o
        .req(Method::PUT, &format!("{loc}?digest={}", sha(&big)))
        .header("content-range", "250000-299999")
        .body(big[250_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = o
        .req(Method::PUT, &format!("{loc}?digest={}", sha(&big)))
        .header("content-range", "200000-299999")
        .body(big[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "{}",
        r.text().await.unwrap()
    );
    let got = o
        .req(Method::GET, &format!("/v2/{n}/blobs/{}", sha(&big)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), big.as_slice());
    // Range on blobs.
    let r = o
        .req(Method::GET, &format!("/v2/{n}/blobs/{}", sha(&big)))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &big[10..20]);

    // A wrong digest at the final PUT: DIGEST_INVALID, nothing stored, session gone.
    let r = o
        .req(Method::POST, &format!("/v2/{n}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let claimed = sha(b"something else");
    let r = o
        .req(Method::PUT, &format!("{loc}?digest={claimed}"))
        .body(b"actual".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    for d in [claimed.clone(), sha(b"actual")] {
        assert_eq!(
            o.req(Method::HEAD, &format!("/v2/{n}/blobs/{d}"))
                .send()
                .await
                .unwrap()
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(
        error_code(o.req(Method::GET, &loc).send().await.unwrap()).await,
        (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN".into())
    );
    assert!(!s
        .data_dir()
        .join("blobs/sha256")
        .join(&sha(b"actual")[7..9])
        .join(&sha(b"actual")[7..])
        .exists());
    // Same for monolithic.
    let r = o
        .req(
            Method::POST,
            &format!("/v2/{n}/blobs/uploads/?digest={claimed}"),
        )
        .body(b"actual".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );

    // Malformed digests wherever they appear.
    let sixty_three = format!("sha256:{}", "a".repeat(63));
    let upper = format!("sha256:{}", "A".repeat(64));
    for bad in [
        "sha256:../../x",
        upper.as_str(),
        sixty_three.as_str(),
        "md5:abc",
        "sha256:",
        "%2e%2e",
    ] {
        if !bad.contains('%') {
            // (reqwest would normalise a percent-encoded dot segment in the path itself.)
            let (st, code) = error_code(
                o.req(Method::GET, &format!("/v2/{n}/blobs/{bad}"))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert!(
                st == StatusCode::BAD_REQUEST
                    && (code == "DIGEST_INVALID" || code == "NAME_INVALID"),
                "{bad}: {st} {code}"
            );
        }
        let (st, code) = error_code(
            o.req(
                Method::POST,
                &format!("/v2/{n}/blobs/uploads/?digest={bad}"),
            )
            .body("x")
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            "{bad}"
        );
        let (st, code) = error_code(
            o.req(
                Method::POST,
                &format!("/v2/{n}/blobs/uploads/?mount={bad}&from=acme/app"),
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        assert_eq!(
            (st, code.as_str()),
            (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            "{bad}"
        );
    }

    // Cancel.
    let r = o
        .req(Method::POST, &format!("/v2/{n}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        o.req(Method::DELETE, &loc).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        o.req(Method::GET, &loc).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // sha512 uploads.
    let r = o
        .req(
            Method::POST,
            &format!("/v2/{n}/blobs/uploads/?digest-algorithm=sha512"),
        )
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let d512 = pfai::ids::Digest::of(pfai::ids::Algorithm::Sha512, b"five twelve").to_string();
    let r = o
        .req(Method::PUT, &format!("{loc}?digest={d512}"))
        .body(b"five twelve".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/{n}/blobs/{d512}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blobs_are_per_repository_and_mounts_check_access() {
    let s = setup().await;
    s.repo("acme", "other", false).await;
    s.repo("acme", "private", true).await;
    let dev = s.user("dev").await;
    s.collaborator("acme/other", "dev", "write").await;
    s.collaborator("acme/app", "dev", "read").await;
    let admin = Oci::new(&s, Some(&s.admin));
    let d = admin.push_blob("acme/app", b"shared layer").await;
    let p = admin.push_blob("acme/private", b"private layer").await;

    // Present in the store, but not linked to acme/other.
    let (st, code) = error_code(
        admin
            .req(Method::GET, &format!("/v2/acme/other/blobs/{d}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((st, code.as_str()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"));

    let o = Oci::new(&s, Some(&dev));
    // Mount from a repository dev can read: 201.
    let r = o
        .req(
            Method::POST,
            &format!("/v2/acme/other/blobs/uploads/?mount={d}&from=acme/app"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/acme/other/blobs/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    // From a private repository dev cannot read: 202 (a normal upload), no link.
    let r = o
        .req(
            Method::POST,
            &format!("/v2/acme/other/blobs/uploads/?mount={p}&from=acme/private"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.headers()["location"]
        .to_str()
        .unwrap()
        .contains("/blobs/uploads/"));
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/acme/other/blobs/{p}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    // Identical content is stored once.
    let files = walk(&s.data_dir().join("blobs"));
    assert_eq!(files, 2, "two distinct blobs");

    // Deleting the blob in one repository keeps it in the other.
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/acme/other/blobs/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/acme/other/blobs/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        admin
            .req(Method::HEAD, &format!("/v2/acme/app/blobs/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

async fn raw_get(s: &TestServer, path: &str, token: &str) -> (u16, String) {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"));
    let mut sock = tokio::net::TcpStream::connect(s.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n");
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    sock.read_to_string(&mut out).await.unwrap();
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, out)
}

fn walk(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            n += walk(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manifests_are_validated_and_byte_exact() {
    let s = setup().await;
    let o = Oci::new(&s, Some(&s.admin));
    let n = "acme/app";
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cd = o.push_blob(n, config).await;
    let ld = sha(b"not pushed");
    let m = image_manifest(&cd, config.len(), &ld, 10);
    // Missing layer: MANIFEST_BLOB_UNKNOWN naming it; no tag.
    let r = o.put_manifest(n, "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(v["errors"][0]["detail"]["digest"], ld.as_str());
    assert_eq!(
        o.req(Method::GET, &format!("/v2/{n}/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );

    let ld = o.push_blob(n, b"not pushed").await;
    let m = image_manifest(&cd, config.len(), &ld, 10);
    // Content-Type disagreeing with mediaType, or unknown: MANIFEST_INVALID.
    for ct in [OCI_INDEX, "text/plain"] {
        assert_eq!(
            error_code(o.put_manifest(n, "v1", ct, &m).await).await,
            (StatusCode::BAD_REQUEST, "MANIFEST_INVALID".into()),
            "{ct}"
        );
    }
    // By digest, with the wrong digest: DIGEST_INVALID.
    assert_eq!(
        error_code(o.put_manifest(n, &sha(b"zzz"), OCI_MANIFEST, &m).await).await,
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID".into())
    );
    // Duplicate keys and JSON bombs: MANIFEST_INVALID.
    let dup = String::from_utf8(m.clone()).unwrap().replacen(
        "\"layers\"",
        "\"layers\": [], \"layers\"",
        1,
    );
    assert_eq!(
        error_code(o.put_manifest(n, "v1", OCI_MANIFEST, dup.as_bytes()).await)
            .await
            .1,
        "MANIFEST_INVALID"
    );
    assert_eq!(
        error_code(
            o.put_manifest(n, "v1", OCI_MANIFEST, "[".repeat(100_000).as_bytes())
                .await
        )
        .await
        .1,
        "MANIFEST_INVALID"
    );

    // Accepted, byte-exact, with several tags at once.
    let d = sha(&m);
    let r = o
        .req(Method::PUT, &format!("/v2/{n}/manifests/{d}?tag=a&tag=b"))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    for reference in ["a", "b", d.as_str()] {
        let r = o
            .req(Method::GET, &format!("/v2/{n}/manifests/{reference}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], d.as_str());
        let body = r.bytes().await.unwrap();
        assert_eq!(body.as_ref(), m.as_slice());
        assert_eq!(sha(&body), d);
    }
    let r = o
        .req(Method::HEAD, &format!("/v2/{n}/manifests/a"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        m.len().to_string()
    );

    // Tag grammar: 128 characters fine, 129 not.
    let t128 = "t".repeat(128);
    assert_eq!(
        o.put_manifest(n, &t128, OCI_MANIFEST, &m).await.status(),
        StatusCode::CREATED
    );
    let t129 = "t".repeat(129);
    assert_eq!(
        error_code(o.put_manifest(n, &t129, OCI_MANIFEST, &m).await).await,
        (StatusCode::BAD_REQUEST, "TAG_INVALID".into())
    );
    assert_eq!(
        error_code(o.put_manifest(n, "-x", OCI_MANIFEST, &m).await)
            .await
            .1,
        "TAG_INVALID"
    );

    // Reading a manifest under a name that is not a valid tag: it cannot exist, so 404
    // MANIFEST_UNKNOWN (not 400), for GET and HEAD alike.
    assert_eq!(
        error_code(
            o.req(
                Method::GET,
                &format!("/v2/{n}/manifests/.INVALID_MANIFEST_NAME")
            )
            .send()
            .await
            .unwrap()
        )
        .await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );
    let r = o
        .req(Method::HEAD, &format!("/v2/{n}/manifests/{t129}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // Size limit: exactly 4 MiB accepted, one byte more refused while reading (with and
    // without Content-Length).
    let limit = 4 << 20;
    let padded = |total: usize| -> Vec<u8> {
        let base = String::from_utf8(image_manifest(&cd, config.len(), &ld, 10)).unwrap();
        let head =
            base.trim_end().trim_end_matches('}').to_owned() + ", \"annotations\": {\"pad\": \"";
        let tail = "\"} }";
        let fill = total - head.len() - tail.len();
        format!("{head}{}{tail}", "x".repeat(fill)).into_bytes()
    };
    let exact = padded(limit);
    assert_eq!(exact.len(), limit);
    assert_eq!(
        o.put_manifest(n, "big", OCI_MANIFEST, &exact)
            .await
            .status(),
        StatusCode::CREATED
    );
    let over = padded(limit + 1);
    assert_eq!(
        o.put_manifest(n, "big2", OCI_MANIFEST, &over)
            .await
            .status(),
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        over.chunks(65536).map(|c| Ok(c.to_vec())).collect();
    let r = o
        .req(Method::PUT, &format!("/v2/{n}/manifests/big3"))
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // An index: children must exist; a listed child cannot be deleted; deleting by digest
    // removes its tags.
    let missing_child = sha(b"nope");
    let idx = |children: &[(&str, usize)]| -> Vec<u8> {
        let ms: Vec<Value> = children
            .iter()
            .map(|(d, size)| json!({"mediaType": OCI_MANIFEST, "digest": d, "size": size, "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": ms}))
            .unwrap()
    };
    let bad = idx(&[(&missing_child, 10)]);
    assert_eq!(
        error_code(o.put_manifest(n, "multi", OCI_INDEX, &bad).await)
            .await
            .1,
        "MANIFEST_BLOB_UNKNOWN"
    );
    let good = idx(&[(&d, m.len())]);
    assert_eq!(
        o.put_manifest(n, "multi", OCI_INDEX, &good).await.status(),
        StatusCode::CREATED
    );
    let r = o
        .req(Method::DELETE, &format!("/v2/{n}/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/{n}/manifests/multi"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/{n}/manifests/{}", sha(&good)))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/{n}/manifests/{d}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        error_code(
            o.req(Method::GET, &format!("/v2/{n}/manifests/a"))
                .send()
                .await
                .unwrap()
        )
        .await,
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN".into())
    );

    // Docker schema 2 manifests and lists are accepted too.
    let docker = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","size":{},"digest":"{cd}"}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":10,"digest":"{ld}"}}]}}"#,
        config.len()
    );
    let r = o
        .put_manifest(
            n,
            "docker",
            "application/vnd.docker.distribution.manifest.v2+json",
            docker.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let list = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":{},"digest":"{}","platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}}]}}"#,
        docker.len(),
        sha(docker.as_bytes())
    );
    let r = o
        .put_manifest(
            n,
            "dlist",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            list.as_bytes(),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, tags) = s
        .get("/api/v1/forge/acme/app/packages/acme%2Fapp/tags", None)
        .await;
    let dl = tags
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tag"] == "dlist")
        .unwrap()
        .clone();
    assert_eq!(dl["platforms"], json!(["linux/arm64/v8"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_lists_referrers_and_packages() {
    let s = setup().await;
    let o = Oci::new(&s, Some(&s.admin));
    let n = "acme/app";
    let (m, d) = o.push_image(n, "t0", b"layer").await;
    for i in 1..5 {
        let r = o.put_manifest(n, &format!("t{i}"), OCI_MANIFEST, &m).await;
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    let r = o
        .req(Method::GET, &format!("/v2/{n}/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert!(
        link.contains("last=t1") && link.contains("rel=\"next\""),
        "{link}"
    );
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"name": n, "tags": ["t0", "t1"]}));
    let v: Value = o
        .req(Method::GET, &format!("/v2/{n}/tags/list?n=2&last=t1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!(["t2", "t3"]));
    let r = o
        .req(Method::GET, &format!("/v2/{n}/tags/list?n=1000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 5);
    let v: Value = o
        .req(Method::GET, &format!("/v2/{n}/tags/list?last=zzz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!([]));

    // Referrers: empty index before, then an artifact with a subject.
    let r = o
        .req(Method::GET, &format!("/v2/{n}/referrers/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], json!([]));
    let empty = o.push_blob(n, b"{}").await;
    let sig = o.push_blob(n, b"signature bytes").await;
    let artifact = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 15}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len()},
        "annotations": {"org.example": "yes"}
    }))
    .unwrap();
    let r = o
        .put_manifest(n, &sha(&artifact), OCI_MANIFEST, &artifact)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    assert_eq!(r.headers()["oci-subject"], d.as_str());
    let v: Value = o
        .req(Method::GET, &format!("/v2/{n}/referrers/{d}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"][0]["digest"], sha(&artifact).as_str());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    assert_eq!(v["manifests"][0]["annotations"]["org.example"], "yes");
    let r = o
        .req(
            Method::GET,
            &format!("/v2/{n}/referrers/{d}?artifactType=application/vnd.other"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["manifests"], json!([]));
    // A plain image manifest with a subject and no artifactType is a referrer too; its
    // artifactType there is its config's media type (conformance: artifacts-with-subject).
    let image_config = "application/vnd.oci.image.config.v1+json";
    let image_referrer = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": image_config, "digest": empty, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sig, "size": 15}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": d, "size": m.len()}
    }))
    .unwrap();
    let r = o
        .put_manifest(n, &sha(&image_referrer), OCI_MANIFEST, &image_referrer)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let v: Value = o
        .req(
            Method::GET,
            &format!(
                "/v2/{n}/referrers/{d}?artifactType={}",
                image_config.replace('+', "%2B")
            ),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["manifests"][0]["digest"], sha(&image_referrer).as_str());
    assert_eq!(v["manifests"][0]["artifactType"], image_config);

    // The Packages view.
    let (st, pk) = s.get("/api/v1/forge/acme/app/packages", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(pk[0]["name"], "acme/app");
    assert_eq!(pk[0]["tagCount"], 5);
    let (st, tags) = s
        .get("/api/v1/forge/acme/app/packages/acme%2Fapp/tags", None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(tags[0]["digest"], d.as_str());
    assert_eq!(tags[0]["size"], 5 + 37);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_removes_only_unreferenced_blobs_past_grace() {
    let s = setup().await;
    s.repo("acme", "b", false).await;
    let o = Oci::new(&s, Some(&s.admin));
    let (_, da) = o.push_image("acme/app", "v1", b"shared").await;
    let (_, db) = o.push_image("acme/b", "v1", b"shared").await;
    let orphan = o.push_blob("acme/app", b"orphan").await;
    let gc = |q: &'static str| {
        let s = &s;
        async move {
            let (st, v) = s
                .call(
                    Method::POST,
                    &format!("/api/v1/admin/gc?{q}"),
                    Some(&s.admin),
                    None,
                )
                .await;
            assert_eq!(st, StatusCode::OK, "{v}");
            v
        }
    };
    // Within the grace period nothing goes, even unreferenced.
    let v = gc("").await;
    assert_eq!(v["blobs"], json!([]));
    // Dry run reports without removing.
    let v = gc("dryRun=true&graceSeconds=0").await;
    assert_eq!(v["blobs"], json!([orphan]));
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/acme/app/blobs/{orphan}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let v = gc("graceSeconds=0").await;
    assert_eq!(v["blobs"], json!([orphan]));
    assert_eq!(
        o.req(Method::HEAD, &format!("/v2/acme/app/blobs/{orphan}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_FOUND
    );
    // The shared layer stays while one repository still references it.
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/acme/app/manifests/{da}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let v = gc("graceSeconds=0").await;
    assert_eq!(v["blobs"].as_array().unwrap().len(), 0, "{v}");
    let layer = sha(b"shared");
    assert_eq!(
        o.req(Method::GET, &format!("/v2/acme/b/blobs/{layer}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        o.req(Method::DELETE, &format!("/v2/acme/b/manifests/{db}"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::ACCEPTED
    );
    let v = gc("graceSeconds=0").await;
    assert_eq!(
        v["blobs"].as_array().unwrap().len(),
        2,
        "layer and config: {v}"
    );
    assert_eq!(walk(&s.data_dir().join("blobs")), 0);
    // Only site admins run GC.
    let dev = s.user("dev").await;
    assert_eq!(
        s.call(Method::POST, "/api/v1/admin/gc", Some(&dev), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushes_pulls_and_gc_lose_nothing() {
    let s = setup().await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gc_loop = {
        let (url, token, stop) = (s.url.clone(), s.admin.clone(), stop.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = http
                    .post(format!("{url}/api/v1/admin/gc?graceSeconds=30"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), StatusCode::OK);
                runs += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            runs
        })
    };
    let mut pushers = Vec::new();
    for p in 0..4 {
        let s2 = (s.url.clone(), s.admin.clone());
        pushers.push(tokio::spawn(async move {
            let srv = crate::harness::Remote {
                url: s2.0,
                token: s2.1,
            };
            for i in 0..15 {
                let layer = format!("layer {p} {i}").into_bytes();
                let (m, d) = srv
                    .push_image("acme/app", &format!("p{p}-{i}"), &layer)
                    .await;
                let got = srv.pull("acme/app", &d).await;
                assert_eq!(got, m);
            }
        }));
    }
    for p in pushers {
        p.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = gc_loop.await.unwrap();
    assert!(runs > 0);
    // Every committed image is fully pullable.
    let o = Oci::new(&s, Some(&s.admin));
    let v: Value = o
        .req(Method::GET, "/v2/acme/app/tags/list")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"].as_array().unwrap().len(), 60);
    for t in v["tags"].as_array().unwrap() {
        let m: Value = o
            .req(
                Method::GET,
                &format!("/v2/acme/app/manifests/{}", t.as_str().unwrap()),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for l in m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(std::iter::once(&m["config"]))
        {
            let r = o
                .req(
                    Method::GET,
                    &format!("/v2/acme/app/blobs/{}", l["digest"].as_str().unwrap()),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fsck_finds_corruption_and_a_repush_repairs_it() {
    let s = setup().await;
    let o = Oci::new(&s, Some(&s.admin));
    let (_, d) = o.push_image("acme/app", "v1", b"precious layer").await;
    let ld = sha(b"precious layer");
    let path = s
        .data_dir()
        .join("blobs/sha256")
        .join(&ld[7..9])
        .join(&ld[7..]);
    let mut perm = std::fs::metadata(&path).unwrap().permissions();
    assert!(perm.readonly(), "published blobs are read-only");
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&path, perm).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["corrupt"], json!([ld]));
    assert_eq!(v["affectedManifests"], json!([format!("acme/app@{d}")]));
    // Pushing the blob again replaces the damaged copy.
    o.push_blob("acme/app", b"precious layer").await;
    let got = o
        .req(Method::GET, &format!("/v2/acme/app/blobs/{ld}"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), b"precious layer");
    let (_, v) = s
        .call(Method::POST, "/api/v1/admin/fsck", Some(&s.admin), None)
        .await;
    assert_eq!(v["corrupt"], json!([]));
}

pub(crate) fn skopeo(args: &[&str]) -> std::process::Output {
    // An empty auth file, so that no credentials of the machine's user leak into the test.
    let auth = std::env::temp_dir().join("pfai-test-skopeo-auth.json");
    std::fs::write(&auth, "{\"auths\":{}}").unwrap();
    std::process::Command::new("skopeo")
        .args(args)
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap()
}

pub(crate) fn skopeo_ok(args: &[&str]) -> String {
    let out = skopeo(args);
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skopeo_copies_images_in_and_out() {
    if !require_tool("skopeo") {
        return;
    }
    let s = setup().await;
    s.repo("acme", "private", true).await;
    let host = s.url.trim_start_matches("http://").to_owned();
    let creds = format!("x:{}", s.admin);
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/data-fixtures/oci");
    let single = format!("oci:{fixtures}/layout-single:v1");
    let multi = format!("oci:{fixtures}/layout-multi:v1");
    let dest = |path: &str| format!("docker://{host}/{path}");

    // Push with the token as password, the single image and the multi-arch index.
    let s_clone = s.url.clone();
    let (single2, multi2, creds2, d1, d2) = (
        single.clone(),
        multi.clone(),
        creds.clone(),
        dest("acme/app/hello:v1"),
        dest("acme/app/multi:v1"),
    );
    tokio::task::spawn_blocking(move || {
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds2,
            &single2,
            &d1,
        ]);
        skopeo_ok(&[
            "copy",
            "--all",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds2,
            &multi2,
            &d2,
        ]);
        s_clone
    })
    .await
    .unwrap();

    let out = s.dir.path().to_owned();
    let (h1, h2, hp, creds3) = (
        dest("acme/app/hello:v1"),
        dest("acme/app/multi:v1"),
        dest("acme/private/x:v1"),
        creds.clone(),
    );
    let single3 = single.clone();
    tokio::task::spawn_blocking(move || {
        // Inspect (anonymous: the repository is public).
        let v: Value =
            serde_json::from_str(&skopeo_ok(&["inspect", "--tls-verify=false", &h1])).unwrap();
        assert_eq!(v["Architecture"], "amd64");
        assert_eq!(v["RepoTags"], json!(["v1"]));
        let raw = skopeo_ok(&["inspect", "--raw", "--tls-verify=false", &h2]);
        let idx: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(idx["manifests"].as_array().unwrap().len(), 2);
        // Pull back out, anonymously, and compare digests with the fixture.
        let back = format!("oci:{}:v1", out.join("back").display());
        skopeo_ok(&["copy", "--src-tls-verify=false", &h1, &back]);
        let back_all = format!("oci:{}:v1", out.join("back-all").display());
        skopeo_ok(&["copy", "--all", "--src-tls-verify=false", &h2, &back_all]);
        let digest_of = |layout: &str| -> String {
            let v: Value = serde_json::from_str(&skopeo_ok(&["inspect", layout])).unwrap();
            v["Digest"].as_str().unwrap().to_owned()
        };
        assert_eq!(digest_of(&back), digest_of(&single3));
        let fixture_index: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/data-fixtures/oci/layout-multi/index.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let back_index: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join("back-all/index.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            back_index["manifests"][0]["digest"],
            fixture_index["manifests"][0]["digest"]
        );
        // Private repositories need credentials, then work.
        let denied = skopeo(&["copy", "--dest-tls-verify=false", &single3, &hp]);
        assert!(!denied.status.success());
        skopeo_ok(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds3,
            &single3,
            &hp,
        ]);
        assert!(!skopeo(&["inspect", "--tls-verify=false", &hp])
            .status
            .success());
        skopeo_ok(&["inspect", "--tls-verify=false", "--creds", &creds3, &hp]);
        // Tags and delete.
        let tags: Value = serde_json::from_str(&skopeo_ok(&[
            "list-tags",
            "--tls-verify=false",
            &h1.replace(":v1", ""),
        ]))
        .unwrap();
        assert_eq!(tags["Tags"], json!(["v1"]));
        skopeo_ok(&["delete", "--tls-verify=false", "--creds", &creds3, &h1]);
        assert!(!skopeo(&["inspect", "--tls-verify=false", &h1])
            .status
            .success());
    })
    .await
    .unwrap();
    let (_, pk) = s.get("/api/v1/forge/acme/app/packages", None).await;
    let names: Vec<&str> = pk
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["acme/app/multi"]);
    let (_, tags) = s
        .get("/api/v1/forge/acme/app/packages/multi/tags", None)
        .await;
    assert_eq!(tags[0]["platforms"], json!(["linux/amd64", "linux/arm64"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_upload_sessions_are_purged_active_ones_kept() {
    let s = TestServer::start_with(|c| c.limits.upload_ttl_secs = 1).await;
    s.repo("acme", "app", false).await;
    let o = Oci::new(&s, Some(&s.admin));
    let r = o
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let idle = r.headers()["location"].to_str().unwrap().to_owned();
    o.req(Method::PATCH, &idle)
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = o
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let fresh = r.headers()["location"].to_str().unwrap().to_owned();
    let (st, v) = s
        .call(Method::POST, "/api/v1/admin/gc", Some(&s.admin), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(v["uploads"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        error_code(o.req(Method::GET, &idle).send().await.unwrap())
            .await
            .1,
        "BLOB_UPLOAD_UNKNOWN"
    );
    assert_eq!(
        o.req(Method::GET, &fresh).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(walk(&s.data_dir().join("uploads")), 1);
}

/// 200 parallel POSTs used to open 86-176 sessions past the per-user cap of 64 (the count and
/// the insert were two transactions).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_upload_starts_never_overshoot_the_session_cap() {
    let s = setup().await;
    let url = format!("{}/v2/acme/app/blobs/uploads/", s.url);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let http = s.http.clone();
        let (url, token) = (url.clone(), s.admin.clone());
        set.spawn(async move {
            let r = http
                .post(url)
                .basic_auth("x", Some(token))
                .send()
                .await
                .unwrap();
            let loc = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            let (st, code) = error_code(r).await;
            (st, code, loc)
        });
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    while let Some(r) = set.join_next().await {
        let (st, code, loc) = r.unwrap();
        match st {
            StatusCode::ACCEPTED => accepted.push(loc.unwrap()),
            StatusCode::FORBIDDEN => {
                assert_eq!(code, "DENIED");
                refused += 1;
            }
            other => panic!("unexpected {other} {code}"),
        }
    }
    assert_eq!(accepted.len(), 64);
    assert_eq!(refused, 136);
    // Refused starts leave no file behind.
    let files = std::fs::read_dir(s.data_dir().join("uploads"))
        .unwrap()
        .count();
    assert_eq!(files, 64);

    let o = Oci::new(&s, Some(&s.admin));
    let loc = &accepted[0];
    let path = loc.strip_prefix(&s.url).unwrap_or(loc);
    let r = o.req(Method::DELETE, path).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = o
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = o
        .req(Method::POST, "/v2/acme/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::FORBIDDEN, "DENIED".into())
    );
}

/// A tag list of an image never pushed answered 200 `[]` (spec: 404 NAME_UNKNOWN) and `n=-1`
/// answered 405 UNSUPPORTED (a malformed parameter is a 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tag_list_of_unknown_image_is_name_unknown_and_bad_n_is_400() {
    let s = setup().await;
    let o = Oci::new(&s, Some(&s.admin));
    let get = |path: String| o.req(Method::GET, &path).send();
    let r = get("/v2/acme/app/never/tags/list".into()).await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );
    let r = get("/v2/acme/app/tags/list".into()).await.unwrap();
    assert_eq!(
        error_code(r).await,
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN".into())
    );

    let n = "acme/app/img";
    let (_, d) = o.push_image(n, "v1", b"layer").await;
    for q in ["n=-1", "n=abc", "n=1.5"] {
        let r = get(format!("/v2/{n}/tags/list?{q}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
    }
    let r = get(format!("/v2/{n}/tags/list?n=0")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"name": n, "tags": []}));

    // Every tag deleted, the manifest kept: the image still exists, with no tags.
    let r = o
        .req(Method::DELETE, &format!("/v2/{n}/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = get(format!("/v2/{n}/tags/list")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["tags"], json!([]));
    // And after the manifest itself is deleted (blobs remain linked): still known.
    let r = o
        .req(Method::DELETE, &format!("/v2/{n}/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = get(format!("/v2/{n}/tags/list")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

//! pfai: a self-hosted, single-binary server for versioned releases anchored on git tags, their
//! assets, protected git tags, and an OCI registry at `/v2/` — one process, one port, one redb
//! file.
//!
//! Module map (calls go one way: `cli/app -> http -> domain -> {git, auth, storage} -> ids`):
//! - [`ids`]: validated identifiers (digests, names, tags), built only by parsing.
//! - [`storage`]: the only code that touches tables: one store per aggregate (keys, indexes,
//!   counters), records, the codec, and the byte store (blobs, assets, memory maps).
//! - [`git`]: bare repositories (gix for reads, system `git` for writes and the pack protocol).
//! - [`auth`]: credentials to principals, principals to roles.
//! - [`domain`]: the rules: accounts, releases, tags, protection, registry; calls stores and git.
//! - [`http`]: warp filters behind one typed request edge, and the single error-to-wire mapping.
//! - [`api`]: the REST wire model: every request and response body, shared by `http` and `cli`.
//! - [`backup`]: the backup directory: layout, manifest, verified writes, whole-backup checks.
//! - [`app`], [`config`], [`cli`]: wiring, settings, command line (and `pfai bench`).
//! - [`metrics`]: Prometheus counters and gauges behind `GET /metrics`.
//! - [`conn`]: the accept loop: connection cap, header/idle/body timeouts, TLS, graceful shutdown.
//! - [`tls`]: HTTPS: the certificate and key from PEM files, reloadable while serving.
//! - [`attest`]: release attestations: in-toto statement, canonical JSON, DSSE, Ed25519.
//! - [`fuzzing`]: fuzz bodies, replayed by `cargo test` (feature `fuzzing` for the fuzz package).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub(crate) mod api;
pub mod app;
pub mod attest;
pub(crate) mod auth;
pub mod backup;
pub mod cli;
pub mod config;
pub(crate) mod conn;
pub mod domain;
/// Compiled for its replay tests and for the fuzz package (feature `fuzzing`), never into the
/// server binary.
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub(crate) mod git;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod storage;
pub mod tls;
pub mod util;

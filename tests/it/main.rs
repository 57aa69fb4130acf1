//! One integration-test binary: each module drives a real server (127.0.0.1, temp data dir)
//! over HTTP and with real clients.

mod accounts;
mod admin;
mod attest;
mod backup;
mod binary;
mod blake3_digests;
mod browser;
mod bundle;
mod cli;
mod config;
mod conformance;
mod crash;
mod disk;
mod dist;
mod gh_cli;
mod git_hosting;
mod harness;
mod immutable;
mod immutable_rules;
mod limits;
mod links;
mod metrics;
mod mirror;
mod notes;
mod protection;
mod quota;
mod registry;
mod registry_protection;
mod release_artifacts;
mod releases;
mod retention;
mod s3;
mod tls;
mod ui;
mod upgrade;

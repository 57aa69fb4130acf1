//! Command-line parsing and dispatch: raw arguments become validated settings once, here.
//! `pfai serve` runs the server; every other subcommand is a client of it over HTTP.

pub(crate) mod admin;
pub(crate) mod backup;
pub(crate) mod bench;
pub(crate) mod bundle;
pub(crate) mod client;
pub(crate) mod commands;
pub mod config_file;
pub mod hook;
pub(crate) mod mirror;
pub(crate) mod quota;
pub(crate) mod release;
pub(crate) mod repo;
pub(crate) mod retention;
pub(crate) mod serve;
pub(crate) mod settings;
pub(crate) mod storage;
pub(crate) mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{self, Config, ConnLimits};
pub use client::{CliError, CliResult};

/// pfai: releases, protected git tags and an OCI registry in one binary.
#[derive(Debug, Parser)]
#[command(name = "pfai", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Trust this PEM CA certificate (besides the public roots) when talking to an HTTPS
    /// server: a private CA or a self-signed server certificate.
    #[arg(long, global = true, env = "PFAI_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (REST API, git smart HTTP, OCI registry) in this process.
    ///
    /// Example: pfai serve --listen 127.0.0.1:3000 --data-dir ./data
    Serve(ServeArgs),
    /// Save a server URL and token for the other commands (checked against the server).
    ///
    /// Example: echo "$TOKEN" | pfai login --url http://127.0.0.1:3000 --token-stdin
    Login {
        /// Server URL (default: PFAI_URL, or http://127.0.0.1:3000).
        #[arg(long)]
        url: Option<String>,
        /// Read the token from standard input (otherwise PFAI_TOKEN).
        #[arg(long)]
        token_stdin: bool,
    },
    /// Forget the saved login.
    ///
    /// Example: pfai logout
    Logout,
    /// Releases and their assets.
    ///
    /// Example: pfai release create v1.2.3 --target main --title "v1.2.3" dist/app.tar.gz
    #[command(subcommand)]
    Release(release::ReleaseCmd),
    /// Git tags.
    ///
    /// Example: pfai tag create v1.2.3 --target main
    #[command(subcommand)]
    Tag(commands::TagCmd),
    /// Tag-protection rules (globs; matching tags can only be deleted or moved by admins).
    ///
    /// Example: pfai protected-tag create 'v*'
    #[command(subcommand, name = "protected-tag")]
    ProtectedTag(commands::ProtectedTagCmd),
    /// Repositories.
    ///
    /// Example: pfai repo create acme/app --private
    #[command(subcommand)]
    Repo(commands::RepoCmd),
    /// Organizations.
    ///
    /// Example: pfai org create acme
    #[command(subcommand)]
    Org(commands::OrgCmd),
    /// API tokens.
    ///
    /// Example: pfai token create ci-publisher
    #[command(subcommand)]
    Token(commands::TokenCmd),
    /// Container images of a repository (the Packages tab).
    ///
    /// Example: pfai packages list -R acme/app
    #[command(subcommand)]
    Packages(commands::PackagesCmd),
    /// Remove registry blobs nothing references (site admin; the server keeps serving).
    ///
    /// Example: pfai gc --dry-run
    Gc {
        /// Report only.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced blobs touched within this many seconds (default: the server's).
        #[arg(long)]
        grace_seconds: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check blobs and release assets against their rows, and find orphan files and tags left
    /// by a crash (site admin). Exits 1 while problems remain.
    ///
    /// Example: pfai fsck --repair
    Fsck {
        /// Also fix what is safe: remove orphan asset and upload files, delete git tags made
        /// for releases that were never recorded (only while they still point where pfai put
        /// them).
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Load-test an OCI registry (this one or another): blob throughput, manifest latency.
    ///
    /// Example: pfai bench manifests --url http://127.0.0.1:3000 --duration 20s
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Judge a push for the server (git runs this from the repositories' pre-receive hook).
    ///
    /// Example: (run by git, not by people) pfai hook pre-receive
    #[command(hide = true)]
    Hook {
        /// The hook: `pre-receive`.
        name: String,
    },
    /// Print shell completions.
    ///
    /// Example: pfai completion bash > /etc/bash_completion.d/pfai
    Completion {
        /// bash, zsh or fish.
        shell: clap_complete::Shell,
    },
    /// Write a consistent, verified backup (site admin, against the running server; or with
    /// --data-dir, of a stopped server's data directory). Incremental: blobs and assets
    /// already in DIR are not copied again.
    ///
    /// Example: pfai backup --to /srv/backups/pfai
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data directory, after verifying every file of it.
    ///
    /// Example: pfai restore --from /srv/backups/pfai --data-dir /srv/pfai-restored
    Restore(backup::RestoreArgs),
    /// Site administration: users (over HTTP, site admin) and a password set directly in a
    /// stopped server's data directory.
    ///
    /// Example: pfai admin user list
    #[command(subcommand)]
    Admin(admin::AdminCmd),
    /// Storage quotas per owner: set (site admin), unset, view usage.
    ///
    /// Example: pfai quota set acme 10GiB
    #[command(subcommand)]
    Quota(quota::QuotaCmd),
    /// Mirror tags of an upstream OCI registry into an image here (the server copies).
    ///
    /// Example: pfai mirror add https://ghcr.io/acme/tool --to acme/base/tool --tags 'v*'
    #[command(subcommand)]
    Mirror(mirror::MirrorCmd),
    /// Move blob and asset bytes between storage backends while the server runs (site admin).
    ///
    /// Example: pfai storage migrate --to s3
    #[command(subcommand)]
    Storage(storage::StorageCmd),
    /// Air-gap bundles: export repositories, releases and images to one verified file, and
    /// import it into another server.
    ///
    /// Example: pfai bundle export --repo acme/app -o acme-app.tar
    #[command(subcommand)]
    Bundle(bundle::BundleCmd),
}

/// Settings of `pfai serve` (flags > environment > defaults).
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "PFAI_LISTEN", default_value = config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Data directory (database, blobs, repositories).
    #[arg(long, env = "DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Where release assets are stored (default: $DATA_DIR/assets).
    #[arg(long, env = "ASSET_STORAGE_PATH")]
    pub asset_storage_path: Option<PathBuf>,
    /// Largest accepted asset, in bytes.
    #[arg(long, env = "PFAI_ASSET_MAX_BYTES", default_value_t = config::DEFAULT_ASSET_MAX)]
    pub asset_max_bytes: u64,
    /// Unreferenced registry blobs younger than this survive GC.
    #[arg(long, env = "PFAI_GC_GRACE_SECONDS", default_value_t = 3600)]
    pub gc_grace_seconds: u64,
    /// Seconds a client has to send a request's headers (slowloris defence).
    #[arg(long, env = "PFAI_HEADER_TIMEOUT_SECONDS", default_value_t = config::DEFAULT_HEADER_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_seconds: u64,
    /// Seconds a keep-alive connection with no request in flight stays open.
    #[arg(long, env = "PFAI_IDLE_TIMEOUT_SECONDS", default_value_t = config::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_seconds: u64,
    /// Seconds a request body may send nothing (or a client may stop reading a response) before
    /// the request is cut; an OCI upload session keeps the bytes it received and can resume.
    #[arg(long, env = "PFAI_BODY_TIMEOUT_SECONDS", default_value_t = config::DEFAULT_BODY_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout_seconds: u64,
    /// Connections served at once; past it a new connection gets `503` and is closed.
    #[arg(long, env = "PFAI_MAX_CONNECTIONS", default_value_t = config::DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_max_connections)]
    pub max_connections: usize,
    /// Consecutive failed password sign-ins of one account before it is locked out.
    #[arg(long, env = "PFAI_SIGN_IN_ACCOUNT_THRESHOLD", default_value_t = 5)]
    pub sign_in_account_threshold: u32,
    /// Consecutive failed password sign-ins from one client address before it is locked out.
    #[arg(long, env = "PFAI_SIGN_IN_ADDRESS_THRESHOLD", default_value_t = 20)]
    pub sign_in_address_threshold: u32,
    /// The first sign-in lockout, in seconds; it doubles with each further failure.
    #[arg(long, env = "PFAI_SIGN_IN_LOCKOUT_SECONDS", default_value_t = 1)]
    pub sign_in_lockout_seconds: u64,
    /// The longest sign-in lockout, in seconds.
    #[arg(long, env = "PFAI_SIGN_IN_LOCKOUT_MAX_SECONDS", default_value_t = 900)]
    pub sign_in_lockout_max_seconds: u64,
    /// When set, `GET /metrics` answers only requests with `Authorization: Bearer <this>`.
    #[arg(long, env = "PFAI_METRICS_TOKEN")]
    pub metrics_token: Option<String>,
    /// Log lines as `text` (for people) or `json` (one JSON object per line, for collectors).
    #[arg(long, env = "PFAI_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// A TOML file with any of these settings, keyed by flag name with `_` for `-`
    /// (`data_dir = "/var/lib/pfai"`). Flags and environment variables win over it.
    #[arg(long, env = "PFAI_CONFIG")]
    pub config: Option<PathBuf>,
    /// Print the effective configuration (as a file `--config` accepts, secrets hidden) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Serve HTTPS on the listen address with this PEM certificate chain (server certificate
    /// first); needs --tls-key. Re-read with the key on SIGHUP.
    #[arg(long, env = "PFAI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "PFAI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where blob and asset bytes live: `local` files, or `s3`, an S3-compatible bucket (the
    /// database, upload sessions and git repositories stay in --data-dir either way).
    #[arg(long, env = "PFAI_STORAGE", value_enum, default_value_t = StorageKind::Local)]
    pub storage: StorageKind,
    /// The S3 API endpoint (`http://127.0.0.1:3900`); unset means AWS for --s3-region.
    #[arg(long, env = "PFAI_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket of --storage s3.
    #[arg(long, env = "PFAI_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    /// The region the endpoint expects (Garage's default is `garage`).
    #[arg(long, env = "PFAI_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// A key prefix, so that one bucket can hold more than one site.
    #[arg(long, env = "PFAI_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), what Garage and MinIO expect unless DNS
    /// is set up for virtual-hosted buckets.
    #[arg(long, env = "PFAI_S3_PATH_STYLE")]
    pub s3_path_style: bool,
    /// A file with the access key (`aws_access_key_id = …` and `aws_secret_access_key = …`,
    /// the AWS credentials file's form); unset: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long, env = "PFAI_S3_CREDENTIALS_FILE")]
    pub s3_credentials_file: Option<PathBuf>,
    /// Bytes of local disk ($DATA_DIR/s3-cache) that keep recently read objects (LRU).
    #[arg(long, env = "PFAI_S3_CACHE_BYTES", default_value_t = config::DEFAULT_S3_CACHE_BYTES)]
    pub s3_cache_bytes: u64,
    /// Answer blob and asset downloads with a 307 to a presigned bucket URL (valid 5 minutes),
    /// so that the cluster, not this node, serves the bytes.
    #[arg(long, env = "PFAI_S3_REDIRECT")]
    pub s3_redirect: bool,
    /// Largest bundle `pfai bundle import` may upload, in bytes (staged on disk while verified).
    #[arg(long, env = "PFAI_BUNDLE_MAX_BYTES", default_value_t = 256 << 30)]
    pub bundle_max_bytes: u64,
}

/// Where `pfai serve` keeps blob and asset bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StorageKind {
    /// Files under --data-dir (and --asset-storage-path).
    Local,
    /// An S3-compatible bucket (the --s3-* settings).
    S3,
}

/// How `pfai serve` writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// 1 ..= 1 000 000 (the shutdown waits for all of them with one semaphore acquire).
fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("must be a number from 1 to 1000000".into()),
    }
}

impl ServeArgs {
    /// The validated configuration.
    pub fn into_config(self) -> Config {
        let mut c = Config::new(self.data_dir, self.listen);
        c.asset_storage_path = self
            .asset_storage_path
            .filter(|p| !p.as_os_str().is_empty());
        c.limits.asset_max = self.asset_max_bytes;
        c.limits.bundle_max = self.bundle_max_bytes;
        c.metrics_token = self.metrics_token.filter(|t| !t.is_empty());
        c.limits.gc_grace_secs = self.gc_grace_seconds.min(i64::MAX as u64) as i64;
        c.conn = ConnLimits {
            header_timeout: Duration::from_secs(self.header_timeout_seconds),
            idle_timeout: Duration::from_secs(self.idle_timeout_seconds),
            body_timeout: Duration::from_secs(self.body_timeout_seconds),
            max_connections: self.max_connections,
        };
        // clap's `requires` makes them come in pairs.
        if let (Some(cert), Some(key)) = (self.tls_cert, self.tls_key) {
            c.tls = Some(crate::tls::TlsFiles { cert, key });
        }
        // With --storage local, a configured bucket is where the objects were: it is read
        // through while `pfai storage migrate --to local` moves them back.
        let bucket_set = self.s3_bucket.as_deref().is_some_and(|b| !b.is_empty());
        if self.storage == StorageKind::S3 || bucket_set {
            let env = |k: &str| std::env::var(k).unwrap_or_default();
            c.s3 = Some(crate::storage::s3::S3Settings {
                endpoint: self.s3_endpoint.unwrap_or_default(),
                bucket: self.s3_bucket.unwrap_or_default(),
                region: self.s3_region,
                prefix: self.s3_prefix,
                path_style: self.s3_path_style,
                credentials_file: self.s3_credentials_file,
                access_key_id: env("AWS_ACCESS_KEY_ID"),
                secret_access_key: env("AWS_SECRET_ACCESS_KEY"),
                cache_bytes: self.s3_cache_bytes,
                redirect: self.s3_redirect,
                previous: self.storage == StorageKind::Local,
            });
        }
        c.limits.sign_in = crate::domain::throttle::ThrottleSettings {
            account_threshold: self.sign_in_account_threshold.max(1),
            address_threshold: self.sign_in_address_threshold.max(1),
            base: std::time::Duration::from_secs(self.sign_in_lockout_seconds.max(1)),
            max: std::time::Duration::from_secs(
                self.sign_in_lockout_max_seconds
                    .max(self.sign_in_lockout_seconds.max(1)),
            ),
        };
        c
    }
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> CliResult<()> {
    // The server is not a client: a PFAI_CA_CERT in its environment is not its business.
    if let (Some(ca), false) = (&cli.ca_cert, matches!(cli.command, Command::Serve(_))) {
        client::trust_ca(ca)?;
    }
    match cli.command {
        Command::Serve(args) => serve::run(args.into_config()).await,
        Command::Login { url, token_stdin } => commands::login(url, token_stdin).await,
        Command::Logout => commands::logout(),
        Command::Release(c) => release::run(c).await,
        Command::Tag(c) => commands::tag(c).await,
        Command::ProtectedTag(c) => commands::protected_tag(c).await,
        Command::Repo(c) => commands::repo(c).await,
        Command::Org(c) => commands::org(c).await,
        Command::Token(c) => commands::token(c).await,
        Command::Packages(c) => commands::packages(c).await,
        Command::Gc {
            dry_run,
            grace_seconds,
            json,
        } => commands::gc(dry_run, grace_seconds, json).await,
        Command::Fsck { repair, json } => commands::fsck(repair, json).await,
        Command::Bench(c) => bench::run(c).await,
        // `main` runs hooks before starting a runtime; this arm keeps the match whole.
        Command::Hook { name } => match hook::run(&name) {
            code if code == std::process::ExitCode::SUCCESS => Ok(()),
            _ => Err(CliError::Msg(format!("the {name} hook refused"))),
        },
        Command::Backup(a) => backup::backup(a).await,
        Command::Restore(a) => backup::restore(a).await,
        Command::Admin(c) => admin::admin(c).await,
        Command::Quota(c) => quota::run(c).await,
        Command::Mirror(c) => mirror::run(c).await,
        Command::Storage(c) => storage::run(c).await,
        Command::Bundle(c) => bundle::run(c).await,
        Command::Completion { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "pfai", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Prints rows as an aligned table (the header first).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Prints typed items as a table, one row per item.
pub fn print_rows<T>(header: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) {
    let rows: Vec<Vec<String>> = items.iter().map(row).collect();
    print_table(header, &rows);
}

/// Pretty JSON to stdout.
pub fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Reads `--body` / `--body-file` (`-` is standard input).
pub fn read_body(body: Option<String>, body_file: Option<PathBuf>) -> CliResult<Option<String>> {
    match (body, body_file) {
        (Some(_), Some(_)) => Err(CliError::Msg(
            "pass either --body or --body-file, not both".into(),
        )),
        (Some(b), None) => Ok(Some(b)),
        (None, Some(p)) if p.as_os_str() == "-" => {
            use std::io::Read;
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            Ok(Some(s))
        }
        (None, Some(p)) => std::fs::read_to_string(&p)
            .map(Some)
            .map_err(|e| CliError::Msg(format!("cannot read {}: {e}", p.display()))),
        (None, None) => Ok(None),
    }
}

//! `pfai release verify` and `verify-asset`: check a release attestation (`crate::attest`)
//! against a public key, the release the server reports, and local files. Given both
//! `--attestation FILE` and `--key FILE` they never contact the server (air-gapped use).

use std::path::{Path, PathBuf};

use super::client::{decode, CliError, CliResult, Client};
use super::repo;
use crate::api::ReleaseView;
use crate::attest::{Envelope, PublicKey, Statement};

/// The arguments of `pfai release verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Tag of the release.
    pub tag: String,
    /// Public key file: SPKI PEM, raw 32 bytes, their base64, or the saved JSON of
    /// `GET /api/v1/attestation/keys`. Without it, the keys the server lists are trusted.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The attestation (DSSE envelope JSON) as a file instead of fetching it. With `--key`, the
    /// check is offline: the signature and the tag only.
    #[arg(long)]
    pub attestation: Option<PathBuf>,
    /// owner/repo (default: from the origin remote).
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

/// The arguments of `pfai release verify-asset`.
#[derive(Debug, clap::Args)]
pub struct VerifyAssetArgs {
    /// Tag of the release.
    pub tag: String,
    /// The local file; it is looked up in the attestation by its file name.
    pub file: PathBuf,
    /// Public key file (as for `verify`).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// The attestation as a file (offline with `--key`).
    #[arg(long)]
    pub attestation: Option<PathBuf>,
    /// owner/repo (default: from the origin remote).
    #[arg(short = 'R', long = "repo")]
    pub repo: Option<String>,
}

fn msg(s: String) -> CliError {
    CliError::Msg(s)
}

fn read(path: &Path, what: &str) -> CliResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| msg(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Whether the check can be done without the server.
fn offline(key: &Option<PathBuf>, att: &Option<PathBuf>) -> bool {
    key.is_some() && att.is_some()
}

/// The keys to verify with: the `--key` file, else the server's list.
async fn keys(c: &Client, key: &Option<PathBuf>) -> CliResult<Vec<PublicKey>> {
    match key {
        Some(p) => PublicKey::parse_file(&read(p, "key file")?)
            .map_err(|e| msg(format!("{}: {e}", p.display()))),
        None => {
            let v = c
                .call(reqwest::Method::GET, "/api/v1/attestation/keys")
                .await?;
            let bytes = serde_json::to_vec(&v).map_err(|e| msg(e.to_string()))?;
            PublicKey::parse_file(&bytes)
                .map_err(|e| msg(format!("the server's attestation keys: {e}")))
        }
    }
}

/// The envelope: the `--attestation` file, else the server's.
async fn envelope(
    c: &Client,
    att: &Option<PathBuf>,
    repo: Option<&str>,
    tag: &str,
) -> CliResult<Envelope> {
    let bytes = match (att, repo) {
        (Some(p), _) => read(p, "attestation")?,
        (None, Some(repo)) => {
            let path = format!(
                "/api/v1/forge/{repo}/releases/{}/attestation",
                crate::domain::release::url_segment(tag)
            );
            let v = c
                .get_or(&path, || {
                    format!("release {tag} in {repo} has no attestation (or does not exist)")
                })
                .await?;
            serde_json::to_vec(&v).map_err(|e| msg(e.to_string()))?
        }
        (None, None) => return Err(msg("no attestation: pass --attestation FILE".into())),
    };
    Envelope::parse(&bytes).map_err(|e| msg(e.to_string()))
}

/// Verifies the signature and that the statement is about `tag` (and `repo`, when known).
fn check_signed(
    env: &Envelope,
    keys: &[PublicKey],
    repo: Option<&str>,
    tag: &str,
) -> CliResult<Statement> {
    let st = env.verify(keys).map_err(|e| msg(e.to_string()))?;
    if st.predicate.tag != tag {
        return Err(msg(format!(
            "the attestation is for tag {}, not {tag}",
            st.predicate.tag
        )));
    }
    if let Some(r) = repo {
        if st.predicate.repository != r {
            return Err(msg(format!(
                "the attestation is for repository {}, not {r}",
                st.predicate.repository
            )));
        }
    }
    Ok(st)
}

/// Compares the statement with the release the server reports: the same assets (name and
/// sha256, no more, no fewer) and the commit the tag points at now.
fn check_release(st: &Statement, r: &ReleaseView) -> CliResult<()> {
    let mut problems = Vec::new();
    for s in &st.subjects {
        match r.assets.iter().find(|a| a.name == s.name) {
            None => problems.push(format!("attested asset {} is not in the release", s.name)),
            Some(a) if !a.sha256.eq_ignore_ascii_case(&s.sha256) => problems.push(format!(
                "asset {}: the server reports sha256 {}, the attestation says {}",
                s.name, a.sha256, s.sha256
            )),
            Some(_) => {}
        }
    }
    for a in &r.assets {
        if !st.subjects.iter().any(|s| s.name == a.name) {
            problems.push(format!("asset {} is not attested", a.name));
        }
    }
    match r.tag_commit.as_deref() {
        None => problems.push(format!("tag {} no longer exists on the server", r.tag_name)),
        Some(c) if c != st.predicate.commit => problems.push(format!(
            "tag {} points at {c}, the attestation says {}",
            r.tag_name, st.predicate.commit
        )),
        Some(_) => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(msg(format!(
            "the release does not match its attestation:\n  {}",
            problems.join("\n  ")
        )))
    }
}

/// `pfai release verify`.
pub async fn verify(c: &Client, a: VerifyArgs) -> CliResult<()> {
    if offline(&a.key, &a.attestation) {
        let env = envelope(c, &a.attestation, None, &a.tag).await?;
        let keys = keys(c, &a.key).await?;
        let st = check_signed(&env, &keys, a.repo.as_deref(), &a.tag)?;
        println!(
            "verified (offline): {} {} at commit {}, {} asset(s), published by {} at {}",
            st.predicate.repository,
            st.predicate.tag,
            st.predicate.commit,
            st.subjects.len(),
            st.predicate.publisher,
            st.predicate.published_at
        );
        return Ok(());
    }
    let repo = repo::resolve(a.repo.as_deref())?;
    let env = envelope(c, &a.attestation, Some(&repo), &a.tag).await?;
    let keys = keys(c, &a.key).await?;
    let st = check_signed(&env, &keys, Some(&repo), &a.tag)?;
    let path = format!(
        "/api/v1/forge/{repo}/releases/{}",
        crate::domain::release::url_segment(&a.tag)
    );
    let r: ReleaseView = decode(
        c.get_or(&path, || format!("release {} not found in {repo}", a.tag))
            .await?,
    )?;
    check_release(&st, &r)?;
    println!(
        "verified: {repo} {} at commit {}, {} asset(s) match, published by {} at {}",
        st.predicate.tag,
        st.predicate.commit,
        st.subjects.len(),
        st.predicate.publisher,
        st.predicate.published_at
    );
    Ok(())
}

/// `pfai release verify-asset`.
pub async fn verify_asset(c: &Client, a: VerifyAssetArgs) -> CliResult<()> {
    let repo = if offline(&a.key, &a.attestation) {
        a.repo.clone()
    } else {
        Some(repo::resolve(a.repo.as_deref())?)
    };
    let name = a
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| msg(format!("{} is not a file", a.file.display())))?;
    let env = envelope(c, &a.attestation, repo.as_deref(), &a.tag).await?;
    let keys = keys(c, &a.key).await?;
    let st = check_signed(&env, &keys, repo.as_deref(), &a.tag)?;
    let subject = st
        .subjects
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| msg(format!("{name} is not an attested asset of {}", a.tag)))?;
    let got = sha256_file(&a.file)?;
    if !got.eq_ignore_ascii_case(&subject.sha256) {
        return Err(msg(format!(
            "{}: sha256 {got} does not match the attested {} for {name}",
            a.file.display(),
            subject.sha256
        )));
    }
    println!(
        "verified: {name} matches the attestation of {} (sha256 {got})",
        a.tag
    );
    Ok(())
}

/// Hex SHA-256 of a file, streamed.
fn sha256_file(path: &Path) -> CliResult<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)
        .map_err(|e| msg(format!("cannot open {}: {e}", path.display())))?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

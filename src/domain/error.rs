//! The outcomes the domain can name. `http::error` maps each to the wire in one place; nothing
//! here knows about status codes.

use crate::git::GitError;
use crate::ids::InvalidId;
use crate::storage::StorageError;

/// A domain outcome other than success.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The request is malformed (bad JSON, bad query parameter).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed input that makes no sense (unknown target, invalid name).
    #[error("{0}")]
    Invalid(String),
    /// No or invalid credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or invisible to the caller.
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with existing state (duplicate).
    #[error("{0}")]
    Conflict(String),
    /// A body or file is over a limit.
    #[error("{0}")]
    TooLarge(String),
    /// Storing this would take the owner over its storage quota (the message names the quota
    /// and the usage).
    #[error("{0}")]
    QuotaExceeded(String),
    /// The disk is full (ENOSPC, or EDQUOT: a quota is a full disk for this process).
    #[error("insufficient storage")]
    InsufficientStorage(#[source] std::io::Error),
    /// OCI: a digest is malformed or does not match the content.
    #[error("{0}")]
    DigestInvalid(String),
    /// OCI: an invalid repository name.
    #[error("{0}")]
    NameInvalid(String),
    /// OCI: the repository is unknown (or invisible).
    #[error("repository name not known to registry")]
    NameUnknown,
    /// OCI: an invalid tag.
    #[error("{0}")]
    TagInvalid(String),
    /// OCI: blob unknown to this repository.
    #[error("blob unknown to registry")]
    BlobUnknown,
    /// OCI: upload session unknown.
    #[error("blob upload unknown to registry")]
    BlobUploadUnknown,
    /// OCI: the upload cannot accept this chunk; carries the current offset (bytes received).
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable {
        /// Upload session path for `Location`, if any.
        location: Option<String>,
        /// Bytes received so far.
        offset: u64,
    },
    /// OCI: an invalid upload request.
    #[error("{0}")]
    BlobUploadInvalid(String),
    /// OCI: manifest unknown.
    #[error("manifest unknown")]
    ManifestUnknown,
    /// OCI: manifest invalid.
    #[error("{0}")]
    ManifestInvalid(String),
    /// OCI: a manifest references blobs or manifests this repository lacks.
    #[error("manifest references unknown blobs: {}", .0.join(", "))]
    ManifestBlobUnknown(Vec<String>),
    /// OCI: a declared size disagrees with the content.
    #[error("{0}")]
    SizeInvalid(String),
    /// Too many failed attempts: refused without trying, until `retry_after` seconds passed.
    #[error("{message}")]
    TooManyRequests {
        /// A human sentence.
        message: String,
        /// Seconds until an attempt may succeed (`Retry-After`).
        retry_after: u64,
    },
    /// OCI: the operation is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The server cannot do this now but may shortly (the database is being reopened after an
    /// I/O error); the client may retry.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The database or a record failed (other than a full disk or a reopen in progress).
    /// Like every variant below, the cause is logged, not sent.
    #[error("storage failed")]
    Storage(#[source] StorageError),
    /// A git operation failed (other than a ref that exists or moved meanwhile).
    #[error("git failed")]
    Git(#[source] GitError),
    /// A file operation failed (other than a full disk).
    #[error("i/o failed")]
    Io(#[source] std::io::Error),
    /// Something else broke inside: what was being done, and the cause when there is one.
    #[error("internal error: {context}")]
    Internal {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: Option<BoxError>,
    },
}

/// Any error, as the cause of an `Internal` outcome.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

impl From<StorageError> for DomainError {
    fn from(e: StorageError) -> Self {
        match e {
            // ENOSPC, and EDQUOT (a quota is a full disk for this process).
            StorageError::Io(io) if is_disk_full(&io) => DomainError::InsufficientStorage(io),
            StorageError::Unavailable(why) => DomainError::Unavailable(why),
            other => DomainError::Storage(other),
        }
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28 | 122))
}

impl From<std::io::Error> for DomainError {
    fn from(e: std::io::Error) -> Self {
        if is_disk_full(&e) {
            DomainError::InsufficientStorage(e)
        } else {
            DomainError::Io(e)
        }
    }
}

impl From<GitError> for DomainError {
    fn from(e: GitError) -> Self {
        match e {
            GitError::AlreadyExists(r) => DomainError::Conflict(format!("{r} already exists")),
            GitError::Conflict(r) => {
                DomainError::Conflict(format!("{r} changed while the request ran; try again"))
            }
            GitError::Busy(what) => DomainError::Unavailable(what),
            other => DomainError::Git(other),
        }
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for DomainError {
    fn from(e: tokio::task::JoinError) -> Self {
        DomainError::internal_from("a background task failed", e)
    }
}

impl From<InvalidId> for DomainError {
    fn from(e: InvalidId) -> Self {
        DomainError::Invalid(e.to_string())
    }
}

impl DomainError {
    /// An internal failure without an underlying error (a state that should not happen).
    pub fn internal(context: impl Into<String>) -> Self {
        DomainError::Internal {
            context: context.into(),
            source: None,
        }
    }

    /// An internal failure while doing `context`, caused by `source`.
    pub fn internal_from(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        DomainError::Internal {
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// The outcome and all its causes on one line (`outcome: cause: cause of the cause`), for
    /// logs and operator reports; never for clients.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }

    /// The refusal of a password attempt during a sign-in lockout of `wait`.
    pub fn locked_out(wait: std::time::Duration) -> Self {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        DomainError::TooManyRequests {
            message: format!(
                "too many failed sign-ins; try again in {secs} second{}",
                if secs == 1 { "" } else { "s" }
            ),
            retry_after: secs.max(1),
        }
    }
}

/// Result alias of the domain.
pub type DomainResult<T> = Result<T, DomainError>;

/// An error and its causes, displayed on one line. A cause whose text its wrapper already ends
/// with (a wrapper that prints its cause itself) is not repeated.
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl<'a> Chain<'a> {
    /// The chain of any error (a `StorageError` at startup, say), for the same one-line form.
    pub fn of(e: &'a (dyn std::error::Error + 'static)) -> Self {
        Chain(e)
    }
}

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 500 must log why it happened: the cause chain survives the conversion.
    #[test]
    fn the_cause_of_an_internal_failure_survives_to_the_log_line() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied by the disk");
        let e = DomainError::from(StorageError::Io(io));
        assert!(matches!(e, DomainError::Storage(_)));
        let line = e.chain().to_string();
        assert!(line.contains("denied by the disk"), "{line}");
        assert_eq!(line.matches("denied by the disk").count(), 1, "{line}");

        let full = std::io::Error::from_raw_os_error(28);
        assert!(matches!(
            DomainError::from(StorageError::Io(full)),
            DomainError::InsufficientStorage(_)
        ));

        let e = DomainError::internal_from("hashing", std::fmt::Error);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e
            .chain()
            .to_string()
            .starts_with("internal error: hashing: "));
    }
}

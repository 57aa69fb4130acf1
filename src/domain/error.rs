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
    /// The disk is full.
    #[error("insufficient storage: {0}")]
    InsufficientStorage(String),
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
    /// Something broke inside; details are logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StorageError> for DomainError {
    fn from(e: StorageError) -> Self {
        match e {
            // ENOSPC, and EDQUOT (a quota is a full disk for this process).
            StorageError::Io(io) if matches!(io.raw_os_error(), Some(28 | 122)) => {
                DomainError::InsufficientStorage(io.to_string())
            }
            StorageError::Unavailable(why) => DomainError::Unavailable(why),
            other => DomainError::Internal(other.to_string()),
        }
    }
}

impl From<redb::Error> for DomainError {
    fn from(e: redb::Error) -> Self {
        DomainError::Internal(e.to_string())
    }
}

macro_rules! redb_into_domain {
    ($($t:ty),*) => {$(
        impl From<$t> for DomainError {
            fn from(e: $t) -> Self {
                DomainError::from(StorageError::from(e))
            }
        }
    )*};
}
redb_into_domain!(
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

impl From<std::io::Error> for DomainError {
    fn from(e: std::io::Error) -> Self {
        DomainError::from(StorageError::Io(e))
    }
}

impl From<GitError> for DomainError {
    fn from(e: GitError) -> Self {
        match e {
            GitError::AlreadyExists(r) => DomainError::Conflict(format!("{r} already exists")),
            GitError::Conflict(r) => {
                DomainError::Conflict(format!("{r} changed while the request ran; try again"))
            }
            other => DomainError::Internal(other.to_string()),
        }
    }
}

impl From<InvalidId> for DomainError {
    fn from(e: InvalidId) -> Self {
        DomainError::Invalid(e.to_string())
    }
}

impl DomainError {
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

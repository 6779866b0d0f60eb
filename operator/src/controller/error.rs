//! Why a reconcile failed, and how soon it is tried again.

use crate::aws::AwsError;
use crate::reasons::Reason;

use super::claim::ClaimError;
use super::desired::SpecError;
use super::outputs;

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    InvalidSpec(#[from] SpecError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Outputs(#[from] outputs::OutputsError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// Not a failure: deletion goes on in the next pass.
    #[error(
        "bucket {bucket} is being emptied before it is deleted ({objects} objects deleted in the last pass)"
    )]
    Emptying { bucket: String, objects: u64 },
}

impl Error {
    /// Short label for metrics and Event reasons.
    pub fn reason(&self) -> Reason {
        match self {
            Error::InvalidSpec(_) => Reason::InvalidSpec,
            Error::Claim(e) => e.reason(),
            Error::Aws(e) => e.reason(),
            Error::Kube(_) => Reason::KubeApiError,
            Error::Outputs(e) => e.reason(),
            Error::Finalizer(_) => Reason::FinalizerError,
            Error::Emptying { .. } => Reason::Emptying,
        }
    }

    /// How long to wait before retrying; `None`: wait for the object to change.
    pub(super) fn retry(&self) -> Option<Retry> {
        match self {
            Error::InvalidSpec(_) => None,
            Error::Emptying { .. } => Some(Retry::Soon),
            // Not ours: check back rarely (reads only) in case the bucket is released.
            Error::Claim(e) if e.not_ours() => Some(Retry::Slow),
            // Someone else's ConfigMap under our name: a person must act.
            Error::Outputs(outputs::OutputsError::Taken(_)) => Some(Retry::Slow),
            Error::Claim(ClaimError::Aws(e)) | Error::Aws(e) if !e.is_transient() => {
                Some(Retry::Slow)
            }
            _ => Some(Retry::Backoff),
        }
    }
}

pub(super) enum Retry {
    /// Work in progress (a bucket being emptied): the next pass in about a second, not
    /// counted as a failure.
    Soon,
    /// A person has to act (name taken, permissions, bucket not empty): check back rarely.
    Slow,
    /// Exponential from 1 s to 5 min.
    Backoff,
}

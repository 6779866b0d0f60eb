//! The bucket's default encryption. Pure.
//!
//! In: `spec.encryption` and the backend. Out: the [`Encryption`] to set (`None`: the backend
//! cannot set it and the spec does not need it), or a [`SpecError`] for a key missing, a key
//! where none belongs, or SSE-KMS where the backend has none.

use crate::aws::Encryption;
use crate::aws::rgw::Backend;
use crate::crd::{EncryptionSpec, EncryptionType};

use super::validate::SpecError;

/// Pure: what `spec` asks for, as far as `backend` can set it.
pub(super) fn encryption(
    spec: &EncryptionSpec,
    backend: Backend,
) -> Result<Option<Encryption>, SpecError> {
    match (spec.kind, &spec.kms_key_id) {
        (EncryptionType::SseKms, None) => Err(SpecError::new(
            "spec.encryption.kmsKeyId",
            "is required with type SSE-KMS: a KMS key id, alias/... or ARN",
        )),
        (EncryptionType::SseS3, Some(_)) => Err(SpecError::new(
            "spec.encryption.kmsKeyId",
            "is only allowed with type SSE-KMS",
        )),
        (EncryptionType::SseKms, Some(_)) if !backend.has_bucket_encryption() => {
            Err(SpecError::new(
                "spec.encryption.type",
                "SSE-KMS is not supported by this operator's S3 backend (rgw); allowed here: SSE-S3",
            ))
        }
        (EncryptionType::SseKms, Some(key)) => Ok(Some(Encryption::SseKms {
            key_id: key.clone(),
        })),
        (EncryptionType::SseS3, None) if backend.has_bucket_encryption() => {
            Ok(Some(Encryption::SseS3))
        }
        (EncryptionType::SseS3, None) => Ok(None),
    }
}

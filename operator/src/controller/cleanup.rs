//! What deleting an UploadBucket does to its bucket. Side effects: S3 calls.
//!
//! In: the bucket recorded in status (never a name from the spec, which a user could point
//! at someone else's bucket) and the deletion policy. Out: what happened. Repeatable: a
//! bucket already gone is success, and so is an object whose apply never ran.

use std::collections::BTreeMap;

use crate::aws::{AwsError, BucketApi, BucketRef, Deleted};
use crate::crd::DeletionPolicy;

use super::desired::{TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID};

/// What cleanup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// Nothing was ever created (no bucket recorded in status).
    NothingRecorded,
    /// `Retain`: the bucket stays, released from this object (ownership tags removed).
    Retained,
    /// `Delete`: the bucket is gone (`objects` were deleted first).
    Deleted { objects: u64 },
    /// `Delete`: it was already gone.
    AlreadyGone,
}

pub async fn cleanup(
    api: &dyn BucketApi,
    recorded: Option<&BucketRef>,
    policy: DeletionPolicy,
    empty_on_delete: bool,
    uid: &str,
) -> Result<CleanupOutcome, AwsError> {
    let Some(b) = recorded else {
        return Ok(CleanupOutcome::NothingRecorded);
    };
    match policy {
        DeletionPolicy::Retain => {
            if !api.bucket_exists(b).await? {
                return Ok(CleanupOutcome::Retained);
            }
            // Drop our ownership tags, so a later UploadBucket may adopt the bucket by name.
            let tags = api.get_tags(b).await?;
            if tags.get(TAG_UID).is_some_and(|u| u == uid) {
                let kept: BTreeMap<String, String> = tags
                    .into_iter()
                    .filter(|(k, _)| {
                        ![TAG_MANAGED_BY, TAG_NAMESPACE, TAG_NAME, TAG_UID].contains(&k.as_str())
                    })
                    .collect();
                api.put_tags(b, &kept).await?;
            }
            Ok(CleanupOutcome::Retained)
        }
        DeletionPolicy::Delete => {
            let objects = if empty_on_delete && api.bucket_exists(b).await? {
                api.empty_bucket(b).await?
            } else {
                0
            };
            match api.delete_bucket(b).await? {
                Deleted::Deleted => Ok(CleanupOutcome::Deleted { objects }),
                Deleted::NotFound => Ok(CleanupOutcome::AlreadyGone),
            }
        }
    }
}

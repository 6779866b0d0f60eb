//! What deleting an UploadBucket does to its bucket. Side effects: S3 calls.
//!
//! In: the bucket name status recorded (or the intent to create one), the ownership rule of
//! `claim`, and the deletion policy. Out: what happened. Nothing is touched unless the bucket
//! is proven ours, re-checked right before every destructive call; a bucket that is not ours,
//! or that S3 will not show us (403), is left alone and the deletion completes. Repeatable: a
//! bucket already gone is success, and so is an object whose apply never ran.

use std::collections::BTreeMap;

use tracing::warn;

use crate::aws::{BucketApi, Deleted, policy};
use crate::crd::DeletionPolicy;

use crate::controller::apply;
use crate::controller::claim::{ClaimError, Claimant, Owned, still_ours};
use crate::controller::desired::RESERVED_TAG_PREFIX;

/// Keys listed (and deleted) per emptying batch: S3's largest page and DeleteObjects' limit.
pub const EMPTY_BATCH_KEYS: i32 = 1000;
/// Batches per pass: a pass empties at most 10,000 objects, then gives its slot back.
pub const EMPTY_BATCHES_PER_PASS: u32 = 10;

/// What cleanup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanupOutcome {
    /// No bucket was ever proven ours or about to be created: nothing to do.
    NothingRecorded,
    /// The bucket turned out not to be ours (or S3 would not tell): left untouched.
    NotOurs(String),
    /// `Retain`: the bucket stays, released from this object (ownership tags removed).
    Retained,
    /// An adopted bucket: the operator's own tags, rules and statements removed, the rest
    /// (and every object) kept.
    Released,
    /// `Delete`: the bucket is gone (`objects` were deleted first, in this pass).
    Deleted { objects: u64 },
    /// `Delete` with `emptyOnDelete`: `objects` were deleted in this pass and more remain;
    /// the next pass goes on (so a huge bucket does not hold a reconcile slot for long).
    Emptying { objects: u64 },
    /// `Delete`: it was already gone.
    AlreadyGone,
}

/// Cleans up `who`'s bucket (`None`: status names no bucket and no intent). `spec_tag_keys`:
/// the keys of `spec.tags` the operator wrote, removed when an adopted bucket is released.
/// `begun`: an earlier pass proved the bucket ours and began emptying it, so S3 refusing to
/// show it (403) is a failure to retry, not a reason to leave it.
pub async fn cleanup(
    api: &dyn BucketApi,
    who: Option<&Claimant<'_>>,
    policy: DeletionPolicy,
    empty_on_delete: bool,
    spec_tag_keys: &[String],
    begun: bool,
) -> Result<CleanupOutcome, ClaimError> {
    let Some(who) = who else {
        return Ok(CleanupOutcome::NothingRecorded);
    };
    let owned = match ours_now(api, who, !begun).await? {
        Now::Ours(owned) => owned,
        Now::Gone => return Ok(CleanupOutcome::AlreadyGone),
        Now::NotOurs(why) => return Ok(CleanupOutcome::NotOurs(why)),
    };
    let b = &who.names.bucket;
    if owned.adopted {
        release(api, who, spec_tag_keys).await?;
        return Ok(CleanupOutcome::Released);
    }
    // Nobody listens for this object's events any more: its notifications (and on
    // S3-compatible stores their topic) go, whatever happens to the bucket.
    if !apply::own_notifications(api, b, true).await?.is_empty() {
        recheck(api, who).await?;
        api.put_notifications(b, &[]).await?;
    }
    match policy {
        DeletionPolicy::Retain => {
            // Drop our ownership tags: the bucket is nobody's again (adopting it takes the
            // cluster admin's allowlist). The tags written are those just read.
            let owned = recheck(api, who).await?;
            put_tags_without_ours(api, who, owned, &[]).await?;
            Ok(CleanupOutcome::Retained)
        }
        DeletionPolicy::Delete => {
            let mut objects = 0;
            if empty_on_delete {
                let mut batches = 0;
                loop {
                    // Each batch the bucket loses, it loses as ours: a retag by anyone else
                    // stops the emptying before the next one, and leaves the bucket be.
                    if let Some(stop) = before_destroying(api, who, spec_tag_keys).await? {
                        return Ok(stop);
                    }
                    let batch = api.empty_some(b, EMPTY_BATCH_KEYS).await?;
                    objects += batch.objects;
                    if batch.done {
                        break;
                    }
                    batches += 1;
                    if batches == EMPTY_BATCHES_PER_PASS {
                        return Ok(CleanupOutcome::Emptying { objects });
                    }
                }
            }
            // The bucket must still be ours, and not adopted, when it goes.
            if let Some(stop) = before_destroying(api, who, spec_tag_keys).await? {
                return Ok(stop);
            }
            match api.delete_bucket(b).await? {
                Deleted::Deleted => Ok(CleanupOutcome::Deleted { objects }),
                Deleted::NotFound => Ok(CleanupOutcome::AlreadyGone),
            }
        }
    }
}

/// Pure: a bucket `Delete` only releases, never empties or deletes: adopted (its tag), or a
/// name the cluster admin lists as adoptable (`--adoptable-buckets`), whatever its tags say
/// now. (`Retain` keeps a listed bucket's settings as it keeps any other's.)
fn kept(owned: &Owned, who: &Claimant<'_>) -> bool {
    owned.adopted || who.listed
}

/// The check right before emptying a batch or deleting the bucket, ownership having been
/// proven earlier in the pass: `Some` outcome when it must stop there (gone, someone
/// else's, or adopted meanwhile: then released). A 403 now is a failure to retry.
async fn before_destroying(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    spec_tag_keys: &[String],
) -> Result<Option<CleanupOutcome>, ClaimError> {
    Ok(match ours_now(api, who, false).await? {
        Now::Ours(owned) if kept(&owned, who) => {
            release(api, who, spec_tag_keys).await?;
            Some(CleanupOutcome::Released)
        }
        Now::Ours(_) => None,
        Now::Gone => Some(CleanupOutcome::AlreadyGone),
        Now::NotOurs(why) => Some(CleanupOutcome::NotOurs(why)),
    })
}

/// Whether the bucket is the object's own right now.
enum Now {
    Ours(Owned),
    /// It does not exist (any more).
    Gone,
    /// Someone else's, or S3 will not tell (403): left untouched; why.
    NotOurs(String),
}

/// The ownership check before each destructive step ([`still_ours`]), a bucket that is not
/// the object's own being an outcome, not a failure; so is one S3 will not show (403) when
/// `denied_is_not_ours` (nothing proved it ours yet; afterwards a 403 is rather an expired
/// credential or a skewed clock, retried).
async fn ours_now(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    denied_is_not_ours: bool,
) -> Result<Now, ClaimError> {
    match still_ours(api, who).await {
        Ok(Some(owned)) => Ok(Now::Ours(owned)),
        Ok(None) => Ok(Now::Gone),
        Err(e @ ClaimError::Aws(crate::aws::AwsError::AccessDenied { .. }))
            if denied_is_not_ours =>
        {
            warn!(error = %e, "Cannot prove the bucket is ours; leaving it untouched");
            Ok(Now::NotOurs(e.to_string()))
        }
        Err(e) if e.not_ours() => Ok(Now::NotOurs(e.to_string())),
        Err(e) => Err(e),
    }
}

/// Removes what the operator added to an adopted bucket, each removal after a re-check:
/// its CORS rule, lifecycle rules, policy statements, and last its tags (ownership and spec).
async fn release(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    spec_tag_keys: &[String],
) -> Result<(), ClaimError> {
    let b = &who.names.bucket;
    if !api.get_cors(b).await?.is_empty() {
        recheck(api, who).await?;
        api.put_cors(b, &[]).await?;
    }
    if !api.get_lifecycle(b).await?.is_empty() {
        recheck(api, who).await?;
        api.put_lifecycle(b, &[]).await?;
    }
    if !apply::own_notifications(api, b, true).await?.is_empty() {
        recheck(api, who).await?;
        api.put_notifications(b, &[]).await?;
    }
    let current = api.get_policy(b).await?;
    if !policy::own_statements(current.as_ref()).is_empty() {
        recheck(api, who).await?;
        match policy::merge_statements(current.as_ref(), &[]) {
            Some(doc) => api.put_policy(b, &doc).await?,
            None => api.delete_policy(b).await?,
        }
    }
    let owned = recheck(api, who).await?;
    put_tags_without_ours(api, who, owned, spec_tag_keys).await
}

async fn recheck(api: &dyn BucketApi, who: &Claimant<'_>) -> Result<Owned, ClaimError> {
    still_ours(api, who).await?.ok_or_else(|| {
        ClaimError::Aws(crate::aws::AwsError::Api {
            op: "HeadBucket",
            code: "NoSuchBucket".into(),
            message: format!(
                "bucket {:?} disappeared during cleanup",
                who.names.bucket.name
            ),
        })
    })
}

/// Drops the ownership tags and `also` from the bucket's tags.
async fn put_tags_without_ours(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    owned: Owned,
    also: &[String],
) -> Result<(), ClaimError> {
    let kept: BTreeMap<String, String> = owned
        .tags
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_TAG_PREFIX) && !also.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if kept != owned.tags {
        api.put_tags(&who.names.bucket, &kept).await?;
    }
    Ok(())
}

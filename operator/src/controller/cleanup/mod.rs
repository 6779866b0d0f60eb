//! The cleanup path: what deleting an UploadBucket undoes, in order: its Pod Identity
//! associations (before the role, so none is left naming a role that is gone), its upload
//! role, its bucket by the deletion policy ([`cleanup`]), its outputs ConfigMap; then the
//! operator forgets the object.
//!
//! In: the object being deleted and the [`Context`]. Out: `Ok` (the finalizer may go), with
//! an Event for what was removed or left alone, or the error that keeps the object, with the
//! Ready condition saying what deletion waits for (`cleanup_failed`). Each step acts only on
//! what is proven the object's own: associations and the role by their uid tag, the bucket by
//! `claim`'s rule, re-checked before every destructive call.

mod bucket;

pub use bucket::{CleanupOutcome, EMPTY_BATCH_KEYS, EMPTY_BATCHES_PER_PASS, cleanup};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Api, ResourceExt};
use tracing::{info, warn};

use crate::aws::AwsError;
use crate::crd::UploadBucket;
use crate::reasons::Reason;

use super::claim::{ClaimError, Claimant};
use super::context::{Context, key, publish};
use super::desired::{self, Names};
use super::error::Error;
use super::status::{self, CondSpec, READY};
use super::{association, outputs, role};

/// Deletion of one UploadBucket: associations, role, bucket, outputs, in that order; the
/// first failure stops it (`cleanup_failed`).
pub(super) async fn cleanup_object(
    ub: &UploadBucket,
    ctx: &Context,
    api: &Api<UploadBucket>,
) -> Result<Action, Error> {
    if let Err(e) = clean_associations(ub, ctx).await {
        return Err(cleanup_failed(ctx, ub, api, Error::Aws(e)).await);
    }
    if let Err(e) = clean_role(ub, ctx).await {
        return Err(cleanup_failed(ctx, ub, api, Error::Aws(e)).await);
    }
    let names = desired::recorded_names(ub, &ctx.defaults);
    let outcome = clean_bucket(ub, ctx, names.as_ref()).await;
    let name = names
        .as_ref()
        .map(|n| n.bucket.name.as_str())
        .unwrap_or("-");
    match outcome {
        Ok(outcome @ CleanupOutcome::Emptying { objects }) => {
            // More to delete: the finalizer stays and the object comes back soon, its slot
            // free for others meanwhile. One Event when the emptying begins, not one a pass
            // (a bucket of millions of objects takes hundreds).
            if !emptying_begun(ub) {
                let (type_, reason, note) = bucket_event(&outcome, name);
                publish(ctx, ub, type_, reason, "Cleanup", note).await;
            }
            let waiting = Error::Emptying {
                bucket: name.to_owned(),
                objects,
            };
            Err(set_waiting(ub, api, waiting).await)
        }
        Ok(outcome) => {
            let (type_, reason, note) = bucket_event(&outcome, name);
            info!(bucket = name, "{note}");
            publish(ctx, ub, type_, reason, "Cleanup", note).await;
            // Kubernetes' garbage collector removes it too (owner reference); this does not
            // wait for it.
            if let Err(e) = outputs::remove(&ctx.client, ub).await {
                warn!(error = %e, "Could not delete the outputs ConfigMap; the garbage collector will");
            }
            ctx.failures().remove(&key(ub));
            Ok(Action::await_change())
        }
        Err(e) => Err(cleanup_failed(ctx, ub, api, Error::Claim(e)).await),
    }
}

/// The object's Pod Identity associations (credential mode `pod-identity`), found by the uid
/// tag each carries and re-read before each delete; an Event names those deleted.
async fn clean_associations(ub: &UploadBucket, ctx: &Context) -> Result<(), AwsError> {
    let Some(eks) = &ctx.eks else {
        return Ok(());
    };
    let deleted = association::cleanup_associations(&**eks, ub).await?;
    if !deleted.is_empty() {
        let message = format!(
            "Deleted the EKS Pod Identity association of service account {}",
            deleted.join(", ")
        );
        info!("{message}");
        publish(ctx, ub, EventType::Normal, "Deleted", "Cleanup", message).await;
    }
    Ok(())
}

/// The upload role (when upload roles are on): only the role named from this object's own
/// uid, and only once status says it was about to be made: a name written into status by
/// anyone else is ignored. A role whose uid tag is another's is left alone, with a Warning.
async fn clean_role(ub: &UploadBucket, ctx: &Context) -> Result<(), AwsError> {
    let Some((iam, settings)) = &ctx.roles else {
        return Ok(());
    };
    let derived = desired::derive_role_name(ub);
    let recorded = ub.status.as_ref().and_then(|s| s.role_name.as_deref());
    if recorded.is_some_and(|r| r != derived) {
        warn!(
            recorded,
            "Ignoring a role name in status that is not this object's"
        );
    }
    if recorded != Some(derived.as_str()) {
        return Ok(());
    }
    let uid = ub.uid().unwrap_or_default();
    let tagged = settings.tag_roles.then_some(uid.as_str());
    match role::cleanup_role(&**iam, &derived, tagged).await? {
        role::RoleCleanup::Deleted => {
            info!(role = %derived, "Deleted role");
            publish(
                ctx,
                ub,
                EventType::Normal,
                "Deleted",
                "Cleanup",
                format!("Deleted role {derived}"),
            )
            .await;
        }
        role::RoleCleanup::NotFound => {}
        role::RoleCleanup::NotOurs => {
            publish(
                ctx,
                ub,
                EventType::Warning,
                "LeftUntouched",
                "Cleanup",
                format!("Left role {derived} untouched: its uid tag is not this object's"),
            )
            .await;
        }
    }
    Ok(())
}

/// The bucket status recorded (`names`; `None`: nothing was ever provisioned), claimed by the
/// object's uid and recorded intent, cleaned up by the deletion policy ([`cleanup`]). The
/// spec tag keys to release are the spec's and those status recorded as written.
async fn clean_bucket(
    ub: &UploadBucket,
    ctx: &Context,
    names: Option<&Names>,
) -> Result<CleanupOutcome, ClaimError> {
    let uid = ub.uid().unwrap_or_default();
    let intent = ub
        .status
        .as_ref()
        .and_then(|s| s.creating_bucket.as_deref());
    let who = names.map(|n| Claimant::new(n, &uid, intent, &ctx.defaults));
    let mut spec_tag_keys: Vec<String> = ub.spec.tags.keys().cloned().collect();
    if let Some(st) = &ub.status {
        spec_tag_keys.extend(st.managed_tag_keys.iter().cloned());
    }
    cleanup(
        &*ctx.buckets,
        who.as_ref(),
        ub.spec.deletion_policy,
        ub.spec.empty_on_delete,
        &spec_tag_keys,
        emptying_begun(ub),
    )
    .await
}

/// Pure: an earlier pass began emptying the object's bucket (status says `Emptying`).
fn emptying_begun(ub: &UploadBucket) -> bool {
    ub.condition(READY)
        .is_some_and(|c| Reason::Emptying == c.reason.as_str())
}

/// Pure: the Event that says what cleanup did to bucket `name`.
fn bucket_event(outcome: &CleanupOutcome, name: &str) -> (EventType, &'static str, String) {
    match outcome {
        CleanupOutcome::NothingRecorded => (
            EventType::Normal,
            "Deleted",
            "No bucket was provisioned for this object; nothing to clean up".to_owned(),
        ),
        CleanupOutcome::NotOurs(why) => (
            EventType::Warning,
            "LeftUntouched",
            format!("Left bucket {name} untouched: {why}"),
        ),
        CleanupOutcome::Retained => (
            EventType::Normal,
            "Retained",
            format!("Kept bucket {name} (deletionPolicy Retain)"),
        ),
        CleanupOutcome::Released => (
            EventType::Normal,
            "Released",
            format!(
                "Released adopted bucket {name}: removed the operator's tags, rules and policy statements, kept everything else"
            ),
        ),
        CleanupOutcome::Deleted { objects } => (
            EventType::Normal,
            "Deleted",
            format!("Deleted bucket {name} and the {objects} objects it still held"),
        ),
        CleanupOutcome::Emptying { objects } => (
            EventType::Normal,
            "Emptying",
            format!(
                "Emptying bucket {name} before deleting it: deleted {objects} objects in this pass, more remain"
            ),
        ),
        CleanupOutcome::AlreadyGone => (
            EventType::Normal,
            "Deleted",
            format!("Bucket {name} was already gone"),
        ),
    }
}

/// A failed cleanup: the Ready condition says what deletion waits for, with a Warning.
async fn cleanup_failed(
    ctx: &Context,
    ub: &UploadBucket,
    api: &Api<UploadBucket>,
    error: Error,
) -> Error {
    let error = set_waiting(ub, api, error).await;
    publish(
        ctx,
        ub,
        EventType::Warning,
        error.reason().as_str(),
        "Cleanup",
        error.to_string(),
    )
    .await;
    error
}

/// The Ready condition says what deletion waits for: `error`, returned.
async fn set_waiting(ub: &UploadBucket, api: &Api<UploadBucket>, error: Error) -> Error {
    let mut st = ub.status.clone().unwrap_or_default();
    let message = format!("Deletion is waiting: {error}");
    status::set_conditions(
        &mut st,
        &[CondSpec::new(READY, false, error.reason(), message)],
        ub.metadata.generation,
        Timestamp::now(),
    );
    if status::differs(ub.status.as_ref(), &st)
        && let Err(e) = status::patch_status(api, ub, &st).await
    {
        warn!(error = %e, "Could not write status");
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_outcome_has_its_event() {
        for (outcome, warning, reason, note) in [
            (
                CleanupOutcome::NothingRecorded,
                false,
                "Deleted",
                "No bucket was provisioned for this object; nothing to clean up",
            ),
            (
                CleanupOutcome::NotOurs("its uid tag is another's".into()),
                true,
                "LeftUntouched",
                "Left bucket b untouched: its uid tag is another's",
            ),
            (
                CleanupOutcome::Retained,
                false,
                "Retained",
                "Kept bucket b (deletionPolicy Retain)",
            ),
            (
                CleanupOutcome::Released,
                false,
                "Released",
                "Released adopted bucket b: removed the operator's tags, rules and policy statements, kept everything else",
            ),
            (
                CleanupOutcome::Deleted { objects: 2 },
                false,
                "Deleted",
                "Deleted bucket b and the 2 objects it still held",
            ),
            (
                CleanupOutcome::Emptying { objects: 10 },
                false,
                "Emptying",
                "Emptying bucket b before deleting it: deleted 10 objects in this pass, more remain",
            ),
            (
                CleanupOutcome::AlreadyGone,
                false,
                "Deleted",
                "Bucket b was already gone",
            ),
        ] {
            let (type_, r, n) = bucket_event(&outcome, "b");
            assert_eq!(matches!(type_, EventType::Warning), warning, "{outcome:?}");
            assert_eq!((r, n.as_str()), (reason, note));
        }
    }
}

//! Bring a bucket proven ours (see `claim`) to its desired state. Side effects: S3 calls
//! through [`BucketApi`].
//!
//! In: a [`DesiredBucket`], the [`Owned`] bucket with its current tags, and the spec tag keys
//! written last time. Out: which settings were written. Every setting is read, compared in
//! canonical form and written only when it differs, so a reconcile with nothing changed makes
//! no mutating call at all. Only the operator's own parts are managed: its tags, its CORS
//! rule, its lifecycle rules and its policy statements; everyone else's stay as they are.
//! The first write (the tags) rests on the claim made just before; every later write
//! re-checks ownership right before it acts ([`guard`]), so a bucket retagged by someone else
//! mid-reconcile gets nothing more.
//!
//! A bucket this pass created ([`Owned::created`]) under the object's derived name is the
//! exception: S3 answered our CreateBucket a moment ago, and the name holds a hash of the
//! object's uid, so it holds nothing but what this pass writes. Its settings are
//! not read back (none exist yet: no CORS, lifecycle, policy, notifications; versioning off;
//! encryption and the public-access block at the backend's defaults, which are written
//! anyway) and its ownership is not re-checked between the writes. That takes a new object
//! from about 28 S3 calls to 8. The next full pass (the resync) reads everything as usual and
//! repairs whatever that assumption missed.

use crate::aws::{
    AwsError, BucketApi, Encryption, Versioning, canonical_cors, canonical_lifecycle, policy,
};

use super::claim::{ClaimError, Claimant, Owned, still_ours};
use super::desired::{DesiredBucket, merge_tags};

/// What an apply changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub created: bool,
    /// Settings written, in order (e.g. `cors`, `lifecycle`).
    pub changed: Vec<&'static str>,
}

/// Brings the bucket in line with `d`. `ownership`: the tags that mark it ours.
///
/// One function on purpose, longer than the others: the order of its steps is part of the
/// safety argument (the tags first, so a new bucket is marked ours before anything else;
/// the public-access block before the policy; a guard before every write), and it reads
/// best as one list.
pub async fn apply(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    owned: &Owned,
    d: &DesiredBucket,
    ownership: &std::collections::BTreeMap<String, String>,
    dropped_tag_keys: &[String],
) -> Result<ApplyReport, ClaimError> {
    let b = &d.bucket;
    let mut report = ApplyReport {
        created: owned.created,
        changed: Vec::new(),
    };

    // Tags first, so that a bucket we created or adopted is marked ours as early as possible.
    let tags = merge_tags(&owned.tags, ownership, &d.spec_tags, dropped_tag_keys);
    if tags != owned.tags {
        api.put_tags(b, &tags).await?;
        report.changed.push("tags");
    }

    // A bucket created by this pass under its derived name (which holds a hash of the
    // object's uid, so no other object can create it too): nothing to read back, nobody
    // else's to guard against. Not for a name chosen in the spec: two objects naming the same
    // bucket may both be told "created" (us-east-1 and RGW answer 200 to the owner creating
    // a bucket again), and the guard is what lets only one of them go on.
    let fresh = owned.created && who.names.derived;
    let guard = async || {
        if fresh { Ok(()) } else { guard(api, who).await }
    };

    // Bucket-wide settings are someone else's on an adopted bucket: left as they are.
    if !owned.adopted {
        // A fresh bucket's ownership controls and public-access block are the backend's
        // defaults, which differ between backends and over time: written, not assumed.
        if d.acls_disabled && (fresh || api.get_acls_disabled(b).await? != Some(true)) {
            guard().await?;
            api.put_acls_disabled(b).await?;
            report.changed.push("ownershipControls");
        }
        if fresh || api.get_public_access_block(b).await? != Some(d.public_access_block) {
            guard().await?;
            api.put_public_access_block(b, d.public_access_block)
                .await?;
            report.changed.push("publicAccessBlock");
        }
        if let Some(enc) = &d.encryption {
            // No configuration at all means the S3 default, SSE-S3 (a fresh bucket's).
            let current = if fresh {
                Encryption::SseS3
            } else {
                api.get_encryption(b).await?.unwrap_or(Encryption::SseS3)
            };
            if &current != enc {
                guard().await?;
                api.put_encryption(b, enc).await?;
                report.changed.push("encryption");
            }
        }
    }

    let cors = canonical_cors(if fresh {
        Vec::new()
    } else {
        api.get_cors(b).await?
    });
    if cors != d.cors {
        guard().await?;
        api.put_cors(b, &d.cors).await?;
        report.changed.push("cors");
    }

    let lifecycle = canonical_lifecycle(if fresh {
        Vec::new()
    } else {
        api.get_lifecycle(b).await?
    });
    if lifecycle != d.lifecycle {
        guard().await?;
        api.put_lifecycle(b, &d.lifecycle).await?;
        report.changed.push("lifecycle");
    }

    let versioning = if fresh {
        Versioning::Off
    } else {
        api.get_versioning(b).await?
    };
    let wanted = match (d.versioning, versioning) {
        (true, Versioning::Enabled) | (false, Versioning::Off | Versioning::Suspended) => None,
        (true, _) => Some(true),
        // S3 cannot turn versioning off again, only suspend it; and only on a bucket the
        // operator created, never on one whose owners turned it on.
        (false, Versioning::Enabled) if !owned.adopted => Some(false),
        (false, Versioning::Enabled) => None,
    };
    if let Some(enabled) = wanted {
        guard().await?;
        api.put_versioning(b, enabled).await?;
        report.changed.push("versioning");
    }

    let notifications = if fresh {
        Vec::new()
    } else {
        own_notifications(api, b, d.notifications.is_empty()).await?
    };
    if notifications != d.notifications {
        guard().await?;
        api.put_notifications(b, &d.notifications).await?;
        report.changed.push("notifications");
    }

    // The policy goes after the public-access block: with BlockPublicPolicy still on, S3
    // refuses a public policy.
    let current = if fresh {
        None
    } else {
        api.get_policy(b).await?
    };
    let ours = policy::own_statements(current.as_ref());
    if ours != d.policy_statements {
        guard().await?;
        match policy::merge_statements(current.as_ref(), &d.policy_statements) {
            Some(doc) => api.put_policy(b, &doc).await?,
            None => api.delete_policy(b).await?,
        }
        report.changed.push("policy");
    }

    Ok(report)
}

/// The operator's notifications on `b`. An operator whose identity may not read them (a
/// policy from before notifications existed) cannot have written any: with none wanted, a
/// refusal means none.
pub(crate) async fn own_notifications(
    api: &dyn BucketApi,
    b: &crate::aws::BucketRef,
    none_wanted: bool,
) -> Result<Vec<crate::aws::Notification>, AwsError> {
    match api.get_notifications(b).await {
        Err(AwsError::AccessDenied { .. }) if none_wanted => Ok(Vec::new()),
        other => other,
    }
}

/// Re-checks, right before a write, that the bucket is still this object's (by the claim rule).
async fn guard(api: &dyn BucketApi, who: &Claimant<'_>) -> Result<(), ClaimError> {
    match still_ours(api, who).await? {
        Some(_) => Ok(()),
        None => Err(ClaimError::Aws(AwsError::Api {
            op: "HeadBucket",
            code: "NoSuchBucket".into(),
            message: format!(
                "bucket {:?} disappeared during reconcile",
                who.names.bucket.name
            ),
        })),
    }
}

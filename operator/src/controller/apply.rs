//! Bring the bucket to its desired state. Side effects: S3 calls through [`BucketApi`].
//!
//! In: a [`DesiredBucket`] and the owner's uid. Out: which settings were written.
//! Every setting is read, compared in canonical form and written only when it differs, so a
//! reconcile with nothing changed makes no mutating call at all.

use crate::aws::{
    AwsError, BucketApi, Created, Encryption, Versioning, canonical_cors, canonical_lifecycle,
    policy,
};

use super::desired::{DesiredBucket, TAG_NAME, TAG_NAMESPACE, TAG_UID};

/// What an apply changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub created: bool,
    /// Settings written, in order (e.g. `cors`, `lifecycle`).
    pub changed: Vec<&'static str>,
}

/// Why apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The bucket exists in our account but another UploadBucket manages it.
    #[error(
        "bucket {bucket:?} is already managed by UploadBucket {owner} (uid {uid}); give this one another spec.bucketName"
    )]
    ManagedByOther {
        bucket: String,
        owner: String,
        uid: String,
    },
}

/// Brings the bucket in line with `d`.
pub async fn apply(
    api: &dyn BucketApi,
    d: &DesiredBucket,
    uid: &str,
) -> Result<ApplyReport, ApplyError> {
    let b = &d.bucket;
    let mut report = ApplyReport::default();

    // HEAD first: on AWS, CreateBucket on a bucket we own outside us-east-1 is a write that
    // answers BucketAlreadyOwnedByYou; HEAD keeps the no-op reconcile free of writes.
    // A bucket owned by another account answers HEAD with 403, as does our own without
    // s3:ListBucket; CreateBucket tells the two apart (BucketAlreadyExists vs ...OwnedByYou).
    let exists = match api.bucket_exists(b).await {
        Ok(exists) => exists,
        Err(AwsError::AccessDenied { .. }) => false,
        Err(e) => return Err(e.into()),
    };
    if !exists {
        report.created = api.create_bucket(b).await? == Created::New;
    }

    let tags = api.get_tags(b).await?;
    if let Some(owner_uid) = tags.get(TAG_UID).filter(|u| u.as_str() != uid) {
        return Err(ApplyError::ManagedByOther {
            bucket: b.name.clone(),
            owner: format!(
                "{}/{}",
                tags.get(TAG_NAMESPACE).map(String::as_str).unwrap_or("?"),
                tags.get(TAG_NAME).map(String::as_str).unwrap_or("?")
            ),
            uid: owner_uid.clone(),
        });
    }
    // Tags go first so that a bucket we created is marked as ours as early as possible.
    if tags != d.tags {
        api.put_tags(b, &d.tags).await?;
        report.changed.push("tags");
    }

    if d.acls_disabled && api.get_acls_disabled(b).await? != Some(true) {
        api.put_acls_disabled(b).await?;
        report.changed.push("ownershipControls");
    }

    if api.get_public_access_block(b).await? != Some(d.public_access_block) {
        api.put_public_access_block(b, d.public_access_block)
            .await?;
        report.changed.push("publicAccessBlock");
    }

    if let Some(enc) = &d.encryption {
        let current = api.get_encryption(b).await?;
        // No configuration at all means the S3 default, SSE-S3.
        let current = current.unwrap_or(Encryption::SseS3);
        if &current != enc {
            api.put_encryption(b, enc).await?;
            report.changed.push("encryption");
        }
    }

    let cors = canonical_cors(api.get_cors(b).await?);
    if cors != d.cors {
        if d.cors.is_empty() {
            api.delete_cors(b).await?;
        } else {
            api.put_cors(b, &d.cors).await?;
        }
        report.changed.push("cors");
    }

    let lifecycle = canonical_lifecycle(api.get_lifecycle(b).await?);
    if lifecycle != d.lifecycle {
        if d.lifecycle.is_empty() {
            api.delete_lifecycle(b).await?;
        } else {
            api.put_lifecycle(b, &d.lifecycle).await?;
        }
        report.changed.push("lifecycle");
    }

    let versioning = api.get_versioning(b).await?;
    let wanted = match (d.versioning, versioning) {
        (true, Versioning::Enabled) | (false, Versioning::Off | Versioning::Suspended) => None,
        (true, _) => Some(true),
        // S3 cannot turn versioning off again, only suspend it.
        (false, Versioning::Enabled) => Some(false),
    };
    if let Some(enabled) = wanted {
        api.put_versioning(b, enabled).await?;
        report.changed.push("versioning");
    }

    // The policy goes after the public-access block: with BlockPublicPolicy still on, S3
    // refuses a public policy.
    let current = api.get_policy(b).await?;
    match (&d.policy, current) {
        (None, None) => {}
        // Only a policy we wrote is ours to remove; one set by hand on an adopted bucket stays.
        (None, Some(have)) if have.to_string().contains(policy::PUBLIC_READ_SID) => {
            api.delete_policy(b).await?;
            report.changed.push("policy");
        }
        (None, Some(_)) => {}
        (Some(want), Some(have)) if policy::canonical(want) == policy::canonical(&have) => {}
        (Some(want), _) => {
            api.put_policy(b, want).await?;
            report.changed.push("policy");
        }
    }

    Ok(report)
}

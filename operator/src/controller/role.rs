//! The upload role of an UploadBucket: desired state (pure), apply and cleanup (side effects,
//! through [`IamApi`]).
//!
//! In: the UploadBucket, its bucket, and how pods get credentials in this cluster (IRSA's
//! OIDC provider, or EKS Pod Identity). Out: a role the signer's pods assume, allowed only
//! the upload actions on `bucket/prefix*`. Read, compare canonically, write only what differs.

use std::collections::BTreeMap;

use kube::ResourceExt;
use serde_json::Value;

use crate::aws::iam::{IamApi, NewRole, Role};
use crate::aws::{AwsError, BucketRef, Deleted, policy};
use crate::crd::UploadBucket;

use super::desired::{SpecError, TAG_UID, derive_role_name};

/// Who may assume the upload roles: the operator's credential mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// IRSA: the signer exchanges its projected service-account token with STS
    /// (AssumeRoleWithWebIdentity), trusted through the cluster's OIDC provider.
    Irsa {
        /// IAM ARN of the cluster's OIDC provider.
        provider_arn: String,
        /// Its issuer (host/path), as used in condition keys.
        issuer: String,
    },
    /// EKS Pod Identity: EKS assumes the role for pods whose service account has an
    /// association naming it (the operator keeps those, see `association`).
    PodIdentity {
        /// ARN of the EKS cluster (arn:aws:eks:<region>:<account>:cluster/<name>).
        cluster_arn: String,
    },
}

impl Trust {
    /// The AWS account of the cluster (where upload roles and KMS keys default to).
    pub fn account(&self) -> &str {
        match self {
            Trust::Irsa { provider_arn, .. } => policy::account_of(provider_arn),
            Trust::PodIdentity { cluster_arn } => policy::account_of(cluster_arn),
        }
        .unwrap_or_default()
    }
}

/// How roles are made in this cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSettings {
    pub trust: Trust,
    /// IAM path of every role, e.g. `/uploadbucket/`.
    pub role_path: String,
    pub permissions_boundary: Option<String>,
    /// Tag roles as managed (off where the backend cannot, see `aws::rgw`).
    pub tag_roles: bool,
    /// The account whose buckets alone the role's S3 grants reach (the `s3:ResourceAccount`
    /// condition, AWS only; see [`policy::own_account_only`]): the operator's own, the one
    /// its bucket calls name as the expected owner. `None` on RGW.
    pub bucket_account: Option<String>,
}

/// The role as it should be.
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredRole {
    pub name: String,
    pub trust_policy: Value,
    pub policy: Value,
    pub tags: BTreeMap<String, String>,
}

/// Pure: the desired role for an UploadBucket whose bucket is `bucket`.
pub fn desired_role(
    ub: &UploadBucket,
    bucket: &BucketRef,
    settings: &RoleSettings,
) -> Result<DesiredRole, SpecError> {
    for sa in &ub.spec.service_account_names {
        let ok = !sa.is_empty()
            && sa.len() <= 253
            && sa
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && sa.starts_with(|c: char| c.is_ascii_alphanumeric())
            && sa.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !ok {
            return Err(SpecError {
                field: "spec.serviceAccountNames",
                message: format!(
                    "{sa:?} is not a service account name (lowercase letters, digits, '-' and '.')"
                ),
            });
        }
    }
    if matches!(settings.trust, Trust::PodIdentity { .. })
        && ub.spec.service_account_names.is_empty()
    {
        return Err(SpecError {
            field: "spec.serviceAccountNames",
            message: "list the service accounts of the pods that sign: with EKS Pod Identity the operator associates the upload role with each of them (EKS allows one association per service account, so a service account can sign for one UploadBucket)".into(),
        });
    }
    let ns = ub.namespace().unwrap_or_default();
    // Uploads to an SSE-KMS bucket need its key; the key's account defaults to the cluster's.
    let kms = ub
        .spec
        .encryption
        .kms_key_id
        .as_deref()
        .filter(|_| ub.spec.encryption.kind == crate::crd::EncryptionType::SseKms)
        .map(|key| policy::KmsKey {
            key,
            account: settings.trust.account(),
        });
    let mut tags = BTreeMap::new();
    if settings.tag_roles {
        tags.insert(
            super::desired::TAG_MANAGED_BY.to_owned(),
            super::desired::MANAGED_BY.to_owned(),
        );
        tags.insert(super::desired::TAG_NAMESPACE.to_owned(), ns.clone());
        tags.insert(super::desired::TAG_NAME.to_owned(), ub.name_any());
        tags.insert(
            super::desired::TAG_UID.to_owned(),
            ub.uid().unwrap_or_default(),
        );
    }
    let mut permissions = policy::role_policy(
        &bucket.region,
        &bucket.name,
        &ub.spec.uploads.key_prefix,
        ub.spec.uploads.allow_downloads,
        ub.spec.uploads.verification.enabled,
        ub.spec.uploads.limits.open_multipart_uploads > 0,
        kms.as_ref(),
    );
    if let Some(account) = &settings.bucket_account {
        policy::own_account_only(&mut permissions, account);
    }
    Ok(DesiredRole {
        name: derive_role_name(ub),
        trust_policy: match &settings.trust {
            Trust::Irsa {
                provider_arn,
                issuer,
            } => policy::trust_policy(provider_arn, issuer, &ns, &ub.spec.service_account_names),
            Trust::PodIdentity { cluster_arn } => {
                policy::pod_identity_trust_policy(cluster_arn, &ns, &ub.spec.service_account_names)
            }
        },
        policy: permissions,
        tags,
    })
}

/// What an apply of the role did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoleReport {
    pub arn: String,
    pub created: bool,
    pub changed: Vec<&'static str>,
}

/// Brings the role in line with `d`.
pub async fn apply_role(
    iam: &dyn IamApi,
    d: &DesiredRole,
    settings: &RoleSettings,
) -> Result<RoleReport, AwsError> {
    let mut report = RoleReport::default();
    let role = match iam.get_role(&d.name).await? {
        Some(role) => role,
        None => {
            report.created = true;
            iam.create_role(&NewRole {
                name: &d.name,
                path: &settings.role_path,
                trust_policy: &d.trust_policy,
                permissions_boundary: settings.permissions_boundary.as_deref(),
                tags: &d.tags,
                description: "Upload role of an UploadBucket (managed by uploadbucket-operator)",
            })
            .await?
        }
    };
    // A role found under our name (or one CreateRole says exists already) must be ours.
    ours(&role, d.tags.get(TAG_UID).map(String::as_str), &d.name)?;
    report.arn = role.arn.clone();
    if !report.created
        && policy::canonical(&role.trust_policy) != policy::canonical(&d.trust_policy)
    {
        iam.update_trust_policy(&d.name, &d.trust_policy).await?;
        report.changed.push("trustPolicy");
    }
    // A role CreateRole just made has no inline policy yet and nobody else's hands on it:
    // nothing to read back or re-check (new object: GetRole, CreateRole, PutRolePolicy).
    let current = if report.created {
        None
    } else {
        iam.get_role_policy(&d.name, policy::ROLE_POLICY_NAME)
            .await?
    };
    if current.as_ref().map(policy::canonical) != Some(policy::canonical(&d.policy)) {
        if !report.created {
            recheck(iam, &d.name, d.tags.get(TAG_UID).map(String::as_str)).await?;
        }
        iam.put_role_policy(&d.name, policy::ROLE_POLICY_NAME, &d.policy)
            .await?;
        report.changed.push("permissionPolicy");
    }
    Ok(report)
}

/// The role's name is derived from the object's uid, so a role by that name is ours; where
/// roles carry tags (`uid` is `Some`), its `uploadbucket.io/uid` tag must say so too.
fn ours(role: &Role, uid: Option<&str>, name: &str) -> Result<(), AwsError> {
    match uid {
        Some(uid) if role.tags.get(TAG_UID).map(String::as_str) != Some(uid) => {
            Err(AwsError::RoleManagedByOther(name.to_owned()))
        }
        _ => Ok(()),
    }
}

/// Re-reads the role right before a write: `Ok(false)` when it is gone.
async fn recheck(iam: &dyn IamApi, name: &str, uid: Option<&str>) -> Result<bool, AwsError> {
    match iam.get_role(name).await? {
        Some(role) => ours(&role, uid, name).map(|()| true),
        None => Ok(false),
    }
}

/// What deleting the role did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleCleanup {
    Deleted,
    NotFound,
    /// A role by our name whose uid tag is someone else's: left alone.
    NotOurs,
}

/// Deletes the role `name` (this object's derived name): its inline policies first (IAM
/// refuses to delete a role that has any), then the role, re-checking right before each that
/// it is still ours (`uid`: the tag it must carry where roles are tagged). Not found is success.
pub async fn cleanup_role(
    iam: &dyn IamApi,
    name: &str,
    uid: Option<&str>,
) -> Result<RoleCleanup, AwsError> {
    let check = async || match recheck(iam, name, uid).await {
        Ok(true) => Ok(None),
        Ok(false) => Ok(Some(RoleCleanup::NotFound)),
        Err(AwsError::RoleManagedByOther(_)) => Ok(Some(RoleCleanup::NotOurs)),
        Err(e) => Err(e),
    };
    if let Some(done) = check().await? {
        return Ok(done);
    }
    for p in iam.list_role_policies(name).await? {
        iam.delete_role_policy(name, &p).await?;
    }
    // ListRolePolicies may come back empty on some backends; ours is known by name.
    iam.delete_role_policy(name, policy::ROLE_POLICY_NAME)
        .await?;
    if let Some(done) = check().await? {
        return Ok(done);
    }
    Ok(match iam.delete_role(name).await? {
        Deleted::Deleted => RoleCleanup::Deleted,
        Deleted::NotFound => RoleCleanup::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::UploadBucketSpec;

    fn ub(ns: &str, name: &str) -> UploadBucket {
        let mut ub = UploadBucket::new(name, UploadBucketSpec::default());
        ub.metadata.namespace = Some(ns.into());
        ub.metadata.uid = Some("uid-1".into());
        ub
    }

    #[test]
    fn role_names_are_valid_bounded_and_stable() {
        let a = derive_role_name(&ub("shop", "avatars"));
        assert!(
            a.starts_with("ub-shop-avatars-") && a.len() == "ub-shop-avatars-".len() + 8,
            "{a}"
        );
        assert_eq!(a, derive_role_name(&ub("shop", "avatars")));
        let long = derive_role_name(&ub(&"n".repeat(63), &"x".repeat(200)));
        assert!(long.len() <= 64, "{long}");
        assert!(
            long.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        );
    }

    #[test]
    fn desired_role_scopes_to_namespace_and_prefix() {
        let irsa = RoleSettings {
            trust: Trust::Irsa {
                provider_arn: "arn:aws:iam::1:oidc-provider/issuer.example/id/X".into(),
                issuer: "issuer.example/id/X".into(),
            },
            role_path: "/uploadbucket/".into(),
            permissions_boundary: None,
            tag_roles: true,
            bucket_account: Some("123456789012".into()),
        };
        let mut u = ub("shop", "avatars");
        u.spec.service_account_names = vec!["web".into()];
        let b = BucketRef {
            name: "bkt".into(),
            region: "eu-west-1".into(),
        };
        let d = desired_role(&u, &b, &irsa).unwrap();
        assert_eq!(
            d.trust_policy["Statement"][0]["Condition"]["StringEquals"]["issuer.example/id/X:sub"],
            serde_json::json!(["system:serviceaccount:shop:web"])
        );
        assert_eq!(
            d.policy["Statement"][0]["Resource"],
            "arn:aws:s3:::bkt/uploads/*"
        );
        assert_eq!(
            d.tags.get("uploadbucket.io/uid").map(String::as_str),
            Some("uid-1")
        );
        u.spec.service_account_names = vec!["Bad_Name".into()];
        assert_eq!(
            desired_role(&u, &b, &irsa).unwrap_err().field,
            "spec.serviceAccountNames"
        );
    }

    #[test]
    fn pod_identity_roles_trust_eks_for_the_listed_service_accounts_only() {
        let settings = RoleSettings {
            trust: Trust::PodIdentity {
                cluster_arn: "arn:aws:eks:eu-west-1:123456789012:cluster/prod".into(),
            },
            role_path: "/uploadbucket/".into(),
            permissions_boundary: None,
            tag_roles: true,
            bucket_account: Some("123456789012".into()),
        };
        let mut u = ub("shop", "avatars");
        u.spec.encryption.kind = crate::crd::EncryptionType::SseKms;
        u.spec.encryption.kms_key_id = Some("k-1".into());
        let b = BucketRef {
            name: "bkt".into(),
            region: "eu-west-1".into(),
        };
        // No service account listed: nothing to associate, said so.
        let err = desired_role(&u, &b, &settings).unwrap_err();
        assert_eq!(err.field, "spec.serviceAccountNames");
        assert!(
            err.message.contains("one association per service account"),
            "{}",
            err.message
        );
        u.spec.service_account_names = vec!["web".into(), "api".into()];
        let d = desired_role(&u, &b, &settings).unwrap();
        let st = &d.trust_policy["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "pods.eks.amazonaws.com");
        assert_eq!(
            st["Action"],
            serde_json::json!(["sts:AssumeRole", "sts:TagSession"])
        );
        let eq = &st["Condition"]["StringEquals"];
        assert_eq!(eq["aws:SourceAccount"], "123456789012");
        assert_eq!(
            eq["aws:RequestTag/eks-cluster-arn"],
            "arn:aws:eks:eu-west-1:123456789012:cluster/prod"
        );
        assert_eq!(eq["aws:RequestTag/kubernetes-namespace"], "shop");
        assert_eq!(
            eq["aws:RequestTag/kubernetes-service-account"],
            serde_json::json!(["api", "web"])
        );
        // The KMS key's account defaults to the cluster's.
        assert!(
            d.policy
                .to_string()
                .contains("arn:aws:kms:eu-west-1:123456789012:key/k-1"),
            "{}",
            d.policy
        );
    }
}

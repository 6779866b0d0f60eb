//! EKS Pod Identity associations of an UploadBucket (credential mode `pod-identity`): one per
//! service account in `spec.serviceAccountNames`, each naming the object's upload role.
//! Side effects, through [`PodIdentityApi`].
//!
//! In: the UploadBucket and its role's ARN. Out: the associations EKS holds for it.
//! Ownership as for buckets and roles: an association is the operator's only when its
//! `uploadbucket.io/uid` tag is this object's uid, re-read right before any update or delete.
//! EKS allows one association per service account, so a service account whose association is
//! anyone else's (another UploadBucket's too) is refused, never taken over.

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::aws::eks::{Association, AssociationRef, Made, NewAssociation, PodIdentityApi};
use crate::aws::{AwsError, Deleted};
use crate::crd::UploadBucket;

use super::desired::{MANAGED_BY, TAG_MANAGED_BY, TAG_NAME, TAG_NAMESPACE, TAG_UID};

/// What an apply of the associations did, by service account.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AssociationReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

/// The tags each of the object's associations carries.
pub fn tags(ub: &UploadBucket) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        (TAG_NAMESPACE.to_owned(), ub.namespace().unwrap_or_default()),
        (TAG_NAME.to_owned(), ub.name_any()),
        (TAG_UID.to_owned(), ub.uid().unwrap_or_default()),
    ])
}

fn ours(a: &Association, uid: &str) -> bool {
    !uid.is_empty() && a.tags.get(TAG_UID).map(String::as_str) == Some(uid)
}

/// Who holds an association, for the refusal's message: an UploadBucket only when the
/// association carries a uid as well as its name.
fn holder(a: &Association) -> String {
    let uid = a.tags.get(TAG_UID).filter(|u| !u.is_empty());
    match (uid, a.tags.get(TAG_NAMESPACE), a.tags.get(TAG_NAME)) {
        (Some(_), Some(ns), Some(name)) => format!("it is UploadBucket {ns}/{name}'s"),
        _ => format!("association {} for role {}", a.id, a.role_arn),
    }
}

/// Reads association `id`, which the list said is `namespace`'s for `service_account`: an
/// answer about anything else is not trusted (the id, namespace and service account must be
/// the ones asked about, since the next write goes to that id).
async fn describe(
    eks: &dyn PodIdentityApi,
    id: &str,
    namespace: &str,
    service_account: &str,
) -> Result<Option<Association>, AwsError> {
    match eks.describe_association(id).await? {
        Some(a)
            if a.id == id && a.namespace == namespace && a.service_account == service_account =>
        {
            Ok(Some(a))
        }
        Some(a) => Err(AwsError::Api {
            op: "DescribePodIdentityAssociation",
            code: "UnexpectedAnswer".into(),
            message: format!(
                "asked about association {id} ({namespace}/{service_account}), EKS answered about {} ({}/{}); nothing written",
                a.id, a.namespace, a.service_account
            ),
        }),
        None => Ok(None),
    }
}

/// Brings the object's associations in line with its service accounts and `role_arn`: makes
/// the missing ones, points its own at the role, deletes its own for service accounts no
/// longer listed. The first service account held by someone else fails the pass.
pub async fn apply_associations(
    eks: &dyn PodIdentityApi,
    ub: &UploadBucket,
    role_arn: &str,
) -> Result<AssociationReport, AwsError> {
    let ns = ub.namespace().unwrap_or_default();
    let uid = ub.uid().unwrap_or_default();
    let wanted = &ub.spec.service_account_names;
    let listed = eks.list_associations(&ns).await?;
    let mut report = AssociationReport::default();
    for sa in wanted {
        let Some(found) = listed.iter().find(|a| &a.service_account == sa) else {
            let new = NewAssociation {
                namespace: &ns,
                service_account: sa,
                role_arn,
                tags: &tags(ub),
            };
            match eks.create_association(new).await? {
                Made::Created(_) => report.created.push(sa.clone()),
                // Made since the list: the next pass looks at whose it is.
                Made::InUse => {
                    return Err(AwsError::Api {
                        op: "CreatePodIdentityAssociation",
                        code: "ResourceInUseException".into(),
                        message: format!(
                            "service account {sa:?} got an association meanwhile; looking again"
                        ),
                    });
                }
            }
            continue;
        };
        let Some(a) = describe(eks, &found.id, &ns, sa).await? else {
            continue; // Deleted since the list; made on the next pass.
        };
        if !ours(&a, &uid) {
            return Err(AwsError::AssociationManagedByOther {
                service_account: sa.clone(),
                holder: holder(&a),
            });
        }
        if a.role_arn != role_arn {
            // The describe just above is the re-check before this write.
            eks.update_association(&found.id, role_arn).await?;
            report.updated.push(sa.clone());
        }
    }
    for stale in listed
        .iter()
        .filter(|a| !wanted.contains(&a.service_account))
    {
        if remove_if_ours(eks, stale, &ns, &uid).await? {
            report.deleted.push(stale.service_account.clone());
        }
    }
    Ok(report)
}

/// Deletes the listed association if, read right before, it is still `uid`'s.
async fn remove_if_ours(
    eks: &dyn PodIdentityApi,
    listed: &AssociationRef,
    namespace: &str,
    uid: &str,
) -> Result<bool, AwsError> {
    match describe(eks, &listed.id, namespace, &listed.service_account).await? {
        Some(a) if ours(&a, uid) => {
            Ok(eks.delete_association(&listed.id).await? == Deleted::Deleted)
        }
        _ => Ok(false),
    }
}

/// Deletes every association in the object's namespace that carries its uid (whatever its
/// service account: one listed once and removed from the spec since counts too). Runs before
/// the role is deleted, so no association is left naming a role that is gone.
pub async fn cleanup_associations(
    eks: &dyn PodIdentityApi,
    ub: &UploadBucket,
) -> Result<Vec<String>, AwsError> {
    let uid = ub.uid().unwrap_or_default();
    let ns = ub.namespace().unwrap_or_default();
    let mut deleted = Vec::new();
    for a in eks.list_associations(&ns).await? {
        if remove_if_ours(eks, &a, &ns, &uid).await? {
            deleted.push(a.service_account);
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::crd::UploadBucketSpec;

    /// EKS as far as associations go: one per (namespace, service account).
    #[derive(Default)]
    struct FakeEks {
        all: Mutex<Vec<Association>>,
        writes: Mutex<Vec<String>>,
    }

    impl FakeEks {
        fn with(all: Vec<Association>) -> Self {
            Self {
                all: Mutex::new(all),
                ..Default::default()
            }
        }
        fn writes(&self) -> Vec<String> {
            self.writes.lock().unwrap().clone()
        }
        fn held(&self) -> Vec<(String, String, String)> {
            let mut v: Vec<_> = self
                .all
                .lock()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a.namespace.clone(),
                        a.service_account.clone(),
                        a.role_arn.clone(),
                    )
                })
                .collect();
            v.sort();
            v
        }
    }

    #[async_trait]
    impl PodIdentityApi for FakeEks {
        async fn list_associations(&self, ns: &str) -> Result<Vec<AssociationRef>, AwsError> {
            Ok(self
                .all
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.namespace == ns)
                .map(|a| AssociationRef {
                    id: a.id.clone(),
                    service_account: a.service_account.clone(),
                })
                .collect())
        }
        async fn describe_association(&self, id: &str) -> Result<Option<Association>, AwsError> {
            Ok(self
                .all
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.id == id)
                .cloned())
        }
        async fn create_association(&self, new: NewAssociation<'_>) -> Result<Made, AwsError> {
            let NewAssociation {
                namespace: ns,
                service_account: sa,
                role_arn: role,
                tags,
            } = new;
            let mut all = self.all.lock().unwrap();
            self.writes
                .lock()
                .unwrap()
                .push(format!("create {ns}/{sa}"));
            if all
                .iter()
                .any(|a| a.namespace == ns && a.service_account == sa)
            {
                return Ok(Made::InUse);
            }
            let a = Association {
                id: format!("a-{}", all.len() + 1),
                namespace: ns.into(),
                service_account: sa.into(),
                role_arn: role.into(),
                tags: tags.clone(),
            };
            all.push(a.clone());
            Ok(Made::Created(a))
        }
        async fn update_association(&self, id: &str, role: &str) -> Result<(), AwsError> {
            self.writes.lock().unwrap().push(format!("update {id}"));
            for a in self.all.lock().unwrap().iter_mut().filter(|a| a.id == id) {
                a.role_arn = role.into();
            }
            Ok(())
        }
        async fn delete_association(&self, id: &str) -> Result<Deleted, AwsError> {
            self.writes.lock().unwrap().push(format!("delete {id}"));
            let mut all = self.all.lock().unwrap();
            let before = all.len();
            all.retain(|a| a.id != id);
            Ok(if all.len() < before {
                Deleted::Deleted
            } else {
                Deleted::NotFound
            })
        }
    }

    fn ub(uid: &str, sas: &[&str]) -> UploadBucket {
        let mut ub = UploadBucket::new(
            "photos",
            UploadBucketSpec {
                service_account_names: sas.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        );
        ub.metadata.namespace = Some("shop".into());
        ub.metadata.uid = Some(uid.into());
        ub
    }

    fn foreign(id: &str, sa: &str, tags: &[(&str, &str)]) -> Association {
        Association {
            id: id.into(),
            namespace: "shop".into(),
            service_account: sa.into(),
            role_arn: "arn:aws:iam::1:role/theirs".into(),
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    const ROLE: &str = "arn:aws:iam::1:role/uploadbucket/ub-shop-photos";

    #[tokio::test]
    async fn one_association_per_service_account_tagged_and_kept_in_line() {
        let eks = FakeEks::default();
        let u = ub("u1", &["web", "api"]);
        let r = apply_associations(&eks, &u, ROLE).await.unwrap();
        assert_eq!(r.created, ["web", "api"]);
        assert_eq!(
            eks.held(),
            [
                ("shop".into(), "api".into(), ROLE.into()),
                ("shop".into(), "web".into(), ROLE.into())
            ]
        );
        let made = eks.all.lock().unwrap()[0].clone();
        assert_eq!(made.tags, tags(&u));
        assert_eq!(made.tags[TAG_UID], "u1");
        // Nothing to do: no write.
        let again = apply_associations(&eks, &u, ROLE).await.unwrap();
        assert_eq!(again, AssociationReport::default());
        assert_eq!(eks.writes().len(), 2);
        // Pointed elsewhere behind our back: put back.
        eks.all.lock().unwrap()[0].role_arn = "arn:aws:iam::1:role/other".into();
        let fixed = apply_associations(&eks, &u, ROLE).await.unwrap();
        assert_eq!(fixed.updated, ["web"]);
        assert!(eks.held().iter().all(|(_, _, r)| r == ROLE));
        // A service account dropped from the spec loses its association.
        let fewer = ub("u1", &["api"]);
        let r = apply_associations(&eks, &fewer, ROLE).await.unwrap();
        assert_eq!(r.deleted, ["web"]);
        assert_eq!(eks.held(), [("shop".into(), "api".into(), ROLE.into())]);
    }

    #[tokio::test]
    async fn a_service_account_someone_else_holds_is_refused_and_left_alone() {
        for (tags, says) in [
            (
                vec![],
                "association other-1 for role arn:aws:iam::1:role/theirs",
            ),
            (
                vec![
                    (TAG_UID, "u2"),
                    (TAG_NAMESPACE, "shop"),
                    (TAG_NAME, "avatars"),
                ],
                "UploadBucket shop/avatars",
            ),
        ] {
            let eks = FakeEks::with(vec![foreign("other-1", "web", &tags)]);
            let err = apply_associations(&eks, &ub("u1", &["web"]), ROLE)
                .await
                .unwrap_err();
            assert_eq!(err.reason(), "AssociationManagedByOther");
            assert!(err.to_string().contains(says), "{err}");
            assert!(err.to_string().contains("\"web\""), "{err}");
            assert!(eks.writes().is_empty(), "{:?}", eks.writes());
            // Not ours to delete either, listed or not.
            assert!(
                cleanup_associations(&eks, &ub("u1", &["web"]))
                    .await
                    .unwrap()
                    .is_empty()
            );
            assert!(
                apply_associations(&eks, &ub("u1", &[]), ROLE)
                    .await
                    .unwrap()
                    .deleted
                    .is_empty()
            );
            assert!(eks.writes().is_empty(), "{:?}", eks.writes());
        }
    }

    #[tokio::test]
    async fn cleanup_deletes_only_its_own_and_an_empty_uid_owns_nothing() {
        let eks = FakeEks::with(vec![
            foreign("x", "other", &[(TAG_UID, "u2")]),
            foreign("y", "untagged", &[]),
        ]);
        let u = ub("u1", &["web"]);
        apply_associations(&eks, &u, ROLE).await.unwrap();
        // An object without a uid (never from the API server) matches no tag, not even "".
        eks.all.lock().unwrap()[1]
            .tags
            .insert(TAG_UID.into(), String::new());
        assert!(
            cleanup_associations(&eks, &ub("", &["web"]))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(cleanup_associations(&eks, &u).await.unwrap(), ["web"]);
        let left: Vec<String> = eks.held().into_iter().map(|(_, sa, _)| sa).collect();
        assert_eq!(left, ["other", "untagged"]);
    }

    /// An association whose tag changes between the list and the delete is not deleted: the
    /// describe right before the delete is what decides.
    #[tokio::test]
    async fn the_check_before_a_delete_reads_the_association_again() {
        let eks = FakeEks::default();
        let u = ub("u1", &["web"]);
        apply_associations(&eks, &u, ROLE).await.unwrap();
        let listed = eks.list_associations("shop").await.unwrap().remove(0);
        eks.all.lock().unwrap()[0]
            .tags
            .insert(TAG_UID.into(), "u2".into());
        assert!(!remove_if_ours(&eks, &listed, "shop", "u1").await.unwrap());
        assert_eq!(eks.held().len(), 1);
    }

    /// EKS answering a describe with another association (whatever its tags say) gets no
    /// write: not to the id asked about, not to the id answered.
    #[tokio::test]
    async fn an_answer_about_another_association_is_not_trusted() {
        struct Liar(FakeEks);
        #[async_trait]
        impl PodIdentityApi for Liar {
            async fn list_associations(&self, ns: &str) -> Result<Vec<AssociationRef>, AwsError> {
                self.0.list_associations(ns).await
            }
            async fn describe_association(
                &self,
                id: &str,
            ) -> Result<Option<Association>, AwsError> {
                let mut a = self.0.describe_association(id).await?;
                if let Some(a) = a.as_mut() {
                    a.id = "someone-elses".into();
                }
                Ok(a)
            }
            async fn create_association(&self, new: NewAssociation<'_>) -> Result<Made, AwsError> {
                self.0.create_association(new).await
            }
            async fn update_association(&self, id: &str, role: &str) -> Result<(), AwsError> {
                self.0.update_association(id, role).await
            }
            async fn delete_association(&self, id: &str) -> Result<Deleted, AwsError> {
                self.0.delete_association(id).await
            }
        }
        let u = ub("u1", &["web"]);
        let eks = Liar(FakeEks::default());
        apply_associations(&eks, &u, ROLE).await.unwrap();
        eks.0.all.lock().unwrap()[0].role_arn = "arn:aws:iam::1:role/other".into();
        let before = eks.0.writes().len();
        let err = apply_associations(&eks, &u, ROLE).await.unwrap_err();
        assert!(err.to_string().contains("someone-elses"), "{err}");
        assert!(cleanup_associations(&eks, &u).await.is_err());
        assert_eq!(eks.0.writes().len(), before, "{:?}", eks.0.writes());
    }

    #[test]
    fn an_uploadbucket_is_named_as_holder_only_with_its_uid() {
        let named = |tags: &[(&str, &str)]| holder(&foreign("x", "web", tags));
        assert!(
            named(&[(TAG_NAMESPACE, "shop"), (TAG_NAME, "photos")]).starts_with("association x")
        );
        assert!(
            named(&[(TAG_UID, ""), (TAG_NAMESPACE, "shop"), (TAG_NAME, "photos")])
                .starts_with("association x")
        );
        assert_eq!(
            named(&[
                (TAG_UID, "u9"),
                (TAG_NAMESPACE, "shop"),
                (TAG_NAME, "photos")
            ]),
            "it is UploadBucket shop/photos's"
        );
    }
}

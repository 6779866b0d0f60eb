//! Whether a bucket is this object's: the one place where a bucket becomes "ours".
//! Side effects: S3 reads, and CreateBucket in [`create`].
//!
//! In: the resolved [`Names`], the object's uid and what status recorded as an intent. Out:
//! [`Ownership`] (what S3 holds) or a [`ClaimError`] saying why the bucket is not ours.
//!
//! A bucket is ours only when
//! - this operator just created it for this object (CreateBucket answered new), or
//! - its `uploadbucket.io/uid` tag is this object's uid, or
//! - it is untagged, its name is this object's own derived name (which carries a hash of the
//!   uid, so no other object or user-chosen name can produce it) and status recorded that the
//!   operator was creating it: the window between CreateBucket and the first tag write, or
//! - it is untagged, the spec asks to adopt it and the cluster admin allows that name.
//!
//! and in every case it belongs to the operator's own account: CreateBucket answered it
//! new or already ours (S3 and RGW answer so to the owner only; another account's name is
//! 409), or [`BucketApi::owned_by_us`] said so. Another account can make a bucket under the
//! name, tag it as ours and open it to the operator in its bucket policy, so neither the
//! name nor the tags prove where it lives.
//!
//! A name from `spec.bucketName` or from status is never by itself a licence to write. Every
//! destructive call re-checks with [`still_ours`] right before it acts.

use crate::reasons::Reason;
use std::collections::BTreeMap;

use crate::aws::{AwsError, BucketApi, BucketRef, Created};

use super::desired::{Defaults, Names, TAG_ADOPTED, TAG_UID};

/// What is known to be this object's bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owned {
    /// The bucket's tags as S3 holds them now (all of them, ours and others').
    pub tags: BTreeMap<String, String>,
    /// Adopted rather than created by the operator: never emptied or deleted.
    pub adopted: bool,
    /// Created by this reconcile.
    pub created: bool,
}

/// What S3 holds under the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No such bucket.
    Absent,
    Ours(Owned),
}

/// Why a bucket is not this object's. The messages never name another namespace's objects.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error(
        "bucket {0:?} already exists and was not created for this UploadBucket; the operator never takes over a bucket it cannot prove is this object's. Choose another spec.bucketName (or leave it out for a derived name), or ask the cluster admin to allow adopting it and set spec.adoptExistingBucket: true"
    )]
    Exists(String),
    #[error(
        "bucket {0:?} is managed by another UploadBucket; choose another spec.bucketName (or leave it out for a derived name)"
    )]
    ManagedByOther(String),
    #[error(
        "bucket {0:?} belongs to another account, though it lets the operator in; the operator never writes to a bucket outside its own account. Choose another spec.bucketName, or (for a derived name) delete this UploadBucket and create it again, which derives a new name"
    )]
    OtherAccount(String),
    #[error(
        "bucket {0:?} may not be adopted: the cluster admin has not listed it in the operator's --adoptable-buckets"
    )]
    AdoptionNotAllowed(String),
    #[error(
        "bucket {0:?} does not exist, so there is nothing to adopt; remove spec.adoptExistingBucket to have it created"
    )]
    NothingToAdopt(String),
    #[error(transparent)]
    Aws(#[from] AwsError),
}

impl ClaimError {
    pub fn reason(&self) -> Reason {
        match self {
            ClaimError::Exists(_) => Reason::BucketExists,
            ClaimError::ManagedByOther(_) => Reason::BucketManagedByOther,
            ClaimError::OtherAccount(_) => Reason::BucketNameTaken,
            ClaimError::AdoptionNotAllowed(_) => Reason::AdoptionNotAllowed,
            ClaimError::NothingToAdopt(_) => Reason::NothingToAdopt,
            ClaimError::Aws(e) => e.reason(),
        }
    }

    /// Whether the bucket was found not to be ours (as opposed to S3 failing to answer).
    pub fn not_ours(&self) -> bool {
        !matches!(self, ClaimError::Aws(_))
    }
}

/// Everything the ownership rule looks at besides S3.
#[derive(Clone, Debug)]
pub struct Claimant<'a> {
    pub names: &'a Names,
    pub uid: &'a str,
    /// `status.creatingBucket`.
    pub intent: Option<&'a str>,
    /// The admin allows adopting this name.
    pub adoptable: bool,
    /// The admin lists this name in `--adoptable-buckets` (whether or not the spec adopts):
    /// such a bucket is never emptied or deleted.
    pub listed: bool,
}

impl<'a> Claimant<'a> {
    pub fn new(
        names: &'a Names,
        uid: &'a str,
        intent: Option<&'a str>,
        defaults: &Defaults,
    ) -> Self {
        let listed = defaults.may_adopt(&names.bucket.name);
        Self {
            adoptable: names.adopt && listed,
            listed,
            names,
            uid,
            intent,
        }
    }

    fn bucket(&self) -> &BucketRef {
        &self.names.bucket
    }

    /// Pure: the rule applied to an existing bucket's tags.
    pub fn judge(&self, tags: BTreeMap<String, String>) -> Result<Owned, ClaimError> {
        let name = &self.bucket().name;
        match tags.get(TAG_UID) {
            Some(uid) if uid == self.uid => Ok(Owned {
                adopted: tags.get(TAG_ADOPTED).is_some_and(|v| v == "true"),
                tags,
                created: false,
            }),
            Some(_) => Err(ClaimError::ManagedByOther(name.clone())),
            None if self.names.derived && self.intent == Some(name.as_str()) => Ok(Owned {
                tags,
                adopted: false,
                created: false,
            }),
            None if self.names.adopt && self.adoptable => Ok(Owned {
                tags,
                adopted: true,
                created: false,
            }),
            None if self.names.adopt => Err(ClaimError::AdoptionNotAllowed(name.clone())),
            None => Err(ClaimError::Exists(name.clone())),
        }
    }

    /// Refusals that need no call to S3.
    pub fn precheck(&self) -> Result<(), ClaimError> {
        if self.names.adopt && !self.adoptable {
            return Err(ClaimError::AdoptionNotAllowed(self.bucket().name.clone()));
        }
        Ok(())
    }
}

/// Read-only: what S3 holds under the name, judged by the ownership rule.
pub async fn inspect(api: &dyn BucketApi, who: &Claimant<'_>) -> Result<Ownership, ClaimError> {
    who.precheck()?;
    let b = who.bucket();
    // HEAD first: CreateBucket on a bucket we own is a write on AWS. A bucket of another
    // account answers 403, as does one of ours that we may not list: `create` tells them
    // apart (BucketAlreadyExists vs ...OwnedByYou).
    match api.bucket_exists(b).await {
        Ok(false) | Err(AwsError::AccessDenied { .. }) => {
            if who.names.adopt {
                return Err(ClaimError::NothingToAdopt(b.name.clone()));
            }
            Ok(Ownership::Absent)
        }
        Ok(true) => {
            // The owner first: another account's bucket is refused as that whatever tags
            // it wears (its owner would otherwise choose the reason the tenant is given).
            in_our_account(api, b).await?;
            Ok(Ownership::Ours(who.judge(api.get_tags(b).await?)?))
        }
        Err(e) => Err(e.into()),
    }
}

/// Refuses a bucket of another account ([`ClaimError::OtherAccount`]).
async fn in_our_account(api: &dyn BucketApi, b: &BucketRef) -> Result<(), ClaimError> {
    if api.owned_by_us(b).await? {
        Ok(())
    } else {
        Err(ClaimError::OtherAccount(b.name.clone()))
    }
}

/// Creates the bucket (after [`inspect`] found none), with `tags` in the request where the
/// backend takes them. A bucket that turns out to exist already is judged by its tags.
pub async fn create(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
    tags: &BTreeMap<String, String>,
) -> Result<Owned, ClaimError> {
    let b = who.bucket();
    match api.create_bucket(b, tags).await? {
        // A name the spec chose may be a bucket of this account that CreateBucket answered
        // 200 for (us-east-1 and RGW do so for the owner), made a moment ago for another
        // object naming it too: what it holds is judged before anything is written. Empty,
        // it is taken as new (the guards before the later writes let one object go on).
        Created::New if !who.names.derived => {
            let held = api.get_tags(b).await?;
            if held.is_empty() {
                Ok(Owned {
                    tags: held,
                    adopted: false,
                    created: true,
                })
            } else {
                who.judge(held)
            }
        }
        Created::New => Ok(Owned {
            tags: BTreeMap::new(),
            adopted: false,
            created: true,
        }),
        // Someone created it between our HEAD and CreateBucket, or HEAD was refused: S3
        // says it is this account's, asked once more as elsewhere (one read, rarely).
        Created::AlreadyOwned => {
            in_our_account(api, b).await?;
            who.judge(api.get_tags(b).await?)
        }
    }
}

/// Re-checks, right before a destructive call, that the bucket is still ours by the same
/// rule: `Ok(Some(owned))` when it is, `Ok(None)` when it is gone.
pub async fn still_ours(
    api: &dyn BucketApi,
    who: &Claimant<'_>,
) -> Result<Option<Owned>, ClaimError> {
    let b = who.bucket();
    if !api.bucket_exists(b).await? {
        return Ok(None);
    }
    in_our_account(api, b).await?;
    who.judge(api.get_tags(b).await?).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(derived: bool, adopt: bool) -> Names {
        Names {
            bucket: BucketRef {
                name: "b-1".into(),
                region: "us-east-1".into(),
            },
            derived,
            adopt,
            role: "r".into(),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn who<'a>(n: &'a Names, intent: Option<&'a str>, adoptable: bool) -> Claimant<'a> {
        Claimant {
            names: n,
            uid: "u1",
            intent,
            adoptable,
            listed: adoptable,
        }
    }

    #[test]
    fn the_rule() {
        let derived = names(true, false);
        let chosen = names(false, false);
        let adopt = names(false, true);
        // Our uid tag: ours, whatever the name.
        assert!(
            who(&chosen, None, false)
                .judge(tags(&[(TAG_UID, "u1")]))
                .is_ok()
        );
        // Another uid: never, even when adoption is allowed.
        for n in [&derived, &chosen, &adopt] {
            let e = who(n, Some("b-1"), true)
                .judge(tags(&[(TAG_UID, "u2")]))
                .unwrap_err();
            assert_eq!(e.reason(), "BucketManagedByOther");
            assert!(!e.to_string().contains("u2"));
        }
        // Untagged: only our derived name with the intent recorded...
        assert!(
            !who(&derived, Some("b-1"), false)
                .judge(tags(&[]))
                .unwrap()
                .adopted
        );
        // ...not without the intent, not with an intent for another name, not a chosen name.
        for (n, intent) in [
            (&derived, None),
            (&derived, Some("other")),
            (&chosen, Some("b-1")),
        ] {
            let e = who(n, intent, false)
                .judge(tags(&[("team", "finance")]))
                .unwrap_err();
            assert_eq!(e.reason(), "BucketExists", "{intent:?}");
        }
        // Adoption needs both halves.
        assert!(who(&adopt, None, true).judge(tags(&[])).unwrap().adopted);
        assert_eq!(
            who(&adopt, None, false)
                .judge(tags(&[]))
                .unwrap_err()
                .reason(),
            "AdoptionNotAllowed"
        );
        assert_eq!(
            who(&chosen, None, true)
                .judge(tags(&[]))
                .unwrap_err()
                .reason(),
            "BucketExists"
        );
        assert_eq!(
            who(&adopt, None, false).precheck().unwrap_err().reason(),
            "AdoptionNotAllowed"
        );
        // The adopted marker is read back from the bucket.
        assert!(
            who(&chosen, None, false)
                .judge(tags(&[(TAG_UID, "u1"), (TAG_ADOPTED, "true")]))
                .unwrap()
                .adopted
        );
    }
}

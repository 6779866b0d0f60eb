//! The names an UploadBucket works with: its bucket (name and region) and its upload role.
//! Pure.
//!
//! In: the object (spec, metadata, recorded status) and the [`Defaults`]. Out: [`Names`]
//! ([`resolve`] for a pass, [`recorded_names`] for a deletion), or a [`SpecError`] when the
//! spec chooses a name S3 refuses, one outside the admin's prefix, or one that moves a name
//! already recorded. None of it is proof of ownership: that is `claim`'s job.

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use crate::aws::BucketRef;
use crate::crd::UploadBucket;

use super::defaults::Defaults;
use super::validate::{SpecError, validate_region};

/// The names one reconcile works with. Pure data: none of it is proof of ownership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub bucket: BucketRef,
    /// The name is this object's own derived name (no `spec.bucketName`), whose uid hash no
    /// other object can produce.
    pub derived: bool,
    /// The spec asks to adopt an existing bucket.
    pub adopt: bool,
    /// The IAM role name, always derived from namespace, name and uid.
    pub role: String,
}

/// Pure: the bucket and role names of `ub`, or the spec field at fault.
pub fn resolve(ub: &UploadBucket, defaults: &Defaults) -> Result<Names, SpecError> {
    let bucket = bucket_ref(ub, defaults)?;
    let spec = &ub.spec;
    if spec.adopt_existing_bucket {
        if spec.bucket_name.is_none() {
            return Err(SpecError::new(
                "spec.adoptExistingBucket",
                "needs spec.bucketName: the existing bucket to adopt",
            ));
        }
        if spec.deletion_policy != crate::crd::DeletionPolicy::Retain {
            return Err(SpecError::new(
                "spec.deletionPolicy",
                "must be Retain with spec.adoptExistingBucket: the operator never deletes a bucket it adopted",
            ));
        }
    } else if let Some(name) = &spec.bucket_name {
        let prefix = &defaults.bucket_name_prefix;
        if !name.starts_with(prefix.as_str()) {
            return Err(SpecError::new(
                "spec.bucketName",
                format!(
                    "{name:?} must start with {prefix:?}: the cluster admin limits this operator to bucket names with that prefix"
                ),
            ));
        }
    }
    let derived = spec.bucket_name.is_none()
        && bucket.name == derive_bucket_name(ub, &defaults.bucket_name_prefix);
    Ok(Names {
        bucket,
        derived,
        adopt: spec.adopt_existing_bucket,
        role: derive_role_name(ub),
    })
}

/// Pure: the names cleanup works with: the bucket status recorded as proven, else the one it
/// recorded as being created; `None` when neither (nothing was ever provisioned). Unlike
/// [`resolve`], a spec that became invalid does not stop a deletion.
pub fn recorded_names(ub: &UploadBucket, defaults: &Defaults) -> Option<Names> {
    let st = ub.status.as_ref()?;
    let name = st
        .bucket_name
        .clone()
        .or_else(|| st.creating_bucket.clone())?;
    let region = st
        .region
        .clone()
        .or_else(|| ub.spec.region.clone())
        .unwrap_or_else(|| defaults.region.clone());
    Some(Names {
        derived: ub.spec.bucket_name.is_none()
            && name == derive_bucket_name(ub, &defaults.bucket_name_prefix),
        bucket: BucketRef { name, region },
        adopt: ub.spec.adopt_existing_bucket,
        role: derive_role_name(ub),
    })
}

/// The bucket name and region this object manages: what status recorded, else the spec's,
/// else derived. A spec that tries to move a recorded name is refused. A recorded name is no
/// proof of ownership (status can be written by others); `claim` checks the bucket itself.
pub fn bucket_ref(ub: &UploadBucket, defaults: &Defaults) -> Result<BucketRef, SpecError> {
    let status = ub.status.as_ref();
    let recorded_name = status.and_then(|s| s.bucket_name.clone());
    let recorded_region = status.and_then(|s| s.region.clone());
    if let Some(name) = &ub.spec.bucket_name {
        validate_bucket_name(name).map_err(|m| SpecError::new("spec.bucketName", m))?;
    }
    if let Some(region) = &ub.spec.region {
        validate_region(region).map_err(|m| SpecError::new("spec.region", m))?;
    }
    let name = match (recorded_name, &ub.spec.bucket_name) {
        (Some(rec), Some(spec)) if &rec != spec => {
            return Err(SpecError::new(
                "spec.bucketName",
                format!(
                    "is immutable: this UploadBucket manages bucket {rec:?}; create a new UploadBucket for {spec:?}"
                ),
            ));
        }
        (Some(rec), _) => rec,
        (None, Some(spec)) => spec.clone(),
        (None, None) => derive_bucket_name(ub, &defaults.bucket_name_prefix),
    };
    let region = match (recorded_region, &ub.spec.region) {
        (Some(rec), Some(spec)) if &rec != spec => {
            return Err(SpecError::new(
                "spec.region",
                format!("is immutable: the bucket lives in {rec:?}"),
            ));
        }
        (Some(rec), _) => rec,
        (None, Some(spec)) => spec.clone(),
        (None, None) => defaults.region.clone(),
    };
    Ok(BucketRef { name, region })
}

/// `<prefix><namespace>-<name>-<8 hex of sha256(uid)>`, made a valid S3 name of at most 63
/// characters. The uid makes it unique across clusters and across re-creation, since bucket
/// names are global.
pub fn derive_bucket_name(ub: &UploadBucket, prefix: &str) -> String {
    let uid = ub.uid().unwrap_or_default();
    let ns = ub.namespace().unwrap_or_default();
    let hash = hex::encode(Sha256::digest(format!("{ns}/{}/{uid}", ub.name_any())));
    let suffix = &hash[..8];
    let raw = format!("{prefix}{ns}-{}", ub.name_any());
    // Dots are valid but break virtual-hosted TLS, so they become dashes too.
    let mut base: String = raw
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    while base.contains("--") {
        base = base.replace("--", "-");
    }
    let base = base.trim_matches('-');
    let base = if base.starts_with("xn-") || base.starts_with("sthree-") {
        format!("ub-{base}")
    } else {
        base.to_owned()
    };
    let keep = 63 - 1 - suffix.len();
    let base: String = base.chars().take(keep).collect();
    let base = base.trim_end_matches('-');
    if base.is_empty() {
        format!("ub-{suffix}")
    } else {
        format!("{base}-{suffix}")
    }
}

/// `ub-<namespace>-<name>-<8 hex of sha256(ns/name/uid)>`, at most 64 characters of the
/// ones IAM allows.
pub fn derive_role_name(ub: &UploadBucket) -> String {
    let ns = ub.namespace().unwrap_or_default();
    let hash = hex::encode(Sha256::digest(format!(
        "{ns}/{}/{}",
        ub.name_any(),
        ub.uid().unwrap_or_default()
    )));
    let base: String = format!("ub-{ns}-{}", ub.name_any())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64 - 9)
        .collect();
    format!("{base}-{}", &hash[..8])
}

/// S3's bucket naming rules (general purpose buckets).
pub fn validate_bucket_name(name: &str) -> Result<(), String> {
    let allowed = "3-63 characters of lowercase letters, digits, '.' and '-', starting and ending with a letter or digit";
    if !(3..=63).contains(&name.len()) {
        return Err(format!(
            "{name:?} has {} characters; allowed: {allowed}",
            name.len()
        ));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !ok_chars || !ends_ok(name.chars().next()) || !ends_ok(name.chars().last()) {
        return Err(format!(
            "{name:?} is not a valid bucket name; allowed: {allowed}"
        ));
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err(format!(
            "{name:?} has adjacent '.'/'-' characters, which S3 refuses"
        ));
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err(format!(
            "{name:?} looks like an IP address, which S3 refuses"
        ));
    }
    for bad in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(bad) {
            return Err(format!("{name:?} starts with the reserved prefix {bad:?}"));
        }
    }
    for bad in ["-s3alias", "--ol-s3", "--x-s3", ".mrap"] {
        if name.ends_with(bad) {
            return Err(format!("{name:?} ends with the reserved suffix {bad:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::controller::desired::defaults::tests::defaults;
    use crate::crd::{UploadBucketSpec, UploadBucketStatus};

    /// An object `ns/name` with a fixed uid, as the API server would hand it over.
    pub(in crate::controller::desired) fn ub(
        ns: &str,
        name: &str,
        spec: UploadBucketSpec,
    ) -> UploadBucket {
        let mut ub = UploadBucket::new(name, spec);
        ub.metadata.namespace = Some(ns.into());
        ub.metadata.uid = Some("0f8fad5b-d9cb-469f-a165-70867728950e".into());
        ub
    }

    #[test]
    fn derived_names_are_valid_stable_and_bounded() {
        let a = derive_bucket_name(&ub("team-a", "avatars", UploadBucketSpec::default()), "");
        assert!(a.starts_with("team-a-avatars-"), "{a}");
        assert_eq!(
            a,
            derive_bucket_name(&ub("team-a", "avatars", UploadBucketSpec::default()), "")
        );
        validate_bucket_name(&a).unwrap();

        let long = derive_bucket_name(
            &ub(
                &"n".repeat(63),
                &"x.y".repeat(80),
                UploadBucketSpec::default(),
            ),
            "acme-",
        );
        assert!(long.len() <= 63, "{long}");
        validate_bucket_name(&long).unwrap();
        assert!(!long.contains('.'));

        let odd = derive_bucket_name(&ub("xn--a", "-", UploadBucketSpec::default()), "");
        validate_bucket_name(&odd).unwrap();

        let mut other = ub("team-a", "avatars", UploadBucketSpec::default());
        other.metadata.uid = Some("another-uid".into());
        assert_ne!(
            a,
            derive_bucket_name(&other, ""),
            "a re-created object gets a new bucket"
        );
    }

    #[test]
    fn bucket_name_rules() {
        for ok in ["abc", "my-bucket.v2", "a1b2c3"] {
            validate_bucket_name(ok).unwrap();
        }
        for bad in [
            "ab",
            "ABC",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "xn--abc",
            "abc-s3alias",
            "a_b",
        ] {
            assert!(validate_bucket_name(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn recorded_names_win_and_cannot_be_moved() {
        let mut u = ub("a", "b", UploadBucketSpec::default());
        u.status = Some(UploadBucketStatus {
            bucket_name: Some("recorded-bucket".into()),
            region: Some("us-east-2".into()),
            ..Default::default()
        });
        let r = bucket_ref(&u, &defaults()).unwrap();
        assert_eq!(
            r,
            BucketRef {
                name: "recorded-bucket".into(),
                region: "us-east-2".into()
            }
        );

        u.spec.bucket_name = Some("someone-elses".into());
        assert_eq!(
            bucket_ref(&u, &defaults()).unwrap_err().field,
            "spec.bucketName"
        );
        u.spec.bucket_name = Some("recorded-bucket".into());
        u.spec.region = Some("eu-central-1".into());
        assert_eq!(
            bucket_ref(&u, &defaults()).unwrap_err().field,
            "spec.region"
        );
    }

    #[test]
    fn chosen_names_must_carry_the_admins_prefix_unless_adopted() {
        let mut defs = defaults();
        defs.bucket_name_prefix = "acme-".into();
        let chosen = |name: &str, adopt: bool| {
            let mut u = ub("a", "b", UploadBucketSpec::default());
            u.spec.bucket_name = Some(name.into());
            u.spec.adopt_existing_bucket = adopt;
            u
        };
        let err = resolve(&chosen("finance-data", false), &defs).unwrap_err();
        assert_eq!(err.field, "spec.bucketName");
        assert!(err.message.contains("\"acme-\""), "{}", err.message);
        let ok = resolve(&chosen("acme-photos", false), &defs).unwrap();
        assert!(!ok.derived && !ok.adopt);
        // Adoption is governed by the admin's allowlist instead (checked by `claim`).
        assert!(resolve(&chosen("finance-data", true), &defs).unwrap().adopt);
        // Derived names get the prefix and are recognised as this object's own.
        let derived = resolve(&ub("a", "b", UploadBucketSpec::default()), &defs).unwrap();
        assert!(derived.derived && derived.bucket.name.starts_with("acme-a-b-"));
        // Adoption needs a name and Retain.
        let mut u = ub("a", "b", UploadBucketSpec::default());
        u.spec.adopt_existing_bucket = true;
        assert_eq!(
            resolve(&u, &defs).unwrap_err().field,
            "spec.adoptExistingBucket"
        );
        let mut u = chosen("finance-data", true);
        u.spec.deletion_policy = crate::crd::DeletionPolicy::Delete;
        assert_eq!(resolve(&u, &defs).unwrap_err().field, "spec.deletionPolicy");
    }

    #[test]
    fn names_s3_refuses_are_refused() {
        for bad in [
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "a..b",
            "a.-b",
            "a-.b",
        ] {
            let mut u = ub("a", "b", UploadBucketSpec::default());
            u.spec.bucket_name = Some(bad.into());
            let err = resolve(&u, &defaults()).unwrap_err();
            assert_eq!(err.field, "spec.bucketName", "{bad}");
        }
    }
}

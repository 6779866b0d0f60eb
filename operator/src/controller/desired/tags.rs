//! Tags: the keys that mark a bucket (and a role, an association) as an object's, the tags a
//! spec may add, and how both are merged with everyone else's. Pure.
//!
//! In: the object, or a bucket's current tags with ours. Out: the ownership tags
//! ([`ownership_tags`]), the merged tag set ([`merge_tags`]), or a [`SpecError`] for
//! `spec.tags` ([`check_spec_tags`]).

use std::collections::BTreeMap;

use kube::ResourceExt;

use crate::crd::UploadBucket;

use super::validate::SpecError;

/// Tag keys the operator writes on every bucket it manages.
pub const TAG_MANAGED_BY: &str = "uploadbucket.io/managed-by";
pub const TAG_NAMESPACE: &str = "uploadbucket.io/namespace";
pub const TAG_NAME: &str = "uploadbucket.io/name";
pub const TAG_UID: &str = "uploadbucket.io/uid";
/// `"true"` on a bucket the operator adopted rather than created: it is never emptied or
/// deleted, and versioning is never suspended on it.
pub const TAG_ADOPTED: &str = "uploadbucket.io/adopted";
pub const MANAGED_BY: &str = "uploadbucket-operator";
/// Tag keys starting with this belong to the operator (and are refused in `spec.tags`).
pub const RESERVED_TAG_PREFIX: &str = "uploadbucket.io/";

/// Pure: at most 40 tags, none with a key the operator reserves.
pub(super) fn check_spec_tags(tags: &BTreeMap<String, String>) -> Result<(), SpecError> {
    let tag_count = tags.len();
    if tag_count > 40 {
        return Err(SpecError::new(
            "spec.tags",
            format!("has {tag_count} tags; allowed: at most 40"),
        ));
    }
    if let Some(k) = tags.keys().find(|k| k.starts_with(RESERVED_TAG_PREFIX)) {
        return Err(SpecError::new(
            "spec.tags",
            format!(
                "key {k:?} is reserved: keys starting with \"uploadbucket.io/\" belong to the operator"
            ),
        ));
    }
    Ok(())
}

/// The tags that mark a bucket as this object's.
pub fn ownership_tags(ub: &UploadBucket, adopted: bool) -> BTreeMap<String, String> {
    let mut tags = BTreeMap::new();
    tags.insert(TAG_MANAGED_BY.to_owned(), MANAGED_BY.to_owned());
    tags.insert(TAG_NAMESPACE.to_owned(), ub.namespace().unwrap_or_default());
    tags.insert(TAG_NAME.to_owned(), ub.name_any());
    tags.insert(TAG_UID.to_owned(), ub.uid().unwrap_or_default());
    if adopted {
        tags.insert(TAG_ADOPTED.to_owned(), "true".to_owned());
    }
    tags
}

/// Pure: the bucket's tags with ours set: `current` minus every reserved key and every
/// `dropped` key (spec tags the operator wrote before and the spec no longer has), plus
/// `ownership` and `spec_tags`. Tags anyone else set stay.
pub fn merge_tags(
    current: &BTreeMap<String, String>,
    ownership: &BTreeMap<String, String>,
    spec_tags: &BTreeMap<String, String>,
    dropped: &[String],
) -> BTreeMap<String, String> {
    let mut tags: BTreeMap<String, String> = current
        .iter()
        .filter(|(k, _)| !k.starts_with(RESERVED_TAG_PREFIX) && !dropped.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.extend(spec_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags.extend(ownership.iter().map(|(k, v)| (k.clone(), v.clone())));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_of_others_stay_and_dropped_spec_tags_go() {
        let t = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let current = t(&[
            ("team", "finance"),
            ("old-spec-tag", "x"),
            (TAG_UID, "stale"),
            ("uploadbucket.io/whatever", "y"),
        ]);
        let merged = merge_tags(
            &current,
            &t(&[(TAG_UID, "u1")]),
            &t(&[("env", "prod")]),
            &["old-spec-tag".to_owned()],
        );
        assert_eq!(
            merged,
            t(&[("team", "finance"), ("env", "prod"), (TAG_UID, "u1")])
        );
    }
}

//! The operator's defaults: what a spec may leave out, and which existing buckets the cluster
//! admin lets an UploadBucket adopt. Pure.
//!
//! In: the operator's flags (made into [`Defaults`] by `cli`). Out: the region and name
//! prefix the names start from, the backend the wanted settings are shaped for, and
//! [`Defaults::may_adopt`].

use crate::aws::rgw::Backend;

/// The operator's defaults that a spec may leave out.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub region: String,
    pub backend: Backend,
    /// Prepended to derived bucket names (e.g. a company prefix), may be empty. When set,
    /// names a spec chooses must start with it too.
    pub bucket_name_prefix: String,
    /// Existing buckets the cluster admin allows an UploadBucket to adopt: exact names or
    /// patterns where `*` stands for any run of characters. Empty: no adoption.
    pub adoptable_buckets: Vec<String>,
}

impl Defaults {
    /// Whether the admin allows adopting the bucket `name`.
    pub fn may_adopt(&self, name: &str) -> bool {
        self.adoptable_buckets.iter().any(|p| glob_match(p, name))
    }
}

/// `*`-only glob: `legacy-*` matches `legacy-photos`; `*` matches everything.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// What the tests of the desired state start from: AWS in eu-west-1, no name prefix,
    /// nothing adoptable.
    pub(in crate::controller::desired) fn defaults() -> Defaults {
        Defaults {
            region: "eu-west-1".into(),
            backend: Backend::Aws,
            bucket_name_prefix: String::new(),
            adoptable_buckets: Vec::new(),
        }
    }

    #[test]
    fn adoptable_patterns() {
        for (p, n, ok) in [
            ("legacy-photos", "legacy-photos", true),
            ("legacy-photos", "legacy-photos2", false),
            ("legacy-*", "legacy-photos", true),
            ("legacy-*", "legacy-", true),
            ("legacy-*", "finance-legacy-x", false),
            ("*-media", "shop-media", true),
            ("*-media", "shop-media-x", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*", "anything", true),
        ] {
            assert_eq!(glob_match(p, n), ok, "{p} vs {n}");
        }
        let mut defs = defaults();
        assert!(
            !defs.may_adopt("legacy-photos"),
            "nothing is adoptable by default"
        );
        defs.adoptable_buckets = vec!["legacy-*".into()];
        assert!(defs.may_adopt("legacy-photos"));
    }
}

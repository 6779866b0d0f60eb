//! Object keys. Pure.
//!
//! In: the configured prefix, an owner (validated) and the content type the signer allowed.
//! Out: a key `prefix [+ owner/] + random id + the type's extension`. The client's filename
//! never reaches a key, so no client input can leave the prefix, smuggle `..`, `/`, control
//! characters or unicode tricks into the key, or give a JPEG a `.html` name.

/// Longest extension a key may carry.
const MAX_EXT: usize = 10;

/// A conventional extension for common content types.
pub fn extension_for(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/avif" => "avif",
        "image/heic" => "heic",
        "image/heif" => "heif",
        "image/bmp" => "bmp",
        "image/tiff" => "tiff",
        "image/svg+xml" => "svg",
        "application/pdf" => "pdf",
        "application/gzip" => "gz",
        "application/msword" => "doc",
        "application/vnd.ms-excel" => "xls",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation" => "pptx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => "xlsx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => "docx",
        "application/x-7z-compressed" => "7z",
        "application/x-tar" => "tar",
        "text/plain" => "txt",
        "text/csv" => "csv",
        "application/json" => "json",
        "application/zip" => "zip",
        "video/mp4" => "mp4",
        "video/mpeg" => "mpeg",
        "video/ogg" => "ogv",
        "video/webm" => "webm",
        "video/x-matroska" => "mkv",
        "video/quicktime" => "mov",
        "audio/mpeg" => "mp3",
        "audio/aac" => "aac",
        "audio/flac" => "flac",
        "audio/mp4" => "m4a",
        "audio/ogg" => "ogg",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/webm" => "weba",
        "font/otf" => "otf",
        "font/ttf" => "ttf",
        "font/woff" => "woff",
        "font/woff2" => "woff2",
        _ => return None,
    })
}

/// `prefix + id [+ "." + ext]`, the extension the content type's own (never the client's
/// filename: `cat.html` sent as `image/jpeg` is stored as `<id>.jpg`). One allocation: this is
/// on every upload's path.
pub fn build_key(prefix: &str, id: &str, content_type: &str) -> String {
    let ext = extension_for(content_type);
    let mut key = String::with_capacity(prefix.len() + id.len() + 1 + MAX_EXT);
    key.push_str(prefix);
    key.push_str(id);
    if let Some(ext) = ext {
        key.push('.');
        key.push_str(ext);
    }
    key
}

/// Longest owner id.
pub const MAX_OWNER: usize = 64;

/// Whether `owner` (an app's opaque user id) may name a folder of keys: 1 to [`MAX_OWNER`]
/// characters of `A-Z a-z 0-9 . _ - @`, not starting with `.`, so it is one path segment and
/// never `.` or `..`.
pub fn valid_owner(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= MAX_OWNER
        && !owner.starts_with('.')
        && owner
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

/// Where keys go: `prefix`, or `prefix + owner + "/"` for an (already valid) owner.
pub fn scope<'a>(prefix: &'a str, owner: Option<&str>) -> std::borrow::Cow<'a, str> {
    match owner {
        Some(o) => format!("{prefix}{o}/").into(),
        None => prefix.into(),
    }
}

/// The owner folder of one of our keys, if it has one.
pub fn owner_of<'k>(prefix: &str, key: &'k str) -> Option<&'k str> {
    key.strip_prefix(prefix)?.split_once('/').map(|(o, _)| o)
}

/// Whether `key` is one this signer could have made: under the prefix, optionally in an
/// owner's folder, with a plain id and extension. Used to refuse calls on keys a client made
/// up.
pub fn is_our_key(prefix: &str, key: &str) -> bool {
    let Some(mut rest) = key.strip_prefix(prefix) else {
        return false;
    };
    if let Some((owner, name)) = rest.split_once('/') {
        if !valid_owner(owner) {
            return false;
        }
        rest = name;
    }
    let (id, ext) = rest.split_once('.').unwrap_or((rest, "x"));
    !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !ext.is_empty()
        && ext.len() <= MAX_EXT
        && ext.chars().all(|c| c.is_ascii_alphanumeric())
}

/// A fresh random id: 128 bits as 32 lowercase hex characters.
pub fn random_id() -> RandomId {
    let mut hex = [0u8; uuid::fmt::Simple::LENGTH];
    uuid::Uuid::new_v4().simple().encode_lower(&mut hex);
    RandomId(hex)
}

/// A random id, on the stack.
pub struct RandomId([u8; uuid::fmt::Simple::LENGTH]);

impl std::ops::Deref for RandomId {
    type Target = str;
    fn deref(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_one_safe_segment() {
        for ok in ["u1", "user_42", "a.b-c@d", &"x".repeat(64)] {
            assert!(valid_owner(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "é",
            "a\\b",
            &"x".repeat(65),
        ] {
            assert!(!valid_owner(bad), "{bad:?}");
        }
        assert_eq!(scope("uploads/", Some("u1")), "uploads/u1/");
        assert_eq!(scope("uploads/", None), "uploads/");
        let key = build_key(&scope("uploads/", Some("u1")), "abc", "image/png");
        assert_eq!(key, "uploads/u1/abc.png");
        assert!(is_our_key("uploads/", &key));
        assert_eq!(owner_of("uploads/", &key), Some("u1"));
        assert_eq!(owner_of("uploads/", "uploads/abc.png"), None);
        for made_up in [
            "uploads/../x.png",
            "uploads/u1/u2/x.png",
            "uploads/.u/x.png",
            "uploads//x.png",
        ] {
            assert!(!is_our_key("uploads/", made_up), "{made_up}");
        }
    }

    #[test]
    fn the_extension_comes_from_the_type() {
        assert_eq!(build_key("uploads/", "abc", "image/png"), "uploads/abc.png");
        assert_eq!(
            build_key("uploads/", "abc", "image/jpeg"),
            "uploads/abc.jpg"
        );
        assert_eq!(build_key("", "abc", "application/x-unknown"), "abc");
        // Every type a wildcard admits gets a name that says what it is.
        for t in crate::config::WILDCARD_TYPES {
            assert!(extension_for(t).is_some_and(|e| e.len() <= MAX_EXT), "{t}");
        }
    }

    #[test]
    fn keys() {
        assert!(is_our_key("uploads/", "uploads/0123abcd.jpg"));
        assert!(is_our_key("uploads/", "uploads/0123abcd"));
        assert!(!is_our_key("uploads/", "other/0123abcd.jpg"));
        assert!(!is_our_key("uploads/", "uploads/../x.jpg"));
        // One folder level is an owner's (see owners_are_one_safe_segment); deeper is made up.
        assert!(!is_our_key("uploads/", "uploads/a/b/c.jpg"));
        assert!(!is_our_key("uploads/", "uploads/"));
        let id = random_id();
        assert_eq!(id.len(), 32);
        assert_ne!(&*id, &*random_id());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whatever type was allowed, the key stays under the prefix, is plain ASCII without
        /// path tricks, and is recognised as ours.
        #[test]
        fn keys_never_escape_the_prefix(ct in "[a-z]{1,8}/[a-z0-9.+-]{1,12}") {
            let key = build_key("uploads/", &random_id(), &ct);
            let rest = key.strip_prefix("uploads/").expect("prefix");
            prop_assert!(!rest.contains('/') && !rest.contains("..") && !rest.contains('\\'));
            prop_assert!(rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '.'));
            prop_assert!(is_our_key("uploads/", &key), "{}", key);
        }
    }
}

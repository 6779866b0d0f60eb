//! The spec's fields that are checked and nothing more: region, CORS origins, the uploads'
//! key prefix, content types, size and expiry limits, and the JWT settings. Pure.
//!
//! In: parts of the spec. Out: `Ok`, or the first [`SpecError`] in the order the fields are
//! checked here, naming the field at fault and what is allowed. Fields that are also built
//! into a setting (encryption, notifications, public read, tags) are checked by the part
//! that builds them.

use crate::crd::{CorsSpec, JwtSpec, UploadsSpec};

/// An invalid spec: a person has to change it. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SpecError {
    pub field: &'static str,
    pub message: String,
}

impl SpecError {
    pub(super) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Pure: every allowed origin of `cors` is one.
pub(super) fn origins(cors: &CorsSpec) -> Result<(), SpecError> {
    for o in &cors.allowed_origins {
        validate_origin(o).map_err(|m| SpecError::new("spec.cors.allowedOrigins", m))?;
    }
    Ok(())
}

/// Pure: the key prefix, the content types (at least one), the size and expiry limits, then
/// the JWT settings.
pub(super) fn uploads(uploads: &UploadsSpec) -> Result<(), SpecError> {
    validate_key_prefix(&uploads.key_prefix)
        .map_err(|m| SpecError::new("spec.uploads.keyPrefix", m))?;
    if uploads.allowed_content_types.is_empty() {
        return Err(SpecError::new(
            "spec.uploads.allowedContentTypes",
            "must list at least one content type, such as \"image/jpeg\" or \"image/*\"",
        ));
    }
    for ct in &uploads.allowed_content_types {
        validate_content_type(ct)
            .map_err(|m| SpecError::new("spec.uploads.allowedContentTypes", m))?;
    }
    if !(1..=crate::crd::MAX_SIZE_BYTES_LIMIT).contains(&uploads.max_size_bytes) {
        return Err(SpecError::new(
            "spec.uploads.maxSizeBytes",
            format!(
                "{} is out of range; allowed: 1 to {} (5 TiB)",
                uploads.max_size_bytes,
                crate::crd::MAX_SIZE_BYTES_LIMIT
            ),
        ));
    }
    if !(1..=crate::crd::MAX_EXPIRES_SECONDS).contains(&uploads.expires_seconds) {
        return Err(SpecError::new(
            "spec.uploads.expiresSeconds",
            format!(
                "{} is out of range; allowed: 1 to 604800 (7 days)",
                uploads.expires_seconds
            ),
        ));
    }
    match &uploads.auth.jwt {
        Some(jwt) => validate_jwt(jwt),
        None => Ok(()),
    }
}

/// Pure: what the signer would refuse at start is refused here, naming the field; then the
/// required claims' names and values.
fn validate_jwt(jwt: &JwtSpec) -> Result<(), SpecError> {
    jwt.signer_config().validate().map_err(|e| {
        SpecError::new(
            "spec.uploads.auth.jwt",
            e.message.replace("UPLOADBUCKET_JWT_", ""),
        )
    })?;
    if let Some(k) = jwt
        .required_claims
        .keys()
        .find(|k| k.is_empty() || k.contains(['=', ',']) || k.chars().any(char::is_whitespace))
    {
        return Err(SpecError::new(
            "spec.uploads.auth.jwt.requiredClaims",
            format!("claim name {k:?} must be non-empty, with no '=', ',' or spaces"),
        ));
    }
    if let Some((k, _)) = jwt
        .required_claims
        .iter()
        .find(|(_, v)| v.is_empty() || v.contains(','))
    {
        return Err(SpecError::new(
            "spec.uploads.auth.jwt.requiredClaims",
            format!("the value of {k:?} must be non-empty, with no ','"),
        ));
    }
    Ok(())
}

pub(super) fn validate_region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name such as \"eu-west-1\""
        ))
    }
}

fn validate_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    match rest {
        Some(host)
            if !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{origin:?} is not an origin; allowed: \"*\" or scheme://host[:port] such as \"https://app.example.com\" (no path, no trailing slash)"
        )),
    }
}

/// `type/subtype` or `type/*`, lowercase.
pub fn validate_content_type(ct: &str) -> Result<(), String> {
    let token = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&^_.+-".contains(c))
    };
    match ct.split_once('/') {
        Some((t, s)) if token(t) && (s == "*" || token(s)) => Ok(()),
        _ => Err(format!(
            "{ct:?} is not a content type; allowed: lowercase \"type/subtype\" or \"type/*\", such as \"image/png\" or \"image/*\""
        )),
    }
}

fn validate_key_prefix(p: &str) -> Result<(), String> {
    if p.starts_with('/') {
        return Err(format!("{p:?} must not start with '/'"));
    }
    if p.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("{p:?} must not contain '.' or '..' path segments"));
    }
    if !p.is_empty() && !p.ends_with('/') {
        return Err(format!(
            "{p:?} must be empty or end with '/', such as \"uploads/\""
        ));
    }
    if p.chars().any(|c| c.is_control()) {
        return Err(format!("{p:?} must not contain control characters"));
    }
    Ok(())
}

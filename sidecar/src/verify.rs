//! `POST /uploads/verify`: after an upload, check that the object is what it claims to be,
//! and make it the verified object no URL can touch.
//!
//! A signed `Content-Type` is only the client's word: a file sent as `image/jpeg` can hold
//! HTML. Uploads land under the incoming area (`<keyPrefix>incoming/`, the only keys URLs
//! name). Verify reads one version of the upload: its size, type and ETag (`HeadObject`), then
//! its first bytes ([`SNIFF_BYTES`], a ranged `GetObject` with `If-Match` on that ETag). It
//! accepts the object only if the size is within the bucket's maximum, the stored type is
//! allowed, and the bytes are that type ([`judge`]). An accepted upload is copied server side
//! to the verified area (`<keyPrefix>verified/`, same name) with
//! `x-amz-copy-source-if-match` on the ETag it read, so the copy is exactly the bytes that were
//! checked or nothing; the copy's headers and tags are the signer's (`REPLACE`), none of what
//! the uploader sent; then the upload is deleted. No URL ever names a verified key, so nothing
//! an end user holds can change a verified object afterwards. A refused upload is deleted, or
//! tagged `quarantined` and left to the incoming area's expiry, and the answer is 422 saying
//! why.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{STATE_QUARANTINED, STATE_VERIFIED};
use crate::error::{AppError, ErrorCode};
use crate::json::JsonBody;
use crate::keys;
use crate::state::AppState;
use crate::store::{ObjectInfo, Promotion, StoreError};

/// How much of an object verify reads: enough for every signature `infer` knows.
pub const SNIFF_BYTES: u64 = 8192;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VerifyRequest {
    key: Option<String>,
    /// The owner the upload was made for, when it was made for one.
    owner: Option<String>,
}

/// Why an object was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

/// The type `bytes` show by their magic number, if `infer` knows it.
pub fn detect(bytes: &[u8]) -> Option<&'static str> {
    infer::get(bytes).map(|t| t.mime_type())
}

/// Types whose documents are markup a browser may run script from or style with script:
/// accepted only when the stored type is one of them and the bucket lists it exactly.
fn is_markup_type(ct: &str) -> bool {
    crate::config::SCRIPT_CAPABLE_TYPES.contains(&ct)
        || ct.ends_with("+xml")
        || matches!(ct, "text/xsl" | "application/xslt+xml")
}

/// Whether `bytes` are markup: what a browser sniffing them (the MIME sniffing rules as
/// Chromium implements them, `mime-sniffer`) would take for HTML or XML, or text with a tag
/// anywhere in what was read (`<` then a letter, `!`, `?` or `/`; also UTF-7's `+ADw-` for
/// `<`), since a tag cannot be told safe from active by looking. The name of what was found,
/// for the refusal.
pub fn markup(bytes: &[u8]) -> Option<&'static str> {
    use mime_sniffer::MimeTypeSniffer as _;
    let request = mime_sniffer::HttpRequest {
        content: &bytes,
        url: &"",
        type_hint: "",
    };
    match request.sniff_mime_type() {
        Some("text/html") => return Some("text/html"),
        Some("text/xml") => return Some("XML"),
        _ => {}
    }
    let tag = bytes
        .windows(2)
        .any(|w| w[0] == b'<' && (w[1].is_ascii_alphabetic() || b"!?/".contains(&w[1])));
    (tag || utf7_spells_lt(bytes)).then_some("markup (a tag such as <a or <svg)")
}

/// Whether a UTF-7 shifted run (`+`, then base64 of UTF-16BE) anywhere in `bytes` holds a
/// `<`: `+ADw-`, or the character inside a longer run.
fn utf7_spells_lt(bytes: &[u8]) -> bool {
    use base64::Engine as _;
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let mut rest = bytes;
    while let Some(plus) = rest.iter().position(|&b| b == b'+') {
        rest = &rest[plus + 1..];
        let run = rest
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
            .count();
        // A lone trailing character carries no whole byte.
        let whole = if run % 4 == 1 { run - 1 } else { run };
        if let Ok(decoded) = lenient.decode(&rest[..whole])
            && decoded.chunks_exact(2).any(|unit| unit == [0, b'<'])
        {
            return true;
        }
        rest = &rest[run..];
    }
    false
}

/// Text a `text/*` type admits: UTF-8 (the read may cut the last character), no control
/// characters but tab, line breaks and form feed.
fn is_plain_text(bytes: &[u8]) -> bool {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    text.chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

/// Names `infer` gives that mean one of our types.
fn same_type(detected: &str, stored: &str) -> bool {
    detected == stored
        || matches!(
            (detected, stored),
            ("audio/x-wav", "audio/wav")
                | ("audio/wav", "audio/x-wav")
                | ("audio/x-flac", "audio/flac")
                | ("audio/m4a", "audio/mp4")
                | ("video/x-m4v", "video/mp4")
                | ("application/x-gzip", "application/gzip")
                | ("image/heif", "image/heic")
                | ("image/heic", "image/heif")
        )
}

/// Whether an object of `info`, starting with `bytes`, may stay: its size, its stored type,
/// and the type its bytes show. Pure, so every rule is unit-tested.
pub fn judge(
    config: &crate::config::Config,
    info: &ObjectInfo,
    bytes: &[u8],
) -> Result<Option<&'static str>, Refusal> {
    let refuse = |code, message: String| Err(Refusal { code, message });
    if info.size < 1 || info.size as u64 > config.max_size_bytes {
        return refuse(
            ErrorCode::TooLarge,
            format!(
                "the object is {} bytes; this bucket takes 1 to {}",
                info.size, config.max_size_bytes
            ),
        );
    }
    let stored = media_type(&info.content_type);
    let Some(exact) = config.admits(&stored) else {
        return refuse(
            ErrorCode::ContentTypeNotAllowed,
            format!(
                "the object is stored as {stored:?}, which this bucket does not take (allowed: {})",
                config.allowed_content_types.join(", ")
            ),
        );
    };
    let detected = detect(bytes);
    let found = match detected {
        Some(d @ ("text/html" | "text/xml")) => Some(d),
        Some(_) => None,
        None => markup(bytes),
    };
    if let Some(found) = found {
        // Markup only where the bucket lists a markup type exactly and the upload says it.
        if exact && is_markup_type(&stored) {
            return Ok(detected);
        }
        return refuse(
            ErrorCode::ContentMismatch,
            format!("the object is stored as {stored} but its bytes are {found}"),
        );
    }
    match detected {
        Some(d) if same_type(d, &stored) => Ok(detected),
        // Bytes of a known format under another type's name.
        Some(d) => refuse(
            ErrorCode::ContentMismatch,
            format!("the object is stored as {stored} but its bytes are {d}"),
        ),
        // A type with a known signature whose bytes do not carry it (HTML sent as a JPEG).
        None if infer::is_mime_supported(&stored) => refuse(
            ErrorCode::ContentMismatch,
            format!(
                "the object is stored as {stored} but its bytes do not start like {stored} (no known file signature)"
            ),
        ),
        // Text, listed exactly or through `text/*`: the bytes must be UTF-8 text (markup in
        // UTF-16, UTF-32 or EBCDIC would pass the tag search otherwise).
        None if stored.starts_with("text/") => {
            if is_plain_text(bytes) {
                Ok(None)
            } else {
                refuse(
                    ErrorCode::ContentMismatch,
                    format!("the object is stored as {stored} but its bytes are not text"),
                )
            }
        }
        // Through a wildcard, a type must be proven by its bytes.
        None if !exact => refuse(
            ErrorCode::ContentMismatch,
            format!(
                "the object is stored as {stored}, which this bucket takes only through a wildcard, and its bytes do not show that type"
            ),
        ),
        // A type the bucket lists exactly and no signature identifies: nothing to contradict.
        None => Ok(None),
    }
}

/// `type/subtype`, lowercased, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn store_error(e: StoreError) -> AppError {
    match e {
        StoreError::Changed => AppError::with_status(
            StatusCode::CONFLICT,
            ErrorCode::UploadChanged,
            "the upload was replaced while it was being verified; nothing was verified: call verify again",
        ),
        StoreError::Denied(m) => AppError::internal("S3 access (verify)", m),
        other => AppError::internal("S3 (verify)", other),
    }
}

/// The answer for a verified object; `upload_key` is the upload it was copied from, when the
/// call named that.
fn verified_answer(
    key: &str,
    upload_key: Option<&str>,
    info: &ObjectInfo,
    detected: Option<&str>,
) -> Json<Value> {
    Json(json!({
        "key": key,
        "uploadKey": upload_key,
        "size": info.size,
        "contentType": info.content_type,
        "detectedType": detected,
        "etag": info.etag,
        "state": STATE_VERIFIED,
    }))
}

/// `POST /uploads/verify {"key", "owner"?}`.
pub async fn verify(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
    body: Result<JsonBody, AppError>,
) -> Result<(StatusCode, Json<Value>), AppError> {
    if !state.config.verify {
        return Err(AppError::with_status(
            StatusCode::CONFLICT,
            ErrorCode::VerificationDisabled,
            "this bucket does not verify uploads (spec.uploads.verification.enabled is false)",
        ));
    }
    let parsed = body.and_then(|b| b.parse::<VerifyRequest>());
    let req = parsed.map_err(|e| match e {
        AppError::Client {
            status,
            code,
            message,
        } => AppError::Client {
            status,
            code,
            message: format!("body must be JSON {{\"key\": \"...\"}}: {message}"),
        },
        other => other,
    })?;
    let key = req
        .key
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AppError::bad_request(ErrorCode::MissingKey, "key is required"))?;
    let owner = caller.owner(req.owner.as_deref())?;

    // A verified key: verify ran already; say what is there.
    if keys::is_our_key(&state.verified_prefix, &key) {
        crate::uploads::check_owner_under(&state.verified_prefix, &key, owner)?;
        return match state.store.head(&key).await.map_err(store_error)? {
            Some(info) => Ok((StatusCode::OK, verified_answer(&key, None, &info, None))),
            None => Err(no_such_key(&key)),
        };
    }
    if !keys::is_our_key(&state.upload_prefix, &key) {
        return Err(AppError::bad_request(
            ErrorCode::InvalidKey,
            format!(
                "key {key:?} was not issued by this signer (upload keys start with {:?})",
                state.upload_prefix
            ),
        ));
    }
    crate::uploads::check_owner(&state, &key, owner)?;
    let target = format!(
        "{}{}",
        state.verified_prefix,
        &key[state.upload_prefix.len()..]
    );
    let Some(_claim) = state.verifying.claim(&key) else {
        return Err(AppError::with_status(
            StatusCode::CONFLICT,
            ErrorCode::VerificationInProgress,
            format!("{key:?} is being verified by another call; try again when it has answered"),
        ));
    };

    // Verified before (an answer lost, or the form posted again since): the verified object
    // stands as it is; whatever the upload key holds now is never looked at.
    if let Some(done) = state.store.head(&target).await.map_err(store_error)? {
        discard(&state, &key).await;
        return Ok((
            StatusCode::OK,
            verified_answer(&target, Some(&key), &done, None),
        ));
    }
    let Some(info) = state.store.head(&key).await.map_err(store_error)? else {
        return Err(no_such_key(&key));
    };
    let bytes = state
        .store
        .read_start(&key, &info, SNIFF_BYTES)
        .await
        .map_err(store_error)?;
    match judge(&state.config, &info, &bytes) {
        Ok(detected) => {
            let content_type = media_type(&info.content_type);
            let (done, detected) =
                match promote(&state, &key, &info, &target, &content_type, &bytes).await? {
                    Promoted::Now(done) => (done, detected),
                    // Another verify of this upload (another signer) copied it first.
                    Promoted::Before(done) => (done, None),
                };
            discard(&state, &key).await;
            tracing::info!(%key, verified = %target, size = info.size, content_type = %content_type, "Upload verified");
            Ok((
                StatusCode::OK,
                verified_answer(&target, Some(&key), &done, detected),
            ))
        }
        Err(refusal) => {
            let kept = state.config.verify_quarantine;
            if kept {
                state
                    .store
                    .set_state(&key, STATE_QUARANTINED)
                    .await
                    .map_err(store_error)?;
            } else {
                state.store.delete(&key).await.map_err(store_error)?;
            }
            tracing::warn!(%key, code = refusal.code.as_str(), reason = %refusal.message, quarantined = kept, "Upload refused by verification");
            let outcome = if kept {
                "it is kept, tagged quarantined, until the incoming area's expiry"
            } else {
                "it was deleted"
            };
            Err(AppError::with_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                refusal.code,
                format!("{}; {outcome}", refusal.message),
            ))
        }
    }
}

/// Copies exactly the version `info` of the upload `key` to `target`, with the signer's
/// headers, and tags it verified; then reads the copy's first bytes back, which must be
/// `judged`: an ETag names content only as well as MD5 does (the same bytes posted again
/// have the same ETag, and a store may not check a precondition), while `target` is a key
/// only verify writes. A copy refused by its precondition wrote nothing. Whatever fails after
/// the copy (the read-back, or the store itself, which RGW does now and then while the
/// source is being rewritten), `target` is looked at again and removed unless its bytes are
/// ones verify accepts (another signer may have verified the same upload meanwhile): an
/// error never leaves unaccepted bytes in the verified area, nor removes accepted ones.
async fn promote(
    state: &AppState,
    key: &str,
    info: &ObjectInfo,
    target: &str,
    content_type: &str,
    judged: &[u8],
) -> Result<Promoted, AppError> {
    let promotion = Promotion {
        content_type,
        disposition: state.config.disposition(content_type),
        acl: state.config.acl(),
    };
    let store = &state.store;
    match store.promote(key, info, target, &promotion).await {
        Ok(()) => {}
        // The upload changed, or the verified key exists (the copy is create-only where the
        // store can say so): a verified object there came from verify, and stands.
        Err(StoreError::Changed) => {
            return match store.head(target).await.map_err(store_error)? {
                Some(done) => Ok(Promoted::Before(done)),
                None => Err(store_error(StoreError::Changed)),
            };
        }
        Err(other) => return Err(store_error(other)),
    }
    let checked = async {
        store.set_state(target, STATE_VERIFIED).await?;
        let done = match store.head(target).await? {
            Some(done) if done.size == info.size => done,
            _ => return Err(StoreError::Changed),
        };
        if store.read_start(target, &done, SNIFF_BYTES).await? != judged {
            return Err(StoreError::Changed);
        }
        Ok(done)
    }
    .await;
    if let Err(error) = &checked {
        tracing::warn!(%key, %target, %error, "A verify copy did not hold the bytes judged");
        remove_unless_accepted(state, target).await;
    }
    checked.map(Promoted::Now).map_err(store_error)
}

/// What [`promote`] found in the verified area: its own copy, or one made before.
enum Promoted {
    Now(ObjectInfo),
    Before(ObjectInfo),
}

/// Removes `target` unless it holds bytes verify accepts. A store that cannot be read just
/// then (seen on LocalStack while two copies to one key overlap) is asked again twice; if it
/// still cannot tell, the object is removed: nothing unaccepted may stay.
async fn remove_unless_accepted(state: &AppState, target: &str) {
    let store = &state.store;
    let mut accepted = false;
    for pause in [0, 200, 500] {
        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        let looked = async {
            let Some(info) = store.head(target).await? else {
                return Ok(None);
            };
            let bytes = store.read_start(target, &info, SNIFF_BYTES).await?;
            Ok::<_, StoreError>(Some(judge(&state.config, &info, &bytes).is_ok()))
        };
        match looked.await {
            Ok(None) => return,
            Ok(Some(ok)) => {
                accepted = ok;
                break;
            }
            Err(error) => tracing::warn!(%target, %error, "Looking at a verify copy failed"),
        }
    }
    if !accepted && let Err(error) = store.delete(target).await {
        tracing::error!(%target, %error, "Removing a failed verify copy failed");
    }
}

fn no_such_key(key: &str) -> AppError {
    AppError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::NoSuchKey,
        format!("nothing is stored at {key:?} (not uploaded yet, expired, or deleted)"),
    )
}

/// The upload once its bytes are verified elsewhere: gone (the lifecycle rule would take it
/// anyway, so a failure is only logged).
async fn discard(state: &AppState, key: &str) {
    if let Err(error) = state.store.delete(key).await {
        tracing::warn!(%key, %error, "Deleting a verified upload's incoming copy failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> crate::config::Config {
        crate::config::Config {
            bucket: "b".into(),
            region: Some("eu-west-1".into()),
            key_prefix: "uploads/".into(),
            allowed_content_types: vec!["image/*".into(), "text/plain".into()],
            max_size_bytes: 1000,
            verify: true,
            ..Default::default()
        }
    }

    fn info(size: i64, ct: &str) -> ObjectInfo {
        ObjectInfo {
            size,
            content_type: ct.into(),
            etag: "\"e\"".into(),
            version_id: None,
        }
    }

    const JPEG: &[u8] = &[0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0];
    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const HTML: &[u8] = b"<!doctype html><script>alert(1)</script>";

    #[test]
    fn matching_bytes_pass_and_say_what_they_are() {
        let c = config();
        assert_eq!(
            judge(&c, &info(11, "image/jpeg"), JPEG),
            Ok(Some("image/jpeg"))
        );
        assert_eq!(
            judge(&c, &info(16, "image/png"), PNG),
            Ok(Some("image/png"))
        );
        // Parameters and case in the stored type do not matter.
        assert_eq!(
            judge(&c, &info(16, "Image/PNG; charset=binary"), PNG),
            Ok(Some("image/png"))
        );
        // A type no signature identifies: nothing to contradict it.
        assert_eq!(judge(&c, &info(11, "text/plain"), b"hello world"), Ok(None));
    }

    #[test]
    fn disguised_bytes_are_refused_naming_both_types() {
        let c = config();
        let r = judge(&c, &info(40, "image/jpeg"), HTML).unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentMismatch);
        assert!(
            r.message
                .contains("stored as image/jpeg but its bytes are text/html"),
            "{}",
            r.message
        );
        // HTML is HTML under a text type too.
        assert_eq!(
            judge(&c, &info(40, "text/plain"), HTML).unwrap_err().code,
            ErrorCode::ContentMismatch
        );
        // Bytes of no known format under a type that has a signature.
        let r = judge(&c, &info(11, "image/jpeg"), b"hello world").unwrap_err();
        assert!(
            r.message.contains("no known file signature"),
            "{}",
            r.message
        );
        let r = judge(&c, &info(16, "image/jpeg"), PNG).unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentMismatch);
        assert!(
            r.message.contains("its bytes are image/png"),
            "{}",
            r.message
        );
        // A known binary format stored as text.
        let r = judge(&c, &info(16, "text/plain"), PNG).unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentMismatch);
    }

    #[test]
    fn size_and_type_rules_hold_after_the_fact() {
        let c = config();
        assert_eq!(
            judge(&c, &info(1001, "image/jpeg"), JPEG).unwrap_err().code,
            ErrorCode::TooLarge
        );
        assert_eq!(
            judge(&c, &info(0, "image/jpeg"), JPEG).unwrap_err().code,
            ErrorCode::TooLarge
        );
        // image/* never admits SVG, whatever the bytes.
        let r = judge(
            &c,
            &info(40, "image/svg+xml"),
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        )
        .unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentTypeNotAllowed);
        assert_eq!(
            judge(&c, &info(11, "application/pdf"), JPEG)
                .unwrap_err()
                .code,
            ErrorCode::ContentTypeNotAllowed
        );
    }

    #[test]
    fn markup_is_refused_under_any_other_name() {
        let mut c = config();
        c.allowed_content_types = vec![
            "text/*".into(),
            "image/*".into(),
            "text/xsl".into(),
            "application/pdf".into(),
        ];
        // Issue 25's cases: SVG with script as text/plain, XSL with an onerror handler.
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>";
        let r = judge(&c, &info(60, "text/plain"), svg).unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentMismatch, "{}", r.message);
        let xsl = b"<?xml version='1.0'?><xsl:stylesheet version='1.0' xmlns:xsl='http://www.w3.org/1999/XSL/Transform'><xsl:template match='/'><img src='x' onerror='alert(1)'/></xsl:template></xsl:stylesheet>";
        // Listed exactly and declared so: the operator's choice.
        assert_eq!(judge(&c, &info(200, "text/xsl"), xsl), Ok(Some("text/xml")));
        // Declared as anything else: refused.
        assert_eq!(
            judge(&c, &info(200, "text/csv"), xsl).unwrap_err().code,
            ErrorCode::ContentMismatch
        );
        assert_eq!(
            judge(&c, &info(200, "application/pdf"), b"  <html><body>x")
                .unwrap_err()
                .code,
            ErrorCode::ContentMismatch
        );
        // Markup after some text, as the sniffing rules would not see it, is refused too:
        // any tag (the red team's cases), and UTF-7's spelling of one.
        for buried in [
            &b"name,comment\nalice,<script>alert(1)</script>\n"[..],
            b"hello\n<a href=\"javascript:alert(1)\">click</a>",
            b"<details open ontoggle=alert(document.domain)>x</details>",
            b"hi <meta http-equiv=refresh content=0;url=javascript:alert(1)>",
            b"<x:html xmlns:x='http://www.w3.org/1999/xhtml'><x:script>alert(1)</x:script>",
            b"+ADw-script+AD4-alert(1)+ADw-/script+AD4-",
            // The red team's second pass: UTF-7 with the `<` inside a longer run.
            b"+ADwAcw-cript+AD4-alert(1)+ADwALw-script+AD4-",
        ] {
            assert_eq!(
                judge(&c, &info(buried.len() as i64, "text/plain"), buried)
                    .unwrap_err()
                    .code,
                ErrorCode::ContentMismatch,
                "{}",
                String::from_utf8_lossy(buried)
            );
        }
        // Plain text and CSV pass.
        assert_eq!(
            judge(&c, &info(20, "text/csv"), b"a,b\n1,2\n\"x < y\",3\n"),
            Ok(None)
        );
    }

    #[test]
    fn a_wildcard_type_must_be_proven_by_its_bytes() {
        let mut c = config();
        c.allowed_content_types = vec!["text/*".into(), "image/*".into(), "video/*".into()];
        // Binary bytes as text.
        assert_eq!(
            judge(
                &c,
                &info(16, "text/plain"),
                b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff\0\0"
            )
            .unwrap_err()
            .code,
            ErrorCode::ContentMismatch
        );
        // A type only a wildcard admits and no signature identifies: nothing proves it.
        let mut listed = config();
        listed.allowed_content_types = vec!["video/*".into()];
        let r = judge(&listed, &info(5, "video/mpeg"), b"@echo off\r\n").unwrap_err();
        assert_eq!(r.code, ErrorCode::ContentMismatch, "{}", r.message);
        // Made-up subtypes never get that far: the wildcard does not admit them.
        assert_eq!(
            judge(&c, &info(9, "image/x-anything"), b"@echo off")
                .unwrap_err()
                .code,
            ErrorCode::ContentTypeNotAllowed
        );
    }

    #[test]
    fn text_listed_exactly_must_still_be_utf8_text() {
        let mut c = config();
        c.allowed_content_types = vec!["text/plain".into()];
        // HTML in UTF-16 (with and without a BOM) and in UTF-32: no ASCII tag to find.
        let html = "<html><script>alert(document.domain)</script></html>";
        let utf16le: Vec<u8> = [0xff, 0xfe]
            .into_iter()
            .chain(html.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let utf16be: Vec<u8> = html.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let utf32le: Vec<u8> = [0xff, 0xfe, 0, 0]
            .into_iter()
            .chain(html.chars().flat_map(|ch| (ch as u32).to_le_bytes()))
            .collect();
        for bytes in [utf16le, utf16be, utf32le] {
            let r = judge(&c, &info(bytes.len() as i64, "text/plain"), &bytes).unwrap_err();
            assert_eq!(r.code, ErrorCode::ContentMismatch, "{}", r.message);
        }
        // UTF-8 text with a byte-order mark, and a phone number's `+1-`, pass.
        assert_eq!(
            judge(
                &c,
                &info(20, "text/plain"),
                "\u{feff}call +1-555-0100".as_bytes()
            ),
            Ok(None)
        );
    }
}

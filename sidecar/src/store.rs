//! The S3 calls the signer makes itself (multipart create/list/complete/abort). Side effects.
//!
//! In: keys and upload ids the handlers validated. Out: S3's answer in plain types, with
//! errors classified so the API can answer 4xx for a client's mistake (unknown upload id,
//! wrong ETag) and 5xx/503 for ours.

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::config::S3Backend;

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Part {
    #[serde(rename = "PartNumber")]
    pub number: i32,
    #[serde(rename = "Size", default)]
    pub size: i64,
    #[serde(rename = "ETag")]
    pub etag: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such multipart upload")]
    NoSuchUpload,
    #[error("invalid part list: {0}")]
    InvalidPart(String),
    #[error("S3 refused access: {0}")]
    Denied(String),
    /// A precondition (`If-Match`, `x-amz-copy-source-if-match`) failed: the object is not
    /// the version the caller read.
    #[error("the object changed")]
    Changed,
    #[error("S3 call failed: {0}")]
    Other(String),
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &[(String, String)],
        acl: Option<&str>,
        tagging: Option<&str>,
    ) -> Result<String, StoreError>;
    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, StoreError>;
    /// Completes with `parts` (S3's own list), stating the `total` size and that the key must
    /// not exist yet: S3 checks both where it supports them (AWS); RGW 16 ignores them.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
        total: i64,
    ) -> Result<(), StoreError>;
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError>;
    /// Size, content type, ETag and version of a stored object; `None` if there is none (or
    /// S3 will not say: a missing key is 403 to a caller without `s3:ListBucket`).
    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError>;
    /// The first `len` bytes (fewer if it is shorter) of exactly the version `info` describes
    /// (`If-Match` its ETag, and its version id where the bucket keeps versions):
    /// [`StoreError::Changed`] if the key holds something else now.
    async fn read_start(
        &self,
        key: &str,
        info: &ObjectInfo,
        len: u64,
    ) -> Result<Vec<u8>, StoreError>;
    /// Copies exactly the version `info` describes of `from` to `to` (server side, on the
    /// precondition that the source still has its ETag and, where the store checks it, that
    /// `to` does not exist yet; [`StoreError::Changed`] otherwise),
    /// with every header the copy carries set by `target` (`REPLACE`), none of the source's.
    /// Tags are not copied (RGW 16 has no tagging directive): set them after.
    async fn promote(
        &self,
        from: &str,
        info: &ObjectInfo,
        to: &str,
        target: &Promotion<'_>,
    ) -> Result<(), StoreError>;
    /// Replaces the object's tags with `uploadbucket-state=<state>`.
    async fn set_state(&self, key: &str, state: &str) -> Result<(), StoreError>;
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// How many multipart uploads are in progress under `prefix`, counting up to `enough`.
    async fn count_open_multipart(&self, prefix: &str, enough: usize) -> Result<usize, StoreError>;
}

/// What `HeadObject` says of an object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectInfo {
    pub size: i64,
    pub content_type: String,
    pub etag: String,
    /// Set where the bucket keeps versions.
    pub version_id: Option<String>,
}

/// The headers a verified object is stored with: what the signer decides, nothing the
/// uploader sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Promotion<'a> {
    pub content_type: &'a str,
    pub disposition: Option<&'a str>,
    pub acl: Option<&'a str>,
}

/// [`ObjectStore`] over aws-sdk-s3. The client is built on first use: most signers never
/// make an S3 call (only multipart does), and an unused client is memory for nothing.
pub struct S3Store {
    /// Builds the client configuration; even that is deferred to first use.
    make_config: Box<dyn Fn() -> aws_sdk_s3::Config + Send + Sync>,
    client: std::sync::OnceLock<aws_sdk_s3::Client>,
    pub bucket: String,
    backend: S3Backend,
}

impl S3Store {
    pub fn new(
        make_config: impl Fn() -> aws_sdk_s3::Config + Send + Sync + 'static,
        bucket: impl Into<String>,
        backend: S3Backend,
    ) -> Self {
        Self {
            make_config: Box::new(make_config),
            client: std::sync::OnceLock::new(),
            bucket: bucket.into(),
            backend,
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| aws_sdk_s3::Client::from_conf((self.make_config)()))
    }
}

fn classify<E>(err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if err
        .raw_response()
        .is_some_and(|r| r.status().as_u16() == 412)
    {
        return StoreError::Changed;
    }
    match err.code() {
        // The upload gone between verify's calls (deleted, or verified by another call).
        Some("PreconditionFailed" | "NoSuchKey") => StoreError::Changed,
        Some("NoSuchUpload") => StoreError::NoSuchUpload,
        Some("InvalidPart" | "InvalidPartOrder" | "EntityTooSmall" | "MalformedXML") => {
            StoreError::InvalidPart(err.message().unwrap_or_default().to_owned())
        }
        Some("AccessDenied") => StoreError::Denied(err.message().unwrap_or_default().to_owned()),
        _ => StoreError::Other(DisplayErrorContext(&err).to_string()),
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn create_multipart(
        &self,
        key: &str,
        content_type: &str,
        metadata: &[(String, String)],
        acl: Option<&str>,
        tagging: Option<&str>,
    ) -> Result<String, StoreError> {
        let mut req = self
            .client()
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_acl(acl.map(Into::into))
            .set_tagging(tagging.map(str::to_owned));
        for (k, v) in metadata {
            req = req.metadata(k, v);
        }
        let out = req.send().await.map_err(classify)?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError::Other("CreateMultipartUpload returned no upload id".into()))
    }

    async fn list_parts(&self, key: &str, upload_id: &str) -> Result<Vec<Part>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client()
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await
                .map_err(classify)?;
            for p in out.parts() {
                parts.push(Part {
                    number: p.part_number().unwrap_or_default(),
                    size: p.size().unwrap_or_default(),
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(parts)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[Part],
        total: i64,
    ) -> Result<(), StoreError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|p| {
                        CompletedPart::builder()
                            .part_number(p.number)
                            .e_tag(&p.etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client()
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .mpu_object_size(total)
            .if_none_match("*")
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        match self
            .client()
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                // Aborting twice is fine.
                StoreError::NoSuchUpload => Ok(()),
                other => Err(other),
            },
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match self
            .client()
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: out.content_length().unwrap_or_default(),
                content_type: out.content_type().unwrap_or_default().to_owned(),
                etag: out.e_tag().unwrap_or_default().to_owned(),
                // "null": an unversioned bucket's object (S3 says so once versioning was on).
                version_id: out
                    .version_id()
                    .filter(|v| !v.is_empty() && *v != "null")
                    .map(str::to_owned),
            })),
            // S3 answers 403, not 404, for a missing key to a caller without s3:ListBucket,
            // which the upload role never has; a real lack of s3:GetObject fails the next
            // call instead (the read, or verify's copy).
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 403 | 404)) =>
            {
                Ok(None)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn read_start(
        &self,
        key: &str,
        info: &ObjectInfo,
        len: u64,
    ) -> Result<Vec<u8>, StoreError> {
        let out = self
            .client()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .if_match(&info.etag)
            .set_version_id(info.version_id.clone())
            .range(format!("bytes=0-{}", len.saturating_sub(1)))
            .send()
            .await
            .map_err(classify)?;
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Other(format!("reading the object: {e}")))?;
        Ok(bytes.to_vec())
    }

    async fn promote(
        &self,
        from: &str,
        info: &ObjectInfo,
        to: &str,
        target: &Promotion<'_>,
    ) -> Result<(), StoreError> {
        // `bucket/key[?versionId=v]`, the key URL-encoded.
        let mut source = format!("{}/", self.bucket);
        crate::presign::uri_encode_into(&mut source, from, true);
        if let Some(v) = &info.version_id {
            source.push_str("?versionId=");
            crate::presign::uri_encode_into(&mut source, v, false);
        }
        let copy = self
            .client()
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(source)
            .copy_source_if_match(&info.etag)
            // Create-only: a verified object is never replaced, also not by a second verify
            // of the same upload (AWS and LocalStack check it; RGW 16 ignores it).
            .if_none_match("*")
            .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
            .content_type(target.content_type)
            .set_content_disposition(target.disposition.map(str::to_owned))
            .set_acl(target.acl.map(Into::into));
        let sent = if self.backend == S3Backend::Rgw {
            // RGW 16 reads a copy's preconditions from `x-amz-copy-if-*` only (its
            // RGWCopyObj_ObjStore_S3::get_params) and ignores AWS's `x-amz-copy-source-if-*`.
            let etag = info.etag.clone();
            copy.customize()
                .mutate_request(move |req| {
                    req.headers_mut()
                        .insert("x-amz-copy-if-match", etag.clone());
                })
                .send()
                .await
        } else {
            copy.send().await
        };
        sent.map(drop).map_err(classify)
    }

    async fn set_state(&self, key: &str, state: &str) -> Result<(), StoreError> {
        let tag = aws_sdk_s3::types::Tag::builder()
            .key(crate::config::STATE_TAG)
            .value(state)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(tag)
            .build()
            .map_err(|e| StoreError::Other(e.to_string()))?;
        self.client()
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client()
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(drop)
            .map_err(classify)
    }

    async fn count_open_multipart(&self, prefix: &str, enough: usize) -> Result<usize, StoreError> {
        let mut count = 0;
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let out = self
                .client()
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(classify)?;
            count += out.uploads().len();
            if count >= enough || out.is_truncated() != Some(true) {
                return Ok(count);
            }
            key_marker = out.next_key_marker().map(str::to_owned);
            id_marker = out.next_upload_id_marker().map(str::to_owned);
        }
    }
}

//! The S3 calls the signer makes itself (multipart create/list/complete/abort). Side effects.
//!
//! In: keys and upload ids the handlers validated. Out: S3's answer in plain types, with
//! errors classified so the API can answer 4xx for a client's mistake (unknown upload id,
//! wrong ETag) and 5xx/503 for ours.

use async_trait::async_trait;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

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
}

/// [`ObjectStore`] over aws-sdk-s3. The client is built on first use: most signers never
/// make an S3 call (only multipart does), and an unused client is memory for nothing.
pub struct S3Store {
    /// Builds the client configuration; even that is deferred to first use.
    make_config: Box<dyn Fn() -> aws_sdk_s3::Config + Send + Sync>,
    client: std::sync::OnceLock<aws_sdk_s3::Client>,
    pub bucket: String,
}

impl S3Store {
    pub fn new(
        make_config: impl Fn() -> aws_sdk_s3::Config + Send + Sync + 'static,
        bucket: impl Into<String>,
    ) -> Self {
        Self {
            make_config: Box::new(make_config),
            client: std::sync::OnceLock::new(),
            bucket: bucket.into(),
        }
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        self.client
            .get_or_init(|| aws_sdk_s3::Client::from_conf((self.make_config)()))
    }
}

fn classify<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match err.code() {
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
    ) -> Result<String, StoreError> {
        let mut req = self
            .client()
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_acl(acl.map(Into::into));
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
}

//! The dev mode's embedded store: s3s-fs (objects as files, real SigV4 checks) plus the
//! object tags s3s-fs lacks, so `verify` and the `pending` tag work on a laptop as on S3.
//!
//! Tags live next to s3s-fs's own metadata in the data folder, one small JSON file per object
//! (`.uploadbucket-tags-<sha256 of bucket and key>.json`), so they survive restarts like the
//! files do. They are set the way S3 sets them: from `x-amz-tagging` on PutObject and
//! CreateMultipartUpload (moved onto the object by CompleteMultipartUpload), from the
//! `tagging` field of a POST form (which s3s does not pass on: [`post_form_tagging`] reads it
//! in front of s3s, whose policy check has pinned it), and by Put/Get/DeleteObjectTagging; replaced when an object is written again and
//! removed with it. There is no lifecycle here: a `pending` upload stays until deleted.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use s3s::dto::{self, Tag, Tagging};
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use sha2::{Digest, Sha256};

type Tags = Vec<(String, String)>;

pub struct DevStore {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    /// Copies may only land under this prefix (verify's copies to the verified area), as the
    /// upload role's policy says on S3: a URL turned into a copy is refused.
    copy_into: Option<String>,
    /// Reads, writes and copies of a key take turns: an ETag and the bytes read or copied
    /// with it (`If-Match`, `x-amz-copy-source-if-match`) are then one version, as on S3.
    turns: crate::limits::Stripes,
}

impl DevStore {
    /// A store in `root`; copies only into `copy_into` (none without it).
    pub fn new(root: &Path, copy_into: Option<String>) -> anyhow::Result<Self> {
        let root = std::fs::canonicalize(root)?;
        let fs = s3s_fs::FileSystem::new(&root)
            .map_err(|e| anyhow::anyhow!("dev store at {}: {e:?}", root.display()))?;
        Ok(Self {
            fs,
            root,
            copy_into,
            turns: Default::default(),
        })
    }

    async fn turn(&self, bucket: &str, key: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.turns.lock(&format!("{bucket}/{key}")).await
    }

    /// Where the key a multipart upload was created for is kept.
    fn upload_key_path(&self, upload_id: &str) -> PathBuf {
        let id = Sha256::digest(upload_id.as_bytes());
        self.root
            .join(format!(".uploadbucket-upload-{}.key", hex::encode(id)))
    }

    /// NoSuchUpload unless `upload_id` was created for `bucket`/`key` (S3 binds the two; s3s-fs
    /// does not).
    fn check_upload(&self, upload_id: &str, bucket: &str, key: &str) -> S3Result<()> {
        match std::fs::read_to_string(self.upload_key_path(upload_id)) {
            Ok(k) if k == format!("{bucket}/{key}") => Ok(()),
            _ => Err(s3_error!(NoSuchUpload)),
        }
    }

    fn object_tags_path(&self, bucket: &str, key: &str) -> PathBuf {
        let id = Sha256::new()
            .chain_update(bucket)
            .chain_update([0])
            .chain_update(key)
            .finalize();
        self.root
            .join(format!(".uploadbucket-tags-{}.json", hex::encode(id)))
    }

    fn upload_tags_path(&self, upload_id: &str) -> PathBuf {
        // Upload ids come from s3s-fs (UUIDs); hash anyway so no id can name another path.
        let id = Sha256::digest(upload_id.as_bytes());
        self.root.join(format!(
            ".uploadbucket-tags-upload-{}.json",
            hex::encode(id)
        ))
    }

    fn read(path: &Path) -> S3Result<Option<Tags>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| s3_error!(InternalError, "dev store tags at {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(s3_error!(InternalError, "dev store tags: {e}")),
        }
    }

    /// Writes `tags` to `path` (removes it when there are none), atomically.
    fn write(path: &Path, tags: &Tags) -> S3Result<()> {
        let io = |e: std::io::Error| s3_error!(InternalError, "dev store tags: {e}");
        if tags.is_empty() {
            return match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            };
        }
        let tmp = path.with_extension("json.tmp");
        let json = serde_json::to_vec(tags).map_err(|e| s3_error!(InternalError, "{e}"))?;
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// Tags from an `x-amz-tagging` header (`k=v&k2=v2`, URL-encoded).
fn header_tags(header: Option<&str>) -> Tags {
    header
        .map(|h| {
            form_urlencoded::parse(h.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

/// The `tagging` field of a POST form (S3's `<Tagging>` XML), found by [`post_form_tagging`].
#[derive(Clone)]
struct PostTagging(String);

/// Middleware in front of the store: s3s parses a POST form's fields into PutObject's input,
/// which has no room for the `tagging` field, so this reads the form once more (the dev store
/// holds the body in memory anyway) and hands the field to [`DevStore::post_object`] in the
/// request's extensions. s3s still checks the field against the signed policy.
pub async fn post_form_tagging(req: Request, next: Next) -> Response {
    let multipart = req.method() == Method::POST
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    // The fields come before the file; the first MiB holds them (and stays within the
    // multipart extractor's default body limit).
    let mut probe = Request::new(Body::from(bytes.slice(..bytes.len().min(1 << 20))));
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        probe.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    if let Ok(mut form) = Multipart::from_request(probe, &()).await {
        while let Ok(Some(field)) = form.next_field().await {
            match field.name() {
                Some("tagging") => {
                    // Which of two `tagging` fields counts differs between readers (s3s checks
                    // the last against the policy): a form with two is refused outright.
                    if parts.extensions.get::<PostTagging>().is_some() {
                        return (
                            StatusCode::BAD_REQUEST,
                            "the form has more than one tagging field\n",
                        )
                            .into_response();
                    }
                    if let Ok(text) = field.text().await {
                        parts.extensions.insert(PostTagging(text));
                    }
                }
                // The file comes last: no field after it counts.
                Some("file") => break,
                _ => {}
            }
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Tags from a POST form's `tagging` field, if it had one.
fn form_tags(xml: Option<&PostTagging>) -> S3Result<Tags> {
    let Some(PostTagging(xml)) = xml else {
        return Ok(Tags::new());
    };
    let mut d = s3s::xml::Deserializer::new(xml.as_bytes());
    let tagging = <Tagging as s3s::xml::Deserialize>::deserialize(&mut d).map_err(|e| {
        s3_error!(
            MalformedXML,
            "the tagging field is not S3 tagging XML: {e:?}"
        )
    })?;
    Ok(from_tagging(&tagging))
}

fn from_tagging(t: &Tagging) -> Tags {
    t.tag_set
        .iter()
        .map(|tag| {
            (
                tag.key.clone().unwrap_or_default(),
                tag.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

#[async_trait::async_trait]
impl S3 for DevStore {
    async fn put_object(
        &self,
        req: S3Request<dto::PutObjectInput>,
    ) -> S3Result<S3Response<dto::PutObjectOutput>> {
        let tags = header_tags(req.input.tagging.as_deref());
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        let _turn = self.turn(&req.input.bucket, &req.input.key).await;
        let out = self.fs.put_object(req).await?;
        Self::write(&path, &tags)?;
        Ok(out)
    }

    async fn post_object(
        &self,
        req: S3Request<dto::PostObjectInput>,
    ) -> S3Result<S3Response<dto::PostObjectOutput>> {
        let tags = form_tags(req.extensions.get::<PostTagging>())?;
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        let _turn = self.turn(&req.input.bucket, &req.input.key).await;
        let out = self.fs.post_object(req).await?;
        Self::write(&path, &tags)?;
        Ok(out)
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<dto::CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CreateMultipartUploadOutput>> {
        let tags = header_tags(req.input.tagging.as_deref());
        let target = format!("{}/{}", req.input.bucket, req.input.key);
        let out = self.fs.create_multipart_upload(req).await?;
        if let Some(id) = &out.output.upload_id {
            Self::write(&self.upload_tags_path(id), &tags)?;
            std::fs::write(self.upload_key_path(id), target)
                .map_err(|e| s3_error!(InternalError, "dev store: {e}"))?;
        }
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<dto::CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::CompleteMultipartUploadOutput>> {
        let input = &req.input;
        self.check_upload(&input.upload_id, &input.bucket, &input.key)?;
        let pending = self.upload_tags_path(&input.upload_id);
        let path = self.object_tags_path(&input.bucket, &input.key);
        let (bucket, key, id) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let size = input.mpu_object_size;
        let _turn = self.turn(&bucket, &key).await;
        let out = self.fs.complete_multipart_upload(req).await?;
        let _ = std::fs::remove_file(self.upload_key_path(&id));
        // The stated total, as S3 checks it: a part replaced after the signer listed them
        // would otherwise go through.
        let stored = tokio::fs::metadata(self.root.join(&bucket).join(&key))
            .await
            .map(|m| m.len() as i64)
            .ok();
        if let Some(size) = size
            && stored != Some(size)
        {
            let _ = tokio::fs::remove_file(self.root.join(&bucket).join(&key)).await;
            Self::write(&pending, &Tags::new())?;
            return Err(s3_error!(
                InvalidRequest,
                "the parts add up to {stored:?} bytes, not the stated {size}"
            ));
        }
        Self::write(&path, &Self::read(&pending)?.unwrap_or_default())?;
        Self::write(&pending, &Tags::new())?;
        Ok(out)
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<dto::AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<dto::AbortMultipartUploadOutput>> {
        self.check_upload(&req.input.upload_id, &req.input.bucket, &req.input.key)?;
        let pending = self.upload_tags_path(&req.input.upload_id);
        let _ = std::fs::remove_file(self.upload_key_path(&req.input.upload_id));
        let out = self.fs.abort_multipart_upload(req).await?;
        Self::write(&pending, &Tags::new())?;
        Ok(out)
    }

    async fn delete_object(
        &self,
        req: S3Request<dto::DeleteObjectInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectOutput>> {
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        let _turn = self.turn(&req.input.bucket, &req.input.key).await;
        let out = self.fs.delete_object(req).await?;
        Self::write(&path, &Tags::new())?;
        Ok(out)
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<dto::GetObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::GetObjectTaggingOutput>> {
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        self.exists(&req.input.bucket, &req.input.key).await?;
        let tag_set = Self::read(&path)?
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| Tag {
                key: Some(k),
                value: Some(v),
            })
            .collect();
        Ok(S3Response::new(dto::GetObjectTaggingOutput {
            tag_set,
            ..Default::default()
        }))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<dto::PutObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::PutObjectTaggingOutput>> {
        self.exists(&req.input.bucket, &req.input.key).await?;
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        Self::write(&path, &from_tagging(&req.input.tagging))?;
        Ok(S3Response::new(dto::PutObjectTaggingOutput::default()))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<dto::DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<dto::DeleteObjectTaggingOutput>> {
        self.exists(&req.input.bucket, &req.input.key).await?;
        let path = self.object_tags_path(&req.input.bucket, &req.input.key);
        Self::write(&path, &Tags::new())?;
        Ok(S3Response::new(dto::DeleteObjectTaggingOutput::default()))
    }

    // Everything else is s3s-fs's.
    // Reads take turns with writes too: s3s-fs renames a written file into place and stores
    // its ETag in separate steps, so a read between them would pair one version's ETag with
    // another's bytes (seen: verify read a JPEG under the ETag of the HTML replacing it).
    async fn get_object(
        &self,
        req: S3Request<dto::GetObjectInput>,
    ) -> S3Result<S3Response<dto::GetObjectOutput>> {
        let _turn = self.turn(&req.input.bucket, &req.input.key).await;
        let wanted = req.input.if_match.clone();
        let out = self.fs.get_object(req).await?;
        // If-Match, which s3s-fs does not check on GET.
        if let Some(dto::ETagCondition::ETag(wanted)) = wanted
            && !out
                .output
                .e_tag
                .as_ref()
                .is_some_and(|have| have.strong_cmp(&wanted))
        {
            return Err(s3_error!(PreconditionFailed));
        }
        Ok(out)
    }

    async fn head_object(
        &self,
        req: S3Request<dto::HeadObjectInput>,
    ) -> S3Result<S3Response<dto::HeadObjectOutput>> {
        let _turn = self.turn(&req.input.bucket, &req.input.key).await;
        self.fs.head_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<dto::HeadBucketInput>,
    ) -> S3Result<S3Response<dto::HeadBucketOutput>> {
        self.fs.head_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<dto::GetBucketLocationInput>,
    ) -> S3Result<S3Response<dto::GetBucketLocationOutput>> {
        self.fs.get_bucket_location(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<dto::ListBucketsInput>,
    ) -> S3Result<S3Response<dto::ListBucketsOutput>> {
        self.fs.list_buckets(req).await
    }

    async fn list_objects(
        &self,
        req: S3Request<dto::ListObjectsInput>,
    ) -> S3Result<S3Response<dto::ListObjectsOutput>> {
        self.fs.list_objects(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<dto::ListObjectsV2Input>,
    ) -> S3Result<S3Response<dto::ListObjectsV2Output>> {
        self.fs.list_objects_v2(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<dto::UploadPartInput>,
    ) -> S3Result<S3Response<dto::UploadPartOutput>> {
        self.check_upload(&req.input.upload_id, &req.input.bucket, &req.input.key)?;
        self.fs.upload_part(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<dto::ListPartsInput>,
    ) -> S3Result<S3Response<dto::ListPartsOutput>> {
        self.check_upload(&req.input.upload_id, &req.input.bucket, &req.input.key)?;
        self.fs.list_parts(req).await
    }

    /// Only verify's copies to the verified area (see [`DevStore::copy_into`]); the copy and
    /// its `If-Match` check take the source's turn, so they see one version.
    async fn copy_object(
        &self,
        req: S3Request<dto::CopyObjectInput>,
    ) -> S3Result<S3Response<dto::CopyObjectOutput>> {
        let input = &req.input;
        if !self
            .copy_into
            .as_deref()
            .is_some_and(|p| input.key.starts_with(p))
        {
            return Err(s3_error!(
                AccessDenied,
                "copies are refused here: only verify copies, into the verified area"
            ));
        }
        let dto::CopySource::Bucket { bucket, key, .. } = &input.copy_source else {
            return Err(s3_error!(NotImplemented));
        };
        let replace_tags = input
            .tagging_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == dto::TaggingDirective::REPLACE);
        let tags = if replace_tags {
            header_tags(input.tagging.as_deref())
        } else {
            Self::read(&self.object_tags_path(bucket, key))?.unwrap_or_default()
        };
        let path = self.object_tags_path(&input.bucket, &input.key);
        // The target's and the source's turns together (both may fall on one lock).
        let _turns = self
            .turns
            .lock_both(
                &format!("{}/{}", input.bucket, input.key),
                &format!("{bucket}/{key}"),
            )
            .await;
        // `If-None-Match: *` on the target (s3s 0.14 has no field for it on CopyObject).
        let create_only = req
            .headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == b"*");
        if create_only && self.exists(&input.bucket, &input.key).await.is_ok() {
            return Err(s3_error!(PreconditionFailed));
        }
        let out = self.fs.copy_object(req).await?;
        Self::write(&path, &tags)?;
        Ok(out)
    }
}

impl DevStore {
    /// NoSuchKey unless `key` is an object in `bucket`.
    async fn exists(&self, bucket: &str, key: &str) -> S3Result<()> {
        let path = self.root.join(bucket).join(key);
        let inside = path.starts_with(self.root.join(bucket));
        match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_file() && inside && !key.split('/').any(|s| s == "..") => Ok(()),
            _ => Err(s3_error!(NoSuchKey)),
        }
    }
}

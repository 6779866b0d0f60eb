//! The HTTP API through `app(state)` with `oneshot`: a fake S3 store, fixed credentials and
//! a pinned clock (tests/common). Every answer goes through `send` (by `ask`, `expect`,
//! `refused` and `refuses`), which holds it to the signer's OpenAPI document
//! (docs/reference/signer.openapi.yaml). Refusals are tables, one row a case (what it tries,
//! the request, the status and error code it must get). Real S3 behaviour is covered by
//! tests/tests/sidecar_rgw.rs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::StatusCode;
use serde_json::{Value, json};
use uploadbucket_sidecar::AppState;
use uploadbucket_sidecar::config::Config;
use uploadbucket_sidecar::credentials::{CredentialSource, StaticCredentials};
use uploadbucket_sidecar::presign::Credentials;
use uploadbucket_sidecar::store::{ObjectInfo, ObjectStore, Part, Promotion, StoreError};

use common::*;

struct Failing;

#[async_trait]
impl CredentialSource for Failing {
    async fn credentials(&self) -> Result<Arc<Credentials>, String> {
        Err("secret internal detail: token file /var/run/x unreadable".into())
    }
}

/// What a failing store's or credential source's errors hold, which no answer may show.
const SECRETS: &[&str] = &["secret", "arn:", "10.0.0.7"];

// ---------------------------------------------------------------- requests

/// `POST /uploads` with `body`.
fn upload(body: Value) -> Req {
    post("/uploads", body)
}

/// A PUT URL for 5 bytes of JPEG in `owner`'s folder.
fn upload_by(owner: &str) -> Req {
    upload(json!({"contentType": "image/jpeg", "size": 5, "owner": owner}))
}

/// The two ways to ask for a POST form: ours and Uppy's.
fn forms() -> [Req; 2] {
    [
        upload(json!({"contentType": "image/jpeg"})),
        get("/s3/params?filename=a.jpg&type=image/jpeg"),
    ]
}

/// `POST /s3/multipart` with `body`.
fn create(body: Value) -> Req {
    post("/s3/multipart", body)
}

/// Completing upload `id` of `key` with `parts`.
fn complete(id: &str, key: &str, parts: Value) -> Req {
    post(
        format!("/s3/multipart/{id}/complete?key={key}"),
        json!({ "parts": parts }),
    )
}

/// `POST /uploads/verify` of `key`.
fn verify(key: &str) -> Req {
    post("/uploads/verify", json!({ "key": key }))
}

// ---------------------------------------------------------------- states and answers

/// A verifying signer (`uploads.verification.enabled`) over `store`.
fn verifying(store: Arc<dyn ObjectStore>, quarantine: bool) -> AppState {
    let c = Config {
        verify: true,
        verify_quarantine: quarantine,
        ..config()
    };
    state_over(c, store)
}

/// A public bucket (`uploads.publicRead`) taking images and PDFs.
fn public() -> AppState {
    state_from(Config {
        public_read: true,
        allowed_content_types: vec!["image/*".into(), "application/pdf".into()],
        ..config()
    })
}

fn part(number: i32, size: i64, etag: &str) -> Part {
    Part {
        number,
        size,
        etag: etag.into(),
    }
}

/// Starts a multipart upload asked for with `body`; (key, uploadId).
async fn start_multipart(s: &AppState, body: Value) -> (String, String) {
    let created = expect(s, &create(body), 200).await;
    let field = |name: &str| created[name].as_str().unwrap().to_owned();
    (field("key"), field("uploadId"))
}

/// Starts a multipart upload and makes the fake store hold `parts` for it; (key, uploadId).
async fn upload_with_parts(s: &AppState, store: &FakeStore, parts: Vec<Part>) -> (String, String) {
    let (key, id) = start_multipart(s, json!({"type": "image/jpeg"})).await;
    store.set_parts(&id, parts);
    (key, id)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

/// The headers the URL `url` signs (its `X-Amz-SignedHeaders`).
fn signed_headers(url: &Value) -> String {
    let url = url.as_str().unwrap_or_else(|| panic!("no URL: {url}"));
    query_param(url, "X-Amz-SignedHeaders").unwrap_or_else(|| panic!("nothing signed: {url}"))
}

/// The policy of a POST form (its `fields`), once it holds `condition`.
fn policy_with(fields: &Value, condition: Value) -> Value {
    use base64::Engine as _;
    let policy: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(fields["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        policy["conditions"]
            .as_array()
            .unwrap()
            .contains(&condition),
        "{condition} not in {policy}"
    );
    policy
}

/// Asserts that the store aborted upload `id` of `key` and completed none (`what` names the
/// case).
fn assert_aborted(store: &FakeStore, key: &str, id: &str, what: &str) {
    let calls = store.calls();
    assert!(
        calls.contains(&format!("abort {key} {id}")),
        "{what}: {calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("complete")),
        "{what}: {calls:?}"
    );
}

// ---------------------------------------------------------------- single uploads

#[tokio::test]
async fn put_url_signs_type_and_size_under_the_prefix() {
    let (s, _) = state();
    let body = expect(
        &s,
        &upload(json!({"filename": "../../etc/cat.JPG", "contentType": "image/jpeg", "size": 999})),
        201,
    )
    .await;
    assert_eq!(body["method"], "PUT");
    let key = body["key"].as_str().unwrap();
    assert!(
        key.starts_with("uploads/") && key.ends_with(".jpg") && !key.contains(".."),
        "{key}"
    );
    assert_eq!(key.len(), "uploads/".len() + 32 + 4);
    let url = body["uploadURL"].as_str().unwrap();
    assert!(
        url.starts_with(&format!(
            "https://photos.s3.eu-west-1.amazonaws.com/{key}?x-id=PutObject&"
        )),
        "{url}"
    );
    assert_eq!(
        signed_headers(&body["uploadURL"]),
        "content-length%3Bcontent-type%3Bhost%3Bif-none-match"
    );
    assert_eq!(query_param(url, "X-Amz-Expires").as_deref(), Some("300"));
    assert_eq!(
        query_param(url, "X-Amz-Security-Token").as_deref(),
        Some("session")
    );
    assert_eq!(
        body["headers"],
        json!({"content-type": "image/jpeg", "if-none-match": "*"})
    );
    assert_eq!(body["expiresAt"], "2023-11-14T22:18:20Z");
}

/// The benchmark's baseline (`--signer sdk`: aws-sdk-s3 presigns `POST /uploads`) signs
/// what the fast signer signs, for every header a bucket or a client can add: otherwise the
/// benchmark would compare unlike work.
#[tokio::test]
async fn the_sdk_baseline_signs_the_same_headers() {
    let config = Config {
        public_read: true,
        verify: true,
        bucket_owner_full_control: true,
        allowed_content_types: vec!["application/pdf".into()],
        ..config()
    };
    let c = creds(None);
    let sdk = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                c.access_key_id.clone(),
                c.secret_access_key.clone(),
                c.session_token.clone(),
                None,
                "test",
            ))
            .build(),
    );
    let fast = state_from(config.clone());
    let baseline = state_from(config).with_sdk_signer(sdk);
    let request = upload(json!({
        "contentType": "application/pdf",
        "size": 999,
        "metadata": {"user-id": "u1"},
        "contentMD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
        "checksumSHA256": "47DEQpj8BCSw+YlxqUOiWzaN4Xd24f/iBqM+kaRBj9o=",
    }));
    let (a, b) = (
        expect(&fast, &request, 201).await,
        expect(&baseline, &request, 201).await,
    );
    assert_eq!(
        signed_headers(&a["uploadURL"]),
        "content-disposition%3Bcontent-length%3Bcontent-md5%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-acl%3Bx-amz-checksum-sha256%3Bx-amz-meta-user-id%3Bx-amz-tagging"
    );
    assert_eq!(
        signed_headers(&a["uploadURL"]),
        signed_headers(&b["uploadURL"])
    );
    for name in [
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-Security-Token",
    ] {
        let url = |v: &Value| v["uploadURL"].as_str().unwrap().to_owned();
        assert_eq!(
            query_param(&url(&a), name),
            query_param(&url(&b), name),
            "{name}"
        );
    }
    assert_eq!(a["headers"], b["headers"]);
}

#[tokio::test]
async fn expiry_is_cut_to_the_credentials_lifetime() {
    let expiring = creds(Some(now() + Duration::from_secs(100)));
    let s = state_with(
        Arc::new(StaticCredentials::new(expiring)),
        Arc::new(FakeStore::default()),
    );
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/png", "size": 10})),
        201,
    )
    .await;
    assert_eq!(
        query_param(body["uploadURL"].as_str().unwrap(), "X-Amz-Expires").as_deref(),
        Some("100")
    );
    assert_eq!(body["expiresAt"], "2023-11-14T22:15:00Z");
    assert!(body["key"].as_str().unwrap().ends_with(".png"));
}

#[tokio::test]
async fn refusals_are_json_and_name_the_field() {
    let (s, _) = state();
    refuses(
        &s,
        [
            row(
                "a type not allowed",
                upload(json!({"contentType": "application/pdf"})),
                400,
                "ContentTypeNotAllowed",
            )
            .saying("image/jpeg, image/*"),
            row("no type", upload(json!({})), 400, "MissingContentType")
                .saying("contentType is required"),
            row(
                "a type that is no media type",
                upload(json!({"contentType": "jpeg"})),
                400,
                "InvalidContentType",
            )
            .saying("contentType"),
            row(
                "a size over the maximum",
                upload(json!({"contentType": "image/jpeg", "size": 1001})),
                413,
                "TooLarge",
            )
            .saying("maximum of 1000"),
            row(
                "a size of 0",
                upload(json!({"contentType": "image/jpeg", "size": 0})),
                400,
                "InvalidSize",
            )
            .saying("size"),
            row(
                "an unknown field",
                upload(json!({"contentType": "image/jpeg", "content_type": "x"})),
                400,
                "InvalidJson",
            )
            .saying("content_type"),
            row(
                "a method neither PUT nor POST",
                upload(json!({"contentType": "image/jpeg", "method": "GET"})),
                400,
                "InvalidMethod",
            )
            .saying("PUT, POST"),
            row(
                "a metadata key not allowed",
                upload(json!({"contentType": "image/jpeg", "metadata": {"owner": "x"}})),
                400,
                "MetadataNotAllowed",
            )
            .saying("user-id"),
            row(
                "a metadata value not ASCII",
                upload(json!({"contentType": "image/jpeg", "metadata": {"user-id": "é"}})),
                400,
                "InvalidMetadata",
            )
            .saying("ASCII"),
            row(
                "a size that is no number",
                upload(json!({"contentType": "image/jpeg", "size": "big"})),
                400,
                "InvalidJson",
            )
            .saying("size: invalid type"),
            row(
                "a metadata value that is no string",
                upload(json!({"contentType": "image/jpeg", "metadata": {"user-id": 7}})),
                400,
                "InvalidJson",
            )
            .saying("metadata.user-id: invalid type"),
            row(
                "a body that is not JSON",
                post_as("/uploads", "text/plain", "hi"),
                415,
                "UnsupportedMediaType",
            ),
            row(
                "a path the signer does not serve",
                get("/nope"),
                404,
                "NotFound",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn post_form_carries_the_size_range_and_exact_key() {
    let (s, _) = state();
    let body = expect(
        &s,
        &upload(
            json!({"contentType": "image/webp", "method": "POST", "metadata": {"user-id": "42"}}),
        ),
        201,
    )
    .await;
    assert_eq!(body["url"], "https://photos.s3.eu-west-1.amazonaws.com/");
    assert_eq!(body["maxSizeBytes"], 1000);
    let fields = &body["fields"];
    assert_eq!(fields["key"], body["key"]);
    assert_eq!(fields["Content-Type"], "image/webp");
    assert_eq!(fields["x-amz-meta-user-id"], "42");
    assert_eq!(fields["x-amz-security-token"], "session");
    policy_with(fields, json!({"key": body["key"]}));
    let policy = policy_with(fields, json!(["content-length-range", 1, 1000]));
    assert_eq!(policy["expiration"], "2023-11-14T22:18:20Z");
}

#[tokio::test]
async fn legacy_lambda_shape_and_uppy_params() {
    let (s, _) = state();
    refuses(
        &s,
        [
            // No size, no PUT URL: S3 could not hold it to the maximum.
            row(
                "the legacy GET without a size",
                get("/uploads"),
                400,
                "SizeRequired",
            )
            .saying("size"),
            row(
                "the legacy GET over the maximum",
                get("/uploads?size=1001"),
                413,
                "TooLarge",
            ),
            row(
                "the legacy GET for a type not allowed",
                get("/uploads?contentType=text/html&size=5"),
                400,
                "ContentTypeNotAllowed",
            ),
        ],
    )
    .await;
    let body = expect(&s, &get("/uploads?size=600"), 200).await;
    assert!(body["Key"].as_str().unwrap().starts_with("uploads/"));
    assert!(
        body["Key"].as_str().unwrap().ends_with(".jpg"),
        "default type is image/jpeg"
    );
    let url = body["uploadURL"].as_str().unwrap();
    assert!(
        url.contains("X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost"),
        "{url}"
    );
    // The bucket may opt into the sample's unsized PUTs.
    let open = state_from(Config {
        allow_unsized_put: true,
        ..config()
    });
    let body = expect(&open, &get("/uploads"), 200).await;
    assert_eq!(signed_headers(&body["uploadURL"]), "content-type%3Bhost");

    // Uppy's single upload: always a POST form with the size range, whatever Uppy sends.
    let body = expect(
        &s,
        &get("/s3/params?filename=a.gif&type=image/gif&metadata[name]=a.gif&metadata[relativePath]=null&metadata[user-id]=u7"),
        200,
    )
    .await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["headers"], json!({}));
    let fields = &body["fields"];
    assert!(fields["key"].as_str().unwrap().ends_with(".gif"));
    assert_eq!(fields["key"], body["key"]);
    assert_eq!(fields["Content-Type"], "image/gif");
    assert_eq!(fields["x-amz-meta-user-id"], "u7", "allowed metadata kept");
    assert!(fields.get("x-amz-meta-name").is_none(), "{fields}");
    policy_with(fields, json!(["content-length-range", 1, 1000]));
}

#[tokio::test]
async fn put_needs_a_size_and_no_method_without_one_gets_a_form() {
    let (s, _) = state();
    refused(
        &s,
        &row(
            "a PUT URL without a size",
            upload(json!({"contentType": "image/png", "method": "PUT"})),
            400,
            "SizeRequired",
        ),
    )
    .await;
    let body = expect(&s, &upload(json!({"contentType": "image/png"})), 201).await;
    assert_eq!(body["method"], "POST");
    assert_eq!(body["maxSizeBytes"], 1000);
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/png", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["method"], "PUT");
}

#[tokio::test]
async fn client_checksums_are_signed_into_put_urls() {
    let (s, _) = state();
    let sha = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5, "checksumSHA256": sha, "contentMD5": md5})),
        201,
    )
    .await;
    assert_eq!(
        signed_headers(&body["uploadURL"]),
        "content-length%3Bcontent-md5%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-checksum-sha256"
    );
    assert_eq!(body["headers"]["x-amz-checksum-sha256"], sha);
    assert_eq!(body["headers"]["content-md5"], md5);

    let with = |field: &str, value: &str| {
        upload(json!({"contentType": "image/jpeg", "size": 5, field: value}))
    };
    refuses(
        &s,
        [
            row(
                "a SHA-256 that is not base64",
                with("checksumSHA256", "not base64!"),
                400,
                "InvalidChecksum",
            )
            .saying("checksumSHA256"),
            row(
                "an MD5 given as the SHA-256",
                with("checksumSHA256", md5),
                400,
                "InvalidChecksum",
            )
            .saying("checksumSHA256"),
            row(
                "a SHA-256 given as the MD5",
                with("contentMD5", sha),
                400,
                "InvalidChecksum",
            )
            .saying("contentMD5"),
            row(
                "a checksum for a POST form",
                upload(
                    json!({"contentType": "image/jpeg", "method": "POST", "checksumSHA256": sha}),
                ),
                400,
                "ChecksumNeedsPut",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn bucket_owner_full_control_is_signed_into_every_upload() {
    let store = Arc::new(FakeStore::default());
    let rgw = Config {
        bucket_owner_full_control: true,
        ..config()
    };
    let s = state_over(rgw, store.clone());
    let acl = "bucket-owner-full-control";
    // PUT: a header the client must send, signed.
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["headers"]["x-amz-acl"], acl, "{body}");
    let signed = signed_headers(&body["uploadURL"]);
    assert!(signed.contains("x-amz-acl"), "{signed}");
    // POST form (ours and Uppy's): a field pinned by the policy.
    for req in forms() {
        let form = ask(&s, &req).await;
        assert!(form.status.is_success(), "{req}: {}", form.body);
        assert_eq!(form.body["fields"]["acl"], acl, "{req}: {}", form.body);
        policy_with(&form.body["fields"], json!({"acl": acl}));
    }
    // Multipart: CreateMultipartUpload carries it.
    expect(&s, &create(json!({"type": "image/jpeg"})), 200).await;
    let calls = store.calls();
    assert!(
        calls
            .last()
            .unwrap()
            .ends_with(" acl=bucket-owner-full-control"),
        "{calls:?}"
    );
    // Off (the default, AWS): none of it.
    let (s, store) = state();
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["headers"].get("x-amz-acl"), None, "{body}");
    expect(&s, &create(json!({"type": "image/jpeg"})), 200).await;
    assert!(!store.calls().last().unwrap().contains("acl="));
}

#[tokio::test]
async fn public_buckets_get_attachment_for_anything_but_media() {
    let s = public();
    let body = expect(
        &s,
        &upload(json!({"contentType": "application/pdf", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["headers"]["content-disposition"], "attachment");
    assert!(signed_headers(&body["uploadURL"]).contains("content-disposition"));
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/png", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["headers"].get("content-disposition"), None, "{body}");
    let form = expect(
        &s,
        &upload(json!({"contentType": "application/pdf", "method": "POST"})),
        201,
    )
    .await;
    assert_eq!(form["fields"]["Content-Disposition"], "attachment");
    policy_with(
        &form["fields"],
        json!({"Content-Disposition": "attachment"}),
    );
    // A private bucket: no disposition at all.
    let (s, _) = state();
    let body = expect(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5})),
        201,
    )
    .await;
    assert_eq!(body["headers"].get("content-disposition"), None, "{body}");
}

/// The seed-compatible GET cannot make its client send `Content-Disposition`: on a public
/// bucket it refuses the types that would need it, and still signs media.
#[tokio::test]
async fn the_legacy_get_refuses_what_a_public_bucket_must_store_as_attachment() {
    let s = public();
    refused(
        &s,
        &row(
            "the legacy GET for a PDF",
            get("/uploads?contentType=application/pdf&size=5"),
            400,
            "DispositionNeedsPost",
        ),
    )
    .await;
    let body = expect(&s, &get("/uploads?contentType=image/png&size=5"), 200).await;
    assert!(body["uploadURL"].is_string());
}

#[tokio::test]
async fn a_wildcard_never_admits_script_capable_types() {
    let (s, _) = state();
    let sized = |ct: &str| upload(json!({"contentType": ct, "size": 5}));
    refuses(
        &s,
        [
            row(
                "SVG under image/*",
                sized("image/svg+xml"),
                400,
                "ContentTypeNotAllowed",
            ),
            row(
                "SVG in capitals under image/*",
                sized("image/SVG+XML"),
                400,
                "ContentTypeNotAllowed",
            ),
        ],
    )
    .await;
    let exact = state_from(Config {
        allowed_content_types: vec!["image/*".into(), "image/svg+xml".into()],
        ..config()
    });
    let answer = ask(&exact, &sized("image/svg+xml")).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "listed exactly, it is allowed"
    );
}

// ---------------------------------------------------------------- multipart

#[tokio::test]
async fn multipart_cycle_in_uppy_shapes() {
    let (s, store) = state();
    let (key, id) = start_multipart(
        &s,
        json!({"filename": "big.jpg", "type": "image/jpeg", "metadata": {}}),
    )
    .await;
    assert_eq!(store.calls()[0], format!("create {key} image/jpeg"));

    let one = expect(&s, &get(format!("/s3/multipart/{id}/2?key={key}")), 200).await;
    let url = one["url"].as_str().unwrap();
    assert!(
        url.contains("x-id=UploadPart&partNumber=2&uploadId=upload-1&"),
        "{url}"
    );
    assert_eq!(one["expires"], 300);

    let batch = get(format!(
        "/uploads/multipart/{id}/batch?key={key}&partNumbers=1,2,3"
    ));
    let batch = expect(&s, &batch, 200).await;
    assert_eq!(batch["presignedUrls"].as_object().unwrap().len(), 3);
    assert!(
        batch["presignedUrls"]["3"]
            .as_str()
            .unwrap()
            .contains("partNumber=3")
    );

    // Parts "uploaded" by the client, as S3 would list them.
    store.set_parts(&id, vec![part(1, 600, "\"a\""), part(2, 300, "\"b\"")]);
    let parts = expect(&s, &get(format!("/s3/multipart/{id}?key={key}")), 200).await;
    assert_eq!(
        parts,
        json!([{"PartNumber": 1, "Size": 600, "ETag": "\"a\""}, {"PartNumber": 2, "Size": 300, "ETag": "\"b\""}])
    );

    let parts = json!([{"PartNumber": 2, "ETag": "\"b\""}, {"PartNumber": 1, "ETag": "\"a\""}]);
    let done = expect(&s, &complete(&id, &key, parts), 200).await;
    assert_eq!(
        done["location"],
        format!("https://photos.s3.eu-west-1.amazonaws.com/{key}")
    );
    assert_eq!(done["key"], key.as_str());
}

#[tokio::test]
async fn multipart_over_the_limit_is_aborted_at_complete() {
    let (s, store) = state();
    let (key, id) = upload_with_parts(&s, &store, vec![part(1, 800, "a"), part(2, 800, "b")]).await;
    let parts = json!([{"PartNumber": 1, "ETag": "a"}, {"PartNumber": 2, "ETag": "b"}]);
    let over = row(
        "parts of 1600 bytes in all",
        complete(&id, &key, parts),
        413,
        "TooLarge",
    );
    refused(&s, &over.saying("1600 bytes")).await;
    assert_aborted(&store, &key, &id, "over the limit");
}

#[tokio::test]
async fn complete_sends_only_what_s3_stored_and_aborts_on_a_tampered_list() {
    let stored = vec![
        part(1, 400, "\"e1\""),
        part(2, 300, "\"e2\""),
        part(3, 200, "\"e3\""),
    ];
    let tampered = [
        (
            "a part that was never uploaded",
            json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 4, "ETag": "e4"}]),
        ),
        (
            "an ETag that is not the stored part's",
            json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 2, "ETag": "forged"}]),
        ),
        (
            "the same part twice (to count it twice)",
            json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 1, "ETag": "e1"}]),
        ),
    ];
    // A fresh upload for each row: a refused completion aborts it.
    for (label, parts) in tampered {
        let (s, store) = state();
        let (key, id) = upload_with_parts(&s, &store, stored.clone()).await;
        let tampered = row(label, complete(&id, &key, parts), 400, "InvalidPart");
        refused(&s, &tampered.saying("aborted")).await;
        assert_aborted(&store, &key, &id, label);
    }

    // A list naming parts 1 and 3 (quotes as the browser read them or not): S3 gets exactly
    // those, with its own ETags and their total size.
    let (s, store) = state();
    let (key, id) = upload_with_parts(&s, &store, stored).await;
    let parts = json!([{"PartNumber": 3, "ETag": "e3"}, {"PartNumber": 1, "ETag": "\"e1\""}]);
    expect(&s, &complete(&id, &key, parts), 200).await;
    let calls = store.calls();
    assert!(
        calls.contains(&format!("complete {key} {id} [1:\"e1\",3:\"e3\"] 600")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn part_sizes_are_signed_when_given() {
    let (s, _) = state();
    let (key, id) = start_multipart(&s, json!({"type": "image/jpeg"})).await;
    let one = expect(
        &s,
        &get(format!("/s3/multipart/{id}/1?key={key}&size=600")),
        200,
    )
    .await;
    assert_eq!(signed_headers(&one["url"]), "content-length%3Bhost");
    let plain = expect(&s, &get(format!("/s3/multipart/{id}/1?key={key}")), 200).await;
    assert_eq!(signed_headers(&plain["url"]), "host");
    let batch = |sizes: &str| {
        get(format!(
            "/s3/multipart/{id}/batch?key={key}&partNumbers=1,2&{sizes}"
        ))
    };
    let urls = expect(&s, &batch("sizes=600,400"), 200).await;
    for n in ["1", "2"] {
        assert_eq!(
            signed_headers(&urls["presignedUrls"][n]),
            "content-length%3Bhost"
        );
    }
    refuses(
        &s,
        [
            row(
                "one size for two parts",
                batch("sizes=600"),
                400,
                "InvalidPartSize",
            ),
            row(
                "a size that is no number",
                batch("sizes=600,x"),
                400,
                "InvalidPartSize",
            ),
            row(
                "a size over the maximum",
                batch("sizes=600,1001"),
                400,
                "InvalidPartSize",
            ),
            row("a size of 0", batch("sizes=0,5"), 400, "InvalidPartSize"),
        ],
    )
    .await;
}

#[tokio::test]
async fn uppy_metadata_is_dropped_not_refused() {
    let (s, store) = state();
    start_multipart(
        &s,
        json!({
            "filename": "clip.jpg", "type": "image/jpeg",
            "metadata": {"name": "clip.jpg", "type": "image/jpeg", "relativePath": null, "size": 12, "user-id": "u1"}
        }),
    )
    .await;
    let call = store.calls()[0].clone();
    assert!(
        call.starts_with("create uploads/") && call.ends_with(r#"image/jpeg [("user-id", "u1")]"#),
        "only the allowed key with a string value is kept: {call}"
    );
}

#[tokio::test]
async fn multipart_refuses_foreign_keys_bad_parts_and_unknown_uploads() {
    let (s, _) = state();
    refuses(
        &s,
        [
            row(
                "a key outside the prefix",
                get("/s3/multipart/x/1?key=other/secret.jpg"),
                400,
                "InvalidKey",
            ),
            row(
                "a key climbing out of the prefix",
                get("/s3/multipart/x/1?key=uploads/../x.jpg"),
                400,
                "InvalidKey",
            ),
            row(
                "part number 0",
                get("/s3/multipart/x/0?key=uploads/abc.jpg"),
                400,
                "InvalidPartNumber",
            ),
            row("no key", get("/s3/multipart/x/1"), 400, "MissingKey"),
            row(
                "listing an upload that does not exist",
                get("/s3/multipart/nope?key=uploads/abc.jpg"),
                404,
                "NoSuchUpload",
            ),
            row(
                "a multipart upload of a type not allowed",
                create(json!({"type": "video/mp4"})),
                400,
                "ContentTypeNotAllowed",
            ),
        ],
    )
    .await;
    let answer = ask(&s, &delete("/s3/multipart/nope?key=uploads/abc.jpg")).await;
    assert_eq!(answer.status, StatusCode::OK, "abort is idempotent");
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn failing_credentials_are_503_without_internals() {
    let s = state_with(Arc::new(Failing), Arc::new(FakeStore::default()));
    refuses(
        &s,
        [
            row(
                "readiness without credentials",
                get("/readyz"),
                503,
                "Unavailable",
            )
            .hiding(SECRETS),
            row(
                "a URL without credentials",
                upload(json!({"contentType": "image/jpeg"})),
                503,
                "Unavailable",
            )
            .hiding(SECRETS),
        ],
    )
    .await;
    let answer = ask(&s, &get("/healthz")).await;
    assert_eq!(answer.status, StatusCode::OK);
}

/// A store whose every call fails the way S3 can fail us: access refused, or broken.
struct BrokenStore(fn(String) -> StoreError);

#[async_trait]
impl ObjectStore for BrokenStore {
    async fn create_multipart(
        &self,
        _k: &str,
        _c: &str,
        _m: &[(String, String)],
        _a: Option<&str>,
        _t: Option<&str>,
    ) -> Result<String, StoreError> {
        Err((self.0)(
            "secret internal detail: arn:aws:iam::123456789012:role/x".into(),
        ))
    }
    async fn list_parts(&self, _k: &str, _u: &str) -> Result<Vec<Part>, StoreError> {
        Err((self.0)("secret internal detail: endpoint 10.0.0.7".into()))
    }
    async fn complete_multipart(
        &self,
        _k: &str,
        _u: &str,
        _p: &[Part],
        _t: i64,
    ) -> Result<(), StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn abort_multipart(&self, _k: &str, _u: &str) -> Result<(), StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn head(&self, _k: &str) -> Result<Option<ObjectInfo>, StoreError> {
        Err((self.0)("secret internal detail: arn:aws:s3:::b".into()))
    }
    async fn read_start(&self, _k: &str, _i: &ObjectInfo, _l: u64) -> Result<Vec<u8>, StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn promote(
        &self,
        _f: &str,
        _i: &ObjectInfo,
        _t: &str,
        _p: &Promotion<'_>,
    ) -> Result<(), StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn set_state(&self, _k: &str, _s: &str) -> Result<(), StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn delete(&self, _k: &str) -> Result<(), StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
    async fn count_open_multipart(&self, _p: &str, _e: usize) -> Result<usize, StoreError> {
        Err((self.0)("secret internal detail".into()))
    }
}

#[tokio::test]
async fn store_failures_are_500_without_internals() {
    let kinds = [
        (
            "refusing access",
            StoreError::Denied as fn(String) -> StoreError,
        ),
        ("failing", StoreError::Other),
    ];
    for (how, fail) in kinds {
        let s = state_over(config(), Arc::new(BrokenStore(fail)));
        let failed = |what: &str, req: Req| {
            row(format!("{what}, S3 {how}"), req, 500, "InternalError").hiding(SECRETS)
        };
        refuses(
            &s,
            [
                failed(
                    "starting a multipart upload",
                    create(json!({"type": "image/jpeg"})),
                ),
                failed("listing parts", get("/s3/multipart/u1?key=uploads/a.jpg")),
                failed("aborting", delete("/s3/multipart/u1?key=uploads/a.jpg")),
            ],
        )
        .await;
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_outcome() {
    let (s, _) = state();
    for req in [
        upload(json!({"contentType": "image/jpeg"})),
        upload(json!({"contentType": "text/plain"})),
        get("/uploads?size=10"),
    ] {
        ask(&s, &req).await;
    }
    let text = expect(&s, &get("/metrics"), 200).await;
    let text = text.as_str().unwrap();
    for line in [
        "uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"Ok\"} 1",
        "uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"ClientError\"} 1",
        "uploadbucket_signer_requests_total{route=\"LegacyUploads\",outcome=\"Ok\"} 1",
        "uploadbucket_signer_request_duration_seconds_count{route=\"Uploads\"} 2",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
}

// ---------------------------------------------------------------- verification

const JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
];
const HTML: &[u8] = b"<!doctype html><script>alert(document.cookie)</script>";

#[tokio::test]
async fn every_url_of_a_verifying_bucket_signs_the_pending_tag() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    let put = expect(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5})),
        201,
    )
    .await;
    assert_eq!(
        put["headers"]["x-amz-tagging"],
        "uploadbucket-state=pending"
    );
    let signed = signed_headers(&put["uploadURL"]);
    assert!(signed.contains("x-amz-tagging"), "{signed}");
    for req in forms() {
        let form = ask(&s, &req).await.body;
        let tagging = form["fields"]["tagging"]
            .as_str()
            .unwrap_or_else(|| panic!("{form}"));
        assert!(
            tagging.contains("<Key>uploadbucket-state</Key><Value>pending</Value>"),
            "{tagging}"
        );
        policy_with(&form["fields"], json!({ "tagging": tagging }));
    }
    ask(&s, &create(json!({"type": "image/jpeg"}))).await;
    let last = store.calls().last().unwrap().clone();
    assert!(
        last.contains("tagging=uploadbucket-state=pending"),
        "{last}"
    );
    // The seed-compatible GET cannot carry the tag: refused, saying what to use.
    refused(
        &s,
        &row(
            "the legacy GET of a verifying bucket",
            get("/uploads?size=5"),
            400,
            "VerificationNeedsPost",
        ),
    )
    .await;
}

#[tokio::test]
async fn verify_promotes_true_bytes_and_removes_disguised_ones() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    // URLs of a verifying signer name the incoming area.
    let put = ask(
        &s,
        &upload(json!({"contentType": "image/jpeg", "size": 5, "filename": "x.html"})),
    )
    .await
    .body;
    let key = put["key"].as_str().unwrap();
    assert!(
        key.starts_with("uploads/incoming/") && key.ends_with(".jpg"),
        "{put}"
    );

    store.put("uploads/incoming/a.jpg", "image/jpeg", JPEG);
    let body = expect(&s, &verify("uploads/incoming/a.jpg"), 200).await;
    assert_eq!(body["key"], "uploads/verified/a.jpg");
    assert_eq!(body["uploadKey"], "uploads/incoming/a.jpg");
    assert_eq!(body["detectedType"], "image/jpeg");
    assert_eq!(body["size"], JPEG.len());
    assert_eq!(body["state"], "verified");
    assert_eq!(
        store.state_of("uploads/verified/a.jpg"),
        Some(Some("verified".into()))
    );
    assert_eq!(store.bytes_of("uploads/verified/a.jpg").unwrap(), JPEG);
    assert_eq!(store.state_of("uploads/incoming/a.jpg"), None, "moved");
    let calls = store.calls();
    // Only the first bytes are read, and the copy's headers are the signer's.
    assert!(calls.contains(&"read uploads/incoming/a.jpg 8192".to_owned()));
    assert!(
        calls.contains(
            &"copy uploads/incoming/a.jpg uploads/verified/a.jpg image/jpeg None None".to_owned()
        ),
        "{calls:?}"
    );
    // Asked again (an answer lost, or by the verified key): the same verified object.
    for key in ["uploads/incoming/a.jpg", "uploads/verified/a.jpg"] {
        let again = expect(&s, &verify(key), 200).await;
        assert_eq!(again["key"], "uploads/verified/a.jpg");
    }
    // The form posted again after verify: its new bytes are never verified, and the
    // verified object stays as it was.
    store.put("uploads/incoming/a.jpg", "image/jpeg", HTML);
    let again = expect(&s, &verify("uploads/incoming/a.jpg"), 200).await;
    assert_eq!(again["key"], "uploads/verified/a.jpg");
    assert_eq!(store.bytes_of("uploads/verified/a.jpg").unwrap(), JPEG);
    assert_eq!(store.state_of("uploads/incoming/a.jpg"), None);

    store.put("uploads/incoming/b.jpg", "image/jpeg", HTML);
    let disguised = row(
        "markup stored as a JPEG",
        verify("uploads/incoming/b.jpg"),
        422,
        "ContentMismatch",
    );
    refused(&s, &disguised.saying("image/jpeg").saying("deleted")).await;
    assert_eq!(store.state_of("uploads/incoming/b.jpg"), None, "deleted");
    assert_eq!(store.state_of("uploads/verified/b.jpg"), None);

    // Quarantine instead of delete: kept where it was, never in the verified area.
    let s = verifying(store.clone(), true);
    store.put("uploads/incoming/c.jpg", "image/jpeg", HTML);
    let disguised = row(
        "markup stored as a JPEG, quarantining",
        verify("uploads/incoming/c.jpg"),
        422,
        "ContentMismatch",
    );
    refused(&s, &disguised.saying("quarantined")).await;
    assert_eq!(
        store.state_of("uploads/incoming/c.jpg"),
        Some(Some("quarantined".into()))
    );
    assert_eq!(store.state_of("uploads/verified/c.jpg"), None);
}

/// A verifying signer over a store that holds JPEG at `uploads/incoming/<name>`; when
/// `lax`, its copies ignore their precondition (as RGW does with AWS's header name).
fn verifying_jpeg(name: &str, lax: bool) -> (AppState, Arc<FakeStore>) {
    let store = Arc::new(FakeStore::default());
    store
        .lax_copy
        .store(lax, std::sync::atomic::Ordering::Relaxed);
    store.put(&format!("uploads/incoming/{name}"), "image/jpeg", JPEG);
    (verifying(store.clone(), false), store)
}

/// A store that ignores the copy's precondition copies the replacement: verify reads the copy
/// back, finds other bytes, removes it, and verifies nothing.
#[tokio::test]
async fn a_copy_of_other_bytes_is_caught_and_removed() {
    let (s, store) = verifying_jpeg("l.jpg", true);
    let same_size: &[u8] = b"<svg onload>";
    assert_eq!(same_size.len(), JPEG.len());
    store.replace_after("read", "uploads/incoming/l.jpg", "image/jpeg", same_size);
    refused(
        &s,
        &row(
            "a copy of other bytes",
            verify("uploads/incoming/l.jpg"),
            409,
            "UploadChanged",
        ),
    )
    .await;
    assert_eq!(store.state_of("uploads/verified/l.jpg"), None, "removed");
}

/// What is in the verified area after a failed read-back stays when verify accepts it (as
/// another signer's copy of the same upload would be): only unaccepted bytes are removed.
#[tokio::test]
async fn a_failed_read_back_keeps_accepted_bytes() {
    let (s, store) = verifying_jpeg("k.jpg", true);
    let mut other = JPEG.to_vec();
    *other.last_mut().unwrap() ^= 1;
    store.replace_after("read", "uploads/incoming/k.jpg", "image/jpeg", &other);
    refused(
        &s,
        &row(
            "a copy of other, accepted bytes",
            verify("uploads/incoming/k.jpg"),
            409,
            "UploadChanged",
        ),
    )
    .await;
    assert_eq!(store.bytes_of("uploads/verified/k.jpg").unwrap(), other);
}

/// Another verify of the same upload (another signer) copies it first: this one's copy is
/// refused (create-only), and it answers the verified object that is there, unchanged.
#[tokio::test]
async fn a_second_verify_of_one_upload_answers_the_first_copy() {
    let (s, store) = verifying_jpeg("t.jpg", false);
    let mut first = JPEG.to_vec();
    *first.last_mut().unwrap() ^= 1;
    store.write_after(
        "read",
        "uploads/incoming/t.jpg",
        "uploads/verified/t.jpg",
        "image/jpeg",
        &first,
    );
    let body = expect(&s, &verify("uploads/incoming/t.jpg"), 200).await;
    assert_eq!(body["key"], "uploads/verified/t.jpg");
    assert_eq!(store.bytes_of("uploads/verified/t.jpg").unwrap(), first);
}

/// The end user replaces the upload while verify works on it: after verify's HEAD (the read
/// then fails its If-Match) or after its read (the copy fails its precondition). Either way
/// nothing is verified, and the answer says to try again.
#[tokio::test]
async fn a_replacement_racing_verify_is_never_verified() {
    // A fresh store for each row: the race is armed once.
    for after in ["head", "read"] {
        let (s, store) = verifying_jpeg("r.jpg", false);
        store.replace_after(after, "uploads/incoming/r.jpg", "image/jpeg", HTML);
        let label = format!("a replacement after verify's {after}");
        refused(
            &s,
            &row(
                &label,
                verify("uploads/incoming/r.jpg"),
                409,
                "UploadChanged",
            ),
        )
        .await;
        assert_eq!(store.state_of("uploads/verified/r.jpg"), None, "{label}");
    }
}

#[tokio::test]
async fn verify_refuses_bad_requests_naming_what_is_wrong() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    refuses(
        &s,
        [
            row(
                "no key",
                post("/uploads/verify", json!({})),
                400,
                "MissingKey",
            ),
            row(
                "a key outside the prefix",
                verify("elsewhere/a.jpg"),
                400,
                "InvalidKey",
            ),
            row(
                "a key climbing out of the prefix",
                verify("uploads/../x.jpg"),
                400,
                "InvalidKey",
            ),
            row(
                "an incoming key holding nothing",
                verify("uploads/incoming/none.jpg"),
                404,
                "NoSuchKey",
            ),
            row(
                "a verified key holding nothing",
                verify("uploads/verified/none.jpg"),
                404,
                "NoSuchKey",
            ),
            // Outside the two areas: not a key a verifying signer issues.
            row(
                "a key in neither area",
                verify("uploads/a.jpg"),
                400,
                "InvalidKey",
            ),
            row(
                "an unknown field",
                post(
                    "/uploads/verify",
                    json!({"key": "uploads/incoming/a.jpg", "extra": 1}),
                ),
                400,
                "InvalidJson",
            ),
        ],
    )
    .await;
    // Nothing was deleted or tagged for any of them.
    let calls = store.calls();
    assert!(calls.iter().all(|c| c.starts_with("head")), "{calls:?}");
    // A bucket without verification says so.
    let (s, _) = state();
    refused(
        &s,
        &row(
            "verify on a bucket that does not verify",
            verify("uploads/a.jpg"),
            409,
            "VerificationDisabled",
        ),
    )
    .await;
    // A broken store: 500 without internals.
    let s = verifying(Arc::new(BrokenStore(StoreError::Denied)), false);
    let broken = row(
        "verify over a store refusing access",
        verify("uploads/incoming/a.jpg"),
        500,
        "InternalError",
    );
    refused(&s, &broken.hiding(SECRETS)).await;
}

// ---------------------------------------------------------------- owners and limits

#[tokio::test]
async fn owners_get_their_own_folder_and_only_they_may_continue() {
    let (s, store) = state();
    // Keys go in the owner's folder, on every route that makes keys.
    let put = expect(&s, &upload_by("u1"), 201).await;
    assert!(
        put["key"].as_str().unwrap().starts_with("uploads/u1/"),
        "{put}"
    );
    let form = get("/s3/params?filename=a.jpg&type=image/jpeg&owner=u1");
    let form = expect(&s, &form, 200).await;
    assert!(
        form["key"].as_str().unwrap().starts_with("uploads/u1/"),
        "{form}"
    );
    let (key, id) = start_multipart(&s, json!({"type": "image/jpeg", "owner": "u1"})).await;
    assert!(key.starts_with("uploads/u1/"), "{key}");
    store.set_parts(&id, vec![part(1, 5, "\"e1\"")]);

    // Every later call must name the same owner: another one, or none, is 403.
    let calls = |owner: &str| {
        let o = if owner.is_empty() {
            String::new()
        } else {
            format!("&owner={owner}")
        };
        let parts = json!([{"PartNumber": 1, "ETag": "\"e1\""}]);
        [
            (
                "signing a part",
                get(format!("/s3/multipart/{id}/1?key={key}{o}")),
            ),
            (
                "signing parts",
                get(format!(
                    "/s3/multipart/{id}/batch?key={key}&partNumbers=1{o}"
                )),
            ),
            (
                "listing parts",
                get(format!("/s3/multipart/{id}?key={key}{o}")),
            ),
            ("completing", complete(&id, &format!("{key}{o}"), parts)),
            (
                "aborting",
                delete(format!("/s3/multipart/{id}?key={key}{o}")),
            ),
        ]
    };
    let mut table = Vec::new();
    for (who, owner) in [("another owner", "u2"), ("no owner", "")] {
        for (what, req) in calls(owner) {
            table.push(row(
                format!("{what}, naming {who}"),
                req,
                403,
                "OwnerMismatch",
            ));
        }
    }
    // A key without an owner may not be claimed by one.
    let claimed = get("/s3/multipart/x/1?key=uploads/abc.jpg&owner=u1");
    table.push(row(
        "claiming a key without an owner",
        claimed,
        403,
        "OwnerMismatch",
    ));
    refuses(&s, table).await;

    let before = store.calls().len();
    for (what, req) in calls("u1") {
        let answer = ask(&s, &req).await;
        assert!(
            answer.status.is_success(),
            "{what} ({req}): {}",
            answer.body
        );
    }
    assert!(store.calls().len() > before, "the owner's calls reached S3");
}

#[tokio::test]
async fn owners_are_checked_and_may_be_required() {
    let (s, _) = state();
    let long = "x".repeat(65);
    refuses(
        &s,
        [
            row("an empty owner", upload_by(""), 400, "InvalidOwner"),
            row(
                "an owner climbing out of the prefix",
                upload_by("../x"),
                400,
                "InvalidOwner",
            ),
            row(
                "an owner with a slash",
                upload_by("a/b"),
                400,
                "InvalidOwner",
            ),
            row(
                "an owner starting with a dot",
                upload_by(".x"),
                400,
                "InvalidOwner",
            ),
            row("an owner not ASCII", upload_by("é"), 400, "InvalidOwner"),
            row(
                "an owner of 65 characters",
                upload_by(&long),
                400,
                "InvalidOwner",
            ),
        ],
    )
    .await;
    let s = state_from(Config {
        require_owner: true,
        ..config()
    });
    refuses(
        &s,
        [
            row(
                "a PUT URL without an owner",
                upload(json!({"contentType": "image/jpeg", "size": 5})),
                400,
                "OwnerRequired",
            ),
            row(
                "Uppy's form without an owner",
                get("/s3/params?filename=a.jpg&type=image/jpeg"),
                400,
                "OwnerRequired",
            ),
            row(
                "a multipart upload without an owner",
                create(json!({"type": "image/jpeg"})),
                400,
                "OwnerRequired",
            ),
            row(
                "the legacy GET without an owner",
                get("/uploads?size=5"),
                400,
                "OwnerRequired",
            ),
        ],
    )
    .await;
    let answer = ask(&s, &upload_by("u1")).await;
    assert_eq!(answer.status, StatusCode::CREATED);
}

#[tokio::test]
async fn verify_names_the_owner_too() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    store.put("uploads/incoming/u1/a.jpg", "image/jpeg", JPEG);
    let verify_by = |owner: &str| {
        post(
            "/uploads/verify",
            json!({"key": "uploads/incoming/u1/a.jpg", "owner": owner}),
        )
    };
    refuses(
        &s,
        [
            row(
                "verify naming another owner",
                verify_by("u2"),
                403,
                "OwnerMismatch",
            ),
            row(
                "verify naming no owner",
                verify("uploads/incoming/u1/a.jpg"),
                403,
                "OwnerMismatch",
            ),
        ],
    )
    .await;
    assert_eq!(
        store.state_of("uploads/incoming/u1/a.jpg"),
        Some(Some("pending".into())),
        "untouched"
    );
    let answer = ask(&s, &verify_by("u1")).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn starts_are_rate_limited_per_owner_with_retry_after() {
    let s = state_from(Config {
        urls_per_minute: 2,
        ..config()
    });
    let started = async |owner: &str| ask(&s, &upload_by(owner)).await.status;
    assert_eq!(started("u1").await, StatusCode::CREATED);
    assert_eq!(started("u1").await, StatusCode::CREATED);
    let third = row(
        "a third start within the minute",
        upload_by("u1"),
        429,
        "TooManyUploads",
    );
    refused(&s, &third.with_header("retry-after", Some("30"))).await;
    // Another owner has its own quota; u1 gets one again after Retry-After.
    assert_eq!(started("u2").await, StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(started("u1").await, StatusCode::CREATED);
}

#[tokio::test]
async fn open_multipart_uploads_are_capped_per_owner() {
    let store = Arc::new(FakeStore::default());
    let c = Config {
        max_open_multipart: 2,
        ..config()
    };
    let s = state_over(c, store.clone());
    let create_by = |owner: &str| create(json!({"type": "image/jpeg", "owner": owner}));
    for _ in 0..2 {
        expect(&s, &create_by("u1"), 200).await;
    }
    refused(
        &s,
        &row(
            "a third open upload",
            create_by("u1"),
            429,
            "TooManyOpenUploads",
        ),
    )
    .await;
    // Counted under the owner's folder only: u2 may start.
    assert!(store.calls().contains(&"count uploads/u1/".to_owned()));
    let answer = ask(&s, &create_by("u2")).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Eight creates at once for an owner with none open: exactly two get through.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (s, req) = (s.clone(), create_by("u3"));
        burst.spawn(async move { ask(&s, &req).await.status });
    }
    let mut statuses = burst.join_all().await;
    statuses.sort();
    let mut expected = vec![StatusCode::OK; 2];
    expected.extend([StatusCode::TOO_MANY_REQUESTS; 6]);
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn the_bench_ceiling_route_exists_only_when_asked_for() {
    let (s, store) = state();
    let ceiling = post(
        "/bench/ceiling",
        json!({"filename": "cat.jpg", "contentType": "image/jpeg", "size": 1048576}),
    );
    refused(
        &s,
        &row(
            "the bench route, not asked for",
            ceiling.clone(),
            404,
            "NotFound",
        ),
    )
    .await;

    let s = s.with_bench_ceiling(600);
    let answer = expect(&s, &ceiling, 201).await;
    assert_eq!(answer.to_string().len(), 600, "{answer}");
    // It signs nothing and touches no store.
    assert!(store.calls().is_empty());
    assert!(!answer.to_string().contains("X-Amz-Signature"));
}

//! The HTTP API through `app(state)` with `oneshot`: a fake S3 store, fixed credentials and
//! a pinned clock (tests/common). Every answer goes through `call` or `send`, which hold it to
//! the signer's OpenAPI document (docs/reference/signer.openapi.yaml). Real S3 behaviour is
//! covered by tests/tests/sidecar_rgw.rs.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use uploadbucket_sidecar::AppState;
use uploadbucket_sidecar::credentials::{CredentialSource, StaticCredentials};
use uploadbucket_sidecar::presign::{Credentials, Endpoint, Presigner};
use uploadbucket_sidecar::store::{ObjectInfo, ObjectStore, Part, Promotion, StoreError};

use common::*;

struct Failing;

#[async_trait]
impl CredentialSource for Failing {
    async fn credentials(&self) -> Result<Arc<Credentials>, String> {
        Err("secret internal detail: token file /var/run/x unreadable".into())
    }
}

/// Starts a multipart upload and makes the fake store hold `parts` for it; (key, uploadId).
async fn upload_with_parts(s: &AppState, store: &FakeStore, parts: Vec<Part>) -> (String, String) {
    let (_, created) = call(
        s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["uploadId"].as_str().unwrap().to_owned();
    store.uploads.lock().unwrap().get_mut(&id).unwrap().1 = parts;
    (key, id)
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url.split_once('?')?
        .1
        .split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_owned))
}

#[tokio::test]
async fn put_url_signs_type_and_size_under_the_prefix() {
    let (s, _) = state();
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"filename": "../../etc/cat.JPG", "contentType": "image/jpeg", "size": 999})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
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
        query_param(url, "X-Amz-SignedHeaders").as_deref(),
        Some("content-length%3Bcontent-type%3Bhost%3Bif-none-match")
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

#[tokio::test]
async fn expiry_is_cut_to_the_credentials_lifetime() {
    let store = Arc::new(FakeStore::default());
    let s = state_with(
        Arc::new(StaticCredentials::new(creds(Some(
            now() + Duration::from_secs(100),
        )))),
        store,
    );
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/png", "size": 10})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
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
    let cases = [
        (
            json!({"contentType": "application/pdf"}),
            StatusCode::BAD_REQUEST,
            "ContentTypeNotAllowed",
            "image/jpeg, image/*",
        ),
        (
            json!({}),
            StatusCode::BAD_REQUEST,
            "MissingContentType",
            "contentType is required",
        ),
        (
            json!({"contentType": "jpeg"}),
            StatusCode::BAD_REQUEST,
            "InvalidContentType",
            "contentType",
        ),
        (
            json!({"contentType": "image/jpeg", "size": 1001}),
            StatusCode::PAYLOAD_TOO_LARGE,
            "TooLarge",
            "maximum of 1000",
        ),
        (
            json!({"contentType": "image/jpeg", "size": 0}),
            StatusCode::BAD_REQUEST,
            "InvalidSize",
            "size",
        ),
        (
            json!({"contentType": "image/jpeg", "content_type": "x"}),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            "content_type",
        ),
        (
            json!({"contentType": "image/jpeg", "method": "GET"}),
            StatusCode::BAD_REQUEST,
            "InvalidMethod",
            "PUT, POST",
        ),
        (
            json!({"contentType": "image/jpeg", "metadata": {"owner": "x"}}),
            StatusCode::BAD_REQUEST,
            "MetadataNotAllowed",
            "user-id",
        ),
        (
            json!({"contentType": "image/jpeg", "metadata": {"user-id": "é"}}),
            StatusCode::BAD_REQUEST,
            "InvalidMetadata",
            "ASCII",
        ),
        (
            json!({"contentType": "image/jpeg", "size": "big"}),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            "size: invalid type",
        ),
        (
            json!({"contentType": "image/jpeg", "metadata": {"user-id": 7}}),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
            "metadata.user-id: invalid type",
        ),
    ];
    for (req, status, code, needle) in cases {
        let (got, body) = call(&s, "POST", "/uploads", Some(req.clone())).await;
        assert_eq!(got, status, "{req} -> {body}");
        assert_eq!(body["error"]["code"], code, "{req} -> {body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{req}: message {msg:?} lacks {needle:?}"
        );
    }
    // Not JSON at all.
    let resp = send(
        &s,
        Request::post("/uploads")
            .header("content-type", "text/plain")
            .body(Body::from("hi"))
            .unwrap(),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = call(&s, "GET", "/nope", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NotFound"))
    );
}

#[tokio::test]
async fn post_form_carries_the_size_range_and_exact_key() {
    let (s, _) = state();
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/webp", "method": "POST", "metadata": {"user-id": "42"}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["url"], "https://photos.s3.eu-west-1.amazonaws.com/");
    assert_eq!(body["maxSizeBytes"], 1000);
    let fields = &body["fields"];
    assert_eq!(fields["key"], body["key"]);
    assert_eq!(fields["Content-Type"], "image/webp");
    assert_eq!(fields["x-amz-meta-user-id"], "42");
    assert_eq!(fields["x-amz-security-token"], "session");
    use base64::Engine as _;
    let policy: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(fields["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let conds = policy["conditions"].as_array().unwrap();
    assert!(
        conds.contains(&json!(["content-length-range", 1, 1000])),
        "{policy}"
    );
    assert!(conds.contains(&json!({"key": body["key"]})), "{policy}");
    assert_eq!(policy["expiration"], "2023-11-14T22:18:20Z");
}

#[tokio::test]
async fn legacy_lambda_shape_and_uppy_params() {
    use base64::Engine as _;
    let (s, _) = state();
    // No size, no PUT URL: S3 could not hold it to the maximum.
    let (status, body) = call(&s, "GET", "/uploads", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("SizeRequired")),
        "{body}"
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("size"));
    let (status, body) = call(&s, "GET", "/uploads?size=1001", None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = call(&s, "GET", "/uploads?size=600", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
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
    let (status, body) = call(&s, "GET", "/uploads?contentType=text/html&size=5", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ContentTypeNotAllowed"))
    );
    // The bucket may opt into the sample's unsized PUTs.
    let mut open = config();
    open.allow_unsized_put = true;
    let s2 = state_from(open);
    let (status, body) = call(&s2, "GET", "/uploads", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["uploadURL"]
            .as_str()
            .unwrap()
            .contains("X-Amz-SignedHeaders=content-type%3Bhost")
    );

    // Uppy's single upload: always a POST form with the size range, whatever Uppy sends.
    let (status, body) = call(
        &s,
        "GET",
        "/s3/params?filename=a.gif&type=image/gif&metadata[name]=a.gif&metadata[relativePath]=null&metadata[user-id]=u7",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["headers"], json!({}));
    let fields = &body["fields"];
    assert!(fields["key"].as_str().unwrap().ends_with(".gif"));
    assert_eq!(fields["key"], body["key"]);
    assert_eq!(fields["Content-Type"], "image/gif");
    assert_eq!(fields["x-amz-meta-user-id"], "u7", "allowed metadata kept");
    assert!(fields.get("x-amz-meta-name").is_none(), "{fields}");
    let policy: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(fields["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        policy["conditions"].as_array().unwrap().contains(&json!([
            "content-length-range",
            1,
            1000
        ])),
        "{policy}"
    );
}

#[tokio::test]
async fn put_needs_a_size_and_no_method_without_one_gets_a_form() {
    let (s, _) = state();
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/png", "method": "PUT"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("SizeRequired")),
        "{body}"
    );
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/png"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["method"], "POST");
    assert_eq!(body["maxSizeBytes"], 1000);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/png", "size": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["method"], "PUT");
}

#[tokio::test]
async fn client_checksums_are_signed_into_put_urls() {
    let (s, _) = state();
    let sha = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    let md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5, "checksumSHA256": sha, "contentMD5": md5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        query_param(body["uploadURL"].as_str().unwrap(), "X-Amz-SignedHeaders").as_deref(),
        Some(
            "content-length%3Bcontent-md5%3Bcontent-type%3Bhost%3Bif-none-match%3Bx-amz-checksum-sha256"
        )
    );
    assert_eq!(body["headers"]["x-amz-checksum-sha256"], sha);
    assert_eq!(body["headers"]["content-md5"], md5);

    for (field, value) in [
        ("checksumSHA256", "not base64!"),
        ("checksumSHA256", md5),
        ("contentMD5", sha),
    ] {
        let (status, body) = call(
            &s,
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg", "size": 5, field: value})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidChecksum")),
            "{field}={value}: {body}"
        );
        assert!(body["error"]["message"].as_str().unwrap().contains(field));
    }
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "method": "POST", "checksumSHA256": sha})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ChecksumNeedsPut")),
        "{body}"
    );
}

#[tokio::test]
async fn bucket_owner_full_control_is_signed_into_every_upload() {
    use base64::Engine as _;
    let mut rgw = config();
    rgw.bucket_owner_full_control = true;
    let store = Arc::new(FakeStore::default());
    let s = AppState::new(
        rgw,
        Presigner::new("photos", "eu-west-1", Endpoint::aws("eu-west-1")),
        Arc::new(StaticCredentials::new(creds(None))),
        store.clone(),
    )
    .with_clock(now);
    let acl = "bucket-owner-full-control";
    // PUT: a header the client must send, signed.
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["headers"]["x-amz-acl"], acl, "{body}");
    let signed = query_param(body["uploadURL"].as_str().unwrap(), "X-Amz-SignedHeaders").unwrap();
    assert!(signed.contains("x-amz-acl"), "{signed}");
    // POST form (ours and Uppy's): a field pinned by the policy.
    for (method, uri, req) in [
        (
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg"})),
        ),
        ("GET", "/s3/params?filename=a.jpg&type=image/jpeg", None),
    ] {
        let (status, form) = call(&s, method, uri, req).await;
        assert_eq!(status.as_u16() / 100, 2, "{form}");
        assert_eq!(form["fields"]["acl"], acl, "{uri}: {form}");
        let policy: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(form["fields"]["policy"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            policy["conditions"]
                .as_array()
                .unwrap()
                .contains(&json!({"acl": acl})),
            "{policy}"
        );
    }
    // Multipart: CreateMultipartUpload carries it.
    let (status, _) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let calls = store.calls.lock().unwrap().clone();
    assert!(
        calls
            .last()
            .unwrap()
            .ends_with(" acl=bucket-owner-full-control"),
        "{calls:?}"
    );
    // Off (the default, AWS): none of it.
    let (s, store) = state();
    let (_, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5})),
    )
    .await;
    assert_eq!(body["headers"].get("x-amz-acl"), None, "{body}");
    call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg"})),
    )
    .await;
    assert!(!store.calls.lock().unwrap().last().unwrap().contains("acl="));
}

#[tokio::test]
async fn public_buckets_get_attachment_for_anything_but_media() {
    use base64::Engine as _;
    let mut public = config();
    public.public_read = true;
    public.allowed_content_types = vec!["image/*".into(), "application/pdf".into()];
    let s = state_from(public);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "application/pdf", "size": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["headers"]["content-disposition"], "attachment");
    assert!(
        query_param(body["uploadURL"].as_str().unwrap(), "X-Amz-SignedHeaders")
            .unwrap()
            .contains("content-disposition")
    );
    let (_, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/png", "size": 5})),
    )
    .await;
    assert_eq!(body["headers"].get("content-disposition"), None, "{body}");
    let (_, form) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "application/pdf", "method": "POST"})),
    )
    .await;
    assert_eq!(form["fields"]["Content-Disposition"], "attachment");
    let policy: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(form["fields"]["policy"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        policy["conditions"]
            .as_array()
            .unwrap()
            .contains(&json!({"Content-Disposition": "attachment"})),
        "{policy}"
    );
    // A private bucket: no disposition at all.
    let (s, _) = state();
    let (_, body) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5})),
    )
    .await;
    assert_eq!(body["headers"].get("content-disposition"), None, "{body}");
}

/// The seed-compatible GET cannot make its client send `Content-Disposition`: on a public
/// bucket it refuses the types that would need it, and still signs media.
#[tokio::test]
async fn the_legacy_get_refuses_what_a_public_bucket_must_store_as_attachment() {
    let mut public = config();
    public.public_read = true;
    public.allowed_content_types = vec!["image/*".into(), "application/pdf".into()];
    let s = state_from(public);
    let (status, body) = call(
        &s,
        "GET",
        "/uploads?contentType=application/pdf&size=5",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("DispositionNeedsPost")),
        "{body}"
    );
    let (status, body) = call(&s, "GET", "/uploads?contentType=image/png&size=5", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["uploadURL"].is_string());
}

#[tokio::test]
async fn a_wildcard_never_admits_script_capable_types() {
    let (s, _) = state();
    for ct in ["image/svg+xml", "image/SVG+XML"] {
        let (status, body) = call(
            &s,
            "POST",
            "/uploads",
            Some(json!({"contentType": ct, "size": 5})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("ContentTypeNotAllowed")),
            "{ct}: {body}"
        );
    }
    let mut exact = config();
    exact.allowed_content_types = vec!["image/*".into(), "image/svg+xml".into()];
    let s2 = state_from(exact);
    let (status, _) = call(
        &s2,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/svg+xml", "size": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "listed exactly, it is allowed");
}

#[tokio::test]
async fn multipart_cycle_in_uppy_shapes() {
    let (s, store) = state();
    let (status, created) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"filename": "big.jpg", "type": "image/jpeg", "metadata": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["uploadId"].as_str().unwrap().to_owned();
    assert_eq!(
        store.calls.lock().unwrap()[0],
        format!("create {key} image/jpeg")
    );

    let (status, one) = call(&s, "GET", &format!("/s3/multipart/{id}/2?key={key}"), None).await;
    assert_eq!(status, StatusCode::OK, "{one}");
    let url = one["url"].as_str().unwrap();
    assert!(
        url.contains("x-id=UploadPart&partNumber=2&uploadId=upload-1&"),
        "{url}"
    );
    assert_eq!(one["expires"], 300);

    let (status, batch) = call(
        &s,
        "GET",
        &format!("/uploads/multipart/{id}/batch?key={key}&partNumbers=1,2,3"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    assert_eq!(batch["presignedUrls"].as_object().unwrap().len(), 3);
    assert!(
        batch["presignedUrls"]["3"]
            .as_str()
            .unwrap()
            .contains("partNumber=3")
    );

    // Parts "uploaded" by the client, as S3 would list them.
    store.uploads.lock().unwrap().get_mut(&id).unwrap().1 = vec![
        Part {
            number: 1,
            size: 600,
            etag: "\"a\"".into(),
        },
        Part {
            number: 2,
            size: 300,
            etag: "\"b\"".into(),
        },
    ];
    let (status, parts) = call(&s, "GET", &format!("/s3/multipart/{id}?key={key}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        parts,
        json!([{"PartNumber": 1, "Size": 600, "ETag": "\"a\""}, {"PartNumber": 2, "Size": 300, "ETag": "\"b\""}])
    );

    let (status, done) = call(
        &s,
        "POST",
        &format!("/s3/multipart/{id}/complete?key={key}"),
        Some(json!({"parts": [{"PartNumber": 2, "ETag": "\"b\""}, {"PartNumber": 1, "ETag": "\"a\""}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(
        done["location"],
        format!("https://photos.s3.eu-west-1.amazonaws.com/{key}")
    );
    assert_eq!(done["key"], key.as_str());
}

#[tokio::test]
async fn multipart_over_the_limit_is_aborted_at_complete() {
    let (s, store) = state();
    let (key, id) = upload_with_parts(
        &s,
        &store,
        vec![
            Part {
                number: 1,
                size: 800,
                etag: "a".into(),
            },
            Part {
                number: 2,
                size: 800,
                etag: "b".into(),
            },
        ],
    )
    .await;
    let (status, body) = call(
        &s,
        "POST",
        &format!("/s3/multipart/{id}/complete?key={key}"),
        Some(json!({"parts": [{"PartNumber": 1, "ETag": "a"}, {"PartNumber": 2, "ETag": "b"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1600 bytes")
    );
    let calls = store.calls.lock().unwrap().clone();
    assert!(calls.contains(&format!("abort {key} {id}")), "{calls:?}");
    assert!(
        !calls.iter().any(|c| c.starts_with("complete")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn complete_sends_only_what_s3_stored_and_aborts_on_a_tampered_list() {
    let stored = vec![
        Part {
            number: 1,
            size: 400,
            etag: "\"e1\"".into(),
        },
        Part {
            number: 2,
            size: 300,
            etag: "\"e2\"".into(),
        },
        Part {
            number: 3,
            size: 200,
            etag: "\"e3\"".into(),
        },
    ];
    let tampered = [
        // a part that was never uploaded
        json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 4, "ETag": "e4"}]),
        // an ETag that is not the stored part's
        json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 2, "ETag": "forged"}]),
        // the same part twice (to count it twice)
        json!([{"PartNumber": 1, "ETag": "e1"}, {"PartNumber": 1, "ETag": "e1"}]),
    ];
    for parts in tampered {
        let (s, store) = state();
        let (key, id) = upload_with_parts(&s, &store, stored.clone()).await;
        let (status, body) = call(
            &s,
            "POST",
            &format!("/s3/multipart/{id}/complete?key={key}"),
            Some(json!({ "parts": parts })),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidPart")),
            "{parts}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("aborted")
        );
        let calls = store.calls.lock().unwrap().clone();
        assert!(calls.contains(&format!("abort {key} {id}")), "{calls:?}");
        assert!(
            !calls.iter().any(|c| c.starts_with("complete")),
            "{calls:?}"
        );
    }

    // A list naming parts 1 and 3 (quotes as the browser read them or not): S3 gets exactly
    // those, with its own ETags and their total size.
    let (s, store) = state();
    let (key, id) = upload_with_parts(&s, &store, stored.clone()).await;
    let (status, body) = call(
        &s,
        "POST",
        &format!("/s3/multipart/{id}/complete?key={key}"),
        Some(json!({"parts": [{"PartNumber": 3, "ETag": "e3"}, {"PartNumber": 1, "ETag": "\"e1\""}]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let calls = store.calls.lock().unwrap().clone();
    assert!(
        calls.contains(&format!("complete {key} {id} [1:\"e1\",3:\"e3\"] 600")),
        "{calls:?}"
    );
}

#[tokio::test]
async fn part_sizes_are_signed_when_given() {
    let (s, _) = state();
    let (_, created) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["uploadId"].as_str().unwrap().to_owned();
    let (status, one) = call(
        &s,
        "GET",
        &format!("/s3/multipart/{id}/1?key={key}&size=600"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        query_param(one["url"].as_str().unwrap(), "X-Amz-SignedHeaders").as_deref(),
        Some("content-length%3Bhost")
    );
    let (_, plain) = call(&s, "GET", &format!("/s3/multipart/{id}/1?key={key}"), None).await;
    assert_eq!(
        query_param(plain["url"].as_str().unwrap(), "X-Amz-SignedHeaders").as_deref(),
        Some("host")
    );
    let (status, batch) = call(
        &s,
        "GET",
        &format!("/s3/multipart/{id}/batch?key={key}&partNumbers=1,2&sizes=600,400"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{batch}");
    for n in ["1", "2"] {
        assert!(
            batch["presignedUrls"][n]
                .as_str()
                .unwrap()
                .contains("X-Amz-SignedHeaders=content-length%3Bhost")
        );
    }
    for bad in ["sizes=600", "sizes=600,x", "sizes=600,1001", "sizes=0,5"] {
        let (status, body) = call(
            &s,
            "GET",
            &format!("/s3/multipart/{id}/batch?key={key}&partNumbers=1,2&{bad}"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidPartSize")),
            "{bad}: {body}"
        );
    }
}

#[tokio::test]
async fn uppy_metadata_is_dropped_not_refused() {
    let (s, store) = state();
    let (status, created) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({
            "filename": "clip.jpg", "type": "image/jpeg",
            "metadata": {"name": "clip.jpg", "type": "image/jpeg", "relativePath": null, "size": 12, "user-id": "u1"}
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let call = store.calls.lock().unwrap()[0].clone();
    assert!(
        call.starts_with("create uploads/") && call.ends_with(r#"image/jpeg [("user-id", "u1")]"#),
        "only the allowed key with a string value is kept: {call}"
    );
}

#[tokio::test]
async fn multipart_refuses_foreign_keys_bad_parts_and_unknown_uploads() {
    let (s, _) = state();
    let (status, body) = call(&s, "GET", "/s3/multipart/x/1?key=other/secret.jpg", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidKey"))
    );
    let (status, body) = call(&s, "GET", "/s3/multipart/x/1?key=uploads/../x.jpg", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidKey"))
    );
    let (status, body) = call(&s, "GET", "/s3/multipart/x/0?key=uploads/abc.jpg", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidPartNumber"))
    );
    let (status, body) = call(&s, "GET", "/s3/multipart/x/1", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("MissingKey"))
    );
    let (status, body) = call(&s, "GET", "/s3/multipart/nope?key=uploads/abc.jpg", None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NoSuchUpload"))
    );
    let (status, body) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "video/mp4"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("ContentTypeNotAllowed"))
    );
    let (status, _) = call(&s, "DELETE", "/s3/multipart/nope?key=uploads/abc.jpg", None).await;
    assert_eq!(status, StatusCode::OK, "abort is idempotent");
}

#[tokio::test]
async fn failing_credentials_are_503_without_internals() {
    let s = state_with(Arc::new(Failing), Arc::new(FakeStore::default()));
    for (method, uri, body) in [
        ("GET", "/readyz", None),
        (
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg"})),
        ),
    ] {
        let (status, body) = call(&s, method, uri, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{uri}: {body}");
        assert_eq!(body["error"]["code"], "Unavailable");
        assert!(
            !body.to_string().contains("secret internal detail"),
            "{body}"
        );
    }
    let (status, _) = call(&s, "GET", "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
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
    for fail in [
        StoreError::Denied as fn(String) -> StoreError,
        StoreError::Other,
    ] {
        let s = AppState::new(
            config(),
            Presigner::new("photos", "eu-west-1", Endpoint::aws("eu-west-1")),
            Arc::new(StaticCredentials::new(creds(None))),
            Arc::new(BrokenStore(fail)),
        )
        .with_clock(now);
        for (method, uri, body) in [
            ("POST", "/s3/multipart", Some(json!({"type": "image/jpeg"}))),
            ("GET", "/s3/multipart/u1?key=uploads/a.jpg", None),
            ("DELETE", "/s3/multipart/u1?key=uploads/a.jpg", None),
        ] {
            let (status, body) = call(&s, method, uri, body).await;
            assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{uri}: {body}");
            let text = body.to_string();
            for secret in ["secret", "arn:", "10.0.0.7"] {
                assert!(!text.contains(secret), "{uri}: {text}");
            }
            assert!(body["error"]["code"].is_string(), "{body}");
        }
    }
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_outcome() {
    let (s, _) = state();
    call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg"})),
    )
    .await;
    call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "text/plain"})),
    )
    .await;
    call(&s, "GET", "/uploads?size=10", None).await;
    let (status, text) = call(&s, "GET", "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"Ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "uploadbucket_signer_requests_total{route=\"Uploads\",outcome=\"ClientError\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "uploadbucket_signer_requests_total{route=\"LegacyUploads\",outcome=\"Ok\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("uploadbucket_signer_request_duration_seconds_count{route=\"Uploads\"} 2"),
        "{text}"
    );
}

/// A verifying signer (`uploads.verification.enabled`) over `store`.
fn verifying(store: Arc<dyn ObjectStore>, quarantine: bool) -> AppState {
    let mut c = config();
    c.verify = true;
    c.verify_quarantine = quarantine;
    AppState::new(
        c,
        Presigner::new("photos", "eu-west-1", Endpoint::aws("eu-west-1")),
        Arc::new(StaticCredentials::new(creds(None))),
        store,
    )
    .with_clock(now)
}

const JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F', 0, 1,
];
const HTML: &[u8] = b"<!doctype html><script>alert(document.cookie)</script>";

#[tokio::test]
async fn every_url_of_a_verifying_bucket_signs_the_pending_tag() {
    use base64::Engine as _;
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    let (status, put) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{put}");
    assert_eq!(
        put["headers"]["x-amz-tagging"],
        "uploadbucket-state=pending"
    );
    let signed = query_param(put["uploadURL"].as_str().unwrap(), "X-Amz-SignedHeaders").unwrap();
    assert!(signed.contains("x-amz-tagging"), "{signed}");
    for (method, uri, req) in [
        (
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg"})),
        ),
        ("GET", "/s3/params?filename=a.jpg&type=image/jpeg", None),
    ] {
        let (_, form) = call(&s, method, uri, req).await;
        let tagging = form["fields"]["tagging"]
            .as_str()
            .unwrap_or_else(|| panic!("{form}"));
        assert!(
            tagging.contains("<Key>uploadbucket-state</Key><Value>pending</Value>"),
            "{tagging}"
        );
        let policy: Value = serde_json::from_slice(
            &base64::engine::general_purpose::STANDARD
                .decode(form["fields"]["policy"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(
            policy["conditions"]
                .as_array()
                .unwrap()
                .contains(&json!({"tagging": tagging})),
            "{policy}"
        );
    }
    call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg"})),
    )
    .await;
    let last = store.calls.lock().unwrap().last().unwrap().clone();
    assert!(
        last.contains("tagging=uploadbucket-state=pending"),
        "{last}"
    );
    // The seed-compatible GET cannot carry the tag: refused, saying what to use.
    let (status, body) = call(&s, "GET", "/uploads?size=5", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "VerificationNeedsPost", "{body}");
}

#[tokio::test]
async fn verify_promotes_true_bytes_and_removes_disguised_ones() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    // URLs of a verifying signer name the incoming area.
    let (_, put) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5, "filename": "x.html"})),
    )
    .await;
    let key = put["key"].as_str().unwrap();
    assert!(
        key.starts_with("uploads/incoming/") && key.ends_with(".jpg"),
        "{put}"
    );

    store.put("uploads/incoming/a.jpg", "image/jpeg", JPEG);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/a.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
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
    let calls = store.calls.lock().unwrap().clone();
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
        let (status, again) = call(&s, "POST", "/uploads/verify", Some(json!({"key": key}))).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["key"], "uploads/verified/a.jpg");
    }
    // The form posted again after verify: its new bytes are never verified, and the
    // verified object stays as it was.
    store.put("uploads/incoming/a.jpg", "image/jpeg", HTML);
    let (status, again) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/a.jpg"})),
    )
    .await;
    assert_eq!(
        (status, &again["key"]),
        (StatusCode::OK, &json!("uploads/verified/a.jpg"))
    );
    assert_eq!(store.bytes_of("uploads/verified/a.jpg").unwrap(), JPEG);
    assert_eq!(store.state_of("uploads/incoming/a.jpg"), None);

    store.put("uploads/incoming/b.jpg", "image/jpeg", HTML);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/b.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "ContentMismatch");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("image/jpeg") && message.contains("deleted"),
        "{message}"
    );
    assert_eq!(store.state_of("uploads/incoming/b.jpg"), None, "deleted");
    assert_eq!(store.state_of("uploads/verified/b.jpg"), None);

    // Quarantine instead of delete: kept where it was, never in the verified area.
    let s = verifying(store.clone(), true);
    store.put("uploads/incoming/c.jpg", "image/jpeg", HTML);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/c.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quarantined"),
        "{body}"
    );
    assert_eq!(
        store.state_of("uploads/incoming/c.jpg"),
        Some(Some("quarantined".into()))
    );
    assert_eq!(store.state_of("uploads/verified/c.jpg"), None);
}

/// A store that ignores the copy's precondition copies the replacement: verify reads the copy
/// back, finds other bytes, removes it, and verifies nothing.
#[tokio::test]
async fn a_copy_of_other_bytes_is_caught_and_removed() {
    let store = Arc::new(FakeStore::default());
    store
        .lax_copy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = verifying(store.clone(), false);
    let same_size: &[u8] = b"<svg onload>";
    assert_eq!(same_size.len(), JPEG.len());
    store.put("uploads/incoming/l.jpg", "image/jpeg", JPEG);
    store.replace_after("read", "uploads/incoming/l.jpg", "image/jpeg", same_size);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/l.jpg"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("UploadChanged")),
        "{body}"
    );
    assert_eq!(store.state_of("uploads/verified/l.jpg"), None, "removed");
}

/// What is in the verified area after a failed read-back stays when verify accepts it (as
/// another signer's copy of the same upload would be): only unaccepted bytes are removed.
#[tokio::test]
async fn a_failed_read_back_keeps_accepted_bytes() {
    let store = Arc::new(FakeStore::default());
    store
        .lax_copy
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let s = verifying(store.clone(), false);
    let mut other = JPEG.to_vec();
    *other.last_mut().unwrap() ^= 1;
    store.put("uploads/incoming/k.jpg", "image/jpeg", JPEG);
    store.replace_after("read", "uploads/incoming/k.jpg", "image/jpeg", &other);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/k.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(store.bytes_of("uploads/verified/k.jpg").unwrap(), other);
}

/// Another verify of the same upload (another signer) copies it first: this one's copy is
/// refused (create-only), and it answers the verified object that is there, unchanged.
#[tokio::test]
async fn a_second_verify_of_one_upload_answers_the_first_copy() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    let mut first = JPEG.to_vec();
    *first.last_mut().unwrap() ^= 1;
    store.put("uploads/incoming/t.jpg", "image/jpeg", JPEG);
    store.write_after(
        "read",
        "uploads/incoming/t.jpg",
        "uploads/verified/t.jpg",
        "image/jpeg",
        &first,
    );
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/t.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["key"], "uploads/verified/t.jpg");
    assert_eq!(store.bytes_of("uploads/verified/t.jpg").unwrap(), first);
}

/// The end user replaces the upload while verify works on it: after verify's HEAD (the read
/// then fails its If-Match) or after its read (the copy fails its precondition). Either way
/// nothing is verified, and the answer says to try again.
#[tokio::test]
async fn a_replacement_racing_verify_is_never_verified() {
    for after in ["head", "read"] {
        let store = Arc::new(FakeStore::default());
        let s = verifying(store.clone(), false);
        store.put("uploads/incoming/r.jpg", "image/jpeg", JPEG);
        store.replace_after(after, "uploads/incoming/r.jpg", "image/jpeg", HTML);
        let (status, body) = call(
            &s,
            "POST",
            "/uploads/verify",
            Some(json!({"key": "uploads/incoming/r.jpg"})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("UploadChanged")),
            "{after}: {body}"
        );
        assert_eq!(store.state_of("uploads/verified/r.jpg"), None, "{after}");
    }
}

#[tokio::test]
async fn verify_refuses_bad_requests_naming_what_is_wrong() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    for (body, status, code) in [
        (json!({}), StatusCode::BAD_REQUEST, "MissingKey"),
        (
            json!({"key": "elsewhere/a.jpg"}),
            StatusCode::BAD_REQUEST,
            "InvalidKey",
        ),
        (
            json!({"key": "uploads/../x.jpg"}),
            StatusCode::BAD_REQUEST,
            "InvalidKey",
        ),
        (
            json!({"key": "uploads/incoming/none.jpg"}),
            StatusCode::NOT_FOUND,
            "NoSuchKey",
        ),
        (
            json!({"key": "uploads/verified/none.jpg"}),
            StatusCode::NOT_FOUND,
            "NoSuchKey",
        ),
        // Outside the two areas: not a key a verifying signer issues.
        (
            json!({"key": "uploads/a.jpg"}),
            StatusCode::BAD_REQUEST,
            "InvalidKey",
        ),
        (
            json!({"key": "uploads/incoming/a.jpg", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "InvalidJson",
        ),
    ] {
        let (got, answer) = call(&s, "POST", "/uploads/verify", Some(body.clone())).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    // Nothing was deleted or tagged for any of them.
    assert!(
        store
            .calls
            .lock()
            .unwrap()
            .iter()
            .all(|c| c.starts_with("head")),
        "{:?}",
        store.calls.lock().unwrap()
    );
    // A bucket without verification says so.
    let (s, _) = state();
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/a.jpg"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("VerificationDisabled"))
    );
    // A broken store: 500 without internals.
    let s = verifying(Arc::new(BrokenStore(StoreError::Denied)), false);
    let (status, body) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/a.jpg"})),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !body.to_string().contains("secret") && !body.to_string().contains("arn:"),
        "{body}"
    );
}

#[tokio::test]
async fn owners_get_their_own_folder_and_only_they_may_continue() {
    let (s, store) = state();
    // Keys go in the owner's folder, on every route that makes keys.
    let (_, put) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5, "owner": "u1"})),
    )
    .await;
    assert!(
        put["key"].as_str().unwrap().starts_with("uploads/u1/"),
        "{put}"
    );
    let (_, form) = call(
        &s,
        "GET",
        "/s3/params?filename=a.jpg&type=image/jpeg&owner=u1",
        None,
    )
    .await;
    assert!(
        form["key"].as_str().unwrap().starts_with("uploads/u1/"),
        "{form}"
    );
    let (_, created) = call(
        &s,
        "POST",
        "/s3/multipart",
        Some(json!({"type": "image/jpeg", "owner": "u1"})),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("uploads/u1/"), "{created}");
    let id = created["uploadId"].as_str().unwrap().to_owned();
    store.uploads.lock().unwrap().get_mut(&id).unwrap().1 = vec![Part {
        number: 1,
        size: 5,
        etag: "\"e1\"".into(),
    }];

    // Every later call must name the same owner: another one, or none, is 403.
    let calls = |owner: &str| {
        let o = if owner.is_empty() {
            String::new()
        } else {
            format!("&owner={owner}")
        };
        vec![
            ("GET", format!("/s3/multipart/{id}/1?key={key}{o}"), None),
            (
                "GET",
                format!("/s3/multipart/{id}/batch?key={key}&partNumbers=1{o}"),
                None,
            ),
            ("GET", format!("/s3/multipart/{id}?key={key}{o}"), None),
            (
                "POST",
                format!("/s3/multipart/{id}/complete?key={key}{o}"),
                Some(json!({"parts": [{"PartNumber": 1, "ETag": "\"e1\""}]})),
            ),
            ("DELETE", format!("/s3/multipart/{id}?key={key}{o}"), None),
        ]
    };
    for owner in ["u2", ""] {
        for (method, uri, body) in calls(owner) {
            let (status, answer) = call(&s, method, &uri, body).await;
            assert_eq!(
                (status, answer["error"]["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("OwnerMismatch")),
                "{method} {uri}: {answer}"
            );
        }
    }
    let before = store.calls.lock().unwrap().len();
    for (method, uri, body) in calls("u1") {
        let (status, answer) = call(&s, method, &uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {answer}");
    }
    assert!(
        store.calls.lock().unwrap().len() > before,
        "the owner's calls reached S3"
    );
    // A key without an owner may not be claimed by one.
    let (status, _) = call(
        &s,
        "GET",
        "/s3/multipart/x/1?key=uploads/abc.jpg&owner=u1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn owners_are_checked_and_may_be_required() {
    let (s, _) = state();
    for bad in ["", "../x", "a/b", ".x", "é", &"x".repeat(65)] {
        let (status, body) = call(
            &s,
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg", "size": 5, "owner": bad})),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("InvalidOwner")),
            "{bad:?}: {body}"
        );
    }
    let mut c = config();
    c.require_owner = true;
    let s = state_from(c);
    for (method, uri, body) in [
        (
            "POST",
            "/uploads",
            Some(json!({"contentType": "image/jpeg", "size": 5})),
        ),
        ("GET", "/s3/params?filename=a.jpg&type=image/jpeg", None),
        ("POST", "/s3/multipart", Some(json!({"type": "image/jpeg"}))),
        ("GET", "/uploads?size=5", None),
    ] {
        let (status, answer) = call(&s, method, uri, body).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("OwnerRequired")),
            "{method} {uri}: {answer}"
        );
    }
    let (status, _) = call(
        &s,
        "POST",
        "/uploads",
        Some(json!({"contentType": "image/jpeg", "size": 5, "owner": "u1"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test]
async fn verify_names_the_owner_too() {
    let store = Arc::new(FakeStore::default());
    let s = verifying(store.clone(), false);
    store.put("uploads/incoming/u1/a.jpg", "image/jpeg", JPEG);
    for body in [
        json!({"key": "uploads/incoming/u1/a.jpg", "owner": "u2"}),
        json!({"key": "uploads/incoming/u1/a.jpg"}),
    ] {
        let (status, answer) = call(&s, "POST", "/uploads/verify", Some(body.clone())).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("OwnerMismatch")),
            "{body}"
        );
    }
    assert_eq!(
        store.state_of("uploads/incoming/u1/a.jpg"),
        Some(Some("pending".into())),
        "untouched"
    );
    let (status, _) = call(
        &s,
        "POST",
        "/uploads/verify",
        Some(json!({"key": "uploads/incoming/u1/a.jpg", "owner": "u1"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn starts_are_rate_limited_per_owner_with_retry_after() {
    let mut c = config();
    c.urls_per_minute = 2;
    let s = state_from(c);
    let start = |owner: &'static str| {
        let s = s.clone();
        async move {
            let req = Request::builder()
                .method("POST")
                .uri("/uploads")
                .header("content-type", "application/json")
                .body(Body::from(
                    json!({"contentType": "image/jpeg", "size": 5, "owner": owner}).to_string(),
                ))
                .unwrap();
            send(&s, req).await
        }
    };
    assert_eq!(start("u1").await.status(), StatusCode::CREATED);
    assert_eq!(start("u1").await.status(), StatusCode::CREATED);
    let refused = start("u1").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "30");
    let body: Value =
        serde_json::from_slice(&refused.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["error"]["code"], "TooManyUploads", "{body}");
    // Another owner has its own quota; u1 gets one again after Retry-After.
    assert_eq!(start("u2").await.status(), StatusCode::CREATED);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(start("u1").await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn open_multipart_uploads_are_capped_per_owner() {
    let mut c = config();
    c.max_open_multipart = 2;
    let store = Arc::new(FakeStore::default());
    let s = AppState::new(
        c,
        Presigner::new("photos", "eu-west-1", Endpoint::aws("eu-west-1")),
        Arc::new(StaticCredentials::new(creds(None))),
        store.clone(),
    )
    .with_clock(now);
    let create = |owner: &str| json!({"type": "image/jpeg", "owner": owner});
    for _ in 0..2 {
        let (status, body) = call(&s, "POST", "/s3/multipart", Some(create("u1"))).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = call(&s, "POST", "/s3/multipart", Some(create("u1"))).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("TooManyOpenUploads")),
        "{body}"
    );
    // Counted under the owner's folder only: u2 may start.
    assert!(
        store
            .calls
            .lock()
            .unwrap()
            .contains(&"count uploads/u1/".to_owned())
    );
    let (status, _) = call(&s, "POST", "/s3/multipart", Some(create("u2"))).await;
    assert_eq!(status, StatusCode::OK);

    // Eight creates at once for an owner with none open: exactly two get through.
    let mut burst = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        burst.spawn(async move {
            call(&s, "POST", "/s3/multipart", Some(create("u3")))
                .await
                .0
        });
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
    let body = json!({"filename": "cat.jpg", "contentType": "image/jpeg", "size": 1048576});
    let (status, _) = call(&s, "POST", "/bench/ceiling", Some(body.clone())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let s = s.with_bench_ceiling(600);
    let (status, answer) = call(&s, "POST", "/bench/ceiling", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(answer.to_string().len(), 600, "{answer}");
    // It signs nothing and touches no store.
    assert!(store.calls.lock().unwrap().is_empty());
    assert!(!answer.to_string().contains("X-Amz-Signature"));
}

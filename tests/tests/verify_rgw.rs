//! Trusted uploads on Ceph RGW (`uploads.verification`): every URL puts its upload in the
//! incoming area, tagged pending; `POST /uploads/verify` copies true bytes to the verified area
//! (exactly the bytes it read, whatever races it) and removes disguised ones; and the
//! bucket's lifecycle rule (written by the operator's code) empties the incoming area.
//!
//! Its own test binary: the lifecycle test runs RGW's lifecycle pass with a 10-second "day",
//! which would also act on other tests' buckets if they ran beside it.

use std::time::Duration;

use serde_json::{Value, json};
use uploadbucket_operator::crd::{UploadBucket, UploadBucketSpec};
use uploadbucket_tests::{S3Server, s3_server, sign_upload, start_sidecar, unique_name};

const JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x01,
];
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06";
const HTML: &[u8] =
    b"<!doctype html><html><script>fetch('/steal?c='+document.cookie)</script></html>";

/// A bucket made by the operator's code with verification on (pending uploads expire after
/// one day), and a plain client to look at it.
async fn verifying_bucket(server: &S3Server) -> (String, aws_sdk_s3::Client) {
    verifying_bucket_with(server, json!({})).await
}

/// [`verifying_bucket`] with more of the spec (`extra`'s fields).
async fn verifying_bucket_with(server: &S3Server, extra: Value) -> (String, aws_sdk_s3::Client) {
    let name = unique_name("ub-verify");
    let mut spec = json!({
        "bucketName": name,
        "uploads": {
            "allowedContentTypes": ["image/jpeg", "image/png"],
            "verification": {"enabled": true, "pendingExpirationDays": 1},
        },
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let spec: UploadBucketSpec = serde_json::from_value(spec).unwrap();
    let mut ub = UploadBucket::new("verified", spec);
    ub.metadata.namespace = Some("e2e".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let (buckets, counter) = server.buckets().await;
    let defaults = uploadbucket_tests::defaults(server);
    uploadbucket_tests::provision(&buckets, &ub, &defaults)
        .await
        .expect("provision");
    // The incoming area's rule reads back as written: a second pass writes nothing.
    uploadbucket_tests::assert_second_pass_writes_nothing(&buckets, &ub, &defaults, &counter).await;
    let raw = server.admin_client().await;
    (name, raw)
}

/// PUTs `bytes` as `content_type` through a URL from `POST /uploads`, sending the headers it
/// returned; the key.
async fn upload(http: &reqwest::Client, base: &str, content_type: &str, bytes: &[u8]) -> String {
    let signed = sign_upload(
        http,
        base,
        json!({"contentType": content_type, "size": bytes.len()}),
    )
    .await;
    assert_eq!(
        signed["headers"]["x-amz-tagging"], "uploadbucket-state=pending",
        "{signed}"
    );
    let (status, text) = uploadbucket_tests::put_signed(http, &signed, bytes.to_vec()).await;
    assert_eq!(status, 200, "{text}");
    signed["key"].as_str().unwrap().to_owned()
}

async fn verify(http: &reqwest::Client, base: &str, key: &str) -> (u16, Value) {
    let resp = http
        .post(format!("{base}/uploads/verify"))
        .json(&json!({"key": key}))
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

/// The object's `uploadbucket-state` tag; `None` when there is no object.
async fn state(raw: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<String> {
    match raw
        .get_object_tagging()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(t) => Some(
            t.tag_set()
                .iter()
                .find(|t| t.key() == "uploadbucket-state")
                .map(|t| t.value().to_owned())
                .unwrap_or_default(),
        ),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => None,
        Err(e) => panic!("tagging of {key}: {e:?}"),
    }
}

/// The signer as the webhook sets it up on RGW (its own copy precondition header).
const ENV: [(&str, &str); 4] = [
    ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg,image/png"),
    ("UPLOADBUCKET_MAX_SIZE_BYTES", "1048576"),
    ("UPLOADBUCKET_VERIFY", "true"),
    ("UPLOADBUCKET_S3_BACKEND", "rgw"),
];

#[tokio::test]
async fn verify_keeps_true_bytes_and_removes_disguised_ones() {
    let Some(server) = s3_server("verify_keeps_true_bytes_and_removes_disguised_ones") else {
        return;
    };
    let (bucket, raw) = verifying_bucket(&server).await;
    let (_signer, base) = start_sidecar(&server, &bucket, &ENV).await;
    let http = reqwest::Client::new();

    // HTML bytes declared image/jpeg: S3 stores them (the type is only a claim)...
    let fake = upload(&http, &base, "image/jpeg", HTML).await;
    assert!(fake.starts_with("uploads/incoming/"), "{fake}");
    assert_eq!(
        state(&raw, &bucket, &fake).await.as_deref(),
        Some("pending")
    );
    // ...and verify refuses them, saying what did not match, and deletes them.
    let (status, body) = verify(&http, &base, &fake).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "ContentMismatch");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("image/jpeg") && message.contains("text/html"),
        "{message}"
    );
    assert_eq!(state(&raw, &bucket, &fake).await, None, "deleted");
    let never = fake.replacen("/incoming/", "/verified/", 1);
    assert_eq!(state(&raw, &bucket, &never).await, None, "never verified");

    // A real JPEG and PNG are copied to the verified area, tagged verified, with the
    // signer's headers only; the upload itself is gone.
    for (ct, bytes) in [("image/jpeg", JPEG), ("image/png", PNG)] {
        let key = upload(&http, &base, ct, bytes).await;
        let (status, body) = verify(&http, &base, &key).await;
        assert_eq!(status, 200, "{ct}: {body}");
        assert_eq!(
            (&body["detectedType"], &body["size"], &body["state"]),
            (&json!(ct), &json!(bytes.len()), &json!("verified"))
        );
        let verified = body["key"].as_str().unwrap();
        assert_eq!(verified, key.replacen("/incoming/", "/verified/", 1));
        assert_eq!(
            state(&raw, &bucket, verified).await.as_deref(),
            Some("verified")
        );
        assert_eq!(state(&raw, &bucket, &key).await, None, "moved");
        let got = raw
            .get_object()
            .bucket(&bucket)
            .key(verified)
            .send()
            .await
            .unwrap();
        assert_eq!(got.content_type(), Some(ct));
        assert_eq!(got.body.collect().await.unwrap().to_vec(), bytes);
    }

    // A PNG stored as a JPEG: refused too.
    let key = upload(&http, &base, "image/jpeg", PNG).await;
    let (status, body) = verify(&http, &base, &key).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("ContentMismatch")),
        "{body}"
    );

    // Quarantine instead of delete: kept in the incoming area (which expires), tagged.
    let mut env = ENV.to_vec();
    env.push(("UPLOADBUCKET_VERIFY_QUARANTINE", "true"));
    let (_q, qbase) = start_sidecar(&server, &bucket, &env).await;
    let key = upload(&http, &qbase, "image/png", HTML).await;
    let (status, _) = verify(&http, &qbase, &key).await;
    assert_eq!(status, 422);
    assert_eq!(
        state(&raw, &bucket, &key).await.as_deref(),
        Some("quarantined")
    );
}

/// Headers an end user adds to a PUT URL that RGW stores although they were not signed
/// (Content-Disposition, Cache-Control, Content-Encoding, x-amz-meta-*, a website redirect)
/// stay on the upload, which is never served; the verified copy carries the signer's headers
/// only.
#[tokio::test]
async fn unsigned_headers_never_reach_the_verified_object() {
    let Some(server) = s3_server("unsigned_headers_never_reach_the_verified_object") else {
        return;
    };
    let (bucket, raw) = verifying_bucket(&server).await;
    let (_signer, base) = start_sidecar(&server, &bucket, &ENV).await;
    let http = reqwest::Client::new();
    let signed = sign_upload(
        &http,
        &base,
        json!({"contentType": "image/jpeg", "size": JPEG.len()}),
    )
    .await;
    let mut req = http
        .put(signed["uploadURL"].as_str().unwrap())
        .body(JPEG.to_vec());
    for (k, v) in signed["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let smuggled = [
        (
            "content-disposition",
            "inline; filename=\"invoice.pdf.exe\"",
        ),
        ("cache-control", "public, max-age=31536000, immutable"),
        ("content-encoding", "gzip"),
        ("content-language", "xx"),
        ("x-amz-meta-owner", "admin"),
        ("x-amz-website-redirect-location", "https://evil.example/"),
    ];
    for (k, v) in smuggled {
        req = req.header(k, v);
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "RGW takes them (measured)");
    let key = signed["key"].as_str().unwrap();
    let upload = raw
        .head_object()
        .bucket(&bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    assert_eq!(
        upload.cache_control(),
        Some("public, max-age=31536000, immutable")
    );
    let (status, body) = verify(&http, &base, key).await;
    assert_eq!(status, 200, "{body}");
    let verified = raw
        .head_object()
        .bucket(&bucket)
        .key(body["key"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(verified.content_type(), Some("image/jpeg"));
    assert_eq!(verified.content_disposition(), None);
    assert_eq!(verified.cache_control(), None);
    assert_eq!(verified.content_encoding(), None);
    assert_eq!(verified.content_language(), None);
    assert_eq!(verified.website_redirect_location(), None);
    assert!(
        verified.metadata().is_none_or(|m| m.is_empty()),
        "{:?}",
        verified.metadata()
    );
}

/// On a versioned bucket, what verify replaced or removed in the incoming area stays as
/// noncurrent versions: the incoming area's rule expires those too, and RGW keeps the rule
/// as written (a second pass writes nothing: checked in `verifying_bucket_with`).
#[tokio::test]
async fn a_versioned_bucket_expires_the_incoming_areas_old_versions() {
    let Some(server) = s3_server("a_versioned_bucket_expires_the_incoming_areas_old_versions")
    else {
        return;
    };
    let (bucket, raw) = verifying_bucket_with(&server, json!({"versioning": true})).await;
    let rules = raw
        .get_bucket_lifecycle_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let rule = rules
        .rules()
        .iter()
        .find(|r| r.id() == Some("uploadbucket-expire-pending"))
        .expect("the incoming area's rule");
    let prefix = rule.filter().and_then(|f| f.prefix());
    assert_eq!(prefix, Some("uploads/incoming/"), "{rule:?}");
    assert_eq!(rule.expiration().and_then(|e| e.days()), Some(1));
    assert_eq!(
        rule.noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(1),
        "{rule:?}"
    );
    // Verify on a versioned bucket: the version it read is the one copied.
    let (_signer, base) = start_sidecar(&server, &bucket, &ENV).await;
    let http = reqwest::Client::new();
    let key = upload(&http, &base, "image/jpeg", JPEG).await;
    let (status, body) = verify(&http, &base, &key).await;
    assert_eq!(status, 200, "{body}");
    let versions = raw
        .list_object_versions()
        .bucket(&bucket)
        .prefix("uploads/incoming/")
        .send()
        .await
        .unwrap();
    assert!(
        versions
            .versions()
            .iter()
            .all(|v| v.is_latest() != Some(true)),
        "only old versions and a delete marker left in the incoming area: {versions:?}"
    );
}

/// The end user posts their form again and again, JPEG and HTML of the same size in turn,
/// while the app verifies: every verified object holds exactly the JPEG verify read.
#[tokio::test]
async fn verify_cannot_be_raced_into_verifying_other_bytes() {
    let Some(server) = s3_server("verify_cannot_be_raced_into_verifying_other_bytes") else {
        return;
    };
    let (bucket, raw) = verifying_bucket(&server).await;
    let (_signer, base) = start_sidecar(&server, &bucket, &ENV).await;
    let race = uploadbucket_tests::race_verify_in(&raw, &bucket, &base, 30).await;
    eprintln!("verify raced on RGW: {race:?}");
    assert!(race.answers.get(&200).is_some_and(|n| *n > 0), "{race:?}");
    assert!(race.landed > 0, "the end user's posts landed: {race:?}");
}

#[tokio::test]
async fn pending_uploads_expire_by_lifecycle_and_verified_ones_stay() {
    let Some(server) = s3_server("pending_uploads_expire_by_lifecycle_and_verified_ones_stay")
    else {
        return;
    };
    let Some(conf) =
        uploadbucket_tests::rgw_conf("pending_uploads_expire_by_lifecycle_and_verified_ones_stay")
    else {
        return;
    };
    let (bucket, raw) = verifying_bucket(&server).await;
    let (_signer, base) = start_sidecar(&server, &bucket, &ENV).await;
    let http = reqwest::Client::new();
    let pending = upload(&http, &base, "image/jpeg", JPEG).await;
    let checked = upload(&http, &base, "image/jpeg", JPEG).await;
    let (status, answer) = verify(&http, &base, &checked).await;
    assert_eq!(status, 200, "{answer}");
    let verified = answer["key"].as_str().unwrap().to_owned();

    // A lifecycle "day" of 10 s: once the objects are older than that, lifecycle passes (the
    // test RGW runs none of its own: tests/scripts/rgw.sh) until the pending upload is gone,
    // within 150 s. RGW 16.2 ignores `--bucket` and takes one bucket per index shard per pass
    // (seen in its debug log), so with many other buckets in the index the test's bucket may
    // not come up for minutes: tests/run.sh runs this test first, on an empty index, where
    // the first pass expired it in every run seen.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(150);
    let mut passes: Vec<String> = Vec::new();
    while state(&raw, &bucket, &pending).await.is_some() {
        if std::time::Instant::now() >= deadline {
            // What RGW's lifecycle index says about the bucket, for the failure message.
            let out = uploadbucket_tests::rgw_admin_output(&conf, &["lc", "list"]);
            let list = String::from_utf8_lossy(&out.stdout);
            let entry: Vec<&str> = list
                .split('}')
                .filter(|e| e.contains(bucket.as_str()))
                .collect();
            panic!(
                "the pending upload is still there after {} lifecycle passes: {passes:#?}; lc list: {entry:?}",
                passes.len()
            );
        }
        let started = std::time::Instant::now();
        let out = uploadbucket_tests::rgw_admin_output(
            &conf,
            &[
                "--rgw-lc-debug-interval=10",
                "lc",
                "process",
                "--bucket",
                &bucket,
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let said: Vec<String> = String::from_utf8_lossy(&out.stderr)
            .lines()
            .map(|l| l.split_once(" 0 ").map_or(l, |(_, m)| m).to_owned())
            .collect();
        passes.push(format!("{:.1} s {said:?}", started.elapsed().as_secs_f64()));
        eprintln!(
            "lifecycle pass {}: {}",
            passes.len(),
            passes.last().unwrap()
        );
        if state(&raw, &bucket, &pending).await.is_some() {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    assert_eq!(
        state(&raw, &bucket, &verified).await.as_deref(),
        Some("verified"),
        "verified upload kept"
    );
}

/// The allowed types as wildcards (`text/*`, `application/*`, `image/*`), end to end on RGW.
/// The signer refuses, before signing, the markup and script types a wildcard would otherwise
/// cover; a URL signed for a type a wildcard admits is refused by RGW for any other type; and
/// verify keeps only bytes that prove the type (UTF-8 text without markup for `text/*`, a
/// file signature for the others), deleting the rest. A row that fails names its case.
#[tokio::test]
async fn wildcard_types_admit_no_markup_end_to_end() {
    let Some(server) = s3_server("verify_rgw::wildcard_types_admit_no_markup_end_to_end") else {
        return;
    };
    const WILDCARDS: &str = "text/*,application/*,image/*";
    let (bucket, raw) = verifying_bucket_with(
        &server,
        json!({"uploads": {
            "allowedContentTypes": WILDCARDS.split(',').collect::<Vec<_>>(),
            "verification": {"enabled": true, "pendingExpirationDays": 1},
        }}),
    )
    .await;
    let mut env = ENV.to_vec();
    env.retain(|(k, _)| *k != "UPLOADBUCKET_ALLOWED_CONTENT_TYPES");
    env.push(("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", WILDCARDS));
    let (_signer, base) = start_sidecar(&server, &bucket, &env).await;
    let http = reqwest::Client::new();

    // Refused before anything is signed: what a browser would run or render as a page.
    for ct in [
        "text/html",
        "text/xml",
        "text/javascript",
        "application/xhtml+xml",
        "application/xml",
        "application/javascript",
        "application/octet-stream",
        "image/svg+xml",
    ] {
        let (status, body) = uploadbucket_tests::status_json(
            http.post(format!("{base}/uploads"))
                .json(&json!({"contentType": ct, "size": 10})),
        )
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("ContentTypeNotAllowed")),
            "{ct}: {body}"
        );
    }

    // A URL for text/plain (admitted by text/*): RGW refuses the bytes under another type,
    // and takes them under the signed one (the control).
    let signed = sign_upload(
        &http,
        &base,
        json!({"contentType": "text/plain", "size": HTML.len()}),
    )
    .await;
    let url = signed["uploadURL"].as_str().unwrap();
    let key = signed["key"].as_str().unwrap();
    let headers = |ct: &'static str| -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = signed["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        h.push(("content-type".into(), ct.into()));
        h
    };
    for (ct, want) in [("text/html", 403), ("text/plain", 200)] {
        let h = headers(ct);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (status, text) = uploadbucket_tests::put_with(&http, url, &h, HTML.to_vec()).await;
        assert_eq!(status, want, "PUT as {ct}: {text}");
    }
    // Stored as text/plain, the markup is still refused by verify, and deleted.
    let (status, body) = verify(&http, &base, key).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("ContentMismatch")),
        "markup as text/plain: {body}"
    );
    assert_eq!(state(&raw, &bucket, key).await, None, "deleted");

    // Verify, one row a case: (type, bytes, kept). Through a wildcard the bytes must prove
    // the type.
    const PDF: &[u8] = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n";
    let rows: [(&str, &[u8], bool); 6] = [
        ("text/plain", b"name,qty\nbolts,12\n", true),
        (
            "text/csv",
            b"name,comment\nalice,<script>alert(1)</script>\n",
            false,
        ),
        ("text/plain", PNG, false),
        ("application/pdf", PDF, true),
        ("application/pdf", HTML, false),
        ("image/png", PNG, true),
    ];
    for (ct, bytes, kept) in rows {
        let key = upload(&http, &base, ct, bytes).await;
        let (status, body) = verify(&http, &base, &key).await;
        if kept {
            assert_eq!(status, 200, "{ct} ({} bytes): {body}", bytes.len());
            let verified = body["key"].as_str().unwrap();
            assert_eq!(
                state(&raw, &bucket, verified).await.as_deref(),
                Some("verified"),
                "{ct}"
            );
        } else {
            assert_eq!(
                (status, &body["error"]["code"]),
                (422, &json!("ContentMismatch")),
                "{ct}: {body}"
            );
            assert_eq!(state(&raw, &bucket, &key).await, None, "{ct}: deleted");
        }
    }
}

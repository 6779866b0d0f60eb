//! The AWS backend (`--s3-backend aws`, the default) against LocalStack, an independent
//! implementation of the AWS APIs (tests/scripts/localstack.sh; strict SigV4 on S3). What it
//! cannot check (tokens, trust policies, IAM permissions) is listed in the README as AWS only.
//! Every result is read back with a plain SDK client or LocalStack's own SQS API, not through
//! the operator's code.

use serde_json::{Value, json};
use uploadbucket_operator::crd::{UploadBucket, UploadBucketSpec};
use uploadbucket_tests::{S3Server, aws_server, put_signed, sign_upload, unique_name};

fn object(name: &str, spec: Value) -> UploadBucket {
    let mut spec = spec;
    spec["bucketName"] = json!(name);
    let spec: UploadBucketSpec = serde_json::from_value(spec).unwrap();
    let mut ub = UploadBucket::new("photos", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    ub
}

/// An SQS queue made through LocalStack's query API; its ARN and URL.
async fn queue(server: &S3Server, name: &str) -> (String, String) {
    let http = reqwest::Client::new();
    let form = |pairs: &[(&str, &str)]| {
        http.post(&server.endpoint)
            .form(&[pairs, &[("Version", "2012-11-05")]].concat())
            .send()
    };
    let created = form(&[("Action", "CreateQueue"), ("QueueName", name)])
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(created.contains("<QueueUrl>"), "{created}");
    // The queue's URL on the endpoint the test reaches.
    let url = format!("{}/000000000000/{name}", server.endpoint);
    (format!("arn:aws:sqs:us-east-1:000000000000:{name}"), url)
}

/// The bodies of the messages on `queue_url` (waiting up to `wait` seconds for the first).
async fn messages(server: &S3Server, queue_url: &str, wait: u32) -> Vec<String> {
    let text = reqwest::Client::new()
        .post(&server.endpoint)
        .form(&[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", queue_url),
            ("MaxNumberOfMessages", "10"),
            ("WaitTimeSeconds", &wait.to_string()),
            ("Version", "2012-11-05"),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.split("<Body>")
        .skip(1)
        .filter_map(|b| b.split("</Body>").next())
        .map(|b| {
            b.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .collect()
}

/// Everything the operator sets on a bucket, on the AWS backend: created with its ownership
/// tags in CreateBucket, then public-access block, ownership controls, encryption, CORS,
/// lifecycle (the incoming area's rule), versioning, the public-read statement and a queue
/// notification, each read back as written; a second pass writes nothing. Removing the
/// notification keeps the bucket and its objects (the RGW-only `DELETE ?notification`, which
/// LocalStack reads as DeleteBucket, never reaches it), and an upload then sends nothing.
#[tokio::test]
async fn the_operator_keeps_a_bucket_in_shape_on_the_aws_backend() {
    let Some(server) = aws_server("the_operator_keeps_a_bucket_in_shape_on_the_aws_backend") else {
        return;
    };
    let (buckets, counter) = server.buckets().await;
    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;
    let name = unique_name("ub-aws");
    let (queue_arn, queue_url) = queue(&server, &unique_name("ub-events")).await;
    let spec = json!({
        "tags": {"team": "shop"},
        "cors": {"allowedOrigins": ["https://shop.example.com"]},
        "lifecycle": {"abortIncompleteMultipartUploadDays": 2},
        "versioning": true,
        "uploads": {"publicRead": true, "verification": {"enabled": true, "pendingExpirationDays": 3}},
        "notifications": {"sqsQueueArn": queue_arn},
    });
    let ub = object(&name, spec.clone());
    let defaults = uploadbucket_tests::defaults(&server);
    uploadbucket_tests::provision(&buckets, &ub, &defaults)
        .await
        .expect("provision");
    uploadbucket_tests::assert_second_pass_writes_nothing(&buckets, &ub, &defaults, &counter).await;

    let tags = raw.get_bucket_tagging().bucket(&name).send().await.unwrap();
    let tag = |k: &str| {
        tags.tag_set()
            .iter()
            .find(|t| t.key() == k)
            .map(|t| t.value().to_owned())
    };
    assert_eq!(
        tag("uploadbucket.io/uid").as_deref(),
        Some(format!("uid-{name}").as_str())
    );
    assert_eq!(tag("team").as_deref(), Some("shop"));
    let pab = raw
        .get_public_access_block()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let pab = pab.public_access_block_configuration().unwrap();
    assert_eq!(
        (
            pab.block_public_acls(),
            pab.ignore_public_acls(),
            pab.block_public_policy(),
            pab.restrict_public_buckets()
        ),
        (Some(true), Some(true), Some(false), Some(false)),
        "publicRead opens the policy side only"
    );
    let ownership = raw
        .get_bucket_ownership_controls()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ownership.ownership_controls().unwrap().rules()[0]
            .object_ownership()
            .as_str(),
        "BucketOwnerEnforced"
    );
    let enc = raw
        .get_bucket_encryption()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default()
            .unwrap()
            .sse_algorithm()
            .as_str(),
        "AES256"
    );
    let cors = raw.get_bucket_cors().bucket(&name).send().await.unwrap();
    assert_eq!(
        cors.cors_rules()[0].allowed_origins(),
        ["https://shop.example.com"]
    );
    let versioning = raw
        .get_bucket_versioning()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(versioning.status().map(|s| s.as_str()), Some("Enabled"));
    let lifecycle = raw
        .get_bucket_lifecycle_configuration()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    let incoming = lifecycle
        .rules()
        .iter()
        .find(|r| r.id() == Some("uploadbucket-expire-pending"))
        .expect("the incoming area's rule");
    assert_eq!(
        incoming.filter().and_then(|f| f.prefix()),
        Some("uploads/incoming/")
    );
    assert_eq!(incoming.expiration().and_then(|e| e.days()), Some(3));
    assert_eq!(
        incoming
            .noncurrent_version_expiration()
            .and_then(|n| n.noncurrent_days()),
        Some(3)
    );
    let policy: Value = serde_json::from_str(
        raw.get_bucket_policy()
            .bucket(&name)
            .send()
            .await
            .unwrap()
            .policy()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        policy["Statement"][0]["Resource"],
        format!("arn:aws:s3:::{name}/uploads/verified/*")
    );
    let notify = raw
        .get_bucket_notification_configuration()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(notify.queue_configurations()[0].queue_arn(), queue_arn);

    // An upload in the incoming area is delivered to the queue.
    raw.put_object()
        .bucket(&name)
        .key("uploads/incoming/a.jpg")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"\xff\xd8\xff",
        ))
        .send()
        .await
        .unwrap();
    let mut delivered = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !delivered
        .iter()
        .any(|m: &String| m.contains("ObjectCreated") && m.contains("uploads/incoming/a.jpg"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no event for the upload: {delivered:?}"
        );
        delivered.extend(messages(&server, &queue_url, 2).await);
    }

    // Notifications removed from the spec: the bucket and its object stay, and nothing is
    // delivered any more.
    let mut quiet = spec;
    quiet.as_object_mut().unwrap().remove("notifications");
    let ub = object(&name, quiet);
    uploadbucket_tests::provision(&buckets, &ub, &defaults)
        .await
        .expect("notifications removed");
    raw.head_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("the bucket is still there");
    raw.head_object()
        .bucket(&name)
        .key("uploads/incoming/a.jpg")
        .send()
        .await
        .expect("its object too");
    let notify = raw
        .get_bucket_notification_configuration()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert!(notify.queue_configurations().is_empty(), "{notify:?}");
    uploadbucket_tests::assert_second_pass_writes_nothing(&buckets, &ub, &defaults, &counter).await;
    raw.put_object()
        .bucket(&name)
        .key("uploads/incoming/b.jpg")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(
            b"\xff\xd8\xff",
        ))
        .send()
        .await
        .unwrap();
    let after = messages(&server, &queue_url, 2).await;
    assert!(
        !after.iter().any(|m| m.contains("uploads/incoming/b.jpg")),
        "{after:?}"
    );
}

const SIGNER: [(&str, &str); 3] = [
    ("UPLOADBUCKET_VERIFY", "true"),
    ("UPLOADBUCKET_PUBLIC_READ", "true"),
    ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg"),
];

/// A verifying bucket made by the operator's code on the AWS backend, and a signer for it
/// with AWS's request shapes (`UPLOADBUCKET_S3_BACKEND` unset).
async fn verifying(server: &S3Server) -> (String, aws_sdk_s3::Client) {
    let (buckets, _) = server.buckets().await;
    let name = unique_name("ub-aws-verify");
    let ub = object(
        &name,
        json!({"uploads": {"publicRead": true, "verification": {"enabled": true}}}),
    );
    uploadbucket_tests::provision(&buckets, &ub, &uploadbucket_tests::defaults(server))
        .await
        .expect("provision");
    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;
    (name, raw)
}

/// The promises of issue 25 on the AWS stand-in: an upload URL plus unsigned headers is
/// refused by the store itself (no copy, no smuggled metadata), headers a store takes
/// unsigned (Cache-Control, Content-Disposition) never reach the verified copy, and verify
/// cannot be raced into verifying other bytes (AWS's `x-amz-copy-source-if-match`).
#[tokio::test]
async fn urls_do_only_what_was_signed_and_verify_cannot_be_raced_on_the_aws_backend() {
    let Some(server) =
        aws_server("urls_do_only_what_was_signed_and_verify_cannot_be_raced_on_the_aws_backend")
    else {
        return;
    };
    let (bucket, raw) = verifying(&server).await;
    let mut env: Vec<(&str, &str)> = vec![
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ];
    env.extend(SIGNER);
    let (_signer, base) = uploadbucket_tests::start_sidecar_as(&server, &bucket, &env).await;
    let http = reqwest::Client::new();
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00";

    // Bob's upload, verified.
    let bob = sign_upload(
        &http,
        &base,
        json!({"contentType": "image/jpeg", "size": JPEG.len()}),
    )
    .await;
    assert_eq!(put_signed(&http, &bob, JPEG.to_vec()).await.0, 200);
    // Alice's URL with a copy source, or with metadata: refused by the store.
    let alice = sign_upload(
        &http,
        &base,
        json!({"contentType": "image/jpeg", "size": JPEG.len()}),
    )
    .await;
    for (header, value) in [
        (
            "x-amz-copy-source",
            format!("{bucket}/{}", bob["key"].as_str().unwrap()),
        ),
        ("x-amz-meta-owner", "admin".to_owned()),
        (
            "x-amz-website-redirect-location",
            "https://evil.example/".to_owned(),
        ),
    ] {
        let mut req = http
            .put(alice["uploadURL"].as_str().unwrap())
            .body(JPEG.to_vec())
            .header(header, value);
        for (k, v) in alice["headers"].as_object().unwrap() {
            req = req.header(k.as_str(), v.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 403, "{header}: {text}");
        assert!(text.contains("not signed"), "{header}: {text}");
    }
    // Standard headers it takes unsigned stay on the upload; the verified copy has its own.
    let mut req = http
        .put(alice["uploadURL"].as_str().unwrap())
        .body(JPEG.to_vec())
        .header("cache-control", "public, max-age=31536000, immutable")
        .header(
            "content-disposition",
            "inline; filename=\"invoice.pdf.exe\"",
        );
    for (k, v) in alice["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    assert_eq!(req.send().await.unwrap().status().as_u16(), 200);
    let verified = http
        .post(format!("{base}/uploads/verify"))
        .json(&json!({"key": alice["key"]}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let head = raw
        .head_object()
        .bucket(&bucket)
        .key(verified["key"].as_str().expect("verified"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("image/jpeg"));
    assert_eq!(
        (head.cache_control(), head.content_disposition()),
        (None, None)
    );
    // Public read (a bucket policy) is not checked here: LocalStack serves anonymous GETs of
    // private objects (measured: 200). AWS only; on RGW, tested.
    let race = uploadbucket_tests::race_verify(&base, &RACE_JPEG, &RACE_HTML, 30, |key| {
        let (raw, bucket) = (raw.clone(), bucket.clone());
        async move {
            let got = raw
                .get_object()
                .bucket(&bucket)
                .key(&key)
                .send()
                .await
                .ok()?;
            Some(got.body.collect().await.unwrap().to_vec())
        }
    })
    .await;
    eprintln!("verify raced on LocalStack: {race:?}");
    assert!(race.landed > 0, "{race:?}");
}

const RACE_JPEG: [u8; 64] = {
    let mut b = [b' '; 64];
    let head = *b"\xff\xd8\xff\xe0\x00\x10JFIF\x00";
    let mut i = 0;
    while i < head.len() {
        b[i] = head[i];
        i += 1;
    }
    b
};
const RACE_HTML: [u8; 64] = *b"<html><script>alert(document.domain)</script></html>            ";

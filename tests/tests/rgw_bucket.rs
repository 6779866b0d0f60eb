//! The operator's bucket reconciliation against a real S3 server (Ceph RGW, started by
//! tests/run.sh): what apply writes, that a second apply writes nothing, drift repair,
//! CORS preflights answered by the bucket's rules, and both deletion policies.

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use uploadbucket_operator::aws::{BucketApi, BucketRef, CorsRule, PublicAccessBlock};
use uploadbucket_operator::controller::cleanup::CleanupOutcome;
use uploadbucket_operator::controller::desired::{Defaults, TAG_UID, desired, ownership_tags};
use uploadbucket_operator::crd::{DeletionPolicy, UploadBucket, UploadBucketSpec};
use uploadbucket_tests::{S3Server, clean_up, is_stored, provision, s3_server, unique_name};

/// The arrangement of a test of the operator's bucket code: the server, the operator's S3
/// client on it with its request counter, a plain client, and a new bucket name from
/// `bucket_base`; `None` after a loud skip when there is no server.
async fn arrange(
    test: &str,
    bucket_base: &str,
) -> Option<(
    S3Server,
    uploadbucket_operator::aws::s3::S3Buckets,
    uploadbucket_tests::RequestCounter,
    aws_sdk_s3::Client,
    String,
)> {
    let server = s3_server(test)?;
    let (buckets, counter) = server.buckets().await;
    let raw = server.admin_client().await;
    Some((server, buckets, counter, raw, unique_name(bucket_base)))
}

/// Cleans `ub` up with `Delete` and `emptyOnDelete`.
async fn delete_emptied(
    buckets: &uploadbucket_operator::aws::s3::S3Buckets,
    ub: &UploadBucket,
    server: &S3Server,
) -> Result<CleanupOutcome, uploadbucket_operator::controller::claim::ClaimError> {
    clean_up(buckets, ub, &defaults(server), DeletionPolicy::Delete, true).await
}

const ALLOWED: &str = "http://app.allowed.test";
const OTHER: &str = "http://evil.other.test";

fn object(bucket: &str, uid: &str, spec: serde_json::Value) -> UploadBucket {
    let mut spec: UploadBucketSpec = serde_json::from_value(spec).expect("spec");
    spec.bucket_name = Some(bucket.to_owned());
    let mut ub = UploadBucket::new("photos", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(uid.into());
    ub
}

/// Puts `ub`'s ownership tags back on its bucket with a plain client, as if never released.
async fn provision_as_owner(raw: &aws_sdk_s3::Client, bucket: &str, ub: &UploadBucket) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let tags = ownership_tags(ub, false)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
        .collect();
    raw.put_bucket_tagging()
        .bucket(bucket)
        .tagging(Tagging::builder().set_tag_set(Some(tags)).build().unwrap())
        .send()
        .await
        .expect("tag as ours");
}

fn defaults(server: &S3Server) -> Defaults {
    uploadbucket_tests::defaults(server)
}

async fn preflight(server: &S3Server, bucket: &str, origin: &str) -> (u16, Option<String>) {
    let resp = reqwest::Client::new()
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/{bucket}/uploads/x.jpg", server.endpoint),
        )
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "PUT")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("preflight");
    let allow = resp
        .headers()
        .get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (resp.status().as_u16(), allow)
}

#[tokio::test]
async fn apply_writes_exactly_the_spec_then_nothing_and_repairs_drift() {
    let test = "apply_writes_exactly_the_spec_then_nothing_and_repairs_drift";
    let Some((server, buckets, counter, raw, name)) = arrange(test, "ub-apply").await else {
        return;
    };
    let uid = "11111111-2222-3333-4444-555555555555";
    let ub = object(
        &name,
        uid,
        serde_json::json!({
            "cors": {"allowedOrigins": [ALLOWED], "exposeHeaders": ["x-amz-request-id"], "maxAgeSeconds": 600},
            "uploads": {"keyPrefix": "uploads/"},
            "lifecycle": {"abortIncompleteMultipartUploadDays": 2, "expirationDays": 30},
            "tags": {"team": "shop"}
        }),
    );
    let d = desired(&ub, &defaults(&server)).expect("desired");

    // First apply: creates and configures.
    let report = provision(&buckets, &ub, &defaults(&server))
        .await
        .expect("first apply");
    assert!(report.created, "bucket should be new: {report:?}");
    for setting in ["tags", "publicAccessBlock", "cors", "lifecycle"] {
        assert!(
            report.changed.contains(&setting),
            "{setting} not written: {report:?}"
        );
    }

    // What S3 holds, read with a plain SDK client.
    let cors = raw
        .get_bucket_cors()
        .bucket(&name)
        .send()
        .await
        .expect("get cors");
    assert_eq!(cors.cors_rules().len(), 1);
    let rule = &cors.cors_rules()[0];
    assert_eq!(rule.allowed_origins(), [ALLOWED]);
    let mut methods = rule.allowed_methods().to_vec();
    methods.sort();
    assert_eq!(methods, ["POST", "PUT"]);
    assert_eq!(rule.allowed_headers(), ["*"]);
    let mut expose: Vec<String> = rule
        .expose_headers()
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    expose.sort();
    assert_eq!(expose, ["etag", "x-amz-request-id"]);
    assert_eq!(rule.max_age_seconds(), Some(600));

    let b = BucketRef {
        name: name.clone(),
        region: "us-east-1".into(),
    };
    let lifecycle = buckets.get_lifecycle(&b).await.expect("lifecycle");
    assert_eq!(lifecycle, d.lifecycle, "lifecycle rules as asked");
    assert_eq!(lifecycle.len(), 2);
    let pab = buckets.get_public_access_block(&b).await.expect("pab");
    assert_eq!(
        pab,
        Some(PublicAccessBlock {
            // RGW 16 refuses every upload with BlockPublicAcls on; see aws/rgw.rs.
            block_public_acls: false,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        })
    );
    let tags: BTreeMap<String, String> = raw
        .get_bucket_tagging()
        .bucket(&name)
        .send()
        .await
        .expect("tags")
        .tag_set()
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    assert_eq!(tags.get("team").map(String::as_str), Some("shop"));
    assert_eq!(tags.get(TAG_UID).map(String::as_str), Some(uid));
    assert_eq!(
        tags.get("uploadbucket.io/namespace").map(String::as_str),
        Some("shop")
    );

    // Browsers: the allowed origin's preflight is answered, another origin's is refused.
    let (status, allow) = preflight(&server, &name, ALLOWED).await;
    assert_eq!((status, allow.as_deref()), (200, Some(ALLOWED)));
    let (status, allow) = preflight(&server, &name, OTHER).await;
    assert_eq!(allow, None, "other origin must not be allowed");
    assert!(
        status >= 400,
        "other origin preflight should be refused, got {status}"
    );

    // Second apply with nothing changed: reads only.
    let (w0, r0) = (counter.writes(), counter.reads());
    let report = provision(&buckets, &ub, &defaults(&server))
        .await
        .expect("second apply");
    assert!(!report.created && report.changed.is_empty(), "{report:?}");
    assert_eq!(
        counter.writes(),
        w0,
        "no-op apply wrote: {:?}",
        &counter.write_log()[w0..]
    );
    assert!(
        counter.reads() > r0,
        "the no-op apply must still read the bucket"
    );

    // Drift: CORS deleted behind our back comes back, and only CORS is written.
    raw.delete_bucket_cors()
        .bucket(&name)
        .send()
        .await
        .expect("delete cors");
    let (status, _) = preflight(&server, &name, ALLOWED).await;
    assert!(status >= 400, "without CORS the preflight fails");
    let w0 = counter.writes();
    let report = provision(&buckets, &ub, &defaults(&server))
        .await
        .expect("repair");
    assert_eq!(report.changed, vec!["cors"]);
    assert_eq!(counter.writes(), w0 + 1, "{:?}", &counter.write_log()[w0..]);
    let (status, allow) = preflight(&server, &name, ALLOWED).await;
    assert_eq!((status, allow.as_deref()), (200, Some(ALLOWED)));

    // A spec change touches only what changed.
    let mut ub2 = ub.clone();
    ub2.spec.cors.allowed_origins.push(OTHER.to_owned());
    let d2 = desired(&ub2, &defaults(&server)).expect("desired 2");
    let report = provision(&buckets, &ub2, &defaults(&server))
        .await
        .expect("update");
    assert_eq!(report.changed, vec!["cors"]);
    let (status, allow) = preflight(&server, &name, OTHER).await;
    assert_eq!((status, allow.as_deref()), (200, Some(OTHER)));
    let current = buckets.get_cors(&b).await.expect("cors");
    assert_eq!(
        uploadbucket_operator::aws::canonical_cors(current),
        vec![
            CorsRule {
                allowed_origins: vec![OTHER.into(), ALLOWED.into()],
                ..d2.cors[0].clone()
            }
            .canonical()
        ]
    );

    // Another UploadBucket may not take over this bucket.
    let mut intruder = ub.clone();
    intruder.metadata.namespace = Some("evil".into());
    intruder.metadata.uid = Some("99999999-0000-0000-0000-000000000000".into());
    let w0 = counter.writes();
    let err = provision(&buckets, &intruder, &defaults(&server))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BucketManagedByOther", "{err}");
    assert!(
        !err.to_string().contains("shop"),
        "names no other namespace: {err}"
    );
    assert_eq!(counter.writes(), w0, "{:?}", &counter.write_log()[w0..]);

    // Delete, non-empty bucket, not asked to empty it: refused with a clear error, data kept.
    raw.put_object()
        .bucket(&name)
        .key("uploads/a.jpg")
        .body(ByteStream::from_static(b"jpeg"))
        .send()
        .await
        .expect("put object");
    let err = clean_up(
        &buckets,
        &ub,
        &defaults(&server),
        DeletionPolicy::Delete,
        false,
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason(), "BucketNotEmpty", "{err}");
    assert!(err.to_string().contains("emptyOnDelete"), "{err}");
    assert!(buckets.bucket_exists(&b).await.expect("exists"));

    // Retain: the bucket stays, released (our tags removed, the user's kept).
    let out = clean_up(
        &buckets,
        &ub,
        &defaults(&server),
        DeletionPolicy::Retain,
        false,
    )
    .await
    .expect("retain");
    assert_eq!(out, CleanupOutcome::Retained);
    assert!(
        buckets.bucket_exists(&b).await.expect("exists"),
        "Retain must keep the bucket"
    );
    let tags = buckets.get_tags(&b).await.expect("tags");
    assert!(
        !tags.contains_key(TAG_UID) && tags.get("team").map(String::as_str) == Some("shop"),
        "{tags:?}"
    );
    // Released, it is nobody's: cleanup completes and touches nothing, whatever the policy.
    let w0 = counter.writes();
    for (policy, empty) in [
        (DeletionPolicy::Retain, false),
        (DeletionPolicy::Delete, true),
    ] {
        let out = clean_up(&buckets, &ub, &defaults(&server), policy, empty)
            .await
            .expect("released");
        assert!(matches!(out, CleanupOutcome::NotOurs(_)), "{out:?}");
    }
    assert_eq!(counter.writes(), w0, "{:?}", &counter.write_log()[w0..]);
    assert!(
        is_stored(&raw, &name, "uploads/a.jpg").await,
        "the released bucket keeps its data"
    );

    // Tagged as ours again (as before the release), Delete with emptyOnDelete: gone; again:
    // already gone.
    provision_as_owner(&raw, &name, &ub).await;
    let out = delete_emptied(&buckets, &ub, &server)
        .await
        .expect("delete");
    assert_eq!(out, CleanupOutcome::Deleted { objects: 1 });
    assert!(!buckets.bucket_exists(&b).await.expect("exists"));
    let out = delete_emptied(&buckets, &ub, &server)
        .await
        .expect("delete again");
    assert_eq!(out, CleanupOutcome::AlreadyGone);
    // An object that never got a bucket: nothing to do, and no S3 call.
    let mut never = ub.clone();
    never.spec.bucket_name = None;
    let calls = counter.total();
    assert_eq!(
        delete_emptied(&buckets, &never, &server)
            .await
            .expect("none"),
        CleanupOutcome::NothingRecorded
    );
    assert_eq!(counter.total(), calls);
}

/// Emptying goes batch by batch on RGW (see [`uploadbucket_tests::empties_batch_by_batch`]).
#[tokio::test]
async fn emptying_goes_batch_by_batch_uploads_first_then_versions_and_markers() {
    let Some((_server, buckets, _counter, raw, name)) =
        arrange("emptying_goes_batch_by_batch", "ub-empty").await
    else {
        return;
    };
    uploadbucket_tests::empties_batch_by_batch(&buckets, &raw, &name).await;
}

#[tokio::test]
async fn a_name_taken_by_another_account_is_a_clear_error() {
    let Some(server) = s3_server("a_name_taken_by_another_account_is_a_clear_error") else {
        return;
    };
    let name = unique_name("ub-taken");
    let other = server
        .raw_client(&server.other_access_key, &server.other_secret_key)
        .await;
    other
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("other account creates bucket");

    let (buckets, _) = server.buckets().await;
    let ub = object(&name, "uid-taken", serde_json::json!({}));
    let err = provision(&buckets, &ub, &defaults(&server))
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "BucketNameTaken", "{err}");
    assert!(
        err.to_string().contains(&name) && err.to_string().contains("spec.bucketName"),
        "{err}"
    );
    // Nothing of ours was written onto their bucket: it still has no tags at all.
    let tags = other
        .get_bucket_tagging()
        .bucket(&name)
        .send()
        .await
        .expect_err("their bucket has no tagging");
    assert_eq!(
        aws_sdk_s3::error::ProvideErrorMetadata::code(&tags),
        Some("NoSuchTagSet"),
        "{tags:?}"
    );
}

/// Another RGW user's bucket, opened to the operator by its policy and dressed as the
/// object's, is refused and left as it was (see the shared test). RGW ignores
/// `x-amz-expected-bucket-owner`, so the owner GetBucketAcl names is what refuses it.
#[tokio::test]
async fn another_accounts_bucket_is_never_taken_or_touched() {
    let Some(server) = s3_server("another_accounts_bucket_is_never_taken_or_touched") else {
        return;
    };
    uploadbucket_tests::another_accounts_bucket_is_never_ours(&server).await;
}

#[tokio::test]
async fn public_read_serves_the_verified_area_only() {
    let test = "public_read_serves_the_verified_area_only";
    let Some((server, buckets, counter, raw, name)) = arrange(test, "ub-public").await else {
        return;
    };
    let uploads = serde_json::json!({"publicRead": true, "verification": {"enabled": true}});
    let ub = object(
        &name,
        "uid-public",
        serde_json::json!({ "uploads": uploads }),
    );
    let report = provision(&buckets, &ub, &defaults(&server))
        .await
        .expect("apply");
    assert!(report.changed.contains(&"policy"), "{report:?}");

    for key in [
        "uploads/verified/pic.jpg",
        "uploads/incoming/unchecked.html",
        "uploads/other.txt",
        "private/secret.txt",
    ] {
        raw.put_object()
            .bucket(&name)
            .key(key)
            .body(ByteStream::from_static(b"data"))
            .send()
            .await
            .expect("put");
    }
    let http = reqwest::Client::new();
    let anonymous = |key: &'static str| {
        let url = format!("{}/{name}/{key}", server.endpoint);
        let http = http.clone();
        async move { http.get(url).send().await.expect("get").status().as_u16() }
    };
    // Anonymous GETs, one row a key with the status it gets: the verified area is served,
    // nothing unverified is (the incoming area, the rest of the prefix, elsewhere).
    let gets = [
        ("uploads/verified/pic.jpg", 200),
        ("uploads/incoming/unchecked.html", 403),
        ("uploads/other.txt", 403),
        ("private/secret.txt", 403),
    ];
    for (key, status) in gets {
        let got = anonymous(key).await;
        uploadbucket_tests::assert_row(key, got, &"anonymous GET", &[status]);
    }

    let w0 = counter.writes();
    assert!(
        provision(&buckets, &ub, &defaults(&server))
            .await
            .expect("again")
            .changed
            .is_empty()
    );
    assert_eq!(counter.writes(), w0, "{:?}", &counter.write_log()[w0..]);

    // Turning publicRead off removes our policy.
    let mut closed = ub.clone();
    closed.spec.uploads.public_read = false;
    let report = provision(&buckets, &closed, &defaults(&server))
        .await
        .expect("close");
    assert!(report.changed.contains(&"policy"), "{report:?}");
    assert_eq!(anonymous("uploads/verified/pic.jpg").await, 403);

    delete_emptied(&buckets, &ub, &server)
        .await
        .expect("cleanup");
}

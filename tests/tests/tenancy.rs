//! Tenancy, tried as a hostile namespace would, against the operator binary on a real
//! kube-apiserver and Ceph RGW (both started by tests/run.sh): an UploadBucket that names
//! somebody else's bucket, unmanaged or another UploadBucket's, with `Delete`,
//! `emptyOnDelete`, `publicRead` and an empty key prefix, must leave that bucket exactly as it
//! was, before and after the hostile object is deleted. Adoption takes both the admin's
//! allowlist and the spec's request, and releasing an adopted bucket leaves it as it was.
//! Every bucket is read back with a plain S3 client ([`BucketSnapshot`]), not operator code.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types as s3t;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;
use uploadbucket_operator::crd::UploadBucket;
use uploadbucket_tests::cluster::{
    cluster_and_s3, delete_and_wait, namespace, start_operator, wait_not_ready, wait_ready,
};
use uploadbucket_tests::{BucketSnapshot, unique_name};

/// A bucket of the account that no UploadBucket manages, with settings of its own (someone
/// else's tag, lifecycle rule, CORS rule and policy statement), versioning on and objects.
async fn foreign_bucket(raw: &aws_sdk_s3::Client, name: &str, objects: usize) {
    foreign_settings(raw, name, objects)
        .await
        .unwrap_or_else(|e| panic!("the foreign bucket {name}: {e:?}"));
}

/// [`foreign_bucket`]'s writes, the first that fails as the error.
async fn foreign_settings(
    raw: &aws_sdk_s3::Client,
    name: &str,
    objects: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    raw.create_bucket().bucket(name).send().await?;
    let enabled = s3t::BucketVersioningStatus::Enabled;
    let versioning = s3t::VersioningConfiguration::builder().status(enabled);
    raw.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(versioning.build())
        .send()
        .await?;
    for i in 0..objects {
        raw.put_object()
            .bucket(name)
            .key(format!("reports/{i}.csv"))
            .body(ByteStream::from(format!("q{i},1000\n").into_bytes()))
            .tagging("classification=internal")
            .send()
            .await?;
    }
    let tag = s3t::Tag::builder().key("team").value("finance").build()?;
    let tagging = s3t::Tagging::builder().tag_set(tag).build()?;
    raw.put_bucket_tagging()
        .bucket(name)
        .tagging(tagging)
        .send()
        .await?;
    let archive = s3t::LifecycleRuleFilter::builder().prefix("archive/");
    let rule = s3t::LifecycleRule::builder()
        .id("finance-archive")
        .filter(archive.build())
        .status(s3t::ExpirationStatus::Enabled)
        .expiration(s3t::LifecycleExpiration::builder().days(365).build());
    let lifecycle = s3t::BucketLifecycleConfiguration::builder().rules(rule.build()?);
    raw.put_bucket_lifecycle_configuration()
        .bucket(name)
        .lifecycle_configuration(lifecycle.build()?)
        .send()
        .await?;
    let cors = s3t::CorsRule::builder()
        .id("finance-app")
        .allowed_origins("https://finance.example")
        .allowed_methods("GET");
    let cors = s3t::CorsConfiguration::builder().cors_rules(cors.build()?);
    raw.put_bucket_cors()
        .bucket(name)
        .cors_configuration(cors.build()?)
        .send()
        .await?;
    let policy = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "FinanceAuditorsRead", "Effect": "Allow",
        "Principal": {"AWS": ["arn:aws:iam:::user/uploadbucket-other"]},
        "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{name}/reports/*")
    }]});
    raw.put_bucket_policy()
        .bucket(name)
        .policy(policy.to_string())
        .send()
        .await?;
    // A public-access block of its own: public ACLs ignored, public policies allowed.
    let block = s3t::PublicAccessBlockConfiguration::builder()
        .block_public_acls(false)
        .ignore_public_acls(true)
        .block_public_policy(false)
        .restrict_public_buckets(false);
    raw.put_public_access_block()
        .bucket(name)
        .public_access_block_configuration(block.build())
        .send()
        .await?;
    Ok(())
}

/// A refused object: (name, its namespace's API, spec, reason, what its message must name).
type RefusalRow<'a> = (
    &'a str,
    &'a Api<UploadBucket>,
    serde_json::Value,
    &'a str,
    &'a [&'a str],
);

fn object(name: &str, spec: serde_json::Value) -> UploadBucket {
    serde_json::from_value(json!({
        "apiVersion": "uploadbucket.io/v1alpha1", "kind": "UploadBucket",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap()
}

/// The worst a hostile object can ask for, aimed at `bucket`.
fn hostile(name: &str, bucket: &str) -> UploadBucket {
    object(
        name,
        json!({
            "bucketName": bucket,
            "uploads": {"keyPrefix": "", "publicRead": true, "verification": {"enabled": true}},
            "cors": {"allowedOrigins": ["https://evil.example"]},
            "notifications": {"httpEndpoint": "http://127.0.0.1:9/stolen-events"},
            "versioning": false,
            "deletionPolicy": "Delete",
            "emptyOnDelete": true
        }),
    )
}

#[tokio::test]
async fn no_namespace_can_take_over_or_wipe_a_bucket_that_is_not_its_own() {
    let test = "tenancy::no_namespace_can_take_over_or_wipe_a_bucket_that_is_not_its_own";
    let Some((client, kubeconfig, server)) = cluster_and_s3(test).await else {
        return;
    };
    let raw = server.admin_client().await;
    // The admin's policy: every bucket name carries this prefix; `<prefix>legacy-*` may be
    // adopted.
    let prefix = format!("{}-", unique_name("tn"));
    let shop = namespace(&client, "shop").await;
    let evil = namespace(&client, "evil").await;
    // The operator as one cluster-wide process would run it, as two processes with the same
    // settings, each watching one of the test's namespaces: the UploadBuckets other tests
    // leave in the shared API server are none of this test's business (a cluster-wide
    // operator here reconciled them, under this test's prefix). Who owns a bucket is decided
    // from its tags in S3, not from what an operator watches, so the tenants meet in S3 as
    // they would under one operator.
    let settings = [
        ("UPLOADBUCKET_BUCKET_NAME_PREFIX", prefix.clone()),
        (
            "UPLOADBUCKET_ADOPTABLE_BUCKETS",
            format!("{prefix}legacy-*"),
        ),
    ];
    let operators = [
        start_operator(&kubeconfig, &server, &shop, &settings),
        start_operator(&kubeconfig, &server, &evil, &settings),
    ];
    // Every AWS write of both, once they have settled.
    let writes = || async {
        let mut total = 0;
        for o in &operators {
            total += o.settled().await.1;
        }
        total
    };
    let shop_ubs: Api<UploadBucket> = Api::namespaced(client.clone(), &shop);
    let evil_ubs: Api<UploadBucket> = Api::namespaced(client.clone(), &evil);
    let create = |api: &Api<UploadBucket>, ub: UploadBucket| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), &ub).await.unwrap() }
    };

    // The legitimate tenant: shop/avatars, with data in its bucket.
    create(
        &shop_ubs,
        object(
            "avatars",
            json!({"cors": {"allowedOrigins": ["https://shop.example.com"]}, "uploads": {"keyPrefix": "avatars/"}}),
        ),
    )
    .await;
    let avatars = wait_ready(&shop_ubs, "avatars").await;
    let avatars_bucket = avatars
        .status
        .as_ref()
        .unwrap()
        .bucket_name
        .clone()
        .unwrap();
    assert!(avatars_bucket.starts_with(&prefix), "{avatars_bucket}");
    for key in ["avatars/a.jpg", "avatars/b.jpg"] {
        raw.put_object()
            .bucket(&avatars_bucket)
            .key(key)
            .body(ByteStream::from_static(b"\xff\xd8\xff"))
            .send()
            .await
            .unwrap();
    }
    let avatars_before = BucketSnapshot::of(&raw, &avatars_bucket).await;
    let avatars_ready_since = avatars
        .condition("Ready")
        .unwrap()
        .last_transition_time
        .clone();

    // An unmanaged bucket of the account, inside the admin's prefix.
    let finance = format!("{prefix}finance");
    foreign_bucket(&raw, &finance, 3).await;
    let finance_before = BucketSnapshot::of(&raw, &finance).await;
    assert_eq!(finance_before.objects.len(), 3);
    // The snapshot sees what the attacks could change: its public-access block, and its
    // objects' tags.
    assert!(
        finance_before.public_access_block.is_some()
            && finance_before.objects.iter().all(|o| !o.tags.is_empty()),
        "{finance_before:?}"
    );
    // From here to the adoption, every object is refused: neither operator may write to AWS
    // at all, to the other tenant's bucket least of all.
    let writes_before_attacks = writes().await;

    // Attack 1: take over the unmanaged bucket, then delete the object to wipe it.
    create(&evil_ubs, hostile("grab-finance", &finance)).await;
    let refused = wait_not_ready(&evil_ubs, "grab-finance", "BucketExists").await;
    let st = refused.status.clone().unwrap();
    assert_eq!(
        st.bucket_name, None,
        "status names only buckets proven ours"
    );
    assert_eq!(st.role_name, None);
    assert_eq!(
        refused.condition("BucketReady").map(|c| c.status.as_str()),
        Some("False")
    );
    assert_eq!(BucketSnapshot::of(&raw, &finance).await, finance_before);
    delete_and_wait(&evil_ubs, "grab-finance").await;
    assert_eq!(BucketSnapshot::of(&raw, &finance).await, finance_before);

    // Attack 2: the same with another namespace's bucket.
    create(&evil_ubs, hostile("grab-avatars", &avatars_bucket)).await;
    let refused = wait_not_ready(&evil_ubs, "grab-avatars", "BucketManagedByOther").await;
    let message = refused.condition("Ready").unwrap().message.clone();
    for secret in [
        format!("{shop}/avatars"),
        avatars.metadata.uid.clone().unwrap(),
    ] {
        assert!(!message.contains(&secret), "{message}");
    }
    assert_eq!(refused.status.unwrap().bucket_name, None);
    assert_eq!(
        BucketSnapshot::of(&raw, &avatars_bucket).await,
        avatars_before
    );
    delete_and_wait(&evil_ubs, "grab-avatars").await;
    assert_eq!(
        BucketSnapshot::of(&raw, &avatars_bucket).await,
        avatars_before
    );
    let after = shop_ubs.get("avatars").await.unwrap();
    let ready = after.condition("Ready").unwrap();
    assert_eq!(ready.status, "True", "{ready:?}");
    assert_eq!(ready.last_transition_time, avatars_ready_since);

    // Adoption. The admin lists `<prefix>legacy-*`; the spec must ask as well.
    let legacy = format!("{prefix}legacy-photos");
    foreign_bucket(&raw, &legacy, 2).await;
    let legacy_before = BucketSnapshot::of(&raw, &legacy).await;

    // Refused objects, one row each: (name, namespace, spec, reason, what the message names).
    // Names outside the admin's prefix are refused before any S3 call; an adoption needs
    // both the spec's request and the admin's list.
    let outside_prefix = format!("{prefix:?}");
    let refusals: [RefusalRow; 3] = [
        (
            "outside",
            &evil_ubs,
            json!({"bucketName": unique_name("outside")}),
            "InvalidSpec",
            &["spec.bucketName", &outside_prefix],
        ),
        (
            "not-asking",
            &shop_ubs,
            json!({"bucketName": legacy}),
            "BucketExists",
            &[],
        ),
        (
            "not-listed",
            &shop_ubs,
            json!({"bucketName": finance, "adoptExistingBucket": true}),
            "AdoptionNotAllowed",
            &[],
        ),
    ];
    for (name, ubs, spec, reason, names) in refusals {
        create(ubs, object(name, spec)).await;
        let refused = wait_not_ready(ubs, name, reason).await;
        let message = &refused.condition("Ready").unwrap().message;
        for wanted in names {
            assert!(
                message.contains(wanted),
                "row {name:?}: {wanted:?} not in {message}"
            );
        }
        delete_and_wait(ubs, name).await;
    }
    assert_eq!(BucketSnapshot::of(&raw, &legacy).await, legacy_before);
    assert_eq!(BucketSnapshot::of(&raw, &finance).await, finance_before);
    let writes_after_attacks = writes().await;
    eprintln!(
        "AWS writes of the operators: {writes_before_attacks} before the attacks, {writes_after_attacks} after"
    );
    assert_eq!(
        writes_after_attacks, writes_before_attacks,
        "AWS writes by the operators while every object they saw was refused"
    );

    create(
        &shop_ubs,
        object(
            "legacy",
            json!({
                "bucketName": legacy, "adoptExistingBucket": true,
                "cors": {"allowedOrigins": ["https://shop.example.com"]},
                "uploads": {"keyPrefix": "photos/", "publicRead": true, "verification": {"enabled": true}},
                "lifecycle": {"expirationDays": 30},
                "tags": {"app": "shop"}
            }),
        ),
    )
    .await;
    let adopted = wait_ready(&shop_ubs, "legacy").await;
    // The control: the same count moves when an operator does write (the adoption's tags,
    // rules and statements).
    let writes_adopted = writes().await;
    eprintln!("AWS writes of the operators once the adoption is Ready: {writes_adopted}");
    assert!(
        writes_adopted > writes_after_attacks,
        "the adoption wrote nothing the operators counted"
    );
    assert_eq!(
        adopted.status.as_ref().unwrap().bucket_name.as_deref(),
        Some(legacy.as_str())
    );
    let during = BucketSnapshot::of(&raw, &legacy).await;
    assert!(
        during.tags.contains(&("team".into(), "finance".into())),
        "{during:?}"
    );
    assert!(
        during.tags.contains(&("app".into(), "shop".into())),
        "{during:?}"
    );
    assert!(
        during
            .tags
            .contains(&("uploadbucket.io/adopted".into(), "true".into())),
        "{during:?}"
    );
    assert!(
        during.lifecycle.contains("finance-archive")
            && during.lifecycle.contains("uploadbucket-expire-uploads"),
        "{}",
        during.lifecycle
    );
    assert!(
        during.cors.contains("finance-app") && during.cors.contains("https://shop.example.com"),
        "{}",
        during.cors
    );
    let policy = during.policy.clone().unwrap_or_default();
    assert!(
        policy.contains("FinanceAuditorsRead") && policy.contains("UploadBucketPublicRead"),
        "{policy}"
    );
    assert_eq!(during.versioning, "Enabled");
    assert_eq!(during.objects, legacy_before.objects);

    // Released: exactly as it was before adoption, every object kept.
    delete_and_wait(&shop_ubs, "legacy").await;
    assert_eq!(BucketSnapshot::of(&raw, &legacy).await, legacy_before);

    // The legitimate tenant still has its bucket and data.
    assert_eq!(
        BucketSnapshot::of(&raw, &avatars_bucket).await,
        avatars_before
    );
    delete_and_wait(&shop_ubs, "avatars").await;
}

//! One operator for many tenants, against the operator binary on the real API server and Ceph
//! RGW (S3 and IAM), with RGW behind a proxy that misbehaves on purpose
//! ([`StoreProxy`]): what a new object costs in AWS requests, that one namespace whose calls
//! hang cannot stall another, and that a throttling store slows the operator down without
//! losing or doubling anything. The tight figures (p99 over many tries, 10,000 objects) are
//! the scale script's (tests/scale.sh); the bounds here are loose enough for a shared 2-core
//! machine.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use uploadbucket_tests::cluster::{Operator, create_upload_bucket, wait_ready};
use uploadbucket_tests::fleet::{Fleet, fairness, wait_all_ready};
use uploadbucket_tests::store_proxy::{Misbehaviour, StoreProxy};

/// The operator's AWS requests to `service` so far (reads and writes).
async fn requests(operator: &Operator, service: &str, kind: &str) -> u64 {
    operator
        .metric(&format!(
            "uploadbucket_aws_requests_total{{service=\"{service}\",kind=\"{kind}\"}}"
        ))
        .await
}

/// The operator's AWS requests to `service` made by passes of objects not Ready yet.
async fn until_ready(operator: &Operator, service: &str) -> u64 {
    operator
        .metric(&format!(
            "uploadbucket_aws_requests_until_ready_total{{service=\"{service}\"}}"
        ))
        .await
}

/// A new object (CORS, an IRSA role) costs at most 10 S3 and 4 IAM requests until it is
/// Ready, reads and writes together, all counted as made until Ready; the passes its own
/// writes bring back (its status, its outputs ConfigMap) cost none; an annotation forces a
/// full pass, which reads every setting and writes nothing, and, the object Ready, is not
/// counted as made until Ready.
#[tokio::test]
async fn a_new_object_is_ready_within_ten_s3_and_four_iam_requests() {
    let test = "fleet_fairness::a_new_object_is_ready_within_ten_s3_and_four_iam_requests";
    let Some(f) = Fleet::new(test, "ub-calls").await else {
        return;
    };
    let operator = f.operator();
    let ubs = f.ubs();
    create_upload_bucket(
        &ubs,
        "photos",
        json!({"cors": {"allowedOrigins": ["https://shop.example.com"]}, "serviceAccountNames": ["web"], "deletionPolicy": "Delete"}),
    )
    .await;
    wait_ready(&ubs, "photos").await;
    operator.settled().await;
    let (s3r, s3w) = (
        requests(&operator, "s3", "read").await,
        requests(&operator, "s3", "write").await,
    );
    let (iamr, iamw) = (
        requests(&operator, "iam", "read").await,
        requests(&operator, "iam", "write").await,
    );
    eprintln!(
        "until Ready and settled: S3 {s3r} reads + {s3w} writes, IAM {iamr} reads + {iamw} writes"
    );
    assert!(
        s3w > 0 && iamw > 0,
        "the object was provisioned through the counted clients"
    );
    assert!(s3r + s3w <= 10, "S3: {s3r} reads + {s3w} writes");
    assert!(iamr + iamw <= 4, "IAM: {iamr} reads + {iamw} writes");
    // The object's passes before Ready made every request so far.
    assert_eq!(until_ready(&operator, "s3").await, s3r + s3w);
    assert_eq!(until_ready(&operator, "iam").await, iamr + iamw);
    assert!(
        operator
            .metric_reaching("uploadbucket_reconciles_unchanged_total", 1)
            .await
            >= 1,
        "the pass its own status write brought back was told apart"
    );

    // An annotation forces a full pass: it reads every setting and writes nothing.
    let passes = operator.metric("uploadbucket_reconciles_total").await;
    ubs.patch(
        "photos",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"example.com/touched": "1"}}})),
    )
    .await
    .unwrap();
    operator
        .metric_reaching("uploadbucket_reconciles_total", passes + 1)
        .await;
    operator.settled().await;
    assert!(
        requests(&operator, "s3", "read").await > s3r,
        "the forced pass read the bucket's settings"
    );
    assert_eq!(requests(&operator, "s3", "write").await, s3w, "no S3 write");
    assert_eq!(
        requests(&operator, "iam", "write").await,
        iamw,
        "no IAM write"
    );
    assert_eq!(
        (
            until_ready(&operator, "s3").await,
            until_ready(&operator, "iam").await
        ),
        (s3r + s3w, iamr + iamw),
        "the full pass of a Ready object is not counted as made until Ready"
    );
    f.cleanup(operator).await;
}

/// Namespace A holds 24 objects whose every AWS call hangs (the store never answers for
/// their buckets and roles); the operator runs 4 reconciles at once. Namespace B's new
/// objects are still Ready within seconds: A holds at most its share of the slots (3 of 4),
/// a hung call holds a slot only as long as its timeout (2 attempts of 2 s here), and A's
/// failing objects back off, so their request rate stays bounded. (With the share set to all
/// 4 slots, the rule broken, B's first object waited 69 s.)
#[tokio::test]
async fn a_namespace_whose_calls_hang_does_not_stall_another() {
    let test = "fleet_fairness::a_namespace_whose_calls_hang_does_not_stall_another";
    const A: usize = 24;
    let Some(seen) = fairness(
        test,
        "ub-fair",
        &[("hang", A)],
        3,
        &[
            ("UPLOADBUCKET_MAX_CONCURRENT_RECONCILES", "4"),
            ("UPLOADBUCKET_AWS_ATTEMPT_TIMEOUT_SECONDS", "2"),
            ("UPLOADBUCKET_AWS_MAX_ATTEMPTS", "2"),
        ],
    )
    .await
    else {
        return;
    };
    eprintln!(
        "B's objects Ready after {:?}, with A's {A} objects hanging; A's requests {:.1}/s",
        seen.waits, seen.a_rate
    );
    for w in &seen.waits {
        assert!(
            *w < Duration::from_secs(20),
            "B waited {w:?} behind A's hung calls: {:?}",
            seen.waits
        );
    }
    // Each pass stops at its first call (2 attempts), then the object backs off (1 s, 2 s,
    // 4 s, ... per object), and A holds at most 3 slots.
    assert!(
        seen.a_rate <= A as f64 * 2.0 / 4.0,
        "{:.1} requests/s for {A} failing objects",
        seen.a_rate
    );
}

/// The store admits 5 requests a second and throttles the rest (S3's `503 SlowDown`, IAM's
/// `Throttling`), while 10 new objects want about 110. The SDK's adaptive retries slow the
/// operator to what the store takes: every object becomes Ready with exactly one bucket and
/// one role, and every request the operator counted reached the store's proxy.
#[tokio::test]
async fn a_throttling_store_slows_the_operator_without_losing_or_doubling_anything() {
    let test =
        "fleet_fairness::a_throttling_store_slows_the_operator_without_losing_or_doubling_anything";
    let Some(mut f) = Fleet::new(test, "ub-throttle").await else {
        return;
    };
    let proxy = StoreProxy::start(
        &f.server.endpoint,
        Misbehaviour {
            admit_per_second: 5.0,
            ..Default::default()
        },
    )
    .await;
    f.set("UPLOADBUCKET_S3_ENDPOINT", &proxy.endpoint);
    f.set("UPLOADBUCKET_IAM_ENDPOINT", &proxy.endpoint);
    let operator = f.operator();
    const N: usize = 10;
    f.create(N).await;
    wait_all_ready(&f.ubs(), 180).await;
    f.assert_owned_once(N).await;
    operator.settled().await;
    let sent = operator.aws_requests(None).await;
    let seen = proxy
        .tally
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    eprintln!(
        "{N} objects: {sent} requests sent, {} throttled, {} forwarded",
        proxy.throttled(),
        proxy.forwarded()
    );
    assert!(
        proxy.throttled() >= N as u64,
        "the store throttled: {}",
        proxy.throttled()
    );
    assert_eq!(
        sent, seen,
        "every request the operator counted reached the store"
    );
    f.cleanup(operator).await;
}

//! The operator binary under faults, against the real API server and Ceph RGW (S3 and IAM),
//! with RGW behind a proxy the test takes down: what happens to objects reconciling when the
//! store goes away, how hard the operator knocks meanwhile, and that nothing is made twice.

use std::time::Duration;

use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use uploadbucket_tests::CuttableProxy;
use uploadbucket_tests::cluster::{wait_for, wait_ready};
use uploadbucket_tests::fleet::{
    Fleet, buckets_named, not_ready, wait_all_deleted, wait_all_ready, wait_cors_max_age,
};

/// 50 UploadBuckets are created and RGW goes away while they reconcile, for 30 s. The
/// operator backs off (each object's retries double from 1 s; the SDK's own retries come on
/// top) instead of hammering, the failures are counted by reason, and once RGW is back every
/// object becomes Ready with exactly one bucket (carrying its uid) and one role.
#[tokio::test]
async fn an_rgw_outage_while_50_objects_reconcile_ends_with_each_ready_once() {
    let test = "faults::an_rgw_outage_while_50_objects_reconcile_ends_with_each_ready_once";
    let Some(mut f) = Fleet::new(test, "ub-outage").await else {
        return;
    };
    let proxy =
        CuttableProxy::start(f.server.endpoint.trim_start_matches("http://").to_owned()).await;
    let via = format!("http://127.0.0.1:{}", proxy.port);
    f.set("UPLOADBUCKET_S3_ENDPOINT", &via);
    f.set("UPLOADBUCKET_IAM_ENDPOINT", &via);
    let operator = f.operator();
    let ubs = f.ubs();
    const N: usize = 50;
    f.create(N).await;
    // Some are mid-way when RGW goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.down(true);
    let reconciles = || operator.metric("uploadbucket_reconciles_total");
    let (sent, passes) = (operator.aws_requests(None).await, reconciles().await);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (sent, passes) = (
        operator.aws_requests(None).await - sent,
        reconciles().await - passes,
    );
    proxy.down(false);
    let metrics = operator.metrics().await;
    let failures: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("uploadbucket_reconcile_failures_total{"))
        .collect();
    eprintln!("during the 30 s outage: {passes} reconciles, {sent} requests; {failures:?}");
    // Backoff from 1 s doubling: at most 6 passes per object in 30 s (1+2+4+8+16 s apart;
    // events in between, such as its own status write, wait for it); a pass stops at its
    // first failed call, which the SDK tries at most 3 times.
    assert!(
        passes <= (N * 6) as u64,
        "{passes} reconciles in 30 s for {N} objects"
    );
    assert!(
        sent <= passes * 3,
        "{sent} requests for {passes} reconciles"
    );
    assert!(
        failures
            .iter()
            .any(|l| l.contains(r#"reason="AwsApiError""#) && !l.ends_with(" 0")),
        "the outage shows in the failure metrics as AwsApiError: {failures:?}"
    );

    // Back: every object Ready (transient backoff is capped at 60 s).
    wait_all_ready(&ubs, 120).await;
    f.assert_owned_once(N).await;

    ubs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    wait_all_deleted(&ubs).await;
    f.assert_owned_once(0).await;
    f.cleanup(operator).await;
}

/// The operator is killed (SIGKILL: no clean-up, no last status write) twice while it creates
/// 50 UploadBuckets, and once while they are being deleted; each time a new one starts.
/// Everything converges, and at every end state RGW holds exactly one bucket and one role per
/// object: a bucket created just before a kill is recognised as the object's own afterwards
/// (its name carries the uid's hash and status recorded the intent before CreateBucket), not
/// refused as someone else's, nor made again under another name.
#[tokio::test]
async fn sigkill_mid_creation_and_mid_deletion_leaves_one_bucket_and_role_per_object() {
    let test =
        "faults::sigkill_mid_creation_and_mid_deletion_leaves_one_bucket_and_role_per_object";
    let Some(f) = Fleet::new(test, "ub-kill").await else {
        return;
    };
    const N: usize = 50;
    let ubs = f.ubs();
    f.create(N).await;
    let mut operator = f.operator();
    // Half-made at a kill: a bucket exists, its object is not Ready yet.
    let mut half_made = 0;
    for at in [5, 25] {
        let ready = wait_for(&format!("{at} of {N} Ready"), 120, || {
            let ubs = ubs.clone();
            async move {
                let waiting = not_ready(&ubs).await;
                let ready = N - waiting.len();
                (ready >= at).then_some(ready)
            }
        })
        .await;
        drop(operator); // SIGKILL
        let buckets = buckets_named(&f.server, &f.prefix).await.len();
        eprintln!("killed with {ready} Ready and {buckets} buckets in RGW");
        assert!(ready < N, "the kill came after all {N} were Ready");
        half_made += buckets.saturating_sub(ready);
        operator = f.operator();
    }
    assert!(
        half_made > 0,
        "no kill landed between a CreateBucket and Ready"
    );
    wait_all_ready(&ubs, 120).await;
    f.assert_owned_once(N).await;

    ubs.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    let left = wait_for("10 of 50 deleted", 120, || {
        let ubs = ubs.clone();
        async move {
            let left = ubs.list(&ListParams::default()).await.ok()?.items.len();
            (left <= N - 10).then_some(left)
        }
    })
    .await;
    drop(operator); // SIGKILL
    let buckets = buckets_named(&f.server, &f.prefix).await.len();
    eprintln!("killed with {left} objects left and {buckets} buckets in RGW");
    assert!(left > 0, "the kill came after all {N} were deleted");
    let operator = f.operator();
    wait_all_deleted(&ubs).await;
    f.assert_owned_once(0).await;
    f.cleanup(operator).await;
}

/// 200 spec edits to one object as fast as the API server takes them: the controller
/// coalesces them (it reconciles the latest spec, not each edit), each pass writes only
/// what changed since the last, and the bucket ends with the last edit. Then 200 edits that
/// change no spec (a label): no AWS write at all.
#[tokio::test]
async fn a_burst_of_200_edits_is_coalesced_and_writes_follow_real_changes() {
    let test = "faults::a_burst_of_200_edits_is_coalesced_and_writes_follow_real_changes";
    let Some(f) = Fleet::new(test, "ub-burst").await else {
        return;
    };
    let ubs = f.ubs();
    let operator = f.operator();
    f.create(1).await;
    wait_ready(&ubs, "b00").await;
    let (passes0, writes0) = operator.settled().await;
    let started = std::time::Instant::now();
    for i in 1..=200 {
        ubs.patch(
            "b00",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"cors": {"maxAgeSeconds": i}}})),
        )
        .await
        .unwrap();
    }
    let took = started.elapsed();
    wait_cors_max_age(&f, "b00", 200, 60).await;
    let (passes1, writes1) = operator.settled().await;
    let (passes, writes) = (passes1 - passes0, writes1 - writes0);
    eprintln!("200 edits in {took:?}: {passes} reconciles, {writes} AWS writes");
    assert!(passes < 100, "{passes} reconciles for 200 edits");
    assert!(
        (1..=passes).contains(&writes),
        "{writes} AWS writes in {passes} reconciles: one CORS write at most per pass"
    );
    let ub = ubs.get("b00").await.unwrap();
    assert_eq!(
        ub.status.as_ref().unwrap().observed_generation,
        ub.metadata.generation
    );

    for i in 1..=200 {
        ubs.patch(
            "b00",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": i.to_string()}}})),
        )
        .await
        .unwrap();
    }
    let (passes2, writes2) = operator.settled().await;
    eprintln!(
        "200 label edits: {} reconciles, {} AWS writes",
        passes2 - passes1,
        writes2 - writes1
    );
    assert_eq!(writes2, writes1, "a label edit wrote to AWS");
    assert!(passes2 - passes1 < 100, "label edits not coalesced");
    f.cleanup(operator).await;
}

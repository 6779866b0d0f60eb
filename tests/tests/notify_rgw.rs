//! Upload events on Ceph RGW (`spec.notifications.httpEndpoint`): the operator's code keeps a
//! topic pushing to the app's HTTP endpoint and a bucket notification for ObjectCreated under
//! the key prefix; the app gets one event per upload there and none elsewhere; deleting the
//! UploadBucket removes both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use uploadbucket_operator::crd::{DeletionPolicy, UploadBucket, UploadBucketSpec};
use uploadbucket_tests::{s3_server, unique_name};

/// An HTTP receiver collecting the JSON bodies posted to it.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = Router::new().route(
        "/events",
        post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap_or(Value::String(body)));
                "ok"
            }
        }),
    );
    let (listener, base) = uploadbucket_tests::local_listener().await;
    uploadbucket_tests::serve(listener, app);
    let url = format!("{base}/events");
    (url, got)
}

/// The `bucket/key` of the ObjectCreated events received so far, in the order they came.
fn created_keys(got: &Mutex<Vec<Value>>) -> Vec<String> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|e| e["Records"].as_array().cloned().unwrap_or_default())
        .filter(|r| {
            r["eventName"]
                .as_str()
                .is_some_and(|n| n.starts_with("ObjectCreated"))
        })
        .filter_map(|r| {
            let bucket = r["s3"]["bucket"]["name"].as_str()?;
            let key = r["s3"]["object"]["key"].as_str()?;
            Some(format!("{bucket}/{key}"))
        })
        .collect()
}

/// Waits (up to 30 s) for the event of `marker`, a `bucket/key` uploaded after the ones a
/// check is about; the events received until then, in order, the marker's last. RGW pushes a
/// non-persistent topic's event before it answers the upload, so an event of an earlier upload
/// arrives before the marker's: what has not come by then is not coming.
async fn events_until(got: &Mutex<Vec<Value>>, marker: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = created_keys(got);
        if let Some(at) = keys.iter().position(|k| k == marker) {
            return keys[..=at].to_vec();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event for the marker {marker} within 30 s; events so far: {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn put(raw: &aws_sdk_s3::Client, bucket: &str, key: &str) {
    raw.put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from_static(b"\xff\xd8\xff\xe0"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PUT {bucket}/{key}: {e:?}"));
}

#[tokio::test]
async fn the_app_hears_of_each_upload_under_the_prefix_until_the_object_goes() {
    let Some(server) =
        s3_server("the_app_hears_of_each_upload_under_the_prefix_until_the_object_goes")
    else {
        return;
    };
    let (url, got) = receiver().await;
    let name = unique_name("ub-notify");
    let spec: UploadBucketSpec = serde_json::from_value(json!({
        "bucketName": name,
        "notifications": {"httpEndpoint": url},
    }))
    .unwrap();
    let mut ub = UploadBucket::new("announced", spec);
    ub.metadata.namespace = Some("e2e".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let (buckets, counter) = server.buckets().await;
    let defaults = uploadbucket_tests::defaults(&server);
    let report = uploadbucket_tests::provision(&buckets, &ub, &defaults)
        .await
        .expect("provision");
    assert!(report.changed.contains(&"notifications"), "{report:?}");
    // Read back as written: the second pass writes nothing.
    uploadbucket_tests::assert_second_pass_writes_nothing(&buckets, &ub, &defaults, &counter).await;

    let raw = server.admin_client().await;
    // Outside the prefix, between two under it; then a marker under it.
    for key in [
        "uploads/a.jpg",
        "elsewhere/b.jpg",
        "uploads/c.jpg",
        "uploads/marker.jpg",
    ] {
        put(&raw, &name, key).await;
    }
    assert_eq!(
        events_until(&got, &format!("{name}/uploads/marker.jpg")).await,
        ["uploads/a.jpg", "uploads/c.jpg", "uploads/marker.jpg"].map(|k| format!("{name}/{k}")),
        "one event per upload under the prefix, in order, none elsewhere"
    );

    // Deleting the UploadBucket (Retain) removes the notification and its topic.
    uploadbucket_tests::clean_up(&buckets, &ub, &defaults, DeletionPolicy::Retain, false)
        .await
        .expect("clean up");
    let config = raw
        .get_bucket_notification_configuration()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    assert!(config.topic_configurations().is_empty(), "{config:?}");
    let sdk = server
        .sdk_config(&server.access_key, &server.secret_key)
        .await;
    let sns = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&sdk)
            .endpoint_url(&server.endpoint)
            .build(),
    );
    let topics = sns.list_topics().send().await.unwrap();
    let topic = uploadbucket_operator::aws::s3::topic_name(&name);
    assert!(
        topics.topics().iter().all(|t| t
            .topic_arn()
            .is_none_or(|a| !a.ends_with(&format!(":{topic}")))),
        "topic {topic} deleted: {topics:?}"
    );
    // After it: an upload under the prefix, then a marker in a bucket of the test's own whose
    // notification (a topic of its own, to the same receiver) is still there.
    let marked = unique_name("ub-notify-marker");
    raw.create_bucket().bucket(&marked).send().await.unwrap();
    let marker_topic = sns
        .create_topic()
        .name(unique_name("ub-notify-marker"))
        .attributes("push-endpoint", &url)
        .send()
        .await
        .expect("the marker's topic")
        .topic_arn()
        .expect("its ARN")
        .to_owned();
    raw.put_bucket_notification_configuration()
        .bucket(&marked)
        .notification_configuration(
            aws_sdk_s3::types::NotificationConfiguration::builder()
                .topic_configurations(
                    aws_sdk_s3::types::TopicConfiguration::builder()
                        .id("marker")
                        .topic_arn(&marker_topic)
                        .events(aws_sdk_s3::types::Event::from("s3:ObjectCreated:*"))
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .expect("the marker's notification");
    let before = created_keys(&got).len();
    put(&raw, &name, "uploads/after.jpg").await;
    put(&raw, &marked, "marker.jpg").await;
    assert_eq!(
        events_until(&got, &format!("{marked}/marker.jpg")).await[before..],
        [format!("{marked}/marker.jpg")],
        "no events after the UploadBucket went"
    );
    sns.delete_topic()
        .topic_arn(&marker_topic)
        .send()
        .await
        .expect("delete the marker's topic");
}

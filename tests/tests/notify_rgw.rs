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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, got)
}

/// The keys of the ObjectCreated events received so far.
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
        .filter_map(|r| r["s3"]["object"]["key"].as_str().map(str::to_owned))
        .collect()
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

    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;
    for key in ["uploads/a.jpg", "elsewhere/b.jpg", "uploads/c.jpg"] {
        raw.put_object()
            .bucket(&name)
            .key(key)
            .body(ByteStream::from_static(b"\xff\xd8\xff\xe0"))
            .send()
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while created_keys(&got).len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "events so far: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut keys = created_keys(&got);
    keys.sort();
    assert_eq!(
        keys,
        ["uploads/a.jpg", "uploads/c.jpg"],
        "one event per upload under the prefix, none elsewhere"
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
    let before = created_keys(&got).len();
    raw.put_object()
        .bucket(&name)
        .key("uploads/after.jpg")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        created_keys(&got).len(),
        before,
        "no events after the UploadBucket went"
    );
}

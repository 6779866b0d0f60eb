//! What the signer adds to a request, without the kernel: the router (`app(state)`) called
//! in-process with the benchmark's `POST /uploads` body, against the unsigned exchange
//! (`POST /bench/ceiling`: the same body read the same way, an answer of the same size,
//! through the same middleware). No sockets and no HTTP parsing, so the difference between
//! the two is the handler's own work (parse, checks, key, presign, answer); tests/bench.sh
//! prints it beside the wrk figures, where the kernel and the load generator come on top.
//!
//! `cargo bench -p uploadbucket-sidecar --bench handler`.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use tower::ServiceExt as _;
use uploadbucket_sidecar::config::{Config, S3Backend};
use uploadbucket_sidecar::credentials::StaticCredentials;
use uploadbucket_sidecar::presign::{Credentials, Endpoint, Presigner};
use uploadbucket_sidecar::store::S3Store;
use uploadbucket_sidecar::{AppState, app};

/// The body tests/bench.sh posts.
const BODY: &str = r#"{"filename":"cat.jpg","contentType":"image/jpeg","size":1048576}"#;

fn state() -> AppState {
    let config = Config {
        bucket: "bench-bucket".into(),
        region: Some("eu-west-1".into()),
        ..Config::default()
    }
    .validate(None)
    .expect("a valid configuration");
    let creds = StaticCredentials::new(Credentials {
        access_key_id: "AKIABENCHEXAMPLE0000".into(),
        secret_access_key: "benchsecretbenchsecretbenchsecret00000000".into(),
        session_token: None,
        expiry: None,
    });
    // Never built: a PUT URL makes no S3 call.
    let store = S3Store::new(
        || unreachable!("POST /uploads makes no S3 call"),
        "bench-bucket",
        S3Backend::default(),
    );
    let presigner = Presigner::new("bench-bucket", "eu-west-1", Endpoint::aws("eu-west-1"));
    AppState::new(config, presigner, Arc::new(creds), Arc::new(store))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let state = state();
    // The exchange answers as many bytes as `/uploads` does.
    let answer = rt.block_on(async {
        let body = post(app(state.clone()), "/uploads").await;
        to_bytes(body, usize::MAX).await.expect("the answer").len()
    });
    let router = app(state.with_bench_ceiling(answer));
    let mut group = c.benchmark_group("handler");
    group.bench_function("uploads", |b| {
        b.iter(|| rt.block_on(post(router.clone(), "/uploads")))
    });
    group.bench_function("exchange", |b| {
        b.iter(|| rt.block_on(post(router.clone(), "/bench/ceiling")))
    });
    group.finish();
}

/// The benchmark's body POSTed to `path` through `router`: the answer's body (201 checked).
async fn post(router: Router, path: &'static str) -> Body {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .expect("a request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED, "{path}");
    response.into_body()
}

criterion_group!(benches, bench);
criterion_main!(benches);

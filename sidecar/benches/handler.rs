//! What the signer adds to a request, without the kernel: the router (`app(state)`) called
//! in-process with the benchmark's `POST /uploads` body, against the unsigned exchange
//! (`POST /bench/ceiling`: the same body read the same way, an answer of the same size,
//! through the same middleware). No sockets and no HTTP parsing, so the difference between
//! the two is the handler's own work (parse, checks, key, presign, answer); tests/bench.sh
//! prints it beside the wrk figures, where the kernel and the load generator come on top.
//!
//! `cargo bench -p uploadbucket-sidecar --bench handler`.

use std::sync::Arc;

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
    let answer = rt.block_on(call(&state, "/uploads")).len();
    let state = state.with_bench_ceiling(answer);
    let router = app(state);
    let call_router = |path: &'static str| {
        let router = router.clone();
        async move {
            let request = Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(BODY))
                .expect("a request");
            let response = router.oneshot(request).await.expect("infallible");
            assert_eq!(response.status(), StatusCode::CREATED, "{path}");
            response.into_body()
        }
    };
    let mut group = c.benchmark_group("handler");
    group.bench_function("uploads", |b| {
        b.iter(|| rt.block_on(call_router("/uploads")))
    });
    group.bench_function("exchange", |b| {
        b.iter(|| rt.block_on(call_router("/bench/ceiling")))
    });
    group.finish();
}

/// One `POST path` through a fresh router: the answer's bytes.
async fn call(state: &AppState, path: &str) -> Vec<u8> {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(BODY))
        .expect("a request");
    let response = app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::CREATED, "{path}");
    to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("the answer")
        .to_vec()
}

criterion_group!(benches, bench);
criterion_main!(benches);

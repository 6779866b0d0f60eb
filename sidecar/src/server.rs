//! The HTTP surface: `app(state) -> Router`, so tests drive it with `oneshot` and the binary
//! serves it. Side effects live behind the trait objects in [`AppState`] (`crate::state`).

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{AppError, ErrorCode};
use crate::json::JsonBody;
use crate::metrics::Route;
use crate::state::AppState;
use crate::{multipart, uploads};

/// The router.
pub fn app(state: AppState) -> Router {
    let multipart_routes = Router::new()
        .route("/", post(multipart::create))
        .route(
            "/{upload_id}",
            get(multipart::list).delete(multipart::abort),
        )
        .route("/{upload_id}/batch", get(multipart::sign_batch))
        .route("/{upload_id}/complete", post(multipart::complete))
        .route("/{upload_id}/{part}", get(multipart::sign_one));
    let mut router = Router::new();
    if state.bench_ceiling.is_some() {
        router = router.route("/bench/ceiling", post(bench_ceiling));
    }
    // Every route that starts, continues or verifies an upload: with tokens required, none
    // runs without one.
    let mut upload_routes = Router::new()
        .route("/uploads", post(uploads::create).get(uploads::legacy))
        .route("/uploads/verify", post(crate::verify::verify))
        .route("/s3/params", get(uploads::uppy_params))
        .nest("/s3/multipart", multipart_routes.clone())
        .nest("/uploads/multipart", multipart_routes);
    // Only where tokens are required: otherwise a request pays nothing for it.
    if let Some(auth) = &state.auth {
        upload_routes = upload_routes.route_layer(middleware::from_fn_with_state(
            auth.clone(),
            crate::auth::authenticate,
        ));
    }
    router
        .merge(upload_routes)
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// The metrics-only listener (`UPLOADBUCKET_METRICS_LISTEN`, reachable from outside the pod
/// for Prometheus): `GET /metrics` and nothing else, so exposing it signs nothing. Scrapes
/// are not counted as requests.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async {
            AppError::with_status(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "this listener serves GET /metrics only; the signing API is on the pod's loopback",
            )
        })
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::with_status(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; see POST /uploads, GET /uploads, /s3/params and /s3/multipart",
    )
}

/// `POST /bench/ceiling`: the body read as `POST /uploads` reads it, a stored answer of the
/// same size as its answer, nothing signed. Served only when benchmarking.
async fn bench_ceiling(State(state): State<AppState>, body: JsonBody) -> Response {
    drop(body);
    crate::json::response(
        StatusCode::CREATED,
        state.bench_ceiling.clone().unwrap_or_default(),
    )
}

/// Ready when credentials can be had.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    uploads::credentials(&state).await?;
    Ok("ready\n")
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Counts and times every request by route and outcome.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Route::of(p.as_str()))
        .unwrap_or(Route::Other);
    let route = match (route, req.method() == axum::http::Method::GET) {
        (Route::Uploads, true) => Route::LegacyUploads,
        (r, _) => r,
    };
    let started = Instant::now();
    let response = next.run(req).await;
    state
        .metrics
        .record(route, response.status().as_u16(), started.elapsed());
    response
}

/// Resolves on SIGTERM (pod shutdown) or Ctrl-C.
pub async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("Shutting down");
}

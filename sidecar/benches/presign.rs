//! Presigning throughput, three ways in one run:
//! - `fast`: this crate's signer (URL building, canonical request, cached signing key);
//! - `cached_key_limit`: only the cryptography any SigV4 query signer with a cached key must
//!   do (SHA-256 of an equal canonical request, one HMAC, hex) — the ceiling;
//! - `sdk`: aws-sdk-s3's `presigned()` for the same request;
//! - `fast_two_threads` and `credentials_two_threads`: the fast signer, and the credentials
//!   cache's read (`ready`), on two threads at once, time per call on each: against `fast`
//!   and `credentials`, what sharing costs the sidecar's worker threads (a lock or reference
//!   count written on every call bounces its cache line between the cores).
//!
//! `cargo bench -p uploadbucket-sidecar --bench presign`; tests/bench.sh prints the ratios.

use std::time::{Duration, Instant, UNIX_EPOCH};

use aws_sdk_s3::presigning::PresigningConfig;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uploadbucket_sidecar::credentials::{CachedCredentials, CredentialSource};
use uploadbucket_sidecar::presign::{Credentials, Endpoint, PresignInput, Presigner};

fn creds() -> Credentials {
    Credentials {
        access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN".repeat(20)),
        expiry: None,
    }
}

const KEY: &str = "uploads/0f8fad5bd9cb469fa16570867728950e.jpg";

fn bench(c: &mut Criterion) {
    let when = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let presigner = Presigner::new(
        "shop-avatars-3f9c1a2b",
        "eu-west-1",
        Endpoint::aws("eu-west-1"),
    );
    let creds = creds();
    let input = PresignInput {
        method: "PUT",
        key: KEY,
        params: &[("x-id", "PutObject")],
        headers: &[
            ("content-type", "image/jpeg"),
            ("content-length", "1048576"),
        ],
        expires: Duration::from_secs(300),
    };
    let mut group = c.benchmark_group("presign");

    group.bench_function("fast", |b| {
        b.iter(|| presigner.presign(&creds, when, std::hint::black_box(&input)))
    });
    group.bench_function("fast_two_threads", |b| {
        b.iter_custom(|iters| {
            on_two_threads(iters, || {
                presigner.presign(&creds, when, std::hint::black_box(&input))
            })
        })
    });

    // The ceiling: hash a canonical request of the same size, HMAC the string to sign with
    // an already-keyed HMAC, hex-encode. Nothing else.
    let canonical = format!(
        "PUT\n/{KEY}\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLEEXAMPLE12%2F20231114%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20231114T221320Z&X-Amz-Expires=300&X-Amz-Security-Token={}&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&x-id=PutObject\ncontent-length:1048576\ncontent-type:image/jpeg\nhost:shop-avatars-3f9c1a2b.s3.eu-west-1.amazonaws.com\n\ncontent-length;content-type;host\nUNSIGNED-PAYLOAD",
        creds.session_token.as_deref().unwrap_or_default()
    );
    let keyed = Hmac::<Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    group.bench_function("cached_key_limit", |b| {
        b.iter(|| {
            let hash = Sha256::digest(std::hint::black_box(canonical.as_bytes()));
            let sts = format!(
                "AWS4-HMAC-SHA256\n20231114T221320Z\n20231114/eu-west-1/s3/aws4_request\n{}",
                hex::encode(hash)
            );
            let mut mac = keyed.clone();
            mac.update(sts.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        })
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-west-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &creds.access_key_id,
                &creds.secret_access_key,
                creds.session_token.clone(),
                None,
                "bench",
            ))
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build(),
    );
    // The credentials cache the signer reads on every request, loaded once (keys that do
    // not expire).
    let cache = CachedCredentials::new(
        aws_credential_types::provider::SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new(
                &creds.access_key_id,
                &creds.secret_access_key,
                creds.session_token.clone(),
                None,
                "bench",
            ),
        ),
        Duration::from_secs(360),
    );
    rt.block_on(cache.credentials()).unwrap();
    group.bench_function("credentials", |b| b.iter(|| cache.ready()));
    group.bench_function("credentials_two_threads", |b| {
        b.iter_custom(|iters| on_two_threads(iters, || cache.ready()))
    });

    group.bench_function("sdk", |b| {
        b.iter(|| {
            rt.block_on(async {
                let cfg = PresigningConfig::builder()
                    .start_time(when)
                    .expires_in(Duration::from_secs(300))
                    .build()
                    .unwrap();
                client
                    .put_object()
                    .bucket("shop-avatars-3f9c1a2b")
                    .key(KEY)
                    .content_type("image/jpeg")
                    .content_length(1_048_576)
                    .presigned(cfg)
                    .await
                    .unwrap()
                    .uri()
                    .to_owned()
            })
        })
    });
    group.finish();
}

/// Runs `f` `iters` times on each of two threads at once; the time until both are done.
fn on_two_threads<R>(iters: u64, f: impl Fn() -> R + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..iters {
                    std::hint::black_box(f());
                }
            });
        }
    });
    start.elapsed()
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);

//! The fast signer's URLs are byte-identical to aws-sdk-s3's presigner for the same inputs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::presigning::PresigningConfig;
use proptest::prelude::*;
use uploadbucket_sidecar::presign::{Credentials, Endpoint, PresignInput, Presigner};

struct Case {
    region: &'static str,
    endpoint: Option<&'static str>,
    path_style: bool,
    token: Option<&'static str>,
}

const CASES: [Case; 3] = [
    Case {
        region: "eu-west-1",
        endpoint: None,
        path_style: false,
        token: None,
    },
    Case {
        region: "us-east-1",
        endpoint: Some("http://127.0.0.1:7480"),
        path_style: true,
        token: Some("FwoGZXIvYXdzE+/token=="),
    },
    Case {
        region: "ap-southeast-2",
        endpoint: Some("https://minio.example.com:9000"),
        path_style: true,
        token: None,
    },
];

fn sdk(case: &Case) -> aws_sdk_s3::Client {
    let mut b = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(case.region))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "AKIAEXAMPLE123",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCY",
            case.token.map(String::from),
            None,
            "t",
        ))
        .force_path_style(case.path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired);
    if let Some(e) = case.endpoint {
        b = b.endpoint_url(e);
    }
    aws_sdk_s3::Client::from_conf(b.build())
}

fn ours(case: &Case) -> (Presigner, Credentials) {
    let endpoint = match case.endpoint {
        Some(e) => Endpoint::parse(e, case.path_style).unwrap(),
        None => Endpoint::aws(case.region),
    };
    (
        Presigner::new("my-bucket", case.region, endpoint),
        Credentials {
            access_key_id: "AKIAEXAMPLE123".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCY".into(),
            session_token: case.token.map(String::from),
            expiry: None,
        },
    )
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// The SDK's presigning: from `when`, for `expires` seconds.
fn presigning(when: SystemTime, expires: u64) -> PresigningConfig {
    PresigningConfig::builder()
        .start_time(when)
        .expires_in(Duration::from_secs(expires))
        .build()
        .unwrap()
}

/// Our URL for `case`: a PUT of `key` with the query `params`, signing `headers`, from `when`
/// for `expires` seconds.
fn ours_put(
    case: &Case,
    key: &str,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
    (when, expires): (SystemTime, u64),
) -> String {
    let (p, creds) = ours(case);
    let input = PresignInput {
        method: "PUT",
        key,
        params,
        headers,
        expires: Duration::from_secs(expires),
    };
    p.presign(&creds, when, &input)
}

async fn compare_put(
    key: &str,
    content_type: &str,
    size: Option<i64>,
    meta: Option<(&str, &str)>,
    when: SystemTime,
    expires: u64,
) {
    for case in &CASES {
        let mut req = sdk(case)
            .put_object()
            .bucket("my-bucket")
            .key(key)
            .content_type(content_type);
        if let Some(n) = size {
            req = req.content_length(n);
        }
        if let Some((k, v)) = meta {
            req = req.metadata(k, v);
        }
        let expected = req.presigned(presigning(when, expires)).await.unwrap();

        let size_s = size.map(|n| n.to_string());
        let meta_name = meta.map(|(k, _)| format!("x-amz-meta-{k}"));
        let mut headers: Vec<(&str, &str)> = vec![("content-type", content_type)];
        if let Some(s) = &size_s {
            headers.push(("content-length", s));
        }
        if let (Some(name), Some((_, v))) = (&meta_name, meta) {
            headers.push((name, v));
        }
        let got = ours_put(
            case,
            key,
            &[("x-id", "PutObject")],
            &headers,
            (when, expires),
        );
        assert_eq!(got, expected.uri(), "key {key:?} case {}", case.region);
    }
}

async fn compare_part(key: &str, upload_id: &str, part: i32, when: SystemTime) {
    for case in &CASES {
        let expected = sdk(case)
            .upload_part()
            .bucket("my-bucket")
            .key(key)
            .upload_id(upload_id)
            .part_number(part)
            .presigned(presigning(when, 900))
            .await
            .unwrap();
        let part_s = part.to_string();
        let params = [
            ("x-id", "UploadPart"),
            ("partNumber", &part_s),
            ("uploadId", upload_id),
        ];
        let got = ours_put(case, key, &params, &[], (when, 900));
        assert_eq!(got, expected.uri(), "key {key:?} upload {upload_id:?}");
    }
}

#[tokio::test]
async fn tricky_keys_match_the_sdk() {
    let keys = [
        "uploads/plain.jpg",
        "uploads/with space.jpg",
        "uploads/plus+sign.jpg",
        "uploads/percent%20literal.jpg",
        "uploads/ünïcödé/файл.png",
        "uploads/emoji😀🎉.gif",
        "uploads/a=b&c=d?e#f.txt",
        "uploads/~tilde_-.dots..",
        "uploads//double//slash",
        "uploads/*star(paren)'quote'!bang",
        "uploads/tab\tand\u{7f}del",
        "k",
    ];
    for (i, key) in keys.iter().enumerate() {
        compare_put(
            key,
            "image/jpeg",
            Some(1 + i as i64 * 1000),
            None,
            at(1_700_000_000 + i as u64 * 86_399),
            300,
        )
        .await;
        compare_put(
            key,
            "application/octet-stream",
            None,
            Some(("user-id", "42 x")),
            at(1_600_000_000),
            604_800,
        )
        .await;
        compare_part(
            key,
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA+/=",
            1 + i as i32,
            at(1_750_000_000),
        )
        .await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    // The SDK refuses a key that is all whitespace ("A required field was not set"); the
    // sidecar never makes one (its keys are prefix + random id), so such keys are not compared.
    fn any_key_matches_the_sdk(key in "\\PC{1,40}".prop_filter("the SDK refuses all-whitespace keys", |k| !k.trim().is_empty()), secs in 1_500_000_000u64..2_000_000_000, expires in 1u64..604_800, size in proptest::option::of(1i64..5_000_000_000)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(compare_put(&key, "image/png", size, None, at(secs), expires));
    }
}

/// The headers POST /uploads signs besides type and size: `if-none-match: *` always, and a
/// client's `Content-MD5` or SHA-256 checksum when it sends one.
#[tokio::test]
async fn integrity_and_no_overwrite_headers_match_the_sdk() {
    let md5 = "1B2M2Y8AsgTpgAmY7PhCfg==";
    let sha = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
    for (checksum_md5, checksum_sha) in [(None, None), (Some(md5), None), (None, Some(sha))] {
        for case in &CASES {
            let when = at(1_700_000_000);
            let mut req = sdk(case)
                .put_object()
                .bucket("my-bucket")
                .key("uploads/a.jpg")
                .content_type("image/jpeg")
                .content_length(1234)
                .if_none_match("*");
            if let Some(v) = checksum_md5 {
                req = req.content_md5(v);
            }
            if let Some(v) = checksum_sha {
                req = req.checksum_sha256(v);
            }
            let expected = req.presigned(presigning(when, 300)).await.unwrap();
            let mut headers: Vec<(&str, &str)> = vec![
                ("content-type", "image/jpeg"),
                ("if-none-match", "*"),
                ("content-length", "1234"),
            ];
            if let Some(v) = checksum_md5 {
                headers.push(("content-md5", v));
            }
            if let Some(v) = checksum_sha {
                headers.push(("x-amz-checksum-sha256", v));
            }
            let put = [("x-id", "PutObject")];
            let got = ours_put(case, "uploads/a.jpg", &put, &headers, (when, 300));
            assert_eq!(
                got,
                expected.uri(),
                "{checksum_md5:?} {checksum_sha:?} {}",
                case.region
            );
        }
    }
}

//! The env contract round-trips through the real binary: what `Config::to_env` writes (the
//! webhook injects exactly this), `uploadbucket-sidecar config` parses back unchanged.

use uploadbucket_sidecar::config::Config;
use uploadbucket_tests::bin_path;

fn parse_back(env: &[(&'static str, String)]) -> Result<Config, String> {
    let out = std::process::Command::new(bin_path("uploadbucket-sidecar"))
        .arg("config")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run uploadbucket-sidecar config");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("config JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn every_field_round_trips() {
    let configs = [
        Config {
            bucket: "shop-avatars-3f9c1a2b".into(),
            region: Some("eu-west-1".into()),
            listen: "127.0.0.1:8787".parse().unwrap(),
            key_prefix: "avatars/".into(),
            allowed_content_types: vec![
                "image/jpeg".into(),
                "image/*".into(),
                "application/pdf".into(),
            ],
            max_size_bytes: 5 * 1024 * 1024,
            expires_seconds: 600,
            ..Config::default()
        },
        Config {
            bucket: "b".repeat(3),
            region: Some("us-east-1".into()),
            listen: "0.0.0.0:9000".parse().unwrap(),
            key_prefix: String::new(),
            allowed_content_types: vec!["video/*".into()],
            max_size_bytes: 1,
            expires_seconds: 604_800,
            endpoint_url: Some("http://rgw.storage.svc:7480".into()),
            path_style: true,
            allow_non_loopback: true,
            allowed_metadata: vec!["user-id".into(), "album".into()],
            allow_unsized_put: true,
            public_read: true,
            bucket_owner_full_control: true,
            verify: true,
            verify_quarantine: true,
            s3_backend: uploadbucket_sidecar::config::S3Backend::Rgw,
            require_owner: true,
            urls_per_minute: 30,
            max_open_multipart: 3,
            metrics_listen: Some("0.0.0.0:9464".parse().unwrap()),
            jwt: uploadbucket_sidecar::config::JwtConfig {
                issuer: Some("https://login.example.com/".into()),
                audiences: vec!["api://uploads".into(), "spa-client".into()],
                jwks_uri: Some("https://login.example.com/.well-known/jwks.json".into()),
                owner_claim: "email".into(),
                required_claims: vec!["scope=uploads:write".into(), "groups=uploaders".into()],
            },
        },
    ];
    for config in configs {
        let back = parse_back(&config.to_env()).expect("parses");
        assert_eq!(back, config);
    }
}

/// Bucket `b` in eu-west-1 with `set` besides: what `parse_back` refuses, which must name
/// each of `needles`. A row of a refusal table, named `label` in its failure.
fn assert_refused(label: &str, set: &[(&'static str, &str)], needles: &[&str]) {
    let mut env = vec![
        ("UPLOADBUCKET_BUCKET", "b".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
    ];
    env.extend(set.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let err = match parse_back(&env) {
        Ok(config) => panic!("row {label:?} must be refused, parsed {config:?}"),
        Err(err) => err,
    };
    for needle in needles {
        assert!(
            err.contains(needle),
            "row {label:?}: no {needle:?} in {err}"
        );
    }
}

/// A refused setting: (label, variables set, what the refusal must name).
type RefusalRow = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static [&'static str],
);

const ISSUER: (&str, &str) = ("UPLOADBUCKET_JWT_ISSUER", "https://login.example.com/");
const AUDIENCES: (&str, &str) = ("UPLOADBUCKET_JWT_AUDIENCES", "api://uploads");

/// Each bad value, one row: the refusal names the variable and what it allows.
const REFUSALS: &[RefusalRow] = &[
    (
        "expiry over a week",
        &[("UPLOADBUCKET_EXPIRES_SECONDS", "999999")],
        &["UPLOADBUCKET_EXPIRES_SECONDS", "604800"],
    ),
    // The metrics listener may not take the signing API's port.
    (
        "metrics on the API's port, all addresses",
        &[("UPLOADBUCKET_METRICS_LISTEN", "0.0.0.0:8787")],
        &["UPLOADBUCKET_METRICS_LISTEN", "another port"],
    ),
    (
        "metrics on the API's port, loopback",
        &[("UPLOADBUCKET_METRICS_LISTEN", "127.0.0.1:8787")],
        &["UPLOADBUCKET_METRICS_LISTEN", "another port"],
    ),
    (
        "issuer without a scheme",
        &[("UPLOADBUCKET_JWT_ISSUER", "login.example.com")],
        &["UPLOADBUCKET_JWT_ISSUER", "https://"],
    ),
    (
        "issuer without an audience",
        &[ISSUER],
        &["UPLOADBUCKET_JWT_AUDIENCES", "at least one audience"],
    ),
    (
        "audience without an issuer",
        &[AUDIENCES],
        &[
            "UPLOADBUCKET_JWT_AUDIENCES",
            "UPLOADBUCKET_JWT_ISSUER is not set",
        ],
    ),
    (
        "required claim without a value",
        &[
            ISSUER,
            AUDIENCES,
            ("UPLOADBUCKET_JWT_REQUIRED_CLAIMS", "scope"),
        ],
        &["UPLOADBUCKET_JWT_REQUIRED_CLAIMS", "name=value"],
    ),
    (
        "JWKS URI not a URL",
        &[ISSUER, AUDIENCES, ("UPLOADBUCKET_JWT_JWKS_URI", "/keys")],
        &["UPLOADBUCKET_JWT_JWKS_URI", "URL"],
    ),
];

/// Bad worker thread counts, refused naming the flag.
const WORKER_REFUSALS: &[RefusalRow] = &[
    (
        "no worker threads",
        &[("UPLOADBUCKET_WORKER_THREADS", "0")],
        &["--worker-threads"],
    ),
    (
        "too many worker threads",
        &[("UPLOADBUCKET_WORKER_THREADS", "65")],
        &["--worker-threads"],
    ),
    (
        "worker threads not a number",
        &[("UPLOADBUCKET_WORKER_THREADS", "two")],
        &["--worker-threads"],
    ),
];

#[test]
fn a_bad_value_names_the_variable() {
    for (label, set, needles) in REFUSALS {
        assert_refused(label, set, needles);
    }
    let err = parse_back(&[("AWS_REGION", "eu-west-1".to_owned())]).unwrap_err();
    assert!(
        err.contains("UPLOADBUCKET_BUCKET") || err.contains("--bucket"),
        "{err}"
    );
    // AWS_REGION is the region's fallback.
    let c = parse_back(&[
        ("UPLOADBUCKET_BUCKET", "b".to_owned()),
        ("AWS_REGION", "ap-south-1".to_owned()),
    ])
    .unwrap();
    assert_eq!(c.region.as_deref(), Some("ap-south-1"));
}

/// The runtime's worker threads: bounded by `UPLOADBUCKET_WORKER_THREADS` (default 2, so a
/// sidecar on a many-core node does not start a thread per core), and a bad value is refused
/// naming the flag and the range.
#[tokio::test]
async fn worker_threads_follow_the_setting() {
    let base_env = [
        ("UPLOADBUCKET_BUCKET", "b".to_owned()),
        ("AWS_REGION", "eu-west-1".to_owned()),
    ];
    for (label, set, needles) in WORKER_REFUSALS {
        assert_refused(label, set, needles);
    }
    for (setting, want) in [(None, 2), (Some("1"), 1), (Some("5"), 5)] {
        let mut cmd = std::process::Command::new(bin_path("uploadbucket-sidecar"));
        cmd.env_clear()
            .envs(base_env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("UPLOADBUCKET_LISTEN", "127.0.0.1:0")
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("RUST_LOG", "warn,uploadbucket_sidecar::cli=info");
        if let Some(n) = setting {
            cmd.env("UPLOADBUCKET_WORKER_THREADS", n);
        }
        let (child, addrs) =
            uploadbucket_tests::spawn_service(cmd, "sidecar", &["Signer listening"]);
        uploadbucket_tests::wait_healthy(&format!("http://{}", addrs[0])).await;
        let tasks = std::fs::read_dir(format!("/proc/{}/task", child.0.id())).expect("/proc");
        let workers = tasks
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("tokio-r"))
            .count();
        assert_eq!(workers, want, "UPLOADBUCKET_WORKER_THREADS={setting:?}");
    }
}

/// The docs' table of what each `type/*` admits (docs/guides/calling-the-signer.md, "Content
/// types") is the signer's list, type for type.
#[test]
fn the_docs_list_the_wildcard_types() {
    let docs = std::fs::read_to_string(
        uploadbucket_tests::repo_root().join("docs/guides/calling-the-signer.md"),
    )
    .unwrap();
    let section = docs
        .split("## Content types")
        .nth(1)
        .and_then(|s| s.split("\n\n").nth(2))
        .expect("the content types table");
    let mut listed = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let major = cells[1].trim_matches('`').trim_end_matches("/*");
        let subtypes = cells[2].split('`').nth(1).unwrap_or_default();
        for sub in subtypes.split_whitespace() {
            listed.push(format!("{major}/{sub}"));
        }
        if cells[2].contains("Office Open XML") {
            for sub in [
                "presentationml.presentation",
                "spreadsheetml.sheet",
                "wordprocessingml.document",
            ] {
                listed.push(format!("{major}/vnd.openxmlformats-officedocument.{sub}"));
            }
        }
    }
    listed.sort();
    assert_eq!(listed, uploadbucket_sidecar::config::WILDCARD_TYPES);
}

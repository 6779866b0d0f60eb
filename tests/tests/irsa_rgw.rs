//! IRSA end to end on Ceph RGW's IAM and STS. The test plays the cluster's service-account
//! issuer (OIDC discovery + JWKS with an RSA key made by `openssl`, tokens with the claims of
//! a projected service-account token), registers it as the OIDC provider, lets the operator
//! create the UploadBucket's bucket and role, then proves what the role can and cannot do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use axum::Router;
use axum::routing::get;
use base64::Engine as _;
use serde_json::json;
use uploadbucket_operator::aws::BucketRef;
use uploadbucket_operator::aws::iam::{IamApi, IamRoles};
use uploadbucket_operator::controller::role::{
    RoleCleanup, RoleSettings, apply_role, cleanup_role, desired_role,
};
use uploadbucket_operator::crd::{UploadBucket, UploadBucketSpec};
use uploadbucket_sidecar::credentials::{CachedCredentials, CredentialSource};
use uploadbucket_sidecar::presign::{Credentials, Endpoint, PresignInput, Presigner};
use uploadbucket_tests::{
    RequestCounter, S3Server, assert_row, json_of, put_signed_with, s3_server, unique_name,
};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// How RGW logs its reason for refusing AssumeRoleWithWebIdentity.
const STS_LOG: &str = "sts:assume_role_web_identity ";

fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A service-account issuer: RSA key, self-signed certificate, discovery and JWKS.
struct Issuer {
    dir: PathBuf,
    url: String,
    thumbprint: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Issuer {
    async fn start() -> Self {
        let dir = std::env::temp_dir().join(unique_name("ub-issuer"));
        std::fs::create_dir_all(&dir).unwrap();
        openssl(
            &dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "1",
                "-subj",
                "/CN=uploadbucket-test-issuer",
            ],
        );
        let der = openssl(&dir, &["x509", "-in", "cert.pem", "-outform", "DER"]);
        let fp = String::from_utf8(openssl(
            &dir,
            &["x509", "-in", "cert.pem", "-noout", "-fingerprint", "-sha1"],
        ))
        .unwrap();
        let thumbprint = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_ascii_lowercase();
        let modulus = String::from_utf8(openssl(
            &dir,
            &["rsa", "-in", "key.pem", "-noout", "-modulus"],
        ))
        .unwrap();
        let hex_n = modulus.trim().trim_start_matches("Modulus=");
        let n: Vec<u8> = (0..hex_n.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex_n[i..i + 2], 16).unwrap())
            .collect();
        let (listener, url) = uploadbucket_tests::local_listener().await;
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/openid/v1/jwks"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        let jwks = json!({"keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1",
            "n": B64URL.encode(&n), "e": "AQAB",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(&der)],
        }]});
        let router = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { axum::Json(discovery.clone()) }),
            )
            .route(
                "/openid/v1/jwks",
                get(move || async move { axum::Json(jwks.clone()) }),
            );
        let server = uploadbucket_tests::serve(listener, router);
        Issuer {
            dir,
            url,
            thumbprint,
            _server: server,
        }
    }

    /// Registers this issuer as the server's OIDC provider (once per cluster), and the
    /// operator's IRSA settings for it.
    async fn register(&self, server: &S3Server) -> RoleSettings {
        let provider_arn = server
            .register_oidc_provider(&self.url, &self.thumbprint)
            .await;
        RoleSettings {
            trust: uploadbucket_operator::controller::role::Trust::Irsa {
                provider_arn,
                issuer: self.url.trim_start_matches("http://").to_owned(),
            },
            role_path: "/uploadbucket/".into(),
            permissions_boundary: None,
            tag_roles: server.backend.has_role_tags(),
            bucket_account: server.account_id(),
        }
    }

    /// A projected service-account token for `namespace/sa` that expires `expires_in` seconds
    /// from now (in the past when negative). It was issued ten minutes before it expires, and
    /// at least a minute ago: an expired token is as well-formed as a fresh one (`iat` and
    /// `nbf` before `exp`), only late.
    fn token(&self, namespace: &str, sa: &str, audience: &str, expires_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let exp = now + expires_in;
        let issued = (exp - 600).min(now - 60);
        let header = json!({"alg": "RS256", "kid": "k1", "typ": "JWT"});
        let claims = json!({
            "iss": self.url,
            "sub": format!("system:serviceaccount:{namespace}:{sa}"),
            "aud": [audience],
            "iat": issued,
            "nbf": issued,
            "exp": exp,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": sa, "uid": "00000000-0000-0000-0000-000000000001"}},
        });
        let signing_input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let input = self.dir.join(unique_name("jwt"));
        std::fs::write(&input, &signing_input).unwrap();
        let sig = openssl(
            &self.dir,
            &[
                "dgst",
                "-sha256",
                "-sign",
                "key.pem",
                input.to_str().unwrap(),
            ],
        );
        format!("{signing_input}.{}", B64URL.encode(sig))
    }
}

/// What a pod's signer does with `token`: AssumeRoleWithWebIdentity through the signer's own
/// credential cache, so a failed call is tried again as in the signer (RGW answers
/// `BucketAlreadyExists` to a web identity's first sessions while another one creates its
/// shadow user, and tests here run at once and share `shop/web`).
async fn assume(server: &S3Server, role_arn: &str, token: &str) -> Result<Credentials, String> {
    let provider = WebIdentity {
        sts: sts_client(server),
        role_arn: role_arn.to_owned(),
        token: token.to_owned(),
    };
    let cache = CachedCredentials::new(SharedCredentialsProvider::new(provider), Duration::ZERO);
    Ok(Credentials::clone(&*cache.credentials().await?))
}

/// The credentials of a session of `role_arn` for a token of shop/web (the service account
/// the tests allow), which must be given; `what` names the step.
async fn assume_shop_web(
    server: &S3Server,
    issuer: &Issuer,
    role_arn: &str,
    what: &str,
) -> Credentials {
    let token = issuer.token("shop", "web", "sts.amazonaws.com", 600);
    assume(server, role_arn, &token)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// An STS client of the server (no credentials: AssumeRoleWithWebIdentity needs none).
fn sts_client(server: &S3Server) -> aws_sdk_sts::Client {
    let mut conf = aws_sdk_sts::config::Builder::new()
        .behavior_version(aws_sdk_sts::config::BehaviorVersion::latest())
        .region(aws_sdk_sts::config::Region::new("us-east-1"))
        .endpoint_url(&server.endpoint);
    if let Some(http) = server.backend.http_client() {
        conf = conf.http_client(http);
    }
    aws_sdk_sts::Client::from_conf(conf.build())
}

/// The error code with which STS refuses AssumeRoleWithWebIdentity of `role_arn` for `token`.
/// RGW's `BucketAlreadyExists` while another session of the same identity creates its shadow
/// user (see [`assume`]) is a race, not a refusal: that call is made again. A call that
/// succeeds, or fails without an error code (a transport error), fails the test.
async fn sts_refusal(server: &S3Server, role_arn: &str, token: &str, what: &str) -> String {
    let sts = sts_client(server);
    for _ in 0..5 {
        let answer = sts
            .assume_role_with_web_identity()
            .role_arn(role_arn)
            .role_session_name("uploadbucket-test")
            .web_identity_token(token)
            .send()
            .await;
        match answer {
            Ok(out) => panic!("STS accepted a token for {what}: {out:?}"),
            Err(e) => match e.code() {
                Some("BucketAlreadyExists") => tokio::time::sleep(Duration::from_millis(300)).await,
                Some(code) => return code.to_owned(),
                None => panic!(
                    "STS failed for {what} without an error code: {}",
                    aws_sdk_sts::error::DisplayErrorContext(&e)
                ),
            },
        }
    }
    panic!("STS answered BucketAlreadyExists five times for {what}")
}

/// Asserts that STS refuses AssumeRoleWithWebIdentity of `role_arn` for `token` (a token
/// for `what`) with `AccessDenied`, and that RGW's log says why: RGW 16 answers every refusal
/// alike, so the reason is a line logged since the call that holds each of `logged`.
async fn assert_sts_refuses(
    server: &S3Server,
    log: &uploadbucket_tests::RgwLog,
    role_arn: &str,
    token: &str,
    what: &str,
    logged: &[&str],
) {
    let mark = log.end();
    assert_eq!(
        sts_refusal(server, role_arn, token, what).await,
        "AccessDenied",
        "STS's refusal of a token for {what}"
    );
    log.wait_for_line(mark, logged, &format!("STS refused a token for {what}"))
        .await;
}

/// What RGW logs when a role's trust policy does not name a web identity's subject: the
/// access line of the signed-in identity `system:serviceaccount:<namespace>:<sa>`, refused.
fn untrusted_subject(namespace: &str, sa: &str) -> [String; 2] {
    [
        format!("$oidc$system:serviceaccount:{namespace}:{sa} "),
        "\"POST / HTTP/1.1\" 403".to_owned(),
    ]
}

/// Asserts that an S3 call was refused for want of permission (`AccessDenied`), not failed
/// in some other way (a missing key, a transport error) that would pass for a refusal.
fn assert_denied<T: std::fmt::Debug, E>(
    what: &str,
    answer: Result<T, aws_sdk_s3::error::SdkError<E>>,
) where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match answer {
        Ok(out) => panic!("{what}: allowed ({out:?})"),
        Err(e) => assert_eq!(
            e.code(),
            Some("AccessDenied"),
            "{what}: {}",
            aws_sdk_s3::error::DisplayErrorContext(&e)
        ),
    }
}

/// One AssumeRoleWithWebIdentity per call, as a credentials provider.
#[derive(Debug)]
struct WebIdentity {
    sts: aws_sdk_sts::Client,
    role_arn: String,
    token: String,
}

impl ProvideCredentials for WebIdentity {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let out = self
                .sts
                .assume_role_with_web_identity()
                .role_arn(&self.role_arn)
                .role_session_name("uploadbucket-test")
                .web_identity_token(&self.token)
                .send()
                .await
                .map_err(CredentialsError::provider_error)?;
            let c = out
                .credentials()
                .ok_or_else(|| CredentialsError::unhandled("no credentials"))?;
            Ok(aws_credential_types::Credentials::new(
                c.access_key_id(),
                c.secret_access_key(),
                Some(c.session_token().to_owned()),
                None,
                "irsa-test",
            ))
        })
    }
}

/// An UploadBucket `shop/<name>` of `spec` (plus its bucket name, and the service account
/// `web` unless `spec` lists its own), its bucket and its role, made by the operator's code;
/// the role.
async fn bucket_and_role(
    server: &S3Server,
    settings: &RoleSettings,
    name: &str,
    mut spec: serde_json::Value,
) -> uploadbucket_operator::controller::role::RoleReport {
    spec["bucketName"] = json!(name);
    if spec.get("serviceAccountNames").is_none() {
        spec["serviceAccountNames"] = json!(["web"]);
    }
    let spec: UploadBucketSpec = serde_json::from_value(spec).unwrap();
    let mut ub = UploadBucket::new("shared", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let (buckets, _) = server.buckets().await;
    uploadbucket_tests::provision(&buckets, &ub, &uploadbucket_tests::defaults(server))
        .await
        .expect("bucket");
    let bucket = BucketRef {
        name: name.to_owned(),
        region: "us-east-1".into(),
    };
    let role = desired_role(&ub, &bucket, settings).unwrap();
    apply_role(&server.iam_roles().await, &role, settings)
        .await
        .expect("role")
}

/// The signer as a pod runs it: no keys, only `role_arn` and a fresh `shop/web` token in a
/// file of a new folder, with RGW's STS, plus `extra` env. The process, its base URL, and the
/// token's folder.
async fn signer_in_a_pod(
    server: &S3Server,
    issuer: &Issuer,
    bucket: &str,
    role_arn: &str,
    extra: &[(&str, &str)],
) -> (uploadbucket_tests::Child, String, PathBuf) {
    let token_dir = std::env::temp_dir().join(unique_name("ub-token"));
    std::fs::create_dir_all(&token_dir).unwrap();
    let token_file = token_dir.join("token");
    std::fs::write(
        &token_file,
        issuer.token("shop", "web", "sts.amazonaws.com", 600),
    )
    .unwrap();
    let mut env = vec![
        ("AWS_ROLE_ARN", role_arn),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", server.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    env.extend_from_slice(extra);
    let (child, base) = uploadbucket_tests::start_sidecar_as(server, bucket, &env).await;
    (child, base, token_dir)
}

fn s3_as(server: &S3Server, c: &Credentials) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            c.session_token.clone(),
            None,
            "irsa",
        ))
        .endpoint_url(&server.endpoint)
        .force_path_style(true)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[tokio::test]
async fn pods_assume_the_role_and_may_only_upload_under_the_prefix() {
    let test = "pods_assume_the_role_and_may_only_upload_under_the_prefix";
    let Some(server) = s3_server(test) else {
        return;
    };
    let Some(conf) = uploadbucket_tests::rgw_conf(test) else {
        return;
    };
    let issuer = Issuer::start().await;
    let sdk = server
        .sdk_config(&server.access_key, &server.secret_key)
        .await;

    // Once per cluster: register the service-account issuer as an OIDC provider.
    let settings = issuer.register(&server).await;

    // The operator: bucket, then role.
    let (buckets, _) = server.buckets().await;
    let name = unique_name("ub-irsa");
    let spec: UploadBucketSpec =
        serde_json::from_value(json!({"bucketName": name, "serviceAccountNames": ["web"]}))
            .unwrap();
    let mut ub = UploadBucket::new("photos", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let defaults = uploadbucket_tests::defaults(&server);
    uploadbucket_tests::provision(&buckets, &ub, &defaults)
        .await
        .expect("bucket");
    let bucket = BucketRef {
        name: name.clone(),
        region: "us-east-1".into(),
    };

    let counter = RequestCounter::default();
    let iam_conf = aws_sdk_iam::config::Builder::from(&sdk)
        .endpoint_url(&server.endpoint)
        .interceptor(counter.interceptor())
        .build();
    let iam = IamRoles::from_conf(iam_conf);
    let role = desired_role(&ub, &bucket, &settings).unwrap();
    let report = apply_role(&iam, &role, &settings).await.expect("role");
    assert!(report.created, "{report:?}");
    assert!(report.arn.contains(&role.name), "{}", report.arn);
    let stored = iam
        .get_role_policy(&role.name, "uploadbucket-access")
        .await
        .expect("policy")
        .expect("policy stored");
    assert_eq!(
        uploadbucket_operator::aws::policy::canonical(&stored),
        uploadbucket_operator::aws::policy::canonical(&role.policy)
    );

    // Second apply: reads only.
    let w0 = counter.writes();
    let again = apply_role(&iam, &role, &settings).await.expect("again");
    assert!(!again.created && again.changed.is_empty(), "{again:?}");
    assert_eq!(
        counter.writes(),
        w0,
        "no-op role apply wrote: {:?}",
        &counter.write_log()[w0..]
    );

    // An allowed service account's token assumes the role.
    let creds = assume_shop_web(&server, &issuer, &report.arn, "assume as shop/web").await;
    let s3 = s3_as(&server, &creds);
    s3.put_object()
        .bucket(&name)
        .key("uploads/ok.jpg")
        .content_type("image/jpeg")
        .body(ByteStream::from_static(b"jpeg"))
        .send()
        .await
        .expect("PUT under the prefix");

    // The signer as a process, as in a pod: no keys, only the role and a token file; its
    // credentials come from RGW's STS, and the URL it signs works.
    let (_signer, base, token_dir) =
        signer_in_a_pod(&server, &issuer, &name, &report.arn, &[]).await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "credentials from STS");
    let signed = uploadbucket_tests::sign_upload(
        &http,
        &base,
        json!({"contentType": "image/jpeg", "size": 4}),
    )
    .await;
    let url = signed["uploadURL"].as_str().unwrap();
    assert!(url.contains("X-Amz-Security-Token="), "{url}");
    let (status, text) = uploadbucket_tests::put_signed(&http, &signed, b"jpeg".to_vec()).await;
    assert_eq!(status, 200, "{text}");

    // Token rotation: the kubelet replaces the token file (by a rename) while the signer runs,
    // and the signer's next credential load must read the new one. A signer whose token STS
    // refuses (a service account the role does not trust) is not ready; once the file holds
    // an allowed token, it becomes ready without a restart and signs with the new session.
    let rotating = token_dir.join("rotating");
    std::fs::write(
        &rotating,
        issuer.token("shop", "intruder", "sts.amazonaws.com", 600),
    )
    .unwrap();
    let (_rotated_signer, rotated) = uploadbucket_tests::start_sidecar_as(
        &server,
        &name,
        &[
            ("AWS_ROLE_ARN", report.arn.as_str()),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", rotating.to_str().unwrap()),
            ("AWS_ENDPOINT_URL_STS", server.endpoint.as_str()),
            ("AWS_REGION", "us-east-1"),
        ],
    )
    .await;
    let readyz = || async {
        http.get(format!("{rotated}/readyz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(readyz().await, 503, "a token STS refuses");
    let next = token_dir.join("rotating.next");
    std::fs::write(&next, issuer.token("shop", "web", "sts.amazonaws.com", 600)).unwrap();
    std::fs::rename(&next, &rotating).unwrap();
    uploadbucket_tests::cluster::wait_for("the signer to read the rotated token", 10, || async {
        (readyz().await == 200).then_some(())
    })
    .await;
    let signed = uploadbucket_tests::sign_upload(
        &http,
        &rotated,
        json!({"contentType": "image/jpeg", "size": 4}),
    )
    .await;
    let (status, text) = uploadbucket_tests::put_signed(&http, &signed, b"jpeg".to_vec()).await;
    assert_eq!(status, 200, "with the rotated token's session: {text}");
    let _ = std::fs::remove_dir_all(&token_dir);

    // ... also through a presigned URL from the signer's own presigner.
    let presigner = Presigner::new(
        &name,
        "us-east-1",
        Endpoint::parse(&server.endpoint, true).unwrap(),
    );
    let url = presigner.presign(
        &creds,
        SystemTime::now(),
        &PresignInput {
            method: "PUT",
            key: "uploads/presigned.jpg",
            params: &[("x-id", "PutObject")],
            headers: &[("content-type", "image/jpeg")],
            expires: Duration::from_secs(60),
        },
    );
    assert!(url.contains("X-Amz-Security-Token="));
    let resp = reqwest::Client::new()
        .put(&url)
        .header("content-type", "image/jpeg")
        .body("jpeg")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );

    // ... and is denied outside the prefix, on another bucket, and GET; the same requests
    // with the bucket owner's keys succeed (the refusals are the role's, not the objects').
    let raw = server.admin_client().await;
    let put = |s3: &aws_sdk_s3::Client, bucket: &str, key: &str| {
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
    };
    let other_bucket = unique_name("ub-irsa-other");
    raw.create_bucket()
        .bucket(&other_bucket)
        .send()
        .await
        .unwrap();
    for (what, bucket, key) in [
        ("PUT outside the prefix", &name, "private/x.jpg"),
        ("PUT on another bucket", &other_bucket, "uploads/x.jpg"),
    ] {
        assert_denied(what, put(&s3, bucket, key).await);
        put(&raw, bucket, key)
            .await
            .unwrap_or_else(|e| panic!("the owner's {what}: {e:?}"));
    }
    assert_denied(
        "GET without allowDownloads",
        s3.get_object()
            .bucket(&name)
            .key("uploads/ok.jpg")
            .send()
            .await,
    );

    // STS refuses another service account, another namespace, another audience and an
    // expired token, each a valid token but for one claim: the token above, for shop/web,
    // with the audience STS wants and a future expiry, is the control. RGW 16 answers all
    // four alike (403 AccessDenied, no message); its log says why, and that is checked too:
    // for a subject the trust policy does not name, the access line of the signed-in web
    // identity refused; for the others, the reason.
    let log = uploadbucket_tests::RgwLog::of(&conf);
    for (what, token, logged) in [
        (
            "other service account",
            issuer.token("shop", "intruder", "sts.amazonaws.com", 600),
            untrusted_subject("shop", "intruder").to_vec(),
        ),
        (
            "other namespace",
            issuer.token("other", "web", "sts.amazonaws.com", 600),
            untrusted_subject("other", "web").to_vec(),
        ),
        (
            "other audience",
            issuer.token("shop", "web", "https://kubernetes.default.svc", 600),
            vec![
                STS_LOG.to_owned(),
                "Client id in token doesn't match".into(),
            ],
        ),
        (
            "expired",
            issuer.token("shop", "web", "sts.amazonaws.com", -120),
            vec![
                STS_LOG.to_owned(),
                "token verification failed: token expired".into(),
            ],
        ),
    ] {
        let logged: Vec<&str> = logged.iter().map(String::as_str).collect();
        assert_sts_refuses(&server, &log, &report.arn, &token, what, &logged).await;
    }

    // A spec change (downloads on) updates the policy in place, and GET then works.
    let mut ub2 = ub.clone();
    ub2.spec.uploads.allow_downloads = true;
    let role2 = desired_role(&ub2, &bucket, &settings).unwrap();
    let changed = apply_role(&iam, &role2, &settings).await.expect("update");
    assert_eq!(changed.changed, vec!["permissionPolicy"]);
    let creds2 = assume_shop_web(&server, &issuer, &report.arn, "assume again").await;
    s3_as(&server, &creds2)
        .get_object()
        .bucket(&name)
        .key("uploads/ok.jpg")
        .send()
        .await
        .expect("GET with downloads on");

    // Delete: the role is gone; again: not found. (RGW roles carry no tags: the uid is in
    // the role's derived name.)
    let uid = settings
        .tag_roles
        .then_some(ub.metadata.uid.as_deref().unwrap());
    assert_eq!(
        cleanup_role(&iam, &role.name, uid)
            .await
            .expect("delete role"),
        RoleCleanup::Deleted
    );
    assert!(iam.get_role(&role.name).await.expect("get").is_none());
    assert_eq!(
        cleanup_role(&iam, &role.name, uid).await.expect("again"),
        RoleCleanup::NotFound
    );
    let _ = std::fs::remove_dir_all(&issuer.dir);
}

/// An UploadBucket with `serviceAccountNames: []` trusts every service account of its
/// namespace and nothing outside it (trust `system:serviceaccount:shop:*`): a token of `web`
/// and one of a service account named nowhere both assume the role, and their sessions
/// upload under the prefix; tokens of other namespaces are refused, for the same service
/// account names too, and for a namespace whose name only begins with `shop`.
#[tokio::test]
async fn an_empty_service_account_list_trusts_every_service_account_of_the_namespace_only() {
    let test = "an_empty_service_account_list_trusts_every_service_account_of_the_namespace_only";
    let Some(server) = s3_server(test) else {
        return;
    };
    let Some(conf) = uploadbucket_tests::rgw_conf(test) else {
        return;
    };
    let issuer = Issuer::start().await;
    let settings = issuer.register(&server).await;
    let name = unique_name("ub-irsa-any-sa");
    let report = bucket_and_role(
        &server,
        &settings,
        &name,
        json!({"serviceAccountNames": []}),
    )
    .await;
    // A service account no UploadBucket, spec or token of any test names.
    let unnamed = unique_name("unnamed");
    for sa in ["web", unnamed.as_str()] {
        let token = issuer.token("shop", sa, "sts.amazonaws.com", 600);
        let creds = assume(&server, &report.arn, &token)
            .await
            .unwrap_or_else(|e| panic!("assume as shop/{sa}: {e}"));
        s3_as(&server, &creds)
            .put_object()
            .bucket(&name)
            .key(format!("uploads/{sa}.jpg"))
            .content_type("image/jpeg")
            .body(ByteStream::from_static(b"jpeg"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT under the prefix as shop/{sa}: {e:?}"));
    }
    // Tokens of other namespaces, for the same service account names and for a namespace
    // whose name begins with `shop`: each refused by the trust policy (the log names the
    // subject), not for something wrong with the token.
    let log = uploadbucket_tests::RgwLog::of(&conf);
    for (namespace, sa) in [
        ("other", "web"),
        ("other", unnamed.as_str()),
        ("shopping", "web"),
    ] {
        let token = issuer.token(namespace, sa, "sts.amazonaws.com", 600);
        let logged = untrusted_subject(namespace, sa);
        let logged: Vec<&str> = logged.iter().map(String::as_str).collect();
        let what = format!("{namespace}/{sa}");
        assert_sts_refuses(&server, &log, &report.arn, &token, &what, &logged).await;
    }
    let _ = std::fs::remove_dir_all(&issuer.dir);
}

/// With `uploads.verification` on, the role may also read, retag and delete objects under
/// the prefix (what `verify` needs), and still nothing outside it; without verification it
/// may do none of that (the test above: GET denied). With a cap on open multipart uploads it
/// may list the bucket's uploads in progress, and no other bucket's.
#[tokio::test]
async fn verification_widens_the_role_only_under_the_prefix() {
    let Some(server) = s3_server("verification_widens_the_role_only_under_the_prefix") else {
        return;
    };
    let issuer = Issuer::start().await;
    let settings = issuer.register(&server).await;
    let (buckets, _) = server.buckets().await;
    let name = unique_name("ub-irsa-verify");
    let spec: UploadBucketSpec = serde_json::from_value(json!({
        "bucketName": name,
        "serviceAccountNames": ["web"],
        "uploads": {"verification": {"enabled": true}, "limits": {"openMultipartUploads": 2}},
    }))
    .unwrap();
    let mut ub = UploadBucket::new("checked", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    uploadbucket_tests::provision(&buckets, &ub, &uploadbucket_tests::defaults(&server))
        .await
        .expect("bucket");
    let bucket = BucketRef {
        name: name.clone(),
        region: "us-east-1".into(),
    };
    let iam = server.iam_roles().await;
    let role = desired_role(&ub, &bucket, &settings).unwrap();
    let report = apply_role(&iam, &role, &settings).await.expect("role");
    let creds = assume_shop_web(&server, &issuer, &report.arn, "assume").await;
    let s3 = s3_as(&server, &creds);
    let raw = server.admin_client().await;
    for key in ["uploads/mine.jpg", "private/theirs.jpg"] {
        raw.put_object()
            .bucket(&name)
            .key(key)
            .body(ByteStream::from_static(b"\xff\xd8\xff\xe0"))
            .send()
            .await
            .unwrap();
    }
    let tagging = aws_sdk_s3::types::Tagging::builder()
        .tag_set(
            aws_sdk_s3::types::Tag::builder()
                .key("uploadbucket-state")
                .value("verified")
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    // Under the prefix: a ranged read, a retag and a delete are allowed.
    s3.get_object()
        .bucket(&name)
        .key("uploads/mine.jpg")
        .range("bytes=0-3")
        .send()
        .await
        .expect("ranged GET under the prefix");
    s3.put_object_tagging()
        .bucket(&name)
        .key("uploads/mine.jpg")
        .tagging(tagging.clone())
        .send()
        .await
        .expect("retag under the prefix");
    s3.delete_object()
        .bucket(&name)
        .key("uploads/mine.jpg")
        .send()
        .await
        .expect("delete under the prefix");
    // With a cap on open multipart uploads, the role may list this bucket's uploads in
    // progress (to count them), and no other bucket's.
    s3.list_multipart_uploads()
        .bucket(&name)
        .prefix("uploads/")
        .send()
        .await
        .expect("list uploads in progress");
    let other = unique_name("ub-irsa-other");
    raw.create_bucket().bucket(&other).send().await.unwrap();
    assert_denied(
        "listing another bucket's uploads",
        s3.list_multipart_uploads().bucket(&other).send().await,
    );
    // Outside it: none of them, on an object that is there.
    let key = "private/theirs.jpg";
    raw.head_object()
        .bucket(&name)
        .key(key)
        .send()
        .await
        .expect("the object outside the prefix");
    assert_denied(
        "GET outside the prefix",
        s3.get_object().bucket(&name).key(key).send().await,
    );
    assert_denied(
        "retag outside the prefix",
        s3.put_object_tagging()
            .bucket(&name)
            .key(key)
            .tagging(tagging)
            .send()
            .await,
    );
    assert_denied(
        "DELETE outside the prefix",
        s3.delete_object().bucket(&name).key(key).send().await,
    );
    raw.head_object()
        .bucket(&name)
        .key(key)
        .send()
        .await
        .expect("the object outside the prefix is still there");
}

/// Ceph RGW creates a shadow user on a web identity's first session, and answers
/// `BucketAlreadyExists` (409) to every other session of that identity that arrives while it
/// does: a Deployment's replicas starting at once, each signer's first credential load. The
/// signer tries a failed load again after a pause, so every replica gets its credentials.
#[tokio::test]
async fn signers_of_a_new_service_account_starting_at_once_all_get_credentials() {
    let Some(server) =
        s3_server("signers_of_a_new_service_account_starting_at_once_all_get_credentials")
    else {
        return;
    };
    let issuer = Issuer::start().await;
    let settings = issuer.register(&server).await;
    let name = unique_name("ub-irsa-replicas");
    // A service account no test used before: its first sessions are the ones that race.
    let sa = unique_name("replica");
    let spec: UploadBucketSpec = serde_json::from_value(json!({
        "bucketName": name,
        "serviceAccountNames": [sa],
    }))
    .unwrap();
    let mut ub = UploadBucket::new("replicas", spec);
    ub.metadata.namespace = Some("shop".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let bucket = BucketRef {
        name: name.clone(),
        region: "us-east-1".into(),
    };
    let role = desired_role(&ub, &bucket, &settings).unwrap();
    let report = apply_role(&server.iam_roles().await, &role, &settings)
        .await
        .expect("role");
    let token_file = issuer.dir.join(unique_name("replica-token"));
    std::fs::write(
        &token_file,
        issuer.token("shop", &sa, "sts.amazonaws.com", 600),
    )
    .unwrap();
    let env = [
        ("AWS_ROLE_ARN", report.arn.as_str()),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token_file.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", server.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
    ];
    let mut signers = Vec::new();
    for _ in 0..4 {
        signers.push(uploadbucket_tests::start_sidecar_as(&server, &name, &env).await);
    }
    // All four load their first credentials at the same moment.
    let http = reqwest::Client::new();
    let mut probes = tokio::task::JoinSet::new();
    for (_, base) in &signers {
        let (http, url) = (http.clone(), format!("{base}/readyz"));
        probes.spawn(async move {
            let resp = http.get(&url).send().await.unwrap();
            (
                resp.status().as_u16(),
                resp.text().await.unwrap_or_default(),
            )
        });
    }
    let answers = probes.join_all().await;
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "every signer ready on its first load: {answers:?}"
    );
    let _ = std::fs::remove_file(&token_file);
}

/// A JPEG with a secret in it, as a user's private photo.
const SECRET_JPEG: &[u8] = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01bob's private photo";

/// The signer of a verifying, public, per-user bucket, running as a pod's signer does (web
/// identity, the RGW backend's settings), and what an end user holding its URLs can do with
/// them on Ceph RGW, which stores requests with extra unsigned headers: a PUT or part URL
/// plus `x-amz-copy-source` is a copy. The role's policy refuses copies into the keys URLs
/// name, so no URL brings another user's object into the holder's key, and nothing but
/// verify's own copies reaches the verified area.
#[tokio::test]
async fn upload_urls_cannot_become_copies() {
    let Some(server) = s3_server("upload_urls_cannot_become_copies") else {
        return;
    };
    let issuer = Issuer::start().await;
    let settings = issuer.register(&server).await;
    let name = unique_name("ub-irsa-copy");
    let report = bucket_and_role(
        &server,
        &settings,
        &name,
        json!({"uploads": {"publicRead": true, "requireOwner": true,
            "verification": {"enabled": true}}}),
    )
    .await;
    // The injected env on RGW (webhook): web identity, the owner's ACL, the backend.
    let (_signer, base, _token_dir) = signer_in_a_pod(
        &server,
        &issuer,
        &name,
        &report.arn,
        &[
            ("UPLOADBUCKET_VERIFY", "true"),
            ("UPLOADBUCKET_PUBLIC_READ", "true"),
            ("UPLOADBUCKET_REQUIRE_OWNER", "true"),
            ("UPLOADBUCKET_BUCKET_OWNER_FULL_CONTROL", "true"),
            ("UPLOADBUCKET_S3_BACKEND", "rgw"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let raw = server.admin_client().await;
    let sign = |owner: &'static str, size: usize| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            uploadbucket_tests::sign_upload(
                &http,
                &base,
                json!({"contentType": "image/jpeg", "size": size, "owner": owner}),
            )
            .await
        }
    };
    let verify = |key: String, owner: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let resp = http
                .post(format!("{base}/uploads/verify"))
                .json(&json!({"key": key, "owner": owner}))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<serde_json::Value>().await.unwrap())
        }
    };

    // Bob uploads and verifies a private photo; he keeps another one unverified.
    let bob = sign("bob", SECRET_JPEG.len()).await;
    let (status, text) = uploadbucket_tests::put_signed(&http, &bob, SECRET_JPEG.to_vec()).await;
    assert_eq!(status, 200, "{text}");
    let bob_upload = bob["key"].as_str().unwrap().to_owned();
    assert!(bob_upload.starts_with("uploads/incoming/bob/"), "{bob}");
    let (status, verified) = verify(bob_upload.clone(), "bob").await;
    assert_eq!(status, 200, "{verified}");
    let bob_verified = verified["key"].as_str().unwrap().to_owned();
    assert!(
        bob_verified.starts_with("uploads/verified/bob/"),
        "{verified}"
    );
    let unverified = sign("bob", SECRET_JPEG.len()).await;
    let (status, _) =
        uploadbucket_tests::put_signed(&http, &unverified, SECRET_JPEG.to_vec()).await;
    assert_eq!(status, 200);
    let bob_pending = unverified["key"].as_str().unwrap().to_owned();

    // Alice holds a PUT URL for her own key and adds one unsigned header (and variants).
    let alice = sign("alice", SECRET_JPEG.len()).await;
    let alice_key = alice["key"].as_str().unwrap().to_owned();
    let attempt = |source: String, extra: Vec<(&'static str, &'static str)>| {
        let (http, alice) = (http.clone(), alice.clone());
        async move {
            let mut headers = vec![("x-amz-copy-source", source.as_str())];
            headers.extend(extra);
            put_signed_with(&http, &alice, SECRET_JPEG.to_vec(), &headers).await
        }
    };
    for source in [&bob_verified, &bob_pending] {
        for extra in [
            vec![],
            vec![
                ("x-amz-metadata-directive", "REPLACE"),
                ("content-disposition", "inline"),
            ],
        ] {
            let (status, text) = attempt(format!("{name}/{source}"), extra.clone()).await;
            assert_row(
                &format!("copy of {source} with {extra:?}"),
                status,
                &text,
                &[403],
            );
        }
    }
    let head = raw.head_object().bucket(&name).key(&alice_key).send().await;
    assert!(head.is_err(), "nothing reached Alice's key: {head:?}");

    // Her URL still does what it was signed for; her verified photo is hers.
    let (status, text) = uploadbucket_tests::put_signed(&http, &alice, SECRET_JPEG.to_vec()).await;
    assert_eq!(status, 200, "{text}");
    let (status, verified) = verify(alice_key.clone(), "alice").await;
    assert_eq!(status, 200, "{verified}");
    let alice_verified = verified["key"].as_str().unwrap().to_owned();
    // Replayed with a copy header after verify: refused, the verified object unchanged.
    let (status, text) = attempt(format!("{name}/{bob_pending}"), vec![]).await;
    assert_eq!(status, 403, "{text}");
    let public = |key: String| {
        let http = http.clone();
        let url = format!("{}/{name}/{key}", server.endpoint);
        async move {
            let resp = http.get(url).send().await.unwrap();
            (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
        }
    };
    assert_eq!(
        public(alice_verified.clone()).await,
        (200, SECRET_JPEG.to_vec())
    );
    // Public read serves the verified area only: Bob's pending upload is private, and a
    // public grant added to the PUT does not open it: on RGW the signer signs the canned ACL
    // `bucket-owner-full-control`, which RGW will not combine with a grant (400; changing the
    // canned ACL breaks the signature), and the operator sets IgnorePublicAcls besides.
    assert_eq!(public(bob_pending.clone()).await.0, 403);
    let acl = sign("bob", SECRET_JPEG.len()).await;
    let grant = [(
        "x-amz-grant-read",
        "uri=\"http://acs.amazonaws.com/groups/global/AllUsers\"",
    )];
    let (status, text) = put_signed_with(&http, &acl, SECRET_JPEG.to_vec(), &grant).await;
    assert_eq!(status, 400, "PUT with a public grant: {text}");
    assert_eq!(public(acl["key"].as_str().unwrap().to_owned()).await.0, 403);

    // The copy forms the policy's condition cannot see (RGW's UploadPartCopy and ranged-PUT
    // paths never set s3:x-amz-copy-source): RGW 16 refuses them to a role session by itself
    // (measured 403 with and without the Deny statement); a change there fails here.
    let ranged = attempt(
        format!("{name}/{bob_pending}"),
        vec![("x-amz-copy-source-range", "bytes=0-10")],
    )
    .await;
    assert_eq!(ranged.0, 403, "ranged copy through a PUT URL: {}", ranged.1);
    let create = json_of(
        http.post(format!("{base}/s3/multipart"))
            .json(&json!({"type": "image/jpeg", "owner": "alice"})),
    )
    .await;
    let (key, id) = (
        create["key"].as_str().unwrap(),
        create["uploadId"].as_str().unwrap(),
    );
    let part = json_of(http.get(format!("{base}/s3/multipart/{id}/1?key={key}&owner=alice"))).await;
    let resp = http
        .put(part["url"].as_str().unwrap())
        .header("x-amz-copy-source", format!("{name}/{bob_pending}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "part URL with a copy source");
    let parts = raw
        .list_parts()
        .bucket(&name)
        .key(key)
        .upload_id(id)
        .send()
        .await
        .unwrap();
    assert!(parts.parts().is_empty(), "no part was copied in: {parts:?}");
}

/// What the EKS Pod Identity agent does for a pod (the SDKs' container credential provider):
/// answers `GET AWS_CONTAINER_CREDENTIALS_FULL_URI` with the contents of
/// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE` as `Authorization`, with a session's keys. Here the
/// sessions are real: RGW's STS, for the UploadBucket's role. Each answer is the next session
/// in `sessions`; `asked` counts the answers given.
async fn pod_identity_agent(
    sessions: Vec<Credentials>,
    token: String,
    lifetime: Duration,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let app = Router::new().route(
        "/v1/credentials",
        get(move |headers: axum::http::HeaderMap| {
            let (sessions, token, count) = (sessions.clone(), token.clone(), count.clone());
            async move {
                if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&token) {
                    return (axum::http::StatusCode::FORBIDDEN, "{}".to_owned());
                }
                let n = count.fetch_add(1, Ordering::SeqCst);
                let c = &sessions[n.min(sessions.len() - 1)];
                let expires = uploadbucket_sidecar::presign::rfc3339(SystemTime::now() + lifetime);
                (
                    axum::http::StatusCode::OK,
                    json!({
                        "AccessKeyId": c.access_key_id,
                        "SecretAccessKey": c.secret_access_key,
                        "Token": c.session_token,
                        "AccountId": "",
                        "Expiration": expires,
                    })
                    .to_string(),
                )
            }
        }),
    );
    let (listener, base) = uploadbucket_tests::local_listener().await;
    uploadbucket_tests::serve(listener, app);
    let url = format!("{base}/v1/credentials");
    (url, asked)
}

/// A signer for `bucket` whose credentials come from the Pod Identity agent at `agent`, with
/// the token in `token_file`: the process and its base URL.
async fn agent_signer(
    server: &S3Server,
    bucket: &str,
    agent: &str,
    token_file: &std::path::Path,
) -> (uploadbucket_tests::Child, String) {
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", agent),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.to_str().unwrap(),
        ),
        ("AWS_REGION", "us-east-1"),
    ];
    uploadbucket_tests::start_sidecar_as(server, bucket, &env).await
}

/// EKS Pod Identity, the signer's side: with only the container credential variables EKS
/// sets (no role ARN, no web-identity token), the signer gets its credentials from the
/// agent, presenting the token file, signs URLs RGW accepts with those role sessions, and
/// loads the next session before the first expires. A wrong token is refused by the agent
/// and the signer is not ready.
#[tokio::test]
async fn the_signer_takes_its_credentials_from_the_pod_identity_agent() {
    let Some(server) = s3_server("the_signer_takes_its_credentials_from_the_pod_identity_agent")
    else {
        return;
    };
    let issuer = Issuer::start().await;
    let settings = issuer.register(&server).await;
    let name = unique_name("ub-pod-identity");
    let report = bucket_and_role(&server, &settings, &name, json!({})).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        sessions.push(assume_shop_web(&server, &issuer, &report.arn, "a session").await);
    }
    assert_ne!(sessions[0].access_key_id, sessions[1].access_key_id);
    let dir = std::env::temp_dir().join(unique_name("ub-pod-identity"));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-identity-token-of-shop-web").unwrap();
    // Sessions that the agent says expire in 20 s: the signer loads the next one early.
    let (agent, asked) = pod_identity_agent(
        sessions.clone(),
        "pod-identity-token-of-shop-web".into(),
        Duration::from_secs(20),
    )
    .await;
    let (_signer, base) = agent_signer(&server, &name, &agent, &token_file).await;
    let http = reqwest::Client::new();
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "credentials from the agent");
    let upload = |key_id: String| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let signed = uploadbucket_tests::sign_upload(
                &http,
                &base,
                json!({"contentType": "image/jpeg", "size": 4}),
            )
            .await;
            let url = signed["uploadURL"].as_str().unwrap().to_owned();
            assert!(url.contains(&key_id), "signed with {key_id}: {url}");
            assert!(url.contains("X-Amz-Security-Token="), "{url}");
            let (status, text) =
                uploadbucket_tests::put_signed(&http, &signed, b"jpeg".to_vec()).await;
            assert_eq!(status, 200, "{text}");
        }
    };
    upload(sessions[0].access_key_id.clone()).await;
    // Half the session's life later, the next session signs.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while asked.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the signer did not load credentials again before they expired"
        );
        // Requests drive the cache: a signing call looks at the credentials' expiry.
        let _ = http.get(format!("{base}/readyz")).send().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    upload(sessions[1].access_key_id.clone()).await;

    // A token the agent does not know: no credentials, not ready.
    let wrong_token = dir.join("wrong");
    std::fs::write(&wrong_token, "someone-else").unwrap();
    let (_refused, refused) = agent_signer(&server, &name, &agent, &wrong_token).await;
    let ready = http.get(format!("{refused}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&issuer.dir);
}

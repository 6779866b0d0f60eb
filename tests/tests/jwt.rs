//! JWT mode (`uploads.auth.jwt`): the signer as a real process against Ceph RGW and an
//! OpenID Connect issuer of the test's (discovery + JWKS over HTTP, keys from openssl, tokens
//! signed by `jsonwebtoken`). The owner of every upload comes from a verified token; every
//! kind of bad token is refused with its own code; keys rotate, and an outage of the provider
//! is ridden out on cached keys.

use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use uploadbucket_tests::oidc::{Issuer, SigningKey, hmac_signed, now, unsigned, with_payload};
use uploadbucket_tests::{Child, S3Server, put_signed, s3_server, start_sidecar};

const AUDIENCE: &str = "api://uploads";

async fn bucket(server: &S3Server) -> (String, aws_sdk_s3::Client) {
    uploadbucket_tests::plain_bucket(server, "ub-jwt").await
}

/// A signer for `bucket` that requires tokens of `issuer` (with `extra` settings).
async fn signer(
    server: &S3Server,
    bucket: &str,
    issuer: &Issuer,
    extra: &[(&str, &str)],
) -> (Child, String) {
    let mut env = vec![
        ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg"),
        ("UPLOADBUCKET_JWT_ISSUER", issuer.url.as_str()),
        ("UPLOADBUCKET_JWT_AUDIENCES", AUDIENCE),
        ("RUST_LOG", "debug"),
    ];
    env.extend_from_slice(extra);
    start_sidecar(server, bucket, &env).await
}

/// `POST /uploads` for a 4-byte JPEG with `token` (if any) and `body` added; (status,
/// WWW-Authenticate, JSON).
async fn start(base: &str, token: Option<&str>, body: Value) -> (u16, String, Value) {
    let mut req = json!({"contentType": "image/jpeg", "size": 4});
    req.as_object_mut()
        .unwrap()
        .extend(body.as_object().unwrap().clone());
    let mut r = reqwest::Client::new()
        .post(format!("{base}/uploads"))
        .json(&req);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.expect("the signer answers");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}

/// With tokens required, the token names the owner: the URL is for its folder and the object
/// lands there on RGW; the request may repeat the token's owner (its claim, or the folder of a
/// claim with characters a folder cannot hold) but not name another; a multipart upload is
/// continued only by its owner's token; the refusal carries no token.
#[tokio::test]
async fn the_token_decides_whose_folder_an_upload_lands_in() {
    let Some(server) = s3_server("the_token_decides_whose_folder_an_upload_lands_in") else {
        return;
    };
    let (name, raw) = bucket(&server).await;
    let key = SigningKey::generate("k1", Algorithm::RS256);
    let issuer = Issuer::start(vec![key.clone()], 300).await;
    let (_signer, base) = signer(&server, &name, &issuer, &[]).await;
    let ada = key.sign(&issuer.claims("ada", AUDIENCE));
    let (status, _, signed) = start(&base, Some(&ada), json!({})).await;
    assert_eq!(status, 201, "{signed}");
    let k = signed["key"].as_str().unwrap().to_owned();
    assert!(k.starts_with("uploads/ada/"), "{k}");
    let (put, text) = put_signed(
        &reqwest::Client::new(),
        &signed,
        b"\xff\xd8\xff\xe0".to_vec(),
    )
    .await;
    assert_eq!(put, 200, "{text}");
    uploadbucket_tests::assert_stored(&raw, &name, &k, "image/jpeg", 4).await;

    let (status, _, body) = start(&base, Some(&ada), json!({"owner": "ada"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = start(&base, Some(&ada), json!({"owner": "bob"})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (403, &json!("TokenOwnerMismatch")),
        "{body}"
    );

    // Auth0-style subjects: the folder encodes what a folder name cannot hold.
    let auth0 = key.sign(&issuer.claims("auth0|5f7c", AUDIENCE));
    for owner in [
        json!({}),
        json!({"owner": "auth0|5f7c"}),
        json!({"owner": "auth0_7c5f7c"}),
    ] {
        let (status, _, body) = start(&base, Some(&auth0), owner.clone()).await;
        assert_eq!(status, 201, "{owner}: {body}");
        assert!(
            body["key"]
                .as_str()
                .unwrap()
                .starts_with("uploads/auth0_7c5f7c/"),
            "{body}"
        );
    }

    // Multipart: started by ada, not continued by bob, whatever owner bob names.
    let http = reqwest::Client::new();
    let created = uploadbucket_tests::json_of(
        http.post(format!("{base}/s3/multipart"))
            .bearer_auth(&ada)
            .json(&json!({"type": "image/jpeg", "filename": "a.jpg"})),
    )
    .await;
    let (upload_id, mkey) = (
        created["uploadId"]
            .as_str()
            .expect("an upload id")
            .to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert!(mkey.starts_with("uploads/ada/"), "{mkey}");
    let bob = key.sign(&issuer.claims("bob", AUDIENCE));
    let part = |token: &str, owner: Option<&str>| {
        let mut q = vec![("key", mkey.clone())];
        if let Some(o) = owner {
            q.push(("owner", o.to_owned()));
        }
        http.get(format!("{base}/s3/multipart/{upload_id}/1"))
            .query(&q)
            .bearer_auth(token)
            .send()
    };
    let ok = part(&ada, None).await.unwrap();
    assert_eq!(ok.status().as_u16(), 200);
    for owner in [None, Some("ada"), Some("bob")] {
        let resp = part(&bob, owner).await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 403, "{owner:?}: {body}");
        let code = body["error"]["code"].as_str().unwrap();
        assert!(
            ["OwnerMismatch", "TokenOwnerMismatch"].contains(&code),
            "{owner:?}: {body}"
        );
    }
    let aborted = http
        .delete(format!("{base}/s3/multipart/{upload_id}"))
        .query(&[("key", &mkey)])
        .bearer_auth(&ada)
        .send()
        .await
        .unwrap();
    assert_eq!(aborted.status().as_u16(), 200);
    // Without a token nothing starts.
    let (status, _, _) = start(&base, None, json!({"owner": "ada"})).await;
    assert_eq!(status, 401);
}

/// Every way a token can be wrong is refused with 401, `WWW-Authenticate` and its own code,
/// before anything is signed; the same request with a good token is signed (the control).
/// No token appears in the signer's log, refused or accepted.
#[tokio::test]
async fn bad_tokens_are_refused_each_with_its_reason() {
    let Some(server) = s3_server("bad_tokens_are_refused_each_with_its_reason") else {
        return;
    };
    let (name, _) = bucket(&server).await;
    let rsa = SigningKey::generate("rsa-1", Algorithm::RS256);
    let ec = SigningKey::generate("ec-1", Algorithm::ES256);
    let ed = SigningKey::generate("ed-1", Algorithm::EdDSA);
    let stranger = SigningKey::generate("rsa-1", Algorithm::RS256); // same kid, other key
    let issuer = Issuer::start(vec![rsa.clone(), ec.clone(), ed.clone()], 300).await;
    let (signer, base) = signer(
        &server,
        &name,
        &issuer,
        &[("UPLOADBUCKET_JWT_REQUIRED_CLAIMS", "scope=uploads:write")],
    )
    .await;
    let good = || {
        let mut c = issuer.claims("ada", AUDIENCE);
        c["scope"] = json!("openid uploads:write");
        c
    };
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good();
        change(&mut c);
        c
    };
    let valid = rsa.sign(&good());
    let public_jwk = serde_json::to_vec(&rsa.public).unwrap();
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("RS256", Some(valid.clone()), 201, ""),
        ("ES256", Some(ec.sign(&good())), 201, ""),
        ("EdDSA", Some(ed.sign(&good())), 201, ""),
        ("no token", None, 401, "MissingToken"),
        ("not bearer", Some(String::new()), 401, "InvalidToken"),
        ("garbage", Some("not.a.jwt".into()), 401, "InvalidToken"),
        (
            "expired",
            Some(rsa.sign(&with(&|c| c["exp"] = json!(now() - 120)))),
            401,
            "TokenExpired",
        ),
        (
            "not yet valid",
            Some(rsa.sign(&with(&|c| c["nbf"] = json!(now() + 300)))),
            401,
            "TokenNotYetValid",
        ),
        (
            "no exp",
            Some(rsa.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }))),
            401,
            "MissingClaim",
        ),
        (
            "other issuer",
            Some(rsa.sign(&with(&|c| c["iss"] = json!("https://evil.example/")))),
            401,
            "WrongIssuer",
        ),
        (
            "other audience",
            Some(rsa.sign(&with(&|c| c["aud"] = json!("api://other")))),
            401,
            "WrongAudience",
        ),
        (
            "unknown kid",
            Some(SigningKey::generate("nobody", Algorithm::RS256).sign(&good())),
            401,
            "UnknownKey",
        ),
        (
            "known kid, other key",
            Some(stranger.sign(&good())),
            401,
            "BadSignature",
        ),
        ("alg none", Some(unsigned(&good())), 401, "InvalidToken"),
        (
            "HS256 with the public key",
            Some(hmac_signed(&good(), "rsa-1", &public_jwk)),
            401,
            "UnsupportedAlgorithm",
        ),
        (
            "tampered payload",
            Some(with_payload(&valid, &with(&|c| c["sub"] = json!("bob")))),
            401,
            "BadSignature",
        ),
        (
            "missing required claim",
            Some(rsa.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("scope");
            }))),
            401,
            "MissingClaim",
        ),
        (
            "wrong required claim",
            Some(rsa.sign(&with(&|c| c["scope"] = json!("openid uploads:read")))),
            401,
            "ClaimMismatch",
        ),
        (
            "no owner claim",
            Some(rsa.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }))),
            401,
            "MissingClaim",
        ),
        (
            "a number as owner",
            Some(rsa.sign(&with(&|c| c["sub"] = json!(123)))),
            401,
            "MissingClaim",
        ),
        (
            "iss as a list",
            Some(rsa.sign(&with(&|c| {
                c["iss"] = json!(["https://evil.example/", issuer.url.clone()])
            }))),
            401,
            "WrongIssuer",
        ),
        (
            "over 16 KiB",
            Some(rsa.sign(&with(&|c| c["pad"] = json!("x".repeat(17 * 1024))))),
            401,
            "InvalidToken",
        ),
        (
            "a 10 KB kid",
            Some(SigningKey::generate(&"k".repeat(10_000), Algorithm::RS256).sign(&good())),
            401,
            "UnknownKey",
        ),
    ];
    let mut tokens = Vec::new();
    for (case, token, want_status, want_code) in &cases {
        let header = match token.as_deref() {
            Some("") => Some("Basic YWRhOnB3".to_owned()),
            Some(t) => {
                tokens.push(t.to_owned());
                Some(format!("Bearer {t}"))
            }
            None => None,
        };
        let mut r = reqwest::Client::new()
            .post(format!("{base}/uploads"))
            .json(&json!({"contentType": "image/jpeg", "size": 4}));
        if let Some(h) = header {
            r = r.header("authorization", h);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, *want_status, "{case}: {body}");
        if *want_status == 201 {
            assert!(
                body["key"].as_str().unwrap().starts_with("uploads/ada/"),
                "{case}: {body}"
            );
            continue;
        }
        assert_eq!(body["error"]["code"], *want_code, "{case}: {body}");
        assert!(body.to_string().len() < 1024, "{case}: a long answer");
        let challenge = challenge.unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"));
        assert!(
            challenge.starts_with("Bearer realm=\"uploadbucket\""),
            "{case}: {challenge}"
        );
        assert_eq!(
            challenge.contains("error=\"invalid_token\""),
            *want_code != "MissingToken",
            "{case}: {challenge}"
        );
    }
    // Every route that starts, continues or verifies an upload wants the token; health and
    // metrics do not.
    let http = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/uploads?contentType=image/jpeg&size=4"),
        ("GET", "/s3/params?filename=a.jpg&type=image/jpeg"),
        ("POST", "/s3/multipart"),
        ("GET", "/s3/multipart/x/1?key=uploads/ada/x.jpg"),
        ("GET", "/s3/multipart/x?key=uploads/ada/x.jpg"),
        ("POST", "/s3/multipart/x/complete?key=uploads/ada/x.jpg"),
        ("DELETE", "/s3/multipart/x?key=uploads/ada/x.jpg"),
        ("POST", "/uploads/multipart"),
        ("POST", "/uploads/verify"),
    ] {
        let resp = http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{method} {path}");
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200,
            "{path}"
        );
    }
    let log = signer.log();
    assert!(log.contains("Refused a token"), "the refusals are logged");
    for t in &tokens {
        // The signature part is the secret-like bit; no part of a token is logged.
        let sig = t.rsplit('.').next().unwrap();
        assert!(
            sig.len() < 16 || !log.contains(sig),
            "a token's signature is in the log: {:?}",
            log.lines().find(|l| l.contains(sig))
        );
        assert!(!log.contains(t.as_str()), "a token is in the log");
    }
}

/// The signer's answer to a token: (status, error code).
fn code(r: (u16, String, Value)) -> (u16, String) {
    (
        r.0,
        r.2["error"]["code"].as_str().unwrap_or_default().to_owned(),
    )
}

/// Keys rotate: a token signed with a key the provider just published is accepted once the
/// signer looks again (it does on an unknown key, at most every 30 s, so a flood of made-up
/// key ids costs the provider nothing more), and a retired key is refused after that.
#[tokio::test]
async fn keys_rotate_without_a_fetch_per_unknown_key() {
    let Some(server) = s3_server("keys_rotate_without_a_fetch_per_unknown_key") else {
        return;
    };
    let (name, _) = bucket(&server).await;
    let old = SigningKey::generate("2026-11", Algorithm::RS256);
    let new = SigningKey::generate("2026-12", Algorithm::ES256);
    let issuer = Issuer::start(vec![old.clone()], 300).await;
    let (_signer, base) = signer(&server, &name, &issuer, &[]).await;
    let token = |k: &SigningKey| k.sign(&issuer.claims("ada", AUDIENCE));
    assert_eq!(
        code(start(&base, Some(&token(&old)), json!({})).await).0,
        201
    );
    let fetched_at = Instant::now();
    assert_eq!(issuer.jwks_requests(), 1, "one fetch at start");

    issuer.publish(new.clone());
    issuer.retire(&old.kid);
    // Within 30 s of the last look: the new key is not known yet, and a flood of unknown
    // key ids does not make the signer ask again.
    assert_eq!(
        code(start(&base, Some(&token(&new)), json!({})).await),
        (401, "UnknownKey".into())
    );
    for i in 0..20 {
        let fake = SigningKey::generate(&format!("made-up-{i}"), Algorithm::EdDSA);
        assert_eq!(
            code(start(&base, Some(&token(&fake)), json!({})).await).0,
            401
        );
    }
    assert_eq!(issuer.jwks_requests(), 1, "no fetch per unknown key");
    tokio::time::sleep(
        (fetched_at + Duration::from_secs(31)).saturating_duration_since(Instant::now()),
    )
    .await;
    assert_eq!(
        code(start(&base, Some(&token(&new)), json!({})).await).0,
        201,
        "rotated in"
    );
    assert_eq!(issuer.jwks_requests(), 2);
    assert_eq!(
        code(start(&base, Some(&token(&old)), json!({})).await),
        (401, "UnknownKey".into()),
        "the retired key"
    );
    assert_eq!(
        issuer.jwks_requests(),
        2,
        "the retired key's refusal asked nothing"
    );
}

/// The provider goes down: past the keys' freshness (60 s, the least the signer allows) the
/// signer tries once, then keeps signing with the keys it has; a signer that never had the
/// keys answers 503 `KeysUnavailable`, not 401.
#[tokio::test]
async fn an_outage_of_the_provider_is_ridden_out_on_cached_keys() {
    let Some(server) = s3_server("an_outage_of_the_provider_is_ridden_out_on_cached_keys") else {
        return;
    };
    let (name, _) = bucket(&server).await;
    let key = SigningKey::generate("k1", Algorithm::EdDSA);
    // max-age=1: fresh for the shortest time the signer allows (60 s).
    let issuer = Issuer::start(vec![key.clone()], 1).await;
    let (_signer, base) = signer(&server, &name, &issuer, &[]).await;
    let token = key.sign(&issuer.claims("ada", AUDIENCE));
    assert_eq!(code(start(&base, Some(&token), json!({})).await).0, 201);
    let fetched_at = Instant::now();
    assert_eq!(issuer.jwks_requests(), 1);
    // It hangs rather than refuses: no request waits for it.
    issuer.set_delay(30);
    tokio::time::sleep(
        (fetched_at + Duration::from_secs(62)).saturating_duration_since(Instant::now()),
    )
    .await;
    for _ in 0..5 {
        let asked = Instant::now();
        assert_eq!(
            code(start(&base, Some(&token), json!({})).await).0,
            201,
            "from the cache"
        );
        assert!(
            asked.elapsed() < Duration::from_secs(2),
            "{:?}",
            asked.elapsed()
        );
    }
    assert_eq!(issuer.jwks_requests(), 2, "one try while down");
    issuer.set_delay(0);
    issuer.set_down(true);

    let (_cold, cold) = signer(&server, &name, &issuer, &[]).await;
    let (status, _, body) = start(&cold, Some(&token), json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("KeysUnavailable")),
        "{body}"
    );
}

/// With the email as the owner, only a verified address names a folder: a token whose
/// `email_verified` is not true (anyone can sign up with someone else's address at most
/// providers) is refused.
#[tokio::test]
async fn an_unverified_email_names_no_folder() {
    let Some(server) = s3_server("an_unverified_email_names_no_folder") else {
        return;
    };
    let (name, _) = bucket(&server).await;
    let key = SigningKey::generate("k1", Algorithm::RS256);
    let issuer = Issuer::start(vec![key.clone()], 300).await;
    let (_signer, base) = signer(
        &server,
        &name,
        &issuer,
        &[("UPLOADBUCKET_JWT_OWNER_CLAIM", "email")],
    )
    .await;
    let token = |verified: Option<Value>| {
        let mut c = issuer.claims("auth0|mallory", AUDIENCE);
        c["email"] = json!("alice@example.com");
        if let Some(v) = verified {
            c["email_verified"] = v;
        }
        key.sign(&c)
    };
    for refused in [None, Some(json!(false)), Some(json!("no"))] {
        assert_eq!(
            code(start(&base, Some(&token(refused.clone())), json!({})).await),
            (401, "EmailNotVerified".into()),
            "{refused:?}"
        );
    }
    let (status, _, body) = start(&base, Some(&token(Some(json!(true)))), json!({})).await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["key"]
            .as_str()
            .unwrap()
            .starts_with("uploads/alice@example.com/"),
        "{body}"
    );
}

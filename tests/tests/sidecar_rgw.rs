//! The signer as a real process against Ceph RGW: PUT, POST form and multipart uploads land;
//! wrong content type, wrong size, tampered key, expired URL and oversize POST are refused
//! by the S3 server itself.

use std::time::Duration;

use serde_json::{Value, json};
use uploadbucket_tests::{
    S3Server, SignerRig, assert_row, assert_stored, json_of, plain_bucket, post_signed, put_part,
    put_signed, put_with, s3_server, sign_upload, start_sidecar, status_json, unique_name,
    upload_id_segment,
};

/// PUTs `body` with `content_type` and, for URLs from `POST /uploads`, the `if-none-match: *`
/// they sign (`no_overwrite`).
async fn put(
    http: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String) {
    put_with(
        http,
        url,
        &[("content-type", content_type), ("if-none-match", "*")],
        body,
    )
    .await
}

/// A refused PUT: (label, URL, headers, body size, statuses allowed).
type PutRow<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], usize, &'a [u16]);

/// The usual rig: a signer with [`ENV`] for a new bucket.
async fn rig(test: &str) -> Option<SignerRig> {
    SignerRig::start(test, "ub-signer", &ENV).await
}

const ENV: [(&str, &str); 2] = [
    ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg,image/png"),
    ("UPLOADBUCKET_MAX_SIZE_BYTES", "12582912"),
];

#[tokio::test]
async fn put_urls_work_and_the_server_enforces_what_was_signed() {
    let Some(rig) = rig("put_urls_work_and_the_server_enforces_what_was_signed").await else {
        return;
    };
    let (name, raw, base, http) = (&rig.bucket, &rig.raw, &rig.base, &rig.http);

    let signed = rig
        .sign(json!({"filename": "cat.jpg", "contentType": "image/jpeg", "size": 1024}))
        .await;
    let url = signed["uploadURL"].as_str().unwrap();
    let key = signed["key"].as_str().unwrap();

    // Refused by RGW, one row a case: (label, URL, headers, body, statuses allowed). Nothing
    // is stored by any of them.
    let tampered = url.replacen(key, &format!("{key}x"), 1);
    let (jpeg, png) = (
        ("content-type", "image/jpeg"),
        ("content-type", "image/png"),
    );
    let no_overwrite = ("if-none-match", "*");
    let refusals: [PutRow; 4] = [
        (
            "wrong content type",
            url,
            &[png, no_overwrite],
            1024,
            &[403],
        ),
        ("wrong size", url, &[jpeg, no_overwrite], 1025, &[400, 403]),
        (
            "tampered key",
            &tampered,
            &[jpeg, no_overwrite],
            1024,
            &[403],
        ),
        // The no-overwrite header is part of the signature.
        (
            "without the signed if-none-match",
            url,
            &[jpeg],
            1024,
            &[403],
        ),
    ];
    for (label, url, headers, size, allowed) in refusals {
        let (status, text) = put_with(http, url, headers, vec![7; size]).await;
        assert_row(label, status, &text, allowed);
    }
    rig.assert_absent(key, "after the refused PUTs").await;

    // The real upload lands with the signed type under the prefix.
    let (status, text) = put(http, url, "image/jpeg", vec![7; 1024]).await;
    assert_eq!(status, 200, "{text}");
    rig.assert_stored(key, "image/jpeg", 1024).await;
    assert!(key.starts_with("uploads/") && key.ends_with(".jpg"));
    // A second PUT to the same URL cannot replace it.
    let (status, text) = put(http, url, "image/jpeg", vec![9; 1024]).await;
    assert_eq!(status, 412, "{text}");
    let stored = uploadbucket_tests::object_bytes(raw, name, key).await;
    assert_eq!(stored, Some(vec![7u8; 1024]), "the first upload is kept");

    // The Lambda-compatible GET: no PUT URL without a size, which is then signed.
    let (status, refusal) =
        status_json(http.get(format!("{base}/uploads?contentType=image/png"))).await;
    assert_eq!(status, 400);
    assert_eq!(refusal["error"]["code"], "SizeRequired", "{refusal}");
    let legacy = json_of(http.get(format!("{base}/uploads?contentType=image/png&size=3"))).await;
    let legacy_url = legacy["uploadURL"].as_str().unwrap();
    let (status, text) = put_with(http, legacy_url, &[png], b"png!".to_vec()).await;
    assert_row("a 4-byte body on a 3-byte URL", status, &text, &[400, 403]);
    let (status, text) = put_with(http, legacy_url, &[png], b"png".to_vec()).await;
    assert_eq!(status, 200, "{text}");
    assert!(rig.is_stored(legacy["Key"].as_str().unwrap()).await);

    // A Content-MD5 signed in: RGW refuses other bytes (400 BadDigest) and stores nothing.
    let body = b"\xff\xd8\xffintegrity".to_vec();
    let md5 = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        md5_digest(&body),
    );
    let signed = rig
        .sign(json!({"contentType": "image/jpeg", "size": body.len(), "contentMD5": md5}))
        .await;
    let mut flipped = body.clone();
    flipped[5] ^= 1;
    let (status, text) = put_signed(http, &signed, flipped).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("BadDigest"), "{text}");
    let key = signed["key"].as_str().unwrap();
    rig.assert_absent(key, "after a bad digest").await;
    let (status, text) = put_signed(http, &signed, body.clone()).await;
    assert_eq!(status, 200, "{text}");
    rig.assert_stored(key, "image/jpeg", body.len() as i64)
        .await;

    // The sidecar refuses a type the bucket does not allow before anything is signed.
    let resp = http
        .post(format!("{base}/uploads"))
        .json(&json!({"contentType": "text/html"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test]
async fn expired_urls_are_refused() {
    let mut env = ENV.to_vec();
    env.push(("UPLOADBUCKET_EXPIRES_SECONDS", "1"));
    let Some(rig) = SignerRig::start("expired_urls_are_refused", "ub-signer", &env).await else {
        return;
    };
    let http = &rig.http;
    // Two URLs signed alike: the first, used at once, is the positive control; the second,
    // used after its lifetime (the signer's 1 s, from its X-Amz-Date), must be refused.
    let control = rig
        .sign(json!({"contentType": "image/jpeg", "size": 4}))
        .await;
    let signed = rig
        .sign(json!({"contentType": "image/jpeg", "size": 4}))
        .await;
    let (status, text) = put(
        http,
        control["uploadURL"].as_str().unwrap(),
        "image/jpeg",
        b"soon".to_vec(),
    )
    .await;
    assert_eq!(status, 200, "the control URL works before expiry: {text}");
    let url = signed["uploadURL"].as_str().unwrap().to_owned();
    let param = |name: &str| {
        url.split(['?', '&'])
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .unwrap()
            .to_owned()
    };
    assert_eq!(param("X-Amz-Expires"), "1");
    let signed_at: std::time::SystemTime =
        k8s_openapi::jiff::fmt::strtime::parse("%Y%m%dT%H%M%SZ", param("X-Amz-Date"))
            .and_then(|t| t.to_datetime())
            .and_then(|t| t.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC))
            .expect("X-Amz-Date")
            .timestamp()
            .into();
    // Past the expiry, with a second's margin for X-Amz-Date's one-second resolution.
    let wait = (signed_at + Duration::from_secs(2))
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    let (status, text) = put(http, &url, "image/jpeg", b"late".to_vec()).await;
    assert_eq!(status, 403, "{text}");
    rig.assert_absent(signed["key"].as_str().unwrap(), "an expired URL")
        .await;
}

#[tokio::test]
async fn post_forms_land_and_oversize_is_refused_by_the_server() {
    let Some(rig) = rig("post_forms_land_and_oversize_is_refused_by_the_server").await else {
        return;
    };
    let (base, http) = (&rig.base, &rig.http);

    let signed = rig
        .sign(json!({"contentType": "image/png", "method": "POST", "size": 2000}))
        .await;
    let (status, text) = post_signed(http, &signed, vec![1; 2001]).await;
    assert_row("oversize POST", status, &text, &[400, 403]);
    assert!(text.contains("EntityTooLarge") || status == 403, "{text}");
    let key = signed["key"].as_str().unwrap();
    rig.assert_absent(key, "an oversize POST").await;

    let (status, text) = post_signed(http, &signed, vec![1; 1500]).await;
    assert!((200..300).contains(&status), "{status}: {text}");
    rig.assert_stored(key, "image/png", 1500).await;
    // The same form again, within its lifetime: a POST policy has no condition for "create
    // only", so the second upload replaces the first (docs/concepts/backends.md says so;
    // the key stays unguessable, so only whoever holds the form can do it).
    let (status, text) = post_signed(http, &signed, vec![1; 1200]).await;
    assert!((200..300).contains(&status), "{status}: {text}");
    rig.assert_stored(key, "image/png", 1200).await;

    // A form whose content type is changed by the client breaks the policy.
    let mut tampered = rig
        .sign(json!({"contentType": "image/png", "method": "POST"}))
        .await;
    tampered["fields"]["Content-Type"] = json!("text/html");
    let (status, _) = post_signed(http, &tampered, b"<script>".to_vec()).await;
    assert_eq!(status, 403);

    // No size and no method: a form limited to the bucket's maximum (12 MiB here), and so is
    // Uppy's single upload (`/s3/params`), on which RGW refuses one byte more.
    let unsized_ = rig.sign(json!({"contentType": "image/png"})).await;
    assert_eq!(unsized_["method"], "POST");
    assert_eq!(unsized_["maxSizeBytes"], 12582912);
    let uppy = json_of(http.get(format!(
        "{base}/s3/params?filename=a.png&type=image/png&metadata[relativePath]=null&metadata[name]=a.png"
    )))
    .await;
    assert_eq!(uppy["method"], "POST", "{uppy}");
    let (status, text) = post_signed(http, &uppy, vec![2; 12582913]).await;
    assert_row("one byte over the maximum", status, &text, &[400, 403]);
    let key = uppy["key"].as_str().unwrap();
    rig.assert_absent(key, "one byte over the maximum").await;
    let (status, text) = post_signed(http, &uppy, vec![2; 4096]).await;
    assert!((200..300).contains(&status), "{status}: {text}");
    rig.assert_stored(key, "image/png", 4096).await;
}

/// `POST {base}/{path}` with `req`, which starts a multipart upload: its key, its upload id
/// and the upload's URL under `{base}/{path}`.
async fn start_multipart(rig: &SignerRig, path: &str, req: Value) -> (String, String, String) {
    let created = json_of(rig.http.post(format!("{}/{path}", rig.base)).json(&req)).await;
    let key = created["key"]
        .as_str()
        .unwrap_or_else(|| panic!("key: {created}"));
    let id = created["uploadId"]
        .as_str()
        .unwrap_or_else(|| panic!("uploadId: {created}"));
    let upload = format!("{}/{path}/{}", rig.base, upload_id_segment(id));
    (key.to_owned(), id.to_owned(), upload)
}

/// Whether RGW still holds the multipart upload `id` in the rig's bucket.
async fn in_progress(rig: &SignerRig, id: &str) -> bool {
    let open = rig
        .raw
        .list_multipart_uploads()
        .bucket(&rig.bucket)
        .send()
        .await
        .expect("list multipart uploads");
    open.uploads().iter().any(|u| u.upload_id() == Some(id))
}

#[tokio::test]
async fn multipart_upload_of_seven_mib_completes() {
    let Some(rig) = rig("multipart_upload_of_seven_mib_completes").await else {
        return;
    };
    let (_name, _raw, _base, http) = (&rig.bucket, &rig.raw, &rig.base, &rig.http);

    let (key, id, upload) = start_multipart(
        &rig,
        "s3/multipart",
        json!({"filename": "big.jpg", "type": "image/jpeg", "metadata": {}}),
    )
    .await;
    let batch = json_of(http.get(format!("{upload}/batch?key={key}&partNumbers=1,2"))).await;
    let sizes = [5 * 1024 * 1024, 2 * 1024 * 1024];
    let mut parts = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let n = i + 1;
        let url = batch["presignedUrls"][n.to_string()]
            .as_str()
            .expect("part url");
        let etag = put_part(http, url, vec![n as u8; *size]).await;
        parts.push(json!({"PartNumber": n, "ETag": etag}));
    }
    let listed = json_of(http.get(format!("{upload}?key={key}"))).await;
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");

    // A tampered part list (a forged ETag for part 2) is refused and the upload aborted: it
    // cannot be retried into something else.
    let forged = json!({"parts": [parts[0].clone(), {"PartNumber": 2, "ETag": "\"0123456789abcdef0123456789abcdef\""}]});
    let (status, refused) = status_json(
        http.post(format!("{upload}/complete?key={key}"))
            .json(&forged),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(refused["error"]["code"], "InvalidPart", "{refused}");
    assert!(
        !in_progress(&rig, &id).await,
        "the refused upload was aborted"
    );
    rig.assert_absent(&key, "a forged part list").await;

    // The same parts again, in a fresh upload, with each part's size signed: a part of
    // another size is refused by RGW, the right one completes.
    let (key, _id, upload) = start_multipart(&rig, "s3/multipart",
        json!({"filename": "big.jpg", "type": "image/jpeg", "metadata": {"relativePath": null, "name": "big.jpg"}}),
    )
    .await;
    let mut parts = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let n = i + 1;
        let signed = json_of(http.get(format!("{upload}/{n}?key={key}&size={size}"))).await;
        let url = signed["url"].as_str().unwrap();
        let wrong = http
            .put(url)
            .body(vec![n as u8; *size + 1])
            .send()
            .await
            .unwrap();
        assert_row(
            &format!("part {n} one byte longer"),
            wrong.status().as_u16(),
            &url,
            &[400, 403],
        );
        let etag = put_part(http, url, vec![n as u8; *size]).await;
        parts.push(json!({"PartNumber": n, "ETag": etag}));
    }

    let (status, done) = status_json(
        http.post(format!("{upload}/complete?key={key}"))
            .json(&json!({"parts": parts})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert!(done["location"].as_str().unwrap().ends_with(&key));
    rig.assert_stored(&key, "image/jpeg", 7 * 1024 * 1024).await;
}

/// MD5 of `data`, as Content-MD5 carries it (before base64).
fn md5_digest(data: &[u8]) -> Vec<u8> {
    use md5::Digest as _;
    md5::Md5::digest(data).to_vec()
}

#[tokio::test]
async fn public_buckets_store_documents_as_attachments() {
    let env = [
        (
            "UPLOADBUCKET_ALLOWED_CONTENT_TYPES",
            "image/jpeg,application/pdf",
        ),
        ("UPLOADBUCKET_PUBLIC_READ", "true"),
    ];
    let Some(rig) = SignerRig::start(
        "public_buckets_store_documents_as_attachments",
        "ub-signer",
        &env,
    )
    .await
    else {
        return;
    };
    let http = &rig.http;
    let disposition = |key: String| {
        let raw = rig.raw.clone();
        let name = rig.bucket.clone();
        async move {
            raw.head_object()
                .bucket(name)
                .key(&key)
                .send()
                .await
                .expect("stored")
                .content_disposition()
                .map(str::to_owned)
        }
    };

    // PUT: the signed headers include the disposition; without it the URL is refused.
    let signed = rig
        .sign(json!({"contentType": "application/pdf", "size": 8}))
        .await;
    let url = signed["uploadURL"].as_str().unwrap();
    let (status, _) = put(http, url, "application/pdf", b"%PDF-1.7".to_vec()).await;
    assert_eq!(status, 403, "the disposition is part of the signature");
    let (status, text) = put_signed(http, &signed, b"%PDF-1.7".to_vec()).await;
    assert_eq!(status, 200, "{text}");
    let key = signed["key"].as_str().unwrap().to_owned();
    assert_eq!(disposition(key).await.as_deref(), Some("attachment"));

    // POST form: the field is pinned by the policy. (RGW 16 accepts the form but does not
    // store a Content-Disposition from it; AWS does. See docs/concepts/backends.md.)
    let mut form = rig
        .sign(json!({"contentType": "application/pdf", "method": "POST"}))
        .await;
    assert_eq!(form["fields"]["Content-Disposition"], "attachment");
    let (status, text) = post_signed(http, &form, b"%PDF-1.7".to_vec()).await;
    assert!((200..300).contains(&status), "{status}: {text}");
    form["fields"]["Content-Disposition"] = json!("inline");
    let (status, _) = post_signed(http, &form, b"%PDF-1.7".to_vec()).await;
    assert_eq!(status, 403, "an inline disposition breaks the policy");

    // Images stay inline.
    let signed = rig
        .sign(json!({"contentType": "image/jpeg", "size": 3}))
        .await;
    let (status, _) = put(
        http,
        signed["uploadURL"].as_str().unwrap(),
        "image/jpeg",
        b"\xff\xd8\xff".to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let key = signed["key"].as_str().unwrap().to_owned();
    assert_eq!(disposition(key).await, None);
}

/// A signed PUT URL sent with unsigned extra headers, one of them `x-amz-acl: public-read`:
/// RGW 16 stores the upload with them (AWS would refuse headers it was not signed for), and
/// the ACL would make it public; on a bucket as the operator makes it (its public-access block
/// ignores public ACLs) the stored object stays private. The control: the same request to a
/// bucket without that block gives an object anyone can read.
async fn put_with_a_public_acl_header(
    server: &S3Server,
    bucket: &str,
) -> (u16, String, String, reqwest::StatusCode) {
    let (_child, base) = start_sidecar(server, bucket, &ENV).await;
    let http = reqwest::Client::new();
    let signed = sign_upload(
        &http,
        &base,
        json!({"contentType": "image/jpeg", "size": 3}),
    )
    .await;
    let (status, text) = put_with(
        &http,
        signed["uploadURL"].as_str().unwrap(),
        &[
            ("content-type", "image/jpeg"),
            ("if-none-match", "*"),
            ("x-amz-acl", "public-read"),
            ("x-amz-meta-evil", "1"),
        ],
        b"\xff\xd8\xff".to_vec(),
    )
    .await;
    let key = signed["key"].as_str().unwrap().to_owned();
    let anonymous = http
        .get(format!("{}/{bucket}/{key}", server.endpoint))
        .send()
        .await
        .unwrap()
        .status();
    (status, text, key, anonymous)
}

#[tokio::test]
async fn unsigned_extra_headers_cannot_make_an_upload_public() {
    let Some(server) = s3_server("unsigned_extra_headers_cannot_make_an_upload_public") else {
        return;
    };
    // A bucket as the operator makes it (public-access block included).
    let name = unique_name("ub-acl");
    let spec: uploadbucket_operator::crd::UploadBucketSpec =
        serde_json::from_value(json!({"bucketName": name})).unwrap();
    let mut ub = uploadbucket_operator::crd::UploadBucket::new("acl", spec);
    ub.metadata.namespace = Some("e2e".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    let (buckets, _) = server.buckets().await;
    uploadbucket_tests::provision(&buckets, &ub, &uploadbucket_tests::defaults(&server))
        .await
        .expect("provision");
    let (status, text, key, anonymous) = put_with_a_public_acl_header(&server, &name).await;
    // Stored (RGW 16 takes unsigned x-amz-* headers: measured), so the GET below is about an
    // object that is there, not a missing key.
    assert_eq!(status, 200, "the PUT with unsigned headers: {text}");
    let raw = server.admin_client().await;
    assert_stored(&raw, &name, &key, "image/jpeg", 3).await;
    assert_eq!(anonymous, 403, "the upload must not be public");

    // The control: on a bucket without the operator's public-access block, the same request
    // stores the ACL's public read.
    let (plain, _) = plain_bucket(&server, "ub-signer").await;
    let (status, text, key, anonymous) = put_with_a_public_acl_header(&server, &plain).await;
    assert_eq!(status, 200, "{text}");
    assert_stored(&raw, &plain, &key, "image/jpeg", 3).await;
    assert_eq!(
        anonymous, 200,
        "without the public-access block the ACL header makes the upload public"
    );
}

/// A multipart upload made for one owner: another owner (or none) can neither sign its parts,
/// list them, complete nor abort it, and RGW still holds it; its owner completes it.
#[tokio::test]
async fn only_the_owner_continues_a_multipart_upload() {
    let Some(rig) = rig("only_the_owner_continues_a_multipart_upload").await else {
        return;
    };
    let (_name, _raw, _base, http) = (&rig.bucket, &rig.raw, &rig.base, &rig.http);
    let (key, id, upload) = start_multipart(
        &rig,
        "uploads/multipart",
        json!({"type": "image/jpeg", "owner": "alice"}),
    )
    .await;
    assert!(key.starts_with("uploads/alice/"), "{key}");
    let q = |owner: &str| {
        let mut q = vec![("key", key.clone())];
        if !owner.is_empty() {
            q.push(("owner", owner.to_owned()));
        }
        q
    };
    // One row a request another owner (or none) makes: each answers 403 OwnerMismatch.
    for owner in ["mallory", ""] {
        let rows = [
            ("sign part 1", http.get(format!("{upload}/1"))),
            ("list parts", http.get(&upload)),
            (
                "complete",
                http.post(format!("{upload}/complete"))
                    .json(&json!({"parts": []})),
            ),
            ("abort", http.delete(&upload)),
        ];
        for (label, req) in rows {
            let (status, body) = status_json(req.query(&q(owner))).await;
            let label = format!("{label} as {owner:?}");
            assert_row(&label, status, &body, &[403]);
            assert_eq!(
                body["error"]["code"], "OwnerMismatch",
                "row {label:?}: {body}"
            );
        }
    }
    assert!(
        in_progress(&rig, &id).await,
        "the upload is still in progress at RGW"
    );
    // Its owner signs a part, uploads it and completes.
    let part = json_of(http.get(format!("{upload}/1")).query(&q("alice"))).await;
    let url = part["url"].as_str().unwrap_or_else(|| panic!("{part}"));
    let etag = put_part(http, url, vec![7u8; 1000]).await;
    let done = http
        .post(format!("{upload}/complete"))
        .query(&q("alice"))
        .json(&json!({"parts": [{"PartNumber": 1, "ETag": etag}]}))
        .send()
        .await
        .unwrap();
    assert!(done.status().is_success(), "{}", done.text().await.unwrap());
    assert!(rig.is_stored(&key).await, "stored in alice's folder");
}

/// Quotas on real processes: the open-multipart cap is counted at RGW, so it holds across two
/// signers of the same bucket; the start rate answers 429 with Retry-After, then recovers.
#[tokio::test]
async fn quotas_hold_across_signers_and_recover() {
    let Some(server) = s3_server("quotas_hold_across_signers_and_recover") else {
        return;
    };
    let (name, raw) = plain_bucket(&server, "ub-signer").await;
    let mut env = ENV.to_vec();
    env.push(("UPLOADBUCKET_MAX_OPEN_MULTIPART", "2"));
    env.push(("UPLOADBUCKET_URLS_PER_MINUTE", "60"));
    let (_a, a) = start_sidecar(&server, &name, &env).await;
    let (_b, b) = start_sidecar(&server, &name, &env).await;
    let http = reqwest::Client::new();
    let create = |base: &str, owner: &str| {
        http.post(format!("{base}/uploads/multipart"))
            .json(&json!({"type": "image/jpeg", "owner": owner}))
            .send()
    };
    let first: Value = create(&a, "carol").await.unwrap().json().await.unwrap();
    assert!(first["uploadId"].is_string(), "{first}");
    assert_eq!(create(&b, "carol").await.unwrap().status(), 200);
    let third = create(&a, "carol").await.unwrap();
    assert_eq!(
        third.status(),
        429,
        "the cap counts the other signer's upload too"
    );
    let body: Value = third.json().await.unwrap();
    assert_eq!(body["error"]["code"], "TooManyOpenUploads", "{body}");
    assert_eq!(
        create(&b, "dave").await.unwrap().status(),
        200,
        "another owner"
    );
    // Aborting one frees a place.
    raw.abort_multipart_upload()
        .bucket(name)
        .key(first["key"].as_str().unwrap())
        .upload_id(first["uploadId"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(create(&a, "carol").await.unwrap().status(), 200);

    // 60 starts a minute: a burst of them, then 429 with Retry-After, then one again.
    let start = || {
        http.post(format!("{a}/uploads"))
            .json(&json!({"contentType": "image/jpeg", "size": 5, "owner": "erin"}))
            .send()
    };
    let mut refused = None;
    let mut accepted = 0;
    let burst = std::time::Instant::now();
    for _ in 0..80 {
        let resp = start().await.unwrap();
        if resp.status() == 429 {
            refused = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 201);
        accepted += 1;
    }
    let refused = refused.expect("a burst of starts is refused once the minute's 60 are used");
    // Exactly the 60 of the bucket, plus at most one per second the burst took (the bucket
    // refills at 60 a minute).
    let refilled = burst.elapsed().as_secs() as usize + 1;
    assert!(
        (60..=60 + refilled).contains(&accepted),
        "{accepted} starts accepted before the first 429 (60 expected, {refilled} may have refilled)"
    );
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(
        start().await.unwrap().status(),
        201,
        "recovered after Retry-After"
    );
}

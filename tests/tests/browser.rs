//! Real uploads from headless Chromium (Debian `chromium`) through examples/web/upload.js:
//! against Ceph RGW with the bucket's CORS set by the operator's own code, and against the
//! sidecar's dev mode. A small "app backend" (this test) serves the page and proxies
//! `/api/uploads` to the sidecar, as a real app would. Screenshots go to tests/artifacts/.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use uploadbucket_operator::aws::BucketApi;
use uploadbucket_operator::crd::{UploadBucket, UploadBucketSpec};
use uploadbucket_tests::browser::{
    Cdp, chromium, dump_dom, page_stores_jpeg, repo, run_page, tempdir,
};
use uploadbucket_tests::{
    example_web_missing, json_of, put_signed, require_or_skip, s3_server, sign_upload, start_dev,
    start_sidecar, unique_name,
};

const MIB: usize = 1024 * 1024;

/// The app backend: the test page, upload.js, and `/api/*` proxied to the signer.
/// An app backend on `listener` (or a new loopback port): serves the harness and proxies
/// `/api/...` to `signer`. Returns its origin.
async fn app_backend(
    signer: String,
    listener: Option<tokio::net::TcpListener>,
) -> (String, tokio::task::JoinHandle<()>) {
    #[derive(Clone)]
    struct Backend {
        signer: Arc<String>,
        http: reqwest::Client,
    }
    async fn page() -> impl IntoResponse {
        let html =
            std::fs::read_to_string(repo().join("tests/web/harness.html")).expect("harness.html");
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
    }
    async fn script() -> impl IntoResponse {
        let js = std::fs::read_to_string(repo().join("examples/web/upload.js")).expect("upload.js");
        (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
            js,
        )
    }
    async fn proxy(State(b): State<Backend>, req: Request) -> Response {
        // /api/uploads[/...]?q -> signer /uploads[/...]?q
        let path_q = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default();
        let target = format!("{}{}", b.signer, path_q.trim_start_matches("/api"));
        let method = req.method().clone();
        let ct = req.headers().get(header::CONTENT_TYPE).cloned();
        let body = axum::body::to_bytes(req.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        let mut out = b.http.request(method, target).body(body);
        if let Some(ct) = ct {
            out = out.header(header::CONTENT_TYPE, ct);
        }
        match out.send().await {
            Ok(resp) => {
                let status = resp.status();
                let bytes = resp.bytes().await.unwrap_or_default();
                Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(bytes))
                    .unwrap()
            }
            Err(_) => StatusCode::BAD_GATEWAY.into_response(),
        }
    }
    let state = Backend {
        signer: Arc::new(signer),
        http: reqwest::Client::new(),
    };
    async fn uppy_page() -> impl IntoResponse {
        let html = std::fs::read_to_string(repo().join("tests/web/uppy/index.html"))
            .expect("uppy index.html");
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html)
    }
    async fn uppy_script() -> Response {
        match UPPY_BUNDLE
            .get()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            Some(js) => (
                [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                js,
            )
                .into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let router = Router::new()
        .route("/", get(page))
        .route("/upload.js", get(script))
        .route("/uppy", get(uppy_page))
        .route("/uppy.js", get(uppy_script))
        .fallback(proxy)
        .with_state(state);
    let listener = match listener {
        Some(l) => l,
        None => tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind"),
    };
    let port = listener.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (format!("http://127.0.0.1:{port}"), handle)
}

/// A bucket `name` whose CORS rules allow `origin`, for JPEGs up to 12 MiB, made by the
/// operator's own code; and a plain S3 client to look at it.
async fn bucket_for_pages(
    server: &uploadbucket_tests::S3Server,
    name: &str,
    origin: &str,
) -> (
    uploadbucket_operator::aws::s3::S3Buckets,
    aws_sdk_s3::Client,
) {
    let (buckets, _) = server.buckets().await;
    let spec: UploadBucketSpec = serde_json::from_value(serde_json::json!({
        "bucketName": name,
        "cors": {"allowedOrigins": [origin]},
        "uploads": {"allowedContentTypes": ["image/jpeg"], "maxSizeBytes": 12582912}
    }))
    .expect("spec");
    let mut ub = UploadBucket::new("browser", spec);
    ub.metadata.namespace = Some("e2e".into());
    ub.metadata.uid = Some(format!("uid-{name}"));
    uploadbucket_tests::provision(&buckets, &ub, &uploadbucket_tests::defaults(server))
        .await
        .expect("provision");
    let raw = server
        .raw_client(&server.access_key, &server.secret_key)
        .await;
    (buckets, raw)
}

async fn remove_bucket(buckets: &uploadbucket_operator::aws::s3::S3Buckets, name: &str) {
    let b = uploadbucket_operator::aws::BucketRef {
        name: name.to_owned(),
        region: "us-east-1".into(),
    };
    buckets.empty_bucket(&b).await.expect("empty");
    buckets.delete_bucket(&b).await.expect("delete");
}

/// The Uppy test page's script, bundled once per test run.
static UPPY_BUNDLE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Bundles tests/web/uppy/uppy.js with the real `@uppy/core` and `@uppy/aws-s3` that
/// tests/scripts/install-deps.sh installed there (`npm ci`), using their esbuild.
fn uppy_bundle() -> Option<PathBuf> {
    let dir = repo().join("tests/web/uppy");
    let esbuild = dir.join("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        return require_or_skip(
            "Uppy browser test",
            &format!("{} is missing", esbuild.display()),
            "tests/scripts/install-deps.sh runs npm ci in tests/web/uppy",
        );
    }
    let out = tempdir().join("uppy-bundle.js");
    let status = Command::new(&esbuild)
        .current_dir(&dir)
        .args(["uppy.js", "--bundle", "--format=esm", "--log-level=warning"])
        .arg(format!("--outfile={}", out.display()))
        .status()
        .expect("run esbuild");
    assert!(status.success(), "esbuild failed");
    Some(UPPY_BUNDLE.get_or_init(|| out).clone())
}

/// The version of an npm package installed for the Uppy test.
fn npm_version(package: &str) -> String {
    let path = repo().join(format!(
        "tests/web/uppy/node_modules/{package}/package.json"
    ));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["version"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn browser_uploads_against_rgw_with_operator_cors() {
    let Some(server) = s3_server("browser_uploads_against_rgw_with_operator_cors") else {
        return;
    };
    browser_uploads_with_operator_cors(&server, "rgw").await;
}

/// The same pages against the AWS stand-in (LocalStack, strict signatures): its CORS
/// preflights answered from the rules the operator wrote on the AWS backend.
#[tokio::test]
async fn browser_uploads_against_the_aws_stand_in_with_operator_cors() {
    let Some(server) = uploadbucket_tests::aws_server(
        "browser_uploads_against_the_aws_stand_in_with_operator_cors",
    ) else {
        return;
    };
    browser_uploads_with_operator_cors(&server, "aws").await;
}

/// PUT, POST form and multipart uploads from a page on an origin the bucket's CORS rules
/// (written by the operator's code) allow, a refused preflight from another origin, and the
/// store's refusal of a form over the size range; screenshots named `<store>-...`.
async fn browser_uploads_with_operator_cors(server: &uploadbucket_tests::S3Server, store: &str) {
    let Some(chromium) = chromium() else { return };

    let signer_port_env = ("UPLOADBUCKET_MAX_SIZE_BYTES", "12582912");
    // Two app origins: one listed in the bucket's CORS rules, one not.
    let name = unique_name("ub-browser");
    let (sidecar, signer) = start_sidecar(
        server,
        &name,
        &[
            signer_port_env,
            ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg"),
        ],
    )
    .await;
    let (allowed, _a) = app_backend(signer.clone(), None).await;
    let (other, _b) = app_backend(signer.clone(), None).await;

    // The bucket, with CORS for the allowed origin, made by the operator's own code.
    let (buckets, raw) = bucket_for_pages(server, &name, &allowed).await;
    let count = || async {
        raw.list_objects_v2()
            .bucket(&name)
            .send()
            .await
            .expect("list objects")
            .contents()
            .len()
    };

    // From the allowed origin: PUT, POST form, and multipart in two parts (11 MiB: needs the
    // ETag exposed by CORS).
    for (query, shot, size) in [
        ("method=PUT&size=200000", "put-ok", 200_000),
        ("method=POST&size=300000", "post-ok", 300_000),
        (
            &*format!("method=multipart&size={}", 11 * MIB),
            "multipart-ok",
            11 * MIB as i64,
        ),
    ] {
        let (url, shot) = (format!("{allowed}/?{query}"), format!("{store}-{shot}"));
        page_stores_jpeg(&chromium, &url, &shot, &raw, &name, size).await;
    }

    // Another origin: the preflight is refused, nothing is stored.
    let before = count().await;
    let r = run_page(
        &chromium,
        &format!("{other}/?method=PUT&size=1000"),
        &format!("{store}-other-origin-blocked"),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], "Network", "{r}");
    assert_eq!(
        count().await,
        before,
        "nothing may be stored from a foreign origin"
    );

    // Over the size limit through the POST form: S3 refuses, the page says so.
    let r = run_page(
        &chromium,
        &format!("{allowed}/?method=POST&size={}", 13 * MIB),
        &format!("{store}-post-too-large"),
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], "TooLarge", "{r}");
    assert!(r["message"].as_str().unwrap().contains("too large"), "{r}");
    assert_eq!(count().await, before);

    drop(sidecar);
    remove_bucket(&buckets, &name).await;
}

#[tokio::test]
async fn browser_uploads_against_dev_mode() {
    let Some(chromium) = chromium() else { return };
    let data = tempdir();
    // The test's app backend binds first, so dev mode can allow its origin; dev mode binds
    // port 0 for both of its listeners and says where in its log.
    let page_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page_origin = format!("http://{}", page_listener.local_addr().unwrap());
    let (child, signer) = start_dev(&data, &["--allowed-origins", &page_origin, "--verify"]).await;
    let http = reqwest::Client::new();

    // The demo pages are served: the Dashboard at /, the form on upload.js at /plain.
    let page = |path: &'static str| {
        let http = http.clone();
        let url = format!("{signer}{path}");
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let dashboard = page("/").await;
    assert!(
        dashboard.contains("/dashboard.bundle.js") && dashboard.contains("href=\"/plain\""),
        "{dashboard}"
    );
    let plain = page("/plain").await;
    assert!(plain.contains("uploadbucket") && plain.contains("upload.js"));

    // Serve the harness on the allowed origin's port.
    let (origin, _h) = app_backend(signer.clone(), Some(page_listener)).await;
    assert_eq!(origin, page_origin);

    // With --verify every upload is tagged pending (PUT header, POST policy field, multipart
    // create), and verify marks it verified. The page verifies its PUT uploads; the POST
    // (over 2 MiB: the dev store reads its tagging field in front of s3s) and multipart ones
    // stay pending until verified below.
    for (method, size, verify) in [
        ("PUT", 150_000usize, true),
        ("POST", 3 * MIB, false),
        ("multipart", 9 * MIB, false),
    ] {
        let q = if verify { "&verify=1" } else { "" };
        let r = run_page(
            &chromium,
            &format!("{origin}/?method={method}&size={size}&owner=alice{q}"),
            &format!("dev-{method}-ok"),
        )
        .await;
        assert_eq!(r["ok"], true, "{method}: {r}");
        let mut key = r["key"].as_str().unwrap();
        assert!(
            key.starts_with("uploads/incoming/alice/"),
            "{method}: {key}"
        );
        if verify {
            assert_eq!(r["verified"]["detectedType"], "image/jpeg", "{method}: {r}");
            assert_eq!(r["verified"]["size"], size, "{method}: {r}");
            // Verify moved it to the verified area.
            assert!(!data.join("dev-uploads").join(key).exists(), "{key}");
            key = r["verified"]["key"].as_str().unwrap();
            assert!(key.starts_with("uploads/verified/alice/"), "{r}");
        }
        let file = data.join("dev-uploads").join(key);
        let meta =
            std::fs::metadata(&file).unwrap_or_else(|_| panic!("{} not on disk", file.display()));
        assert_eq!(meta.len() as usize, size, "{method}");
    }
    let listed = || async {
        let v = json_of(http.get(format!("{signer}/dev/objects"))).await;
        v["objects"].as_array().cloned().unwrap_or_default()
    };
    // Each page load runs twice (DOM dump, then screenshot): six uploads.
    let objects = listed().await;
    let mut states: Vec<(u64, &str)> = objects
        .iter()
        .map(|o| {
            (
                o["size"].as_u64().unwrap(),
                o["state"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    states.sort();
    assert_eq!(
        states,
        [
            (150_000, "verified"),
            (150_000, "verified"),
            (3 * MIB as u64, "pending"),
            (3 * MIB as u64, "pending"),
            (9 * MIB as u64, "pending"),
            (9 * MIB as u64, "pending"),
        ],
        "{objects:?}"
    );

    // HTML sent as a JPEG: stored by the dev store (the type is only the client's word),
    // then refused by verify, which deletes it; the page says why.
    let r = run_page(
        &chromium,
        &format!("{origin}/?method=PUT&size=4000&owner=alice&verify=1&content=html"),
        "dev-verify-refused",
    )
    .await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["code"], "ContentMismatch", "{r}");
    assert!(r["message"].as_str().unwrap().contains("image/jpeg"), "{r}");
    let key = r["key"].as_str().expect("the upload itself worked");
    assert!(
        !data.join("dev-uploads").join(key).exists(),
        "{key} deleted"
    );
    assert_eq!(listed().await.len(), 6, "both HTML uploads deleted");
    // Both demo pages list them with their state, and a Verify button on each pending one.
    for path in ["/", "/plain"] {
        let demo = dump_dom(&chromium, &format!("{signer}{path}")).await;
        assert_eq!(
            demo.matches("<td>pending</td>").count(),
            4,
            "{path}: {demo}"
        );
        assert_eq!(
            demo.matches("<td>verified</td>").count(),
            2,
            "{path}: {demo}"
        );
        assert_eq!(
            demo.matches("<button>Verify</button>").count(),
            4,
            "{path}: {demo}"
        );
    }

    // A multipart upload is verified by its owner, and only by its owner.
    let big = objects
        .iter()
        .find(|o| o["size"] == 9 * MIB)
        .and_then(|o| o["key"].as_str())
        .unwrap();
    let verify = |owner: &'static str| {
        http.post(format!("{signer}/uploads/verify"))
            .json(&serde_json::json!({"key": big, "owner": owner}))
            .send()
    };
    assert_eq!(verify("bob").await.unwrap().status(), 403);
    let v: Value = verify("alice").await.unwrap().json().await.unwrap();
    assert_eq!(v["detectedType"], "image/jpeg", "{v}");
    let verified_big = v["key"].as_str().unwrap().to_owned();
    let state = |k: &str| {
        let k = k.to_owned();
        let listed = &listed;
        async move {
            listed()
                .await
                .iter()
                .find(|o| o["key"] == k.as_str())
                .map(|o| o["state"].clone())
        }
    };
    assert_eq!(state(big).await, None, "moved");
    assert_eq!(state(&verified_big).await, Some(Value::from("verified")));

    // The dev store holds a PUT URL to its signed if-none-match: the second PUT is refused
    // and the first upload kept.
    let signed = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/jpeg", "size": 4}),
    )
    .await;
    let mut statuses = Vec::new();
    for body in [&b"\xff\xd8\xff\x01"[..], &b"\xff\xd8\xff\x02"[..]] {
        statuses.push(put_signed(&http, &signed, body.to_vec()).await.0);
    }
    assert_eq!(statuses, [200, 412]);
    let key = signed["key"].as_str().unwrap();
    // The signed x-amz-tagging header tagged it, as on S3.
    assert_eq!(state(key).await, Some(Value::from("pending")));
    assert_eq!(
        std::fs::read(data.join("dev-uploads").join(key)).unwrap(),
        b"\xff\xd8\xff\x01"
    );

    // A SHA-256 signed in: the dev store answers other bytes with 400 BadDigest (Ceph RGW 16
    // ignores the header; its Content-MD5 check is tested in sidecar_rgw).
    let good = b"\xff\xd8\xffchecked".to_vec();
    let sha = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        <sha2::Sha256 as sha2::Digest>::digest(&good),
    );
    let signed = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/jpeg", "size": good.len(), "checksumSHA256": sha}),
    )
    .await;
    let mut bad = good.clone();
    bad[4] ^= 1;
    let (status, text) = put_signed(&http, &signed, bad).await;
    assert_eq!(status, 400);
    assert!(text.contains("BadDigest"), "{text}");
    drop(child);
    let _ = std::fs::remove_dir_all(&data);
}

/// Two images drawn by Chromium (a JPEG and a PNG) for the Dashboard test, written into `dir`.
async fn drawn_images(cdp: &mut Cdp, dir: &std::path::Path) -> Vec<PathBuf> {
    use base64::Engine as _;
    let drawn = cdp
        .eval(
            "(() => {
              const draw = (w, h, hue, label, type) => {
                const c = document.createElement('canvas');
                c.width = w; c.height = h;
                const g = c.getContext('2d');
                const fill = g.createLinearGradient(0, 0, w, h);
                fill.addColorStop(0, `hsl(${hue}, 80%, 62%)`);
                fill.addColorStop(1, `hsl(${hue + 140}, 70%, 38%)`);
                g.fillStyle = fill; g.fillRect(0, 0, w, h);
                g.fillStyle = 'rgba(255,255,255,.85)';
                g.beginPath(); g.arc(w * .72, h * .32, h * .18, 0, 2 * Math.PI); g.fill();
                g.font = `bold ${h / 6}px sans-serif`; g.fillText(label, w * .08, h * .82);
                return c.toDataURL(type, 0.9).split(',')[1];
              };
              return [draw(640, 480, 20, 'sunset', 'image/jpeg'), draw(480, 360, 190, 'diagram', 'image/png')];
            })()",
        )
        .await;
    let mut files = Vec::new();
    for (name, data) in ["sunset.jpg", "diagram.png"]
        .iter()
        .zip(drawn.as_array().unwrap())
    {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap();
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        files.push(path);
    }
    files
}

/// The dev page (`/`) is the real Uppy Dashboard. In Chromium, over the DevTools protocol: an
/// HTML file chosen with its file picker and two images (a JPEG and a PNG) dropped onto it,
/// each shown with a thumbnail or icon; after a click on Upload the images are in the dev
/// store with the bytes sent, each shows a link (its thumbnail) that serves its object, as
/// does the bucket's list under the Dashboard, and the HTML file shows the signer's refusal
/// next to it, word for word, with a retry button. Screenshot `dev-dashboard`. Also the object
/// route's rules: keys checked, images inline, anything else (SVG too) an attachment.
#[tokio::test]
async fn the_dev_page_is_the_uppy_dashboard_with_thumbnails_links_and_refusals() {
    let Some(chromium) = chromium() else { return };
    let data = tempdir();
    let files = tempdir();
    let (_dev, signer) = start_dev(
        &data,
        &[
            // (SVG by name: `image/*` leaves it out, as markup; here it shows that the object
            // route serves it as a download.)
            "--allowed-content-types",
            "image/*,image/svg+xml",
            "--max-size-bytes",
            "5000000",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let mut cdp = Cdp::start(&chromium, 1000, 900).await;
    let images = drawn_images(&mut cdp, &files).await;
    let html = files.join("page.html");
    std::fs::write(&html, "<!doctype html><title>not an image</title>").unwrap();

    cdp.navigate(&format!("{signer}/")).await;
    let input = "input.uppy-Dashboard-input[name='files[]']:not([webkitdirectory])";
    cdp.wait_for(
        &format!("!!document.querySelector(\"{input}\")"),
        20,
        "the Dashboard",
    )
    .await;
    // What a first visit shows.
    cdp.screenshot("dev-dashboard-empty").await;
    // The file picker for the HTML file, then the images dropped onto the Dashboard.
    cdp.set_input_files(input, std::slice::from_ref(&html))
        .await;
    cdp.wait_for(
        "document.querySelectorAll('.uppy-Dashboard-Item').length === 1",
        10,
        "the chosen file listed",
    )
    .await;
    cdp.drop_files(".uppy-Dashboard-inner", &images).await;
    cdp.wait_for(
        "document.querySelectorAll('.uppy-Dashboard-Item').length === 3 \
         && document.querySelectorAll('.uppy-Dashboard-Item img.uppy-Dashboard-Item-previewImg').length === 2",
        20,
        "three files listed, the images with thumbnails",
    )
    .await;
    cdp.click(".uppy-StatusBar-actionBtn--upload").await;
    // Done: no file uploading, and the bucket's list under the Dashboard shows the two.
    let items = cdp
        .wait_for(
            "(() => {
              const items = [...document.querySelectorAll('.uppy-Dashboard-Item')];
              if (items.some((e) => !e.matches('.is-complete, .is-error'))) return null;
              if (document.querySelectorAll('#list a').length !== 2) return null;
              return items.map((e) => ({
                name: e.querySelector('.uppy-Dashboard-Item-name')?.getAttribute('title'),
                complete: e.classList.contains('is-complete'),
                failed: e.classList.contains('is-error'),
                error: e.querySelector('.uppy-Dashboard-Item-errorDetails')?.getAttribute('aria-label') ?? null,
                shown: e.querySelector('.uppy-Dashboard-Item-errorDetails') ? getComputedStyle(e.querySelector('.uppy-Dashboard-Item-errorDetails'), '::after').content : null,
                retry: !!e.querySelector('.uppy-Dashboard-Item-progressIndicator[aria-label=\"Retry upload\"]'),
                link: e.querySelector('a.uppy-Dashboard-Item-previewLink')?.href ?? null,
                thumbnail: !!e.querySelector('img.uppy-Dashboard-Item-previewImg'),
              }));
            })()",
            60,
            "the uploads done",
        )
        .await;
    let listed: Vec<String> = serde_json::from_value(
        cdp.eval("[...document.querySelectorAll('#list a')].map((a) => a.href)")
            .await,
    )
    .unwrap();
    let shot = cdp.screenshot("dev-dashboard").await;
    eprintln!("screenshot: {}", shot.display());
    // Its retry button asks the signer again (the file leaves the error state), and is
    // refused again, for the same reason.
    cdp.eval(
        "(() => {
          const item = document.querySelector('.uppy-Dashboard-Item.is-error');
          window.retried = false;
          // A class attribute that held no is-error before a change: it left the state.
          new MutationObserver((changes) => {
            if (changes.some((c) => !c.oldValue.includes('is-error'))) window.retried = true;
          }).observe(item, { attributes: true, attributeFilter: ['class'], attributeOldValue: true });
        })()",
    )
    .await;
    cdp.click(".uppy-Dashboard-Item.is-error .uppy-Dashboard-Item-progressIndicator")
        .await;
    let again = cdp
        .wait_for(
            "window.retried && document.querySelector('.uppy-Dashboard-Item.is-error              .uppy-Dashboard-Item-errorDetails')?.getAttribute('aria-label')",
            20,
            "the retried file refused again",
        )
        .await;
    cdp.close().await;

    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    let item = |name: &str| {
        items
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in the Dashboard: {items:?}"))
    };
    // The refused file: the signer's own message next to it.
    let refused = json_of(http.get(format!(
        "{signer}/s3/params?filename=page.html&type=text/html"
    )))
    .await;
    let says = refused["error"]["message"].as_str().unwrap();
    assert!(says.contains("not allowed"), "{refused}");
    let html_item = item("page.html");
    assert_eq!(
        (&html_item["failed"], &html_item["error"]),
        (&Value::from(true), &Value::from(says)),
        "{html_item}"
    );
    // Shown as text under its name (the page's style makes the "?" button's label its
    // content), not only on a click: the computed `content`, a CSS string.
    let shown = html_item["shown"].as_str().unwrap_or_default();
    assert_eq!(
        shown
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .map(|s| s.replace("\\\"", "\"")),
        Some(says.to_owned()),
        "{html_item}"
    );
    assert_eq!(html_item["link"], Value::Null, "{html_item}");
    assert_eq!(html_item["retry"], true, "{html_item}");
    assert_eq!(again, says, "after a retry");
    // The images: stored with the bytes sent, linked from the Dashboard and the list.
    let mut links = Vec::new();
    for (path, content_type) in images.iter().zip(["image/jpeg", "image/png"]) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let sent = std::fs::read(path).unwrap();
        let it = item(name);
        assert_eq!(
            (&it["complete"], &it["thumbnail"]),
            (&Value::from(true), &Value::from(true)),
            "{it}"
        );
        let link = it["link"]
            .as_str()
            .unwrap_or_else(|| panic!("no link: {it}"));
        let key = link
            .strip_prefix(&format!("{signer}/dev/objects/"))
            .unwrap_or_else(|| panic!("{link}"));
        assert!(key.starts_with("uploads/"), "{key}");
        assert_eq!(
            std::fs::read(data.join("dev-uploads").join(key))
                .ok()
                .as_deref(),
            Some(&sent[..]),
            "{name} stored at {key}"
        );
        let got = http.get(link).send().await.unwrap();
        assert_eq!(got.status(), 200, "{link}");
        assert_eq!(got.headers()[header::CONTENT_TYPE], content_type, "{link}");
        assert!(
            got.headers().get(header::CONTENT_DISPOSITION).is_none(),
            "{link}: inline"
        );
        assert_eq!(got.bytes().await.unwrap(), sent, "{link}");
        links.push(link.to_owned());
    }
    links.sort();
    let mut listed = listed;
    listed.sort();
    assert_eq!(
        listed, links,
        "the list under the Dashboard links the same objects"
    );
    let stored = json_of(http.get(format!("{signer}/dev/objects"))).await;
    assert_eq!(stored["objects"].as_array().unwrap().len(), 2, "{stored}");

    // The object route: anything but a raster image is a download, and only upload keys.
    let svg = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/svg+xml", "size": 11}),
    )
    .await;
    assert_eq!(
        put_signed(&http, &svg, b"<svg></svg>".to_vec()).await.0,
        200
    );
    let got = http
        .get(format!(
            "{signer}/dev/objects/{}",
            svg["key"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    let disposition = got.headers()[header::CONTENT_DISPOSITION].to_str().unwrap();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    assert_eq!(got.headers()["x-content-type-options"], "nosniff");
    for (path, status) in [
        ("uploads/missing.jpg", 404),
        // (`..` as a segment the client resolves itself; encoded slashes it does not.)
        ("uploads/%2E%2E%2Fother%2Fx.jpg", 400),
        ("uploads/a%5Cb.jpg", 400),
        ("uploads//x.jpg", 400),
        ("other/x.jpg", 400),
        ("uploads/", 400),
    ] {
        let got = http
            .get(format!("{signer}/dev/objects/{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status().as_u16(), status, "{path}");
    }
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&files);
}

#[tokio::test]
async fn the_real_uppy_6_client_uploads_to_rgw_and_is_held_to_the_rules() {
    let test = "the_real_uppy_6_client_uploads_to_rgw_and_is_held_to_the_rules";
    let Some(server) = s3_server(test) else {
        return;
    };
    uppy_uploads_held_to_the_rules(&server, "rgw").await;
}

#[tokio::test]
async fn the_real_uppy_6_client_uploads_to_the_aws_stand_in_and_is_held_to_the_rules() {
    let test = "the_real_uppy_6_client_uploads_to_the_aws_stand_in_and_is_held_to_the_rules";
    let Some(server) = uploadbucket_tests::aws_server(test) else {
        return;
    };
    uppy_uploads_held_to_the_rules(&server, "aws").await;
}

/// Uppy 6 (the npm packages, in Chromium) through the signer to `server`: a single file (a
/// POST form) and multipart, then a refused type, a form over the maximum and a multipart
/// upload over it, with nothing stored or left open; screenshots `<store>-uppy-...`.
async fn uppy_uploads_held_to_the_rules(server: &uploadbucket_tests::S3Server, store: &str) {
    let Some(chromium) = chromium() else { return };
    let Some(_bundle) = uppy_bundle() else { return };
    assert_eq!(npm_version("@uppy/aws-s3"), "6.3.1");
    assert_eq!(npm_version("@uppy/core"), "6.3.1");

    let name = unique_name("ub-uppy");
    let (sidecar, signer) = start_sidecar(
        server,
        &name,
        &[
            ("UPLOADBUCKET_MAX_SIZE_BYTES", "12582912"),
            ("UPLOADBUCKET_ALLOWED_CONTENT_TYPES", "image/jpeg"),
        ],
    )
    .await;
    let (app, _app) = app_backend(signer.clone(), None).await;
    let (buckets, raw) = bucket_for_pages(server, &name, &app).await;
    let stored = || async {
        let listed = raw
            .list_objects_v2()
            .bucket(&name)
            .send()
            .await
            .expect("list objects");
        let open = raw
            .list_multipart_uploads()
            .bucket(&name)
            .send()
            .await
            .expect("list multipart uploads");
        (listed.contents().len(), open.uploads().len())
    };

    // A single file (Uppy 6 asks /s3/params and posts the form it gets), and 11 MiB as
    // multipart in 5 MiB parts.
    for (query, shot, size) in [
        ("size=200000", "uppy-single-ok", 200_000),
        (
            &*format!("multipart=1&size={}", 11 * MIB),
            "uppy-multipart-ok",
            11 * MIB as i64,
        ),
    ] {
        let (url, shot) = (format!("{app}/uppy?{query}"), format!("{store}-{shot}"));
        page_stores_jpeg(&chromium, &url, &shot, &raw, &name, size).await;
    }
    let before = stored().await;
    assert_eq!(before.1, 0, "no upload left open");

    // Refused, and nothing stored: a type the bucket does not allow, a file over the maximum
    // as a single upload (S3 refuses the form) and as multipart (the signer refuses the
    // completion and aborts the upload).
    // (RGW answers the oversize form before reading it all and closes the connection, which
    // the browser reports as a network error.)
    for (query, shot, says) in [
        (
            "type=image/png&name=photo.png&size=1000",
            "uppy-type-refused",
            "Bad Request",
        ),
        (&*format!("size={}", 13 * MIB), "uppy-single-too-large", ""),
        (
            &*format!("multipart=1&size={}", 13 * MIB),
            "uppy-multipart-too-large",
            "Payload Too Large",
        ),
    ] {
        let shot = format!("{store}-{shot}");
        let r = run_page(&chromium, &format!("{app}/uppy?{query}"), &shot).await;
        assert_eq!(r["ok"], false, "{query}: {r}");
        assert!(
            r["message"].as_str().unwrap().contains(says),
            "{query}: {r}"
        );
        assert_eq!(
            stored().await,
            before,
            "{query}: nothing stored, nothing left open"
        );
    }

    drop(sidecar);
    remove_bucket(&buckets, &name).await;
}

/// The dev store keeps the promises S3 keeps: verify cannot be raced into verifying other
/// bytes, and a PUT URL plus `x-amz-copy-source` is no copy (copies land only where verify
/// puts them).
#[tokio::test]
async fn dev_mode_verify_cannot_be_raced_and_urls_cannot_copy() {
    let data = tempdir();
    let (_dev, signer) = start_dev(&data, &["--verify"]).await;
    let http = reqwest::Client::new();
    let files = data.join("dev-uploads");
    let race = uploadbucket_tests::race_verify(&signer, 30, |key| {
        let path = files.join(key);
        async move { std::fs::read(path).ok() }
    })
    .await;
    eprintln!("verify raced in dev mode: {race:?}");
    assert!(race.landed > 0, "{race:?}");

    // Alice's PUT URL with a copy source: refused, and nothing at her key.
    let bob = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/jpeg", "size": 64, "owner": "bob"}),
    )
    .await;
    assert_eq!(
        put_signed(&http, &bob, uploadbucket_tests::RACE_JPEG.to_vec())
            .await
            .0,
        200
    );
    let alice = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/jpeg", "size": 64, "owner": "alice"}),
    )
    .await;
    let mut req = http
        .put(alice["uploadURL"].as_str().unwrap())
        .body(uploadbucket_tests::RACE_JPEG.to_vec())
        .header(
            "x-amz-copy-source",
            format!("dev-uploads/{}", bob["key"].as_str().unwrap()),
        );
    for (k, v) in alice["headers"].as_object().unwrap() {
        req = req.header(k.as_str(), v.as_str().unwrap());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 403, "{}", resp.text().await.unwrap_or_default());
    assert!(!files.join(alice["key"].as_str().unwrap()).exists());
    let _ = std::fs::remove_dir_all(&data);
}

/// examples/web/server.js, the backend docs/guides/browser-snippet.md tells people to copy,
/// forwards only the
/// signer's upload calls, with the owner from its session: path tricks (dot segments, encoded
/// slashes) reach nothing, and a browser's own `owner` is replaced.
#[tokio::test]
async fn the_example_backend_forwards_only_upload_calls_as_the_session_user() {
    let test = "the_example_backend_forwards_only_upload_calls_as_the_session_user";
    if example_web_missing(test) {
        return;
    }
    let data = tempdir();
    let (_dev, signer) = start_dev(&data, &["--verify"]).await;
    let (_app, app) = example_backend(&signer, &[]);
    // One browser (its session cookie), Alice's.
    let alice = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let created = json_of(
        alice
            .post(format!("{app}/api/uploads"))
            .json(&serde_json::json!({"contentType": "image/jpeg", "size": 4, "owner": "bob"})),
    )
    .await;
    let key = created["key"].as_str().expect("a key");
    let folder = key
        .strip_prefix("uploads/incoming/")
        .and_then(|k| k.split_once('/'))
        .map(|(owner, _)| owner)
        .unwrap();
    assert_ne!(folder, "bob", "the browser's owner is replaced: {created}");
    assert_eq!(folder.len(), 32, "the session's id: {created}");

    // Paths outside the table, however spelled, never reach the signer.
    for (method, path) in [
        ("POST", "/api/uploads/%2e%2e/s3/multipart"),
        ("POST", "/api/uploads/..%2fs3%2fmultipart"),
        ("GET", "/api/uploads/%2e%2e/metrics"),
        ("GET", "/api/uploads/..%2fmetrics"),
        ("GET", "/api/uploads/multipart/%2e%2e"),
        ("GET", "/api/uploads/multipart/.."),
        ("DELETE", "/api/uploads/multipart/%2e%2e%2f%2e%2e%2fmetrics"),
        ("GET", "/api/uploads/s3/params?type=image/jpeg"),
    ] {
        let resp = alice
            .request(method.parse().unwrap(), format!("{app}{path}"))
            .json(&serde_json::json!({"type": "image/jpeg", "owner": "bob"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        assert_eq!(status, 404, "{method} {path}: {text}");
        assert!(!text.contains("uploadbucket_"), "{method} {path}: {text}");
    }
    // A multipart upload through it works, as the session's user; Bob's owner in the query
    // changes nothing.
    let mp = json_of(
        alice
            .post(format!("{app}/api/uploads/multipart"))
            .json(&serde_json::json!({"type": "image/jpeg", "owner": "bob"})),
    )
    .await;
    let (mkey, id) = (
        mp["key"].as_str().unwrap(),
        mp["uploadId"].as_str().unwrap(),
    );
    assert!(mkey.contains(&format!("/{folder}/")), "{mp}");
    let part = json_of(alice.get(format!(
        "{app}/api/uploads/multipart/{id}/1?key={mkey}&owner=bob"
    )))
    .await;
    assert!(part["url"].is_string(), "{part}");
    let gone = alice
        .delete(format!("{app}/api/uploads/multipart/{id}?key={mkey}"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status().as_u16(), 200);
    // Another browser (another session) cannot act on Alice's upload.
    let mallory = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let theirs = mallory
        .post(format!("{app}/api/uploads/verify"))
        .json(&serde_json::json!({"key": key, "owner": folder}))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status().as_u16(), 403);
    let _ = std::fs::remove_dir_all(&data);
}

/// examples/web/server.js in front of `signer`, with `env`; the process and its base URL.
fn example_backend(signer: &str, env: &[(&str, &str)]) -> (uploadbucket_tests::Child, String) {
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("examples/web/server.js"));
    uploadbucket_tests::example_backend(cmd, signer, env)
}

/// With the bucket requiring tokens, examples/web/server.js (`TOKEN_AUTH=1`) forwards the
/// browser's `Authorization` and names no owner: the signer puts the upload in the token's
/// folder, refuses a browser's other `owner` and a missing token (its `WWW-Authenticate`
/// reaching the browser), and another user's token cannot continue the upload.
#[tokio::test]
async fn the_example_backend_forwards_the_users_token() {
    use uploadbucket_tests::oidc::{Issuer, SigningKey};
    if example_web_missing("the_example_backend_forwards_the_users_token") {
        return;
    }
    let key = SigningKey::generate("k1", jsonwebtoken::Algorithm::ES256);
    let issuer = Issuer::start(vec![key.clone()], 300).await;
    let data = tempdir();
    let (_dev, signer) = start_dev(
        &data,
        &[
            "--jwt-issuer",
            &issuer.url,
            "--jwt-audiences",
            "api://uploads",
        ],
    )
    .await;
    let (_app, app) = example_backend(&signer, &[("TOKEN_AUTH", "1")]);
    let http = reqwest::Client::new();
    let ada = key.sign(&issuer.claims("ada", "api://uploads"));
    let bob = key.sign(&issuer.claims("bob", "api://uploads"));
    let created = json_of(
        http.post(format!("{app}/api/uploads"))
            .bearer_auth(&ada)
            .json(&serde_json::json!({"contentType": "image/jpeg", "size": 4})),
    )
    .await;
    assert!(
        created["key"].as_str().unwrap().starts_with("uploads/ada/"),
        "{created}"
    );
    let (status, text) = put_signed(&http, &created, b"\xff\xd8\xff\xe0".to_vec()).await;
    assert_eq!(status, 200, "{text}");
    let theirs = http
        .post(format!("{app}/api/uploads"))
        .bearer_auth(&ada)
        .json(&serde_json::json!({"contentType": "image/jpeg", "size": 4, "owner": "bob"}))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status().as_u16(), 403);
    let anonymous = http
        .post(format!("{app}/api/uploads"))
        .json(&serde_json::json!({"contentType": "image/jpeg", "size": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(
        anonymous
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
        "{:?}",
        anonymous.headers()
    );
    let mp = json_of(
        http.post(format!("{app}/api/uploads/multipart"))
            .bearer_auth(&ada)
            .json(&serde_json::json!({"type": "image/jpeg"})),
    )
    .await;
    let (mkey, id) = (
        mp["key"].as_str().unwrap(),
        mp["uploadId"].as_str().unwrap(),
    );
    assert!(mkey.starts_with("uploads/ada/"), "{mp}");
    let part = |token: &str| {
        http.get(format!("{app}/api/uploads/multipart/{id}/1?key={mkey}"))
            .bearer_auth(token)
            .send()
    };
    assert_eq!(part(&ada).await.unwrap().status().as_u16(), 200);
    assert_eq!(part(&bob).await.unwrap().status().as_u16(), 403);
    let _ = std::fs::remove_dir_all(&data);
}

/// In Chromium: the page signs in (a login redirect of the suite's OpenID Connect issuer
/// hands it a token for ada), uploads through examples/web/server.js in token mode with the
/// token, and the object lands in ada's folder, a PUT and a multipart upload alike; the page
/// without signing in is told to sign in.
#[tokio::test]
async fn the_signed_in_page_uploads_into_its_users_folder() {
    use uploadbucket_tests::oidc::{Issuer, SigningKey};
    let test = "the_signed_in_page_uploads_into_its_users_folder";
    let Some(chromium) = chromium() else { return };
    if example_web_missing(test) {
        return;
    }
    let issuer = Issuer::start(
        vec![SigningKey::generate("k1", jsonwebtoken::Algorithm::RS256)],
        300,
    )
    .await;
    // The page's origin is fixed first, dev mode's store allows it (CORS): a port the test
    // holds, in front of the example backend, which binds a port of its own later.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", front.local_addr().unwrap());
    let data = tempdir();
    let (_dev, signer) = start_dev(
        &data,
        &[
            "--allowed-origins",
            &origin,
            "--jwt-issuer",
            &issuer.url,
            "--jwt-audiences",
            "api://uploads",
        ],
    )
    .await;
    // The harness page and upload.js, served by the example backend itself.
    let web = tempdir();
    std::fs::copy(
        repo().join("tests/web/harness.html"),
        web.join("index.html"),
    )
    .unwrap();
    std::fs::copy(repo().join("examples/web/upload.js"), web.join("upload.js")).unwrap();
    let (_app, app) = example_backend(
        &signer,
        &[("TOKEN_AUTH", "1"), ("WEB_ROOT", web.to_str().unwrap())],
    );
    let _front =
        uploadbucket_tests::CuttableProxy::on(front, app.trim_start_matches("http://").to_owned());
    for (method, size) in [("PUT", 200_000usize), ("multipart", 17 * MIB)] {
        let back = format!("{origin}/?method={method}&size={size}");
        let login = format!(
            "{}authorize?login_hint=ada&audience=api://uploads&redirect_uri={}",
            issuer.url,
            percent_encoding::utf8_percent_encode(&back, percent_encoding::NON_ALPHANUMERIC)
        );
        let r = run_page(&chromium, &login, &format!("jwt-{method}")).await;
        assert_eq!(r["ok"], true, "{method}: {r}");
        let key = r["key"].as_str().unwrap();
        assert!(key.starts_with("uploads/ada/"), "{method}: {key}");
        let stored = data.join("dev-uploads").join(key);
        assert_eq!(
            std::fs::metadata(&stored).map(|m| m.len() as usize).ok(),
            Some(size),
            "{method}: {}",
            stored.display()
        );
    }
    let r = run_page(
        &chromium,
        &format!("{origin}/?method=PUT&size=1000"),
        "jwt-signed-out",
    )
    .await;
    assert_eq!(
        (&r["ok"], &r["code"]),
        (
            &serde_json::json!(false),
            &serde_json::json!("MissingToken")
        ),
        "{r}"
    );
    assert_eq!(r["message"], "Sign in to upload.", "{r}");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&web);
}

/// The dev store reads forms and multipart uploads the way S3 does: an upload id belongs to
/// the key it was made for (Alice cannot put parts into, or complete, Bob's upload under her
/// key), and a form with a second `tagging` field (which S3-compatible readers resolve
/// differently) is refused.
#[tokio::test]
async fn dev_mode_binds_upload_ids_to_keys_and_refuses_doubled_form_fields() {
    let data = tempdir();
    let (_dev, signer) = start_dev(&data, &["--verify"]).await;
    let http = reqwest::Client::new();
    let create = |owner: &'static str| {
        json_of(
            http.post(format!("{signer}/s3/multipart"))
                .json(&serde_json::json!({"type": "image/jpeg", "owner": owner})),
        )
    };
    let (alice, bob) = (create("alice").await, create("bob").await);
    let alice_key = alice["key"].as_str().unwrap();
    let bob_id = bob["uploadId"].as_str().unwrap();
    // A part URL for Alice's key with Bob's upload id: the store knows no such upload.
    let part = json_of(http.get(format!(
        "{signer}/s3/multipart/{bob_id}/1?key={alice_key}&owner=alice"
    )))
    .await;
    let put = http
        .put(part["url"].as_str().unwrap())
        .body(vec![0xffu8; 16])
        .send()
        .await
        .unwrap();
    let status = put.status().as_u16();
    let text = put.text().await.unwrap_or_default();
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("NoSuchUpload"), "{text}");
    // Completing Bob's upload into Alice's key: the signer's listing finds nothing.
    let complete = http
        .post(format!(
            "{signer}/s3/multipart/{bob_id}/complete?key={alice_key}&owner=alice"
        ))
        .json(&serde_json::json!({"parts": [{"PartNumber": 1, "ETag": "\"x\""}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(complete.status().as_u16(), 404);
    assert!(!data.join("dev-uploads").join(alice_key).exists());

    // A form with a forged `tagging` field before the signed one.
    let form = sign_upload(
        &http,
        &signer,
        serde_json::json!({"contentType": "image/jpeg", "method": "POST"}),
    )
    .await;
    let mut multipart = reqwest::multipart::Form::new().text(
        "tagging",
        "<Tagging><TagSet><Tag><Key>uploadbucket-state</Key><Value>verified</Value></Tag></TagSet></Tagging>",
    );
    for (k, v) in form["fields"].as_object().unwrap() {
        multipart = multipart.text(k.clone(), v.as_str().unwrap().to_owned());
    }
    multipart = multipart.part(
        "file",
        reqwest::multipart::Part::bytes(b"<html><script>x</script>".to_vec()).file_name("x"),
    );
    let resp = http
        .post(form["url"].as_str().unwrap())
        .multipart(multipart)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(
        !data
            .join("dev-uploads")
            .join(form["key"].as_str().unwrap())
            .exists()
    );
    let _ = std::fs::remove_dir_all(&data);
}

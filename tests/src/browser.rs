//! Headless Chromium for the browser tests: a page is loaded until its upload settles, and
//! its `#result` JSON is read back from the DOM; a screenshot goes to tests/artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{require_or_skip, unique_name};

/// How every test runs Chromium: headless, no sandbox (root in a container), nothing fetched
/// in the background.
const HEADLESS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// The repository's root directory.
pub fn repo() -> PathBuf {
    crate::repo_root()
}

/// Headless Chromium, or the skip/failure of [`require_or_skip`] when it is missing.
pub fn chromium() -> Option<PathBuf> {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = Command::new("which").arg(c).output()
            && out.status.success()
        {
            return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    require_or_skip(
        "browser tests",
        "chromium is not installed",
        "tests/scripts/install-deps.sh installs it (apt-get install chromium)",
    )
}

/// Loads the page in headless Chromium until the upload settles; returns the #result JSON
/// and saves a screenshot of the final state.
pub async fn run_page(chromium: &Path, url: &str, shot: &str) -> Value {
    run_page_with(chromium, url, shot, &[]).await
}

/// Runs the page at `url` ([`run_page`]), which must report success, and checks that the key
/// it reports is a `.jpg` under `uploads/` holding `size` bytes of `image/jpeg` in `bucket`
/// (read by `raw`). Returns the key.
pub async fn page_stores_jpeg(
    chromium: &Path,
    url: &str,
    shot: &str,
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    size: i64,
) -> String {
    let r = run_page(chromium, url, shot).await;
    assert_eq!(r["ok"], true, "{shot}: {r}");
    let key = r["key"]
        .as_str()
        .expect("the page reports the key")
        .to_owned();
    assert!(
        key.starts_with("uploads/") && key.ends_with(".jpg"),
        "{shot}: {key}"
    );
    crate::assert_stored(raw, bucket, &key, "image/jpeg", size).await;
    key
}

/// [`run_page`] with extra Chromium flags (e.g. `--host-resolver-rules=...`).
pub async fn run_page_with(chromium: &Path, url: &str, shot: &str, flags: &[String]) -> Value {
    let artifacts = repo().join("tests/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let chromium = chromium.to_path_buf();
    let url_owned = url.to_owned();
    let flags = flags.to_vec();
    let run = move |extra: Vec<String>| {
        let profile = tempdir();
        let mut cmd = Command::new(&chromium);
        cmd.args(HEADLESS)
            .arg("--virtual-time-budget=30000")
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(&flags)
            .args(extra)
            .arg(&url_owned);
        let out = cmd.output().expect("run chromium");
        let _ = std::fs::remove_dir_all(&profile);
        out
    };
    let shot_path = artifacts.join(format!("{shot}.png"));
    let shot_check = shot_path.clone();
    let (dom, shot) = tokio::task::spawn_blocking(move || {
        let dom = run(vec!["--dump-dom".into()]);
        let shot = run(vec![
            format!("--screenshot={}", shot_path.display()),
            "--window-size=900,420".into(),
        ]);
        (dom, shot)
    })
    .await
    .expect("chromium task");
    assert!(
        shot_check.exists(),
        "no screenshot {}: {}",
        shot_check.display(),
        String::from_utf8_lossy(&shot.stderr)
    );
    let html = String::from_utf8_lossy(&dom.stdout);
    let result = html
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|r| r.split("</pre>").next())
        .unwrap_or_default()
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    serde_json::from_str(&result).unwrap_or_else(|_| {
        panic!(
            "no result in the page for {url}: stderr {}\nDOM: {}",
            String::from_utf8_lossy(&dom.stderr),
            &html[..html.len().min(2000)]
        )
    })
}

/// The DOM of `url` once its scripts have run (headless Chromium, `--dump-dom`).
pub async fn dump_dom(chromium: &Path, url: &str) -> String {
    let mut cmd = Command::new(chromium);
    let profile = tempdir();
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--virtual-time-budget=10000",
        "--dump-dom",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(url);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("chromium task")
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh directory under the system temp dir.
pub fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(unique_name("ub-chromium"));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

/// Headless Chromium driven over the DevTools protocol, for pages a test acts on (files given
/// to a file input or dropped, clicks) rather than pages that run by themselves. The protocol
/// goes over a pipe (`--remote-debugging-pipe`: JSON messages ending in NUL, read from file
/// descriptor 3 and written to 4, which a shell sets up from the child's stdin and stdout), so
/// no WebSocket client is needed. One page, attached as a flat session; dropped, Chromium is
/// killed and its profile removed.
pub struct Cdp {
    child: tokio::process::Child,
    to: tokio::process::ChildStdin,
    from: tokio::io::BufReader<tokio::process::ChildStdout>,
    next: u64,
    session: Option<String>,
    profile: PathBuf,
}

impl Cdp {
    /// Starts Chromium and opens a blank page of `width` x `height` CSS pixels.
    pub async fn start(chromium: &Path, width: u32, height: u32) -> Cdp {
        use std::process::Stdio;
        let profile = tempdir();
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg("-c")
            .arg(r#"exec 3<&0 4>&1 </dev/null >&2; exec "$0" "$@""#)
            .arg(chromium)
            .args(HEADLESS)
            .args(["--hide-scrollbars", "--remote-debugging-pipe"])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("start chromium");
        let to = child.stdin.take().expect("stdin");
        let from = tokio::io::BufReader::new(child.stdout.take().expect("stdout"));
        let mut cdp = Cdp {
            child,
            to,
            from,
            next: 0,
            session: None,
            profile,
        };
        let target = cdp
            .call(
                "Target.createTarget",
                serde_json::json!({"url": "about:blank"}),
            )
            .await;
        let attached = cdp
            .call(
                "Target.attachToTarget",
                serde_json::json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        cdp.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_owned(),
        );
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            serde_json::json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )
        .await;
        cdp
    }

    /// Sends `method` (to the page once attached) and returns its result; fails the test on a
    /// protocol error or after 60 s without an answer.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        self.next += 1;
        let id = self.next;
        let mut message = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(session) = &self.session {
            message["sessionId"] = Value::from(session.as_str());
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).await.expect("write to chromium");
        self.to.flush().await.expect("write to chromium");
        let read = async {
            loop {
                let mut buf = Vec::new();
                let n = self
                    .from
                    .read_until(0, &mut buf)
                    .await
                    .expect("read from chromium");
                assert!(n > 0, "chromium closed the pipe during {method}");
                if buf.last() == Some(&0) {
                    buf.pop();
                }
                let answer: Value = serde_json::from_slice(&buf).expect("a protocol message");
                // Events (no id) and other answers are not this call's.
                if answer["id"] != id {
                    continue;
                }
                if let Some(error) = answer.get("error") {
                    panic!("{method}: {error}");
                }
                return answer["result"].clone();
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(60), read)
            .await
            .unwrap_or_else(|_| panic!("no answer from chromium to {method} in 60 s"))
    }

    /// Loads `url` and waits for its `load` event.
    pub async fn navigate(&mut self, url: &str) {
        let nav = self
            .call("Page.navigate", serde_json::json!({"url": url}))
            .await;
        assert!(nav.get("errorText").is_none(), "{url}: {nav}");
        self.wait_for("document.readyState === 'complete'", 30, "the page loaded")
            .await;
    }

    /// The value of `expression` (awaited if it is a promise); fails the test if it throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expression` every 200 ms until it is neither false nor null nor undefined
    /// and returns it; fails the test after `seconds` with `what` and the last value.
    pub async fn wait_for(&mut self, expression: &str, seconds: u64, what: &str) -> Value {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
        loop {
            let v = self.eval(expression).await;
            if !(v.is_null() || v == false) {
                return v;
            }
            assert!(
                std::time::Instant::now() < until,
                "waited {seconds} s for {what} ({expression})"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The centre of the first element `selector` matches, in CSS pixels of the viewport,
    /// scrolled into view.
    async fn centre(&mut self, selector: &str) -> (f64, f64) {
        let selector_js = serde_json::to_string(selector).unwrap();
        let r = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({selector_js}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.left + r.width / 2, r.top + r.height / 2]; }})()"
            ))
            .await;
        let xy = r
            .as_array()
            .unwrap_or_else(|| panic!("nothing matches {selector}"));
        (xy[0].as_f64().unwrap(), xy[1].as_f64().unwrap())
    }

    /// A left click in the middle of `selector`, as a mouse makes it.
    pub async fn click(&mut self, selector: &str) {
        let (x, y) = self.centre(selector).await;
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                serde_json::json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            )
            .await;
        }
    }

    /// Gives `files` to the file input `selector`, as choosing them in the file picker does.
    pub async fn set_input_files(&mut self, selector: &str, files: &[PathBuf]) {
        let doc = self
            .call("DOM.getDocument", serde_json::json!({"depth": 0}))
            .await;
        let node = self
            .call(
                "DOM.querySelector",
                serde_json::json!({"nodeId": doc["root"]["nodeId"], "selector": selector}),
            )
            .await;
        assert_ne!(node["nodeId"], 0, "nothing matches {selector}");
        self.call(
            "DOM.setFileInputFiles",
            serde_json::json!({"nodeId": node["nodeId"], "files": files}),
        )
        .await;
    }

    /// Drags `files` from outside the page and drops them in the middle of `selector`.
    pub async fn drop_files(&mut self, selector: &str, files: &[PathBuf]) {
        let (x, y) = self.centre(selector).await;
        let data = serde_json::json!({"items": [], "files": files, "dragOperationsMask": 1});
        for kind in ["dragEnter", "dragOver", "drop"] {
            self.call(
                "Input.dispatchDragEvent",
                serde_json::json!({"type": kind, "x": x, "y": y, "data": data}),
            )
            .await;
        }
    }

    /// A PNG of the whole page into tests/artifacts/`name`.png; returns its path.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let metrics = self
            .call("Page.getLayoutMetrics", serde_json::json!({}))
            .await;
        let size = &metrics["cssContentSize"];
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
                }),
            )
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64");
        let dir = repo().join("tests/artifacts");
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Cdp {
    /// Closes the browser and waits (up to 10 s) for it to exit.
    pub async fn close(mut self) {
        self.session = None;
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            self.call("Browser.close", serde_json::json!({})),
        )
        .await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), self.child.wait()).await;
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

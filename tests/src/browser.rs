//! Headless Chromium for the browser tests: a page is loaded until its upload settles, and
//! its `#result` JSON is read back from the DOM; a screenshot goes to tests/artifacts/.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::{require_or_skip, unique_name};

/// The repository's root directory.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
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
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=30000",
        ])
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

//! Dev mode's page script is committed as built: sidecar/web/dashboard.bundle.js, its .css and
//! dashboard.bundle.licenses.txt are what sidecar/web/dashboard/build.mjs makes from that
//! folder's locked npm packages (the real Uppy Dashboard), byte for byte. This test builds them
//! again with the pinned esbuild into a temporary folder and compares; it skips when the
//! packages are not installed (`tests/scripts/install-deps.sh` runs `npm ci` there) and fails
//! then under `UPLOADBUCKET_REQUIRE_SERVERS=1`.
//! `UPDATE_DASHBOARD_BUNDLE=1 cargo test -p uploadbucket-tests --test web_bundle` rewrites them.

use std::process::Command;

use uploadbucket_tests::browser::{repo, tempdir};
use uploadbucket_tests::require_or_skip;

const OUTPUTS: [&str; 3] = [
    "dashboard.bundle.js",
    "dashboard.bundle.css",
    "dashboard.bundle.licenses.txt",
];

#[test]
fn the_committed_dashboard_bundle_is_what_its_locked_packages_make() {
    let test = "the_committed_dashboard_bundle_is_what_its_locked_packages_make";
    let web = repo().join("sidecar/web");
    let package = web.join("dashboard");
    let esbuild = package.join("node_modules/.bin/esbuild");
    if !esbuild.exists() {
        let _: Option<()> = require_or_skip(
            test,
            &format!("{} is missing", esbuild.display()),
            "tests/scripts/install-deps.sh runs npm ci in sidecar/web/dashboard",
        );
        return;
    }
    let update = std::env::var_os("UPDATE_DASHBOARD_BUNDLE").is_some();
    assert!(
        !(update && std::env::var_os("CI").is_some()),
        "UPDATE_DASHBOARD_BUNDLE is set under CI: a check that rewrites what it checks proves nothing"
    );
    let out = tempdir();
    let built = Command::new("node")
        .current_dir(&package)
        .arg("build.mjs")
        .arg(&out)
        .output()
        .expect("run node (Node.js 20+)");
    assert!(
        built.status.success(),
        "node build.mjs failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let mut stale = Vec::new();
    for name in OUTPUTS {
        let want = std::fs::read(out.join(name)).unwrap_or_else(|_| panic!("{name} not built"));
        let path = web.join(name);
        if update {
            std::fs::write(&path, &want).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&want[..]) {
            stale.push(name);
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        stale.is_empty(),
        "{} in sidecar/web/ differ from what sidecar/web/dashboard/ makes: run \
         `npm ci && npm run build` there (or `UPDATE_DASHBOARD_BUNDLE=1 cargo test -p \
         uploadbucket-tests --test web_bundle`) and commit the result",
        stale.join(", ")
    );
}

/// What the page loads is all in the binary: the bundle names no other origin to fetch from
/// (no CDN, no Companion), and its size is what docs/guides/local-dev-mode.md says.
#[test]
fn the_dashboard_bundle_fetches_nothing_and_its_size_is_documented() {
    let web = repo().join("sidecar/web");
    let js = std::fs::read_to_string(web.join("dashboard.bundle.js")).unwrap();
    let css = std::fs::read_to_string(web.join("dashboard.bundle.css")).unwrap();
    for cdn in ["unpkg.com", "jsdelivr", "cdnjs", "releases.transloadit.com"] {
        assert!(
            !js.contains(cdn) && !css.contains(cdn),
            "{cdn} named in the bundle"
        );
    }
    assert!(!css.contains("url(http"), "the CSS loads from elsewhere");
    let page = std::fs::read_to_string(web.join("dev.html")).unwrap();
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "{page}"
    );
    let guide = std::fs::read_to_string(repo().join("docs/guides/local-dev-mode.md")).unwrap();
    for (name, text) in [("dashboard.bundle.js", &js), ("dashboard.bundle.css", &css)] {
        let size = thousands(text.len());
        assert!(
            guide.contains(&format!("{name}` ({size} bytes, ")),
            "docs/guides/local-dev-mode.md should give {name}'s size: `{name}` ({size} bytes, \
             <gzip -9 -c {name} | wc -c> gzipped)"
        );
    }
}

/// `n` with a comma every three digits, as the guide writes sizes.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

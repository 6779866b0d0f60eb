//! The signer's release build lays out the code it runs up to its first signed URL side by
//! side (sidecar/build.rs), from the names in sidecar/startup-order.txt: an idle signer then
//! holds the pages of that code, not of most of its binary (5.6 MiB idle instead of 9.6,
//! docs/development/performance.md). The names are the build's own, so the file goes stale
//! when the compiler, the locked crates or the release profile change, and nothing else
//! would notice: the layout silently falls back to the linker's and the memory comes back.
//!
//! This test traces the pod build that `tests/run.sh` built (tests/scripts/images.sh) under
//! callgrind and fails unless the file lists 95% or more of the code it ran.
//! `tests/scripts/startup-order.sh` rewrites the file.

use std::process::Command;

#[test]
fn the_startup_order_lists_the_code_the_signer_runs_to_its_first_url() {
    let test = "startup_order::the_startup_order_lists_the_code_the_signer_runs_to_its_first_url";
    let root = uploadbucket_tests::repo_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let bin = target.join("release/uploadbucket-sidecar");
    if !bin.exists() {
        return uploadbucket_tests::require_or_skip(
            test,
            &format!("there is no pod build of the signer at {}", bin.display()),
            "build it: cargo build --release -p uploadbucket-sidecar --no-default-features \
             --features server",
        )
        .unwrap_or(());
    }
    let out = Command::new(root.join("tests/scripts/startup-order.sh"))
        .arg("--check")
        .current_dir(&root)
        .output()
        .expect("runs tests/scripts/startup-order.sh");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("lists"), "{stdout}");
}

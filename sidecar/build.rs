//! Lays out the signer's start-up code together in its release build.
//!
//! A signer idles in every uploading pod, and what it holds idle is mostly its own code:
//! the pages of the binary that start-up and the first signed URL touched. Those functions
//! (under 1 MiB) are spread across 6 MiB of code, and the kernel maps each page touched with
//! its neighbours, so nearly all of it stayed resident. `startup-order.txt` names them
//! (written by `tests/scripts/startup-order.sh` from a callgrind run of this build, checked
//! by the suite), and the linker places them first, side by side.
//!
//! Only for the release build on x86_64 Linux, which rustc links with LLD (its
//! `--symbol-ordering-file`); a name the file lists and the build lacks is skipped.
//! `UPLOADBUCKET_STARTUP_ORDER=off` turns it off (e.g. for a linker without that option).

use std::env;
use std::path::Path;

#[path = "../build/relr.rs"]
mod relr;

fn main() {
    relr::pack_relative_relocs("uploadbucket-sidecar");
    println!("cargo:rerun-if-changed=startup-order.txt");
    println!("cargo:rerun-if-env-changed=UPLOADBUCKET_STARTUP_ORDER");
    let target = env::var("TARGET").unwrap_or_default();
    let profile = env::var("PROFILE").unwrap_or_default();
    let off = env::var("UPLOADBUCKET_STARTUP_ORDER").is_ok_and(|v| v == "off");
    if target != "x86_64-unknown-linux-gnu" || profile != "release" || off {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = Path::new(&dir).join("startup-order.txt");
    if !order.exists() {
        return;
    }
    for arg in [
        format!("-Wl,--symbol-ordering-file={}", order.display()),
        "-Wl,--no-warn-symbol-ordering".to_owned(),
    ] {
        println!("cargo:rustc-link-arg-bin=uploadbucket-sidecar={arg}");
    }
}

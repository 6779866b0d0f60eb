//! Packed relative relocations for a release binary on x86_64 Linux, shared by the signer's
//! and the operator's build scripts (`#[path]`).
//!
//! A position-independent binary carries a 24-byte RELA entry for every pointer in its data
//! (vtables, tables of strings and functions): 0.55 MiB in the signer, 1 MiB in the operator.
//! The dynamic loader reads all of them at start-up, so they stay resident in every process.
//! With `-z pack-relative-relocs` (LLD, which rustc links with on this target) the linker
//! writes them as a RELR bitmap of a few KiB instead; the binary stays position-independent.
//!
//! The loader must know RELR: glibc 2.36 or later (Debian 12, the images' base). The linker
//! then adds a `GLIBC_ABI_DT_RELR` version need, so an older glibc refuses the binary at start
//! with a message naming it, rather than running it wrongly. Built where the C library is
//! older or unknown (`getconf GNU_LIBC_VERSION`), or for another target or profile, or with
//! `UPLOADBUCKET_PACK_RELOCS=off`, the link is left as it was.

use std::env;
use std::process::Command;

/// Asks the linker to pack `bin`'s relative relocations, where the build allows it.
pub fn pack_relative_relocs(bin: &str) {
    println!("cargo:rerun-if-env-changed=UPLOADBUCKET_PACK_RELOCS");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let target = var("TARGET");
    if target != "x86_64-unknown-linux-gnu"
        || var("HOST") != target
        || var("PROFILE") != "release"
        || var("UPLOADBUCKET_PACK_RELOCS") == "off"
    {
        return;
    }
    let glibc = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| glibc_version(&text));
    match glibc {
        Some(version) if version >= (2, 36) => {
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,-z,pack-relative-relocs");
        }
        _ => println!(
            "cargo:warning=relative relocations left unpacked: glibc 2.36 or later not found \
             (`getconf GNU_LIBC_VERSION`); {bin} holds about 1 MiB more at run time"
        ),
    }
}

/// `glibc 2.36` → (2, 36).
fn glibc_version(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.trim().strip_prefix("glibc ")?.split_once('.')?;
    let minor = minor.split('.').next()?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

//! `uploadbucket-sidecar credentials`: the helper process the signer runs for each credentials
//! load (see `credentials::HelperProcess`), as the real binary.

use std::process::{Command, Output};

fn helper(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uploadbucket-sidecar"));
    cmd.args(["credentials", "--region", "eu-west-1"])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs")
}

#[test]
fn prints_the_credentials_it_loaded_as_credential_process_json() {
    let out = helper(&[
        ("AWS_ACCESS_KEY_ID", "AKIAHELPERTEST000000"),
        ("AWS_SECRET_ACCESS_KEY", "helpersecret"),
        ("AWS_SESSION_TOKEN", "helper-session"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        printed,
        serde_json::json!({
            "Version": 1,
            "AccessKeyId": "AKIAHELPERTEST000000",
            "SecretAccessKey": "helpersecret",
            "SessionToken": "helper-session",
        })
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn with_no_source_it_fails_saying_why_and_prints_nothing() {
    let out = helper(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no credentials found in chain"), "{said}");
    assert!(
        said.contains("WebIdentityToken"),
        "names the sources it tried: {said}"
    );
}

//! `uploadbucket-sidecar credentials`: the helper process the signer runs for each credentials
//! load (see `credentials::HelperProcess`), as the real binary.

use std::process::{Command, Output};

fn helper(env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_uploadbucket-sidecar"));
    cmd.args(["credentials", "--region=eu-west-1"])
        .env_clear()
        .env("HOME", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("runs")
}

/// Asserts that the helper failed (exit 1) and printed nothing on its standard output;
/// returns what it said on its standard error.
fn failed_saying(out: &Output) -> String {
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        out.stdout.is_empty(),
        "printed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    said
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
    let said = failed_saying(&helper(&[]));
    assert!(said.contains("no credentials found in chain"), "{said}");
    assert!(
        said.contains("WebIdentityToken"),
        "names the sources it tried: {said}"
    );
}

/// `kubectl exec` starts a process whose parent is outside the container's PID namespace:
/// its parent id is 0. Such a `credentials` prints no keys, even with keys to read.
#[test]
fn started_from_outside_the_container_it_prints_nothing() {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--pid", "--fork"])
        .arg(env!("CARGO_BIN_EXE_uploadbucket-sidecar"))
        .args(["credentials", "--region=eu-west-1"])
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "AKIAHELPERTEST000000")
        .env("AWS_SECRET_ACCESS_KEY", "helpersecret")
        .output()
        .expect("unshare (util-linux) runs");
    let said = failed_saying(&out);
    assert!(
        said.contains("runs only as the signer's own helper"),
        "{said}"
    );
    assert!(!said.contains("helpersecret"), "{said}");
}

/// An STS answer the SDK cannot read (here a good session with an expiry that is no date)
/// fails the load; the keys in that answer appear in no message.
#[test]
fn keys_in_an_sts_answer_it_cannot_read_are_never_in_its_error() {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let body = "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
            <AssumeRoleWithWebIdentityResult><Credentials><AccessKeyId>ASIALEAKEDKEYID00000</AccessKeyId>\
            <SecretAccessKey>LEAKEDSECRETKEY</SecretAccessKey><SessionToken>LEAKEDSESSIONTOKEN</SessionToken>\
            <Expiration>notadate</Expiration></Credentials></AssumeRoleWithWebIdentityResult>\
            </AssumeRoleWithWebIdentityResponse>";
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut request = vec![0; length];
            let _ = reader.read_exact(&mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let token = std::env::temp_dir().join(format!("helper-token-{}", std::process::id()));
    std::fs::write(&token, "a.web.identity").unwrap();
    let sts = format!("http://{address}");
    let out = helper(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::000000000000:role/upload"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.to_str().unwrap()),
        ("AWS_ENDPOINT_URL_STS", &sts),
    ]);
    let _ = std::fs::remove_file(&token);
    let said = failed_saying(&out);
    assert!(!said.is_empty());
    for secret in ["LEAKEDSECRETKEY", "LEAKEDSESSIONTOKEN"] {
        assert!(!said.contains(secret), "{said}");
    }
}

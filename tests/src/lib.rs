//! Shared helpers of the end-to-end tests: where the real S3 server is, SDK configs for it,
//! and a request counter to prove which calls were made.
//!
//! The servers are started by `tests/run.sh` (the README's test command), which exports
//! `UPLOADBUCKET_TEST_*`. Without them, a test prints a loud SKIPPED line and returns, unless
//! `UPLOADBUCKET_REQUIRE_SERVERS=1` (set by `tests/run.sh` and CI), where it fails instead:
//! every such gate goes through [`require_or_skip`].

pub mod browser;
pub mod cluster;
pub mod fleet;
pub mod oidc;
pub mod store_proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_credential_types::Credentials;
use aws_sdk_s3::config::SharedInterceptor;
use uploadbucket_operator::aws::rgw::Backend;
use uploadbucket_operator::aws::s3::{S3Buckets, S3Options};

/// Whether the suite runs with every server required (`UPLOADBUCKET_REQUIRE_SERVERS` set to
/// anything but empty or `0`; `tests/run.sh` and CI set it): then nothing may be skipped.
pub fn servers_required() -> bool {
    std::env::var("UPLOADBUCKET_REQUIRE_SERVERS").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The one gate for a test whose server or tool is missing: a loud SKIPPED line and `None`,
/// or, when servers are required, a failure naming what is missing and how to get it.
pub fn require_or_skip<T>(test: &str, what: &str, how: &str) -> Option<T> {
    assert!(
        !servers_required(),
        "{test}: UPLOADBUCKET_REQUIRE_SERVERS is set but {what}; {how}"
    );
    eprintln!("\n*** SKIPPED {test}: {what}; {how} ***\n");
    None
}

/// The S3/IAM/STS server under test.
#[derive(Clone, Debug)]
pub struct S3Server {
    pub endpoint: String,
    pub backend: Backend,
    pub access_key: String,
    pub secret_key: String,
    pub other_access_key: String,
    pub other_secret_key: String,
}

/// The server from the environment, or `None` after printing why the test is skipped.
/// Panics when servers are required but missing.
pub fn s3_server(test: &str) -> Option<S3Server> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (
        var("UPLOADBUCKET_TEST_S3_ENDPOINT"),
        var("UPLOADBUCKET_TEST_ACCESS_KEY_ID"),
        var("UPLOADBUCKET_TEST_SECRET_ACCESS_KEY"),
    ) {
        (Some(endpoint), Some(access_key), Some(secret_key)) => Some(S3Server {
            endpoint,
            backend: match var("UPLOADBUCKET_TEST_S3_BACKEND").as_deref() {
                Some("aws") => Backend::Aws,
                _ => Backend::Rgw,
            },
            access_key,
            secret_key,
            other_access_key: var("UPLOADBUCKET_TEST_OTHER_ACCESS_KEY_ID").unwrap_or_default(),
            other_secret_key: var("UPLOADBUCKET_TEST_OTHER_SECRET_ACCESS_KEY").unwrap_or_default(),
        }),
        _ => require_or_skip(
            test,
            "no S3 server is configured (UPLOADBUCKET_TEST_S3_ENDPOINT unset)",
            "run tests/run.sh, which starts Ceph RGW",
        ),
    }
}

/// LocalStack, the AWS stand-in (tests/scripts/localstack.sh), as an [`S3Server`] on the AWS
/// backend, or `None` after printing why the test is skipped. Its keys are LocalStack's
/// `test`/`test` (account 000000000000); the "other" account is another 12-digit key id,
/// which LocalStack takes as that account's.
pub fn aws_server(test: &str) -> Option<S3Server> {
    match std::env::var("UPLOADBUCKET_TEST_AWS_ENDPOINT")
        .ok()
        .filter(|v| !v.is_empty())
    {
        Some(endpoint) => Some(S3Server {
            endpoint,
            backend: Backend::Aws,
            access_key: "test".into(),
            secret_key: "test".into(),
            other_access_key: "111111111111".into(),
            other_secret_key: "test".into(),
        }),
        None => require_or_skip(
            test,
            "no AWS stand-in is configured (UPLOADBUCKET_TEST_AWS_ENDPOINT unset)",
            "run tests/run.sh, which starts LocalStack (tests/scripts/localstack.sh)",
        ),
    }
}

impl S3Server {
    /// SDK config with the given static keys, region us-east-1, and the backend's HTTP client.
    pub async fn sdk_config(&self, access_key: &str, secret_key: &str) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                access_key,
                secret_key,
                None,
                None,
                "uploadbucket-tests",
            ));
        if let Some(client) = self.backend.http_client() {
            loader = loader.http_client(client);
        }
        loader.load().await
    }

    /// The account the admin's keys act for on the AWS stand-in (LocalStack takes a key id
    /// of twelve digits as the account, and any other, like "test", as 000000000000); `None`
    /// on RGW, which has no account ids.
    pub fn account_id(&self) -> Option<String> {
        (self.backend == Backend::Aws).then(|| "000000000000".to_owned())
    }

    /// The operator's [`S3Buckets`] against this server, with a request counter.
    pub async fn buckets(&self) -> (S3Buckets, RequestCounter) {
        let counter = RequestCounter::default();
        let sdk = self.sdk_config(&self.access_key, &self.secret_key).await;
        let buckets = S3Buckets::new(
            sdk,
            S3Options {
                endpoint_url: Some(self.endpoint.clone()),
                force_path_style: true,
                interceptors: vec![counter.interceptor()],
                backend: self.backend,
                metrics: None,
                account_id: self.account_id(),
            },
        );
        (buckets, counter)
    }

    /// A plain aws-sdk-iam client of the server with the admin's keys.
    pub async fn iam_client(&self) -> aws_sdk_iam::Client {
        let sdk = self.sdk_config(&self.access_key, &self.secret_key).await;
        aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&sdk)
                .endpoint_url(&self.endpoint)
                .build(),
        )
    }

    /// Registers `issuer` (with the SHA-1 `thumbprint` of its signing certificate) as an OIDC
    /// provider in the server's IAM, as a platform engineer does once per cluster; its ARN.
    /// A provider an earlier run registered for the same URL (RGW's provider ARNs have no
    /// account: `arn:aws:iam:::oidc-provider/<host and path>`) is reused only when it trusts
    /// the same certificate: a test issuer on a loopback port gets a new key each run, and a
    /// port can come round again, so a provider left with another run's thumbprint is
    /// registered anew (RGW has no UpdateOpenIDConnectProviderThumbprint). Without that, STS
    /// refused every token of this run, and a test of refusals passed for the wrong reason.
    pub async fn register_oidc_provider(&self, issuer: &str, thumbprint: &str) -> String {
        use aws_sdk_iam::error::ProvideErrorMetadata;
        let iam = self.iam_client().await;
        let host_path = issuer.split_once("://").map_or(issuer, |(_, h)| h);
        let arn = format!("arn:aws:iam:::oidc-provider/{host_path}");
        for _ in 0..3 {
            let created = iam
                .create_open_id_connect_provider()
                .url(issuer)
                .client_id_list("sts.amazonaws.com")
                .thumbprint_list(thumbprint)
                .send()
                .await;
            let e = match created {
                Ok(created) => {
                    return created
                        .open_id_connect_provider_arn()
                        .expect("provider ARN")
                        .to_owned();
                }
                Err(e) => e,
            };
            assert_eq!(
                e.code(),
                Some("EntityAlreadyExists"),
                "register {issuer} as an OIDC provider: {e:?}"
            );
            let existing = iam
                .get_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("read the OIDC provider {arn}: {e:?}"));
            if existing
                .thumbprint_list()
                .iter()
                .any(|t| t.eq_ignore_ascii_case(thumbprint))
            {
                return arn;
            }
            eprintln!(
                "{arn} trusts {:?}, not {thumbprint}: registering it anew",
                existing.thumbprint_list()
            );
            iam.delete_open_id_connect_provider()
                .open_id_connect_provider_arn(&arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("delete the stale OIDC provider {arn}: {e:?}"));
        }
        panic!("could not register {issuer} as an OIDC provider with thumbprint {thumbprint}")
    }

    /// [`S3Server::raw_client`] with the server's own keys.
    pub async fn admin_client(&self) -> aws_sdk_s3::Client {
        self.raw_client(&self.access_key, &self.secret_key).await
    }

    /// The operator's IAM roles client on this server, with the server's own keys.
    pub async fn iam_roles(&self) -> uploadbucket_operator::aws::iam::IamRoles {
        let sdk = self.sdk_config(&self.access_key, &self.secret_key).await;
        let conf = aws_sdk_iam::config::Builder::from(&sdk)
            .endpoint_url(&self.endpoint)
            .build();
        uploadbucket_operator::aws::iam::IamRoles::from_conf(conf)
    }

    /// A plain aws-sdk-s3 client (no operator code) to look at, or tamper with, what is stored.
    pub async fn raw_client(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        let sdk = self.sdk_config(access_key, secret_key).await;
        let conf = aws_sdk_s3::config::Builder::from(&sdk)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }
}

/// Counts HTTP requests by whether they can change anything (anything but GET and HEAD).
#[derive(Clone, Debug, Default)]
pub struct RequestCounter {
    reads: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    /// `METHOD path?query` of every request, with its `x-amz-expected-bucket-owner`.
    owners: Arc<std::sync::Mutex<Vec<SentOwner>>>,
}

/// A request as it went out (`METHOD path?query`) and the bucket owner it named as expected.
pub type SentOwner = (String, Option<String>);

impl RequestCounter {
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    /// Every request, reads and writes.
    pub fn total(&self) -> usize {
        self.reads() + self.writes()
    }
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }
    /// `METHOD path?query` of every write so far.
    pub fn write_log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    /// `METHOD path?query` of every request so far, with the bucket owner it names as
    /// expected (`x-amz-expected-bucket-owner`), as it went out.
    pub fn expected_owners(&self) -> Vec<SentOwner> {
        self.owners.lock().map(|l| l.clone()).unwrap_or_default()
    }
    /// Every request so far named `account` as the bucket's expected owner, as it went out,
    /// but the CreateBucket ones (`PUT /<bucket>/`, nothing to expect yet), which named none;
    /// `creates` of those, and more than `at_least` requests in all.
    pub fn assert_every_request_names(&self, account: &str, creates: usize, at_least: usize) {
        let sent = self.expected_owners();
        let is_create = |r: &str| {
            r.strip_prefix("PUT /")
                .and_then(|rest| rest.strip_suffix('/'))
                .is_some_and(|bucket| !bucket.contains(['/', '?']))
        };
        let made: Vec<_> = sent.iter().filter(|(r, _)| is_create(r)).collect();
        assert_eq!(made.len(), creates, "{sent:#?}");
        assert!(made.iter().all(|(_, owner)| owner.is_none()), "{made:#?}");
        let without: Vec<_> = sent
            .iter()
            .filter(|(r, owner)| !is_create(r) && owner.as_deref() != Some(account))
            .collect();
        assert!(without.is_empty(), "{without:#?}");
        assert!(sent.len() > at_least, "{sent:#?}");
    }
    /// An interceptor for an SDK client's config that counts into this counter, with the
    /// operator's own classification (GET/HEAD; query-protocol Get*/List*/Describe*).
    pub fn interceptor(&self) -> SharedInterceptor {
        let this = self.clone();
        uploadbucket_operator::aws::calls::on_request("RequestCounter", move |req, read| {
            if let Ok(mut owners) = this.owners.lock() {
                let uri = req.uri();
                let path = uri.split_once("://").map_or(uri, |(_, rest)| rest);
                let path = path.find('/').map_or("/", |i| &path[i..]);
                owners.push((
                    format!("{} {path}", req.method()),
                    req.headers()
                        .get("x-amz-expected-bucket-owner")
                        .map(str::to_owned),
                ));
            }
            if read {
                this.reads.fetch_add(1, Ordering::SeqCst);
                return;
            }
            this.writes.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut log) = this.log.lock() {
                let body = req.body().bytes().unwrap_or_default();
                let action = String::from_utf8_lossy(body)
                    .split('&')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                log.push(format!("{} {} {action}", req.method(), req.uri()));
            }
        })
    }
}

/// The test RGW's ceph.conf (`UPLOADBUCKET_TEST_RGW_CONF`, set by tests/scripts/rgw.sh), for
/// what only `radosgw-admin` does; `None` (a skip, or a failure when servers are required)
/// without it.
pub fn rgw_conf(test: &str) -> Option<String> {
    match std::env::var("UPLOADBUCKET_TEST_RGW_CONF") {
        Ok(c) if !c.is_empty() => Some(c),
        _ => require_or_skip(
            test,
            "UPLOADBUCKET_TEST_RGW_CONF is unset (this test runs radosgw-admin)",
            "run tests/run.sh",
        ),
    }
}

/// The log of the test RGW (the `log_file` of its ceph.conf, for its `client.rgw.*` daemon),
/// where it says why it refused what its answers do not tell apart: RGW 16's STS answers
/// `AccessDenied` with no message to a token for another audience, to an expired token and to
/// a subject the role's trust policy does not name alike.
pub struct RgwLog {
    path: std::path::PathBuf,
}

impl RgwLog {
    /// The log of the RGW of `conf` (see [`rgw_conf`]).
    pub fn of(conf: &str) -> Self {
        let text = std::fs::read_to_string(conf).unwrap_or_else(|e| panic!("{conf}: {e}"));
        let setting = |key: &str| {
            text.lines().find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_owned())
            })
        };
        let daemon = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("[client.rgw.")?.strip_suffix(']'))
            .unwrap_or_else(|| panic!("no [client.rgw.*] section in {conf}"));
        let file = setting("log_file").unwrap_or_else(|| panic!("no log_file in {conf}"));
        Self {
            path: file
                .replace("$name", &format!("client.rgw.{daemon}"))
                .into(),
        }
    }

    /// Where the log ends now: what is logged from here on is [`RgwLog::since`] it.
    pub fn end(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// The lines logged since `mark` (an [`RgwLog::end`]).
    pub fn since(&self, mark: u64) -> Vec<String> {
        use std::io::{Read as _, Seek as _};
        let mut file = std::fs::File::open(&self.path)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()));
        file.seek(std::io::SeekFrom::Start(mark)).unwrap();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Waits up to 5 s (RGW writes its log from a thread of its own) for a line logged since
    /// `mark` that holds each of `parts`; fails the test, with what was logged, without one.
    pub async fn wait_for_line(&self, mark: u64, parts: &[&str], what: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            let lines = self.since(mark);
            if lines.iter().any(|l| parts.iter().all(|p| l.contains(p))) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: RGW logged no line with {parts:?} ({}) since then:\n{}",
                self.path.display(),
                lines.join("\n")
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// `radosgw-admin -c <conf> <args>`, run to its end, whatever its exit status.
pub fn rgw_admin_output(conf: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("radosgw-admin")
        .args(["-c", conf])
        .args(args)
        .output()
        .expect("run radosgw-admin")
}

/// `radosgw-admin -c <conf> <args>`; its stdout. Fails the test if it fails.
pub fn rgw_admin(conf: &str, args: &[&str]) -> String {
    let out = rgw_admin_output(conf, args);
    assert!(
        out.status.success(),
        "radosgw-admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bucket name unique to this test run.
pub fn unique_name(base: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    // Clock, process and a counter: unique across parallel tests and test binaries. Each
    // part ends at a `-`: run together, (0x1a, 0x2b3) and (0x1a2, 0xb3) would read the same.
    format!(
        "{base}-{:x}-{:x}-{:x}",
        nanos % 0xff_ffff,
        std::process::id() % 0xfff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Path of a workspace binary (built by `cargo build --workspace`, which tests/run.sh does).
pub fn bin_path(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test> (a test) or target/<profile>/<bin> -> target/<profile>/<name>
    let mut dir = exe.parent().expect("target dir");
    if dir.ends_with("deps") {
        dir = dir.parent().expect("target dir");
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} not built; run `cargo build --workspace` (tests/run.sh does) before these tests",
        path.display()
    );
    path
}

/// A loopback port where nothing answers, for as long as the returned socket lives: bound but
/// never listening, so a connection is refused at once, and bound without `SO_REUSEADDR`, so
/// no other process can take the port meanwhile (a port found free and released, then named
/// later, could be anybody's by the time it is used).
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind a loopback port");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// A child process, killed when dropped, and what it logged (when started by
/// [`spawn_service`]).
pub struct Child(
    pub std::process::Child,
    pub std::sync::Arc<std::sync::Mutex<Vec<String>>>,
);

impl Child {
    /// Everything it has logged so far, one line each.
    pub fn log(&self) -> String {
        self.1.lock().unwrap().join("\n")
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `uploadbucket-sidecar` against the test server with the given extra env, and waits
/// until it answers `/healthz`. Returns the process and its base URL.
pub async fn start_sidecar(
    server: &S3Server,
    bucket: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut all = vec![
        ("AWS_ACCESS_KEY_ID", server.access_key.as_str()),
        ("AWS_SECRET_ACCESS_KEY", server.secret_key.as_str()),
    ];
    all.extend_from_slice(env);
    start_sidecar_as(server, bucket, &all).await
}

/// [`start_sidecar`] with no credentials but those in `env` (e.g. web identity, as in a pod).
/// The sidecar binds port 0 and the port is read from its "Signer listening" line, so no other
/// process can be on it; a sidecar that exits before that line fails the test.
pub async fn start_sidecar_as(
    server: &S3Server,
    bucket: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut cmd = std::process::Command::new(bin_path("uploadbucket-sidecar"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("UPLOADBUCKET_BUCKET", bucket)
        .env("UPLOADBUCKET_REGION", "us-east-1")
        .env("UPLOADBUCKET_LISTEN", "127.0.0.1:0")
        .env("AWS_ENDPOINT_URL_S3", &server.endpoint)
        .env("UPLOADBUCKET_PATH_STYLE", "true")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("RUST_LOG", "warn,uploadbucket_sidecar::cli=info");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (child, addrs) = spawn_service(cmd, "sidecar", &["Signer listening"]);
    let base = format!("http://{}", addrs[0]);
    wait_healthy(&base).await;
    (child, base)
}

/// `uploadbucket-sidecar dev` with its data in `data` and `args` added, both of its listeners
/// on port 0; waits until it answers. The process and the signer's base URL (its store's
/// bucket is `dev-uploads`, a folder of `data`).
pub async fn start_dev(data: &std::path::Path, args: &[&str]) -> (Child, String) {
    let mut cmd = std::process::Command::new(bin_path("uploadbucket-sidecar"));
    cmd.args(["dev", "--data-dir"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn,uploadbucket_sidecar::dev=info");
    let (child, addrs) = spawn_service(cmd, "dev", &["Dev mode running"]);
    let signer = format!("http://{}", addrs[0]);
    wait_healthy(&signer).await;
    (child, signer)
}

/// Starts `cmd` (which must log to stdout and bind its listeners to port 0) and waits until it
/// has logged each of `listening` (e.g. "Signer listening", with `address=<ip:port>`), so
/// the test talks to the port this child bound and no other process can hold it. The log is
/// echoed to stderr with `[name]` (shown for failing tests). Fails the test if the child exits
/// or stays silent for 20 s first. Returns the child and the addresses, in `listening` order.
pub fn spawn_service(
    mut cmd: std::process::Command,
    name: &str,
    listening: &[&str],
) -> (Child, Vec<String>) {
    use std::io::BufRead as _;
    cmd.stdout(std::process::Stdio::piped());
    let mut child = Child(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}")),
        Default::default(),
    );
    let kept = child.1.clone();
    let log = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    let wanted: Vec<String> = listening.iter().map(|s| (*s).to_owned()).collect();
    let prefix = name.to_owned();
    // Reads the log for the addresses, then keeps draining it.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(log).lines().map_while(Result::ok) {
            let plain = strip_ansi(&line);
            eprintln!("[{prefix}] {plain}");
            kept.lock().unwrap().push(plain.clone());
            // `address=<a>` in text logs, `"address":"<a>"` in JSON ones.
            if let Some(i) = wanted.iter().position(|w| plain.contains(w.as_str()))
                && let Some(addr) = plain
                    .split("address=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .or_else(|| {
                        plain
                            .split("\"address\":\"")
                            .nth(1)
                            .and_then(|rest| rest.split('"').next())
                    })
            {
                let _ = tx.send((i, addr.to_owned()));
            }
        }
    });
    let mut addrs = vec![String::new(); listening.len()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while addrs.iter().any(String::is_empty) {
        match rx.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok((i, addr)) => addrs[i] = addr,
            Err(_) => {
                if let Ok(Some(status)) = child.0.try_wait() {
                    panic!("{name} exited ({status}) before it listened: see its log above");
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "{name} did not say where it listens within 20 s ({listening:?})"
                );
            }
        }
    }
    (child, addrs)
}

/// An example app backend (examples/web/server.js, examples/backend-python/app.py, the
/// program of examples/backend-go) that `cmd` starts, in front of the signer at `signer`, with
/// `env`: on a port of its own (`PORT=0` unless `env` names one), read from its
/// `listening address=` line. The process and its base URL.
pub fn example_backend(
    mut cmd: std::process::Command,
    signer: &str,
    env: &[(&str, &str)],
) -> (Child, String) {
    cmd.env("PORT", "0")
        .env("UPLOADBUCKET_SIGNER_URL", signer)
        .envs(env.iter().copied());
    let (app, addrs) = spawn_service(cmd, "app", &["listening"]);
    (app, format!("http://{}", addrs[0]))
}

/// Whether examples/web has no node_modules (a loud skip, or a failure under CI), so
/// server.js cannot run.
pub fn example_web_missing(test: &str) -> bool {
    let missing = !browser::repo()
        .join("examples/web/node_modules/express")
        .exists();
    if missing {
        let _: Option<()> = require_or_skip(
            test,
            "examples/web/node_modules is missing",
            "tests/scripts/install-deps.sh (npm ci in examples/web)",
        );
    }
    missing
}

/// `line` without terminal colour codes.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A listener on a free local port, and its base URL (`http://127.0.0.1:<port>`).
pub async fn local_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    (listener, url)
}

/// Serves `app` on `listener` in the background, until the task is dropped or aborted.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}

/// Waits up to 5 s for `{base}/healthz` to answer.
pub async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("nothing answered {base}/healthz within 5 s");
}

/// Sends `req` and reads its answer as JSON (whatever the status).
pub async fn json_of(req: reqwest::RequestBuilder) -> serde_json::Value {
    req.send()
        .await
        .expect("the server answers")
        .json()
        .await
        .expect("a JSON answer")
}

/// `POST {base}/uploads` with `req`; the signer's JSON answer (a 201 is required).
pub async fn sign_upload(
    http: &reqwest::Client,
    base: &str,
    req: serde_json::Value,
) -> serde_json::Value {
    let resp = http
        .post(format!("{base}/uploads"))
        .json(&req)
        .send()
        .await
        .expect("the signer answers");
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.expect("JSON");
    assert_eq!(status.as_u16(), 201, "{body}");
    body
}

/// PUTs `body` to a signed answer's `uploadURL` with exactly the `headers` it lists, as a
/// client must; (status, response text).
pub async fn put_signed(
    http: &reqwest::Client,
    signed: &serde_json::Value,
    body: Vec<u8>,
) -> (u16, String) {
    put_signed_with(http, signed, body, &[]).await
}

/// [`put_signed`] with `extra` headers besides the signed ones (what a client may add, or
/// smuggle); (status, response text).
pub async fn put_signed_with(
    http: &reqwest::Client,
    signed: &serde_json::Value,
    body: Vec<u8>,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut req = http
        .put(signed["uploadURL"].as_str().expect("uploadURL"))
        .body(body);
    for (k, v) in signed["headers"].as_object().expect("headers") {
        req = req.header(k.as_str(), v.as_str().expect("header value"));
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("PUT");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// Posts `data` with a signed answer's form `fields` to its `url`, as a browser's FormData
/// does (the file last); (status, response text).
pub async fn post_signed(
    http: &reqwest::Client,
    signed: &serde_json::Value,
    data: Vec<u8>,
) -> (u16, String) {
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in signed["fields"].as_object().expect("fields") {
        form = form.text(k.clone(), v.as_str().expect("field value").to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(data).file_name("upload.bin"),
    );
    let resp = http
        .post(signed["url"].as_str().expect("url"))
        .multipart(form)
        .send()
        .await
        .expect("post");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// A new bucket on `server` named from `base` (made with a plain client, not the operator),
/// and that client.
pub async fn plain_bucket(server: &S3Server, base: &str) -> (String, aws_sdk_s3::Client) {
    let raw = server.admin_client().await;
    let name = unique_name(base);
    raw.create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("create bucket");
    (name, raw)
}

/// The arrangement most signer tests start from: the test's S3 server, a new plain bucket on
/// it, a signer process for that bucket and an HTTP client.
pub struct SignerRig {
    pub server: S3Server,
    /// The bucket's name.
    pub bucket: String,
    /// A plain S3 client with the server's keys, to read back what was stored.
    pub raw: aws_sdk_s3::Client,
    /// The signer's base URL.
    pub base: String,
    pub http: reqwest::Client,
    pub signer: Child,
}

impl SignerRig {
    /// The rig for `test` (`None` after a loud skip when there is no server), its bucket named
    /// from `bucket_base`, its signer started with `env` besides the server's keys.
    pub async fn start(test: &str, bucket_base: &str, env: &[(&str, &str)]) -> Option<Self> {
        let server = s3_server(test)?;
        let (bucket, raw) = plain_bucket(&server, bucket_base).await;
        let (signer, base) = start_sidecar(&server, &bucket, env).await;
        Some(Self {
            server,
            bucket,
            raw,
            base,
            http: reqwest::Client::new(),
            signer,
        })
    }

    /// `POST /uploads` with `req`, a 201 required: the signer's answer.
    pub async fn sign(&self, req: serde_json::Value) -> serde_json::Value {
        sign_upload(&self.http, &self.base, req).await
    }

    /// Asserts that nothing is stored at `key` of the rig's bucket; `why` names the case.
    pub async fn assert_absent(&self, key: &str, why: &str) {
        assert_absent(&self.raw, &self.bucket, key, why).await;
    }

    /// Whether `key` is stored in the rig's bucket.
    pub async fn is_stored(&self, key: &str) -> bool {
        is_stored(&self.raw, &self.bucket, key).await
    }

    /// Asserts that `key` is stored in the rig's bucket with this content type and size.
    pub async fn assert_stored(&self, key: &str, content_type: &str, size: i64) {
        assert_stored(&self.raw, &self.bucket, key, content_type, size).await;
    }
}

/// PUTs `body` to `url` with exactly `headers`; (status, response text).
pub async fn put_with(
    http: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let mut req = http.put(url).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("put");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

/// Asserts that an AWS call answered 404 (what it asked for is gone); `what` names it.
pub fn assert_not_found<T: std::fmt::Debug, E: std::fmt::Debug>(
    got: Result<T, aws_sdk_s3::error::SdkError<E>>,
    what: &str,
) {
    let status = got
        .as_ref()
        .err()
        .and_then(|e| e.raw_response())
        .map(|r| r.status().as_u16());
    assert_eq!(status, Some(404), "{what} must be gone: {got:?}");
}

/// Whether `bucket/key` is stored (a HEAD with the plain client `raw` succeeds).
pub async fn is_stored(raw: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    raw.head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

/// Asserts that nothing is stored at `bucket/key`; `why` names the case.
pub async fn assert_absent(raw: &aws_sdk_s3::Client, bucket: &str, key: &str, why: &str) {
    assert!(
        !is_stored(raw, bucket, key).await,
        "{why}: {bucket}/{key} must not be stored"
    );
}

/// Sends `req`; its status and its body as JSON (`Null` when it is not JSON).
pub async fn status_json(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let resp = req.send().await.expect("the server answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// One row of a refusal table: the request was answered `status` (`body` for the message),
/// and the row allows only `allowed`. A failure names the row by its `label`.
pub fn assert_row(label: &str, status: u16, body: &dyn std::fmt::Display, allowed: &[u16]) {
    assert!(
        allowed.contains(&status),
        "row {label:?}: answered {status}, expected one of {allowed:?}: {body}"
    );
}

/// [`assert_row`] for a row that must be refused, by whatever status: anything but a 2xx.
pub fn assert_refused(label: &str, status: u16, body: &dyn std::fmt::Display) {
    assert!(
        !(200..300).contains(&status),
        "row {label:?}: answered {status}, expected a refusal: {body}"
    );
}

/// A multipart upload's id as a path segment (`+`, `/` and `=` escaped).
pub fn upload_id_segment(id: &str) -> String {
    id.replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D")
}

/// PUTs `body` to the presigned part `url`; the part's ETag (a 200 is required).
pub async fn put_part(http: &reqwest::Client, url: &str, body: Vec<u8>) -> String {
    let resp = http.put(url).body(body).send().await.expect("part PUT");
    assert_eq!(resp.status().as_u16(), 200, "part PUT to {url}");
    resp.headers()["etag"].to_str().unwrap().to_owned()
}

/// Asserts that `bucket/key` is stored with this content type and size.
pub async fn assert_stored(
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    content_type: &str,
    size: i64,
) {
    let head = raw
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{bucket}/{key} not stored: {}",
                aws_sdk_s3::error::DisplayErrorContext(e)
            )
        });
    assert_eq!(head.content_type(), Some(content_type), "{key}");
    assert_eq!(head.content_length(), Some(size), "{key}");
}

/// The helm binary, or `None` after a loud SKIPPED (a failure when servers are required).
pub fn helm(test: &str) -> Option<std::path::PathBuf> {
    tool(test, "helm", "HELM", "version", INSTALLED_BY_DEPS)
}

/// Prometheus' promtool (built from its Go module by tests/scripts/install-deps.sh), or
/// `None` after a loud SKIPPED (a failure when servers are required).
pub fn promtool(test: &str) -> Option<std::path::PathBuf> {
    tool(test, "promtool", "PROMTOOL", "--version", INSTALLED_BY_DEPS)
}

/// The Go toolchain (`$GO` or `go` on PATH; a prerequisite of the suite, as it builds helm,
/// promtool and Kubernetes), or `None` after a loud SKIPPED (a failure when servers are
/// required).
pub fn go(test: &str) -> Option<std::path::PathBuf> {
    tool(
        test,
        "go",
        "GO",
        "version",
        "install Go (https://go.dev/dl), a prerequisite of the suite",
    )
}

/// Python 3 (`$PYTHON` or `python3` on PATH), or `None` after a loud SKIPPED (a failure when
/// servers are required).
pub fn python3(test: &str) -> Option<std::path::PathBuf> {
    tool(
        test,
        "python3",
        "PYTHON",
        "--version",
        "apt-get install python3",
    )
}

const INSTALLED_BY_DEPS: &str = "tests/scripts/install-deps.sh installs it";

/// openapi-spec-validator, the OpenAPI linter (in a virtualenv of tests/scripts/install-deps.sh),
/// or `None` after a loud SKIPPED (a failure when servers are required).
pub fn openapi_spec_validator(test: &str) -> Option<std::path::PathBuf> {
    tool(
        test,
        "openapi-spec-validator",
        "OPENAPI_SPEC_VALIDATOR",
        "--version",
        INSTALLED_BY_DEPS,
    )
}

/// The first of `$env`, `name` on PATH and ~/.cache/uploadbucket/bin/`name` that answers
/// `probe`; `how` to get it goes into the skip or the failure.
fn tool(test: &str, name: &str, env: &str, probe: &str, how: &str) -> Option<std::path::PathBuf> {
    let candidates = [
        std::env::var_os(env).map(std::path::PathBuf::from),
        Some(std::path::PathBuf::from(name)),
        std::env::var_os("HOME").map(|h| {
            std::path::PathBuf::from(h)
                .join(".cache/uploadbucket/bin")
                .join(name)
        }),
    ];
    for c in candidates.into_iter().flatten() {
        if std::process::Command::new(&c)
            .arg(probe)
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(c);
        }
    }
    require_or_skip(test, &format!("no {name} binary was found"), how)
}

/// The Kubernetes version charts are rendered for: the one tests/scripts/kube.sh runs (helm
/// built from source would otherwise assume 1.20; the chart needs 1.29+).
pub const KUBE_VERSION: &str = "1.37.0";

/// `helm template` of the chart as release `ub` in `namespace` with `--set` for each of
/// `sets` (CRDs included); the YAML, or helm's error output.
pub fn render_chart(
    helm: &std::path::Path,
    namespace: &str,
    sets: &[&str],
) -> Result<String, String> {
    render_chart_with(helm, namespace, &[], sets)
}

/// The checkout the tests run from. Cargo sets `CARGO_MANIFEST_DIR` when it runs a test, and
/// that is the one to trust: the build cache is shared between checkouts (CI's clone and a
/// developer's tree), and a test binary built in one would otherwise read the other's files
/// through the path compiled into it.
pub fn repo_root() -> std::path::PathBuf {
    manifest_dir().join("..")
}

/// The `tests/` package's directory (see [`repo_root`]).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())
}

/// The chart's directory in this repository.
pub fn chart_dir() -> std::path::PathBuf {
    repo_root().join("charts/uploadbucket-operator")
}

/// [`render_chart`] with values files (`-f`, in order) before the `--set`s.
pub fn render_chart_with(
    helm: &std::path::Path,
    namespace: &str,
    files: &[&std::path::Path],
    sets: &[&str],
) -> Result<String, String> {
    render_chart_dir(helm, &chart_dir(), namespace, files, sets)
}

/// [`render_chart_with`] for the chart in `chart` (a copy, say).
pub fn render_chart_dir(
    helm: &std::path::Path,
    chart: &std::path::Path,
    namespace: &str,
    files: &[&std::path::Path],
    sets: &[&str],
) -> Result<String, String> {
    let mut cmd = std::process::Command::new(helm);
    cmd.args(["template", "ub", "--namespace", namespace, "--include-crds"])
        .args(["--kube-version", KUBE_VERSION])
        .arg(chart);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("run helm");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8(out.stdout).expect("helm prints UTF-8"))
}

/// A file of the webhook's golden-test fixtures (operator/testdata).
pub fn operator_testdata(file: &str) -> String {
    let path = repo_root().join("operator/testdata").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The signer container the webhook injects with `settings` into testdata/pod-basic.yaml,
/// for UploadBucket shop/photos (Ready, with its role).
pub fn injected_signer(
    settings: &uploadbucket_operator::webhook::inject::Settings,
) -> k8s_openapi::api::core::v1::Container {
    use serde::Deserialize;
    use uploadbucket_operator::webhook::inject::{self, Outcome};
    let pod: k8s_openapi::api::core::v1::Pod =
        serde_yaml::from_str(&operator_testdata("pod-basic.yaml")).unwrap();
    let photos = serde_yaml::Deserializer::from_str(&operator_testdata("uploadbuckets.yaml"))
        .map(|d| uploadbucket_operator::crd::UploadBucket::deserialize(d).unwrap())
        .find(|b| b.metadata.name.as_deref() == Some("photos"))
        .unwrap();
    let Outcome::Inject(patch) = inject::inject(&pod, "shop", Some(&photos), settings) else {
        panic!("pod-basic is injected")
    };
    let mut doc = serde_json::to_value(&pod).unwrap();
    json_patch::patch(&mut doc, &patch).unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(doc).unwrap();
    let spec = pod.spec.unwrap();
    spec.init_containers
        .into_iter()
        .flatten()
        .chain(spec.containers)
        .find(|c| c.name == inject::CONTAINER_NAME)
        .expect("the signer")
}

/// The operator's defaults for tests against `server`: region us-east-1, no bucket-name
/// prefix, nothing adoptable.
pub fn defaults(server: &S3Server) -> uploadbucket_operator::controller::desired::Defaults {
    uploadbucket_operator::controller::desired::Defaults {
        region: "us-east-1".into(),
        backend: server.backend,
        bucket_name_prefix: String::new(),
        adoptable_buckets: Vec::new(),
    }
}

/// Runs [`provision`] a second time and asserts it wrote nothing (`counter` counts `api`'s
/// requests): what was written reads back as written.
pub async fn assert_second_pass_writes_nothing(
    api: &dyn uploadbucket_operator::aws::BucketApi,
    ub: &uploadbucket_operator::crd::UploadBucket,
    defaults: &uploadbucket_operator::controller::desired::Defaults,
    counter: &RequestCounter,
) {
    let writes = counter.writes();
    provision(api, ub, defaults).await.expect("provision again");
    assert_eq!(
        counter.writes(),
        writes,
        "the second pass wrote: {:?}",
        &counter.write_log()[writes..]
    );
}

/// The operator's bucket step for `ub` as a reconcile runs it (resolve names, prove the
/// bucket is `ub`'s, apply), without the API server: the intent is not written anywhere.
pub async fn provision(
    api: &dyn uploadbucket_operator::aws::BucketApi,
    ub: &uploadbucket_operator::crd::UploadBucket,
    defaults: &uploadbucket_operator::controller::desired::Defaults,
) -> Result<
    uploadbucket_operator::controller::apply::ApplyReport,
    uploadbucket_operator::controller::Error,
> {
    use uploadbucket_operator::controller::provision::provision_bucket;
    provision_bucket(api, ub, defaults, async |_| Ok(()))
        .await
        .map(|(_, _, report)| report)
        .map_err(|f| f.error)
}

/// Cleanup of `ub`'s bucket as deleting it runs it, with status naming `ub`'s bucket (its
/// `spec.bucketName`) as provisioned.
pub async fn clean_up(
    api: &dyn uploadbucket_operator::aws::BucketApi,
    ub: &uploadbucket_operator::crd::UploadBucket,
    defaults: &uploadbucket_operator::controller::desired::Defaults,
    policy: uploadbucket_operator::crd::DeletionPolicy,
    empty_on_delete: bool,
) -> Result<
    uploadbucket_operator::controller::cleanup::CleanupOutcome,
    uploadbucket_operator::controller::claim::ClaimError,
> {
    use uploadbucket_operator::controller::{claim::Claimant, cleanup, desired};
    let mut recorded = ub.clone();
    let st = recorded.status.get_or_insert_with(Default::default);
    st.bucket_name = ub.spec.bucket_name.clone();
    st.region = Some(defaults.region.clone());
    let names = desired::recorded_names(&recorded, defaults);
    let uid = ub.metadata.uid.clone().unwrap_or_default();
    let who = names
        .as_ref()
        .map(|n| Claimant::new(n, &uid, None, defaults));
    let spec_tag_keys: Vec<String> = ub.spec.tags.keys().cloned().collect();
    cleanup::cleanup(
        api,
        who.as_ref(),
        policy,
        empty_on_delete,
        &spec_tag_keys,
        false,
    )
    .await
}

/// Another account's bucket that lets the operator in is never the operator's, on `server`
/// (each backend's test calls this): the other account makes a bucket, opens it to everyone
/// in its bucket policy and makes it look like the operator's, as an object's bucket named in
/// its spec and tagged with the object's uid, or as the object's derived name with the intent
/// recorded (and, for the reason given, untagged or tagged as another object's). The
/// operator's own keys can read it (the control: only the owner check stands in the way);
/// the operator refuses it (RGW: `BucketNameTaken`, "another account"; the AWS stand-in:
/// `AccessDenied` from the owner check's GetBucketPolicy, whatever tags it wears), and
/// neither that nor deleting the object with `Delete` and `emptyOnDelete` changes anything
/// in it.
pub async fn another_accounts_bucket_is_never_ours(server: &S3Server) {
    use uploadbucket_operator::controller::desired;
    use uploadbucket_operator::crd::{DeletionPolicy, UploadBucket, UploadBucketSpec};
    let (buckets, counter) = server.buckets().await;
    let defaults = defaults(server);
    let raw = server.admin_client().await;
    let theirs = server
        .raw_client(&server.other_access_key, &server.other_secret_key)
        .await;
    let object = |uid: &str, spec: serde_json::Value| {
        let spec: UploadBucketSpec = serde_json::from_value(spec).expect("spec");
        let mut ub = UploadBucket::new("photos", spec);
        ub.metadata.namespace = Some("shop".into());
        ub.metadata.uid = Some(uid.to_owned());
        ub
    };
    let named = unique_name("ub-theirs");
    let by_uid = object(
        &unique_name("uid-forged"),
        serde_json::json!({"bucketName": named, "deletionPolicy": "Delete", "emptyOnDelete": true}),
    );
    let plain_name = unique_name("ub-theirs-plain");
    let plain = object(
        &unique_name("uid-plain"),
        serde_json::json!({"bucketName": plain_name}),
    );
    let other_name = unique_name("ub-theirs-other");
    let by_other = object(
        &unique_name("uid-other"),
        serde_json::json!({"bucketName": other_name}),
    );
    let mut by_intent = object(&unique_name("uid-intent"), serde_json::json!({}));
    let derived = desired::derive_bucket_name(&by_intent, &defaults.bucket_name_prefix);
    by_intent.status = Some(uploadbucket_operator::crd::UploadBucketStatus {
        creating_bucket: Some(derived.clone()),
        region: Some(defaults.region.clone()),
        ..Default::default()
    });
    for (case, ub, bucket, tags) in [
        (
            "named in the spec, tagged with the object's uid",
            &by_uid,
            &named,
            desired::ownership_tags(&by_uid, false),
        ),
        (
            "the derived name, untagged, the intent recorded",
            &by_intent,
            &derived,
            Default::default(),
        ),
        // Whatever it wears, the reason is the owner's (its owner does not choose what the
        // tenant is told): untagged, or tagged as another UploadBucket's.
        (
            "named in the spec, untagged",
            &plain,
            &plain_name,
            Default::default(),
        ),
        (
            "named in the spec, tagged as another object's",
            &by_other,
            &other_name,
            desired::ownership_tags(&by_uid, false),
        ),
    ] {
        theirs
            .create_bucket()
            .bucket(bucket)
            .send()
            .await
            .expect("their bucket");
        let open = serde_json::json!({"Version": "2012-10-17", "Statement": [{
            "Sid": "Everyone", "Effect": "Allow", "Principal": "*", "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]}]});
        theirs
            .put_bucket_policy()
            .bucket(bucket)
            .policy(open.to_string())
            .send()
            .await
            .expect("their policy");
        if !tags.is_empty() {
            use aws_sdk_s3::types::{Tag, Tagging};
            let set = tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build().unwrap())
                .collect();
            theirs
                .put_bucket_tagging()
                .bucket(bucket)
                .tagging(Tagging::builder().set_tag_set(Some(set)).build().unwrap())
                .send()
                .await
                .expect("their tags");
        }
        theirs
            .put_object()
            .bucket(bucket)
            .key("reports/q1.csv")
            .body(aws_sdk_s3::primitives::ByteStream::from_static(
                b"q1,1000\n",
            ))
            .send()
            .await
            .expect("their object");
        // The control: the operator's keys get in, and see the tags the other account wrote.
        raw.head_bucket()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{case}: the operator's keys can see it: {e:?}"));
        if !tags.is_empty() {
            let seen = raw.get_bucket_tagging().bucket(bucket).send().await;
            assert!(
                seen.is_ok(),
                "{case}: the operator's keys read its tags: {seen:?}"
            );
        }
        let before = BucketSnapshot::of(&theirs, bucket).await;

        // RGW: the control for the owner comparison, its ACL names an owner other than
        // ours. (LocalStack names one canonical owner for every account.)
        if server.backend == Backend::Rgw {
            let me = raw.list_buckets().send().await.expect("our buckets");
            let acl = raw
                .get_bucket_acl()
                .bucket(bucket)
                .send()
                .await
                .expect("its ACL");
            let (ours, its) = (
                me.owner().and_then(|o| o.id()),
                acl.owner().and_then(|o| o.id()),
            );
            assert!(
                ours.is_some() && its.is_some() && ours != its,
                "{case}: {ours:?} {its:?}"
            );
        }

        // RGW: the owners compared; the AWS stand-in: GetBucketPolicy naming our account as
        // the expected owner answered 403 (AWS itself refuses the first HEAD already).
        let err = provision(&buckets, ub, &defaults).await.unwrap_err();
        let (reason, says) = match server.backend {
            Backend::Rgw => ("BucketNameTaken", "another account"),
            Backend::Aws => ("AccessDenied", "GetBucketPolicy"),
        };
        assert_eq!(err.reason(), reason, "{case}: {err}");
        assert!(err.to_string().contains(says), "{case}: {err}");
        assert_eq!(BucketSnapshot::of(&theirs, bucket).await, before, "{case}");
        let outcome = clean_up(&buckets, ub, &defaults, DeletionPolicy::Delete, true).await;
        assert!(
            matches!(
                outcome,
                Ok(uploadbucket_operator::controller::cleanup::CleanupOutcome::NotOurs(..))
            ),
            "{case}: {outcome:?}"
        );
        assert_eq!(BucketSnapshot::of(&theirs, bucket).await, before, "{case}");
    }
    // Each backend's way is sent to it alone: the expected owner on every AWS request (no
    // CreateBucket was sent), never to RGW; ListBuckets and the ACL only to RGW.
    let sent = counter.expected_owners();
    let rgw_only = |r: &str| r == "GET /" || r.ends_with("?acl");
    match server.account_id() {
        Some(account) => {
            counter.assert_every_request_names(&account, 0, 5);
            assert!(!sent.iter().any(|(r, _)| rgw_only(r)), "{sent:#?}");
        }
        None => {
            assert!(sent.iter().all(|(_, owner)| owner.is_none()), "{sent:#?}");
            assert!(sent.iter().any(|(r, _)| rgw_only(r)), "{sent:#?}");
        }
    }
}

/// Everything a bucket's owner would notice, read with a plain aws-sdk-s3 client (no operator
/// code): tags, lifecycle, CORS, policy, public-access block, ACL, versioning, notifications,
/// and every object version with its tags and ACL. Two snapshots compare equal only when
/// nothing of the bucket changed.
#[derive(Debug, PartialEq)]
pub struct BucketSnapshot {
    pub tags: Vec<(String, String)>,
    pub lifecycle: String,
    pub cors: String,
    pub policy: Option<String>,
    /// The public-access block's four switches; `None` when the bucket has none.
    pub public_access_block: Option<[Option<bool>; 4]>,
    /// The bucket ACL: owner and grants (sorted).
    pub acl: String,
    pub versioning: String,
    pub notifications: String,
    pub objects: Vec<ObjectSnapshot>,
}

/// One object version as [`BucketSnapshot`] sees it.
#[derive(Debug, PartialEq, PartialOrd, Eq, Ord)]
pub struct ObjectSnapshot {
    pub key: String,
    pub version_id: String,
    pub e_tag: String,
    pub size: i64,
    /// Its tags, sorted.
    pub tags: Vec<(String, String)>,
    /// Its ACL: owner and grants (sorted).
    pub acl: String,
}

/// An ACL as text that compares equal whatever order the grants come in.
fn acl_text(
    owner: Option<&aws_sdk_s3::types::Owner>,
    grants: &[aws_sdk_s3::types::Grant],
) -> String {
    let mut grants: Vec<String> = grants.iter().map(|g| format!("{g:?}")).collect();
    grants.sort();
    format!("owner {:?}; grants {grants:?}", owner.and_then(|o| o.id()))
}

/// Tags as sorted (key, value) pairs.
fn tag_pairs(tags: &[aws_sdk_s3::types::Tag]) -> Vec<(String, String)> {
    let mut v: Vec<_> = tags
        .iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect();
    v.sort();
    v
}

impl BucketSnapshot {
    /// Reads it; panics on any error except "not configured" answers.
    pub async fn of(raw: &aws_sdk_s3::Client, bucket: &str) -> Self {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        let absent = |code: Option<&str>, codes: &[&str]| code.is_some_and(|c| codes.contains(&c));
        let tags = match raw.get_bucket_tagging().bucket(bucket).send().await {
            Ok(t) => tag_pairs(t.tag_set()),
            Err(e) if absent(e.code(), &["NoSuchTagSet", "NoSuchTagSetError"]) => Vec::new(),
            Err(e) => panic!("GetBucketTagging {bucket}: {e:?}"),
        };
        let lifecycle = match raw
            .get_bucket_lifecycle_configuration()
            .bucket(bucket)
            .send()
            .await
        {
            Ok(l) => format!("{:?}", l.rules()),
            Err(e) if absent(e.code(), &["NoSuchLifecycleConfiguration"]) => String::new(),
            Err(e) => panic!("GetBucketLifecycleConfiguration {bucket}: {e:?}"),
        };
        let cors = match raw.get_bucket_cors().bucket(bucket).send().await {
            Ok(c) => format!("{:?}", c.cors_rules()),
            Err(e) if absent(e.code(), &["NoSuchCORSConfiguration"]) => String::new(),
            Err(e) => panic!("GetBucketCors {bucket}: {e:?}"),
        };
        let policy = match raw.get_bucket_policy().bucket(bucket).send().await {
            Ok(p) => p.policy().map(str::to_owned),
            Err(e) if absent(e.code(), &["NoSuchBucketPolicy"]) => None,
            Err(e) => panic!("GetBucketPolicy {bucket}: {e:?}"),
        };
        let public_access_block = match raw.get_public_access_block().bucket(bucket).send().await {
            Ok(p) => p.public_access_block_configuration().map(|c| {
                [
                    c.block_public_acls(),
                    c.ignore_public_acls(),
                    c.block_public_policy(),
                    c.restrict_public_buckets(),
                ]
            }),
            Err(e) if absent(e.code(), &["NoSuchPublicAccessBlockConfiguration"]) => None,
            Err(e) => panic!("GetPublicAccessBlock {bucket}: {e:?}"),
        };
        let acl = raw
            .get_bucket_acl()
            .bucket(bucket)
            .send()
            .await
            .map(|a| acl_text(a.owner(), a.grants()))
            .unwrap_or_else(|e| panic!("GetBucketAcl {bucket}: {e:?}"));
        let versioning = raw
            .get_bucket_versioning()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GetBucketVersioning {bucket}: {e:?}"))
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        let notifications = raw
            .get_bucket_notification_configuration()
            .bucket(bucket)
            .send()
            .await
            .map(|n| {
                format!(
                    "{:?} {:?}",
                    n.topic_configurations(),
                    n.queue_configurations()
                )
            })
            .unwrap_or_else(|e| panic!("GetBucketNotificationConfiguration {bucket}: {e:?}"));
        let listed = raw
            .list_object_versions()
            .bucket(bucket)
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListObjectVersions {bucket}: {e:?}"));
        let mut objects = Vec::new();
        for v in listed.versions() {
            let key = v.key().unwrap_or_default().to_owned();
            let version_id = v.version_id().unwrap_or_default().to_owned();
            let tags = raw
                .get_object_tagging()
                .bucket(bucket)
                .key(&key)
                .set_version_id(v.version_id().map(str::to_owned))
                .send()
                .await
                .map(|t| tag_pairs(t.tag_set()))
                .unwrap_or_else(|e| panic!("GetObjectTagging {bucket}/{key}: {e:?}"));
            let acl = raw
                .get_object_acl()
                .bucket(bucket)
                .key(&key)
                .set_version_id(v.version_id().map(str::to_owned))
                .send()
                .await
                .map(|a| acl_text(a.owner(), a.grants()))
                .unwrap_or_else(|e| panic!("GetObjectAcl {bucket}/{key}: {e:?}"));
            objects.push(ObjectSnapshot {
                key,
                version_id,
                e_tag: v.e_tag().unwrap_or_default().to_owned(),
                size: v.size().unwrap_or_default(),
                tags,
                acl,
            });
        }
        objects.sort();
        Self {
            tags,
            lifecycle,
            cors,
            policy,
            public_access_block,
            acl,
            versioning,
            notifications,
            objects,
        }
    }
}

/// A TCP proxy on a loopback port to `target`, which can be cut: every open connection is
/// dropped and new ones are refused, as when a process loses its network; or taken down for a
/// while ([`CuttableProxy::down`]), as when the server behind it stops and starts again; or
/// slowed ([`CuttableProxy::slow`]), so that a client's work between two calls stays in
/// progress long enough for a test to catch it there.
pub struct CuttableProxy {
    pub port: u16,
    tasks: Arc<std::sync::Mutex<tokio::task::JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
    down: Arc<std::sync::atomic::AtomicBool>,
    /// Milliseconds each chunk a client sends waits before it goes on.
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

/// Copies what the client sends to the server, each chunk after the proxy's delay, and the
/// server's answers back as they come.
async fn forward(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = inbound.into_split();
    let (mut server_read, mut server_write) = outbound.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}

impl CuttableProxy {
    pub async fn start(target: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(listener, target)
    }

    /// A proxy on a port the caller bound already: an address that must be known before the
    /// process behind it starts (a page's origin, say) stays the test's own throughout, where
    /// a port picked free and handed to that process could be taken in between.
    pub fn on(listener: tokio::net::TcpListener, target: String) -> Self {
        let port = listener.local_addr().unwrap().port();
        let tasks = Arc::new(std::sync::Mutex::new(tokio::task::JoinSet::new()));
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let spawned = tasks.clone();
        let is_down = down.clone();
        let delay = delay_ms.clone();
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if is_down.load(Ordering::SeqCst) {
                    // Closed at once, as a stopped server's port would be.
                    drop(inbound);
                    continue;
                }
                let (target, delay) = (target.clone(), delay.clone());
                spawned.lock().unwrap().spawn(async move {
                    if let Ok(outbound) = tokio::net::TcpStream::connect(&target).await {
                        forward(inbound, outbound, delay).await;
                    }
                });
            }
        });
        Self {
            port,
            tasks,
            accept,
            down,
            delay_ms,
        }
    }

    /// Holds each chunk a client sends for `delay` before passing it on (zero: none), on open
    /// connections too: every call through the proxy takes at least that long.
    pub fn slow(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// `true`: drops every open connection and closes new ones at once, until `false`.
    pub fn down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            self.tasks.lock().unwrap().abort_all();
        }
    }

    /// Drops every connection and stops accepting new ones.
    pub fn cut(&self) {
        self.accept.abort();
        self.tasks.lock().unwrap().abort_all();
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// How often the end user posts in a round of [`race_verify`]: a stream in some rounds, a
/// few posts in others, and none in every fifth (the control: verify must accept).
fn posts_in(round: usize) -> usize {
    match round % 5 {
        4 => 0,
        0 | 2 => usize::MAX,
        _ => round % 7 + 1,
    }
}

/// The bytes stored at `bucket/key`, read with a plain client; `None` when there are none.
pub async fn object_bytes(raw: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let got = raw.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(got.body.collect().await.expect("object body").to_vec())
}

/// [`race_verify`] against the signer at `base` for `bucket`, reading verified objects with
/// the plain client `raw`.
pub async fn race_verify_in(
    raw: &aws_sdk_s3::Client,
    bucket: &str,
    base: &str,
    rounds: usize,
) -> VerifyRace {
    race_verify(base, rounds, |key| async move {
        object_bytes(raw, bucket, &key).await
    })
    .await
}

/// What [`race_verify`] saw.
#[derive(Debug, Default)]
pub struct VerifyRace {
    /// Verify's answers by status.
    pub answers: std::collections::BTreeMap<u16, usize>,
    /// The end user's posts that landed while verify ran.
    pub landed: usize,
}

/// A JPEG (its signature, then padding) and an HTML page of the same size, 64 bytes: no size
/// check can tell them apart.
pub const RACE_JPEG: &[u8; 64] =
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00padding-padding-padding-padding-padding-padd";
pub const RACE_HTML: &[u8; 64] =
    b"<html><script>alert(document.domain)</script></html>            ";

/// An end user who holds a POST form for `owner` posts [`RACE_HTML`] and [`RACE_JPEG`] to it
/// in turn, as fast as the store takes them, while the app calls verify, `rounds` times with
/// a fresh form each. After every verify that answers 200, `verified(key)` must give exactly
/// the JPEG: "verified" names the bytes verify read, whatever raced it. Any other answer must
/// leave nothing in the verified area.
pub async fn race_verify<F, Fut>(base: &str, rounds: usize, verified: F) -> VerifyRace
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Option<Vec<u8>>>,
{
    let (good, bad): (&'static [u8], &'static [u8]) = (RACE_JPEG, RACE_HTML);
    let http = reqwest::Client::new();
    let mut race = VerifyRace::default();
    for round in 0..rounds {
        let form = sign_upload(
            &http,
            base,
            serde_json::json!({"contentType": "image/jpeg", "method": "POST", "owner": "alice"}),
        )
        .await;
        let key = form["key"].as_str().unwrap().to_owned();
        let (status, text) = post_signed(&http, &form, good.to_vec()).await;
        assert!(matches!(status, 200 | 204), "{status} {text}");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let attacker = tokio::spawn({
            let (http, form, stop) = (http.clone(), form.clone(), stop.clone());
            async move {
                let mut landed = 0;
                let mut n = 0usize;
                let posts = posts_in(round);
                while !stop.load(Ordering::Relaxed) && n < posts {
                    let bytes = if n.is_multiple_of(2) { bad } else { good };
                    n += 1;
                    if matches!(post_signed(&http, &form, bytes.to_vec()).await.0, 200 | 204) {
                        landed += 1;
                    }
                }
                landed
            }
        });
        // Let the first replacement get under way, then ask.
        tokio::time::sleep(std::time::Duration::from_millis(2 * (round % 5) as u64)).await;
        let resp = http
            .post(format!("{base}/uploads/verify"))
            .json(&serde_json::json!({"key": key, "owner": "alice"}))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let answer: serde_json::Value = resp.json().await.unwrap();
        stop.store(true, Ordering::Relaxed);
        if posts_in(round) == 0 {
            assert_eq!(status, 200, "round {round}, nobody racing: {answer}");
        }
        race.landed += attacker.await.unwrap();
        *race.answers.entry(status).or_default() += 1;
        let target = key.replacen("/incoming/", "/verified/", 1);
        match status {
            200 => {
                assert_eq!(answer["key"], target.as_str(), "{answer}");
                let bytes = verified(target.clone()).await.expect("the verified object");
                assert_eq!(
                    bytes, good,
                    "round {round}: verify answered {answer} but the verified object holds other bytes"
                );
            }
            // Refused, changed under it, or the store failing mid-race (RGW answers 500 now
            // and then to a copy whose source is being rewritten): nothing verified.
            409 | 422 | 500 => assert!(
                verified(target.clone()).await.is_none(),
                "round {round}: {answer}, yet {target} exists"
            ),
            other => panic!("round {round}: verify answered {other}: {answer}"),
        }
    }
    race
}

/// The operator's and the signer's metric registries with every family sampled and every
/// outcome recorded once, so their text shows each family's labels and label values (the
/// chart's dashboard and alerts, and the metrics reference, are checked against it).
pub fn sampled_metrics() -> (
    uploadbucket_operator::metrics::Metrics,
    uploadbucket_sidecar::metrics::Metrics,
) {
    let operator = uploadbucket_operator::metrics::Metrics::default();
    operator.reconciles.inc();
    operator.failure("AccessDenied");
    operator.observe(std::time::Duration::from_millis(5));
    for r in uploadbucket_operator::metrics::Review::ALL {
        operator.webhook(r);
    }
    operator.webhook_duration.observe(0.001);
    operator
        .aws_requests
        .get_or_create(&uploadbucket_operator::metrics::CallLabels {
            service: "s3",
            kind: "read",
        })
        .inc();
    operator
        .aws_requests_until_ready
        .get_or_create(&uploadbucket_operator::metrics::ServiceLabels { service: "s3" })
        .inc();
    operator.ready_from(Box::new(|each| each("shop", "photos", true)));
    let signer = uploadbucket_sidecar::metrics::Metrics::default();
    for route in uploadbucket_sidecar::metrics::Route::ALL {
        for status in [200, 404, 503] {
            signer.record(route, status, std::time::Duration::from_micros(80));
        }
    }
    signer.credentials(false);
    (operator, signer)
}

/// Emptying goes batch by batch on a real server, so the controller can re-check ownership
/// before each batch and give its slot back between passes: in a new versioned bucket
/// `name`, unfinished multipart uploads go first, then pages of object versions and delete
/// markers (two per batch here), `done` on the last page; the bucket can then be deleted.
pub async fn empties_batch_by_batch(
    buckets: &uploadbucket_operator::aws::s3::S3Buckets,
    raw: &aws_sdk_s3::Client,
    name: &str,
) {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    use uploadbucket_operator::aws::{BucketApi, BucketRef, Deleted, Emptied};
    raw.create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create");
    raw.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("versioning");
    // Five entries: a twice, b and c (versions), and the delete marker b's deletion leaves.
    for key in ["a", "a", "b", "c"] {
        raw.put_object()
            .bucket(name)
            .key(key)
            .body(ByteStream::from_static(b"x"))
            .send()
            .await
            .expect("put");
    }
    raw.delete_object()
        .bucket(name)
        .key("b")
        .send()
        .await
        .expect("delete marker");
    raw.create_multipart_upload()
        .bucket(name)
        .key("unfinished")
        .send()
        .await
        .expect("multipart");
    let b = BucketRef {
        name: name.to_owned(),
        region: "us-east-1".into(),
    };
    let mut batches = Vec::new();
    while batches.len() < 10 {
        let batch = buckets.empty_some(&b, 2).await.expect("batch");
        batches.push(batch);
        if batch.done {
            break;
        }
    }
    let batch = |objects, done| Emptied { objects, done };
    assert_eq!(
        batches,
        [
            batch(0, false),
            batch(2, false),
            batch(2, false),
            batch(1, true)
        ]
    );
    assert_eq!(
        buckets.delete_bucket(&b).await.expect("delete"),
        Deleted::Deleted
    );
}

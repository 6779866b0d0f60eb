//! Command line: `uploadbucket-sidecar [serve]`, `config`, `probe URL`, (with the `dev`
//! feature) `dev`, and `credentials`, the signer's own helper process.
//!
//! In: flags and the env contract. Out: a running signer, or the effective configuration.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tracing::info;

use crate::config::Config;
use crate::credentials::CachedCredentials;
use crate::presign::{Endpoint, Presigner};
use crate::server::metrics_app;
use crate::store::S3Store;
use crate::{AppState, app};

/// Runtime worker threads unless `--worker-threads` says otherwise.
pub const DEFAULT_WORKER_THREADS: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "uploadbucket-sidecar",
    version,
    about = "Presigned-URL signer for direct browser uploads to S3"
)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the signer (the default).
    Serve(ServeArgs),
    /// Validate the configuration and print it as JSON.
    Config(ServeArgs),
    /// Local dev mode: an embedded S3-compatible store, the signer and a demo upload page.
    #[cfg(feature = "dev")]
    Dev(crate::dev::DevArgs),
    /// GET a loopback URL of the signer and exit 0 on a 2xx: the container's probe (the
    /// kubelet cannot reach a pod's loopback itself).
    Probe {
        /// e.g. http://127.0.0.1:8787/healthz
        url: String,
    },
    /// Load credentials once and print them as `credential_process` JSON: what the signer
    /// runs in a child process for each credentials load (see `credentials::HelperProcess`).
    #[command(hide = true)]
    Credentials {
        #[arg(long)]
        region: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: Config,
    /// Log as JSON lines (`RUST_LOG` sets the levels).
    #[arg(long, env = "UPLOADBUCKET_LOG_JSON")]
    pub log_json: bool,
    /// Which presigner serves POST /uploads PUT URLs: `fast` (default) or `sdk` (aws-sdk-s3's,
    /// kept only as the benchmark baseline).
    #[arg(long, env = "UPLOADBUCKET_SIGNER", default_value = "fast", value_parser = ["fast", "sdk"], hide = true)]
    pub signer: String,
    /// Worker threads of the async runtime (1-64). A signature takes microseconds, so two
    /// threads serve tens of thousands of requests a second; the default keeps a sidecar on a
    /// many-core node from starting a thread per core.
    #[arg(long, env = "UPLOADBUCKET_WORKER_THREADS", default_value_t = DEFAULT_WORKER_THREADS, value_parser = clap::value_parser!(u8).range(1..=64))]
    pub worker_threads: u8,
    /// Benchmark only: also serve `POST /bench/ceiling`, which reads a JSON body like
    /// `POST /uploads` and answers this many bytes without signing anything (the cost of the
    /// exchange alone, the ceiling `tests/bench.sh` holds `/uploads` against).
    #[arg(long, env = "UPLOADBUCKET_BENCH_CEILING", hide = true, value_parser = clap::value_parser!(u16).range(16..))]
    pub bench_ceiling: Option<u16>,
}

impl Cli {
    /// How many runtime worker threads the command wants.
    pub fn worker_threads(&self) -> usize {
        let args = match &self.command {
            Some(Command::Serve(args) | Command::Config(args)) => args,
            Some(_) => return usize::from(DEFAULT_WORKER_THREADS),
            None => &self.serve,
        };
        usize::from(args.worker_threads)
    }

    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(Command::Config(args)) => {
                let config = resolve(args.config)?;
                println!("{}", serde_json::to_string_pretty(&config)?);
                Ok(())
            }
            Some(Command::Serve(args)) => serve(args).await,
            #[cfg(feature = "dev")]
            Some(Command::Dev(args)) => {
                init_tracing(false);
                crate::dev::run(args).await
            }
            Some(Command::Probe { url }) => probe(&url).await,
            Some(Command::Credentials { region }) => {
                if let Err(message) = crate::credentials::print_once(&region).await {
                    // The message alone: the signer passes it on as the load's error.
                    eprintln!("{message}");
                    std::process::exit(1);
                }
                Ok(())
            }
            None => serve(self.serve).await,
        }
    }
}

/// One HTTP/1.0 GET to a loopback address; Ok when the answer is 2xx.
async fn probe(url: &str) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url:?}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let address: std::net::SocketAddr = authority
        .parse()
        .with_context(|| format!("{url:?}: the host must be an IP address and port"))?;
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").as_bytes())
            .await?;
        let mut answer = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .with_context(|| format!("{url}: no answer within 5 s"))?
        .with_context(|| format!("{url}: cannot connect"))?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or("");
    let code = status_line.split_whitespace().nth(1).unwrap_or("");
    anyhow::ensure!(code.starts_with('2'), "{url}: {status_line}");
    Ok(())
}

fn resolve(config: Config) -> anyhow::Result<Config> {
    Ok(config.validate(std::env::var("AWS_REGION").ok())?)
}

/// Logging: `RUST_LOG` as `target=level` pairs (e.g. `info,aws=warn`). A plain target
/// filter rather than `EnvFilter`: a sidecar beside every pod keeps its startup small.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = || {
        "info,aws=warn"
            .parse::<Targets>()
            .expect("valid default filter")
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<Targets>().ok())
        .unwrap_or_else(default);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().flatten_event(true))
            .init();
    } else {
        // Colours only on a terminal: a pod's log is a file, where escape codes are noise.
        use std::io::IsTerminal;
        let ansi = std::io::stdout().is_terminal();
        registry
            .with(tracing_subscriber::fmt::layer().with_ansi(ansi))
            .init();
    }
}

/// The endpoint signed URLs point at.
pub fn endpoint(config: &Config) -> anyhow::Result<Endpoint> {
    match &config.endpoint_url {
        Some(url) => Endpoint::parse(url, config.path_style)
            .map_err(|e| anyhow::anyhow!("{}: {e}", crate::config::ENV_ENDPOINT)),
        None if config.path_style => Ok(Endpoint {
            path_style: true,
            ..Endpoint::aws(config.region())
        }),
        None => Ok(Endpoint::aws(config.region())),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_json);
    let config = resolve(args.config)?;
    let region = aws_config::Region::new(config.region().to_owned());
    let provider = crate::credentials::provider(config.region());
    // Refresh early enough that a URL signed now lives its full lifetime (capped at half the
    // credentials' own lifetime; URLs are cut to their expiry instead).
    let margin = Duration::from_secs(config.expires_seconds + 60);
    let credentials = Arc::new(CachedCredentials::new(provider.clone(), margin));
    let (path_style, endpoint_url) = (config.path_style, config.endpoint_url.clone());
    // Built on the first call that needs the SDK (multipart, verify), not at start-up.
    let make_s3_config = move || {
        let mut s3 = aws_sdk_s3::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(region.clone())
            .credentials_provider(provider.clone())
            .force_path_style(path_style);
        if let Some(url) = &endpoint_url {
            s3 = s3.endpoint_url(url).request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
        }
        s3.build()
    };
    let store = Arc::new(S3Store::new(
        make_s3_config,
        config.bucket.clone(),
        config.s3_backend,
    ));
    let presigner = Presigner::new(&config.bucket, config.region(), endpoint(&config)?);
    let listen = config.listen;
    let mut state = AppState::new(config.clone(), presigner, credentials, store.clone());
    if args.signer == "sdk" {
        state = state.with_sdk_signer(store.client().clone());
    }
    if let Some(bytes) = args.bench_ceiling {
        state = state.with_bench_ceiling(usize::from(bytes));
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} ({})", crate::config::ENV_LISTEN))?;
    // The bound address: with port 0 the system picked one, and this line says which.
    let address = listener.local_addr().unwrap_or(listen);
    info!(%address, bucket = %config.bucket, region = config.region(), "Signer listening");
    if let (Some(auth), Some(issuer)) = (state.auth.clone(), config.jwt.issuer.as_deref()) {
        info!(issuer, audiences = ?config.jwt.audiences, owner_claim = %config.jwt.owner_claim, "Uploads require the user's token");
        // Keys ahead of the first request; a failure here is only logged.
        tokio::spawn(async move { auth.warm().await });
    }
    if let Some(addr) = config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!(
                "cannot listen on {addr} ({})",
                crate::config::ENV_METRICS_LISTEN
            )
        })?;
        let address = metrics.local_addr().unwrap_or(addr);
        info!(%address, "Metrics listening (GET /metrics only)");
        let router = metrics_app(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::error!(error = %e, "Metrics listener failed");
            }
        });
    }
    axum::serve(listener, app(state))
        .with_graceful_shutdown(crate::server::shutdown())
        .await
        .context("server failed")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    /// `--bench-ceiling` is for tests/bench.sh: parsed, range-checked, kept out of `--help`.
    #[test]
    fn the_bench_ceiling_flag_is_hidden_and_bounded() {
        let mut cmd = Cli::command();
        let help = cmd
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        assert!(help.contains("--worker-threads"), "{help}");
        assert!(!help.contains("bench"), "{help}");
        let base = ["uploadbucket-sidecar", "serve", "--bucket", "b"];
        let parsed =
            Cli::try_parse_from(base.iter().chain(&["--bench-ceiling", "600"])).expect("parses");
        let Some(Command::Serve(args)) = parsed.command else {
            panic!("not serve: {parsed:?}");
        };
        assert_eq!(args.bench_ceiling, Some(600));
        let err = Cli::try_parse_from(base.iter().chain(&["--bench-ceiling", "3"]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--bench-ceiling") && err.contains("16"),
            "{err}"
        );
    }
}

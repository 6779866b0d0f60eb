use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = uploadbucket_sidecar::cli::Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.worker_threads())
        .enable_all()
        .build()?
        .block_on(cli.run())
}

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    uploadbucket_sidecar::cli::Cli::parse().run().await
}

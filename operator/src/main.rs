use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    uploadbucket_operator::cli::Cli::parse().run().await
}

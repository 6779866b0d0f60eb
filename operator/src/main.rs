use clap::Parser;

fn main() -> anyhow::Result<()> {
    // Few threads: glibc gives each thread that allocates under contention an arena of its
    // own and keeps what they held, so every extra thread (tokio's blocking pool resolves
    // DNS on them) costs resident memory after a burst of reconciles.
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
        .enable_all()
        .build()?
        .block_on(uploadbucket_operator::cli::Cli::parse().run())
}

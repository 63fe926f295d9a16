//! The `herald` binary: parses the command line, sets up logging, runs the command.

use clap::Parser;
use herald_broker::cli::{run, Cli};

// Herald allocates per event (parsing, headers, bodies); mimalloc handles that pattern
// markedly better than the system allocator under concurrency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // An empty RUST_LOG (as some shells export) means "not set", not "no directives".
            std::env::var("RUST_LOG")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                .unwrap_or_else(|| cli.default_log_level().into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run(cli).await
}

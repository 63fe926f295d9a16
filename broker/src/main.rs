//! The `herald` binary: parses the command line, sets up logging (and span export), runs
//! the command, flushes the spans.

use clap::Parser;
use herald_broker::cli::{run, Cli};
use herald_broker::telemetry::Telemetry;

// Herald allocates per event (parsing, headers, bodies); mimalloc handles that pattern
// markedly better than the system allocator under concurrency.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = Telemetry::init(&cli.telemetry())?;
    let result = run(cli).await;
    telemetry.shutdown().await;
    result
}

//! The `herald` binary: parses the command line, sets up logging (and span export), runs
//! the command, flushes the spans.

use clap::Parser;
use herald_broker::cli::{run, Cli};
use herald_broker::telemetry::Telemetry;

// Herald allocates per event (parsing, headers, bodies); mimalloc handles that pattern
// markedly better than the system allocator under concurrency (see `heap::Heap`).
#[global_allocator]
static GLOBAL: herald_broker::heap::Heap = herald_broker::heap::Heap;

// Runs before `main` and before any allocation (ahead of std's own start-up constructor, at
// priority 99); mimalloc's arena is first touched by the first allocation, so no page of it
// is ever a huge one (see `heap`).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00098"]
static NO_HUGE_PAGES: extern "C" fn() = {
    extern "C" fn before_main() {
        herald_broker::heap::no_transparent_huge_pages();
    }
    before_main
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = Telemetry::init(&cli.telemetry())?;
    let result = run(cli).await;
    telemetry.shutdown().await;
    result
}

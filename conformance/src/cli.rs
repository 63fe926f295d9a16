//! The command line: flags, one run, the table, the exit code (0: every MUST holds, 1: a MUST
//! failed, 2: the run could not be set up).

use crate::adapter::{self, AdapterOptions, BrokerRef};
use crate::check::Outcome;
use crate::{report, suite};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use url::Url;

/// Checks a broker's ingress and delivery against the Knative data-plane contract and the
/// CloudEvents HTTP binding, printing one line per check (named after its spec section, MUST
/// or SHOULD). Exits 1 when a MUST fails.
#[derive(Parser, Debug, Clone)]
#[command(name = "herald-conformance", version)]
pub struct Args {
    /// The Broker's ingress URL (its status.address.url), e.g. http://127.0.0.1:8080/ns/name.
    #[arg(long)]
    pub broker: Url,
    /// How to create the Broker's Triggers.
    #[arg(long, default_value = "herald", value_parser = clap::builder::PossibleValuesParser::new(adapter::ADAPTERS))]
    pub adapter: String,
    /// The broker's admin API, when not on the ingress's origin (herald adapter).
    #[arg(long)]
    pub admin: Option<Url>,
    /// Bearer token for the admin API (herald adapter).
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where the tool's receiving sink listens.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub sink_listen: SocketAddr,
    /// The sink's URL as the broker reaches it (default: the address it listens on).
    #[arg(long)]
    pub sink_url: Option<Url>,
    /// Seconds a delivery or retry may take before its check fails.
    #[arg(long, default_value_t = 20)]
    pub timeout: u64,
    /// Milliseconds a negative check waits for what must not arrive.
    #[arg(long, default_value_t = 1000)]
    pub quiet_ms: u64,
    /// Seconds the Broker and Triggers may take to become ready.
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
    /// The broker's body limit: a body one byte larger must be answered 413.
    #[arg(long)]
    pub max_body_bytes: Option<usize>,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Leave the Triggers in place afterwards.
    #[arg(long)]
    pub keep: bool,
}

/// The binary's `main`.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("herald-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    let (code, _) = runtime.block_on(run(args));
    ExitCode::from(code)
}

/// One run: prints the table and returns the exit code with the outcomes.
pub async fn run(args: Args) -> (u8, Vec<Outcome>) {
    match try_run(args).await {
        Ok(outcomes) => {
            print!("{}", report::table(&outcomes));
            (u8::from(report::must_failed(&outcomes)), outcomes)
        }
        Err(e) => {
            eprintln!("herald-conformance: {e:#}");
            (2, Vec::new())
        }
    }
}

async fn try_run(args: Args) -> anyhow::Result<Vec<Outcome>> {
    let broker = BrokerRef {
        url: args.broker.clone(),
    };
    let adapter = adapter::by_name(
        &args.adapter,
        &broker,
        AdapterOptions {
            admin: args.admin.clone(),
            token: args.token.clone(),
        },
    )?;
    let options = suite::Options {
        broker: args.broker.clone(),
        sink_listen: args.sink_listen,
        sink_url: args.sink_url.clone(),
        timeout: Duration::from_secs(args.timeout),
        quiet: Duration::from_millis(args.quiet_ms),
        ready_timeout: Duration::from_secs(args.ready_timeout),
        max_body_bytes: args.max_body_bytes,
        keep: args.keep,
    };
    let outcomes = suite::run(options, adapter.as_ref()).await?;
    if let Some(path) = &args.report_json {
        std::fs::write(path, report::json(&outcomes))
            .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
    }
    Ok(outcomes)
}

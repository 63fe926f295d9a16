//! The `herald` command line: one module per group of commands; `main` only parses and
//! calls [`run`].

mod describe;
mod dlq;
mod events;
mod resources;
mod serve;
mod source;
mod tail;

use crate::telemetry::{LogFormat, TelemetryConfig};
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald",
    version,
    about = "A CloudEvents broker and trigger system, compatible with Knative Eventing"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    telemetry: TelemetryArgs,
}

/// Logging and span export, for every command.
#[derive(Args)]
struct TelemetryArgs {
    /// How logs are written to stderr: text (colour codes only on a terminal, none with
    /// NO_COLOR) or json (one object per line).
    #[arg(
        long,
        global = true,
        env = "HERALD_LOG_FORMAT",
        value_enum,
        default_value_t
    )]
    log_format: LogFormat,
    /// Export the data path's spans (ingress, each delivery attempt, replies) over OTLP/HTTP
    /// (protobuf) to this collector, e.g. http://127.0.0.1:4318 (spans go to /v1/traces).
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<url::Url>,
    /// The traces URL itself (no /v1/traces added); wins over --otlp-endpoint, as the
    /// OpenTelemetry specification's signal-specific variable does.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")]
    otlp_traces_endpoint: Option<url::Url>,
}

#[derive(Subcommand)]
enum Command {
    /// Run ingress, admin API and dispatcher for the resources in --config.
    Serve(Box<serve::ServeArgs>),
    /// Apply resources from a YAML file or directory to a running Herald.
    Apply(resources::ApplyArgs),
    /// Show resources of a running Herald, with their status.
    Get(resources::GetArgs),
    /// Show one resource in detail: key spec fields, address, every condition, and what is
    /// around it (a Broker's Triggers, a Trigger's counters and lag).
    Describe(describe::DescribeArgs),
    /// Delete resources from a running Herald.
    Delete(resources::DeleteArgs),
    /// Build a CloudEvent and POST it to a Broker.
    Send(events::SendArgs),
    /// Run an event-display subscriber that prints every event it receives.
    Display(events::DisplayArgs),
    /// Re-deliver retained events to one Trigger of a running Herald.
    Replay(events::ReplayArgs),
    /// Run event sources (PingSource, GitHubSource, ...) on their own.
    #[command(subcommand)]
    Source(source::SourceCommand),
    /// List, show and redrive the events parked for Triggers (undeliverable, or copies of
    /// dead-lettered ones).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Print what a Broker accepts, live (optionally only what a CESQL filter matches).
    Tail(tail::TailArgs),
    /// Print the CustomResourceDefinitions of every kind Herald serves, as YAML.
    #[cfg(feature = "kubernetes")]
    Crds,
}

/// The traces URL under an OTLP base URL, as OTEL_EXPORTER_OTLP_ENDPOINT defines it.
fn traces_url(base: &url::Url) -> String {
    format!("{}/v1/traces", base.as_str().trim_end_matches('/'))
}

impl Cli {
    /// The logging and export the command line asks for.
    pub fn telemetry(&self) -> TelemetryConfig {
        TelemetryConfig {
            log_format: self.telemetry.log_format,
            default_level: self.default_log_level(),
            otlp_traces: self
                .telemetry
                .otlp_traces_endpoint
                .as_ref()
                .map(|u| u.as_str().to_string())
                .or_else(|| self.telemetry.otlp_endpoint.as_ref().map(traces_url)),
        }
    }

    /// The log level when RUST_LOG sets none.
    pub fn default_log_level(&self) -> &'static str {
        match self.command {
            // Their own output is the point; Herald's info logs would drown it.
            Command::Apply(_)
            | Command::Get(_)
            | Command::Describe(_)
            | Command::Delete(_)
            | Command::Dlq(_)
            | Command::Tail(_) => "warn",
            _ => "info",
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(a) => serve::run(*a, cli.telemetry.log_format).await,
        Command::Apply(a) => resources::apply(a).await,
        Command::Get(a) => resources::get(a).await,
        Command::Describe(a) => describe::describe(a).await,
        Command::Delete(a) => resources::delete(a).await,
        Command::Send(a) => events::send(a).await,
        Command::Display(a) => events::display(a).await,
        Command::Replay(a) => events::replay(a).await,
        Command::Source(c) => source::run(c).await,
        Command::Dlq(c) => dlq::run(c).await,
        Command::Tail(a) => tail::run(a).await,
        #[cfg(feature = "kubernetes")]
        Command::Crds => {
            print!("{}", herald_crds::definitions_yaml());
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    ShutdownSignals::install().recv().await
}

/// SIGINT and SIGTERM, caught from the moment they are installed: `herald serve` installs
/// them before it announces its addresses, so a signal sent right after cannot kill it
/// without its graceful shutdown.
pub(crate) struct ShutdownSignals {
    #[cfg(unix)]
    signals: [tokio::signal::unix::Signal; 2],
}

impl ShutdownSignals {
    pub(crate) fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let install = |kind| signal(kind).expect("can install a signal handler");
            Self {
                signals: [
                    install(SignalKind::interrupt()),
                    install(SignalKind::terminate()),
                ],
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next SIGINT or SIGTERM.
    pub(crate) async fn recv(&mut self) {
        #[cfg(unix)]
        {
            let [int, term] = &mut self.signals;
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

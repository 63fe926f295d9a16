//! Logging and span export, set up once for every `herald` command: logs on stderr as text
//! (colour codes only on a terminal, never with `NO_COLOR`) or one JSON object per line,
//! filtered by `RUST_LOG`; with an OTLP endpoint, the data path's spans (see
//! [`herald_dispatcher::trace`]) batched and exported over OTLP/HTTP (protobuf), flushed on
//! shutdown. Without one no exporter exists and the spans stay disabled.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use std::io::IsTerminal;
use tracing::Level;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// How logs are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with `message`),
    /// and the spans it happened in.
    Json,
}

/// What [`Telemetry::init`] sets up.
#[derive(Clone, Debug)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// The level when `RUST_LOG` sets none.
    pub default_level: &'static str,
    /// Where spans are exported (an OTLP/HTTP collector's traces URL); `None`: no export.
    pub otlp_traces: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot set up the OTLP exporter for {endpoint}: {source}")]
    Exporter {
        endpoint: String,
        #[source]
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("a logger is already installed")]
    AlreadySet(#[source] tracing_subscriber::util::TryInitError),
}

/// The installed logging and export; [`Telemetry::shutdown`] flushes the spans not yet sent.
#[must_use = "shut it down to flush the spans not yet exported"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// The instrumentation scope and `service.name` of Herald's spans.
pub const SERVICE_NAME: &str = "herald";

impl Telemetry {
    /// Installs the global logger (and, with an endpoint, the span exporter).
    pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let logs = match config.log_format {
            LogFormat::Text => tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour())
                .boxed(),
            LogFormat::Json => tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr)
                .boxed(),
        }
        // A filter of its own (per layer), so RUST_LOG never hides the spans from the exporter.
        .with_filter(env_filter(config.default_level));
        let provider = match &config.otlp_traces {
            Some(endpoint) => Some(provider(endpoint)?),
            None => None,
        };
        let spans = provider.as_ref().map(|p| {
            // Only the spans' own fields: no source location, thread, target or busy/idle
            // timings, each an attribute (and for thread names an allocation) per span.
            tracing_opentelemetry::layer()
                .with_tracer(p.tracer(SERVICE_NAME))
                .with_location(false)
                .with_threads(false)
                .with_target(false)
                .with_tracked_inactivity(false)
                .with_filter(span_filter())
        });
        tracing_subscriber::registry()
            .with(logs)
            .with(spans)
            .try_init()
            .map_err(TelemetryError::AlreadySet)?;
        herald_dispatcher::trace::set_exporting(provider.is_some());
        Ok(Telemetry { provider })
    }

    /// Exports the spans still batched (waiting for the collector, on a blocking thread).
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = flushed {
            eprintln!("herald: exporting the last spans failed: {e}");
        }
    }
}

/// Colour codes only for a terminal, and never when `NO_COLOR` is set (to anything but "").
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn env_filter(default_level: &str) -> EnvFilter {
    // An empty RUST_LOG (as some shells export) means "not set", not "no directives".
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default_level))
}

/// What the exporter sees: Herald's data-path spans, and warnings and errors (recorded as
/// events of the span they happen in).
fn span_filter() -> Targets {
    Targets::new()
        .with_target(herald_dispatcher::trace::TARGET, Level::DEBUG)
        .with_default(Level::WARN)
}

fn provider(traces: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces)
        .build()
        .map_err(|source| TelemetryError::Exporter {
            endpoint: traces.to_string(),
            source,
        })?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .build())
}

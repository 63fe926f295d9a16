//! `herald source run FILE`: runs the sources of a YAML file on their own, without a
//! Herald server. Sinks given as `uri` are used as they are; refs to Brokers and Channels
//! resolve against `--herald` (a running Herald's ingress). GitHubSources are served on
//! `--listen` at `/sources/github/{namespace}/{name}`.

use clap::{Args, Subcommand};
use herald_core::{load_path, Check, DeliverySpec, Resolver};
use herald_dispatcher::{DeliveryEngine, EngineConfig};
use herald_sources::{Sink, SourceEnv};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

#[derive(Subcommand)]
pub enum SourceCommand {
    /// Run the sources in FILE (a YAML file or directory) until stopped.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    pub file: PathBuf,
    /// Base URL that refs to Brokers and Channels resolve against.
    #[arg(long, env = "HERALD_URL", default_value = "http://127.0.0.1:8080")]
    pub herald: Url,
    /// Where GitHubSources receive webhooks.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Directory where PingSources remember their last tick (catch-up across restarts).
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// NATS for NatsSources that name none, and for --shared-ticks.
    #[arg(long, env = "HERALD_NATS_URL")]
    pub nats_url: Option<String>,
    /// Keep PingSource ticks in JetStream on --nats-url, so replicas emit each tick once.
    #[arg(long, requires = "nats_url")]
    pub shared_ticks: bool,
    /// Seconds a PingSource tick missed while not running may be old and still be emitted
    /// once on start.
    #[arg(long, default_value_t = 3600)]
    pub ping_catch_up: u64,
}

pub async fn run(command: SourceCommand) -> anyhow::Result<()> {
    let SourceCommand::Run(a) = command;
    let set = load_path(&a.file).map_err(|e| anyhow::anyhow!("{e}"))?;
    if set.sources.is_empty() {
        anyhow::bail!("{} holds no sources", a.file.display());
    }
    let resolver = Resolver::new(a.herald.clone());
    let engine = DeliveryEngine::new(EngineConfig::default())?;
    let env = Arc::new(SourceEnv {
        nats_url: a.nats_url.clone(),
        shared_ticks: a.shared_ticks,
        state_dir: a.state_dir.clone(),
        ping_catch_up: Duration::from_secs(a.ping_catch_up),
        ..Default::default()
    });
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    for loaded in &set.sources {
        let r = &loaded.resource;
        let (kind, key) = (r.kind(), r.key());
        if let Some(Err(e)) = herald_sources::build(r) {
            anyhow::bail!("{}: {e}", loaded.origin);
        }
        let (sink, delivery, overrides) = herald_sources::sink_parts(r).expect("a source");
        let at = |field: &str, e: &dyn std::fmt::Display| {
            anyhow::anyhow!("{}: {kind} {key}: {field}: {e}", loaded.origin)
        };
        let url = resolver
            .resolve(sink, &key.namespace)
            .map_err(|e| at("spec.sink", &e))?;
        let delivery = delivery.cloned().unwrap_or_else(DeliverySpec::default);
        let dls = match &delivery.dead_letter_sink {
            Some(d) => Some(
                resolver
                    .resolve(d, &key.namespace)
                    .map_err(|e| at("spec.delivery.deadLetterSink", &e))?,
            ),
            None => None,
        };
        let sink = Sink::new(
            engine.clone(),
            kind,
            key.clone(),
            url.clone(),
            &delivery,
            dls,
            overrides.map(|o| o.extensions.clone()).unwrap_or_default(),
        );
        let (health, mut watch_health) = watch::channel(Check::unknown("Starting", ""));
        eprintln!("{kind} {key} -> {url}");
        tasks.spawn(herald_sources::supervise(
            r.clone(),
            env.clone(),
            sink,
            stop.clone(),
            health,
        ));
        // Each source's condition changes, as a log line.
        tokio::spawn(async move {
            while watch_health.changed().await.is_ok() {
                match &*watch_health.borrow() {
                    Check::Ok => tracing::info!(%kind, %key, "running"),
                    Check::Failed { reason, message } | Check::Unknown { reason, message } => {
                        tracing::warn!(%kind, %key, %reason, "{message}")
                    }
                }
            }
        });
    }
    if set
        .sources
        .iter()
        .any(|s| s.resource.kind() == herald_core::Kind::GitHubSource)
    {
        let listener = tokio::net::TcpListener::bind(a.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", a.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("GitHub webhooks on http://{addr}/sources/github/{{namespace}}/{{name}}");
        let app = herald_sources::github::router::<()>(env.webhooks.clone());
        let stopped = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
    }
    super::shutdown_signal().await;
    tracing::info!("stopping sources");
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

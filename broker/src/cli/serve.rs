//! `herald serve`: runs ingress, admin API and data plane for the resources in --config,
//! applying every later change to it.

use crate::backends::flags::ChannelArgs;
use crate::serve;
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// A Knative-style YAML file, or a directory of them; changes to it are applied while
    /// Herald runs.
    #[arg(long, short, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Read --config once at start and ignore later changes to it.
    #[arg(long)]
    pub no_watch: bool,
    /// Address the ingress and admin API listen on.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Deliveries in flight per Trigger.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds shutdown waits for accepted events to be delivered.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    #[command(flatten)]
    pub channels: ChannelArgs,
}

pub async fn run(a: ServeArgs) -> anyhow::Result<()> {
    let resources = match &a.config {
        Some(path) => herald_core::load_path(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            tracing::warn!("no --config given: serving no Brokers until some are applied");
            Default::default()
        }
    };
    let config = serve::ServeConfig {
        listen: a.listen,
        max_body_bytes: a.max_body_bytes,
        channels: a.channels.into_config()?,
        max_in_flight: a.max_in_flight,
        drain_timeout: Duration::from_secs(a.drain_timeout),
        watch: if a.no_watch { None } else { a.config.clone() },
        ..Default::default()
    };
    let server = serve::start(&resources, config).await?;
    eprintln!("herald serving on {} (ingress and admin API)", server.url());
    for b in &resources.brokers {
        let key = b.resource.key();
        eprintln!(
            "Broker {key}: {}",
            server.broker_url(&key.namespace, &key.name)
        );
    }
    let token = server.shutdown_token();
    tokio::spawn(async move {
        super::shutdown_signal().await;
        tracing::info!("shutting down: draining accepted events");
        token.cancel();
    });
    server.wait().await;
    Ok(())
}

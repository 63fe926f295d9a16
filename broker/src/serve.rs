//! `herald serve`: builds each Broker's channel, starts one consumer per Trigger and the
//! ingress, and shuts down gracefully (stop accepting, drain, then stop).

use crate::admin::{self, TriggerHandle};
use crate::backends::{BackendError, Backends, BackendsConfig};
use crate::ingress::{router, Brokers, IngressState};
use herald_channels::Channel;
use herald_core::{DeliverySpec, Resolver, ResourceKey, ResourceSet};
use herald_dispatcher::route::subscription_name;
use herald_dispatcher::{DeliveryEngine, EngineConfig, RouteError, TriggerConsumer, TriggerRoute};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Channel backends, and which one Brokers use by default.
    pub channels: BackendsConfig,
    pub engine: EngineConfig,
    /// Delivery for Triggers whose Trigger and Broker both set none (Knative's
    /// config-br-defaults: 10 retries, exponential, PT0.2S).
    pub default_delivery: DeliverySpec,
    /// Deliveries in flight per Trigger.
    pub max_in_flight: usize,
    /// How long shutdown waits for accepted events to drain before abandoning them.
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            channels: BackendsConfig::default(),
            engine: EngineConfig::default(),
            default_delivery: DeliverySpec {
                retry: Some(10),
                backoff_policy: Some(herald_core::BackoffPolicy::Exponential),
                backoff_delay: Some("PT0.2S".parse().expect("valid literal")),
                ..Default::default()
            },
            max_in_flight: 256,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The configuration cannot be served (e.g. an invalid filter), with file and resource.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Engine(#[from] herald_dispatcher::engine::EngineError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("Trigger {trigger}: cannot open its subscription: {source}")]
    Subscribe {
        trigger: ResourceKey,
        source: herald_channels::ChannelError,
    },
}

/// A running Herald: ingress plus dispatcher.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Triggers that are not ready (unknown Broker, unresolvable subscriber), with why.
    pub warnings: Vec<String>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Base URL of the ingress, e.g. `http://127.0.0.1:8080`.
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("socket address is a valid host")
    }

    pub fn broker_url(&self, namespace: &str, name: &str) -> Url {
        Resolver::new(self.url()).broker_url(&ResourceKey::new(namespace, name))
    }

    /// Stops accepting, drains accepted events (up to the drain timeout) and stops.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Waits until the server stops (after `shutdown` from elsewhere, e.g. a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

pub async fn start(
    resources: &ResourceSet,
    config: ServeConfig,
) -> Result<RunningServer, ServeError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    let base = Url::parse(&format!("http://{addr}")).expect("socket address is a valid host");
    let resolver = Resolver::new(base);

    let mut backends = Backends::new(config.channels.clone());
    let mut channels: HashMap<ResourceKey, Arc<dyn Channel>> = HashMap::new();
    for b in &resources.brokers {
        let (kind, channel) = backends.open(&b.resource).await?;
        tracing::info!(broker = %b.resource.key(), channel = %kind, "broker ready");
        channels.insert(b.resource.key(), channel);
    }

    let mut warnings = Vec::new();
    let mut routes = Vec::new();
    for t in &resources.triggers {
        let trigger = &t.resource;
        let broker_key = trigger.broker_key();
        let Some(broker) = resources.broker(&broker_key) else {
            warnings.push(format!(
                "{}: Trigger {} is not ready: Broker {broker_key} does not exist",
                t.origin,
                trigger.key()
            ));
            continue;
        };
        match TriggerRoute::build(
            trigger,
            broker,
            &resolver,
            &config.default_delivery,
            config.engine.default_timeout,
        ) {
            Ok(route) => routes.push(route),
            // A bad filter is a configuration error; refuse to start rather than misroute.
            Err(e @ (RouteError::Filter { .. } | RouteError::DeliveryOrder { .. })) => {
                return Err(ServeError::Config(format!("{}: {e}", t.origin)))
            }
            Err(e) => warnings.push(format!("{}: not ready: {e}", t.origin)),
        }
    }
    // Triggers deleted from the configuration must not hold back retention forever; those
    // merely not ready keep their position.
    for (key, channel) in &channels {
        let keep: Vec<String> = resources
            .triggers
            .iter()
            .filter(|t| &t.resource.broker_key() == key)
            .map(|t| subscription_name(&t.resource.key()))
            .collect();
        match channel.prune_subscriptions(&keep).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(broker = %key, ?removed, "forgot subscriptions of deleted triggers")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(broker = %key, error = %e, "cannot prune subscriptions"),
        }
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }
    for d in &resources.deferred {
        tracing::warn!(
            "{}: {} {} ({}) is recognised but not served by this version of Herald",
            d.origin,
            d.kind,
            d.name,
            d.api_version
        );
    }

    let engine = DeliveryEngine::new(config.engine.clone())?;
    let abort = CancellationToken::new();
    let mut consumers = JoinSet::new();
    let mut triggers = HashMap::new();
    for route in routes {
        triggers.insert(
            route.trigger.clone(),
            TriggerHandle {
                broker: route.broker.clone(),
                channel: channels[&route.broker].clone(),
                subscription: route.subscription(),
            },
        );
        let consumer = TriggerConsumer {
            channel: channels[&route.broker].clone(),
            route: Arc::new(route),
            engine: engine.clone(),
            max_in_flight: config.max_in_flight,
        };
        let subscription = consumer
            .subscribe()
            .await
            .map_err(|source| ServeError::Subscribe {
                trigger: consumer.route.trigger.clone(),
                source,
            })?;
        tracing::info!(trigger = %consumer.route.trigger, subscriber = %consumer.route.subscriber, "trigger ready");
        consumers.spawn(consumer.run(subscription, abort.clone()));
    }

    let brokers: Brokers = Arc::new(channels);
    let app = router(IngressState {
        brokers: brokers.clone(),
        max_body_bytes: config.max_body_bytes,
    })
    .merge(admin::router(Arc::new(triggers)));
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let drain_timeout = config.drain_timeout;
    let task = tokio::spawn(async move {
        // Stop accepting first; requests already inside finish publishing.
        let server = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned());
        if let Err(e) = server.await {
            tracing::error!(error = %e, "ingress failed");
        }
        for channel in brokers.values() {
            channel.close().await;
        }
        let drained = tokio::time::timeout(drain_timeout, async {
            while consumers.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::error!(
                ?drain_timeout,
                "drain timeout passed; abandoning remaining deliveries"
            );
            abort.cancel();
            while consumers.join_next().await.is_some() {}
        }
        backends.close().await;
        tracing::info!("stopped");
    });
    tracing::info!(%addr, brokers = resources.brokers.len(), triggers = resources.triggers.len(), "herald serving");
    Ok(RunningServer {
        addr,
        warnings,
        shutdown,
        task,
    })
}

//! `herald serve` as a library: binds the listeners, starts the [`DataPlane`], applies the
//! initial resources (and, with a watched config path, every later change to it), serves
//! ingress on one listener and the admin API on another (loopback by default: whoever reaches
//! ingress must not be able to replay or reconfigure), and shuts down gracefully (stop
//! accepting, drain, then stop).

use crate::admin;
use crate::auth::{AuthConfig, AuthError, IngressAuth};
use crate::backends::BackendsConfig;
use crate::ingress::{Ingress, IngressState};
use crate::listener;
pub use crate::listener::ConnectionLimits;
use crate::plane::{ApplyError, DataPlane, Owner, PlaneConfig, PlaneError};
use crate::tls::{ServerTls, TlsError, TlsFiles};
use crate::watch::ConfigWatcher;
use herald_core::{DeliverySpec, Resolver, ResourceKey, ResourceSet};
use herald_dispatcher::EngineConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::RequestBodyTimeoutLayer;
use url::Url;

#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// Where ingress (Brokers, Channels, EventTransforms, `/healthz`) listens.
    pub listen: SocketAddr,
    /// Where the admin API (`/apis/...`, `/admin/...`, `/readyz`) listens, on a listener of its
    /// own; `None` serves no admin API. `herald serve` defaults to `127.0.0.1:8081`.
    pub admin_listen: Option<SocketAddr>,
    pub max_body_bytes: usize,
    /// Events per batch request (longer batches get 413).
    pub max_batch_events: usize,
    /// Connection limits: header-read and idle keep-alive timeouts, open connections.
    pub connections: ConnectionLimits,
    /// How long reading a whole request body may take (408 after it).
    pub body_timeout: Duration,
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
    /// A config file or directory to watch: each change is applied while Herald runs.
    pub watch: Option<PathBuf>,
    /// How long the watcher waits for a burst of file changes to settle.
    pub watch_debounce: Duration,
    /// How often resources that are not ready are reconciled again (e.g. a backend that was
    /// down at apply time).
    pub resync_interval: Duration,
    /// When set, the admin API (`/apis/...`, `/admin/...`) requires
    /// `Authorization: Bearer <token>`; `/readyz` and `/healthz` stay open for probes.
    pub admin_token: Option<String>,
    /// How old a PingSource tick missed while Herald was down may be and still be emitted
    /// once on start.
    pub ping_catch_up: Duration,
    /// The base URL Brokers and Channels are addressed at (`status.address.url`); the
    /// listener's own address when unset. On Kubernetes, the ingress Service's URL.
    pub ingress_url: Option<Url>,
    /// How long a parked event is kept before it expires (a Trigger's
    /// `herald.dev/dlq-retention` overrides it).
    pub dlq_retention: Duration,
    /// TLS for ingress: its certificate and key, reloaded when they change; plaintext when
    /// unset.
    pub tls: Option<TlsFiles>,
    /// TLS for the admin API, on its own (the admin listener does not follow `tls`).
    pub admin_tls: Option<TlsFiles>,
    /// The API server ApiServerSources watch (`herald serve --kubernetes`'s); unset, each
    /// infers one.
    #[cfg(feature = "kubernetes")]
    pub cluster: Option<herald_sources::apiserver::Cluster>,
    /// Ingress authentication (bearer tokens, JWTs) and EventPolicy enforcement; off unless a
    /// token source is configured.
    pub auth: AuthConfig,
    /// Record an EventType for every (type, source) a Broker or Channel accepts (Knative's
    /// `eventtype-auto-create`); on by default.
    pub eventtype_auto_create: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            // A library user opts in (tests run many servers at once; a fixed port would clash).
            admin_listen: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch_events: 1_000,
            connections: ConnectionLimits::default(),
            body_timeout: Duration::from_secs(30),
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
            watch: None,
            watch_debounce: Duration::from_millis(200),
            resync_interval: Duration::from_secs(5),
            admin_token: None,
            ping_catch_up: Duration::from_secs(3600),
            ingress_url: None,
            dlq_retention: Duration::from_secs(7 * 24 * 3600),
            tls: None,
            admin_tls: None,
            #[cfg(feature = "kubernetes")]
            cluster: None,
            auth: AuthConfig::default(),
            eventtype_auto_create: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The configuration cannot be served (e.g. an invalid filter), with file and resource.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Plane(#[from] PlaneError),
    #[error("ingress authentication: {0}")]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: PathBuf,
        #[source]
        source: notify::Error,
    },
}

/// A running Herald: ingress, admin API and data plane.
pub struct RunningServer {
    /// The ingress address.
    pub addr: SocketAddr,
    /// The admin API's address, when it is served.
    pub admin_addr: Option<SocketAddr>,
    /// Resources that are not ready after the initial apply (unknown Broker, unresolvable
    /// subscriber), each with where it came from and why.
    pub warnings: Vec<String>,
    /// Whether ingress and the admin API speak TLS (their URLs are `https://`).
    tls: bool,
    admin_tls: bool,
    plane: Arc<DataPlane>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// Base URL of the ingress, e.g. `http://127.0.0.1:8080` (`https://` with TLS).
    pub fn url(&self) -> Url {
        base_url(self.tls, self.addr)
    }

    /// Base URL of the admin API, e.g. `http://127.0.0.1:8081`, when it is served.
    pub fn admin_url(&self) -> Option<Url> {
        self.admin_addr.map(|a| base_url(self.admin_tls, a))
    }

    pub fn broker_url(&self, namespace: &str, name: &str) -> Url {
        Resolver::new(self.url()).broker_url(&ResourceKey::new(namespace, name))
    }

    pub fn plane(&self) -> &Arc<DataPlane> {
        &self.plane
    }

    /// Stops accepting, drains accepted events (up to the drain timeout) and stops.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }

    /// Cancelling it shuts the server down (e.g. on a signal).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until the server stops (after `shutdown` from elsewhere, e.g. a signal).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

pub async fn start(
    resources: &ResourceSet,
    config: ServeConfig,
) -> Result<RunningServer, ServeError> {
    let (listener, addr) = bind(config.listen).await?;
    let admin_listener = match config.admin_listen {
        Some(at) => Some(bind(at).await?),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().map(|(_, a)| *a);
    // Read before anything runs: a pair that does not load stops the start, naming the file.
    let tls = config.tls.clone().map(ServerTls::load).transpose()?;
    let admin_tls = config.admin_tls.clone().map(ServerTls::load).transpose()?;
    let base = config
        .ingress_url
        .clone()
        .unwrap_or_else(|| base_url(tls.is_some(), addr));
    let plane = DataPlane::new(
        PlaneConfig {
            channels: config.channels.clone(),
            engine: config.engine.clone(),
            default_delivery: config.default_delivery.clone(),
            max_in_flight: config.max_in_flight,
            drain_timeout: config.drain_timeout,
            ping_catch_up: config.ping_catch_up,
            #[cfg(feature = "kubernetes")]
            cluster: config.cluster.clone(),
            authorization: config.auth.enabled().then_some(config.auth.default_mode),
            eventtype_auto_create: config.eventtype_auto_create,
            internal_tokens: Some(config.auth.internal_tokens()?),
        },
        base,
    )?;
    let auth = match config.auth.enabled() {
        true => Some(IngressAuth::load(
            config.auth.clone(),
            plane.internal_tokens(),
        )?),
        false => None,
    };
    plane
        .apply_set(resources, Owner::Files)
        .await
        .map_err(|e: ApplyError| ServeError::Config(e.to_string()))?;
    let warnings = not_ready_warnings(&plane, resources).await;
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

    let shutdown = CancellationToken::new();
    // On the durable default, recorded EventTypes are kept beside its data.
    let event_type_store =
        (config.channels.default == herald_channels::BackendKind::Sled).then(|| {
            config
                .channels
                .sled
                .data_dir
                .join(crate::plane::EVENT_TYPE_STORE_FILE)
        });
    let event_types = tokio::spawn(
        plane
            .clone()
            .run_event_types(event_type_store, shutdown.clone()),
    );
    for t in tls.iter().chain(admin_tls.iter()) {
        t.watch(shutdown.clone())?;
    }
    let (serves_tls, admin_serves_tls) = (tls.is_some(), admin_tls.is_some());
    let expiry = tokio::spawn(
        plane
            .clone()
            .expire_parked_until(config.dlq_retention, shutdown.clone()),
    );
    let watcher = match &config.watch {
        Some(path) => Some(
            ConfigWatcher::spawn(path, config.watch_debounce, plane.clone(), shutdown.clone())
                .map_err(|source| ServeError::Watch {
                    path: path.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let credentials_watch = match &auth {
        Some(a) => crate::auth::reload::spawn(a.clone(), config.watch_debounce, shutdown.clone())
            .map_err(|source| ServeError::Watch {
            path: a
                .config()
                .tokens_file
                .clone()
                .or(a.config().jwks_file.clone())
                .unwrap_or_default(),
            source,
        })?,
        None => None,
    };
    let resync = tokio::spawn(resync_loop(
        plane.clone(),
        config.resync_interval,
        shutdown.clone(),
    ));
    // Ingress bounds its body reads itself (one deadline for the whole body); the other
    // routes get tower-http's per-frame timeout. Header limits are the listener's.
    let others = crate::transform_endpoint::router(plane.transforms())
        .merge(herald_sources::github::router(plane.webhooks()))
        .merge(admin::probes(plane.clone()))
        // A body that stops arriving ends the request.
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout));
    let app = Ingress::new(
        IngressState {
            brokers: plane.ingress(),
            channels: plane.channel_ingress(),
            max_body_bytes: config.max_body_bytes,
            max_batch_events: config.max_batch_events,
            body_timeout: config.body_timeout,
            metrics: plane.metrics().clone(),
            auth,
            authorizations: plane.authorizations(),
        },
        others,
    );
    let admin_app = admin::router(plane.clone(), config.admin_token.clone())
        .layer(RequestBodyTimeoutLayer::new(config.body_timeout));
    // Open event streams end as Herald stops; else the listener would wait out its grace for them.
    tokio::spawn({
        let (plane, stop) = (plane.clone(), shutdown.clone());
        async move {
            stop.cancelled().await;
            plane.end_watches().await;
        }
    });
    let stop = shutdown.clone();
    let serving = plane.clone();
    let drain_timeout = config.drain_timeout;
    let limits = config.connections.clone();
    let task = tokio::spawn(async move {
        // One deadline for the whole shutdown, whatever clients and subscribers do: the
        // listener stops accepting and lets requests already inside finish publishing until
        // it, then the plane drains accepted events with what is left.
        let deadline = Arc::new(std::sync::OnceLock::new());
        let grace = |at_stop: Arc<std::sync::OnceLock<tokio::time::Instant>>| {
            move || {
                let d = *at_stop.get_or_init(|| tokio::time::Instant::now() + drain_timeout);
                d.saturating_duration_since(tokio::time::Instant::now())
            }
        };
        let ingress = listener::serve(
            listener,
            app,
            limits.clone(),
            tls,
            stop.clone(),
            grace(deadline.clone()),
        );
        let admin = async {
            if let Some((admin_listener, _)) = admin_listener {
                listener::serve(
                    admin_listener,
                    admin_app,
                    limits,
                    admin_tls,
                    stop,
                    grace(deadline.clone()),
                )
                .await;
            }
        };
        tokio::join!(ingress, admin);
        if let Some(w) = watcher {
            w.stop().await;
        }
        if let Some(w) = credentials_watch {
            let _ = w.await;
        }
        let _ = resync.await;
        let _ = expiry.await;
        let _ = event_types.await;
        let left = deadline
            .get()
            .map(|d: &tokio::time::Instant| {
                d.saturating_duration_since(tokio::time::Instant::now())
            })
            .unwrap_or(drain_timeout);
        serving.shutdown_within(left).await;
        tracing::info!("stopped");
    });
    tracing::info!(%addr, admin = ?admin_addr, brokers = resources.brokers.len(), triggers = resources.triggers.len(), "herald serving");
    Ok(RunningServer {
        addr,
        admin_addr,
        warnings,
        tls: serves_tls,
        admin_tls: admin_serves_tls,
        plane,
        shutdown,
        task,
    })
}

fn base_url(tls: bool, addr: SocketAddr) -> Url {
    let scheme = if tls { "https" } else { "http" };
    Url::parse(&format!("{scheme}://{addr}")).expect("socket address is a valid host")
}

async fn bind(at: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bind_err = |source| ServeError::Bind { addr: at, source };
    let listener = TcpListener::bind(at).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok((listener, addr))
}

/// `file (document n): Trigger ns/name is not ready: reason: message`, per resource.
async fn not_ready_warnings(plane: &DataPlane, resources: &ResourceSet) -> Vec<String> {
    let health = plane.health().await;
    health
        .not_ready
        .iter()
        .map(|n| {
            let origin = resources
                .resources()
                .find(|(r, _)| r.kind() == n.kind && r.key().to_string() == n.name)
                .map(|(_, o)| format!("{o}: "))
                .unwrap_or_default();
            format!(
                "{origin}{} {} is not ready: {}: {}",
                n.kind, n.name, n.reason, n.message
            )
        })
        .collect()
}

async fn resync_loop(plane: Arc<DataPlane>, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => plane.resync().await,
            _ = stop.cancelled() => return,
        }
    }
}

//! `herald serve`: runs ingress, admin API (on its own address) and data plane for the
//! resources in --config, applying every later change to it.

use crate::backends::flags::ChannelArgs;
use crate::serve;
use crate::telemetry::LogFormat;
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
    /// Address ingress listens on (Brokers, Channels, `/healthz`).
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address the admin API listens on (`/apis/...`, `/admin/...`, `/readyz`), a listener of
    /// its own; keep it on loopback, or set --admin-token, when ingress is exposed.
    #[arg(long, env = "HERALD_ADMIN_ADDR", default_value = "127.0.0.1:8081")]
    pub admin_addr: SocketAddr,
    /// Largest accepted request body, in bytes (larger ones get 413).
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most events in one batch request (longer batches get 413).
    #[arg(long, env = "HERALD_MAX_BATCH_EVENTS", default_value_t = 1_000)]
    pub max_batch_events: usize,
    /// Most header fields in one request, ingress and admin (more get 431).
    #[arg(long, env = "HERALD_MAX_HEADER_COUNT", default_value_t = 100)]
    pub max_header_count: usize,
    /// Most bytes of header names and values in one request, ingress and admin (more get 431).
    #[arg(long, env = "HERALD_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// Seconds a client has to send a request's headers (and a new connection its first).
    #[arg(long, default_value_t = 10)]
    pub header_read_timeout: u64,
    /// Seconds a client has to send a whole request body (408 after it).
    #[arg(long, default_value_t = 30)]
    pub body_timeout: u64,
    /// Seconds a TLS client has to finish its handshake.
    #[arg(long, env = "HERALD_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    pub tls_handshake_timeout: u64,
    /// Seconds a kept-alive connection may sit without a request.
    #[arg(long, default_value_t = 60)]
    pub idle_timeout: u64,
    /// Open connections at most; at the cap the longest-idle one is closed to make room.
    #[arg(long, default_value_t = 10_000)]
    pub max_connections: usize,
    /// Deliveries in flight per Trigger.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Seconds shutdown waits for accepted events to be delivered.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Require this bearer token on the admin API (`/apis/...`, `/admin/...`); `/readyz` and
    /// `/healthz` stay open. Prefer the environment variable to keep it out of `ps`.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How long a parked (undeliverable) event is kept for `herald dlq` before it expires,
    /// ISO-8601 (a Trigger's annotation `herald.dev/dlq-retention` overrides it).
    #[arg(long, env = "HERALD_DLQ_RETENTION", default_value = "P7D")]
    pub dlq_retention: herald_core::IsoDuration,
    /// Seconds a PingSource tick missed while Herald was down may be old and still be
    /// emitted once on start.
    #[arg(long, default_value_t = 3600)]
    pub ping_catch_up: u64,
    /// The base URL Brokers and Channels are addressed at (their `status.address.url`);
    /// the listen address when unset.
    #[arg(long, env = "HERALD_INGRESS_URL")]
    pub ingress_url: Option<url::Url>,
    /// Record an EventType (eventing.knative.dev/v1beta3) for every (type, source) each
    /// Broker and Channel accepts, as Knative's `eventtype-auto-create` feature does;
    /// `--eventtype-auto-create=false` turns it off.
    #[arg(
        long,
        env = "HERALD_EVENTTYPE_AUTO_CREATE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        require_equals = true
    )]
    pub eventtype_auto_create: bool,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[cfg(feature = "kubernetes")]
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub channels: ChannelArgs,
}

/// Ingress authentication and authorization (Knative's OIDC mode and EventPolicies).
#[derive(Args)]
#[command(next_help_heading = "Ingress authentication")]
pub struct AuthArgs {
    /// A file of `<token> <subject>` lines: a request bearing one of the tokens is sent by
    /// that subject. Reloaded when it changes. Turns ingress authentication on.
    #[arg(long, env = "HERALD_INGRESS_TOKENS_FILE")]
    pub ingress_tokens: Option<PathBuf>,
    /// The same `<token> <subject>` pairs inline, separated by commas or newlines.
    #[arg(
        long,
        env = "HERALD_INGRESS_TOKENS",
        hide_env_values = true,
        hide = true
    )]
    pub ingress_tokens_inline: Option<String>,
    /// A JWKS file (JSON Web Key Set): JWTs signed by one of its keys (RS256, ES256) for
    /// the target's audience are accepted, their `sub` the sender. Reloaded when it
    /// changes. Turns ingress authentication on; needs --oidc-issuer.
    #[arg(long, env = "HERALD_OIDC_JWKS", requires = "oidc_issuer")]
    pub oidc_jwks: Option<PathBuf>,
    /// The `iss` accepted JWTs must carry.
    #[arg(long, env = "HERALD_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// Who may send to a Broker or Channel no EventPolicy applies to: allow-all,
    /// allow-same-namespace (service accounts of its namespace) or deny-all.
    #[arg(
        long,
        env = "HERALD_DEFAULT_AUTHORIZATION_MODE",
        default_value = "allow-same-namespace"
    )]
    pub default_authorization_mode: herald_core::AuthorizationMode,
    /// A secret of 32 bytes or more (e.g. `openssl rand -hex 32`) that replicas behind one
    /// --ingress-url share, so each accepts the tokens the others' Triggers, Subscriptions
    /// and sources present to it. Without it each process makes its own key.
    #[arg(long, env = "HERALD_SENDER_KEY_FILE")]
    pub sender_key_file: Option<PathBuf>,
}

impl AuthArgs {
    fn into_config(self) -> crate::auth::AuthConfig {
        crate::auth::AuthConfig {
            tokens_file: self.ingress_tokens,
            tokens_env: self.ingress_tokens_inline.filter(|t| !t.trim().is_empty()),
            jwks_file: self.oidc_jwks,
            issuer: self.oidc_issuer,
            default_mode: self.default_authorization_mode,
            sender_key_file: self.sender_key_file,
        }
    }
}

#[derive(Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// PEM certificate chain of the ingress listener (HTTPS); reloaded when the file changes.
    #[arg(long, env = "HERALD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HERALD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM certificate chain of the admin listener (its own: it does not follow --tls-cert).
    #[arg(long, env = "HERALD_ADMIN_TLS_CERT", requires = "admin_tls_key")]
    pub admin_tls_cert: Option<PathBuf>,
    /// PEM private key of --admin-tls-cert.
    #[arg(long, env = "HERALD_ADMIN_TLS_KEY", requires = "admin_tls_cert")]
    pub admin_tls_key: Option<PathBuf>,
    /// PEM file of CAs trusted for https subscribers, sinks and replies besides the public
    /// roots (a private CA).
    #[arg(long, env = "HERALD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

fn tls_files(cert: Option<PathBuf>, key: Option<PathBuf>) -> Option<crate::tls::TlsFiles> {
    Some(crate::tls::TlsFiles {
        cert: cert?,
        key: key?,
    })
}

#[cfg(feature = "kubernetes")]
#[derive(Args)]
#[command(next_help_heading = "Kubernetes")]
pub struct KubernetesArgs {
    /// Serve the Knative objects of a Kubernetes cluster (in-cluster config, or KUBECONFIG).
    #[arg(long)]
    pub kubernetes: bool,
    /// With --kubernetes: also run the leader-elected controller (status, finalizers).
    #[arg(long, requires = "kubernetes")]
    pub controller: bool,
    /// With --kubernetes on a cluster running Knative Eventing: serve only Brokers of class
    /// Herald and their Triggers, leaving Knative's other kinds to Knative.
    #[arg(long, requires = "kubernetes")]
    pub with_knative: bool,
    /// Namespace of the controller's leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "herald")]
    pub lease_namespace: String,
}

pub async fn run(a: ServeArgs, log_format: LogFormat) -> anyhow::Result<()> {
    let resources = match &a.config {
        Some(path) => herald_core::load_path(path).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => {
            tracing::warn!("no --config given: serving no Brokers until some are applied");
            Default::default()
        }
    };
    // The cluster first: the data plane's ApiServerSources watch through the same client.
    #[cfg(feature = "kubernetes")]
    let cluster = if a.kubernetes.kubernetes {
        Some(
            herald_sources::apiserver::Cluster::infer()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {e}"
                    )
                })?,
        )
    } else {
        None
    };
    let config = serve::ServeConfig {
        listen: a.listen,
        admin_listen: Some(a.admin_addr),
        max_body_bytes: a.max_body_bytes,
        max_batch_events: a.max_batch_events,
        body_timeout: Duration::from_secs(a.body_timeout),
        connections: serve::ConnectionLimits {
            header_read_timeout: Duration::from_secs(a.header_read_timeout),
            idle_timeout: Duration::from_secs(a.idle_timeout),
            max_connections: a.max_connections.max(1),
            tls_handshake_timeout: Duration::from_secs(a.tls_handshake_timeout),
            headers: crate::header_limits::HeaderLimits {
                max_count: a.max_header_count,
                max_bytes: a.max_header_bytes,
            },
        },
        channels: a.channels.into_config()?,
        max_in_flight: a.max_in_flight,
        drain_timeout: Duration::from_secs(a.drain_timeout),
        watch: if a.no_watch { None } else { a.config.clone() },
        admin_token: a.admin_token.filter(|t| !t.is_empty()),
        ping_catch_up: Duration::from_secs(a.ping_catch_up),
        dlq_retention: a.dlq_retention.as_duration(),
        ingress_url: a.ingress_url,
        auth: a.auth.into_config(),
        eventtype_auto_create: a.eventtype_auto_create,
        tls: tls_files(a.tls.tls_cert, a.tls.tls_key),
        admin_tls: tls_files(a.tls.admin_tls_cert, a.tls.admin_tls_key),
        engine: herald_dispatcher::EngineConfig {
            root_certificates: match &a.tls.ca_file {
                Some(path) => crate::tls::ca_certificates_der(path)?,
                None => Vec::new(),
            },
            ..Default::default()
        },
        #[cfg(feature = "kubernetes")]
        cluster: cluster.clone(),
        ..Default::default()
    };
    let server = serve::start(&resources, config).await?;
    let mut signals = super::ShutdownSignals::install();
    let announce = Announce(log_format);
    announce.line(
        format!("herald serving on {} (ingress)", server.url()),
        &server.url(),
    );
    if let Some(admin) = server.admin_url() {
        announce.line(format!("herald admin API on {admin}"), &admin);
    }
    for b in &resources.brokers {
        let key = b.resource.key();
        let url = server.broker_url(&key.namespace, &key.name);
        announce.line(format!("Broker {key}: {url}"), &url);
    }
    #[cfg(feature = "kubernetes")]
    let kubernetes = match cluster {
        Some(cluster) => Some(start_kubernetes(&a.kubernetes, cluster, &server, &announce).await?),
        None => None,
    };
    let token = server.shutdown_token();
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutting down: draining accepted events");
        token.cancel();
        // A second signal means now: exit without waiting for the drain.
        signals.recv().await;
        tracing::warn!("second signal: exiting without draining");
        herald_sources::container::kill_running();
        std::process::exit(130);
    });
    server.wait().await;
    #[cfg(feature = "kubernetes")]
    if let Some(k) = kubernetes {
        let _ = k.await;
    }
    Ok(())
}

/// The addresses `herald serve` prints once it listens: plain lines, or in JSON mode log
/// events (with the address as field `url`), so stderr stays one JSON object per line.
struct Announce(LogFormat);

impl Announce {
    fn line(&self, line: String, url: &dyn std::fmt::Display) {
        match self.0 {
            LogFormat::Text => eprintln!("{line}"),
            LogFormat::Json => tracing::info!(%url, "{line}"),
        }
    }

    /// A line without an address.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    fn note(&self, line: &str) {
        match self.0 {
            LogFormat::Text => eprintln!("{line}"),
            LogFormat::Json => tracing::info!("{line}"),
        }
    }
}

#[cfg(feature = "kubernetes")]
async fn start_kubernetes(
    a: &KubernetesArgs,
    cluster: herald_sources::apiserver::Cluster,
    server: &serve::RunningServer,
    announce: &Announce,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use crate::kubernetes::{run, KubernetesConfig};
    use herald_core::Kind;
    let client = cluster.client.clone();
    let mut controller_config = herald_crds::controller::ControllerConfig {
        lease_namespace: a.lease_namespace.clone(),
        ..Default::default()
    };
    if a.with_knative {
        controller_config.kinds = vec![Kind::Broker, Kind::Trigger];
    }
    let config = KubernetesConfig {
        controller: a.controller,
        controller_config,
        resync: None,
    };
    announce.note(if a.controller {
        "herald serving Kubernetes objects (controller: leader-elected)"
    } else {
        "herald serving Kubernetes objects"
    });
    Ok(tokio::spawn(run(
        client,
        server.plane().clone(),
        config,
        server.shutdown_token(),
    )))
}

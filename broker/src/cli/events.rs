//! Event commands: `herald send` (post CloudEvents to a Broker), `herald display` (an
//! event-display subscriber) and `herald replay` (re-deliver retained events to a Trigger).

use crate::admin;
use crate::{display, send};
use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct SendArgs {
    /// Broker URL, e.g. http://127.0.0.1:8080/default/default; inside a ContainerSource,
    /// its sink (`K_SINK`).
    #[arg(
        long,
        env = "K_SINK",
        default_value = "http://127.0.0.1:8080/default/default"
    )]
    pub to: String,
    /// Extensions to set on every event, as Knative's `{"extensions": {"name": "value"}}`;
    /// inside a ContainerSource, its `ceOverrides` (`K_CE_OVERRIDES`).
    #[arg(long, env = "K_CE_OVERRIDES")]
    pub ce_overrides: Option<String>,
    /// A CloudEvent in JSON format (or an array, sent as a batch) instead of the flags below.
    #[arg(long, conflicts_with_all = ["ty", "source", "data"])]
    pub file: Option<PathBuf>,
    #[arg(long = "type", default_value = "dev.herald.example")]
    pub ty: String,
    #[arg(long, default_value = "herald-cli")]
    pub source: String,
    #[arg(long)]
    pub id: Option<String>,
    #[arg(long)]
    pub subject: Option<String>,
    /// Event data (sent with --content-type).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// Extension attribute, name=value (repeatable).
    #[arg(long = "ext")]
    pub extensions: Vec<String>,
    /// Send in structured mode instead of binary mode.
    #[arg(long)]
    pub structured: bool,
    /// Bearer token for an ingress that requires one (a static token or a JWT).
    #[arg(long, env = "HERALD_INGRESS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of CAs to trust for an https:// --to besides the public roots.
    #[arg(long, env = "HERALD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Args)]
pub struct DisplayArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Full listen address; overrides --port.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Act as a function: reply to each event with a copy of this type.
    #[arg(long, value_name = "TYPE")]
    pub reply_type: Option<String>,
    /// Answer 500 to events of this type (repeatable), e.g. to demonstrate dead letters.
    #[arg(long = "fail-type", value_name = "TYPE")]
    pub fail_types: Vec<String>,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The running Herald's admin API URL (`herald serve --admin-addr`).
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8081")]
    pub server: String,
    /// The admin token, when the server was started with one.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of CAs to trust for an https:// --server besides the public roots.
    #[arg(long, env = "HERALD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Broker, as namespace/name or name (namespace "default").
    #[arg(long)]
    pub broker: String,
    /// Trigger, as name (in the Broker's namespace) or namespace/name.
    #[arg(long)]
    pub trigger: String,
    /// Where to start: a log offset or an RFC 3339 time (e.g. 2026-11-24T10:00:00Z).
    #[arg(long)]
    pub from: String,
    /// Return once the server has moved the Trigger back, instead of following the replay
    /// until the Trigger has caught up.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn send(a: SendArgs) -> anyhow::Result<()> {
    let events = match &a.file {
        Some(path) => send::read_events(path)?,
        None => vec![send::build_event(&send::EventOptions {
            id: a.id,
            source: a.source,
            ty: a.ty,
            subject: a.subject,
            data: a.data,
            content_type: a.content_type,
            extensions: a.extensions,
        })?],
    };
    let mut events = events;
    if let Some(overrides) = &a.ce_overrides {
        send::apply_overrides(&mut events, overrides)?;
    }
    let count = events.len();
    let roots = match &a.ca_file {
        Some(path) => crate::tls::ca_certificates(path)?,
        None => Vec::new(),
    };
    let token = a.token.as_deref().filter(|t| !t.is_empty());
    let (status, body) = send::send(&a.to, events, a.structured, roots, token)
        .await
        .with_context(|| format!("sending to {}", a.to))?;
    if !(200..300).contains(&status) {
        bail!("{} answered {status}: {}", a.to, body.trim());
    }
    println!("sent {count} event(s) to {}: {status}", a.to);
    Ok(())
}

pub async fn display(a: DisplayArgs) -> anyhow::Result<()> {
    let addr = a
        .listen
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], a.port)));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!(
        "event display listening on http://{}",
        listener.local_addr()?
    );
    let printer: display::Printer = Arc::new(|text| println!("{text}"));
    let behaviour = display::Behaviour {
        reply_type: a.reply_type,
        fail_types: a.fail_types,
    };
    axum::serve(listener, display::router_with(printer, behaviour))
        .with_graceful_shutdown(super::shutdown_signal())
        .await?;
    Ok(())
}

pub async fn replay(a: ReplayArgs) -> anyhow::Result<()> {
    // Reject a bad position before contacting the server.
    admin::parse_position(&a.from).map_err(anyhow::Error::msg)?;
    let request = admin::ReplayRequest {
        broker: a.broker,
        trigger: a.trigger,
        from: a.from,
    };
    let client = super::resources::admin_client(&a.server, a.token, a.ca_file.as_deref())?;
    let response = client.replay(&request).await?;
    println!(
        "replaying to trigger {} from offset {}",
        response.trigger, response.offset
    );
    if a.no_wait {
        return Ok(());
    }
    let Some(total) = response.lag else {
        eprintln!("(this channel does not report the Trigger's lag: not following the replay)");
        return Ok(());
    };
    let trigger = admin::parse_key(&response.trigger, herald_core::DEFAULT_NAMESPACE);
    follow_replay(&client, &trigger, total).await?;
    println!("replayed {total} of {total} event(s) to trigger {trigger}: caught up");
    Ok(())
}

/// How often a replay's progress is read.
const REPLAY_POLL: Duration = Duration::from_millis(200);

/// Polls the Trigger's lag until it is 0, drawing a bar on a terminal (stderr; indicatif
/// draws nothing elsewhere, so scripts see only the summary line).
async fn follow_replay(
    client: &admin::client::AdminClient,
    trigger: &herald_core::ResourceKey,
    total: u64,
) -> anyhow::Result<()> {
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("replaying {bar:30} {pos}/{len} {per_sec} eta {eta}")
            .expect("valid template"),
    );
    loop {
        let counters = client
            .route_counters(herald_core::Kind::Trigger, trigger)
            .await
            .with_context(|| format!("following the replay of trigger {trigger}"))?;
        let lag = counters.lag.unwrap_or(0);
        // Events accepted meanwhile lengthen the way; the bar grows with them.
        let done = bar.position().max(total.saturating_sub(lag));
        bar.set_length(bar.length().unwrap_or(total).max(done + lag));
        bar.set_position(done);
        if lag == 0 {
            break;
        }
        tokio::time::sleep(REPLAY_POLL).await;
    }
    bar.finish_and_clear();
    Ok(())
}

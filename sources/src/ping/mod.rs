//! PingSource: emits `dev.knative.sources.ping` on its schedule, with source
//! `/apis/v1/namespaces/{ns}/pingsources/{name}` and the spec's data (`data` as text,
//! `dataBase64` decoded to bytes) under its `contentType`, and the tick as the event's time.
//!
//! Each tick is claimed in the [`ledger`] before it is sent, so a tick is emitted once: not
//! twice after a restart, not once per replica. On start, the latest tick missed while the
//! source was not running is emitted once, if it is younger than the catch-up window
//! (`SourceEnv::ping_catch_up`); older ones are skipped.

pub mod ledger;
pub mod schedule;

use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError, DEPLOYED};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use cloudevents::{EventBuilder, EventBuilderV10};
use herald_core::{Check, Kind, PingSource};
pub use ledger::TickLedger;
pub use schedule::Schedule;
use tracing::Instrument;

pub const EVENT_TYPE: &str = "dev.knative.sources.ping";

pub struct Ping {
    schedule: Schedule,
    source: String,
    content_type: Option<String>,
    data: Option<Payload>,
}

#[derive(Clone, Debug)]
enum Payload {
    Text(String),
    Bytes(Bytes),
}

/// Knative's PingSource event source attribute.
pub fn source_attribute(namespace: &str, name: &str) -> String {
    format!("/apis/v1/namespaces/{namespace}/pingsources/{name}")
}

pub fn build(p: &PingSource) -> Result<Ping, ConfigError> {
    let err = |field: &str, message: String| ConfigError {
        kind: Kind::PingSource,
        key: p.key(),
        field: field.into(),
        message,
    };
    let schedule = Schedule::parse(&p.spec.schedule, p.spec.timezone.as_deref())
        .map_err(|e| err(e.field, e.message))?;
    let data = match (&p.spec.data, &p.spec.data_base64) {
        (Some(d), _) => Some(Payload::Text(d.clone())),
        (None, Some(b)) => Some(Payload::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|e| err("spec.dataBase64", format!("not base64: {e}")))?
                .into(),
        )),
        (None, None) => None,
    };
    Ok(Ping {
        schedule,
        source: source_attribute(p.metadata.namespace(), &p.metadata.name),
        content_type: p.spec.content_type.clone(),
        data,
    })
}

impl Ping {
    /// The event of the tick at `tick`.
    pub fn event(&self, tick: DateTime<Utc>) -> cloudevents::Event {
        let mut b = EventBuilderV10::new()
            .id(uuid::Uuid::new_v4().to_string())
            .ty(EVENT_TYPE)
            .source(self.source.clone())
            .time(tick);
        let ct = self.content_type.clone();
        b = match (&self.data, ct) {
            (Some(Payload::Text(t)), Some(ct)) => b.data(ct, t.clone()),
            (Some(Payload::Text(t)), None) => b.data("text/plain", t.clone()),
            (Some(Payload::Bytes(d)), Some(ct)) => b.data(ct, d.to_vec()),
            (Some(Payload::Bytes(d)), None) => b.data("application/octet-stream", d.to_vec()),
            (None, _) => b,
        };
        b.build().expect("id, type and source are set")
    }

    async fn emit(&self, ctx: &SourceContext, ledger: &TickLedger, tick: DateTime<Utc>) {
        match ledger.claim(tick).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(source = %ctx.key, %tick, "tick already emitted (another replica or before a restart)");
                return;
            }
            Err(e) => {
                // Unrecorded, a tick could be emitted twice; not emitting it is the safer miss.
                tracing::error!(source = %ctx.key, %tick, error = %e, "cannot claim the tick; skipped");
                ctx.report(Check::failed("LedgerUnavailable", e.to_string()));
                return;
            }
        }
        ctx.report(Check::Ok);
        let event = self.event(tick);
        let span = tracing::info_span!("ping", source = %ctx.key, %tick);
        if let Err(e) = ctx.sink.send(event).instrument(span).await {
            tracing::error!(source = %ctx.key, %tick, error = %e, "tick lost");
        }
    }
}

/// The ledger this host gives PingSources.
pub async fn ledger_for(ctx: &SourceContext) -> Result<TickLedger, SourceError> {
    let env = &ctx.env;
    match (&env.nats_url, env.shared_ticks, &env.state_dir) {
        (Some(url), true, _) => TickLedger::nats(url, &ctx.key).await,
        (_, _, Some(dir)) => TickLedger::file(dir, &ctx.key),
        _ => Ok(TickLedger::memory()),
    }
}

#[async_trait::async_trait]
impl Source for Ping {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let ledger = tokio::select! {
            l = ledger_for(&ctx) => l,
            _ = ctx.shutdown.cancelled() => return Ok(()),
        };
        let ledger = match ledger {
            Ok(l) => l,
            Err(e) => {
                ctx.report(Check::failed("LedgerUnavailable", e.to_string()));
                return Err(e);
            }
        };
        let clock = ctx.env.clock.clone();
        let now = clock.now();
        let last = ledger.last().await.unwrap_or_else(|e| {
            tracing::warn!(source = %ctx.key, error = %e, "cannot read the last tick; no catch-up");
            None
        });
        if let Some(last) = last {
            let window = chrono::Duration::from_std(ctx.env.ping_catch_up).unwrap_or_default();
            let since = last.max(now - window);
            if let Some(missed) = self.schedule.latest_between(since, now) {
                tracing::info!(source = %ctx.key, %missed, "emitting the tick missed while not running");
                self.emit(&ctx, &ledger, missed).await;
            }
        }
        ctx.report(Check::Ok);
        tracing::info!(source = %ctx.key, kind = DEPLOYED, "PingSource running");
        let mut after = now;
        loop {
            let Some(next) = self.schedule.next_after(after) else {
                ctx.report(Check::failed(
                    "NoNextTick",
                    "the schedule has no future tick",
                ));
                ctx.shutdown.cancelled().await;
                return Ok(());
            };
            tokio::select! {
                _ = clock.sleep_until(next) => {}
                _ = ctx.shutdown.cancelled() => return Ok(()),
            }
            self.emit(&ctx, &ledger, next).await;
            after = next;
        }
    }
}

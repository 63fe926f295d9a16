//! Where a PingSource remembers the last tick it emitted, so a restart neither repeats it nor
//! loses one, and replicas sharing NATS emit each tick once.
//!
//! On NATS, a tick is claimed by publishing it to the JetStream stream `HERALD_PING_TICKS`
//! (subject `herald.ping.ticks.{namespace}.{name}`) with `Nats-Msg-Id`
//! `{namespace}/{name}/{tick}`: JetStream's message de-duplication accepts the first publish
//! of an id and reports every later one (from another replica) as a duplicate, and only the
//! replica whose publish was not a duplicate emits. The stream keeps the last tick per
//! subject, which is what a restart reads. Elsewhere the last tick is a file per source.

use crate::SourceError;
use async_nats::jetstream;
use chrono::{DateTime, Utc};
use herald_core::ResourceKey;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

pub const TICK_STREAM: &str = "HERALD_PING_TICKS";
/// Longer than any skew between replicas' clocks: a duplicate is recognised within it.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);

// One per running PingSource, made once: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum TickLedger {
    /// Forgotten on restart.
    Memory(Mutex<Option<DateTime<Utc>>>),
    File(PathBuf),
    Nats {
        stream: Box<jetstream::stream::Stream>,
        context: jetstream::Context,
        subject: String,
        id_prefix: String,
    },
}

impl TickLedger {
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(None))
    }

    pub fn file(dir: &std::path::Path, key: &ResourceKey) -> Result<Self, SourceError> {
        std::fs::create_dir_all(dir).map_err(|source| SourceError::Io {
            what: format!("cannot create {}", dir.display()),
            source,
        })?;
        Ok(Self::File(dir.join(format!(
            "pingsource.{}.{}.last-tick",
            key.namespace, key.name
        ))))
    }

    pub async fn nats(url: &str, key: &ResourceKey) -> Result<Self, SourceError> {
        let client = async_nats::connect(url)
            .await
            .map_err(|e| SourceError::Nats(format!("cannot connect to {url}: {e}")))?;
        let context = jetstream::new(client);
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: TICK_STREAM.into(),
                subjects: vec!["herald.ping.ticks.>".into()],
                max_messages_per_subject: 1,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map_err(|e| SourceError::Nats(format!("cannot open stream {TICK_STREAM}: {e}")))?;
        Ok(Self::Nats {
            stream: Box::new(stream),
            context,
            subject: format!("herald.ping.ticks.{}.{}", key.namespace, key.name),
            id_prefix: format!("{}/{}", key.namespace, key.name),
        })
    }

    /// The last tick emitted (by any replica, for NATS).
    pub async fn last(&self) -> Result<Option<DateTime<Utc>>, SourceError> {
        match self {
            Self::Memory(m) => Ok(*m.lock().expect("not poisoned")),
            Self::File(path) => match tokio::fs::read_to_string(path).await {
                Ok(text) => Ok(parse_tick(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(SourceError::Io {
                    what: format!("cannot read {}", path.display()),
                    source,
                }),
            },
            Self::Nats {
                stream, subject, ..
            } => match stream.get_last_raw_message_by_subject(subject).await {
                Ok(m) => Ok(std::str::from_utf8(&m.payload).ok().and_then(parse_tick)),
                Err(e)
                    if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                {
                    Ok(None)
                }
                Err(e) => Err(SourceError::Nats(format!("cannot read the last tick: {e}"))),
            },
        }
    }

    /// Records `tick` as emitted; `false` when it (or a later one) already was, so the
    /// caller must not emit it.
    pub async fn claim(&self, tick: DateTime<Utc>) -> Result<bool, SourceError> {
        if self.last().await?.is_some_and(|last| last >= tick) {
            return Ok(false);
        }
        let text = tick.to_rfc3339();
        match self {
            Self::Memory(m) => {
                *m.lock().expect("not poisoned") = Some(tick);
                Ok(true)
            }
            Self::File(path) => {
                // Written whole then renamed, so a crash never leaves half a timestamp.
                let tmp = path.with_extension("tmp");
                let io = |source| SourceError::Io {
                    what: format!("cannot write {}", path.display()),
                    source,
                };
                tokio::fs::write(&tmp, &text).await.map_err(io)?;
                tokio::fs::rename(&tmp, path).await.map_err(io)?;
                Ok(true)
            }
            Self::Nats {
                context,
                subject,
                id_prefix,
                ..
            } => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    async_nats::header::NATS_MESSAGE_ID,
                    format!("{id_prefix}/{}", tick.timestamp_millis()).as_str(),
                );
                let ack = context
                    .publish_with_headers(subject.clone(), headers, text.into())
                    .await
                    .map_err(|e| SourceError::Nats(format!("cannot record the tick: {e}")))?
                    .await
                    .map_err(|e| SourceError::Nats(format!("cannot record the tick: {e}")))?;
                Ok(!ack.duplicate)
            }
        }
    }
}

fn parse_tick(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

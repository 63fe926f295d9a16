//! What a channel operation can fail with, for the caller to act on: back off (`Full`), try
//! again later (`Unavailable`), give up (`Backend`), or pick another position (`NotRetained`,
//! `PastHead`).
//! The backend's own error stays attached as the [`std::error::Error::source`], typed
//! ([`Cause`]), so callers and logs can tell a disk I/O error from a JetStream API error.

use std::time::Duration;

/// The backend's own error behind a [`ChannelError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    #[error(transparent)]
    NatsConnect(#[from] async_nats::ConnectError),
    #[error(transparent)]
    NatsPublish(#[from] async_nats::jetstream::context::PublishError),
    #[error(transparent)]
    NatsStream(#[from] async_nats::jetstream::context::CreateStreamError),
    #[error(transparent)]
    NatsDeleteStream(#[from] async_nats::jetstream::context::DeleteStreamError),
    #[error(transparent)]
    NatsConsumer(#[from] async_nats::jetstream::stream::ConsumerError),
    /// Any other NATS failure (stream info, reading a consumer, acknowledging).
    #[error(transparent)]
    Nats(async_nats::Error),
    #[cfg(feature = "kafka")]
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A background task (a `spawn_blocking` read or write) panicked or was cancelled.
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// An event could not be encoded for, or decoded from, the backend.
    #[error(transparent)]
    Codec(#[from] serde_json::Error),
    /// An event's own record could not be written or read.
    #[error(transparent)]
    Event(#[from] crate::event::EventError),
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// Capacity or lag limit reached: the caller should back off and retry.
    #[error("channel {channel} is full ({detail}){}", suffix(source))]
    Full {
        channel: String,
        detail: String,
        retry_after: Duration,
        #[source]
        source: Option<Box<Cause>>,
    },
    /// The backend cannot be reached right now.
    #[error("channel {channel} is unavailable: {detail}{}", suffix(source))]
    Unavailable {
        channel: String,
        detail: String,
        retry_after: Duration,
        #[source]
        source: Option<Box<Cause>>,
    },
    #[error("channel {channel}: {detail}{}", suffix(source))]
    Backend {
        channel: String,
        detail: String,
        #[source]
        source: Option<Box<Cause>>,
    },
    /// The requested replay position is no longer (or was never) retained.
    #[error("channel {channel} cannot replay from {position}: {detail}")]
    NotRetained {
        channel: String,
        position: String,
        detail: String,
    },
    /// The requested replay position lies beyond the newest event: seeking there would skip
    /// events not yet written (and those not yet delivered), so it is refused.
    #[error("channel {channel} cannot replay from {position}: it is past the head of the log ({detail})")]
    PastHead {
        channel: String,
        position: String,
        detail: String,
    },
}

/// The cause is part of the message too: ingress answers and logs show `to_string()` only.
fn suffix(source: &Option<Box<Cause>>) -> String {
    source
        .as_ref()
        .map(|s| format!(": {s}"))
        .unwrap_or_default()
}

impl Cause {
    /// A NATS error without a variant of its own.
    pub fn nats(e: impl Into<async_nats::Error>) -> Self {
        Cause::Nats(e.into())
    }
}

impl ChannelError {
    pub fn full(
        channel: impl Into<String>,
        detail: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        ChannelError::Full {
            channel: channel.into(),
            detail: detail.into(),
            retry_after,
            source: None,
        }
    }

    pub fn unavailable(
        channel: impl Into<String>,
        detail: impl Into<String>,
        retry_after: Duration,
    ) -> Self {
        ChannelError::Unavailable {
            channel: channel.into(),
            detail: detail.into(),
            retry_after,
            source: None,
        }
    }

    pub fn backend(channel: impl Into<String>, detail: impl Into<String>) -> Self {
        ChannelError::Backend {
            channel: channel.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Attaches the backend's error as the source.
    pub fn caused_by(mut self, cause: impl Into<Cause>) -> Self {
        match &mut self {
            ChannelError::Full { source, .. }
            | ChannelError::Unavailable { source, .. }
            | ChannelError::Backend { source, .. } => *source = Some(Box::new(cause.into())),
            ChannelError::NotRetained { .. } | ChannelError::PastHead { .. } => {}
        }
        self
    }

    /// How long a publisher should wait before trying again, for errors that are transient.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ChannelError::Full { retry_after, .. }
            | ChannelError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The backend's own error, if there is one.
    pub fn cause(&self) -> Option<&Cause> {
        match self {
            ChannelError::Full { source, .. }
            | ChannelError::Unavailable { source, .. }
            | ChannelError::Backend { source, .. } => source.as_deref(),
            ChannelError::NotRetained { .. } | ChannelError::PastHead { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_as_source_and_shown() {
        let io = std::io::Error::other("disk on fire");
        let e =
            ChannelError::unavailable("ns/b", "write failed", Duration::from_secs(2)).caused_by(io);
        assert_eq!(
            e.to_string(),
            "channel ns/b is unavailable: write failed: disk on fire"
        );
        assert!(matches!(e.cause(), Some(Cause::Io(_))));
        let source = std::error::Error::source(&e).expect("a source");
        assert_eq!(source.to_string(), "disk on fire");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    }
}

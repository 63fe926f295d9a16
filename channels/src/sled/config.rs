//! Configuration of the durable store: when a publish counts as durable, how long consumed events
//! are kept for replay, and the limits that turn overload into `Full` instead of unbounded growth.

use std::time::Duration;

/// When `publish` may return: what "durable" means for an accepted event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "SyncText")]
pub enum SyncPolicy {
    /// A writer thread gathers every publish waiting at that moment, appends them with one
    /// write per broker and answers them all after one `fdatasync`: durable on return, and
    /// many concurrent publishers share one sync.
    #[default]
    Group,
    /// One fdatasync per publish request: durable on return, at the cost of one sync per
    /// request.
    PerEvent,
    /// No sync on publish; the writer syncs every `Duration`. A power loss loses at most the
    /// events accepted in that last window (a killed process loses none: the kernel holds
    /// what was written), so publishers may have acknowledged events that are gone after it.
    Interval(Duration),
}

/// How long events that every subscription has consumed stay in a broker's log (for replay).
///
/// Events no subscription has consumed yet are never removed. A consumed event is removed once
/// it is older than `max_age` or the log is larger than `max_bytes`; with both `None` it is
/// removed as soon as it is consumed (then only unconsumed backlog can be replayed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Retention {
    #[serde(deserialize_with = "crate::config::duration::option::deserialize")]
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct SledConfig {
    pub sync: SyncPolicy,
    pub retention: Retention,
    /// Most events a broker may hold that its slowest subscription has not acknowledged; past
    /// it `publish` answers `Full`.
    pub max_lag_events: u64,
    /// Most bytes a broker's log may hold (consumed events kept for replay count, and are
    /// removed first when this is reached); past it `publish` answers `Full`. Counted per
    /// record; the files can take up to one segment more.
    pub max_log_bytes: u64,
    /// Retry-After suggested to publishers on `Full` and `Unavailable`.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub retry_after: Duration,
    /// Unused since the log replaced sled (whose page cache it sized); accepted so existing
    /// configuration files still load.
    pub cache_capacity_bytes: u64,
    /// A segment file past this size is sealed and a new one started; retention drops whole
    /// segments, so disk use runs up to one segment above what is retained.
    pub segment_bytes: u64,
    /// Events a subscription reads from disk at a time (and so holds in memory at most).
    pub read_chunk: usize,
    /// Publish requests that may wait for the writer thread; past it `publish` answers `Full`.
    pub writer_queue: usize,
    /// How often acknowledged positions are written to disk. A crash redelivers at most what
    /// was acknowledged in this window.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub commit_interval: Duration,
    /// How often consumed events are checked against the retention rules and removed.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub compaction_interval: Duration,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            sync: SyncPolicy::Group,
            retention: Retention::default(),
            max_lag_events: 1_000_000,
            max_log_bytes: 1 << 30,
            retry_after: Duration::from_secs(1),
            cache_capacity_bytes: 64 << 20,
            segment_bytes: 16 << 20,
            read_chunk: 256,
            writer_queue: 4096,
            commit_interval: Duration::from_millis(100),
            compaction_interval: Duration::from_secs(1),
        }
    }
}

/// How `sync` is written: `group`, `per-event`, or a flush interval (a duration, or a bare
/// number of milliseconds as `--sync` takes it).
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum SyncText {
    Millis(u64),
    Text(String),
}

impl TryFrom<SyncText> for SyncPolicy {
    type Error = String;

    fn try_from(value: SyncText) -> Result<Self, Self::Error> {
        match value {
            SyncText::Millis(ms) => Ok(SyncPolicy::Interval(Duration::from_millis(ms))),
            SyncText::Text(text) => text.parse(),
        }
    }
}

impl std::str::FromStr for SyncPolicy {
    type Err = String;

    /// `group`, `per-event`, a number of milliseconds, or a duration (`PT0.5S`, `500ms`).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "group" => Ok(SyncPolicy::Group),
            "per-event" => Ok(SyncPolicy::PerEvent),
            ms if ms.bytes().all(|b| b.is_ascii_digit()) && !ms.is_empty() => ms
                .parse()
                .map(|ms| SyncPolicy::Interval(Duration::from_millis(ms)))
                .map_err(|e| format!("{ms:?}: {e}")),
            other => crate::config::parse_duration(other)
                .map(SyncPolicy::Interval)
                .map_err(|_| {
                    format!(
                        "sync must be group, per-event or a flush interval (milliseconds or a \
                         duration), got {other:?}"
                    )
                }),
        }
    }
}

//! The store: one directory holding every broker's log, the writer thread that appends to
//! them, and the maintenance thread that persists acknowledged positions and enforces
//! retention.

use super::channel::SledChannel;
use super::compaction;
use super::state::{check_name, ChannelShared};
use super::writer::{self, WriterCounters, WriterMessage};
use super::{Retention, SledConfig};
use crate::{ChannelError, ChannelName};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// What every channel of the store shares.
pub(crate) struct StoreCore {
    /// The store's directory.
    pub(crate) dir: PathBuf,
    /// `<dir>/channels`: one directory per broker (see `ChannelName::log_dir_name`).
    pub(crate) channels_dir: PathBuf,
    /// Names deleted logs are moved to before removal.
    trash_serial: AtomicU64,
    pub(crate) config: SledConfig,
    pub(crate) writer: SyncSender<WriterMessage>,
    pub(crate) maintenance: SyncSender<MaintenanceSignal>,
    pub(crate) counters: Arc<WriterCounters>,
    /// Set once the store shuts down: publishing is refused from then on.
    pub(crate) closed: AtomicBool,
    /// Serialises compaction passes (the maintenance thread and `compact`), so base records
    /// are written in order.
    pub(crate) compaction: Mutex<()>,
}

/// The store's layout version, in `<dir>/FORMAT`.
const FORMAT: &str = "herald-log 1\n";
/// Prefix of a deleted log's directory while it is being removed.
const TRASH_PREFIX: &str = ".deleted-";

impl StoreCore {
    /// A fresh name in the channels directory for a log being deleted.
    pub(crate) fn trash_path(&self) -> PathBuf {
        let n = self.trash_serial.fetch_add(1, Ordering::Relaxed);
        self.channels_dir
            .join(format!("{TRASH_PREFIX}{}-{n}", super::now_ms()))
    }
}

pub(crate) enum MaintenanceSignal {
    /// A publisher hit `max_log_bytes`: compact now rather than at the next interval.
    Compact,
    Stop,
}

pub(crate) type Registry = Arc<Mutex<HashMap<String, Arc<SledChannel>>>>;

/// A durable store of broker logs in one directory. See the module docs for the layout.
pub struct SledStore {
    core: Arc<StoreCore>,
    channels: Registry,
    threads: Mutex<Option<Threads>>,
}

struct Threads {
    writer: JoinHandle<()>,
    maintenance: JoinHandle<()>,
}

/// Counters for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SledStats {
    /// Publish requests the writer handled (successful or not).
    pub publish_requests: u64,
    /// Events made durable.
    pub published_events: u64,
    /// Groups of requests the writer handled together.
    pub write_groups: u64,
    /// fdatasyncs the writer issued for publishes (one per broker per group).
    pub publish_flushes: u64,
}

impl SledStore {
    /// Opens (or creates) the store in `path`. Blocking (each broker's log is recovered when
    /// first opened, see [`SledStore::channel`]), so call it before serving or inside
    /// `spawn_blocking`.
    pub fn open(path: &Path, config: SledConfig) -> Result<SledStore, ChannelError> {
        let label = format!("durable store {}", path.display());
        let channels_dir = prepare(path, &label, config.retry_after)?;
        let (writer_tx, writer_rx) = mpsc::sync_channel(config.writer_queue.max(1));
        let (maintenance_tx, maintenance_rx) = mpsc::sync_channel(1);
        let counters = Arc::new(WriterCounters::default());
        let writer = {
            let (sync, counters) = (config.sync, counters.clone());
            std::thread::Builder::new()
                .name("herald-log-writer".into())
                .spawn(move || writer::run(sync, counters, writer_rx))
                .map_err(|e| {
                    ChannelError::backend(label.clone(), "cannot start the writer thread")
                        .caused_by(e)
                })?
        };
        let core = Arc::new(StoreCore {
            dir: path.to_path_buf(),
            channels_dir,
            trash_serial: AtomicU64::new(0),
            config,
            writer: writer_tx,
            maintenance: maintenance_tx,
            counters,
            closed: AtomicBool::new(false),
            compaction: Mutex::new(()),
        });
        let channels: Registry = Arc::default();
        let maintenance = {
            let (core, channels) = (core.clone(), channels.clone());
            std::thread::Builder::new()
                .name("herald-log-maintenance".into())
                .spawn(move || maintain(&core, &channels, maintenance_rx))
        };
        let maintenance = match maintenance {
            Ok(handle) => handle,
            Err(e) => {
                let _ = core.writer.send(WriterMessage::Stop);
                let _ = writer.join();
                return Err(
                    ChannelError::backend(label, "cannot start the maintenance thread")
                        .caused_by(e),
                );
            }
        };
        Ok(SledStore {
            core,
            channels,
            threads: Mutex::new(Some(Threads {
                writer,
                maintenance,
            })),
        })
    }

    /// The channel of one broker, created on first use; the same one on later calls (so one
    /// closed with `Channel::close` stays closed until the store is reopened). Blocking on
    /// first use: loads the broker's subscriptions and sizes its log.
    pub fn channel(&self, name: impl Into<ChannelName>) -> Result<Arc<SledChannel>, ChannelError> {
        self.channel_with_retention(name, self.core.config.retention)
    }

    /// Like [`SledStore::channel`], with this broker's own retention (a Broker that keeps
    /// events for replay longer or shorter than the store's default). The first open of a
    /// channel decides.
    pub fn channel_with_retention(
        &self,
        name: impl Into<ChannelName>,
        retention: Retention,
    ) -> Result<Arc<SledChannel>, ChannelError> {
        let channel_name = name.into();
        let name = channel_name.as_str();
        check_name(name, "broker", name)?;
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = channels.get(name) {
            return Ok(channel.clone());
        }
        if self.core.closed.load(Ordering::Acquire) {
            return Err(self.closed_error(name));
        }
        let shared =
            ChannelShared::open(self.core.clone(), &channel_name, retention, &self.channels)
                .map_err(|e| {
                    ChannelError::unavailable(
                        name,
                        "cannot load the log",
                        self.core.config.retry_after,
                    )
                    .caused_by(e)
                })?;
        let parking =
            super::parking::SledParkingLot::open(&self.core.dir, &channel_name).map_err(|e| {
                ChannelError::unavailable(
                    name,
                    "cannot open the parking area",
                    self.core.config.retry_after,
                )
                .caused_by(e)
            })?;
        let channel = Arc::new(SledChannel::new(Arc::new(shared), parking));
        channels.insert(name.to_string(), channel.clone());
        Ok(channel)
    }

    /// Whether the store was shut down.
    pub fn is_closed(&self) -> bool {
        self.core.closed.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> SledStats {
        let c = &self.core.counters;
        SledStats {
            publish_requests: c.requests.load(Ordering::Relaxed),
            published_events: c.events.load(Ordering::Relaxed),
            write_groups: c.groups.load(Ordering::Relaxed),
            publish_flushes: c.flushes.load(Ordering::Relaxed),
        }
    }

    /// Bytes the store's files take. Blocking (reads file metadata).
    pub fn size_on_disk(&self) -> Result<u64, ChannelError> {
        dir_size(&self.core.dir).map_err(|e| self.io_error(e))
    }

    /// Runs one compaction pass now, instead of waiting for the next interval.
    pub async fn compact(&self) -> Result<(), ChannelError> {
        let core = self.core.clone();
        let channels = snapshot(&self.channels);
        tokio::task::spawn_blocking(move || compaction::compact_all(&core, &channels))
            .await
            .map_err(|e| {
                ChannelError::backend("durable store", "compaction task failed").caused_by(e)
            })?
            .map_err(|e| self.io_error(e))
    }

    /// Shuts the store down: every channel stops handing out events, queued publishes are
    /// written, committed offsets are persisted and everything is flushed. Later publishes
    /// fail with `Unavailable`. Dropping the store does the same, blocking.
    pub async fn close(&self) {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(threads) = threads else { return };
        let core = self.core.clone();
        let channels = self.channels.clone();
        if let Err(e) =
            tokio::task::spawn_blocking(move || shutdown(&core, &channels, threads)).await
        {
            tracing::error!(error = %e, "durable store shutdown task failed");
        }
    }

    fn closed_error(&self, name: &str) -> ChannelError {
        ChannelError::unavailable(name, "the store is closed", self.core.config.retry_after)
    }

    fn io_error(&self, e: std::io::Error) -> ChannelError {
        let detail = if super::log::is_disk_full(&e) {
            "the disk is full"
        } else {
            "I/O failed"
        };
        ChannelError::unavailable(
            format!("durable store {}", self.core.dir.display()),
            detail,
            self.core.config.retry_after,
        )
        .caused_by(e)
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        let threads = self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(threads) = threads {
            shutdown(&self.core, &self.channels, threads);
        }
    }
}

fn snapshot(channels: &Registry) -> Vec<Arc<ChannelShared>> {
    channels
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .values()
        .map(|c| c.shared().clone())
        .collect()
}

/// Blocking shutdown, shared by `close` and `drop`.
fn shutdown(core: &StoreCore, channels: &Registry, threads: Threads) {
    core.closed.store(true, Ordering::Release);
    for channel in snapshot(channels) {
        channel.lock().closed = true;
        channel.changed.notify_waiters();
    }
    // The writer answers everything already queued before it stops.
    let _ = core.writer.send(WriterMessage::Stop);
    if threads.writer.join().is_err() {
        tracing::error!("durable log writer thread panicked");
    }
    // The maintenance thread persists committed offsets one last time (synced) as it stops.
    let _ = core.maintenance.send(MaintenanceSignal::Stop);
    if threads.maintenance.join().is_err() {
        tracing::error!("durable log maintenance thread panicked");
    }
}

/// Creates the store's directory (or checks the one there) and returns its channels
/// directory, with leftovers of deletes interrupted by a crash removed.
fn prepare(
    path: &Path,
    label: &str,
    retry_after: std::time::Duration,
) -> Result<PathBuf, ChannelError> {
    let unavailable = |what: &str, e: std::io::Error| {
        ChannelError::unavailable(label, what.to_string(), retry_after).caused_by(e)
    };
    std::fs::create_dir_all(path).map_err(|e| unavailable("cannot create the directory", e))?;
    // sled's own files: the store before this log. Its events cannot be read any more, and
    // silently starting empty beside them would lose them.
    if path.join("conf").is_file() && path.join("db").is_file() {
        return Err(ChannelError::backend(
            label,
            "holds a sled store from an earlier Herald (files conf and db); this version keeps \
             its own segment log and cannot read it: drain it with the earlier version, or move \
             it aside to start empty",
        ));
    }
    let format = path.join("FORMAT");
    match std::fs::read_to_string(&format) {
        Ok(text) if text == FORMAT => {}
        Ok(text) if text.starts_with("herald-log ") => {
            return Err(ChannelError::backend(
                label,
                format!(
                    "unknown on-disk format {:?} (this version writes {FORMAT:?})",
                    text.trim()
                ),
            ))
        }
        Ok(_) | Err(_) => {
            // Missing (a new store) or unreadable: the layout is this one either way.
            std::fs::write(&format, FORMAT).map_err(|e| unavailable("cannot write FORMAT", e))?;
        }
    }
    let channels = path.join("channels");
    std::fs::create_dir_all(&channels)
        .map_err(|e| unavailable("cannot create the directory", e))?;
    let entries =
        std::fs::read_dir(&channels).map_err(|e| unavailable("cannot list the directory", e))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(TRASH_PREFIX)
        {
            if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a deleted log");
            }
        }
    }
    Ok(channels)
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut size = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        size += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(size)
}

/// The maintenance thread: persists committed offsets every `commit_interval` and compacts
/// every `compaction_interval` (or at once when a publisher hit the byte limit).
fn maintain(core: &StoreCore, channels: &Registry, signals: Receiver<MaintenanceSignal>) {
    let mut last_compaction = Instant::now();
    loop {
        let signal = signals.recv_timeout(core.config.commit_interval);
        let stop = matches!(
            signal,
            Ok(MaintenanceSignal::Stop) | Err(RecvTimeoutError::Disconnected)
        );
        let all = snapshot(channels);
        for channel in &all {
            if let Err(e) = channel.persist(stop) {
                tracing::warn!(broker = %channel.name, error = %e, "persisting committed offsets failed");
            }
        }
        if stop {
            return;
        }
        let due = last_compaction.elapsed() >= core.config.compaction_interval;
        if matches!(signal, Ok(MaintenanceSignal::Compact)) || due {
            last_compaction = Instant::now();
            if let Err(e) = compaction::compact_all(core, &all) {
                tracing::warn!(error = %e, "compaction failed");
            }
        }
    }
}

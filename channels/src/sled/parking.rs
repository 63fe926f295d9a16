//! The durable parking lot of one channel of the store: directory
//! `parked/<channel, hex>/` in the store's directory, one file per entry named
//! `<subscription, hex>.<id, 20 digits>.json` holding the [`ParkedEvent`] as JSON. Each entry
//! is written to a temporary file, synced and renamed into place (then the directory synced),
//! so an event is acknowledged on the log only once its parked copy is on disk. Ids continue
//! after the highest one found on open.

use crate::parking::{ParkedEvent, Parking, ParkingLot};
use crate::{ChannelError, ChannelName};
use async_trait::async_trait;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct SledParkingLot {
    dir: PathBuf,
    next: Arc<AtomicU64>,
    channel: ChannelName,
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The directory of `channel`'s lot under the store's directory.
pub(crate) fn lot_dir(store: &Path, channel: &ChannelName) -> PathBuf {
    store.join("parked").join(hex(channel.as_str()))
}

fn file_name(subscription: &str, id: u64) -> String {
    format!("{}.{id:020}.json", hex(subscription))
}

fn id_of(name: &str) -> Option<(&str, u64)> {
    let stem = name.strip_suffix(".json")?;
    let (sub, id) = stem.rsplit_once('.')?;
    Some((sub, id.parse().ok()?))
}

impl SledParkingLot {
    /// Opens (creating) the lot of `channel` in the store's directory. Blocking.
    pub(crate) fn open(store: &Path, channel: &ChannelName) -> std::io::Result<Self> {
        let dir = lot_dir(store, channel);
        std::fs::create_dir_all(&dir)?;
        let mut highest = 0;
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            if let Some((_, id)) = name.to_str().and_then(id_of) {
                highest = highest.max(id);
            }
        }
        Ok(Self {
            dir,
            next: Arc::new(AtomicU64::new(highest + 1)),
            channel: channel.clone(),
        })
    }

    fn error(&self, what: &str, e: std::io::Error) -> ChannelError {
        ChannelError::backend(self.channel.as_str(), format!("parking area: {what}")).caused_by(e)
    }

    /// Runs `f` on the lot's directory off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&Path) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, ChannelError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || f(&dir))
            .await
            .map_err(|e| {
                ChannelError::backend(self.channel.as_str(), format!("parking area: {what}"))
                    .caused_by(e)
            })?
            .map_err(|e| self.error(what, e))
    }
}

fn read_entry(path: &Path) -> std::io::Result<Option<ParkedEvent>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(std::io::Error::other),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl ParkingLot for SledParkingLot {
    fn durable(&self) -> bool {
        true
    }

    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let entry = ParkedEvent::new(id, subscription, parking);
        let name = file_name(subscription, id);
        self.blocking("cannot park", move |dir| {
            let value = serde_json::to_vec(&entry).map_err(std::io::Error::other)?;
            let temporary = dir.join(format!(".{name}.tmp"));
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&value)?;
            file.sync_all()?;
            std::fs::rename(&temporary, dir.join(&name))?;
            std::fs::File::open(dir)?.sync_all()?;
            Ok(id)
        })
        .await
    }

    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError> {
        let prefix = format!("{}.", hex(subscription));
        let channel = self.channel.clone();
        self.blocking("cannot list", move |dir| {
            let mut names: Vec<String> = std::fs::read_dir(dir)?
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&prefix) && id_of(n).is_some())
                .collect();
            // Fixed-width ids: name order is parking order.
            names.sort_unstable();
            let mut out = Vec::new();
            for name in names {
                match read_entry(&dir.join(&name)) {
                    Ok(Some(p)) => out.push(p),
                    Ok(None) => {}
                    // Kept on disk for a later version to read; not hidden silently.
                    Err(e) => tracing::error!(
                        %channel, file = %name, error = %e, "parking area: an entry cannot be read"
                    ),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError> {
        let name = file_name(subscription, id);
        self.blocking("cannot read", move |dir| read_entry(&dir.join(name)))
            .await
    }

    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError> {
        let name = file_name(subscription, id);
        self.blocking("cannot remove", move |dir| {
            match std::fs::remove_file(dir.join(name)) {
                Ok(()) => {
                    std::fs::File::open(dir)?.sync_all()?;
                    Ok(true)
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parking::ParkedWhy;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn parking(id: &str) -> Parking {
        Parking {
            why: ParkedWhy::Undeliverable,
            reason: "request to http://127.0.0.1:9/ failed".into(),
            status: None,
            event: EventBuilderV10::new()
                .id(id)
                .source("/s")
                .ty("t")
                .data("application/octet-stream", vec![0u8, 255, 10])
                .build()
                .unwrap()
                .into(),
        }
    }

    #[tokio::test]
    async fn parked_events_survive_reopening_the_lot() {
        let dir = tempfile::tempdir().unwrap();
        let name = ChannelName::from("ns/b");
        let (first, second) = {
            let lot = SledParkingLot::open(dir.path(), &name).unwrap();
            let a = lot.park("trigger.ns.t", parking("1")).await.unwrap();
            let b = lot.park("trigger.ns.t", parking("2")).await.unwrap();
            lot.park("trigger.ns.other", parking("3")).await.unwrap();
            (a, b)
        };
        let lot = SledParkingLot::open(dir.path(), &name).unwrap();
        let listed = lot.list("trigger.ns.t").await.unwrap();
        assert_eq!(
            listed.iter().map(|p| p.id).collect::<Vec<_>>(),
            vec![first, second]
        );
        crate::parking::tests::assert_same(&listed[1], &parking("2"));
        assert!(lot.remove("trigger.ns.t", first).await.unwrap());
        assert!(lot.get("trigger.ns.t", first).await.unwrap().is_none());
        assert!(lot.get("trigger.ns.t", second).await.unwrap().is_some());
        let later = lot.park("trigger.ns.t", parking("4")).await.unwrap();
        assert!(later > second, "ids keep increasing across reopening");
    }
}

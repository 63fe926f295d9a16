//! The durable parking lot of one sled channel: tree `parked\0<channel>`, key
//! `<subscription>\0<id u64 BE>`, value the [`ParkedEvent`] as JSON. Ids come from sled's
//! `generate_id`, so they keep increasing across restarts. Every change is flushed before it
//! is answered: an event is acknowledged on the log only once its parked copy is on disk.

use crate::parking::{ParkedEvent, Parking, ParkingLot};
use crate::{ChannelError, ChannelName};
use async_trait::async_trait;

pub struct SledParkingLot {
    db: ::sled::Db,
    tree: ::sled::Tree,
    channel: ChannelName,
}

pub(crate) fn tree_name(channel: &ChannelName) -> Vec<u8> {
    [b"parked\0", channel.as_str().as_bytes()].concat()
}

fn key(subscription: &str, id: u64) -> Vec<u8> {
    [subscription.as_bytes(), b"\0", &id.to_be_bytes()].concat()
}

fn prefix(subscription: &str) -> Vec<u8> {
    [subscription.as_bytes(), b"\0"].concat()
}

impl SledParkingLot {
    /// Opens the lot of `channel`. Blocking.
    pub(crate) fn open(db: &::sled::Db, channel: &ChannelName) -> Result<Self, ::sled::Error> {
        Ok(Self {
            db: db.clone(),
            tree: db.open_tree(tree_name(channel))?,
            channel: channel.clone(),
        })
    }

    fn error(&self, what: &str, e: impl Into<crate::Cause>) -> ChannelError {
        ChannelError::backend(self.channel.as_str(), format!("parking area: {what}")).caused_by(e)
    }

    /// Runs `f` on the tree off the runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce(&::sled::Db, &::sled::Tree) -> Result<T, ChannelError> + Send + 'static,
    ) -> Result<T, ChannelError> {
        let (db, tree) = (self.db.clone(), self.tree.clone());
        tokio::task::spawn_blocking(move || f(&db, &tree))
            .await
            .map_err(|e| self.error(what, e))?
    }
}

#[async_trait]
impl ParkingLot for SledParkingLot {
    fn durable(&self) -> bool {
        true
    }

    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError> {
        let (sub, name) = (subscription.to_string(), self.channel.clone());
        let fail = move |what: &str, e: crate::Cause| {
            ChannelError::backend(name.as_str(), format!("parking area: {what}")).caused_by(e)
        };
        self.blocking("cannot park", move |db, tree| {
            let id = db
                .generate_id()
                .map_err(|e| fail("cannot take an id", e.into()))?;
            let entry = ParkedEvent::new(id, &sub, parking);
            let value = serde_json::to_vec(&entry).map_err(|e| fail("cannot encode", e.into()))?;
            tree.insert(key(&sub, id), value)
                .map_err(|e| fail("cannot write", e.into()))?;
            tree.flush().map_err(|e| fail("cannot flush", e.into()))?;
            Ok(id)
        })
        .await
    }

    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError> {
        let (sub, name) = (subscription.to_string(), self.channel.clone());
        self.blocking("cannot list", move |_, tree| {
            let mut out = Vec::new();
            for item in tree.scan_prefix(prefix(&sub)) {
                let (_, value) = item.map_err(|e| {
                    ChannelError::backend(name.as_str(), "parking area: cannot read").caused_by(e)
                })?;
                match serde_json::from_slice::<ParkedEvent>(&value) {
                    Ok(p) => out.push(p),
                    // Kept on disk for a later version to read; not hidden silently.
                    Err(e) => tracing::error!(
                        channel = %name, subscription = %sub, error = %e,
                        "parking area: an entry cannot be read"
                    ),
                }
            }
            Ok(out)
        })
        .await
    }

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError> {
        let (k, name) = (key(subscription, id), self.channel.clone());
        self.blocking("cannot read", move |_, tree| {
            let bad = |e: crate::Cause| {
                ChannelError::backend(name.as_str(), "parking area: cannot read").caused_by(e)
            };
            match tree.get(k).map_err(|e| bad(e.into()))? {
                Some(v) => serde_json::from_slice(&v)
                    .map(Some)
                    .map_err(|e| bad(e.into())),
                None => Ok(None),
            }
        })
        .await
    }

    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError> {
        let (k, name) = (key(subscription, id), self.channel.clone());
        self.blocking("cannot remove", move |_, tree| {
            let bad = |e: ::sled::Error| {
                ChannelError::backend(name.as_str(), "parking area: cannot remove").caused_by(e)
            };
            let found = tree.remove(k).map_err(bad)?.is_some();
            tree.flush().map_err(bad)?;
            Ok(found)
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
    async fn parked_events_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let name = ChannelName::from("ns/b");
        let (first, second) = {
            let db = ::sled::open(dir.path()).unwrap();
            let lot = SledParkingLot::open(&db, &name).unwrap();
            let a = lot.park("trigger.ns.t", parking("1")).await.unwrap();
            let b = lot.park("trigger.ns.t", parking("2")).await.unwrap();
            lot.park("trigger.ns.other", parking("3")).await.unwrap();
            (a, b)
        };
        let db = ::sled::open(dir.path()).unwrap();
        let lot = SledParkingLot::open(&db, &name).unwrap();
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

//! The dead-letter list of each Trigger: events parked on its Broker's channel because neither
//! the subscriber nor the dead-letter sink took them (and, when the Trigger asks, copies of
//! dead-lettered ones). Listed, shown and redriven here: a redrive delivers the event to that
//! Trigger alone, under its current delivery spec, and removes it from the list once
//! delivered or dead-lettered. Discarded on request, and expired after the retention
//! (`herald serve --dlq-retention`, or the Trigger's `herald.dev/dlq-retention`).

use super::DataPlane;
use herald_channels::{ChannelError, ParkedEvent, ParkingLot};
use herald_core::{Kind, ResourceKey};
use herald_dispatcher::{Disposition, Route, RouteId};
use serde::Serialize;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum ParkedError {
    #[error("Trigger {0} not found")]
    NoTrigger(ResourceKey),
    #[error("Trigger {trigger} belongs to Broker {actual}, not {asked}")]
    OtherBroker {
        trigger: String,
        actual: String,
        asked: String,
    },
    #[error("Broker {0} has no channel (not applied, or not ready)")]
    NoChannel(ResourceKey),
    #[error("Trigger {trigger} has no parked event {id}")]
    NoEvent { trigger: ResourceKey, id: u64 },
    #[error("Trigger {0} is not running (see its status); redrive it once it is Ready")]
    NotRunning(ResourceKey),
    #[error("parked event {id} of Trigger {trigger} is still undeliverable: {reason}")]
    StillUndeliverable {
        trigger: ResourceKey,
        id: u64,
        reason: String,
    },
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// One Trigger's parked events.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedList {
    pub trigger: String,
    pub broker: String,
    /// Whether the list survives a restart (the durable channel's does).
    pub durable: bool,
    pub items: Vec<ParkedEvent>,
}

/// What a discard removed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Discarded {
    pub trigger: String,
    /// The ids removed.
    pub deleted: Vec<u64>,
}

/// What a redrive did.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redriven {
    pub trigger: String,
    pub id: u64,
    /// `Delivered` or `DeadLettered`.
    pub disposition: &'static str,
}

impl DataPlane {
    /// The parked events of `trigger`, or of every Trigger of `broker` when `None`.
    pub async fn parked(
        &self,
        broker: &ResourceKey,
        trigger: Option<&ResourceKey>,
    ) -> Result<Vec<ParkedList>, ParkedError> {
        let (lot, triggers) = {
            let state = self.state.lock().await;
            let triggers: Vec<ResourceKey> = match trigger {
                Some(t) => {
                    self.check_broker(&state, t, broker)?;
                    vec![t.clone()]
                }
                None => state
                    .triggers
                    .iter()
                    .filter(|(_, e)| &e.resource.broker_key() == broker)
                    .map(|(k, _)| k.clone())
                    .collect(),
            };
            (Self::lot(&state, broker)?, triggers)
        };
        let mut lists = Vec::new();
        for t in triggers {
            lists.push(ParkedList {
                trigger: t.to_string(),
                broker: broker.to_string(),
                durable: lot.durable(),
                items: lot.list(&RouteId::trigger(t).subscription_name()).await?,
            });
        }
        Ok(lists)
    }

    /// One parked event of `trigger`.
    pub async fn parked_event(
        &self,
        broker: &ResourceKey,
        trigger: &ResourceKey,
        id: u64,
    ) -> Result<ParkedEvent, ParkedError> {
        let (lot, subscription) = self.trigger_lot(broker, trigger).await?;
        lot.get(&subscription, id)
            .await?
            .ok_or_else(|| ParkedError::NoEvent {
                trigger: trigger.clone(),
                id,
            })
    }

    /// Delivers parked event `id` to `trigger` again (retries and dead-letter sink as the
    /// Trigger says now) and removes it from the list once delivered or dead-lettered; still
    /// undeliverable, it stays.
    pub async fn redrive(
        &self,
        broker: &ResourceKey,
        trigger: &ResourceKey,
        id: u64,
    ) -> Result<Redriven, ParkedError> {
        let (lot, route): (Arc<dyn ParkingLot>, Arc<Route>) = {
            let state = self.state.lock().await;
            self.check_broker(&state, trigger, broker)?;
            let lot = Self::lot(&state, broker)?;
            let route = state
                .consumers
                .get(&RouteId::trigger(trigger.clone()))
                .map(|r| r.route.borrow().clone())
                .ok_or_else(|| ParkedError::NotRunning(trigger.clone()))?;
            (lot, route)
        };
        // Not under the state lock: a delivery with retries can take long.
        let subscription = route.subscription();
        let parked = lot
            .get(&subscription, id)
            .await?
            .ok_or_else(|| ParkedError::NoEvent {
                trigger: trigger.clone(),
                id,
            })?;
        let disposition = self.engine.dispatch(&route, Arc::new(parked.event)).await;
        let name = disposition.name();
        match disposition {
            Disposition::Undeliverable(again) => {
                return Err(ParkedError::StillUndeliverable {
                    trigger: trigger.clone(),
                    id,
                    reason: again.reason,
                })
            }
            Disposition::DeadLettered(Some(copy)) => {
                lot.park(&subscription, *copy).await?;
            }
            Disposition::Delivered | Disposition::DeadLettered(None) => {}
        }
        lot.remove(&subscription, id).await?;
        tracing::info!(%trigger, parked = id, disposition = name, "parked event redriven");
        Ok(Redriven {
            trigger: trigger.to_string(),
            id,
            disposition: name,
        })
    }

    /// Removes parked event `id` of `trigger` without delivering it.
    pub async fn discard(
        &self,
        broker: &ResourceKey,
        trigger: &ResourceKey,
        id: u64,
    ) -> Result<Discarded, ParkedError> {
        let (lot, subscription) = self.trigger_lot(broker, trigger).await?;
        if !lot.remove(&subscription, id).await? {
            return Err(ParkedError::NoEvent {
                trigger: trigger.clone(),
                id,
            });
        }
        tracing::info!(%trigger, parked = id, "parked event discarded");
        Ok(Discarded {
            trigger: trigger.to_string(),
            deleted: vec![id],
        })
    }

    /// Removes every parked event of `trigger` without delivering them.
    pub async fn discard_all(
        &self,
        broker: &ResourceKey,
        trigger: &ResourceKey,
    ) -> Result<Discarded, ParkedError> {
        let (lot, subscription) = self.trigger_lot(broker, trigger).await?;
        let mut deleted = Vec::new();
        for entry in lot.list(&subscription).await? {
            if lot.remove(&subscription, entry.id).await? {
                deleted.push(entry.id);
            }
        }
        tracing::info!(%trigger, count = deleted.len(), "parked events discarded");
        Ok(Discarded {
            trigger: trigger.to_string(),
            deleted,
        })
    }

    /// The parking lot of `broker` and the subscription name under which `trigger` (which
    /// must be one of its Triggers) parks.
    async fn trigger_lot(
        &self,
        broker: &ResourceKey,
        trigger: &ResourceKey,
    ) -> Result<(Arc<dyn ParkingLot>, String), ParkedError> {
        let state = self.state.lock().await;
        self.check_broker(&state, trigger, broker)?;
        let lot = Self::lot(&state, broker)?;
        Ok((lot, RouteId::trigger(trigger.clone()).subscription_name()))
    }

    fn check_broker(
        &self,
        state: &super::State,
        trigger: &ResourceKey,
        broker: &ResourceKey,
    ) -> Result<(), ParkedError> {
        let entry = state
            .triggers
            .get(trigger)
            .ok_or_else(|| ParkedError::NoTrigger(trigger.clone()))?;
        let actual = entry.resource.broker_key();
        if &actual != broker {
            return Err(ParkedError::OtherBroker {
                trigger: trigger.to_string(),
                actual: actual.to_string(),
                asked: broker.to_string(),
            });
        }
        Ok(())
    }

    fn lot(state: &super::State, broker: &ResourceKey) -> Result<Arc<dyn ParkingLot>, ParkedError> {
        state
            .logs
            .get(&(Kind::Broker, broker.clone()))
            .map(|l| l.parking.clone())
            .ok_or_else(|| ParkedError::NoChannel(broker.clone()))
    }
}

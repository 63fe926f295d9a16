//! Retention: moves each broker's base past the events every subscription has consumed once
//! the retention rules let them go, then drops the segment files wholly below it, so disk use
//! stays bounded under a steady load and shrinks once everything is delivered. Unconsumed
//! events are never removed.
//!
//! A pass records the new base in the metadata snapshot (synced) before it removes files:
//! after a crash the base is at worst an older one, which costs redelivery, never events.

use super::state::ChannelShared;
use super::store::StoreCore;
use std::io;
use std::sync::Arc;

pub(crate) fn compact_all(core: &StoreCore, channels: &[Arc<ChannelShared>]) -> io::Result<()> {
    let _serial = core.compaction.lock().unwrap_or_else(|p| p.into_inner());
    let now = super::now_ms();
    let mut first_error = None;
    for channel in channels {
        if let Err(e) = compact(channel, now) {
            tracing::warn!(broker = %channel.name, error = %e, "retention pass failed");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn compact(channel: &ChannelShared, now_ms: u64) -> io::Result<()> {
    let moved = advance_base(channel, now_ms)?;
    let base = channel.lock().base;
    if moved {
        // The new base is durable before anything below it goes.
        channel.persist(true)?;
    }
    let freed = channel.log.drop_below(base)?;
    if freed > 0 {
        tracing::debug!(broker = %channel.name, base, freed, "dropped consumed segments");
    }
    Ok(())
}

/// Picks the consumed events of one broker to remove now and moves its in-memory base past
/// them (so seeks stop accepting them before they are gone). Returns whether it moved.
fn advance_base(channel: &ChannelShared, now_ms: u64) -> io::Result<bool> {
    let config = &channel.core.config;
    let retention = channel.retention;
    // Past 90% of the byte limit, consumed events go early rather than block publishers.
    let pressure = config.max_log_bytes - config.max_log_bytes / 10;
    let (base, low, head) = {
        let state = channel.lock();
        let low = state.low_committed().unwrap_or(state.head);
        (state.base, low, state.head)
    };
    if low <= base {
        return Ok(false);
    }
    let log = &channel.log;
    let cut = if retention.max_age.is_none() && retention.max_bytes.is_none() {
        low
    } else {
        // Everything before the first offset the log can keep by size.
        let over_pressure = log.first_within_bytes(base, head, pressure);
        let over_bytes = retention
            .max_bytes
            .map_or(base, |max| log.first_within_bytes(base, head, max));
        // Everything appended more than max_age ago (append times only grow).
        let aged = match retention.max_age {
            None => base,
            Some(age) => {
                let age = age.as_millis() as u64;
                let (mut lo, mut hi) = (base, low);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    let ms = log.append_ms(mid)?.unwrap_or(0);
                    if now_ms.saturating_sub(ms) >= age {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                lo
            }
        };
        over_pressure.max(over_bytes).max(aged).min(low)
    };
    if cut <= base {
        return Ok(false);
    }
    let last_ms = log.append_ms(cut - 1)?.unwrap_or(0);
    let freed = log.bytes_between(base, cut);
    let mut state = channel.lock();
    // Another pass, or a seek back into the range, while we looked.
    let low = state.low_committed().unwrap_or(state.head);
    if state.base != base || cut > low {
        return Ok(false);
    }
    state.base = cut;
    state.last_removed_ms = state.last_removed_ms.max(last_ms);
    state.retained_bytes = state.retained_bytes.saturating_sub(freed);
    tracing::debug!(broker = %channel.name, removed = cut - base, base = cut, "retention moved the base");
    Ok(true)
}

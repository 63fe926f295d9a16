//! Retention: removes events every subscription has consumed once the retention rules say so,
//! so disk use stays bounded under a steady load. Unconsumed events are never removed.
//!
//! A pass first records each broker's new base in the meta tree and flushes, and only then
//! removes the events below it: after a crash at any point, the head recovered on open never
//! goes below an offset already handed out.

use super::record;
use super::state::ChannelShared;
use super::store::StoreCore;
use std::sync::Arc;

/// Most events removed per broker per round, to bound the memory of one pass.
const CHUNK: usize = 4096;

struct Plan {
    old_base: u64,
    new_base: u64,
    last_removed_ms: u64,
    /// The chunk was full: there may be more to remove.
    more: bool,
}

pub(crate) fn compact_all(
    core: &StoreCore,
    channels: &[Arc<ChannelShared>],
) -> Result<(), ::sled::Error> {
    let _serial = core.compaction.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = record::now_ms();
        let mut plans = Vec::new();
        for channel in channels {
            if let Some(plan) = plan(channel, now)? {
                plans.push((channel, plan));
            }
        }
        if plans.is_empty() {
            return Ok(());
        }
        for (channel, plan) in &plans {
            core.meta.insert(
                record::base_key(channel.name.as_str()),
                &record::encode_base(plan.new_base, plan.last_removed_ms),
            )?;
        }
        core.db.flush()?;
        let mut more = false;
        for (channel, plan) in plans {
            let mut batch = ::sled::Batch::default();
            for offset in plan.old_base..plan.new_base {
                batch.remove(&record::offset_key(offset));
            }
            channel.log.apply_batch(batch)?;
            tracing::debug!(
                broker = %channel.name,
                removed = plan.new_base - plan.old_base,
                base = plan.new_base,
                "compacted"
            );
            more |= plan.more;
        }
        if !more {
            return Ok(());
        }
    }
}

/// Picks the consumed events of one broker to remove now, and moves its in-memory base past
/// them (so seeks stop accepting them before they are gone).
fn plan(channel: &ChannelShared, now_ms: u64) -> Result<Option<Plan>, ::sled::Error> {
    let config = &channel.core.config;
    let retention = channel.retention;
    // Past 90% of the byte limit, consumed events go early rather than block publishers.
    let pressure = config.max_log_bytes - config.max_log_bytes / 10;
    let (base, low, retained) = {
        let state = channel.lock();
        let low = state.low_committed().unwrap_or(state.head);
        (state.base, low, state.retained_bytes)
    };
    if low <= base {
        return Ok(None);
    }
    let mut remove: Vec<(u64, u64, u64)> = Vec::new();
    let mut remaining = retained;
    for item in channel
        .log
        .range(record::offset_key(base)..record::offset_key(low))
        .take(CHUNK)
    {
        let (key, value) = item?;
        let Some(offset) = record::decode_u64(&key) else {
            continue;
        };
        let ms = record::append_ms(&value).unwrap_or(0);
        let aged = retention
            .max_age
            .is_some_and(|age| now_ms.saturating_sub(ms) >= age.as_millis() as u64);
        let oversized = retention.max_bytes.is_some_and(|max| remaining > max);
        let keep_for_replay = retention.max_age.is_some() || retention.max_bytes.is_some();
        if keep_for_replay && !aged && !oversized && remaining <= pressure {
            // Append times and sizes only shrink the reasons to remove further on.
            break;
        }
        let bytes = record::entry_bytes(value.len());
        remaining = remaining.saturating_sub(bytes);
        remove.push((offset, bytes, ms));
    }
    let more = remove.len() == CHUNK;

    let mut state = channel.lock();
    if state.base != base {
        return Ok(None);
    }
    // A seek while we read may have moved a subscription back into the range.
    let low = state.low_committed().unwrap_or(state.head);
    remove.retain(|(offset, _, _)| *offset < low);
    let Some(&(last, _, last_ms)) = remove.last() else {
        return Ok(None);
    };
    let freed: u64 = remove.iter().map(|(_, bytes, _)| bytes).sum();
    state.base = last + 1;
    state.last_removed_ms = state.last_removed_ms.max(last_ms);
    state.retained_bytes = state.retained_bytes.saturating_sub(freed);
    Ok(Some(Plan {
        old_base: base,
        new_base: last + 1,
        last_removed_ms: state.last_removed_ms,
        more,
    }))
}

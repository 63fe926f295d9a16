//! Seeking one subscription to an offset or an append time (what `herald replay` uses).

use super::state::ChannelShared;
use crate::{ChannelError, Position};

/// Blocking: bisects the log for time positions and persists the new position.
pub(crate) fn seek(
    shared: &ChannelShared,
    subscription: &str,
    position: &Position,
) -> Result<u64, ChannelError> {
    let (base, head, last_removed_ms) = {
        let state = shared.lock();
        if !state.cursors.contains_key(subscription) {
            return Err(shared.backend(format!("no subscription {subscription:?}")));
        }
        (state.base, state.head, state.last_removed_ms)
    };
    let target = match position {
        Position::Offset(o) if *o >= base && *o <= head => *o,
        Position::Offset(o) if *o > head => {
            return Err(ChannelError::PastHead {
                channel: shared.name.to_string(),
                position: position.to_string(),
                detail: format!("the next event will be offset {head}"),
            })
        }
        Position::Offset(_) => return Err(not_retained(shared, position, base, head)),
        Position::Time(t) => {
            let t_ms = u64::try_from(t.timestamp_millis()).unwrap_or(0);
            // An event appended at or after `t` has been removed: the replay would miss it.
            if base > 0 && t_ms <= last_removed_ms {
                return Err(not_retained(shared, position, base, head));
            }
            first_at_or_after(shared, base, head, t_ms)?
        }
    };
    {
        let mut state = shared.lock();
        // Compaction may have moved the base while we looked.
        if target < state.base {
            let (base, head) = (state.base, state.head);
            drop(state);
            return Err(not_retained(shared, position, base, head));
        }
        let epoch = state.next_id();
        let Some(cursor) = state.cursors.get_mut(subscription) else {
            return Err(shared.backend(format!("no subscription {subscription:?}")));
        };
        cursor.reset(target, epoch);
        state.moves += 1;
    }
    shared.changed.notify_waiters();
    shared.persist(true).map_err(|e| {
        shared
            .unavailable("cannot persist the new position")
            .caused_by(e)
    })?;
    Ok(target)
}

/// First offset in `base..head` appended at or after `t_ms` (append times are monotonic).
fn first_at_or_after(
    shared: &ChannelShared,
    base: u64,
    head: u64,
    t_ms: u64,
) -> Result<u64, ChannelError> {
    let (mut lo, mut hi) = (base, head);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // A missing entry was just removed by retention, so it is older than anything retained.
        let ms = shared
            .log
            .append_ms(mid)
            .map_err(|e| shared.unavailable("cannot read the log").caused_by(e))?
            .unwrap_or(0);
        if ms < t_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn not_retained(shared: &ChannelShared, position: &Position, base: u64, head: u64) -> ChannelError {
    let oldest = match shared.log.append_ms(base) {
        Ok(Some(ms)) if base < head => format!(
            "the oldest retained event is offset {base}, appended at {}",
            super::ms_to_rfc3339(ms)
        ),
        Ok(_) if base < head => format!("the oldest retained event is offset {base}"),
        _ => format!("no event is retained; the next one will be offset {base}"),
    };
    ChannelError::NotRetained {
        channel: shared.name.to_string(),
        position: position.to_string(),
        detail: format!("{oldest} (head {head})"),
    }
}

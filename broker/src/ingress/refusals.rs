//! Overload refusals (429, 503) are logged as a summary, not one line each: under overload
//! ingress refuses thousands of requests a second, and a line per refusal would cost more
//! than the refusal and bury every other log line. The first refusal after a quiet spell is
//! logged at once with its cause; the ones after it are counted and summed up once per
//! [`SUMMARY_INTERVAL`].

use axum::http::StatusCode;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// At most one summary line per this interval.
pub const SUMMARY_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Window {
    /// When the window's first refusal was logged; `None` while quiet.
    opened: Option<Instant>,
    /// Refusals since then that were not logged, per status.
    counts: BTreeMap<u16, u64>,
    /// The latest cause, for the summary.
    last: String,
}

static WINDOW: Mutex<Window> = Mutex::new(Window {
    opened: None,
    counts: BTreeMap::new(),
    last: String::new(),
});
static FLUSHER: OnceLock<()> = OnceLock::new();

/// Notes one refused request (`status`, with `cause` naming why).
pub fn record(status: StatusCode, cause: &str) {
    let mut window = WINDOW.lock().unwrap_or_else(|p| p.into_inner());
    if window.opened.is_none() {
        window.opened = Some(Instant::now());
        drop(window);
        tracing::warn!(%status, error = cause, "event not accepted (overload); further refusals are summed up every {}s", SUMMARY_INTERVAL.as_secs());
        start_flusher();
        return;
    }
    *window.counts.entry(status.as_u16()).or_default() += 1;
    window.last.clear();
    window.last.push_str(cause);
}

/// Logs what the current window counted, if its interval is over; closes a window that
/// counted nothing (the next refusal is then logged at once again).
fn flush(now: Instant) {
    let mut window = WINDOW.lock().unwrap_or_else(|p| p.into_inner());
    let Some(opened) = window.opened else { return };
    if now.duration_since(opened) < SUMMARY_INTERVAL {
        return;
    }
    if window.counts.is_empty() {
        window.opened = None;
        return;
    }
    let counts = std::mem::take(&mut window.counts);
    let last = std::mem::take(&mut window.last);
    let elapsed = now.duration_since(opened).as_secs();
    window.opened = Some(now);
    drop(window);
    let total: u64 = counts.values().sum();
    let by_status = counts
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::warn!(
        refused = total,
        "refused {total} more requests in the last {elapsed}s ({by_status}); latest: {last}"
    );
}

/// One task per process ticks the summaries (a runtime exists: `record` runs in a handler).
fn start_flusher() {
    FLUSHER.get_or_init(|| {
        tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                flush(Instant::now());
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted() -> u64 {
        WINDOW.lock().unwrap().counts.values().sum()
    }

    #[tokio::test]
    async fn the_first_refusal_opens_a_window_and_the_rest_are_counted_until_its_summary() {
        record(StatusCode::TOO_MANY_REQUESTS, "full");
        for _ in 0..99 {
            record(StatusCode::TOO_MANY_REQUESTS, "full");
        }
        record(StatusCode::SERVICE_UNAVAILABLE, "down");
        assert_eq!(counted(), 100);
        let opened = WINDOW.lock().unwrap().opened.unwrap();
        flush(opened + SUMMARY_INTERVAL / 2);
        assert_eq!(counted(), 100, "summed up before the interval was over");
        flush(opened + SUMMARY_INTERVAL);
        assert_eq!(counted(), 0);
        // A quiet interval closes the window: the next refusal is logged at once again.
        flush(opened + SUMMARY_INTERVAL * 3);
        assert!(WINDOW.lock().unwrap().opened.is_none());
    }
}

//! Printing the results table and reading this process's peak RSS.

use super::load::RunResult;

#[derive(Clone, Debug)]
pub struct CaseResult {
    pub name: String,
    /// Closed loop: the maximum rate.
    pub max: RunResult,
    /// Open loop at half the maximum rate: latency under moderate load.
    pub half: Option<RunResult>,
    /// Peak RSS of the whole benchmark process during this case.
    pub peak_rss_kib: Option<u64>,
    /// The case this one is compared with (its name and events/s); none for a baseline.
    pub baseline: Option<(String, f64)>,
}

/// Resets the kernel's peak-RSS counter (VmHWM) so each case reports its own peak.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub fn render(results: &[CaseResult]) -> String {
    let mut out = format!(
        "{:<30} {:>10} {:>7} {:>8} {:>8} {:>9} | {:>9} {:>8} {:>8} {:>9} | {:>8}  {}\n",
        "case",
        "events/s",
        "ratio",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "half ev/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "RSS MiB",
        "ratio of"
    );
    for r in results {
        let (ratio, of) = match &r.baseline {
            Some((name, rate)) if *rate > 0.0 => (
                format!("{:.0}%", r.max.events_per_sec / rate * 100.0),
                name.as_str(),
            ),
            _ => ("-".to_string(), "(baseline)"),
        };
        let (hr, h50, h99, h999) = match &r.half {
            Some(h) => (
                format!("{:.0}", h.events_per_sec),
                ms(h.p50_us),
                ms(h.p99_us),
                ms(h.p999_us),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        let rss = r
            .peak_rss_kib
            .map(|k| format!("{:.0}", k as f64 / 1024.0))
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<30} {:>10.0} {:>7} {:>8} {:>8} {:>9} | {:>9} {:>8} {:>8} {:>9} | {:>8}  {}\n",
            r.name,
            r.max.events_per_sec,
            ratio,
            ms(r.max.p50_us),
            ms(r.max.p99_us),
            ms(r.max.p999_us),
            hr,
            h50,
            h99,
            h999,
            rss,
            of
        ));
        if r.max.deliveries != r.max.events {
            out.push_str(&format!(
                "{:<30} {:>10.0} deliveries/s ({} per event)\n",
                "",
                r.max.deliveries as f64 / r.max.seconds.max(1e-9),
                r.max.deliveries / r.max.events.max(1)
            ));
        }
        if r.max.pushed_back > 0 {
            out.push_str(&format!(
                "{:<30} {} sends answered 429/503 and retried\n",
                "", r.max.pushed_back
            ));
        }
    }
    out
}

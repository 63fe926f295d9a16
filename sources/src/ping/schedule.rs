//! A PingSource's `schedule` read in its `timezone`: standard five-field cron (croner), the
//! descriptors Knative accepts (`@hourly`, `@daily`, ..., `@every 10m`), and a `CRON_TZ=` /
//! `TZ=` prefix as robfig/cron reads it.
//!
//! Daylight saving, per Vixie cron: a time that falls in the hour the clocks skip fires once,
//! right after the change; a time in the hour that happens twice fires once, the first time.
//! `@every` ticks are counted from the Unix epoch, so every replica and every restart agrees
//! on which instants are ticks.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use std::str::FromStr;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Every,
    tz: Tz,
}

#[derive(Clone, Debug)]
enum Every {
    Cron(Box<Cron>),
    Interval(Duration),
}

/// Which field is wrong and why.
#[derive(Debug, PartialEq, Eq)]
pub struct ScheduleError {
    pub field: &'static str,
    pub message: String,
}

impl Schedule {
    /// `timezone` is `spec.timezone` (UTC when unset).
    pub fn parse(schedule: &str, timezone: Option<&str>) -> Result<Self, ScheduleError> {
        let bad = |message: String| ScheduleError {
            field: "spec.schedule",
            message,
        };
        let mut text = schedule.trim();
        let mut prefix_tz = None;
        for p in ["CRON_TZ=", "TZ="] {
            if let Some(rest) = text.strip_prefix(p) {
                let (zone, rest) = rest
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| bad(format!("{schedule:?}: {p} needs a schedule after it")))?;
                prefix_tz = Some(zone);
                text = rest.trim();
            }
        }
        let zone = match (timezone.filter(|z| !z.is_empty()), prefix_tz) {
            (Some(a), Some(b)) if a != b => {
                return Err(ScheduleError {
                    field: "spec.timezone",
                    message: format!("{a:?} contradicts the schedule's own time zone {b:?}"),
                })
            }
            (Some(z), _) | (None, Some(z)) => Some(z),
            (None, None) => None,
        };
        let tz = match zone {
            None => Tz::UTC,
            Some(z) => Tz::from_str(z).map_err(|_| ScheduleError {
                field: "spec.timezone",
                message: format!("{z:?} is not an IANA time zone (e.g. Europe/Berlin)"),
            })?,
        };
        let cron_text = match text {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with("@every") => {
                let d = t.trim_start_matches("@every").trim();
                let every = parse_go_duration(d)
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| bad(format!("{schedule:?}: {d:?} is not a duration like 10m or 1h30m")))?;
                return Ok(Self {
                    kind: Every::Interval(every),
                    tz,
                });
            }
            t if t.starts_with('@') => {
                return Err(bad(format!(
                    "{schedule:?}: unknown descriptor (expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>)"
                )))
            }
            t => t,
        };
        let fields = cron_text.split_whitespace().count();
        if fields != 5 {
            return Err(bad(format!(
                "{schedule:?}: expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
            )));
        }
        let cron = Cron::from_str(cron_text).map_err(|e| bad(format!("{schedule:?}: {e}")))?;
        Ok(Self {
            kind: Every::Cron(Box::new(cron)),
            tz,
        })
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match &self.kind {
            Every::Interval(d) => {
                let step = d.as_millis() as i64;
                let now = t.timestamp_millis();
                let next = (now.div_euclid(step) + 1) * step;
                Utc.timestamp_millis_opt(next).single()
            }
            Every::Cron(cron) => {
                let local = t.with_timezone(&self.tz);
                cron.find_next_occurrence(&local, false)
                    .ok()
                    .map(|n| n.with_timezone(&Utc))
            }
        }
    }

    /// The latest tick in `(after, until]`, if any.
    pub fn latest_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut latest = None;
        let mut t = after;
        // Bounded: a source that ticks every second, down for a day, takes 86 400 steps.
        for _ in 0..1_000_000 {
            match self.next_after(t) {
                Some(n) if n <= until => {
                    latest = Some(n);
                    t = n;
                }
                _ => break,
            }
        }
        latest
    }
}

/// Go's `time.ParseDuration` units (`1h30m`, `10s`, `500ms`, `1.5h`), as `@every` takes.
fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += value * secs;
    }
    Some(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ticks(s: &Schedule, from: &str, n: usize) -> Vec<String> {
        let mut t = utc(from);
        (0..n)
            .map(|_| {
                t = s.next_after(t).unwrap();
                t.to_rfc3339()
            })
            .collect()
    }

    #[test]
    fn five_fields_and_descriptors() {
        let s = Schedule::parse("*/15 * * * *", None).unwrap();
        assert_eq!(
            ticks(&s, "2026-01-01T00:07:00Z", 3),
            [
                "2026-01-01T00:15:00+00:00",
                "2026-01-01T00:30:00+00:00",
                "2026-01-01T00:45:00+00:00"
            ]
        );
        let s = Schedule::parse("@hourly", None).unwrap();
        assert_eq!(
            ticks(&s, "2026-01-01T00:07:00Z", 1),
            ["2026-01-01T01:00:00+00:00"]
        );
        let s = Schedule::parse("@every 1h30m", None).unwrap();
        assert_eq!(
            ticks(&s, "1970-01-01T00:00:00Z", 2),
            ["1970-01-01T01:30:00+00:00", "1970-01-01T03:00:00+00:00"]
        );
        let s = Schedule::parse("0 9 * * MON-FRI", None).unwrap();
        // 2026-01-02 is a Friday: the next is Monday the 5th.
        assert_eq!(
            ticks(&s, "2026-01-02T10:00:00Z", 1),
            ["2026-01-05T09:00:00+00:00"]
        );
    }

    #[test]
    fn bad_schedules_name_their_field() {
        for bad in [
            "* * * *",
            "* * * * * *",
            "61 * * * *",
            "@fortnightly",
            "@every soon",
            "@every 0s",
        ] {
            let e = Schedule::parse(bad, None).unwrap_err();
            assert_eq!(e.field, "spec.schedule", "{bad}: {e:?}");
            assert!(e.message.contains(bad), "{e:?}");
        }
        let e = Schedule::parse("* * * * *", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, "spec.timezone");
        let e = Schedule::parse("CRON_TZ=Asia/Tokyo * * * * *", Some("Europe/Berlin")).unwrap_err();
        assert_eq!(e.field, "spec.timezone");
    }

    #[test]
    fn timezone_moves_the_ticks() {
        let s = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            ticks(&s, "2026-01-01T00:00:00Z", 1),
            ["2026-01-02T00:00:00+00:00"]
        );
        let s = Schedule::parse("CRON_TZ=America/New_York 0 9 * * *", None).unwrap();
        assert_eq!(
            ticks(&s, "2026-01-01T00:00:00Z", 1),
            ["2026-01-01T14:00:00+00:00"]
        );
    }

    /// Berlin springs forward on 2026-03-29 at 02:00 (to 03:00): 02:30 does not exist that
    /// day. It must fire once, right after the change, and not be lost.
    #[test]
    fn spring_forward_neither_misses_nor_doubles() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let got = ticks(&s, "2026-03-27T12:00:00Z", 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], "2026-03-28T01:30:00+00:00"); // 02:30 CET
                                                         // 29th: one tick, at or after 03:00 CEST (01:00Z), before the 30th's.
        let t = utc(&got[1]);
        assert!(
            t >= utc("2026-03-29T01:00:00Z") && t < utc("2026-03-29T02:00:00Z"),
            "{got:?}"
        );
        assert_eq!(got[2], "2026-03-30T00:30:00+00:00"); // 02:30 CEST
                                                         // Hourly ticks across the gap: 01:00 CET then 03:00 CEST, one hour apart in real time.
        let s = Schedule::parse("0 * * * *", Some("Europe/Berlin")).unwrap();
        assert_eq!(
            ticks(&s, "2026-03-29T00:30:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-29T02:00:00+00:00"]
        );
    }

    /// Berlin falls back on 2026-10-25 at 03:00 (to 02:00): 02:30 happens twice. A daily
    /// 02:30 fires once.
    #[test]
    fn fall_back_does_not_double() {
        let s = Schedule::parse("30 2 * * *", Some("Europe/Berlin")).unwrap();
        let got = ticks(&s, "2026-10-24T12:00:00Z", 2);
        assert_eq!(
            got,
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn latest_between_is_the_last_missed_tick() {
        let s = Schedule::parse("*/10 * * * *", None).unwrap();
        let t = s.latest_between(utc("2026-01-01T00:05:00Z"), utc("2026-01-01T00:47:00Z"));
        assert_eq!(t, Some(utc("2026-01-01T00:40:00Z")));
        assert_eq!(
            s.latest_between(utc("2026-01-01T00:05:00Z"), utc("2026-01-01T00:09:00Z")),
            None
        );
    }
}

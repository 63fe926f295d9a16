//! ISO-8601 durations (`PT0.2S`, `PT10M`, `P1D`) as Knative's DeliverySpec writes them.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A duration that keeps the text it was written as, so errors and round trips show the
/// user's own spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoDuration {
    text: String,
    duration: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid ISO-8601 duration {text:?}: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

impl IsoDuration {
    pub fn as_duration(&self) -> Duration {
        self.duration
    }

    pub fn from_duration(duration: Duration) -> Self {
        let text = format!("PT{}S", duration.as_secs_f64());
        Self { text, duration }
    }
}

impl FromStr for IsoDuration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| DurationError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let parsed = iso8601::duration(text).map_err(|e| err(&e))?;
        // Years and months have no fixed length; Knative rejects them too.
        if let iso8601::Duration::YMDHMS { year, month, .. } = parsed {
            if year != 0 || month != 0 {
                return Err(err(
                    "years and months are not fixed lengths; use days or smaller",
                ));
            }
        }
        Ok(Self {
            text: text.to_string(),
            duration: parsed.into(),
        })
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_knative_spellings() {
        let ms = |s: &str| s.parse::<IsoDuration>().unwrap().as_duration().as_millis();
        assert_eq!(ms("PT0.2S"), 200);
        assert_eq!(ms("PT1S"), 1000);
        assert_eq!(ms("PT10M"), 600_000);
        assert_eq!(ms("PT1H30M"), 5_400_000);
        assert_eq!(ms("P1D"), 86_400_000);
    }

    #[test]
    fn rejects_garbage_and_calendar_units() {
        assert!("10s".parse::<IsoDuration>().is_err());
        assert!("".parse::<IsoDuration>().is_err());
        let e = "P1M".parse::<IsoDuration>().unwrap_err();
        assert!(e.to_string().contains("P1M"), "{e}");
    }
}

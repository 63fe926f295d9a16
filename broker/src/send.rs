//! `herald send`: builds a CloudEvent (from flags or a JSON file) and POSTs it to a Broker.

use cloudevents::{EventBuilder, EventBuilderV10};
use herald_channels::event::json;
use herald_channels::WireEvent;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a CloudEvent (JSON format) or an array of them: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("invalid event: {0}")]
    Build(String),
    #[error("extension {0:?} must be written name=value")]
    Extension(String),
    #[error("ceOverrides must be JSON like {{\"extensions\": {{\"name\": \"value\"}}}}, not: {0}")]
    Overrides(String),
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// An event described by flags.
#[derive(Clone, Debug, Default)]
pub struct EventOptions {
    pub id: Option<String>,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub data: Option<String>,
    pub content_type: String,
    /// `name=value` pairs.
    pub extensions: Vec<String>,
}

/// Sets the extensions of Knative's `ceOverrides` JSON (`K_CE_OVERRIDES`) on every event,
/// replacing what they had, as Knative's adapter SDK does before sending.
pub fn apply_overrides(events: &mut [WireEvent], json: &str) -> Result<(), SendError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Overrides {
        #[serde(default)]
        extensions: std::collections::BTreeMap<String, String>,
    }
    let o: Overrides =
        serde_json::from_str(json).map_err(|_| SendError::Overrides(json.to_string()))?;
    for event in events.iter_mut() {
        for (name, value) in &o.extensions {
            event.set_extension(name, value.clone());
        }
    }
    Ok(())
}

pub fn build_event(o: &EventOptions) -> Result<WireEvent, SendError> {
    let id =
        o.id.clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let mut b = EventBuilderV10::new()
        .id(id)
        .source(o.source.as_str())
        .ty(o.ty.as_str())
        .time(chrono::Utc::now());
    if let Some(s) = &o.subject {
        b = b.subject(s.as_str());
    }
    for ext in &o.extensions {
        let (k, v) = ext
            .split_once('=')
            .ok_or_else(|| SendError::Extension(ext.clone()))?;
        b = b.extension(k, v);
    }
    if let Some(d) = &o.data {
        b = b.data(o.content_type.as_str(), d.clone());
    }
    b.build()
        .map(WireEvent::from)
        .map_err(|e| SendError::Build(e.to_string()))
}

/// Reads one event, or a batch (a JSON array), from a file in CloudEvents JSON format; the
/// data goes out as written in the file.
pub fn read_events(path: &PathBuf) -> Result<Vec<WireEvent>, SendError> {
    let text = std::fs::read_to_string(path).map_err(|source| SendError::Read {
        path: path.clone(),
        source,
    })?;
    let parse = |reason: String| SendError::Parse {
        path: path.clone(),
        reason,
    };
    if text.trim_start().starts_with('[') {
        let raw: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
        raw.into_iter()
            .map(|r| json::from_raw(r).map_err(|e| parse(e.to_string())))
            .collect()
    } else {
        json::from_slice(text.as_bytes())
            .map(|e| vec![e])
            .map_err(|e| parse(e.to_string()))
    }
}

/// POSTs the events: one in binary mode (or structured when asked), several as a batch,
/// with `Authorization: Bearer <token>` when given. Returns the HTTP status and the
/// response body.
pub async fn send(
    url: &str,
    events: Vec<WireEvent>,
    structured: bool,
    roots: Vec<reqwest::Certificate>,
    token: Option<&str>,
) -> Result<(u16, String), SendError> {
    let mut builder = reqwest::Client::builder();
    for ca in roots {
        builder = builder.add_root_certificate(ca);
    }
    let client = builder.build()?;
    let request = if events.len() == 1 && !structured {
        let event = events.into_iter().next().expect("one event");
        // Percent-encoded ce- headers, as Herald delivers: any attribute value arrives as sent.
        herald_dispatcher::delivery::binary_request(client.post(url), &event)
    } else if events.len() == 1 {
        herald_dispatcher::delivery::structured_request(client.post(url), &events[0])
    } else {
        let mut batch = b"[".to_vec();
        for (i, event) in events.iter().enumerate() {
            if i > 0 {
                batch.push(b',');
            }
            batch.extend_from_slice(&json::to_vec(event));
        }
        batch.push(b']');
        client
            .post(url)
            .header("content-type", crate::ingress::BATCH_CONTENT_TYPE)
            .body(batch)
    };
    let request = match token {
        Some(t) => request.bearer_auth(t),
        None => request,
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ext: &[&str]) -> WireEvent {
        build_event(&EventOptions {
            source: "/s".into(),
            ty: "t".into(),
            extensions: ext.iter().map(|e| e.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn ce_overrides_set_and_replace_extensions() {
        let mut events = vec![event(&["region=us", "keep=1"]), event(&[])];
        apply_overrides(&mut events, r#"{"extensions":{"region":"eu","team":"a"}}"#).unwrap();
        for e in &events {
            assert_eq!(e.attribute("region").as_deref(), Some("eu"));
            assert_eq!(e.attribute("team").as_deref(), Some("a"));
        }
        assert_eq!(events[0].attribute("keep").as_deref(), Some("1"));
    }

    #[test]
    fn ce_overrides_that_are_not_knatives_json_are_refused() {
        let mut events = vec![event(&[])];
        for bad in [
            "region=eu",
            r#"{"extension":{"a":"b"}}"#,
            r#"{"extensions":{"a":1}}"#,
        ] {
            let e = apply_overrides(&mut events, bad).unwrap_err();
            assert!(e.to_string().contains(bad), "{e}");
        }
    }
}

//! `herald send`: builds a CloudEvent (from flags or a JSON file) and POSTs it to a Broker.

use cloudevents::{Event, EventBuilder, EventBuilderV10};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a CloudEvent (JSON format) or an array of them: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid event: {0}")]
    Build(String),
    #[error("extension {0:?} must be written name=value")]
    Extension(String),
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

pub fn build_event(o: &EventOptions) -> Result<Event, SendError> {
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
    b.build().map_err(|e| SendError::Build(e.to_string()))
}

/// Reads one event, or a batch (a JSON array), from a file in CloudEvents JSON format.
pub fn read_events(path: &PathBuf) -> Result<Vec<Event>, SendError> {
    let text = std::fs::read_to_string(path).map_err(|source| SendError::Read {
        path: path.clone(),
        source,
    })?;
    let parse = |source| SendError::Parse {
        path: path.clone(),
        source,
    };
    if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(parse)
    } else {
        serde_json::from_str::<Event>(&text)
            .map(|e| vec![e])
            .map_err(parse)
    }
}

/// POSTs the events: one in binary mode (or structured when asked), several as a batch.
/// Returns the HTTP status and the response body.
pub async fn send(
    url: &str,
    events: Vec<Event>,
    structured: bool,
) -> Result<(u16, String), SendError> {
    let client = reqwest::Client::new();
    let request = if events.len() == 1 && !structured {
        let event = events.into_iter().next().expect("one event");
        // Percent-encoded ce- headers, as Herald delivers: any attribute value arrives as sent.
        herald_dispatcher::delivery::binary_request(client.post(url), &event)
            .map_err(|e| SendError::Build(e.to_string()))?
    } else if events.len() == 1 {
        client
            .post(url)
            .header("content-type", "application/cloudevents+json")
            .body(serde_json::to_vec(&events[0]).map_err(|e| SendError::Build(e.to_string()))?)
    } else {
        client
            .post(url)
            .header("content-type", crate::ingress::BATCH_CONTENT_TYPE)
            .body(serde_json::to_vec(&events).map_err(|e| SendError::Build(e.to_string()))?)
    };
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

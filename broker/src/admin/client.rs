//! The CLI's client of the admin API (`herald apply|get|describe|delete|replay|dlq`).

use super::resources::APPLIED_HEADER;
use super::{ReplayRequest, ReplayResponse, BROKERS_PATH, DLQ_PATH, REPLAY_PATH, ROUTES_PATH};
use crate::plane::RouteCounters;
use herald_core::{Kind, Resource, ResourceKey};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server refused; `message` is its own words (the field in error, for an apply).
    #[error("{url} answered {status}: {message}")]
    Refused {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from {url}: {detail}")]
    Unexpected { url: String, detail: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

pub struct AdminClient {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl AdminClient {
    /// `server` is the admin base URL, e.g. `http://127.0.0.1:8080`; `token` the admin
    /// token, when the server requires one.
    pub fn new(server: &str, token: Option<String>) -> Self {
        Self {
            base: server.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            token,
        }
    }

    /// Like `new`, trusting `roots` (a private CA, `--ca-file`) besides the public roots for
    /// an `https://` server.
    pub fn trusting(
        server: &str,
        token: Option<String>,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<Self, ClientError> {
        let mut builder = reqwest::Client::builder();
        for ca in roots {
            builder = builder.add_root_certificate(ca);
        }
        Ok(Self {
            base: server.trim_end_matches('/').to_string(),
            http: builder.build().map_err(ClientError::Client)?,
            token,
        })
    }

    fn collection(&self, kind: Kind, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) => format!(
                "{}/apis/{}/namespaces/{ns}/{}",
                self.base,
                kind.api_version(),
                kind.plural()
            ),
            None => format!(
                "{}/apis/{}/{}",
                self.base,
                kind.api_version(),
                kind.plural()
            ),
        }
    }

    fn object(&self, kind: Kind, key: &ResourceKey) -> String {
        format!(
            "{}/{}",
            self.collection(kind, Some(&key.namespace)),
            key.name
        )
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let request = match &self.token {
            Some(t) => request.bearer_auth(t),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.to_string(),
                source,
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        // A Kubernetes Status carries the message; anything else is shown as it came.
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| body.trim().to_string());
        Err(ClientError::Refused {
            url: url.to_string(),
            status: status.as_u16(),
            message,
        })
    }

    async fn json(
        url: &str,
        response: reqwest::Response,
    ) -> Result<serde_json::Value, ClientError> {
        response.json().await.map_err(|e| ClientError::Unexpected {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    /// Applies `resource`; returns `created`, `configured` or `unchanged`.
    pub async fn apply(&self, resource: &Resource) -> Result<String, ClientError> {
        let url = self.object(resource.kind(), &resource.key());
        let request = self
            .http
            .put(&url)
            .header("content-type", "application/json")
            .body(resource.to_json().to_string());
        let response = self.send(&url, request).await?;
        Ok(response
            .headers()
            .get(APPLIED_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("configured")
            .to_string())
    }

    /// One object, with status.
    pub async fn get(
        &self,
        kind: Kind,
        key: &ResourceKey,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.object(kind, key);
        let response = self.send(&url, self.http.get(&url)).await?;
        Self::json(&url, response).await
    }

    /// Every object of `kind` in `namespace` (all namespaces when `None`).
    pub async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let url = self.collection(kind, namespace);
        let response = self.send(&url, self.http.get(&url)).await?;
        let list = Self::json(&url, response).await?;
        match list["items"].as_array() {
            Some(items) => Ok(items.clone()),
            None => Err(ClientError::Unexpected {
                url,
                detail: "no `items` in the list".into(),
            }),
        }
    }

    pub async fn delete(&self, kind: Kind, key: &ResourceKey) -> Result<(), ClientError> {
        let url = self.object(kind, key);
        self.send(&url, self.http.delete(&url)).await?;
        Ok(())
    }

    /// The parked events of a Broker's Triggers (or of one): `[{trigger, broker, durable,
    /// items}]`.
    pub async fn dlq_list(
        &self,
        broker: &ResourceKey,
        trigger: Option<&str>,
    ) -> Result<Vec<serde_json::Value>, ClientError> {
        let mut url = format!(
            "{}{DLQ_PATH}/{}/{}",
            self.base, broker.namespace, broker.name
        );
        if let Some(t) = trigger {
            url.push_str(&format!("?trigger={t}"));
        }
        let response = self.send(&url, self.http.get(&url)).await?;
        match Self::json(&url, response).await? {
            serde_json::Value::Array(lists) => Ok(lists),
            other => Err(ClientError::Unexpected {
                url,
                detail: format!("expected a list, got {other}"),
            }),
        }
    }

    fn dlq_entry(&self, broker: &ResourceKey, trigger: &str, id: u64) -> String {
        format!(
            "{}{DLQ_PATH}/{}/{}/{trigger}/{id}",
            self.base, broker.namespace, broker.name
        )
    }

    /// One parked event, whole.
    pub async fn dlq_show(
        &self,
        broker: &ResourceKey,
        trigger: &str,
        id: u64,
    ) -> Result<serde_json::Value, ClientError> {
        let url = self.dlq_entry(broker, trigger, id);
        let response = self.send(&url, self.http.get(&url)).await?;
        Self::json(&url, response).await
    }

    /// Redrives one parked event: `{trigger, id, disposition}`.
    pub async fn dlq_redrive(
        &self,
        broker: &ResourceKey,
        trigger: &str,
        id: u64,
    ) -> Result<serde_json::Value, ClientError> {
        let url = format!("{}/redrive", self.dlq_entry(broker, trigger, id));
        let response = self.send(&url, self.http.post(&url)).await?;
        Self::json(&url, response).await
    }

    /// Discards one parked event (`Some(id)`) or all of the Trigger's: `{trigger, deleted}`.
    pub async fn dlq_delete(
        &self,
        broker: &ResourceKey,
        trigger: &str,
        id: Option<u64>,
    ) -> Result<serde_json::Value, ClientError> {
        let url = match id {
            Some(id) => self.dlq_entry(broker, trigger, id),
            None => format!(
                "{}{DLQ_PATH}/{}/{}/{trigger}",
                self.base, broker.namespace, broker.name
            ),
        };
        let response = self.send(&url, self.http.delete(&url)).await?;
        Self::json(&url, response).await
    }

    pub async fn replay(&self, request: &ReplayRequest) -> Result<ReplayResponse, ClientError> {
        let url = format!("{}{REPLAY_PATH}", self.base);
        let response = self.send(&url, self.http.post(&url).json(request)).await?;
        response.json().await.map_err(|e| ClientError::Unexpected {
            url,
            detail: e.to_string(),
        })
    }

    /// A running Trigger's or Subscription's counters and lag.
    pub async fn route_counters(
        &self,
        kind: Kind,
        key: &ResourceKey,
    ) -> Result<RouteCounters, ClientError> {
        let url = format!(
            "{}{ROUTES_PATH}/{}/{}/{}",
            self.base,
            key.namespace,
            kind.plural(),
            key.name
        );
        let response = self.send(&url, self.http.get(&url)).await?;
        response.json().await.map_err(|e| ClientError::Unexpected {
            url,
            detail: e.to_string(),
        })
    }

    /// Opens a Broker's live event stream (`filter`: a CESQL expression).
    pub async fn watch(
        &self,
        broker: &ResourceKey,
        filter: Option<&str>,
    ) -> Result<EventStream, ClientError> {
        let url = format!(
            "{}{BROKERS_PATH}/{}/{}/events",
            self.base, broker.namespace, broker.name
        );
        let mut request = self.http.get(&url);
        if let Some(f) = filter {
            request = request.query(&[("filter", f)]);
        }
        let response = self.send(&url, request).await?;
        Ok(EventStream {
            response,
            buffer: Vec::new(),
        })
    }
}

/// A Server-Sent Events stream, read message by message.
pub struct EventStream {
    response: reqwest::Response,
    /// What arrived and is not yet a whole message.
    buffer: Vec<u8>,
}

/// One Server-Sent Events message: its `event` name and its `data` lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    pub event: String,
    pub data: String,
}

impl EventStream {
    /// The next message; `None` once the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<SseMessage>, reqwest::Error> {
        loop {
            if let Some(message) = take_message(&mut self.buffer) {
                if message.event.is_empty() && message.data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok(Some(message));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}

/// Cuts the first whole message (ended by a blank line) off `buffer`; bytes, so a character
/// split across chunks is whole by then.
fn take_message(buffer: &mut Vec<u8>) -> Option<SseMessage> {
    let end = buffer.windows(2).position(|w| w == b"\n\n")?;
    let block: Vec<u8> = buffer.drain(..end + 2).collect();
    let block = String::from_utf8_lossy(&block[..end]);
    let mut message = SseMessage {
        event: String::new(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for line in block.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => message.event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    message.data = data.join("\n");
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::take_message;

    #[test]
    fn messages_are_cut_at_blank_lines_and_data_lines_joined() {
        let mut buffer =
            Vec::from(":\n\nevent: cloudevent\ndata: {\"a\":\ndata: 1}\n\nevent: mis".as_bytes());
        let keep_alive = take_message(&mut buffer).unwrap();
        assert!(keep_alive.event.is_empty() && keep_alive.data.is_empty());
        let m = take_message(&mut buffer).unwrap();
        assert_eq!(m.event, "cloudevent");
        assert_eq!(m.data, "{\"a\":\n1}");
        assert!(take_message(&mut buffer).is_none());
        assert_eq!(buffer, b"event: mis");
    }
}

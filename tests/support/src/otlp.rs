//! An OTLP/HTTP (protobuf) receiver on 127.0.0.1 that keeps every span exported to it,
//! flattened, for tests of Herald's span export.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The spans received so far.
pub type Received = Arc<Mutex<Vec<Exported>>>;

/// One exported span, flattened.
#[derive(Clone, Debug)]
pub struct Exported {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub kind: i32,
    /// OTLP's status code: 2 is ERROR.
    pub status: i32,
    pub service: Option<String>,
    pub attributes: Vec<(String, String)>,
}

impl Exported {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn flatten(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => s.clone(),
                Some(Value::BoolValue(b)) => b.to_string(),
                Some(Value::IntValue(i)) => i.to_string(),
                Some(Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), v)
        })
        .collect()
}

/// An OTLP/HTTP receiver: `POST /v1/traces` with an ExportTraceServiceRequest; its base URL
/// (what `--otlp-endpoint` takes) and what it received.
pub async fn receiver() -> (String, Received) {
    async fn export(State(got): State<Received>, body: Bytes) -> impl IntoResponse {
        let Ok(request) = ExportTraceServiceRequest::decode(body) else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        for rs in request.resource_spans {
            let service = rs.resource.as_ref().and_then(|r| {
                flatten(&r.attributes)
                    .into_iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v)
            });
            for ss in rs.scope_spans {
                for s in ss.spans {
                    got.lock().unwrap().push(Exported {
                        name: s.name.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        kind: s.kind,
                        status: s.status.as_ref().map_or(0, |st| st.code),
                        service: service.clone(),
                        attributes: flatten(&s.attributes),
                    });
                }
            }
        }
        (
            [("content-type", "application/x-protobuf")],
            Vec::<u8>::new(),
        )
            .into_response()
    }
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v1/traces", axum::routing::post(export))
        .with_state(got.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

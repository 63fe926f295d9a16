//! EventTransform's JSONata: the event goes in as its JSON format (attributes and `data`), the
//! expression's result comes out as an event in the same form. jsonata-rs is an incomplete
//! implementation of JSONata; expressions it cannot parse are refused when the EventTransform
//! is applied, so a transform that was accepted only fails on events its functions reject.

use bumpalo::Bump;
use herald_channels::event::json;
use herald_channels::WireEvent;
use jsonata_rs::JsonAta;

/// Longest an expression may run on one event, in milliseconds, and how deep it may recurse:
/// a transform must not hang a delivery.
const TIME_LIMIT_MS: usize = 1_000;
const MAX_DEPTH: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("invalid JSONata expression: {0}")]
    Expression(String),
    #[error("the expression failed on event {id}: {message}")]
    Evaluation { id: String, message: String },
    #[error("the expression's result for event {id} is not a CloudEvent: {message}")]
    NotAnEvent { id: String, message: String },
}

/// A JSONata expression, checked once and evaluated per event.
#[derive(Clone, Debug)]
pub struct Transform {
    expression: String,
}

impl Transform {
    /// Checks that the expression parses.
    pub fn compile(expression: &str) -> Result<Self, TransformError> {
        let arena = Bump::new();
        JsonAta::new(expression, &arena).map_err(|e| TransformError::Expression(e.to_string()))?;
        Ok(Self {
            expression: expression.to_string(),
        })
    }

    pub fn apply(&self, event: &WireEvent) -> Result<WireEvent, TransformError> {
        let id = cloudevents::AttributesReader::id(&**event).to_string();
        let input = input_json(event).to_string();
        // jsonata-rs allocates a parsed expression in an arena borrowed for its lifetime, so
        // it is parsed again per event (cheap next to an HTTP delivery).
        let arena = Bump::new();
        let jsonata = JsonAta::new(&self.expression, &arena)
            .map_err(|e| TransformError::Expression(e.to_string()))?;
        let result = jsonata
            .evaluate_timeboxed(Some(&input), Some(MAX_DEPTH), Some(TIME_LIMIT_MS))
            .map_err(|e| TransformError::Evaluation {
                id: id.clone(),
                message: e.to_string(),
            })?;
        let output = result.serialize(false);
        let mut out =
            json::from_slice(output.as_bytes()).map_err(|e| TransformError::NotAnEvent {
                id,
                message: format!("{e}: {output}"),
            })?;
        out.set_trace(event.trace().clone());
        Ok(out)
    }
}

/// The event as JSONata sees it: its JSON format, with JSON data (whichever mode it came in)
/// as a JSON value under `data`, so `data.field` paths work whatever the event's mode.
fn input_json(event: &WireEvent) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_slice(&json::to_vec(event)).unwrap_or_default();
    let json_data = event.datacontenttype().is_none_or(|ct| ct.contains("json"));
    if let (true, Some(body), serde_json::Value::Object(m)) =
        (json_data, event.body().as_deref(), &mut value)
    {
        if let Ok(data) = serde_json::from_slice::<serde_json::Value>(body) {
            m.remove("data_base64");
            m.insert("data".into(), data);
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn order() -> WireEvent {
        EventBuilderV10::new()
            .id("o-1")
            .source("/shop")
            .ty("order.created")
            .data(
                "application/json",
                serde_json::json!({"reason": "new", "amount": 42, "items": [1, 2]}),
            )
            .build()
            .unwrap()
            .into()
    }

    /// Knative's documented shape: a new event built from the old one's attributes and data.
    #[test]
    fn knative_style_expressions_rebuild_attributes_and_data() {
        let t = Transform::compile(
            r#"{
              "specversion": "1.0",
              "id": id,
              "type": "transformed-event",
              "source": "event-transform",
              "reason": data.reason,
              "datacontenttype": "application/json",
              "data": { "total": data.amount * 2, "count": $count(data.items) }
            }"#,
        )
        .unwrap();
        let out = t.apply(&order()).unwrap();
        assert_eq!(out.id(), "o-1");
        assert_eq!(out.ty(), "transformed-event");
        assert_eq!(out.source().as_str(), "event-transform");
        assert_eq!(
            out.extension("reason").map(|v| v.to_string()).as_deref(),
            Some("new")
        );
        let data: serde_json::Value = serde_json::from_slice(&out.body().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"total": 84, "count": 2}));
    }

    #[test]
    fn bad_expressions_and_results_that_are_not_events_are_errors() {
        assert!(matches!(
            Transform::compile("{ \"a\": "),
            Err(TransformError::Expression(_))
        ));
        let not_an_event = Transform::compile("data.amount").unwrap();
        let e = not_an_event.apply(&order()).unwrap_err();
        assert!(matches!(e, TransformError::NotAnEvent { .. }), "{e}");
    }
}

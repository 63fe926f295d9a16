//! `herald describe KIND NAME`: one resource the way `kubectl describe` / `kn broker
//! describe` show it — its key spec fields (filter, subscriber, delivery), address, every
//! status condition, and what the admin API knows around it: a Broker's Triggers, a
//! Channel's Subscriptions, a Trigger's or Subscription's counters and lag.

use super::resources::{age, event_type_attribute, event_type_schema, render_table, ServerArgs};
use crate::admin::client::{AdminClient, ClientError};
use crate::plane::RouteCounters;
use anyhow::bail;
use clap::{Args, ValueEnum};
use herald_core::{Kind, ResourceKey, DEFAULT_NAMESPACE};
use serde_json::{json, Map, Value};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DescribeOutput {
    Text,
    Yaml,
    Json,
}

#[derive(Args)]
pub struct DescribeArgs {
    /// brokers, triggers, channels, subscriptions, sequences, parallels, eventtransforms,
    /// eventpolicies or a source kind (kubectl spellings: broker, Trigger, ...).
    pub kind: Kind,
    pub name: String,
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// `yaml` and `json` give the object with the related facts under `related`.
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: DescribeOutput,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// What a resource's description shows besides the object itself.
#[derive(Default)]
struct Related {
    /// A Broker's Triggers or a Channel's Subscriptions.
    members: Option<(Kind, Vec<Value>)>,
    /// A route's counters; `None` inside when it does not run here.
    counters: Option<Option<RouteCounters>>,
    /// The EventTypes a Broker or Channel has recorded or declares (`spec.reference`).
    event_types: Option<Vec<Value>>,
}

pub async fn describe(a: DescribeArgs) -> anyhow::Result<()> {
    let client = a.server.client()?;
    let key = ResourceKey::new(&a.namespace, &a.name);
    let object = match client.get(a.kind, &key).await {
        Ok(o) => o,
        Err(ClientError::Refused { status: 404, .. }) => bail!(
            "{} {:?} not found in namespace {:?}",
            a.kind,
            a.name,
            a.namespace
        ),
        Err(e) => return Err(e.into()),
    };
    let related = related(&client, a.kind, &object, &key).await?;
    match a.output {
        DescribeOutput::Text => println!("{}", text(a.kind, &object, &related).trim_end()),
        DescribeOutput::Json | DescribeOutput::Yaml => {
            let mut whole = object.clone();
            whole["related"] = related_json(&related);
            let out = match a.output {
                DescribeOutput::Json => serde_json::to_string_pretty(&whole)?,
                _ => serde_yaml::to_string(&whole)?,
            };
            println!("{}", out.trim_end());
        }
    }
    Ok(())
}

async fn related(
    client: &AdminClient,
    kind: Kind,
    object: &Value,
    key: &ResourceKey,
) -> anyhow::Result<Related> {
    let mut related = Related::default();
    match kind {
        Kind::Broker => {
            let triggers = client.list(Kind::Trigger, Some(&key.namespace)).await?;
            let mine = triggers
                .into_iter()
                .filter(|t| trigger_broker(t) == key.name)
                .collect();
            related.members = Some((Kind::Trigger, mine));
            related.event_types = event_types_of(client, object, key).await;
        }
        Kind::Channel => {
            let subscriptions = client
                .list(Kind::Subscription, Some(&key.namespace))
                .await?;
            let mine = subscriptions
                .into_iter()
                .filter(|s| s["spec"]["channel"]["name"] == key.name.as_str())
                .collect();
            related.members = Some((Kind::Subscription, mine));
            related.event_types = event_types_of(client, object, key).await;
        }
        Kind::Trigger | Kind::Subscription => {
            related.counters = Some(match client.route_counters(kind, key).await {
                Ok(c) => Some(c),
                Err(ClientError::Refused { status: 404, .. }) => None,
                Err(e) => return Err(e.into()),
            });
        }
        _ => {}
    }
    Ok(related)
}

/// The EventTypes whose `spec.reference` is this Broker or Channel (as the kind it was
/// written as: a Channel's may be an InMemoryChannel), by type; `None` when they cannot be
/// listed (a server without EventTypes).
async fn event_types_of(
    client: &AdminClient,
    object: &Value,
    key: &ResourceKey,
) -> Option<Vec<Value>> {
    let all = match client.list(Kind::EventType, Some(&key.namespace)).await {
        Ok(all) => all,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list EventTypes");
            return None;
        }
    };
    let mut mine: Vec<Value> = all
        .into_iter()
        .filter(|e| {
            let r = &e["spec"]["reference"];
            r["kind"] == object["kind"] && r["name"] == key.name.as_str()
        })
        .collect();
    mine.sort_by_key(|e| {
        (
            event_type_attribute(e, "type"),
            event_type_attribute(e, "source"),
        )
    });
    Some(mine)
}

fn related_json(related: &Related) -> Value {
    let mut out = Map::new();
    if let Some((kind, members)) = &related.members {
        let names: Vec<Value> = members
            .iter()
            .map(|m| {
                let (status, reason) = ready_of(m);
                json!({"name": m["metadata"]["name"], "ready": status, "reason": reason})
            })
            .collect();
        out.insert(kind.plural().to_string(), Value::Array(names));
    }
    if let Some(event_types) = &related.event_types {
        let types: Vec<Value> = event_types
            .iter()
            .map(|e| {
                json!({"name": e["metadata"]["name"], "type": event_type_attribute(e, "type"),
                       "source": event_type_attribute(e, "source")})
            })
            .collect();
        out.insert("eventtypes".into(), Value::Array(types));
    }
    if let Some(counters) = &related.counters {
        out.insert(
            "counters".into(),
            serde_json::to_value(counters).unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// The Broker a Trigger names (`spec.broker`, or Herald's `spec.brokerRef`).
fn trigger_broker(trigger: &Value) -> String {
    match trigger["spec"]["broker"].as_str() {
        Some(b) if !b.is_empty() => b.to_string(),
        _ => str_of(&trigger["spec"]["brokerRef"]["name"]),
    }
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The `Ready` condition's status and reason.
fn ready_of(object: &Value) -> (String, String) {
    let ready = object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    (str_of(&ready["status"]), str_of(&ready["reason"]))
}

/// Lines of `Key:  value`, values aligned per indentation level, as kubectl prints them.
#[derive(Default)]
struct Doc {
    lines: Vec<Line>,
}

enum Line {
    Field {
        indent: usize,
        key: String,
        value: String,
    },
    /// Printed as it is (a table, a YAML block), each line indented.
    Block { indent: usize, text: String },
}

impl Doc {
    fn field(&mut self, indent: usize, key: &str, value: impl Into<String>) {
        self.lines.push(Line::Field {
            indent,
            key: key.to_string(),
            value: value.into(),
        });
    }

    fn block(&mut self, indent: usize, text: impl Into<String>) {
        self.lines.push(Line::Block {
            indent,
            text: text.into(),
        });
    }

    fn render(&self) -> String {
        let width = |level: usize| {
            self.lines
                .iter()
                .filter_map(|l| match l {
                    Line::Field { indent, key, value } if *indent == level && !value.is_empty() => {
                        Some(key.chars().count() + 1)
                    }
                    _ => None,
                })
                .max()
                .unwrap_or(0)
        };
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Field { indent, key, value } if value.is_empty() => {
                    out.push_str(&format!("{}{key}:\n", "  ".repeat(*indent)));
                }
                Line::Field { indent, key, value } => {
                    let label = format!("{key}:");
                    let w = width(*indent) + 2;
                    out.push_str(&format!("{}{label:<w$}{value}\n", "  ".repeat(*indent)));
                }
                Line::Block { indent, text } => {
                    for l in text.lines() {
                        out.push_str(format!("{}{l}", "  ".repeat(*indent)).trim_end());
                        out.push('\n');
                    }
                }
            }
        }
        out
    }
}

/// A Knative destination: its `uri`, or the object its `ref` names (plus a `uri` path).
fn destination(d: &Value) -> String {
    let r = &d["ref"];
    let uri = str_of(&d["uri"]);
    if r.is_object() {
        let mut text = format!("{} {}", str_of(&r["kind"]), str_of(&r["name"]));
        if let Some(ns) = r["namespace"].as_str() {
            text = format!("{} {ns}/{}", str_of(&r["kind"]), str_of(&r["name"]));
        }
        if !uri.is_empty() {
            text.push_str(&format!(" (uri {uri})"));
        }
        text
    } else {
        uri
    }
}

/// A Trigger's filter: `spec.filter.attributes` as `name=value`, `spec.filters` as JSON.
fn filter(spec: &Value) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(attributes) = spec["filter"]["attributes"].as_object() {
        let pairs: Vec<String> = attributes
            .iter()
            .map(|(k, v)| format!("{k}={}", str_of(v)))
            .collect();
        if !pairs.is_empty() {
            parts.push(pairs.join(", "));
        }
    }
    if let Some(filters) = spec["filters"].as_array().filter(|f| !f.is_empty()) {
        parts.push(Value::Array(filters.clone()).to_string());
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// `spec.delivery`: retries, backoff, timeout and dead-letter sink.
fn delivery(doc: &mut Doc, indent: usize, d: &Value) {
    let Some(fields) = d.as_object().filter(|f| !f.is_empty()) else {
        return;
    };
    doc.field(indent, "Delivery", "");
    let i = indent + 1;
    if let Some(r) = fields.get("retry") {
        doc.field(i, "Retry", str_of(r));
    }
    if fields.contains_key("backoffPolicy") || fields.contains_key("backoffDelay") {
        let policy = fields
            .get("backoffPolicy")
            .map(str_of)
            .unwrap_or_else(|| "exponential".into());
        let backoff = match fields.get("backoffDelay") {
            Some(delay) => format!("{policy}, delay {}", str_of(delay)),
            None => policy,
        };
        doc.field(i, "Backoff", backoff);
    }
    for (key, label) in [("timeout", "Timeout"), ("retryAfterMax", "Retry-After max")] {
        if let Some(v) = fields.get(key) {
            doc.field(i, label, str_of(v));
        }
    }
    if let Some(dls) = fields.get("deadLetterSink") {
        doc.field(i, "Dead-letter sink", destination(dls));
    }
    if let Some(format) = fields.get("format") {
        doc.field(i, "Format", str_of(format));
    }
}

/// The spec fields [`text`] shows by name; the rest of the spec is shown as YAML.
const SHOWN_SPEC: [&str; 9] = [
    "broker",
    "channel",
    "brokerRef",
    "filter",
    "filters",
    "subscriber",
    "reply",
    "delivery",
    "sink",
];

/// The status fields [`text`] shows by name; the rest of the status is shown as YAML.
const SHOWN_STATUS: [&str; 6] = [
    "conditions",
    "observedGeneration",
    "address",
    "subscriberUri",
    "deadLetterSinkUri",
    "sinkUri",
];

/// An object's remaining fields as YAML; empty when there are none.
fn rest_yaml(object: &Value, shown: &[&str]) -> String {
    let Some(fields) = object.as_object() else {
        return String::new();
    };
    let rest: Map<String, Value> = fields
        .iter()
        .filter(|(k, v)| !shown.contains(&k.as_str()) && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if rest.is_empty() {
        return String::new();
    }
    serde_yaml::to_string(&Value::Object(rest)).unwrap_or_default()
}

/// The whole description.
fn text(kind: Kind, object: &Value, related: &Related) -> String {
    let meta = &object["metadata"];
    let spec = &object["spec"];
    let status = &object["status"];
    let mut doc = Doc::default();
    doc.field(0, "Name", str_of(&meta["name"]));
    doc.field(0, "Namespace", str_of(&meta["namespace"]));
    doc.field(
        0,
        "Kind",
        format!("{} ({})", kind.name(), kind.api_version()),
    );
    for (key, label) in [("labels", "Labels"), ("annotations", "Annotations")] {
        if let Some(map) = meta[key].as_object().filter(|m| !m.is_empty()) {
            let pairs: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("{k}={}", str_of(v)))
                .collect();
            doc.field(0, label, pairs.join(", "));
        }
    }
    doc.field(0, "Age", age(meta["creationTimestamp"].as_str()));
    if !meta["generation"].is_null() {
        let observed = match &status["observedGeneration"] {
            Value::Null => "none".to_string(),
            o => str_of(o),
        };
        let generation = str_of(&meta["generation"]);
        doc.field(
            0,
            "Generation",
            format!("{generation} (observed {observed})"),
        );
    }

    // Key spec fields.
    if kind == Kind::Trigger {
        doc.field(0, "Broker", trigger_broker(object));
        doc.field(0, "Filter", filter(spec).unwrap_or_else(|| "<none>".into()));
    }
    if kind == Kind::Subscription {
        let channel = &spec["channel"];
        doc.field(
            0,
            "Channel",
            format!("{} {}", str_of(&channel["kind"]), str_of(&channel["name"])),
        );
    }
    for (key, label) in [
        ("subscriber", "Subscriber"),
        ("reply", "Reply"),
        ("sink", "Sink"),
    ] {
        if spec[key].is_object() {
            doc.field(0, label, destination(&spec[key]));
        }
    }
    // The URIs the references resolved to.
    for (key, label) in [
        ("subscriberUri", "Subscriber URI"),
        ("deadLetterSinkUri", "Dead-letter sink URI"),
        ("sinkUri", "Sink URI"),
    ] {
        if let Some(uri) = status[key].as_str() {
            doc.field(0, label, uri);
        }
    }
    if let Some(physical) = status["physicalSubscription"].as_object() {
        for (key, label) in [
            ("subscriberUri", "Subscriber URI"),
            ("replyUri", "Reply URI"),
            ("deadLetterSinkUri", "Dead-letter sink URI"),
        ] {
            if let Some(uri) = physical.get(key).and_then(Value::as_str) {
                doc.field(0, label, uri);
            }
        }
    }
    if let Some(url) = status["address"]["url"].as_str() {
        doc.field(0, "Address", url);
    }
    delivery(&mut doc, 0, &spec["delivery"]);
    let rest = rest_yaml(spec, &SHOWN_SPEC);
    if !rest.is_empty() {
        doc.field(0, "Spec", "");
        doc.block(1, rest);
    }

    // Status.
    doc.field(0, "Conditions", "");
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    if conditions.is_empty() {
        doc.block(1, "<none>");
    } else {
        let mut rows = vec![["TYPE", "STATUS", "AGE", "REASON", "MESSAGE"]
            .map(String::from)
            .to_vec()];
        for c in &conditions {
            rows.push(vec![
                str_of(&c["type"]),
                str_of(&c["status"]),
                age(c["lastTransitionTime"].as_str()),
                str_of(&c["reason"]),
                str_of(&c["message"]),
            ]);
        }
        doc.block(1, render_table(&rows));
    }
    let mut shown_status = SHOWN_STATUS.to_vec();
    shown_status.push("physicalSubscription");
    let rest = rest_yaml(status, &shown_status);
    if !rest.is_empty() {
        doc.field(0, "Status", "");
        doc.block(1, rest);
    }

    // Around it.
    if let Some((member_kind, members)) = &related.members {
        let title = format!("{}s", member_kind.name());
        if members.is_empty() {
            doc.field(0, &title, "<none>");
        } else {
            doc.field(0, &title, "");
            let mut rows = vec![["NAME", "SUBSCRIBER_URI", "READY", "REASON"]
                .map(String::from)
                .to_vec()];
            for m in members {
                let (ready, reason) = ready_of(m);
                let uri = match m["status"]["subscriberUri"].as_str() {
                    Some(u) => u.to_string(),
                    None => str_of(&m["status"]["physicalSubscription"]["subscriberUri"]),
                };
                rows.push(vec![str_of(&m["metadata"]["name"]), uri, ready, reason]);
            }
            doc.block(1, render_table(&rows));
        }
    }
    if let Some(event_types) = &related.event_types {
        if event_types.is_empty() {
            doc.field(0, "EventTypes", "<none>");
        } else {
            doc.field(0, "EventTypes", "");
            let mut rows = vec![["TYPE", "SOURCE", "SCHEMA", "NAME"]
                .map(String::from)
                .to_vec()];
            for e in event_types {
                let schema = event_type_schema(e);
                rows.push(vec![
                    event_type_attribute(e, "type"),
                    event_type_attribute(e, "source"),
                    schema,
                    str_of(&e["metadata"]["name"]),
                ]);
            }
            doc.block(1, render_table(&rows));
        }
    }
    match &related.counters {
        Some(Some(c)) => {
            doc.field(0, "Counters", "");
            doc.field(1, "Delivered", c.delivered.to_string());
            doc.field(1, "Retried", c.retried.to_string());
            doc.field(1, "Dead-lettered", c.dead_lettered.to_string());
            doc.field(1, "Parked", c.parked.to_string());
            doc.field(
                1,
                "Lag",
                c.lag.map_or_else(|| "unknown".into(), |l| l.to_string()),
            );
        }
        Some(None) => doc.field(0, "Counters", "<none: not running>"),
        None => {}
    }
    doc.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trigger() -> Value {
        json!({
            "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "ns", "generation": 2},
            "spec": {
                "broker": "b",
                "filter": {"attributes": {"type": "com.example.a"}},
                "filters": [{"cesql": "source LIKE 'x%'"}],
                "subscriber": {"ref": {"apiVersion": "v1", "kind": "Service", "name": "svc"}},
                "delivery": {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.5S",
                             "deadLetterSink": {"uri": "http://dls/"}},
            },
            "status": {
                "observedGeneration": 2,
                "subscriberUri": "http://svc/",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ResolveFailed",
                     "message": "no such Service"},
                    {"type": "BrokerReady", "status": "True"},
                ],
            },
        })
    }

    #[test]
    fn a_trigger_shows_filter_subscriber_delivery_conditions_and_counters() {
        let related = Related {
            members: None,
            event_types: None,
            counters: Some(Some(RouteCounters {
                kind: "Trigger".into(),
                namespace: "ns".into(),
                name: "t".into(),
                delivered: 5,
                retried: 2,
                dead_lettered: 1,
                parked: 0,
                lag: Some(7),
            })),
        };
        let out = text(Kind::Trigger, &trigger(), &related);
        let expected = "\
Name:            t
Namespace:       ns
Kind:            Trigger (eventing.knative.dev/v1)
Age:             -
Generation:      2 (observed 2)
Broker:          b
Filter:          type=com.example.a; [{\"cesql\":\"source LIKE 'x%'\"}]
Subscriber:      Service svc
Subscriber URI:  http://svc/
Delivery:
  Retry:             3
  Backoff:           linear, delay PT0.5S
  Dead-letter sink:  http://dls/
Conditions:
  TYPE          STATUS   AGE   REASON          MESSAGE
  Ready         False    -     ResolveFailed   no such Service
  BrokerReady   True     -
Counters:
  Delivered:         5
  Retried:           2
  Dead-lettered:     1
  Parked:            0
  Lag:               7
";
        assert_eq!(out, expected, "\n{out}");
    }

    #[test]
    fn unnamed_spec_and_status_fields_are_shown_as_yaml() {
        let source = json!({
            "metadata": {"name": "tick", "namespace": "ns"},
            "spec": {"schedule": "@every 1m", "sink": {"uri": "http://s/"}},
            "status": {"sinkUri": "http://s/", "eventCounts": {"delivered": 3}},
        });
        let out = text(Kind::PingSource, &source, &Related::default());
        assert!(
            out.contains("\nSink:       http://s/\nSink URI:   http://s/\n"),
            "{out}"
        );
        assert!(!out.contains("Generation"), "{out}");
        assert!(out.contains("Spec:\n  schedule: '@every 1m'\n"), "{out}");
        assert!(
            out.contains("Status:\n  eventCounts:\n    delivered: 3\n"),
            "{out}"
        );
        assert!(out.contains("Conditions:\n  <none>\n"), "{out}");
    }
}

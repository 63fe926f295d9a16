//! `herald apply|get|delete`: kubectl's habits against a running Herald's admin API.

use crate::admin::client::AdminClient;
use anyhow::bail;
use clap::{Args, ValueEnum};
use herald_core::{Kind, Resource, ResourceKey, DEFAULT_NAMESPACE};
use std::path::PathBuf;

#[derive(Args)]
pub struct ServerArgs {
    /// The running Herald's admin API URL (`herald serve --admin-addr`).
    #[arg(long, env = "HERALD_SERVER", default_value = "http://127.0.0.1:8081")]
    pub server: String,
    /// The admin token, when the server was started with one.
    #[arg(long, env = "HERALD_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM file of CAs to trust for an https:// --server besides the public roots.
    #[arg(long, env = "HERALD_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

impl ServerArgs {
    /// The admin API client these flags describe.
    pub fn client(&self) -> anyhow::Result<AdminClient> {
        admin_client(&self.server, self.token.clone(), self.ca_file.as_deref())
    }
}

/// An admin API client, trusting the CAs of `ca_file` when given.
pub fn admin_client(
    server: &str,
    token: Option<String>,
    ca_file: Option<&std::path::Path>,
) -> anyhow::Result<AdminClient> {
    let roots = match ca_file {
        Some(path) => crate::tls::ca_certificates(path)?,
        None => Vec::new(),
    };
    Ok(AdminClient::trusting(server, token, roots)?)
}

#[derive(Args)]
pub struct ApplyArgs {
    /// A YAML file, or a directory of them.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Namespace of resources that name none.
    #[arg(short, long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// brokers, triggers, channels, subscriptions, sequences or parallels (kubectl
    /// spellings: broker, brokers, Trigger, ...).
    #[arg(required_unless_present = "file")]
    pub kind: Option<Kind>,
    /// Names to delete.
    pub names: Vec<String>,
    /// Delete the resources a YAML file or directory holds instead.
    #[arg(short = 'f', long = "filename", conflicts_with = "kind")]
    pub file: Option<PathBuf>,
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(Args)]
pub struct GetArgs {
    /// brokers, triggers, channels, subscriptions, sequences or parallels.
    pub kind: Kind,
    /// One resource; all of the namespace when omitted.
    pub name: Option<String>,
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub server: ServerArgs,
}

fn load(path: &std::path::Path, namespace: Option<&str>) -> anyhow::Result<Vec<Resource>> {
    let set = herald_core::load_path(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for d in &set.deferred {
        eprintln!(
            "{}: {} {} is not served by this version of Herald; skipped",
            d.origin, d.kind, d.name
        );
    }
    Ok(set
        .resources()
        .map(|(mut r, _)| {
            if let Some(ns) = namespace {
                let meta = r.metadata_mut();
                meta.namespace.get_or_insert_with(|| ns.to_string());
            }
            r
        })
        .collect())
}

fn label(kind: Kind, name: &str) -> String {
    format!(
        "{}.{}/{name}",
        kind.name().to_ascii_lowercase(),
        kind.group()
    )
}

pub async fn apply(a: ApplyArgs) -> anyhow::Result<()> {
    let resources = load(&a.file, a.namespace.as_deref())?;
    let client = a.server.client()?;
    let mut failed = 0;
    for r in &resources {
        match client.apply(r).await {
            Ok(how) => println!("{} {how}", label(r.kind(), &r.key().name)),
            Err(e) => {
                eprintln!("error: {} {}: {e}", r.kind(), r.key());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} resource(s) not applied", resources.len());
    }
    Ok(())
}

pub async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let targets: Vec<(Kind, ResourceKey)> = match (&a.file, a.kind) {
        (Some(file), _) => load(file, Some(&a.namespace))?
            .iter()
            .map(|r| (r.kind(), r.key()))
            .collect(),
        (None, Some(kind)) => {
            if a.names.is_empty() {
                bail!("name which {} to delete", kind.plural());
            }
            a.names
                .iter()
                .map(|n| (kind, ResourceKey::new(&a.namespace, n)))
                .collect()
        }
        (None, None) => bail!("give a kind and names, or -f FILE"),
    };
    let client = a.server.client()?;
    let mut failed = 0;
    for (kind, key) in &targets {
        match client.delete(*kind, key).await {
            Ok(()) => println!("{} deleted", label(*kind, &key.name)),
            Err(e) => {
                eprintln!("error: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} resource(s) not deleted", targets.len());
    }
    Ok(())
}

pub async fn get(a: GetArgs) -> anyhow::Result<()> {
    let client = a.server.client()?;
    let (items, single) = match &a.name {
        Some(name) => {
            let key = ResourceKey::new(&a.namespace, name);
            (vec![client.get(a.kind, &key).await?], true)
        }
        None => {
            let ns = (!a.all_namespaces).then_some(a.namespace.as_str());
            (client.list(a.kind, ns).await?, false)
        }
    };
    let text = match a.output {
        Output::Table => table(a.kind, &items, a.all_namespaces),
        Output::Json if single => serde_json::to_string_pretty(&items[0])?,
        Output::Yaml if single => serde_yaml::to_string(&items[0])?,
        Output::Json | Output::Yaml => {
            let list = serde_json::json!({
                "apiVersion": "v1", "kind": "List", "items": items,
            });
            match a.output {
                Output::Json => serde_json::to_string_pretty(&list)?,
                _ => serde_yaml::to_string(&list)?,
            }
        }
    };
    if items.is_empty() && matches!(a.output, Output::Table) {
        eprintln!(
            "No {} found in {}.",
            a.kind.plural(),
            if a.all_namespaces {
                "any namespace"
            } else {
                &a.namespace
            }
        );
        return Ok(());
    }
    println!("{}", text.trim_end());
    Ok(())
}

/// kn's columns: NAME, a kind's own, AGE, READY, REASON.
/// The value an EventType's `spec.attributes` gives the named attribute; empty if none.
pub(super) fn event_type_attribute(event_type: &serde_json::Value, name: &str) -> String {
    event_type["spec"]["attributes"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == name))
        .and_then(|a| a["value"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// An EventType's schema: its `dataschema` attribute, else `schemadata` (the name Knative's
/// auto-creation writes), else the v0.3 `schemaurl`.
pub(super) fn event_type_schema(event_type: &serde_json::Value) -> String {
    ["dataschema", "schemadata", "schemaurl"]
        .iter()
        .map(|name| event_type_attribute(event_type, name))
        .find(|v| !v.is_empty())
        .unwrap_or_default()
}

fn table(kind: Kind, items: &[serde_json::Value], namespaces: bool) -> String {
    let mut header: Vec<&str> = Vec::new();
    if namespaces {
        header.push("NAMESPACE");
    }
    header.push("NAME");
    match kind {
        Kind::Broker | Kind::Channel | Kind::Sequence | Kind::Parallel | Kind::EventTransform => {
            header.push("URL")
        }
        Kind::Trigger => header.extend(["BROKER", "SUBSCRIBER_URI"]),
        Kind::Subscription => header.extend(["CHANNEL", "SUBSCRIBER_URI", "REPLY_URI"]),
        Kind::EventPolicy => header.push("FROM"),
        // kn eventtype list: the attributes Triggers filter on, and where they come from.
        Kind::EventType => header.extend(["TYPE", "SOURCE", "SCHEMA", "REFERENCE"]),
        // kn source list: the sink.
        _ => header.push("SINK"),
    }
    header.extend(["AGE", "READY", "REASON"]);
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    for item in items {
        let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        let ready = item["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        let mut row = Vec::new();
        if namespaces {
            row.push(s(&item["metadata"]["namespace"]));
        }
        row.push(s(&item["metadata"]["name"]));
        match kind {
            Kind::Broker
            | Kind::Channel
            | Kind::Sequence
            | Kind::Parallel
            | Kind::EventTransform => row.push(s(&item["status"]["address"]["url"])),
            Kind::Subscription => {
                let physical = &item["status"]["physicalSubscription"];
                row.push(s(&item["spec"]["channel"]["name"]));
                row.push(s(&physical["subscriberUri"]));
                row.push(s(&physical["replyUri"]));
            }
            Kind::Trigger => {
                let broker = match item["spec"]["broker"].as_str() {
                    Some(b) if !b.is_empty() => b.to_string(),
                    _ => s(&item["spec"]["brokerRef"]["name"]),
                };
                row.push(broker);
                row.push(s(&item["status"]["subscriberUri"]));
            }
            Kind::EventPolicy => {
                let from = item["status"]["from"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let from: Vec<String> = from.iter().map(s).collect();
                row.push(from.join(","));
            }
            Kind::EventType => {
                let attribute = |name| event_type_attribute(item, name);
                let schema = event_type_schema(item);
                let reference = &item["spec"]["reference"];
                row.push(attribute("type"));
                row.push(attribute("source"));
                row.push(schema);
                row.push(match reference["kind"].as_str() {
                    Some(kind) => format!("{kind}/{}", s(&reference["name"])),
                    None => String::new(),
                });
            }
            _ => row.push(s(&item["status"]["sinkUri"])),
        }
        row.push(age(item["metadata"]["creationTimestamp"].as_str()));
        row.push(s(&ready["status"]));
        row.push(s(&ready["reason"]));
        rows.push(row);
    }
    render_table(&rows)
}

/// Rows as kubectl prints them: columns padded to their widest cell, three spaces apart.
pub(super) fn render_table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|r| {
            r.iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect::<Vec<_>>()
                .join("   ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// kubectl's age: `45s`, `3m`, `2h`, `5d`.
pub(super) fn age(created: Option<&str>) -> String {
    let Some(t) = created.and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()) else {
        return "-".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_type_tables_show_type_source_schema_and_reference() {
        let items = vec![serde_json::json!({
            "metadata": {"name": "et-default-abc", "namespace": "default"},
            "spec": {
                "reference": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"},
                "attributes": [
                    {"name": "type", "required": true, "value": "com.example.a"},
                    {"name": "source", "required": true, "value": "/orders"},
                    {"name": "dataschema", "required": true, "value": "https://s/a.json"},
                ],
            },
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        })];
        let t = table(Kind::EventType, &items, false);
        let lines: Vec<_> = t.lines().collect();
        let header: Vec<_> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "TYPE",
                "SOURCE",
                "SCHEMA",
                "REFERENCE",
                "AGE",
                "READY",
                "REASON"
            ]
        );
        let row: Vec<_> = lines[1].split_whitespace().collect();
        assert_eq!(
            row[..5],
            [
                "et-default-abc",
                "com.example.a",
                "/orders",
                "https://s/a.json",
                "Broker/default"
            ]
        );
        assert_eq!(row[6], "True");
    }

    #[test]
    fn tables_show_ready_and_reason() {
        let items = vec![serde_json::json!({
            "metadata": {"name": "t1", "namespace": "default"},
            "spec": {"broker": "b"},
            "status": {"subscriberUri": "http://x/", "conditions": [
                {"type": "Ready", "status": "False", "reason": "BrokerDoesNotExist"}]},
        })];
        let t = table(Kind::Trigger, &items, false);
        let lines: Vec<_> = t.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{t}");
        assert!(
            lines[1].contains("BrokerDoesNotExist") && lines[1].contains("http://x/"),
            "{t}"
        );
    }
}

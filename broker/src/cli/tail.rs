//! `herald tail --broker B [--filter CESQL] [-o json]`: prints what a Broker accepts, live,
//! from the admin API's event stream (Server-Sent Events, see `admin::stream`).

use super::resources::ServerArgs;
use crate::admin::parse_key;
use anyhow::Context;
use clap::{Args, ValueEnum};
use herald_channels::event::json;
use herald_core::DEFAULT_NAMESPACE;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TailOutput {
    /// One line per event: time, type, source, id, data.
    Text,
    /// Each event in the CloudEvents JSON format, one per line.
    Json,
}

#[derive(Args)]
pub struct TailArgs {
    /// Broker, as namespace/name or name (namespace "default").
    #[arg(long)]
    pub broker: String,
    /// A CESQL expression; only the events it matches are printed.
    #[arg(long)]
    pub filter: Option<String>,
    #[arg(short, long, value_enum, default_value = "text")]
    pub output: TailOutput,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub async fn run(a: TailArgs) -> anyhow::Result<()> {
    let broker = parse_key(&a.broker, DEFAULT_NAMESPACE);
    let client = a.server.client()?;
    let mut stream = client.watch(&broker, a.filter.as_deref()).await?;
    let tail = async {
        while let Some(message) = stream.next().await.context("reading the event stream")? {
            match message.event.as_str() {
                "watching" => eprintln!(
                    "watching Broker {broker}{} (Ctrl-C to stop)",
                    a.filter
                        .as_deref()
                        .map(|f| format!(" for {f}"))
                        .unwrap_or_default()
                ),
                "missed" => {
                    let n = serde_json::from_str::<serde_json::Value>(&message.data)
                        .ok()
                        .and_then(|v| v["missed"].as_u64())
                        .unwrap_or_default();
                    eprintln!("missed {n} event(s): this watcher fell behind");
                }
                "cloudevent" => print_event(&message.data, a.output),
                _ => {}
            }
        }
        eprintln!("the stream ended: Broker {broker} was deleted or Herald stopped");
        anyhow::Ok(())
    };
    tokio::select! {
        done = tail => done,
        _ = super::shutdown_signal() => Ok(()),
    }
}

fn print_event(data: &str, output: TailOutput) {
    if matches!(output, TailOutput::Json) {
        // One event per line whatever the server's framing split.
        println!("{}", data.replace('\n', " "));
        return;
    }
    match json::from_slice(data.as_bytes()) {
        Ok(event) => {
            let body = match event.body() {
                Some(b) if event.has_json_data() || std::str::from_utf8(&b).is_ok() => {
                    String::from_utf8_lossy(&b).replace('\n', " ")
                }
                Some(b) => format!("<{} bytes>", b.len()),
                None => String::new(),
            };
            println!(
                "{}  {}  {}  {}  {}",
                event.time().unwrap_or("-"),
                event.ty(),
                event.source(),
                event.id(),
                body
            );
        }
        Err(e) => eprintln!("an event that does not read: {e}"),
    }
}

//! `herald dlq list|show|redrive|delete`: the events a running Herald parked for a Trigger because
//! neither its subscriber nor its dead-letter sink took them (and copies of dead-lettered
//! ones, where the Trigger asks).

use super::resources::{render_table, ServerArgs};
use crate::admin::{client::AdminClient, parse_key};
use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use herald_core::{ResourceKey, DEFAULT_NAMESPACE};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// The parked events of a Broker's Triggers, or of one.
    List(ListArgs),
    /// One parked event with the whole CloudEvent.
    Show(ShowArgs),
    /// Deliver parked events to their Trigger again; delivered (or dead-lettered) ones leave
    /// the list. All of the Trigger's (or Broker's) when no id is given.
    Redrive(RedriveArgs),
    /// Discard parked events of a Trigger without delivering them: the ids given, or all
    /// with --all.
    Delete(DeleteArgs),
}

#[derive(Args)]
pub struct Target {
    /// Broker, as namespace/name or name (namespace "default").
    #[arg(long)]
    pub broker: String,
    /// Trigger, as name (in the Broker's namespace); every Trigger of the Broker if omitted.
    #[arg(long)]
    pub trigger: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ListOutput {
    Table,
    Json,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: Target,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: ListOutput,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub target: Target,
    /// The parked event's id (`herald dlq list` shows it).
    pub id: u64,
}

#[derive(Args)]
pub struct RedriveArgs {
    #[command(flatten)]
    pub target: Target,
    /// Ids to redrive; all listed ones when none is given.
    pub ids: Vec<u64>,
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub target: Target,
    /// Ids to discard.
    #[arg(required_unless_present = "all")]
    pub ids: Vec<u64>,
    /// Discard every parked event of the Trigger.
    #[arg(long, conflicts_with = "ids")]
    pub all: bool,
}

impl Target {
    fn broker(&self) -> ResourceKey {
        parse_key(&self.broker, DEFAULT_NAMESPACE)
    }

    fn client(&self) -> anyhow::Result<AdminClient> {
        self.server.client()
    }
}

pub async fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(a) => list(a).await,
        DlqCommand::Show(a) => show(a).await,
        DlqCommand::Redrive(a) => redrive(a).await,
        DlqCommand::Delete(a) => delete(a).await,
    }
}

/// `(trigger name, entry)` for every parked event of the lists.
fn entries(lists: &[Value]) -> Vec<(String, Value)> {
    lists
        .iter()
        .flat_map(|l| {
            let trigger = l["trigger"].as_str().unwrap_or_default();
            let name = trigger.rsplit('/').next().unwrap_or(trigger).to_string();
            l["items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |e| (name.clone(), e))
        })
        .collect()
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let broker = a.target.broker();
    let lists = a
        .target
        .client()?
        .dlq_list(&broker, a.target.trigger.as_deref())
        .await?;
    if matches!(a.output, ListOutput::Json) {
        println!("{}", serde_json::to_string_pretty(&lists)?);
        return Ok(());
    }
    let entries = entries(&lists);
    if entries.is_empty() {
        eprintln!("No parked events for Broker {broker}.");
        return Ok(());
    }
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows = vec![[
        "TRIGGER", "ID", "PARKED", "WHY", "EVENT_ID", "TYPE", "SOURCE", "REASON",
    ]
    .map(String::from)
    .to_vec()];
    for (trigger, e) in &entries {
        rows.push(vec![
            trigger.clone(),
            s(&e["id"]),
            s(&e["parkedAt"]),
            s(&e["why"]),
            s(&e["event"]["id"]),
            s(&e["event"]["type"]),
            s(&e["event"]["source"]),
            s(&e["reason"]),
        ]);
    }
    println!("{}", render_table(&rows));
    if lists.iter().any(|l| l["durable"] == false) {
        eprintln!("(kept in memory: this Broker's channel is not durable, a restart loses them)");
    }
    Ok(())
}

async fn show(a: ShowArgs) -> anyhow::Result<()> {
    let Some(trigger) = &a.target.trigger else {
        bail!("give --trigger: ids are per Trigger");
    };
    let entry = a
        .target
        .client()?
        .dlq_show(&a.target.broker(), trigger, a.id)
        .await?;
    println!("{}", serde_yaml::to_string(&entry)?.trim_end());
    Ok(())
}

async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let Some(trigger) = &a.target.trigger else {
        bail!("give --trigger: parked events are discarded per Trigger");
    };
    let (broker, client) = (a.target.broker(), a.target.client()?);
    let ids: Vec<Option<u64>> = if a.all {
        vec![None]
    } else {
        a.ids.iter().copied().map(Some).collect()
    };
    let mut deleted = 0;
    for id in ids {
        let answer = client.dlq_delete(&broker, trigger, id).await?;
        deleted += answer["deleted"].as_array().map_or(0, Vec::len);
    }
    println!("deleted {deleted} parked event(s) of Trigger {trigger}");
    Ok(())
}

async fn redrive(a: RedriveArgs) -> anyhow::Result<()> {
    let (broker, client) = (a.target.broker(), a.target.client()?);
    let targets: Vec<(String, u64)> = match (&a.target.trigger, a.ids.is_empty()) {
        (None, false) => bail!("give --trigger with ids: ids are per Trigger"),
        (Some(t), false) => a.ids.iter().map(|id| (t.clone(), *id)).collect(),
        (trigger, true) => {
            let lists = client.dlq_list(&broker, trigger.as_deref()).await?;
            entries(&lists)
                .into_iter()
                .filter_map(|(t, e)| Some((t, e["id"].as_u64()?)))
                .collect()
        }
    };
    if targets.is_empty() {
        eprintln!("No parked events to redrive for Broker {broker}.");
        return Ok(());
    }
    // Drawn only on a terminal (indicatif hides itself otherwise).
    let bar = ProgressBar::new(targets.len() as u64).with_style(
        ProgressStyle::with_template("redriving {bar:30} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    let (mut delivered, mut dead_lettered, mut failed) = (0, 0, 0);
    for (trigger, id) in &targets {
        bar.set_message(format!("{trigger} #{id}"));
        match client.dlq_redrive(&broker, trigger, *id).await {
            Ok(answer) if answer["disposition"] == "DeadLettered" => dead_lettered += 1,
            Ok(_) => delivered += 1,
            Err(e) => {
                bar.suspend(|| eprintln!("error: {trigger} #{id}: {e}"));
                failed += 1;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "redrove {} of {} parked event(s): {delivered} delivered, {dead_lettered} dead-lettered, {failed} still parked",
        delivered + dead_lettered,
        targets.len()
    );
    if failed > 0 {
        bail!("{failed} parked event(s) could not be redriven");
    }
    Ok(())
}

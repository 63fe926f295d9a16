//! One run: start the sink, have the adapter set up the Broker and every Trigger the checks
//! need, make sure each Trigger delivers (a probe event per Trigger), run the checks, and
//! remove what was set up.

use crate::adapter::{Adapter, AdapterError, BrokerRef};
use crate::check::Outcome;
use crate::checks;
use crate::ctx::{Ctx, Message};
use crate::sink::Sink;
use crate::wire;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use url::Url;

/// How to run.
pub struct Options {
    pub broker: Url,
    pub sink_listen: SocketAddr,
    pub sink_url: Option<Url>,
    pub timeout: Duration,
    pub quiet: Duration,
    pub ready_timeout: Duration,
    pub max_body_bytes: Option<usize>,
    /// Leave the Triggers (and Broker) in place afterwards.
    pub keep: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("cannot start the sink on {addr}: {source}")]
    Sink {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("setting up the broker: {0}")]
    Setup(#[source] AdapterError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

pub async fn run(options: Options, adapter: &dyn Adapter) -> Result<Vec<Outcome>, SuiteError> {
    let sink = Sink::start(options.sink_listen, options.sink_url.clone())
        .await
        .map_err(|source| SuiteError::Sink {
            addr: options.sink_listen,
            source,
        })?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(options.timeout)
        .build()
        .map_err(SuiteError::Client)?;
    let ctx = Ctx {
        broker: options.broker.clone(),
        sink,
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        client,
        timeout: options.timeout,
        quiet: options.quiet,
        max_body_bytes: options.max_body_bytes,
    };
    let broker = BrokerRef {
        url: options.broker.clone(),
    };
    let triggers = checks::triggers(&ctx);
    let names: Vec<String> = triggers.iter().map(|t| t.name.clone()).collect();
    let setup = async {
        adapter.apply_broker(&broker, &checks::broker(&ctx)).await?;
        for t in &triggers {
            adapter.apply_trigger(&broker, t).await?;
        }
        adapter
            .wait_ready(&broker, &names, options.ready_timeout)
            .await
    };
    if let Err(e) = setup.await {
        let _ = adapter.clean_up(&broker, &names).await;
        return Err(SuiteError::Setup(e));
    }
    probe(&ctx, &triggers).await;
    let outcomes = checks::run(&ctx).await;
    if !options.keep {
        if let Err(e) = adapter.clean_up(&broker, &names).await {
            eprintln!("herald-conformance: cleaning up: {e}");
        }
    }
    Ok(outcomes)
}

/// Sends each Trigger an event its filter matches and waits until every Trigger delivered
/// it: "ready" as the broker's status says is not always "consuming" yet.
async fn probe(ctx: &Ctx, triggers: &[crate::adapter::TriggerSpec]) {
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut sent: BTreeMap<BTreeMap<String, String>, String> = BTreeMap::new();
    for t in triggers {
        let next = sent.len();
        let id = sent
            .entry(t.filter.clone())
            .or_insert_with(|| ctx.id(&format!("probe-{next}")))
            .clone();
        *expected
            .entry((t.subscriber.path().to_string(), id))
            .or_default() += 1;
    }
    for (filter, id) in &sent {
        let ty = filter.get("type").cloned().unwrap_or_default();
        let mut m = Message::binary(id, &ty);
        for (k, v) in filter.iter().filter(|(k, _)| *k != "type") {
            m = m.header(&format!("ce-{k}"), wire::encode_header_value(v));
        }
        if let Err(e) = ctx.send(&m).await {
            eprintln!("herald-conformance: probe {id}: {e}");
        }
    }
    let done = ctx
        .sink
        .wait(ctx.timeout, |all| {
            expected
                .iter()
                .all(|((path, id), n)| {
                    all.iter()
                        .filter(|r| &r.path == path && r.id() == Some(id.as_str()))
                        .count()
                        >= *n
                })
                .then_some(())
        })
        .await;
    if done.is_none() {
        let all = ctx.sink.received();
        let missing: Vec<&str> = expected
            .iter()
            .filter(|((path, id), n)| {
                all.iter()
                    .filter(|r| &r.path == path && r.id() == Some(id.as_str()))
                    .count()
                    < **n
            })
            .map(|((path, _), _)| path.as_str())
            .collect();
        eprintln!(
            "herald-conformance: probes did not reach {} within {:?}; checking anyway",
            missing.join(", "),
            ctx.timeout
        );
    }
}

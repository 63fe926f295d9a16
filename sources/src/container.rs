//! ContainerSource, standalone: runs the first container's `command` and `args` as a local
//! process with `K_SINK` (the resolved sink URL) and `K_CE_OVERRIDES` (the `ceOverrides`, as
//! JSON) in its environment, the way Knative's ContainerSource feeds any program's events
//! into a Broker. The program POSTs its events to `$K_SINK` itself. When it exits it is
//! started again after a backoff that doubles up to a ceiling (and starts over once a run
//! lasted longer than the ceiling); on shutdown it gets SIGTERM, then SIGKILL after a grace.

use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError};
use herald_core::{Check, ContainerSource, Kind};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long a stopped program has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub struct Container {
    program: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    working_dir: Option<String>,
    overrides: BTreeMap<String, String>,
}

pub fn build(c: &ContainerSource) -> Result<Container, ConfigError> {
    let container = c
        .spec
        .template
        .spec
        .containers
        .first()
        .ok_or_else(|| ConfigError {
            kind: Kind::ContainerSource,
            key: c.key(),
            field: "spec.template.spec.containers".into(),
            message: "needs one container".into(),
        })?;
    let mut command = container.command.iter().chain(&container.args).cloned();
    let program = command.next().ok_or_else(|| ConfigError {
        kind: Kind::ContainerSource,
        key: c.key(),
        field: "spec.template.spec.containers[0].command".into(),
        message: "must name a program".into(),
    })?;
    Ok(Container {
        program,
        args: command.collect(),
        env: container
            .env
            .iter()
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
            .collect(),
        working_dir: container.working_dir.clone(),
        overrides: c
            .spec
            .ce_overrides
            .as_ref()
            .map(|o| o.extensions.clone())
            .unwrap_or_default(),
    })
}

impl Container {
    fn command(&self, sink: &str) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().cloned())
            .env("K_SINK", sink)
            .kill_on_drop(true);
        if !self.overrides.is_empty() {
            let json = serde_json::json!({ "extensions": self.overrides });
            cmd.env("K_CE_OVERRIDES", json.to_string());
        }
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        cmd
    }
}

#[async_trait::async_trait]
impl Source for Container {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let (first, ceiling) = ctx.env.restart_backoff;
        let mut backoff = first;
        let sink = ctx.sink.url().to_string();
        loop {
            let started = Instant::now();
            let mut child = match self.command(&sink).spawn() {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("cannot start {:?}: {e}", self.program);
                    tracing::warn!(source = %ctx.key, "{why}");
                    ctx.report(Check::failed("CommandFailed", why));
                    if !pause(&ctx, &mut backoff, ceiling).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            ctx.report(Check::Ok);
            tracing::info!(source = %ctx.key, program = %self.program, pid = child.id(), "ContainerSource command started");
            let status = tokio::select! {
                s = child.wait() => s,
                _ = ctx.shutdown.cancelled() => {
                    stop(&mut child).await;
                    return Ok(());
                }
            };
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            if started.elapsed() > ceiling {
                backoff = first;
            }
            tracing::warn!(source = %ctx.key, program = %self.program, %how, ?backoff, "ContainerSource command exited; restarting");
            ctx.report(Check::unknown(
                "Restarting",
                format!(
                    "{:?} exited ({how}); restarting in {backoff:?}",
                    self.program
                ),
            ));
            if !pause(&ctx, &mut backoff, ceiling).await {
                return Ok(());
            }
        }
    }
}

/// Waits out the backoff and doubles it; `false` on shutdown.
async fn pause(ctx: &SourceContext, backoff: &mut Duration, ceiling: Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(ceiling);
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = ctx.shutdown.cancelled() => false,
    }
}

async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SIGTERM first, so the program can finish the event it is sending.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

//! ContainerSource, standalone: runs the first container's `command` and `args` as a local
//! process with `K_SINK` (the resolved sink URL) and `K_CE_OVERRIDES` (the `ceOverrides`, as
//! JSON) in its environment, the way Knative's ContainerSource feeds any program's events
//! into a Broker. The program POSTs its events to `$K_SINK` itself (and applies the
//! overrides itself, as programs built on Knative's adapter SDK do). When it exits it is
//! started again after a [`RestartBackoff`] (counted in `herald_source_restarts_total`); on
//! shutdown its process group (the program and what it started) gets SIGTERM, then SIGKILL
//! after a grace. A process that must exit at once calls [`kill_running`] first.

use crate::backoff::RestartBackoff;
use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError};
use herald_core::{Check, ContainerSource, Kind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::process::Command;

/// How long a stopped program has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The process groups of the programs running now. `kill_on_drop` needs a destructor to
/// run, and `process::exit` (a second signal) runs none: without this list the programs
/// would outlive Herald.
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn running() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// A program's entry in [`RUNNING`], removed once the program is waited for, or when the
/// task running it is dropped, so no stale group id (free for reuse) is ever signalled.
struct Listed(Option<u32>);

impl Listed {
    fn new(group: Option<u32>) -> Self {
        running().extend(group);
        Self(group)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            running().remove(&group);
        }
    }
}

/// SIGKILLs every ContainerSource program (and its process group) still running, for a
/// process about to exit without a graceful shutdown.
pub fn kill_running() {
    for group in std::mem::take(&mut *running()) {
        signal_group(group, libc::SIGKILL);
    }
}

/// Signals the process group `group` (the program is its leader, see `Container::command`).
fn signal_group(group: u32, signal: libc::c_int) {
    let Ok(group) = libc::pid_t::try_from(group) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid only sends a signal; it touches no memory.
    unsafe {
        libc::kill(-group, signal);
    }
}

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
            // Its own group, so stopping it reaches what it started too (a shell's
            // children), and a terminal's Ctrl-C reaches Herald, which stops it in order.
            .process_group(0)
            // As in a container: nothing to read (a background group reading a terminal
            // would be stopped by SIGTTIN).
            .stdin(std::process::Stdio::null())
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
        let mut backoff = RestartBackoff::new(first, ceiling);
        let restarts = ctx.env.metrics.of(ctx.kind, &ctx.key).restarts;
        let sink = ctx.sink.url().to_string();
        loop {
            let started = Instant::now();
            let how = match self.command(&sink).spawn() {
                Err(e) => {
                    let why = format!("cannot start {:?}: {e}", self.program);
                    tracing::warn!(source = %ctx.key, "{why}");
                    ctx.report(Check::failed("CommandFailed", why));
                    None
                }
                Ok(mut child) => {
                    ctx.report(Check::Ok);
                    tracing::info!(source = %ctx.key, program = %self.program, pid = child.id(), "ContainerSource command started");
                    let listed = Listed::new(child.id());
                    let status = tokio::select! {
                        s = child.wait() => s,
                        _ = ctx.shutdown.cancelled() => {
                            stop(&mut child).await;
                            return Ok(());
                        }
                    };
                    // Reaped: the pid is free for reuse from here on.
                    drop(listed);
                    Some(match status {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    })
                }
            };
            let wait = backoff.after_run(started.elapsed());
            if let Some(how) = how {
                tracing::warn!(source = %ctx.key, program = %self.program, %how, ?wait, "ContainerSource command exited; restarting");
                ctx.report(Check::unknown(
                    "Restarting",
                    format!("{:?} exited ({how}); restarting in {wait:?}", self.program),
                ));
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.shutdown.cancelled() => return Ok(()),
            }
            restarts.inc();
        }
    }
}

/// SIGTERM to the program's group, so it can finish the event it is sending; SIGKILL to the
/// group after the grace.
async fn stop(child: &mut tokio::process::Child) {
    let Some(group) = child.id() else { return };
    signal_group(group, libc::SIGTERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(group, libc::SIGKILL);
        let _ = child.kill().await;
    }
}

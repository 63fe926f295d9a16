//! Sources at runtime in a running `herald serve`: a GitHubSource applied through the admin
//! API starts receiving webhooks (its status shows `sinkUri`, the webhook `address` and its
//! `eventCounts`), a changed sink applies from the new generation on, and a deleted source
//! stops at once (its endpoint answers 404, nothing more reaches the sink). A second signal
//! makes Herald exit at once, and it takes its ContainerSource programs with it.

mod replicas;

use replicas::admin::*;
use replicas::*;
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "It's a Secret to Everybody";

fn github_source(sink: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: GitHubSource\nmetadata: {{name: repo, namespace: ns}}\n\
         spec:\n  eventTypes: [push]\n  ownerAndRepository: Codertocat/Hello-World\n\
         \x20 secretToken: {{value: \"{SECRET}\"}}\n  sink: {{uri: \"{sink}\"}}\n"
    )
}

/// Delivers the push fixture as GitHub would, with delivery id `id`; the HTTP status.
async fn push(hook: &str, id: &str) -> u16 {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../sources/tests/fixtures/github/push.json"
    ))
    .unwrap();
    reqwest::Client::new()
        .post(hook)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            herald_sources::github::sign(SECRET.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_source_is_applied_changed_and_deleted_in_a_running_serve() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let herald = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let admin = Admin::for_api(&herald.admin, "/apis/sources.knative.dev/v1alpha1");
        let sink = Sink::start((0, 0)).await;
        let (first, second) = (
            format!("{}/first", sink.url),
            format!("{}/second", sink.url),
        );

        let put = admin
            .put(
                "githubsources",
                "ns",
                "repo",
                "application/yaml",
                &github_source(&first),
            )
            .await;
        assert!(put.status.is_success(), "{put:?}");
        let object = admin.wait_ready("githubsources", "ns", "repo", WAIT).await;
        assert_eq!(object["status"]["sinkUri"], first.as_str());
        let hook = object["status"]["address"]["url"]
            .as_str()
            .expect("the webhook address")
            .to_string();
        assert_eq!(push(&hook, "d-1").await, 202);
        sink.wait_for(&HashSet::from(["d-1".to_string()]), WAIT, "d-1")
            .await;
        let counted = admin
            .wait("githubsources", "ns", "repo", WAIT, "eventCounts", |o| {
                o.is_some_and(|o| o["status"]["eventCounts"]["delivered"] == 1)
            })
            .await
            .unwrap();
        assert_eq!(counted["status"]["eventCounts"]["sinkFailures"], 0);

        // A changed sink applies from the new generation on.
        let put = admin
            .put(
                "githubsources",
                "ns",
                "repo",
                "application/yaml",
                &github_source(&second),
            )
            .await;
        assert!(put.status.is_success(), "{put:?}");
        let object = admin
            .wait("githubsources", "ns", "repo", WAIT, "the new sink", |o| {
                o.is_some_and(|o| {
                    is_ready(o)
                        && observed_generation(o) == generation(o)
                        && o["status"]["sinkUri"] == second.as_str()
                })
            })
            .await
            .unwrap();
        assert!(generation(&object) > 1);
        assert_eq!(push(&hook, "d-2").await, 202);
        sink.wait_for(&HashSet::from(["d-2".to_string()]), WAIT, "d-2")
            .await;
        let paths: Vec<(String, String)> =
            sink.records().into_iter().map(|r| (r.id, r.path)).collect();
        assert_eq!(
            paths,
            [
                ("d-1".to_string(), "/events/first".to_string()),
                ("d-2".to_string(), "/events/second".to_string())
            ]
        );

        // Deleted: the endpoint is gone and nothing more is sent.
        let deleted = admin.delete("githubsources", "ns", "repo").await;
        assert!(deleted.status.is_success(), "{deleted:?}");
        admin.wait_gone("githubsources", "ns", "repo", WAIT).await;
        let deadline = std::time::Instant::now() + WAIT;
        while push(&hook, "d-3").await != 404 {
            assert!(std::time::Instant::now() < deadline, "the endpoint stayed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(sink.records().iter().all(|r| r.id != "d-3"));
    });
}

/// A ContainerSource program that ignores SIGTERM: the graceful stop waits out its grace, and
/// a second signal to Herald meanwhile must still end it (and the children of its shell)
/// rather than leave it running with Herald gone.
#[test]
fn a_second_signal_ends_container_source_programs_with_herald() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let pid_file = work.path().join("program.pid");
        std::fs::write(
            config.join("source.yaml"),
            format!(
                "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: stubborn, namespace: ns}}\n\
                 spec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: ignored.example/c\n\
                 \x20         command: [sh, -c]\n          args:\n            - trap '' TERM; echo $$ > {}; while :; do sleep 0.1; done\n\
                 \x20 sink: {{uri: \"http://127.0.0.1:9/\"}}\n",
                pid_file.display()
            ),
        )
        .unwrap();
        let mut herald = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let mut group = None;
        until(
            WAIT,
            || {
                group = std::fs::read_to_string(&pid_file)
                    .ok()
                    .and_then(|p| p.trim().parse::<u32>().ok());
                group.is_some()
            },
            || "the program did not start".into(),
        )
        .await;
        let group = group.unwrap();
        assert!(!group_members(group).is_empty(), "the program runs");

        let signal = |pid: u32| {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
        };
        signal(herald.proc.pid());
        herald
            .proc
            .wait_line("shutting down: draining accepted events")
            .await;
        signal(herald.proc.pid());
        until(
            WAIT,
            || !herald.proc.alive(),
            || "herald did not exit".into(),
        )
        .await;
        until(
            WAIT,
            || group_members(group).is_empty(),
            || {
                format!(
                    "herald exited and left its program's group {group} running: {:?}\n{}",
                    group_members(group),
                    herald.proc.log_tail()
                )
            },
        )
        .await;
    });
}

/// The live (not zombie) processes of process group `group`.
fn group_members(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...; comm may hold spaces, so split after its ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            members.push(pid);
        }
    }
    members
}

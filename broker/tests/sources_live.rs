//! Sources at runtime in a running `herald serve`: a GitHubSource applied through the admin
//! API starts receiving webhooks (its status shows `sinkUri`, the webhook `address` and its
//! `eventCounts`), a changed sink applies from the new generation on, and a deleted source
//! stops at once (its endpoint answers 404, nothing more reaches the sink).

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

//! GitHubSource over a real listener, with deliveries shaped like GitHub's own (headers and
//! payloads of push, pull_request, issues and ping): signatures checked, Knative's mapping,
//! eventTypes filtering, ping answered, a redelivery stored once.

mod common;

use common::{resource, run, TestSink};
use herald_sources::github::sign;
use herald_sources::SourceEnv;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);
const SECRET: &str = "It's a Secret to Everybody";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/github/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Hook {
    url: String,
    client: reqwest::Client,
}

impl Hook {
    async fn deliver(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        signature: Option<String>,
    ) -> (u16, String) {
        let mut req = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("user-agent", "GitHub-Hookshot/044aadd")
            .header("x-github-event", event)
            .header("x-github-delivery", delivery)
            .header("x-github-hook-id", "109948940")
            .body(body.to_vec());
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn signed(&self, event: &str, delivery: &str, body: &[u8]) -> (u16, String) {
        self.deliver(event, delivery, body, Some(sign(SECRET.as_bytes(), body)))
            .await
    }
}

async fn start() -> (TestSink, Hook, common::Running) {
    let sink = TestSink::start().await;
    let env = Arc::new(SourceEnv::default());
    let source = resource(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: GitHubSource\nmetadata: {{name: repo, namespace: ns}}\n\
         spec:\n  eventTypes: [push, pull_request, issues]\n  ownerAndRepository: Codertocat/Hello-World\n\
         \x20 secretToken: {{value: \"{SECRET}\"}}\n  sink: {{uri: \"http://127.0.0.1:9/\"}}\n"
    ));
    let mut running = run(source, &sink.url, env.clone());
    running.until_ok(WAIT).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/sources/github/ns/repo",
        listener.local_addr().unwrap()
    );
    let app = herald_sources::github::router::<()>(env.webhooks.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        sink,
        Hook {
            url,
            client: reqwest::Client::new(),
        },
        running,
    )
}

#[tokio::test]
async fn push_pull_request_and_issues_map_as_knative_does() {
    let (mut sink, hook, running) = start().await;
    for (event, delivery, subject, action) in [
        ("push", "d-push-1", "6113728f27ae...000000000000", None),
        ("pull_request", "d-pr-1", "2", Some("opened")),
        ("issues", "d-issue-1", "1", Some("edited")),
    ] {
        let body = fixture(event);
        let (status, text) = hook.signed(event, delivery, &body).await;
        assert_eq!(status, 202, "{event}: {text}");
        let got = sink.next(WAIT).await;
        assert_eq!(got.header("ce-id"), Some(delivery));
        assert_eq!(
            got.header("ce-type").map(str::to_string),
            Some(format!("dev.knative.source.github.{event}"))
        );
        assert_eq!(
            got.header("ce-source"),
            Some("https://github.com/Codertocat/Hello-World")
        );
        assert_eq!(got.header("ce-subject"), Some(subject), "{event}");
        assert_eq!(got.header("ce-owner"), Some("Codertocat"));
        assert_eq!(got.header("ce-repository"), Some("Hello-World"));
        assert_eq!(got.header("ce-action"), action);
        assert_eq!(got.header("content-type"), Some("application/json"));
        assert_eq!(&got.body[..], &body[..], "{event}: data byte for byte");
    }
    running.stop().await;
}

#[tokio::test]
async fn bad_or_missing_signatures_get_401_with_a_message() {
    let (mut sink, hook, running) = start().await;
    let body = fixture("push");
    let (status, text) = hook.deliver("push", "d-1", &body, None).await;
    assert_eq!(status, 401);
    assert!(text.contains("missing x-hub-signature-256"), "{text}");
    let (status, text) = hook
        .deliver("push", "d-1", &body, Some(sign(b"wrong", &body)))
        .await;
    assert_eq!(status, 401);
    assert!(text.contains("does not match"), "{text}");
    // Signed over other bytes than were sent.
    let (status, _) = hook
        .deliver("push", "d-1", &body, Some(sign(SECRET.as_bytes(), b"{}")))
        .await;
    assert_eq!(status, 401);
    let (status, text) = hook
        .deliver("push", "d-1", &body, Some("sha1=0123".into()))
        .await;
    assert_eq!(status, 401);
    assert!(text.contains("sha256="), "{text}");
    assert!(sink.try_next().is_none());
    running.stop().await;
}

#[tokio::test]
async fn ping_is_answered_other_types_are_ignored_and_redeliveries_stored_once() {
    let (mut sink, hook, running) = start().await;
    let (status, text) = hook.signed("ping", "d-ping", &fixture("ping")).await;
    assert_eq!((status, text.as_str()), (200, "pong"));
    let (status, text) = hook
        .signed("star", "d-star", br#"{"action":"created"}"#)
        .await;
    assert_eq!(status, 200);
    assert!(text.contains("not in spec.eventTypes"), "{text}");
    let body = fixture("issues");
    assert_eq!(hook.signed("issues", "d-again", &body).await.0, 202);
    let (status, text) = hook.signed("issues", "d-again", &body).await;
    assert_eq!(status, 202);
    assert!(text.contains("already accepted"), "{text}");
    assert_eq!(sink.next(WAIT).await.header("ce-id"), Some("d-again"));
    // The next delivery arrives, and the redelivery never did.
    assert_eq!(hook.signed("issues", "d-next", &body).await.0, 202);
    assert_eq!(sink.next(WAIT).await.header("ce-id"), Some("d-next"));
    let unknown = reqwest::Client::new()
        .post(hook.url.replace("/repo", "/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    running.stop().await;
}

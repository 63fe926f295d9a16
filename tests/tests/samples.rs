//! The shared Knative-shaped samples load unchanged and serve: kinds Herald cannot address
//! standalone are reported with the Trigger's name, and filters are compiled at start-up.

use herald_broker::serve::{self, ServeConfig, ServeError};
use std::path::Path;

fn samples() -> Option<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/knative-samples");
    if dir.exists() {
        return Some(dir);
    }
    assert!(std::env::var("CI").is_err(), "{} is missing", dir.display());
    eprintln!("skipping: {} not found", dir.display());
    None
}

fn config() -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

#[tokio::test]
async fn knative_samples_serve_and_report_what_cannot_be_resolved() {
    let Some(dir) = samples() else { return };
    let resources = herald_core::load_path(&dir).unwrap_or_else(|e| panic!("{e}"));
    let server = serve::start(&resources, config()).await.unwrap();
    let unresolved: Vec<_> = server
        .warnings
        .iter()
        .filter(|w| w.contains("big-orders"))
        .collect();
    assert_eq!(unresolved.len(), 1, "{:?}", server.warnings);
    assert!(
        unresolved[0].contains("Service fraud-check"),
        "{}",
        unresolved[0]
    );
    // The other Trigger is served: the broker accepts events.
    let response = reqwest::Client::new()
        .post(server.broker_url("default", "default"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1")
        .header("ce-source", "/s")
        .header("ce-type", "t")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_cesql_filter_refuses_to_start_naming_file_trigger_and_position() {
    let yaml = "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n---\n\
                apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: bad-sql}\n\
                spec:\n  broker: b\n  filters:\n    - cesql: \"type = 'x' AND\"\n  subscriber: {uri: 'http://127.0.0.1:1/'}\n";
    let resources = herald_core::load_str(Path::new("triggers.yaml"), yaml).unwrap();
    let err = match serve::start(&resources, config()).await {
        Err(e @ ServeError::Config(_)) => e.to_string(),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started with an invalid filter"),
    };
    for needle in [
        "triggers.yaml",
        "default/bad-sql",
        "spec.filters[0].cesql",
        "column",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from {err}");
    }
}

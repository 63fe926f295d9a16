//! The committed CRDs match the types, and every shared Knative sample validates against
//! them and maps to the resource the file loader produces for it.

use herald_core::Resource;
use herald_crds::mapping::ToResource;
use herald_crds::resources::{
    ApiServerSource, Broker, Channel, ContainerSource, EventPolicy, EventTransform, EventType,
    GitHubSource, HeraldChannel, InMemoryChannel, KafkaChannel, KafkaSource, NatsSource, Parallel,
    PingSource, Sequence, Subscription, Trigger,
};
use serde_json::Value;
use std::path::{Path, PathBuf};

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/crds/crds.yaml");

/// Kinds in the samples that have no CRD of Herald's yet (the sources are typed in core by
/// their own work); any other kind without a CRD fails the test.
const NO_CRD_YET: &[&str] = &[];

#[test]
fn committed_crds_match_the_types() {
    let generated = herald_crds::definitions_yaml();
    if std::env::var_os("HERALD_WRITE_CRDS").is_some() {
        std::fs::write(COMMITTED, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "deploy/crds/crds.yaml differs from the types in crds/: regenerate it with \
         `cargo run -p herald-broker --features kubernetes -- crds > deploy/crds/crds.yaml` \
         (or HERALD_WRITE_CRDS=1 cargo test -p herald-crds --test definitions)"
    );
}

fn samples() -> Option<PathBuf> {
    // Beside the checkout, as CI lays it; HERALD_SAMPLES_DIR for a checkout elsewhere.
    let dir = std::env::var_os("HERALD_SAMPLES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/knative-samples")
        });
    if dir.exists() {
        return Some(dir);
    }
    assert!(std::env::var("CI").is_err(), "{} is missing", dir.display());
    eprintln!("skipping: {} not found", dir.display());
    None
}

/// Every document of every sample file, as JSON, with its file name.
fn sample_documents(dir: &Path) -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut docs = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            docs.push((file.display().to_string(), value));
        }
    }
    docs
}

/// The openAPIV3Schema of `apiVersion`/`kind` among the generated CRDs.
fn schema_for(api_version: &str, kind: &str) -> Option<Value> {
    let (group, version) = api_version.split_once('/')?;
    herald_crds::definitions().into_iter().find_map(|crd| {
        if crd.spec.group != group || crd.spec.names.kind != kind {
            return None;
        }
        let v = crd.spec.versions.iter().find(|v| v.name == version)?;
        let schema = v.schema.as_ref()?.open_api_v3_schema.as_ref()?;
        Some(serde_json::to_value(schema).unwrap())
    })
}

fn validate(schema: &Value, doc: &Value) -> Vec<String> {
    let validator = jsonschema::draft4::new(schema).expect("the CRD schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn knative_samples_validate_against_the_crd_schemas() {
    let Some(dir) = samples() else { return };
    let mut validated = 0;
    for (file, doc) in sample_documents(&dir) {
        let (api_version, kind) = (
            doc["apiVersion"].as_str().unwrap(),
            doc["kind"].as_str().unwrap(),
        );
        let Some(schema) = schema_for(api_version, kind) else {
            assert!(
                NO_CRD_YET.contains(&kind),
                "{file}: no CRD for {kind} ({api_version})"
            );
            continue;
        };
        let errors = validate(&schema, &doc);
        assert!(
            errors.is_empty(),
            "{file}: {kind} {}: {errors:?}",
            doc["metadata"]["name"]
        );
        validated += 1;
    }
    assert!(validated >= 10, "only {validated} samples had a CRD");
}

#[test]
fn schemas_refuse_a_wrongly_typed_field() {
    let schema = schema_for("eventing.knative.dev/v1", "Trigger").unwrap();
    let doc = serde_json::json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": "t"},
        "spec": {"broker": "default", "subscriber": {"uri": "http://x"}, "delivery": {"retry": "five"}}
    });
    let errors = validate(&schema, &doc);
    assert!(
        errors.iter().any(|e| e.contains("/spec/delivery/retry")),
        "{errors:?}"
    );
    let backoff = serde_json::json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {"name": "b"},
        "spec": {"delivery": {"backoffPolicy": "sometimes"}}
    });
    let schema = schema_for("eventing.knative.dev/v1", "Broker").unwrap();
    assert!(!validate(&schema, &backoff).is_empty());
}

/// The resource the typed object maps to.
fn mapped(doc: &Value) -> Option<Resource> {
    fn via<T: ToResource + serde::de::DeserializeOwned>(doc: &Value) -> Option<Resource> {
        let object: T =
            serde_json::from_value(doc.clone()).unwrap_or_else(|e| panic!("{e}: {doc}"));
        Some(object.to_resource().unwrap())
    }
    match doc["kind"].as_str()? {
        "Broker" => via::<Broker>(doc),
        "Trigger" => via::<Trigger>(doc),
        "EventTransform" => via::<EventTransform>(doc),
        "EventPolicy" => via::<EventPolicy>(doc),
        "EventType" => via::<EventType>(doc),
        "Channel" => via::<Channel>(doc),
        "InMemoryChannel" => via::<InMemoryChannel>(doc),
        "KafkaChannel" => via::<KafkaChannel>(doc),
        "HeraldChannel" => via::<HeraldChannel>(doc),
        "Subscription" => via::<Subscription>(doc),
        "Sequence" => via::<Sequence>(doc),
        "Parallel" => via::<Parallel>(doc),
        "PingSource" => via::<PingSource>(doc),
        "GitHubSource" => via::<GitHubSource>(doc),
        "KafkaSource" => via::<KafkaSource>(doc),
        "ContainerSource" => via::<ContainerSource>(doc),
        "NatsSource" => via::<NatsSource>(doc),
        "ApiServerSource" => via::<ApiServerSource>(doc),
        _ => None,
    }
}

#[test]
fn knative_samples_map_to_what_the_file_loader_produces() {
    let Some(dir) = samples() else { return };
    let mut compared = 0;
    for (file, doc) in sample_documents(&dir) {
        let Some(from_crd) = mapped(&doc) else {
            continue;
        };
        let text = serde_json::to_string(&doc).unwrap();
        let from_file = herald_core::load_resource(&file, &text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_crd, from_file, "{file}");
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} samples compared");
}

//! `kubectl kustomize deploy/` renders offline, and what it renders holds what a cluster needs:
//! the CRDs, least-privilege RBAC, probed Deployments, a Service, PDBs and the backend config.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn kustomize(dir: &str) -> Option<Vec<Value>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let out = match Command::new("kubectl").arg("kustomize").arg(&path).output() {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "kubectl is missing in CI: {e}"
            );
            eprintln!("skipping: no kubectl ({e}); scripts/test-deps.sh installs it");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    Some(
        serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect(),
    )
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn deploy_renders_everything_a_cluster_needs() {
    let Some(docs) = kustomize("deploy") else {
        return;
    };
    let mut crds: Vec<_> = of_kind(&docs, "CustomResourceDefinition")
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let mut generated: Vec<_> = herald_crds::definitions()
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    crds.sort();
    generated.sort();
    assert_eq!(crds, generated);
    assert_eq!(of_kind(&docs, "Namespace")[0]["metadata"]["name"], "herald");
    for kind in [
        "ConfigMap",
        "Service",
        "PodDisruptionBudget",
        "ServiceAccount",
        "Deployment",
    ] {
        assert!(!of_kind(&docs, kind).is_empty(), "no {kind}");
    }
    for d in of_kind(&docs, "Deployment") {
        let name = &d["metadata"]["name"];
        assert_eq!(d["metadata"]["namespace"], "herald", "{name}");
        let container = &d["spec"]["template"]["spec"]["containers"][0];
        for probe in ["readinessProbe", "livenessProbe"] {
            assert!(container[probe].is_object(), "{name} has no {probe}");
        }
        let args: Vec<_> = container["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--kubernetes"), "{name}: {args:?}");
    }
    // Least privilege: every rule lists its resources and verbs; no wildcards anywhere.
    for role in of_kind(&docs, "ClusterRole")
        .into_iter()
        .chain(of_kind(&docs, "Role"))
    {
        for rule in role["rules"].as_array().unwrap() {
            for field in ["apiGroups", "resources", "verbs"] {
                let list = rule[field]
                    .as_array()
                    .unwrap_or_else(|| panic!("{rule}: no {field}"));
                assert!(!list.is_empty() && !list.iter().any(|v| v == "*"), "{rule}");
            }
            let verbs = rule["verbs"].as_array().unwrap();
            assert!(
                !verbs
                    .iter()
                    .any(|v| v == "delete" || v == "deletecollection"),
                "{rule}"
            );
        }
    }
    let data_plane = of_kind(&docs, "ClusterRole")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "herald-data-plane")
        .unwrap();
    let mut creates_event_types = false;
    for rule in data_plane["rules"].as_array().unwrap() {
        // It creates the EventTypes it records, and nothing else.
        let event_types = rule["resources"] == serde_json::json!(["eventtypes"]);
        for verb in rule["verbs"].as_array().unwrap() {
            let verb = verb.as_str().unwrap();
            creates_event_types |= event_types && verb == "create";
            assert!(
                ["get", "list", "watch"].contains(&verb) || (event_types && verb == "create"),
                "the data plane only reads (and creates EventTypes): {rule}"
            );
        }
    }
    assert!(
        creates_event_types,
        "the data plane cannot write back EventTypes"
    );
}

#[test]
fn next_to_knative_installs_no_crds() {
    let Some(docs) = kustomize("deploy/with-knative") else {
        return;
    };
    assert!(of_kind(&docs, "CustomResourceDefinition").is_empty());
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 2);
    for d in deployments {
        let args = &d["spec"]["template"]["spec"]["containers"][0]["args"];
        assert!(
            args.as_array()
                .unwrap()
                .iter()
                .any(|a| a == "--with-knative"),
            "{args}"
        );
    }
}

//! The `herald` binary as a user runs it: serve, send and display as separate processes, the
//! README quickstart script, and bad configuration.

mod process;

use process::{Proc, HERALD};
use std::path::Path;
use std::process::Command;

fn url_in(line: &str) -> String {
    let start = line.find("http://").expect("line has a URL");
    line[start..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn serve_send_and_display_as_separate_processes() {
    let mut display = Proc::spawn(&["display", "--listen", "127.0.0.1:0"]);
    let display_url = url_in(&display.wait_line("listening on"));

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {{name: default, namespace: default}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: all, namespace: default}}\n\
         spec:\n  broker: default\n  filter:\n    attributes:\n      type: com.example.cli\n  subscriber:\n    uri: {display_url}/events\n"
    );
    std::fs::write(dir.path().join("herald.yaml"), config).unwrap();
    let mut serve = Proc::spawn(&[
        "serve",
        "--config",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        // The sled store goes to the test's own directory, never into the source tree.
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let broker = url_in(&serve.wait_line("Broker default/default:"));

    for (id, ty) in [
        ("cli-skip", "com.example.other"),
        ("cli-1", "com.example.cli"),
    ] {
        let out = Command::new(HERALD)
            .args([
                "send",
                "--to",
                &broker,
                "--id",
                id,
                "--type",
                ty,
                "--data",
                r#"{"n": 1}"#,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "send failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    display.wait_line("id: cli-1");
    display.wait_line("\"n\": 1");
    assert!(
        !display.seen.iter().any(|l| l.contains("cli-skip")),
        "the filtered-out event was displayed"
    );

    let status = serve.terminate();
    assert!(
        status.success(),
        "herald serve exited with {status} after SIGTERM"
    );
}

#[test]
fn send_reports_a_rejection_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b}\n",
    )
    .unwrap();
    let mut serve = Proc::spawn(&[
        "serve",
        "--config",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        // The sled store goes to the test's own directory, never into the source tree.
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
    ]);
    let broker = url_in(&serve.wait_line("Broker default/b:"));
    let missing = broker.replace("/default/b", "/default/nope");
    let out = Command::new(HERALD)
        .args(["send", "--to", &missing])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("default/nope"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_an_invalid_configuration_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t}\nspec:\n  broker: default\n  subscriber: {uri: 'http://127.0.0.1:1/'}\n  delivery: {retry: 3, backofPolicy: linear}\n",
    )
    .unwrap();
    let out = Command::new(HERALD)
        .args([
            "serve",
            "--config",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
            dir.path().join("data").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "bad.yaml",
        "Trigger default/t",
        "spec.delivery",
        "backofPolicy",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
}

/// Runs an example script in its checking mode (`--check`) on a free port; returns its stdout.
fn run_example_check(script: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new("bash")
        .arg(root.join(script))
        .arg("--check")
        .env("HERALD_BIN", HERALD)
        .env("HERALD_PORT", port.to_string())
        .env("HERALD_ADMIN_PORT", admin_port.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The README's first command, in its checking mode: events visibly reach both displays.
#[test]
fn readme_quickstart_shows_events_reaching_the_displays() {
    let stdout = run_example_check("examples/quickstart/run.sh");
    assert!(
        stdout.contains("[orders display]   ") && stdout.contains("id: order-1"),
        "{stdout}"
    );
    assert!(stdout.contains("id: payment-1"), "{stdout}");
}

#[test]
fn the_example_configuration_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let set = herald_core::load_path(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((set.brokers.len(), set.triggers.len()), (1, 2));
}

/// A plain HTTP/1.1 GET; returns status and body.
fn http_get(base: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// README's `--channels-config` line, with the example file: it loads, and flags given on the
/// command line override it (here the backend and the data directory).
#[test]
fn serve_reads_the_example_channels_config_and_flags_override_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broker.yaml"),
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: default}\n",
    )
    .unwrap();
    let mut serve = Proc::spawn(&[
        "serve",
        "--config",
        dir.path().to_str().unwrap(),
        "--channels-config",
        root.join("examples/channels.yaml").to_str().unwrap(),
        "--channel",
        "memory",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
    ]);
    let admin = url_in(&serve.wait_line("herald admin API on"));
    let (status, body) = http_get(&admin, "/readyz");
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["backends"][0]["kind"], "memory", "{health}");
    assert_eq!(health["backends"][0]["up"], true, "{health}");
    // The flag beat the file's `default: sled`: nothing was written to a store.
    assert!(!dir.path().join("data").exists());

    let bad = dir.path().join("bad-channels.yaml");
    std::fs::write(&bad, "sled: {dataDri: /tmp/x}\n").unwrap();
    let out = Command::new(HERALD)
        .args(["serve", "--channels-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad-channels.yaml") && stderr.contains("dataDri"),
        "{stderr}"
    );
    serve.terminate();
}

/// README's FaaS example, in its checking mode: the function's reply reaches the responses
/// Channel's display, its failure the errors Channel's display.
#[test]
fn readme_faas_example_routes_replies_and_failures_to_their_channels() {
    let stdout = run_example_check("examples/faas/run.sh");
    assert!(stdout.contains("id: order-1-reply"), "{stdout}");
    assert!(
        stdout.contains("knativeerrorcode: 500") && stdout.contains("id: order-2"),
        "{stdout}"
    );
}

/// With an admin token, the admin API and the CLI on it need the token; probes stay open.
#[test]
fn an_admin_token_guards_the_admin_api_but_not_the_probes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broker.yaml"),
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: default, namespace: default}\n",
    )
    .unwrap();
    let mut serve = Proc::spawn(&[
        "serve",
        "--config",
        dir.path().to_str().unwrap(),
        "--channel",
        "memory",
        "--listen",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--admin-token",
        "s3cret",
    ]);
    let base = url_in(&serve.wait_line("herald admin API on"));
    assert_eq!(http_get(&base, "/readyz").0, 200);
    assert_eq!(
        http_get(&base, "/apis/eventing.knative.dev/v1/brokers").0,
        401
    );
    let get = |extra: &[&str]| {
        Command::new(HERALD)
            .args(["get", "brokers", "--server", &base])
            .args(extra)
            .env_remove("HERALD_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let refused = get(&[]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = get(&["--token", "guess"]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("403"));
    let ok = get(&["--token", "s3cret"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("default"));
    serve.terminate();
}

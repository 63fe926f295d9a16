//! The live event stream of a Broker over a real `herald serve` process: `herald tail` prints
//! each event the Broker accepts, lossless in the CloudEvents JSON format with `-o json`,
//! only those its `--filter` matches, replies of a callable subscriber included; the admin
//! route refuses a bad CESQL filter with 400 naming the problem, an unknown Broker with 404,
//! and a caller without the admin token with 401; the test-event route on the admin listener
//! is answered exactly as ingress answers.

mod replicas;

use replicas::admin::*;
use replicas::*;
use serde_json::{json, Value};

const TOKEN: &str = "stream-secret";

fn namespace() -> String {
    format!("ls-{}", std::process::id())
}

/// A Broker `b` and a Trigger `echo` sending `com.example.ask` events to a display that
/// replies to each with a `com.example.answer` copy.
fn write_config(dir: &std::path::Path, ns: &str, display: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("herald.yaml"),
        format!(
            "{}---\n{}",
            broker_yaml(ns, "b", &[]),
            trigger_yaml(ns, "echo", "b", display, &[("type", "com.example.ask")])
        ),
    )
    .unwrap();
}

#[test]
fn tail_prints_accepted_events_and_replies_lossless_and_filtered() {
    run(async {
        let ns = namespace();
        let work = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut display = Proc::spawn(
            "display",
            HERALD,
            &[
                "display",
                "--port",
                &port.to_string(),
                "--reply-type",
                "com.example.answer",
            ],
        );
        display.wait_line("event display listening").await;
        let config = work.path().join("config");
        write_config(&config, &ns, &format!("http://127.0.0.1:{port}/"));
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "b"),
            &["--channel", "memory", "--admin-token", TOKEN],
        )
        .await;
        let broker = format!("{ns}/b");

        let tail_args = |filter: &str| -> Vec<String> {
            [
                "tail",
                "--broker",
                &broker,
                "--filter",
                filter,
                "-o",
                "json",
                "--server",
                &server.admin,
                "--token",
                TOKEN,
            ]
            .map(String::from)
            .to_vec()
        };
        let args = tail_args("type LIKE 'com.example.%' AND type <> 'com.example.noise'");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut tail = Proc::spawn("tail", HERALD, &args);
        tail.wait_line(&format!("watching Broker {broker}")).await;

        // Data with unicode, nesting, numbers that a lossy reader would round, and an extension.
        let sent = json!({
            "specversion": "1.0", "id": "ask-1", "source": "/tests/stream", "type": "com.example.ask",
            "subject": "s", "time": "2026-11-24T10:00:00.123456789Z", "region": "eu",
            "datacontenttype": "application/json",
            "data": {"text": "grüße ✓", "big": 12345678901234567890u64, "nested": [1, {"a": null}]}
        });
        let file = work.path().join("event.json");
        std::fs::write(&file, serde_json::to_vec(&sent).unwrap()).unwrap();
        let to = server.broker_url.clone();
        let noise = herald(&[
            "send",
            "--to",
            &to,
            "--type",
            "com.example.noise",
            "--id",
            "noise-1",
        ])
        .await;
        assert!(noise.success, "{noise}");
        let ask = herald(&["send", "--to", &to, "--file", file.to_str().unwrap()]).await;
        assert!(ask.success, "{ask}");

        let line = tail.wait_line("\"ask-1\"").await;
        let got: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for (name, want) in sent.as_object().unwrap() {
            assert_eq!(&got[name], want, "attribute {name} of {line}");
        }
        // The reply the display sent back into the Broker is accepted there too.
        let reply = tail.wait_line("com.example.answer").await;
        assert!(reply.contains("grüße ✓"), "{reply}");
        assert_eq!(tail.count_lines("noise-1"), 0, "{}", tail.log_tail());

        // The text form: one line per event, time, type, source, id and data.
        let mut text = Proc::spawn(
            "tail-text",
            HERALD,
            &[
                "tail",
                "--broker",
                &broker,
                "--filter",
                "type LIKE 'com.example.%'",
                "--server",
                &server.admin,
                "--token",
                TOKEN,
            ],
        );
        text.wait_line("watching Broker").await;
        let plain = herald(&[
            "send",
            "--to",
            &to,
            "--type",
            "com.example.plain",
            "--id",
            "plain-1",
            "--data",
            "{\"n\": 1}",
        ])
        .await;
        assert!(plain.success, "{plain}");
        let line = text.wait_line("plain-1").await;
        assert!(
            line.contains("com.example.plain") && line.contains("{\"n\": 1}"),
            "{line}"
        );
        tail.kill();
        text.kill();

        // The admin route itself.
        let http = reqwest::Client::new();
        let events = format!("{}/admin/v1/brokers/{ns}/b/events", server.admin);
        let status_of = |r: reqwest::Response| r.status().as_u16();
        let without = http.get(&events).send().await.unwrap();
        assert_eq!(status_of(without), 401);
        let bad = http
            .get(&events)
            .query(&[("filter", "type = ")])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status().as_u16(), 400);
        let message = bad.text().await.unwrap();
        assert!(
            message.contains("invalid CESQL expression \"type = \""),
            "{message}"
        );
        let unknown = http
            .get(&events)
            .query(&[("filter", "NOSUCH(type)")])
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 400);
        assert!(unknown.text().await.unwrap().contains("NOSUCH/1"));
        let missing = http
            .get(format!(
                "{}/admin/v1/brokers/{ns}/nope/events",
                server.admin
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status().as_u16(), 404);
        let cli_bad = herald(&[
            "tail",
            "--broker",
            &broker,
            "--filter",
            "type = ",
            "--server",
            &server.admin,
            "--token",
            TOKEN,
        ])
        .await;
        assert!(
            !cli_bad.success && cli_bad.stderr.contains("invalid CESQL expression"),
            "{cli_bad}"
        );

        // Sending through the admin listener: ingress's answers, ingress's checks.
        let send = format!("{}/admin/v1/brokers/{ns}/b/events", server.admin);
        let event = json!({"specversion": "1.0", "id": "via-admin", "source": "/ui", "type": "com.example.ui"});
        // A structured event POSTed to `url`, with the admin token or without.
        let post = |url: String, body: String, token: bool| {
            let mut request = http
                .post(url)
                .header("content-type", "application/cloudevents+json")
                .body(body);
            if token {
                request = request.bearer_auth(TOKEN);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        assert_eq!(post(send.clone(), event.to_string(), true).await, 202);
        let invalid = json!({"specversion": "1.0", "id": "x"}).to_string();
        assert_eq!(post(send.clone(), invalid, true).await, 400);
        let nowhere = format!("{}/admin/v1/brokers/{ns}/nope/events", server.admin);
        assert_eq!(post(nowhere, event.to_string(), true).await, 404);
        assert_eq!(post(send.clone(), event.to_string(), false).await, 401);
    });
}

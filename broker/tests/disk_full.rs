//! A full disk under `herald serve` on the durable default: the data directory is a 4 MiB
//! tmpfs that a filler file mostly takes. Ingress answers 503 with Retry-After and a message
//! naming the full disk, keeps answering so while it is full, and accepts again without a
//! restart once the filler is removed; every event answered 202, before and after, reaches
//! the subscriber.
//!
//! Mounting a tmpfs needs root (CI runs as root here): without it the test fails under CI=true
//! and prints a skip otherwise.

mod replicas;

use herald_test_support::disk::SmallDisk;
use replicas::admin::*;
use replicas::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn a_full_disk_answers_503_and_herald_serve_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount(module_path!(), "4m") else {
        return;
    };
    run(async move {
        let sink = Sink::start((0, 0)).await;
        let config = tempfile::tempdir().unwrap();
        std::fs::write(
            config.path().join("herald.yaml"),
            format!(
                "{}---\n{}",
                broker_yaml("df", "b", &[]),
                trigger_yaml("df", "t", "b", &sink.url, &[("type", EVENT_TYPE)])
            ),
        )
        .unwrap();
        let herald = Replica::start(
            "herald",
            config.path(),
            &disk.path().join("data"),
            ("df", "b"),
            &["--channel", "sled"],
        )
        .await;
        Admin::new(&herald.admin)
            .wait_ready("triggers", "df", "t", Duration::from_secs(60))
            .await;
        let filler = disk.path().join("filler");
        std::fs::write(&filler, vec![0u8; 3 << 20]).unwrap();

        let http = reqwest::Client::new();
        let body = "x".repeat(4096);
        let post = |id: String| {
            http.post(&herald.broker_url)
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-type", EVENT_TYPE)
                .header("ce-source", "/herald/tests/disk-full")
                .header("content-type", "text/plain")
                .body(body.clone())
                .send()
        };
        let mut accepted = HashSet::new();
        let refusal = loop {
            let id = format!("before-{}", accepted.len());
            let answer = post(id.clone()).await.unwrap();
            if answer.status() != 202 {
                break answer;
            }
            accepted.insert(id);
            assert!(accepted.len() < 5_000, "the disk never filled");
        };
        let status = refusal.status();
        let retry_after = refusal.headers().get("retry-after").cloned();
        let message = refusal.text().await.unwrap();
        println!(
            "disk full after {} events: {status} {message:?}",
            accepted.len()
        );
        assert_eq!(status, 503, "{message}");
        assert!(retry_after.is_some(), "503 without Retry-After");
        assert!(message.contains("disk is full"), "{message}");
        // Still full: still refused.
        assert_eq!(post("still".into()).await.unwrap().status(), 503);

        // Space freed: accepted again, no restart (within the Retry-After it suggested).
        std::fs::remove_file(&filler).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        let mut after = 0;
        while after < 20 {
            let id = format!("after-{after}");
            let status = post(id.clone()).await.unwrap().status();
            if status == 202 {
                accepted.insert(id);
                after += 1;
            } else {
                assert!(
                    Instant::now() < end,
                    "still {status} 30 s after space was freed:\n{}",
                    herald.proc.log_tail()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        sink.wait_for_or(&accepted, Duration::from_secs(60), "disk full", || {
            herald.proc.log_tail()
        })
        .await;
        println!(
            "{} accepted, all delivered ({} duplicates)",
            accepted.len(),
            duplicates(&sink.counts())
        );
        drop(herald);
    });
}

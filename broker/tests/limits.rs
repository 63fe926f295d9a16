//! Ingress limits of a real `herald serve`, each at its edge: at the limit accepted, one over
//! refused with its status (413 for the body and the batch, 431 for header count and size)
//! and a message naming the limit and its flag.

mod replicas;

use replicas::admin::*;
use replicas::*;
use std::io::{Read, Write};

const NS: &str = "limits";
const MAX_BODY: usize = 1000;
const MAX_BATCH: usize = 3;
const MAX_HEADER_COUNT: usize = 20;
const MAX_HEADER_BYTES: usize = 2000;

async fn start(dir: &std::path::Path) -> Replica {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("b.yaml"), broker_yaml(NS, "default", &[])).unwrap();
    let (body, batch) = (MAX_BODY.to_string(), MAX_BATCH.to_string());
    let (count, bytes) = (MAX_HEADER_COUNT.to_string(), MAX_HEADER_BYTES.to_string());
    let args = [
        "--channel",
        "memory",
        "--max-body-bytes",
        &body,
        "--max-batch-events",
        &batch,
        "--max-header-count",
        &count,
        "--max-header-bytes",
        &bytes,
    ];
    Replica::start("herald", &config, &dir.join("data"), (NS, "default"), &args).await
}

/// A request written byte for byte (reqwest adds headers of its own), answered on a
/// connection of its own: the status and the body.
fn raw_post(base: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut head = format!("POST {path} HTTP/1.1\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// A binary-mode event's headers (8 fields), `Connection: close` included.
fn event_headers(id: &str, body_len: usize) -> Vec<(String, String)> {
    [
        ("host", "127.0.0.1"),
        ("connection", "close"),
        ("content-type", "application/octet-stream"),
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/limits"),
        ("ce-type", "dev.herald.test.limits"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .chain([("content-length".to_string(), body_len.to_string())])
    .collect()
}

fn header_bytes(headers: &[(String, String)]) -> usize {
    headers.iter().map(|(n, v)| n.len() + v.len()).sum()
}

#[test]
fn header_count_and_size_are_limited_at_their_edge_with_431() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let herald = start(dir.path()).await;
        let path = format!("/{NS}/default");

        // Count: exactly the limit, then one more.
        let with_count = |n: usize, id: &str| {
            let mut h = event_headers(id, 2);
            let base = h.len();
            h.extend((base..n).map(|i| (format!("x-pad-{i}"), "v".to_string())));
            assert_eq!(h.len(), n);
            h
        };
        let (status, body) = raw_post(
            &herald.base,
            &path,
            &with_count(MAX_HEADER_COUNT, "c1"),
            b"ok",
        );
        assert_eq!(status, 202, "{MAX_HEADER_COUNT} header fields: {body}");
        let (status, body) = raw_post(
            &herald.base,
            &path,
            &with_count(MAX_HEADER_COUNT + 1, "c2"),
            b"ok",
        );
        assert_eq!(
            status,
            431,
            "{} header fields: {body}",
            MAX_HEADER_COUNT + 1
        );
        assert!(
            body.contains("--max-header-count") && body.contains(&MAX_HEADER_COUNT.to_string()),
            "{body}"
        );

        // Bytes: one padding field sized to reach exactly the limit, then one byte more.
        let with_bytes = |n: usize, id: &str| {
            let mut h = event_headers(id, 2);
            let pad = n - header_bytes(&h) - "x-pad".len();
            h.push(("x-pad".to_string(), "v".repeat(pad)));
            assert_eq!(header_bytes(&h), n);
            h
        };
        let (status, body) = raw_post(
            &herald.base,
            &path,
            &with_bytes(MAX_HEADER_BYTES, "b1"),
            b"ok",
        );
        assert_eq!(status, 202, "{MAX_HEADER_BYTES} header bytes: {body}");
        let (status, body) = raw_post(
            &herald.base,
            &path,
            &with_bytes(MAX_HEADER_BYTES + 1, "b2"),
            b"ok",
        );
        assert_eq!(status, 431, "{} header bytes: {body}", MAX_HEADER_BYTES + 1);
        assert!(
            body.contains("--max-header-bytes") && body.contains(&MAX_HEADER_BYTES.to_string()),
            "{body}"
        );

        // The admin listener has the same limits.
        let mut probe = vec![
            ("host".to_string(), "127.0.0.1".to_string()),
            ("connection".to_string(), "close".to_string()),
            ("content-length".to_string(), "0".to_string()),
        ];
        probe.extend((0..MAX_HEADER_COUNT).map(|i| (format!("x-pad-{i}"), "v".to_string())));
        let (status, body) = raw_post(&herald.admin, "/admin/v1/dlq/limits/default", &probe, b"");
        assert_eq!(status, 431, "admin: {body}");
        assert!(body.contains("--max-header-count"), "{body}");
    });
}

#[test]
fn body_size_and_batch_length_are_limited_at_their_edge_with_413() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let herald = start(dir.path()).await;
        let http = reqwest::Client::new();
        let post_binary = |id: &'static str, len: usize| {
            http.post(&herald.broker_url)
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-source", "/limits")
                .header("ce-type", "dev.herald.test.limits")
                .header("content-type", "application/octet-stream")
                .body(vec![b'x'; len])
                .send()
        };
        let r = post_binary("body-at", MAX_BODY).await.unwrap();
        assert_eq!(r.status().as_u16(), 202, "{MAX_BODY} bytes");
        let r = post_binary("body-over", MAX_BODY + 1).await.unwrap();
        assert_eq!(r.status().as_u16(), 413, "{} bytes", MAX_BODY + 1);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("--max-body-bytes") && text.contains(&MAX_BODY.to_string()),
            "{text}"
        );

        // Without a Content-Length (chunked), the limit holds while reading.
        let mut headers = event_headers("chunked-over", 0);
        headers.retain(|(n, _)| n != "content-length");
        headers.push(("transfer-encoding".into(), "chunked".into()));
        let mut body = format!("{:x}\r\n", MAX_BODY + 1).into_bytes();
        body.extend(vec![b'y'; MAX_BODY + 1]);
        body.extend(b"\r\n0\r\n\r\n");
        let (status, text) = raw_post(&herald.base, &format!("/{NS}/default"), &headers, &body);
        assert_eq!(status, 413, "chunked, {} bytes: {text}", MAX_BODY + 1);

        let batch = |n: usize| {
            let events: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"specversion":"1.0","id":"batch-{n}-{i}","source":"/limits","type":"t"}}"#
                    )
                })
                .collect();
            format!("[{}]", events.join(","))
        };
        let post_batch = |n: usize| {
            http.post(&herald.broker_url)
                .header("content-type", "application/cloudevents-batch+json")
                .body(batch(n))
                .send()
        };
        let r = post_batch(MAX_BATCH).await.unwrap();
        assert_eq!(r.status().as_u16(), 202, "a batch of {MAX_BATCH}");
        let r = post_batch(MAX_BATCH + 1).await.unwrap();
        assert_eq!(r.status().as_u16(), 413, "a batch of {}", MAX_BATCH + 1);
        let text = r.text().await.unwrap();
        assert!(
            text.contains("--max-batch-events") && text.contains(&MAX_BATCH.to_string()),
            "{text}"
        );
    });
}

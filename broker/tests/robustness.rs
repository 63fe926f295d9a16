//! `herald serve` against hostile clients and subscribers, as separate processes: slowloris
//! connections are closed after the header timeout, idle connections beyond the cap do not
//! keep a normal client out, a body shorter than its Content-Length ends with 408, shutdown
//! ends within the drain timeout (an unfinished request, a failing subscriber on the durable
//! channel), a second SIGTERM exits at once, the memory channel reports what it loses, and a
//! batch can neither be unbounded in length nor take the machine's memory, and the heap is
//! not backed by transparent huge pages (which kept an idle Herald's unused heap resident).

mod process;

use process::{Proc, DEADLINE, HERALD};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `herald serve` on an ephemeral port, with its config and data in a temporary directory.
struct Served {
    proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Served {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl Served {
    /// Serves `yaml` with `extra` flags on an ephemeral port.
    fn serve(yaml: &str, extra: &[&str]) -> Served {
        Served::serve_with_env(yaml, extra, &[])
    }

    /// `serve`, with `env` (name, value) in Herald's environment too.
    fn serve_with_env(yaml: &str, extra: &[&str], env: &[(&str, &str)]) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("herald.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut command = Command::new(HERALD);
        command
            .args(["serve", "--no-watch", "--listen", "127.0.0.1:0"])
            .args(["--admin-addr", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied());
        let mut proc = Proc::spawn_command(command);
        let line = proc.wait_line("herald serving on");
        let url = &line[line.find("http://").unwrap() + 7..];
        let addr = url.split(['/', ' ']).next().unwrap().parse().unwrap();
        Served {
            proc,
            addr,
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap()
    }

    /// A field of the process's /proc status, e.g. "VmRSS:" gives "1234 kB".
    fn status_field(&self, name: &str) -> String {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.proc.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {status}"))
            .trim()
            .to_string()
    }
}

/// How the test subscriber answers.
#[derive(Clone, Copy)]
enum Mode {
    Accept,
    Fail,
    Hang,
}

/// A minimal HTTP subscriber on its own threads; counts requests.
fn subscriber(mode: Mode) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                loop {
                    let mut len = 0;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let status = match mode {
                        Mode::Accept => "202 Accepted",
                        Mode::Fail => "500 Internal Server Error",
                        Mode::Hang => {
                            std::thread::sleep(Duration::from_secs(3600));
                            return;
                        }
                    };
                    let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                    if stream.write_all(response.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, count)
}

fn broker_yaml(channel: &str, subscriber: &str, delivery: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  namespace: ns\n  \
         annotations: {{herald.dev/channel: {channel}}}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t, namespace: ns}}\n\
         spec:\n  broker: b\n  subscriber: {{uri: '{subscriber}'}}\n  delivery: {{{delivery}}}\n"
    )
}

/// One request on a fresh connection; the status and body of the answer.
fn post(addr: SocketAddr, content_type: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let head = format!(
        "POST /ns/b HTTP/1.1\r\nhost: x\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    // The server may answer (413) and close before the whole body is written.
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body));
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, String) {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn event_json(id: &str) -> String {
    format!(r#"{{"specversion":"1.0","id":"{id}","source":"/robustness","type":"t"}}"#)
}

fn send_event(addr: SocketAddr, id: &str) -> u16 {
    post(
        addr,
        "application/cloudevents+json",
        event_json(id).as_bytes(),
    )
    .0
}

/// Whether the server has closed `stream` (EOF or reset), waiting up to `limit`.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn slowloris_connections_are_closed_after_the_header_timeout() {
    let (sub, _) = subscriber(Mode::Accept);
    let herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0"),
        &["--header-read-timeout", "1"],
    );
    let n = 50;
    let mut conns: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(herald.addr).unwrap();
            // Half send part of a head, half send nothing at all.
            if i % 2 == 0 {
                s.write_all(b"POST /ns/b HTTP/1.1\r\nhost: x\r\nx-slow: ")
                    .unwrap();
            }
            s
        })
        .collect();
    // Keep dripping bytes into the partial heads: progress must not extend the timeout.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        for s in conns.iter_mut().step_by(2) {
            let _ = s.write_all(b"a");
        }
    }
    let closed = conns
        .iter_mut()
        .map(|s| closed_within(s, Duration::from_secs(5)))
        .filter(|closed| *closed)
        .count();
    println!("slowloris: {closed} of {n} connections closed by the 1 s header timeout");
    assert_eq!(closed, n);
    assert_eq!(send_event(herald.addr, "after"), 202);
}

#[test]
fn idle_connections_beyond_the_cap_do_not_keep_a_client_out() {
    let (sub, _) = subscriber(Mode::Accept);
    let cap = 20;
    let herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0"),
        &[
            "--max-connections",
            &cap.to_string(),
            "--header-read-timeout",
            "120",
        ],
    );
    // Keep-alive connections that made one request and then sit idle, and fresh ones that
    // never send anything: 3x the cap.
    let mut idle = Vec::new();
    for i in 0..3 * cap {
        let mut s = TcpStream::connect(herald.addr).unwrap();
        if i % 2 == 0 {
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                .unwrap();
            let mut buf = [0; 256];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.read(&mut buf);
        }
        idle.push(s);
    }
    let mut served = 0;
    for i in 0..5 {
        if send_event(herald.addr, &format!("normal-{i}")) == 202 {
            served += 1;
        }
    }
    println!(
        "connection cap {cap}: {} idle connections opened, a normal client got {served} of 5 events accepted",
        idle.len()
    );
    assert_eq!(served, 5);
}

#[test]
fn a_body_shorter_than_its_content_length_ends_with_408() {
    let (sub, _) = subscriber(Mode::Accept);
    let herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0"),
        &["--body-timeout", "1"],
    );
    let mut s = TcpStream::connect(herald.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"POST /ns/b HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\ncontent-length: 1000\r\n\r\n{\"specversion\"",
    )
    .unwrap();
    let start = Instant::now();
    let (status, text) = read_response(&mut s);
    println!(
        "short body: {status} after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(status, 408, "{text}");
}

#[test]
fn an_unfinished_request_does_not_hold_shutdown() {
    let (sub, _) = subscriber(Mode::Accept);
    let mut herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0"),
        &["--drain-timeout", "2", "--body-timeout", "600"],
    );
    let mut s = TcpStream::connect(herald.addr).unwrap();
    s.write_all(
        b"POST /ns/b HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\ncontent-length: 1000\r\n\r\n{",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    herald.signal();
    let took = herald.wait_exit(Duration::from_secs(15));
    println!(
        "shutdown with an unfinished request: {:.1} s (drain timeout 2 s)",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let (sub, count) = subscriber(Mode::Hang);
    let mut herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0, timeout: PT600S"),
        &["--drain-timeout", "600"],
    );
    assert_eq!(send_event(herald.addr, "held"), 202);
    let end = Instant::now() + DEADLINE;
    while count.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < end, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    herald.signal();
    herald.wait_line("shutting down");
    std::thread::sleep(Duration::from_millis(300));
    herald.signal();
    let took = herald.wait_exit(Duration::from_secs(10));
    println!(
        "second SIGTERM: exited {:.2} s after it (drain timeout 600 s)",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(3));
}

#[test]
fn the_durable_channel_shuts_down_within_the_drain_timeout() {
    let (sub, count) = subscriber(Mode::Fail);
    // Ten retries from 1 s, exponential: the whole schedule is over 17 minutes.
    let mut herald = Served::serve(
        &broker_yaml(
            "sled",
            &sub,
            "retry: 10, backoffPolicy: exponential, backoffDelay: PT1S",
        ),
        &["--drain-timeout", "3"],
    );
    for i in 0..5 {
        assert_eq!(send_event(herald.addr, &format!("e{i}")), 202);
    }
    let end = Instant::now() + DEADLINE;
    while count.load(Ordering::SeqCst) < 5 {
        assert!(Instant::now() < end, "no delivery attempts");
        std::thread::sleep(Duration::from_millis(20));
    }
    herald.signal();
    let took = herald.wait_exit(Duration::from_secs(20));
    println!(
        "sled with a failing subscriber, --drain-timeout 3: exited in {:.1} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
}

#[test]
fn the_memory_channel_reports_what_it_loses() {
    let (sub, count) = subscriber(Mode::Hang);
    let mut herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0, timeout: PT600S"),
        &["--drain-timeout", "1", "--max-in-flight", "1"],
    );
    let n = 20;
    for i in 0..n {
        assert_eq!(send_event(herald.addr, &format!("e{i}")), 202);
    }
    let end = Instant::now() + DEADLINE;
    while count.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < end, "no delivery attempt");
        std::thread::sleep(Duration::from_millis(20));
    }
    herald.signal();
    herald.wait_exit(Duration::from_secs(15));
    let line = herald.wait_line("accepted events were not handled");
    println!("{line}");
    assert!(line.contains(&format!("{n} accepted events")), "{line}");
}

/// Without flags the memory channel holds 10,000 undelivered events per Broker (as
/// `--max-lag-events` says), then answers 429 with Retry-After: the durable channels'
/// 1,000,000 would be gigabytes of RSS before an overload met its first refusal.
#[test]
fn the_memory_channel_refuses_past_its_default_bound() {
    let (sub, _) = subscriber(Mode::Hang);
    let herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0, timeout: PT600S"),
        &[],
    );
    let batch = |from: usize| {
        let events: Vec<String> = (from..from + 500)
            .map(|i| event_json(&i.to_string()))
            .collect();
        format!("[{}]", events.join(","))
    };
    let mut accepted = 0;
    let (status, text) = loop {
        let (status, text) = post(
            herald.addr,
            "application/cloudevents-batch+json",
            batch(accepted).as_bytes(),
        );
        if status != 202 {
            break (status, text);
        }
        accepted += 500;
        assert!(
            accepted <= 10_000,
            "accepted {accepted} events past the bound"
        );
    };
    assert_eq!((status, accepted), (429, 10_000), "{text}");
    assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
    assert!(text.contains("capacity 10000"), "{text}");
}

#[test]
fn batches_are_capped_and_memory_stays_bounded() {
    let (sub, _) = subscriber(Mode::Accept);
    // A body limit above the batch, so the batch length is what refuses it.
    let herald = Served::serve(
        &broker_yaml("memory", &sub, "retry: 0"),
        &["--max-body-bytes", "67108864"],
    );
    // 100k small events in one batch (about 7 MB): refused as too long.
    let events: Vec<String> = (0..100_000).map(|i| event_json(&i.to_string())).collect();
    let big = format!("[{}]", events.join(","));
    let (status, text) = post(
        herald.addr,
        "application/cloudevents-batch+json",
        big.as_bytes(),
    );
    println!("100k-event batch ({} bytes): {status}", big.len());
    assert!(status == 413 || status == 400, "{text}");
    assert!(text.contains("events") || text.contains("limit"), "{text}");

    // Ten concurrent batches of just under 4 MiB each, 1,000 events with 4 KB of data apiece.
    let data = "x".repeat(4000);
    let batch: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                r#"{{"specversion":"1.0","id":"b{i}","source":"/robustness","type":"t","datacontenttype":"text/plain","data":"{data}"}}"#
            )
        })
        .collect();
    let batch = Arc::new(format!("[{}]", batch.join(",")).into_bytes());
    let before = herald.rss_kib();
    let addr = herald.addr;
    let senders: Vec<_> = (0..10)
        .map(|_| {
            let batch = batch.clone();
            std::thread::spawn(move || post(addr, "application/cloudevents-batch+json", &batch).0)
        })
        .collect();
    let mut peak = before;
    let statuses: Vec<u16> = senders
        .into_iter()
        .map(|h| {
            while !h.is_finished() {
                peak = peak.max(herald.rss_kib());
                std::thread::sleep(Duration::from_millis(5));
            }
            h.join().unwrap()
        })
        .collect();
    let after = herald.rss_kib();
    peak = peak.max(after);
    println!(
        "ten concurrent {} KiB batches: statuses {statuses:?}; RSS {} MiB before, peak {} MiB, {} MiB after",
        batch.len() / 1024,
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 429),
        "{statuses:?}"
    );
    // Generous: the bodies alone are 40 MiB and the channel keeps what it accepted.
    assert!(peak < 600 * 1024, "peak RSS {} MiB", peak / 1024);
}

/// mimalloc asks for huge pages on its heap, so where the kernel grants them on request every
/// touched 2 MiB of heap stayed resident: Herald turns them off for itself before its first
/// allocation, and leaves the choice to mimalloc when `MIMALLOC_ALLOW_THP` is set.
#[test]
fn the_heap_is_not_backed_by_transparent_huge_pages_unless_asked() {
    let (sub, _) = subscriber(Mode::Accept);
    let yaml = broker_yaml("memory", &sub, "retry: 0");
    let herald = Served::serve(&yaml, &[]);
    assert_eq!(herald.status_field("THP_enabled:"), "0");
    let asked = Served::serve_with_env(&yaml, &[], &[("MIMALLOC_ALLOW_THP", "1")]);
    assert_eq!(asked.status_field("THP_enabled:"), "1");
}

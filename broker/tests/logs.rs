//! How `herald` writes its logs: `--log-format json` (or `HERALD_LOG_FORMAT=json`) gives one
//! JSON object per line on stderr, with `timestamp`, `level`, and `fields` holding `message`
//! and the event's own fields; text logs carry colour codes on a terminal only, and never
//! with `NO_COLOR` set.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
const DEADLINE: Duration = Duration::from_secs(30);
const ESC: char = '\u{1b}';

/// A child whose output lines (one stream) are read by a thread.
struct Lines {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Lines {
    fn spawn(
        mut command: Command,
        stream: impl FnOnce(&mut Child) -> Box<dyn Read + Send>,
    ) -> Lines {
        let mut child = command.spawn().expect("starts");
        let out = stream(&mut child);
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Lines {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one contains `needle`.
    fn until(&mut self, needle: &str) -> &[String] {
        let end = Instant::now() + DEADLINE;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = end
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n"))
                });
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {needle:?}; saw:\n{}", self.seen.join("\n")),
            }
        }
        &self.seen
    }

    /// SIGTERM, and every line until the process exits.
    fn terminate(&mut self) -> &[String] {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let end = Instant::now() + DEADLINE;
        // The reader's channel closes when the process (and so its stream) is gone.
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => break,
            }
        }
        let _ = self.child.wait();
        &self.seen
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `herald serve` with no configuration (it warns about that) on free ports, its stderr on
/// a pipe.
fn serve(data: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Lines {
    let mut command = Command::new(HERALD);
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .env_remove("HERALD_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Lines::spawn(command, |c| Box::new(c.stderr.take().unwrap()))
}

fn assert_json_lines(lines: &[String]) -> Vec<serde_json::Value> {
    assert!(!lines.is_empty());
    lines
        .iter()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not one JSON object: {line:?}: {e}"));
            assert!(v.is_object(), "{line}");
            for key in ["timestamp", "level", "target"] {
                assert!(v[key].is_string(), "no {key}: {line}");
            }
            assert!(
                v["fields"]["message"].is_string(),
                "no fields.message: {line}"
            );
            v
        })
        .collect()
}

#[test]
fn json_logs_are_one_object_per_line_with_level_message_and_fields() {
    for (how, extra, env) in [
        ("--log-format json", &["--log-format", "json"][..], &[][..]),
        (
            "HERALD_LOG_FORMAT=json",
            &[][..],
            &[("HERALD_LOG_FORMAT", "json")][..],
        ),
    ] {
        let data = tempfile::tempdir().unwrap();
        let mut herald = serve(data.path(), extra, env);
        herald.until("herald admin API on");
        let lines = herald.terminate().to_vec();
        let logs = assert_json_lines(&lines);
        let warned = logs.iter().any(|v| {
            v["level"] == "WARN"
                && v["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("no --config given")
        });
        assert!(
            warned,
            "{how}: no WARN about the missing config:\n{}",
            lines.join("\n")
        );
        // The addresses it serves on are log events too, the address a field of its own.
        let serving = logs
            .iter()
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("herald serving on http://")
            })
            .unwrap_or_else(|| panic!("{how}: no serving line:\n{}", lines.join("\n")));
        assert_eq!(serving["level"], "INFO", "{how}");
        assert!(
            serving["fields"]["url"]
                .as_str()
                .is_some_and(|u| u.starts_with("http://127.0.0.1:")),
            "{how}: {serving}"
        );
        assert!(
            logs.iter().any(|v| v["fields"]["message"]
                .as_str()
                .unwrap()
                .starts_with("shutting down")),
            "{how}: {}",
            lines.join("\n")
        );
    }
}

#[test]
fn text_logs_on_a_pipe_have_no_colour_codes() {
    let data = tempfile::tempdir().unwrap();
    let mut herald = serve(data.path(), &["--log-format", "text"], &[]);
    herald.until("herald admin API on");
    let lines = herald.terminate().to_vec();
    let text = lines.join("\n");
    assert!(
        text.contains("WARN") && text.contains("no --config given"),
        "{text}"
    );
    assert!(!text.contains(ESC), "colour codes on a pipe:\n{text:?}");
}

/// On a terminal (a pty from `script`), text logs are coloured, unless NO_COLOR is set.
#[test]
fn text_logs_on_a_terminal_are_coloured_unless_no_color() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(
            !herald_test_support::in_ci(),
            "script (util-linux) is needed for a pty"
        );
        eprintln!("skipping: no `script` to run herald on a pty");
        return;
    }
    for (no_color, coloured) in [(None, true), (Some("1"), false)] {
        let data = tempfile::tempdir().unwrap();
        let line = format!(
            "{HERALD} serve --listen 127.0.0.1:0 --admin-addr 127.0.0.1:0 --data-dir {}",
            data.path().display()
        );
        let mut command = Command::new("script");
        command
            .args(["-qfec", &line, "/dev/null"])
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env_remove("HERALD_LOG_FORMAT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(v) = no_color {
            command.env("NO_COLOR", v);
        }
        let mut herald = Lines::spawn(command, |c| Box::new(c.stdout.take().unwrap()));
        let text = herald.until("no --config given").join("\n");
        assert_eq!(
            text.contains(ESC),
            coloured,
            "NO_COLOR={no_color:?}: colour codes {}expected:\n{text:?}",
            if coloured { "" } else { "not " }
        );
    }
}

/// What is logged of a delivery that fails names its route and event itself: the per-delivery
/// span is debug (at info, creating and entering it cost 9% of an event's instructions), so
/// at the default level no span context comes with these lines.
#[test]
fn a_failed_delivery_is_logged_with_its_route_and_event_id_and_no_span() {
    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("config.yaml");
    std::fs::write(
        &config,
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n---\n\
         apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: gone, namespace: ns}\n\
         spec: {broker: b, subscriber: {uri: \"http://127.0.0.1:1/\"}, delivery: {retry: 0}}\n",
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let mut herald = serve(
        data.path(),
        &[
            "--log-format",
            "json",
            "--channel",
            "memory",
            "--config",
            &config,
        ],
        &[],
    );
    let serving = assert_json_lines(herald.until("herald serving on http://"))
        .into_iter()
        .find_map(|v| {
            let message = v["fields"]["message"].as_str()?;
            let url = v["fields"]["url"]
                .as_str()
                .filter(|_| message.starts_with("herald serving on"))?;
            Some(
                url.trim_start_matches("http://")
                    .trim_end_matches('/')
                    .to_string(),
            )
        })
        .expect("a serving line with its url");
    let mut s = std::net::TcpStream::connect(&serving).unwrap();
    std::io::Write::write_all(
        &mut s,
        b"POST /ns/b HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: lost-1\r\n\
          ce-source: /logs\r\nce-type: t\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi",
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let lines = herald.until("event parked").to_vec();
    let logs = assert_json_lines(&lines);
    for message in ["UNDELIVERABLE EVENT", "event parked"] {
        let line = logs
            .iter()
            .find(|v| v["fields"]["message"].as_str().unwrap().contains(message))
            .unwrap_or_else(|| panic!("no {message:?} line:\n{}", lines.join("\n")));
        let fields = &line["fields"];
        assert_eq!(fields["event.id"], "lost-1", "{message}: {line}");
        assert!(
            fields["route"].as_str().is_some_and(|r| r.contains("gone")),
            "{message}: {line}"
        );
        assert!(line.get("spans").is_none(), "{message}: {line}");
    }
}

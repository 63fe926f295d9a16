//! A `herald` child process for the synchronous process tests (`cli.rs`, `robustness.rs`): its
//! stdout and stderr lines are collected by threads and read with a deadline; it is killed
//! when dropped.

// Each test binary uses a different subset.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Proc {
    pub child: Child,
    lines: Receiver<String>,
    pub seen: Vec<String>,
}

impl Proc {
    /// `herald` with `args`.
    pub fn spawn(args: &[&str]) -> Proc {
        let mut command = Command::new(HERALD);
        command.args(args);
        Proc::spawn_command(command)
    }

    pub fn spawn_command(mut command: Command) -> Proc {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("herald starts");
        let (tx, lines) = channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Proc {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// A line containing `needle` (one already seen, or the next to arrive within the
    /// deadline).
    pub fn wait_line(&mut self, needle: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let end = Instant::now() + DEADLINE;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line containing {needle:?} within {DEADLINE:?}; saw:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends SIGTERM.
    pub fn signal(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    /// Waits for the process to exit (collecting the rest of its output); how long it took.
    pub fn wait_exit(&mut self, limit: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.child.try_wait().unwrap().is_some() {
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "herald did not exit within {limit:?}; saw:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then its exit status once it exits (within the deadline).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal();
        self.wait_exit(DEADLINE);
        self.child.try_wait().unwrap().expect("exited")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

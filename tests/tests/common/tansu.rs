//! A private tansu (a Kafka-API broker) for the Kafka tests, on a free port with a fresh
//! sqlite store.

use herald_broker::backends::BackendsConfig;
use herald_channels::KafkaConfig;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A private tansu broker on a free port with a fresh sqlite store; killed when dropped.
pub struct Tansu {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts one; `None` (with a notice) when tansu is missing, a failure with CI=true.
    pub async fn start() -> Option<Tansu> {
        let bin = std::env::var("TANSU_BIN").unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_default();
            let p = std::path::Path::new(&home).join(".cargo/bin/tansu");
            if p.exists() {
                p.display().to_string()
            } else {
                "tansu".into()
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let spawned = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu resolves a sqlite path relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(c) => c,
            Err(e) if super::in_ci() => {
                panic!("tansu is required in CI: {bin}: {e}")
            }
            Err(e) => {
                eprintln!("skipping: cannot start tansu ({bin}: {e}); install it with `cargo install tansu`");
                return None;
            }
        };
        let tansu = Tansu {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "tansu did not listen within 15 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(tansu)
    }
}

impl Tansu {
    /// Channel backends with Kafka on this tansu.
    pub fn channels(&self) -> BackendsConfig {
        BackendsConfig {
            kafka: KafkaConfig {
                bootstrap_servers: format!("127.0.0.1:{}", self.port),
                ..Default::default()
            },
            ..Default::default()
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

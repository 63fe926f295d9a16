//! A private tansu (a Kafka-API broker) per test, on a free port with a fresh sqlite store
//! (as the channel and broker tests start it), and the plain Kafka clients the KafkaSource
//! tests drive it with. With CI=true a missing tansu fails the test; elsewhere it is skipped
//! with a notice. TANSU_BIN names another binary.

#![allow(dead_code)]

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = std::path::Path::new(&home).join(".cargo/bin/tansu");
    if p.exists() {
        p
    } else {
        "tansu".into()
    }
}

/// Killed when dropped.
pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts one; `None` (with a notice) when tansu cannot start, a failure with CI=true.
    pub async fn start(test: &str) -> Option<Tansu> {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut tansu = Tansu {
            child: None,
            port,
            dir,
        };
        match tansu.launch().await {
            Ok(()) => Some(tansu),
            Err(e) if crate::common::in_ci() => panic!("{test}: tansu is required in CI: {e}"),
            Err(e) => {
                eprintln!("skipping {test}: cannot start tansu ({e}); install it with `cargo install tansu`");
                None
            }
        }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> Result<(), String> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(binary())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            // tansu resolves a sqlite path relative to its working directory.
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("tansu exited with {status}"));
            }
            if Instant::now() > deadline {
                return Err("tansu did not listen within 15 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port and sqlite store.
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await.expect("tansu restarts");
    }

    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .unwrap();
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topic");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("topic {t}: {e}"));
        }
        tokio::task::spawn_blocking(move || drop(admin))
            .await
            .unwrap();
    }

    pub fn producer(&self) -> Producer {
        Producer(
            ClientConfig::new()
                .set("bootstrap.servers", self.bootstrap())
                .set("message.timeout.ms", "10000")
                .create()
                .unwrap(),
        )
    }

    /// The group's committed offset per partition of `topic` (partitions with none left out).
    pub async fn committed(&self, group: &str, topic: &str, partitions: i32) -> BTreeMap<i32, i64> {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", group)
            .create()
            .unwrap();
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || {
            let mut tpl = TopicPartitionList::new();
            for p in 0..partitions {
                tpl.add_partition(&topic, p);
            }
            let got = client
                .committed_offsets(tpl, Duration::from_secs(10))
                .expect("committed offsets");
            got.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) => Some((e.partition(), o)),
                    _ => None,
                })
                .collect()
        })
        .await
        .unwrap()
    }

    /// Waits until the group has committed `want` (partition -> offset) on `topic`.
    pub async fn wait_committed(&self, group: &str, topic: &str, want: &BTreeMap<i32, i64>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let partitions = want.keys().max().map_or(1, |p| p + 1);
            let now = self.committed(group, topic, partitions).await;
            if want.iter().all(|(p, o)| now.get(p) == Some(o)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "committed {now:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
    }
}

pub struct Producer(FutureProducer);

impl Producer {
    /// Produces one record to `partition`; returns its offset.
    pub async fn send(
        &self,
        topic: &str,
        partition: i32,
        key: Option<&str>,
        headers: &[(&str, &str)],
        value: Option<&[u8]>,
    ) -> i64 {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut record: FutureRecord<'_, str, [u8]> =
            FutureRecord::to(topic).partition(partition).headers(h);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        let delivered = self
            .0
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce to {topic}: {e}"));
        delivered.offset
    }
}

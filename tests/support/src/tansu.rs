//! A private tansu (a Kafka-API broker) per test, on a free port of 127.0.0.1 with a fresh
//! store in a temporary directory. `TANSU_BIN` names another binary; `KEEP_TANSU=1` keeps the
//! store and log for a look afterwards.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// sqlite resumes a consumer exactly (no-loss and restart tests); tansu resolves the path
/// relative to its working directory, the test's temporary directory.
pub const SQLITE: &str = "sqlite://tansu.db";
/// Fast, but skips the rest of a record batch when a consumer resumes inside it: for load.
pub const MEMORY: &str = "memory://tansu/";

const STARTUP: Duration = Duration::from_secs(15);

/// The tansu binary: `TANSU_BIN`, else `~/.cargo/bin/tansu`, else `tansu` on PATH.
pub fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("TANSU_BIN") {
        return bin.into();
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = Path::new(&home).join(".cargo/bin/tansu");
    if installed.exists() {
        installed
    } else {
        "tansu".into()
    }
}

/// A running tansu; killed when dropped.
pub struct Tansu {
    child: Option<Child>,
    pub port: u16,
    storage: String,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts one on sqlite storage; `None` with a notice when it cannot start (a failure
    /// with CI=true).
    pub async fn start(test: &str) -> Option<Tansu> {
        Self::start_on(test, SQLITE).await
    }

    /// Starts one on the storage engine `storage` ([`SQLITE`] or [`MEMORY`]).
    pub async fn start_on(test: &str, storage: &str) -> Option<Tansu> {
        let started = async {
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| e.to_string())?
                .port();
            let mut tansu = Tansu {
                child: None,
                port,
                storage: storage.to_string(),
                dir,
            };
            tansu.launch().await?;
            Ok::<_, String>(tansu)
        }
        .await;
        crate::required(
            test,
            "tansu (`cargo install tansu --locked --features dynostore,libsql`)",
            started,
        )
    }

    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs tansu on its port and store and waits until it accepts connections.
    async fn launch(&mut self) -> Result<(), String> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(binary())
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .current_dir(self.dir.path())
            // tansu logs every request at info level: keep it to warnings unless asked for.
            .env(
                "RUST_LOG",
                std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary().display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + STARTUP;
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(format!("tansu exited with {status}:\n{}", self.log_tail()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "tansu did not listen within {STARTUP:?}:\n{}",
                    self.log_tail()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Whether the process is still running (a test asserts it did not die under it).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Panics with its log tail when it died.
    pub fn assert_alive(&mut self) {
        assert!(self.alive(), "tansu died:\n{}", self.log_tail());
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Kills it (a broker outage); [`Tansu::restart`] brings it back.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it and starts it again on the same port and store.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.launch().await {
            panic!("tansu restarts: {e}");
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.kill();
        if std::env::var_os("KEEP_TANSU").is_some() {
            eprintln!("tansu store and log kept in {}", self.dir.path().display());
            let kept = std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("a temporary directory"),
            );
            let _ = kept.keep();
        }
    }
}

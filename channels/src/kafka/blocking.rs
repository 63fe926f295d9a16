//! Keeps librdkafka's blocking calls off the async runtime: metadata and offset requests
//! run on the blocking pool, and clients — whose destruction joins threads, flushes or waits
//! for the group coordinator — are dropped on a thread of their own.

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use std::ops::Deref;
use std::time::Duration;

/// Runs a blocking librdkafka call on the blocking pool.
pub async fn blocking<T, F>(f: F) -> Result<T, KafkaError>
where
    F: FnOnce() -> Result<T, KafkaError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

/// Runs a blocking call that has no timeout of its own (a synchronous commit waits for an
/// unreachable coordinator forever) on a detached thread, and waits for it up to `timeout`.
pub async fn bounded<T, F>(timeout: Duration, f: F) -> Result<T, KafkaError>
where
    F: FnOnce() -> Result<T, KafkaError> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    detached(move || {
        let _ = tx.send(f());
    });
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(KafkaError::Canceled),
        Err(_) => Err(KafkaError::Global(RDKafkaErrorCode::OperationTimedOut)),
    }
}

/// Runs `f` (which ends by dropping a client) on a detached thread. Not the blocking pool:
/// a consumer's close waits for the group coordinator and never returns while the cluster
/// is unreachable, and a runtime waits for its blocking pool when it shuts down.
pub fn detached<F: FnOnce() + Send + 'static>(f: F) {
    let f = std::sync::Arc::new(std::sync::Mutex::new(Some(f)));
    let spawned = std::thread::Builder::new()
        .name("herald-kafka-close".into())
        .spawn({
            let f = f.clone();
            move || take(&f).map(|f| f())
        });
    if spawned.is_err() {
        // No thread to be had: close here rather than not at all.
        if let Some(f) = take(&f) {
            f();
        }
    }
}

fn take<F>(f: &std::sync::Mutex<Option<F>>) -> Option<F> {
    f.lock().unwrap_or_else(|p| p.into_inner()).take()
}

/// Drops `value` on a detached thread (see [`detached`]).
pub fn drop_off_runtime<T: Send + 'static>(value: T) {
    detached(move || drop(value));
}

/// A librdkafka client that is dropped on a detached thread.
pub struct OffRuntime<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> OffRuntime<T> {
    pub fn new(value: T) -> Self {
        Self(Some(value))
    }
}

impl<T: Send + 'static> Deref for OffRuntime<T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

impl<T: Send + 'static> Drop for OffRuntime<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            drop_off_runtime(value);
        }
    }
}

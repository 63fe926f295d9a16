//! A token's cancellation as a future that loops on the data path can poll on every turn.
//! tokio-util's `cancelled()` takes the token's waiter lock on each poll to look at its
//! waker; the connection and consumer loops poll theirs several times per event (~150
//! instructions each, 2.5% of an event's). This one registers once per waker and afterwards
//! only reads the token's flag.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// Completes once the token is cancelled (at once if it already is).
pub struct Cancellation {
    token: CancellationToken,
    /// Holds the waker the token wakes on cancellation.
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The waker `wait` was last polled with.
    registered: Option<Waker>,
}

impl Cancellation {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            registered: None,
        }
    }
}

impl Future for Cancellation {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.token.is_cancelled() {
            return Poll::Ready(());
        }
        // `wait` still holds this waker, which the cancellation will wake: nothing to renew.
        if self
            .registered
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            return Poll::Pending;
        }
        let this = &mut *self;
        match this.wait.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(()),
            Poll::Pending => {
                this.registered = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn completes_when_the_token_is_cancelled_while_it_waits() {
        let token = CancellationToken::new();
        let mut cancelled = Cancellation::new(token.clone());
        // Polled (and so registered) several times before the cancellation comes.
        for _ in 0..3 {
            assert!(
                tokio::time::timeout(Duration::from_millis(5), &mut cancelled)
                    .await
                    .is_err()
            );
        }
        let cancel = tokio::spawn({
            let token = token.clone();
            async move {
                tokio::task::yield_now().await;
                token.cancel();
            }
        });
        tokio::time::timeout(Duration::from_secs(10), &mut cancelled)
            .await
            .expect("woken by the cancellation");
        cancel.await.unwrap();
    }

    #[tokio::test]
    async fn a_token_cancelled_before_is_ready_at_once_as_is_its_child() {
        let parent = CancellationToken::new();
        parent.cancel();
        Cancellation::new(parent.clone()).await;
        Cancellation::new(parent.child_token()).await;
    }

    #[tokio::test]
    async fn a_new_waker_is_registered_when_another_task_polls_it() {
        let token = CancellationToken::new();
        let mut cancelled = Cancellation::new(token.clone());
        assert!(
            tokio::time::timeout(Duration::from_millis(5), &mut cancelled)
                .await
                .is_err()
        );
        // Moved to another task: only that task's waker can end it now.
        let waiter = tokio::spawn(cancelled);
        tokio::task::yield_now().await;
        token.cancel();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("the new task was woken")
            .unwrap();
    }
}

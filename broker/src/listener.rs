//! The HTTP listener: accepts connections and serves the router on each (HTTP/1.1 and h2c)
//! with the limits `axum::serve` lacks — a header-read timeout, an idle keep-alive timeout and
//! a cap on open connections — and a shutdown that is itself bounded: connections are asked
//! to finish, and whatever has not finished by the deadline is closed.
//!
//! With TLS, the handshake runs inside the same accept loop and connection slot, under its
//! own timeout, before any HTTP: the cap and every timeout hold for TLS connections too. A
//! plaintext HTTP request to a TLS port is answered with a plaintext 400 saying so.
//!
//! Each connection is watched by its own task: hyper's own header timeout also fires on a
//! kept-alive connection between requests, so the two timeouts are told apart here, from
//! whether a request is in flight and whether bytes arrived since the last response.

use crate::header_limits::HeaderLimits;
use crate::tls::ServerTls;
use herald_dispatcher::cancellation::Cancellation;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::Service;

#[derive(Clone, Debug)]
pub struct ConnectionLimits {
    /// A request's head must arrive within this time of its first byte (and a new
    /// connection must send one within it).
    pub header_read_timeout: Duration,
    /// A kept-alive connection without a request is closed after this time.
    pub idle_timeout: Duration,
    /// Open connections at most. At the cap, the connection idle the longest is closed to
    /// make room; when none is idle, new connections wait in the listen backlog.
    pub max_connections: usize,
    /// A TLS client must finish its handshake within this time of connecting.
    pub tls_handshake_timeout: Duration,
    /// Header fields and bytes per request: checked exactly by [`HeaderLimits::refusal`]
    /// (431 with a message), and loosely by hyper as a backstop.
    pub headers: HeaderLimits,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            tls_handshake_timeout: Duration::from_secs(10),
            headers: HeaderLimits::default(),
        }
    }
}

/// What the listener and a connection's watcher share about one connection.
#[derive(Default)]
struct ConnState {
    /// Requests in flight (more than one on h2).
    busy: AtomicUsize,
    /// Requests answered.
    served: AtomicU64,
    /// Reads that returned bytes.
    reads: AtomicU64,
    /// When the connection last became idle (ms since the listener started).
    idle_since_ms: AtomicU64,
    /// Cancelled to ask the connection to close once its requests are answered.
    evict: CancellationToken,
}

struct Open {
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Woken when a connection closes, for an accept waiting at the cap.
    closed: tokio::sync::Notify,
    started: Instant,
}

impl Open {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Asks the connection idle the longest to close; false when every one is busy.
    fn evict_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let idlest = conns
            .values()
            .filter(|c| c.busy.load(Ordering::Acquire) == 0 && !c.evict.is_cancelled())
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Acquire));
        match idlest {
            Some(c) => {
                c.evict.cancel();
                true
            }
            None => false,
        }
    }
}

/// What a listener serves: a router, or a service in front of one (see
/// [`crate::ingress::Ingress`]). It must always be ready: each request is called at once.
pub trait App:
    Service<
        axum::extract::Request,
        Response = axum::response::Response,
        Error = std::convert::Infallible,
        Future: Send,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> App for S where
    S: Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
            Future: Send,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Serves `app` on `listener` until `stop`, then gives open connections until `deadline`
/// (read when `stop` fires) to finish their requests and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: impl App,
    limits: ConnectionLimits,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
    grace: impl Fn() -> Duration,
) {
    let open = Arc::new(Open {
        conns: Mutex::new(HashMap::new()),
        closed: tokio::sync::Notify::new(),
        started: Instant::now(),
    });
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        // Reap finished connection tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        if open.len() >= limits.max_connections && !open.evict_idlest() {
            // Every connection is busy: wait for one to close before accepting more.
            tokio::select! {
                _ = open.closed.notified() => continue,
                _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                _ = stop.cancelled() => break,
            }
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let state = Arc::new(ConnState::default());
        state.idle_since_ms.store(open.now_ms(), Ordering::Release);
        open.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, state.clone());
        let (app, limits, stop, open) = (app.clone(), limits.clone(), stop.clone(), open.clone());
        let tls = tls.clone();
        tasks.spawn(async move {
            match tls {
                None => serve_connection(stream, app, &limits, state, &open, stop).await,
                Some(tls) => {
                    if let Some(stream) = handshake(stream, &tls, &limits, &state, &stop).await {
                        serve_connection(stream, app, &limits, state, &open, stop).await;
                    }
                }
            }
            tracing::trace!(%peer, "connection closed");
            open.conns
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
            open.closed.notify_waiters();
        });
    }
    drop(listener);
    let grace = grace();
    let open_now = tasks.len();
    if open_now > 0 {
        tracing::info!(connections = open_now, ?grace, "closing connections");
    }
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open at the shutdown deadline: closed"
        );
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
}

/// The TLS handshake, cut at the handshake timeout, on eviction (the cap) and on shutdown.
async fn handshake(
    stream: TcpStream,
    tls: &ServerTls,
    limits: &ConnectionLimits,
    state: &ConnState,
    stop: &CancellationToken,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let limit = limits.tls_handshake_timeout;
    let work = async {
        if speaks_plain_http(&stream).await {
            refuse_plain_http(stream).await;
            return None;
        }
        match tls.acceptor().accept(stream).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "TLS handshake failed: connection closed");
                None
            }
        }
    };
    tokio::select! {
        done = tokio::time::timeout(limit, work) => done.unwrap_or_else(|_| {
            tracing::debug!(?limit, "TLS handshake not completed in time: connection closed");
            None
        }),
        _ = state.evict.cancelled() => None,
        _ = stop.cancelled() => None,
    }
}

/// Whether the client's first byte starts an HTTP method rather than a TLS record (22, a
/// handshake).
async fn speaks_plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Answers a plaintext request on a TLS port in plaintext, so the client sees why.
async fn refuse_plain_http(mut stream: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let message = "this port serves HTTPS (TLS): send the request to an https:// URL\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{message}",
        message.len()
    );
    tracing::debug!("plaintext HTTP on a TLS port: answered 400");
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    // Read what the client sent until it closes: closing with unread bytes would reset the
    // connection, and the client might lose the answer. Bounded by the handshake timeout.
    let mut sink = [0u8; 4096];
    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
}

async fn serve_connection<S>(
    stream: S,
    app: impl App,
    limits: &ConnectionLimits,
    state: Arc<ConnState>,
    open: &Open,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(WatchedStream {
        inner: stream,
        reads: state.clone(),
    });
    let counted = state.clone();
    let clock = open.started;
    let header_limits = limits.headers;
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let mut app = app.clone();
            let state = counted.clone();
            state.busy.fetch_add(1, Ordering::AcqRel);
            // An oversized head is refused before any handler runs.
            let refused = header_limits.refusal(request.headers());
            async move {
                let response = match refused {
                    Some(refusal) => Ok(refusal),
                    None => app.call(request.map(axum::body::Body::new)).await,
                };
                state.served.fetch_add(1, Ordering::AcqRel);
                state
                    .idle_since_ms
                    .store(clock.elapsed().as_millis() as u64, Ordering::Release);
                state.busy.fetch_sub(1, Ordering::AcqRel);
                response
            }
        });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .max_headers(limits.headers.hyper_max_headers())
        .max_buf_size(limits.headers.hyper_max_buf());
    builder
        .http2()
        .max_header_list_size(limits.headers.hyper_max_header_list());
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closing = false;
    // The watcher's view: answered requests and reads when it last saw the connection idle,
    // and when bytes of a new request head first showed up.
    let mut seen_served = 0;
    let mut reads_when_idle = 0;
    let mut idle_since = Instant::now();
    let mut head_since: Option<Instant> = None;
    // Polled with the connection at each of its wake-ups: made once, cheap to poll again.
    let mut stopped = Cancellation::new(stop.clone());
    let mut evicted = Cancellation::new(state.evict.clone());
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = &mut stopped, if !closing => {
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = &mut evicted, if !closing => {
                tracing::debug!("connection closed to make room (connection limit)");
                closing = true;
                connection.as_mut().graceful_shutdown();
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                if state.busy.load(Ordering::Acquire) > 0 {
                    head_since = None;
                    continue;
                }
                let served = state.served.load(Ordering::Acquire);
                let reads = state.reads.load(Ordering::Acquire);
                if served != seen_served {
                    seen_served = served;
                    reads_when_idle = reads;
                    idle_since = now;
                    head_since = None;
                }
                if head_since.is_none() && reads != reads_when_idle {
                    head_since = Some(now);
                }
                let (since, limit, what) = match head_since {
                    Some(t) => (t, limits.header_read_timeout, "request head not received"),
                    // A new connection owes a request within the header timeout.
                    None if served == 0 => (idle_since, limits.header_read_timeout, "no request"),
                    None => (idle_since, limits.idle_timeout, "idle"),
                };
                if now.duration_since(since) >= limit {
                    tracing::debug!(?limit, "{what}: connection closed");
                    return;
                }
            }
        }
    }
}

/// A connection's stream (TCP, or TLS over it) that counts reads that returned bytes, so the
/// watcher sees a request head arriving.
struct WatchedStream<S> {
    inner: S,
    reads: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for WatchedStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.reads.reads.fetch_add(1, Ordering::AcqRel);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WatchedStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

//! The HTTP client deliveries go out on: hyper's HTTP/1.1 connections with rustls, kept
//! alive in a pool of Herald's own ([`pool`]), and nothing else between Herald and the
//! socket. It replaces reqwest on the data path, where reqwest's per-request work (re-checking
//! the URL, its builder's header copies, boxed layers) cost a third of the instructions of a
//! delivery, and keeps what Herald took from it: public (webpki) roots plus the CAs of
//! `--ca-file`, kept-alive connections per host, TCP_NODELAY, a request that met a kept
//! connection closing before it was written sent again on a new one, and redirects that are
//! answers, never hops (hyper does not follow them).

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, AUTHORIZATION, HOST};
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower_service::Service as _;
use url::Url;

mod pool;

use pool::{Pool, Sender};

/// How long an idle pooled connection is kept (reqwest's default, which Herald had).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Targets whose request URI is kept, at most; past it the cache starts over (deliveries
/// go to the URLs of the routes, so it only fills when there are more than this many, or
/// they change a lot).
const TARGETS_KEPT: usize = 8192;

/// Header fields a delivery request has room for from the start.
const REQUEST_HEADERS: usize = 16;

/// A pooled HTTP client; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct HttpClient {
    connector: HttpsConnector<HttpConnector>,
    pool: Arc<Pool>,
    /// What a request to each URL sent to carries: parsing a URL into a `Uri` cost more than
    /// looking it up, for every delivery.
    targets: Arc<Mutex<foldhash::HashMap<Box<str>, Arc<Target>>>>,
}

/// What a request to one URL carries.
#[derive(Debug)]
struct Target {
    /// Scheme and authority: the pool's key.
    origin: Arc<str>,
    /// The same as a URI, which the connector dials.
    origin_uri: Uri,
    /// The request target in origin form (path and query), as HTTP/1.1 sends it.
    path: Uri,
    host: HeaderValue,
    /// The URL's user info as Basic credentials.
    basic: Option<HeaderValue>,
}

/// A request ready to send: its target, and its headers still open to additions.
#[derive(Debug)]
pub struct Outgoing {
    request: http::Request<Full<Bytes>>,
    target: Arc<Target>,
}

impl Outgoing {
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.request.headers_mut()
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("a --ca-file certificate is not a usable CA: {0}")]
    Certificate(#[source] rustls::Error),
    #[error("no TLS protocol version is available: {0}")]
    Tls(#[source] rustls::Error),
}

/// A response with its body read in full.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Why a request got no complete response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{0}")]
    Request(String),
    #[error("reading the response failed: {0}")]
    Body(String),
}

impl HttpClient {
    /// A client trusting the public roots and `extra_roots`, keeping up to `max_idle_per_host`
    /// idle connections per host.
    pub fn new(
        extra_roots: &[CertificateDer<'static>],
        max_idle_per_host: usize,
    ) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for ca in extra_roots {
            roots.add(ca.clone()).map_err(ClientError::Certificate)?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(ClientError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Self {
            connector,
            pool: Arc::new(Pool::new(max_idle_per_host, POOL_IDLE_TIMEOUT)),
            targets: Arc::default(),
        })
    }

    /// A POST to `url` carrying `body`, with an `Accept` header, and the URL's user info, if
    /// any, as Basic credentials (as reqwest sent them); the URL's fragment stays out. What
    /// the URL says is looked up when `url` was sent to before. Fails on a URL HTTP cannot
    /// address.
    pub fn request_to(&self, url: &Url, body: Bytes) -> Result<Outgoing, String> {
        let cached = {
            let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            targets.get(url.as_str()).cloned()
        };
        let target = match cached {
            Some(t) => t,
            None => {
                let target = Arc::new(Target::of(url)?);
                let mut targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
                if targets.len() >= TARGETS_KEPT {
                    targets.clear();
                }
                targets.insert(url.as_str().into(), target.clone());
                target
            }
        };
        Ok(target.request(body))
    }

    /// Sends `outgoing` and reads the whole response, all within `timeout` (connecting
    /// included); `None` when the time ran out.
    pub async fn send(
        &self,
        outgoing: Outgoing,
        timeout: Duration,
    ) -> Option<Result<Response, SendError>> {
        // Boxed: the exchange's state would otherwise size the future of every delivery
        // (and each layer around it), which tokio copies as it goes; one allocation is less.
        tokio::time::timeout(timeout, Box::pin(self.exchange(outgoing)))
            .await
            .ok()
    }

    async fn exchange(&self, outgoing: Outgoing) -> Result<Response, SendError> {
        let Outgoing {
            mut request,
            target,
        } = outgoing;
        let mut kept = self.pool.checkout(&target.origin);
        loop {
            let reused = kept.is_some();
            let mut sender = match kept.take() {
                Some(mut sender) => match sender.ready().await {
                    Ok(()) => sender,
                    // Closed while it was kept: a new one instead.
                    Err(_) => continue,
                },
                // Boxed: a handshake's state (a TLS session among it) would otherwise make
                // every delivery's future kilobytes larger, which tokio copies as it goes.
                None => Box::pin(self.connect(&target)).await?,
            };
            let response = match sender.try_send_request(request).await {
                Ok(response) => response,
                Err(mut e) => match e.take_message() {
                    // Not written: the kept connection was closing. Once more, on a new one.
                    Some(unsent) if reused => {
                        request = unsent;
                        continue;
                    }
                    _ => return Err(SendError::Request(chain(e.error()))),
                },
            };
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| SendError::Body(chain(&e)))?
                .to_bytes();
            // Read whole: the connection is free for the next request.
            self.pool.put(&target.origin, sender);
            return Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            });
        }
    }

    /// A new connection to the target's origin (TLS for https), its connection task started,
    /// ready for a request.
    async fn connect(&self, target: &Target) -> Result<Sender, SendError> {
        let failed = |e: &dyn std::error::Error| {
            SendError::Request(format!("connecting to {}: {}", target.origin, chain(e)))
        };
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(|e| failed(&*e))?;
        let io = connector
            .call(target.origin_uri.clone())
            .await
            .map_err(|e| failed(&*e))?;
        let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %chain(&e), "delivery connection ended with an error");
            }
        });
        sender.ready().await.map_err(|e| failed(&e))?;
        Ok(sender)
    }
}

impl Target {
    fn of(url: &Url) -> Result<Self, String> {
        let uri = target_uri(url)?;
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(format!("{url} names no scheme and host to connect to"));
        };
        let origin = format!("{scheme}://{authority}");
        let origin_uri = Uri::try_from(origin.as_str()).map_err(|e| e.to_string())?;
        let path = match uri.path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        Ok(Self {
            origin: origin.into(),
            origin_uri,
            path,
            host: HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?,
            basic: basic_auth(url),
        })
    }

    fn request(self: Arc<Self>, body: Bytes) -> Outgoing {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.path.clone();
        // Room for what a delivery carries (attributes, trace context, hyper's
        // Content-Length) without growing and rehashing on the way.
        *request.headers_mut() = HeaderMap::with_capacity(REQUEST_HEADERS);
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(basic) = &self.basic {
            headers.insert(AUTHORIZATION, basic.clone());
        }
        Outgoing {
            request,
            target: self,
        }
    }
}

fn target_uri(url: &Url) -> Result<Uri, String> {
    let end = url.as_str().len() - url.fragment().map_or(0, |f| f.len() + 1);
    if !url.has_authority() || (url.username().is_empty() && url.password().is_none()) {
        return Uri::try_from(&url.as_str()[..end]).map_err(|e| e.to_string());
    }
    let mut bare = url.clone();
    // Both only fail for URLs without a host, which has_authority excluded.
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    bare.set_fragment(None);
    Uri::try_from(bare.as_str()).map_err(|e| e.to_string())
}

fn basic_auth(url: &Url) -> Option<HeaderValue> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = decode(url.username());
    let password = url.password().map(decode).unwrap_or_default();
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}")).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// An error and its causes, as one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_request_leaves_out_user_info_and_fragment() {
        let url = Url::parse("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        let sent = Arc::new(Target::of(&url).unwrap()).request(Bytes::new());
        assert_eq!(&*sent.target.origin, "http://127.0.0.1:8080");
        assert_eq!(sent.request.uri(), "/a/b?c=d");
        assert_eq!(sent.request.headers()[HOST], "127.0.0.1:8080");
        assert!(sent.request.headers().get(AUTHORIZATION).is_none());
        let url = Url::parse("https://u%40x:p%3Aw@example.com/x#f").unwrap();
        let sent = Arc::new(Target::of(&url).unwrap()).request(Bytes::new());
        assert_eq!(&*sent.target.origin, "https://example.com");
        assert_eq!(sent.target.origin_uri, "https://example.com/");
        assert_eq!(sent.request.uri(), "/x");
        assert_eq!(sent.request.headers()[HOST], "example.com");
        // base64("u@x:p:w")
        assert_eq!(sent.request.headers()[AUTHORIZATION], "Basic dUB4OnA6dw==");
        assert_eq!(sent.request.method(), http::Method::POST);
    }

    #[test]
    fn a_cached_target_sends_as_a_fresh_one() {
        let client = HttpClient::new(&[], 1).unwrap();
        let url = Url::parse("https://u%40x:p%3Aw@example.com/x?y=1#f").unwrap();
        let other = Url::parse("http://127.0.0.1:9/other").unwrap();
        for _ in 0..2 {
            for url in [&url, &other] {
                let cached = client.request_to(url, Bytes::new()).unwrap();
                let fresh = Arc::new(Target::of(url).unwrap()).request(Bytes::new());
                assert_eq!(cached.request.uri(), fresh.request.uri());
                assert_eq!(cached.request.headers(), fresh.request.headers());
                assert_eq!(cached.target.origin, fresh.target.origin);
            }
        }
        assert_eq!(client.targets.lock().unwrap().len(), 2);
    }

    /// A bare HTTP/1.1 server answering every request with 202, counting connections; with
    /// `close_after`, it closes each connection after that many answers, without saying so.
    async fn sink(close_after: Option<usize>) -> (Url, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/sink", listener.local_addr().unwrap())).unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut answered = 0;
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut chunk).await {
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        // Bodies here are empty: a request ends with its head.
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let answer = b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                            answered += 1;
                            if close_after == Some(answered) {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (url, connections)
    }

    async fn post(client: &HttpClient, url: &Url) -> u16 {
        let outgoing = client.request_to(url, Bytes::new()).unwrap();
        match client.send(outgoing, Duration::from_secs(10)).await {
            Some(Ok(r)) => r.status,
            other => panic!("no answer: {other:?}"),
        }
    }

    #[tokio::test]
    async fn one_kept_connection_carries_requests_one_after_another() {
        let (url, connections) = sink(None).await;
        let client = HttpClient::new(&[], 4).unwrap();
        for _ in 0..20 {
            assert_eq!(post(&client, &url).await, 202);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);
        let origin = Target::of(&url).unwrap().origin;
        assert_eq!(client.pool.idle(&origin), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_and_no_request_fails() {
        let (url, connections) = sink(Some(1)).await;
        let client = HttpClient::new(&[], 4).unwrap();
        for _ in 0..20 {
            assert_eq!(post(&client, &url).await, 202);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 20);
    }

    #[tokio::test]
    async fn a_request_a_kept_connection_never_wrote_goes_out_on_a_new_one() {
        let (url, connections) = sink(None).await;
        let client = HttpClient::new(&[], 4).unwrap();
        let origin = Target::of(&url).unwrap().origin;
        // A kept connection whose peer has hung up, before its connection task knows.
        let (ours, theirs) = tokio::io::duplex(1024);
        let (mut sender, mut connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(ours))
                .await
                .unwrap();
        let _ = tokio::time::timeout(Duration::ZERO, &mut connection).await;
        sender.ready().await.unwrap();
        client.pool.put(&origin, sender);
        drop(theirs);
        // The request is queued on the dead connection first (a current-thread runtime runs
        // spawned tasks in order), then its task finds the hang-up.
        let sending = tokio::spawn({
            let (client, url) = (client.clone(), url.clone());
            async move { post(&client, &url).await }
        });
        tokio::spawn(connection);
        assert_eq!(sending.await.unwrap(), 202);
        assert_eq!(connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_at_most_the_limit() {
        let (url, connections) = sink(None).await;
        let client = HttpClient::new(&[], 2).unwrap();
        let mut sent = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (client, url) = (client.clone(), url.clone());
            sent.spawn(async move { post(&client, &url).await });
        }
        while let Some(status) = sent.join_next().await {
            assert_eq!(status.unwrap(), 202);
        }
        let opened = connections.load(Ordering::SeqCst);
        let origin = Target::of(&url).unwrap().origin;
        assert_eq!(client.pool.idle(&origin), opened.min(2));
        // With no idle connection kept, every request dials anew.
        let (url, connections) = sink(None).await;
        let client = HttpClient::new(&[], 0).unwrap();
        for _ in 0..3 {
            assert_eq!(post(&client, &url).await, 202);
        }
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_request_error_naming_the_origin() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = Url::parse(&format!("http://{}/x", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let client = HttpClient::new(&[], 1).unwrap();
        let outgoing = client.request_to(&url, Bytes::new()).unwrap();
        match client.send(outgoing, Duration::from_secs(10)).await {
            Some(Err(SendError::Request(m))) => {
                assert!(
                    m.contains(&format!("connecting to http://{}", url.authority())),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
    }
}

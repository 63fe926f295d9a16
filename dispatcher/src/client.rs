//! The HTTP client deliveries go out on: hyper's pooled HTTP/1.1 client with rustls, and
//! nothing else between Herald and the socket. It replaces reqwest on the data path, where
//! reqwest's per-request work (re-checking the URL, its builder's header copies, boxed
//! layers) cost a third of the instructions of a delivery, and keeps what Herald took from
//! it: public (webpki) roots plus the CAs of `--ca-file`, kept-alive connections per host,
//! TCP_NODELAY, and redirects that are answers, never hops (hyper does not follow them).

use bytes::Bytes;
use http::header::{HeaderValue, AUTHORIZATION};
use http::Uri;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use url::Url;

/// How long an idle pooled connection is kept (reqwest's default, which Herald had).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Targets whose request URI is kept, at most; past it the cache starts over (deliveries
/// go to the few URLs of the routes, so it only fills when those change a lot).
const TARGETS_KEPT: usize = 1024;

/// A pooled HTTP client; cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The request URI and credentials of each URL sent to: parsing a URL into a `Uri` cost
    /// more than looking it up, for every delivery.
    targets: Arc<Mutex<foldhash::HashMap<Box<str>, Target>>>,
}

/// What a request to one URL carries: its URI, and its user info as Basic credentials.
#[derive(Clone, Debug)]
struct Target {
    uri: Uri,
    basic: Option<HeaderValue>,
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
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle_per_host)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            inner,
            targets: Arc::default(),
        })
    }

    /// A POST to `url` carrying `body`: see [`request_to`]; the URI comes from the cache of
    /// targets when `url` was sent to before.
    pub fn request_to(&self, url: &Url, body: Bytes) -> Result<http::Request<Full<Bytes>>, String> {
        let cached = {
            let targets = self.targets.lock().unwrap_or_else(|p| p.into_inner());
            targets.get(url.as_str()).cloned()
        };
        let target = match cached {
            Some(t) => t,
            None => {
                let target = Target::of(url)?;
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

    /// Sends `request` (its URI and headers set; see [`request_to`]) and reads the whole
    /// response, all within `timeout`; `None` when the time ran out.
    pub async fn send(
        &self,
        request: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Option<Result<Response, SendError>> {
        tokio::time::timeout(timeout, self.exchange(request))
            .await
            .ok()
    }

    async fn exchange(&self, request: http::Request<Full<Bytes>>) -> Result<Response, SendError> {
        let response = self
            .inner
            .request(request)
            .await
            .map_err(|e| SendError::Request(chain(&e)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| SendError::Body(chain(&e)))?
            .to_bytes();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// A POST to `url` carrying `body`: the URI without user info and fragment, and the user
/// info, if any, as Basic credentials (as reqwest sent them). Fails on a URL HTTP cannot
/// address.
pub fn request_to(url: &Url, body: Bytes) -> Result<http::Request<Full<Bytes>>, String> {
    Ok(Target::of(url)?.request(body))
}

impl Target {
    fn of(url: &Url) -> Result<Self, String> {
        Ok(Self {
            uri: target_uri(url)?,
            basic: basic_auth(url),
        })
    }

    fn request(self, body: Bytes) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.uri;
        request
            .headers_mut()
            .insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(basic) = self.basic {
            request.headers_mut().insert(AUTHORIZATION, basic);
        }
        request
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

    #[test]
    fn the_uri_leaves_out_user_info_and_fragment() {
        let url = Url::parse("http://127.0.0.1:8080/a/b?c=d#frag").unwrap();
        assert_eq!(
            target_uri(&url).unwrap().to_string(),
            "http://127.0.0.1:8080/a/b?c=d"
        );
        let url = Url::parse("https://u%40x:p%3Aw@example.com/x#f").unwrap();
        assert_eq!(
            target_uri(&url).unwrap().to_string(),
            "https://example.com/x"
        );
        let request = request_to(&url, Bytes::new()).unwrap();
        // base64("u@x:p:w")
        assert_eq!(request.headers()[AUTHORIZATION], "Basic dUB4OnA6dw==");
        assert_eq!(request.method(), http::Method::POST);
    }

    #[test]
    fn a_cached_target_sends_as_a_fresh_one() {
        let client = HttpClient::new(&[], 1).unwrap();
        let url = Url::parse("https://u%40x:p%3Aw@example.com/x?y=1#f").unwrap();
        let other = Url::parse("http://127.0.0.1:9/other").unwrap();
        for _ in 0..2 {
            for url in [&url, &other] {
                let cached = client.request_to(url, Bytes::new()).unwrap();
                let fresh = request_to(url, Bytes::new()).unwrap();
                assert_eq!(cached.uri(), fresh.uri());
                assert_eq!(cached.headers(), fresh.headers());
            }
        }
        assert_eq!(client.targets.lock().unwrap().len(), 2);
    }
}

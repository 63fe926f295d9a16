//! TLS on a real `herald serve`: certificates made at test time (a private CA and leaves it
//! signs), HTTPS ingress answering 202 and delivering, a plaintext request to the TLS port
//! refused cleanly, the admin API over HTTPS with its token through the CLI, a rotated
//! certificate served without a restart (and a broken one ignored), a stalled handshake cut by
//! its timeout, and delivery to an https subscriber trusted through `--ca-file`.

mod replicas;

use axum::http::{HeaderMap, StatusCode};
use replicas::admin::*;
use replicas::*;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "tls";
const TOKEN: &str = "tls-test-token";
const WAIT: Duration = Duration::from_secs(30);

/// A private CA that signs leaves for 127.0.0.1.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A leaf: PEM chain and key, and the DER the server presents.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new() -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Herald test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn leaf(&self, serial: u64) -> Leaf {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("herald test {serial}"));
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

/// Writes `text` beside `path` and renames it over, as certificate managers do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client_trusting(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The certificate a TLS handshake with `addr` is served (the CA's leaves verify).
async fn served_certificate(addr: &str, ca: &Ca) -> Vec<u8> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert.der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn host_port(url: &str) -> String {
    url.split("://")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

/// An https subscriber with a leaf of `ca`, recording the ids it receives.
async fn https_subscriber(leaf: &Leaf) -> (String, Arc<Mutex<Vec<String>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let seen = seen.clone();
        async move {
            if let Some(id) = headers.get("ce-id").and_then(|v| v.to_str().ok()) {
                seen.lock().unwrap().push(id.to_string());
            }
            StatusCode::ACCEPTED
        }
    });
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    (url, ids)
}

struct Setup {
    _dir: tempfile::TempDir,
    ca: Ca,
    ca_file: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    herald: Replica,
    plain: Arc<Sink>,
    https_ids: Arc<Mutex<Vec<String>>>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (cert, key) = (certs.join("tls.crt"), certs.join("tls.key"));
    let first = ca.leaf(1);
    replace(&cert, &first.cert_pem);
    replace(&key, &first.key_pem);
    let admin_leaf = ca.leaf(100);
    let (admin_cert, admin_key) = (certs.join("admin.crt"), certs.join("admin.key"));
    replace(&admin_cert, &admin_leaf.cert_pem);
    replace(&admin_key, &admin_leaf.key_pem);

    let plain = Sink::start((0, 0)).await;
    let (https_url, https_ids) = https_subscriber(&ca.leaf(200)).await;
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("herald.yaml"),
        format!(
            "{}---\n{}---\n{}",
            broker_yaml(NS, "default", &[]),
            trigger_yaml(NS, "to-http", "default", &plain.url, &[("type", "plain")]),
            trigger_yaml(NS, "to-https", "default", &https_url, &[("type", "secure")]),
        ),
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (cert_s, key_s, acert_s, akey_s, ca_s) = (
        s(&cert),
        s(&key),
        s(&admin_cert),
        s(&admin_key),
        s(&ca_file),
    );
    let args = [
        "--channel",
        "memory",
        "--tls-cert",
        &cert_s,
        "--tls-key",
        &key_s,
        "--admin-tls-cert",
        &acert_s,
        "--admin-tls-key",
        &akey_s,
        "--ca-file",
        &ca_s,
        "--admin-token",
        TOKEN,
        // Only the handshake timeout may cut a stalled handshake here.
        "--tls-handshake-timeout",
        "1",
        "--header-read-timeout",
        "600",
    ];
    let herald = Replica::start(
        "herald",
        &config,
        &dir.path().join("data"),
        (NS, "default"),
        &args,
    )
    .await;
    assert!(
        herald.broker_url.starts_with("https://"),
        "{}",
        herald.broker_url
    );
    assert!(herald.admin.starts_with("https://"), "{}", herald.admin);
    Setup {
        _dir: dir,
        ca,
        ca_file: ca_s,
        cert,
        key,
        herald,
        plain,
        https_ids,
    }
}

async fn post(client: &reqwest::Client, url: &str, id: &str, ty: &str) -> reqwest::Response {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/tls")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(r#"{"over":"tls"}"#)
        .send()
        .await
        .unwrap()
}

#[test]
fn https_ingress_accepts_and_delivers_to_http_and_https_subscribers() {
    run(async {
        let t = setup().await;
        let client = client_trusting(&t.ca);
        let r = post(&client, &t.herald.broker_url, "over-tls-1", "plain").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let r = post(&client, &t.herald.broker_url, "over-tls-2", "secure").await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        t.plain
            .wait_for(
                &["over-tls-1".to_string()].into(),
                WAIT,
                "the http subscriber",
            )
            .await;
        let ids = t.https_ids.clone();
        until(
            WAIT,
            || ids.lock().unwrap().iter().any(|i| i == "over-tls-2"),
            || "the https subscriber (trusted through --ca-file) never got over-tls-2".into(),
        )
        .await;

        // `herald send` to the https ingress, trusting the CA through --ca-file.
        herald(&[
            "send",
            "--to",
            &t.herald.broker_url,
            "--type",
            "plain",
            "--id",
            "over-tls-cli",
            "--ca-file",
            &t.ca_file,
        ])
        .await
        .ok();
        t.plain
            .wait_for(&["over-tls-cli".to_string()].into(), WAIT, "herald send")
            .await;
        // Without the CA, the server's certificate is not trusted.
        let untrusted = herald(&["send", "--to", &t.herald.broker_url, "--type", "plain"])
            .await
            .failed();
        assert!(
            untrusted.stderr.to_lowercase().contains("certificate")
                || untrusted.stderr.to_lowercase().contains("unknownissuer")
                || untrusted.stderr.contains("sending to"),
            "{}",
            untrusted.stderr
        );
    });
}

#[test]
fn plaintext_http_to_the_tls_port_is_refused_with_a_clear_400() {
    run(async {
        let t = setup().await;
        let plain_url = t.herald.broker_url.replacen("https://", "http://", 1);
        let r = reqwest::Client::new()
            .post(&plain_url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "plaintext")
            .header("ce-source", "/tls")
            .header("ce-type", "plain")
            .body("{}")
            .send()
            .await
            .expect("a plaintext request gets an answer, not a reset");
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let text = r.text().await.unwrap();
        assert!(text.contains("https://"), "{text}");
        // The listener goes on serving TLS.
        let r = post(
            &client_trusting(&t.ca),
            &t.herald.broker_url,
            "after-plain",
            "plain",
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(!t.plain.counts().contains_key("plaintext"));
    });
}

#[test]
fn the_admin_api_serves_https_with_its_token() {
    run(async {
        let t = setup().await;
        let admin = &t.herald.admin;
        let got = herald(&[
            "get",
            "brokers",
            "-A",
            "--server",
            admin,
            "--token",
            TOKEN,
            "--ca-file",
            &t.ca_file,
        ])
        .await
        .ok();
        assert!(got.stdout.contains("default"), "{}", got.stdout);
        let without_token = herald(&[
            "get",
            "brokers",
            "-A",
            "--server",
            admin,
            "--ca-file",
            &t.ca_file,
        ])
        .await
        .failed();
        assert!(
            without_token.stderr.contains("401"),
            "{}",
            without_token.stderr
        );
        let r = client_trusting(&t.ca)
            .get(format!("{admin}/metrics"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        // The admin listener has its own certificate (serial 100), not ingress's.
        let admin_der = served_certificate(&host_port(admin), &t.ca).await;
        let ingress_der = served_certificate(&host_port(&t.herald.base), &t.ca).await;
        assert_ne!(admin_der, ingress_der);
    });
}

#[test]
fn a_rotated_certificate_is_served_without_a_restart_and_a_broken_one_is_ignored() {
    run(async {
        let mut t = setup().await;
        let addr = host_port(&t.herald.base);
        let before = served_certificate(&addr, &t.ca).await;
        let rotated = t.ca.leaf(2);
        assert_ne!(before, rotated.der);
        replace(&t.key, &rotated.key_pem);
        replace(&t.cert, &rotated.cert_pem);
        let end = Instant::now() + WAIT;
        loop {
            if served_certificate(&addr, &t.ca).await == rotated.der {
                break;
            }
            assert!(
                Instant::now() < end,
                "serial 2 not served within {WAIT:?}:\n{}",
                t.herald.proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let r = post(
            &client_trusting(&t.ca),
            &t.herald.broker_url,
            "rotated",
            "plain",
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);

        // A certificate that does not parse keeps the last good pair, and says why.
        replace(
            &t.cert,
            "-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n",
        );
        let line = t
            .herald
            .proc
            .wait_line("TLS certificate not reloaded")
            .await;
        assert!(line.contains("tls.crt"), "{line}");
        assert_eq!(served_certificate(&addr, &t.ca).await, rotated.der);
        // A key that is not the certificate's: the same.
        let other = t.ca.leaf(3);
        replace(&t.cert, &other.cert_pem);
        let mismatched = t.herald.proc.count_lines("TLS certificate not reloaded");
        until(
            WAIT,
            || t.herald.proc.count_lines("TLS certificate not reloaded") > mismatched,
            || "a mismatched pair was not reported".into(),
        )
        .await;
        assert_eq!(served_certificate(&addr, &t.ca).await, rotated.der);
        assert!(t.herald.proc.alive());
    });
}

#[test]
fn a_stalled_tls_handshake_is_cut_by_the_handshake_timeout() {
    run(async {
        let t = setup().await;
        let addr = host_port(&t.herald.base);
        // The first bytes of a TLS record header, then nothing.
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        stream.write_all(&[0x16, 0x03, 0x01]).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 64];
        let outcome = stream.read(&mut buf);
        assert!(
            matches!(outcome, Ok(0))
                || matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the stalled handshake was not closed within {WAIT:?}: {outcome:?}"
        );
        // A connection that sends nothing at all is cut too.
        let mut silent = std::net::TcpStream::connect(&addr).unwrap();
        silent.set_read_timeout(Some(WAIT)).unwrap();
        let outcome = silent.read(&mut buf);
        assert!(
            matches!(outcome, Ok(0))
                || matches!(&outcome, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "the silent connection was not closed within {WAIT:?}: {outcome:?}"
        );
        // And a well-behaved client is served meanwhile.
        let r = post(
            &client_trusting(&t.ca),
            &t.herald.broker_url,
            "after-stall",
            "plain",
        )
        .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    });
}

//! Ingress authentication and EventPolicies over a real `herald serve` process:
//!
//! - static tokens (`--ingress-tokens`): no, malformed or unknown token → 401 with
//!   `WWW-Authenticate: Bearer`; a subject no applying policy allows → 403 naming the
//!   Broker; an allowed one → 202 and delivered; `sub` wildcards, `to` refs and selectors,
//!   policy filters; the default mode for Brokers no policy applies to; `status.policies`;
//!   a policy applied and removed at runtime changes the answer; the token file reloads
//!   without a restart and a broken one keeps the last good tokens;
//! - Herald's own senders (a Trigger delivering to another Broker) get through with their
//!   Knative identity, checked against that Broker's policies; across replicas too, when
//!   they share `--sender-key-file` (a key of its own is refused);
//! - JWTs (`--oidc-jwks`, `--oidc-issuer`; keys made here with the openssl CLI): wrong
//!   audience, issuer, expired, not yet valid or an unknown key → 401; deny-all default;
//!   the JWKS reloads (a key added is accepted; a broken file keeps the last good set);
//! - a refused request stores nothing: only accepted events are delivered (sled), and on
//!   NATS the stream's message count does not move.

mod replicas;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use reqwest::StatusCode;
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "shop";

/// POSTs one binary-mode event of `ty` with `authorization` (a full header value).
async fn post(
    url: &str,
    authorization: Option<&str>,
    id: &str,
    ty: &str,
) -> (StatusCode, String, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", ty)
        .header("ce-source", "/herald/tests/ingress-auth")
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}"}}"#));
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (status, response.text().await.unwrap(), challenge)
}

/// The admin API of `eventing.knative.dev/v1alpha1` (EventPolicies).
fn policies_api(base: &str) -> Admin {
    Admin::for_api(base, "/apis/eventing.knative.dev/v1alpha1")
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// Polls until `post` answers `want` (a change applied at runtime takes a moment).
async fn until_status(url: &str, authorization: &str, want: StatusCode, what: &str) -> String {
    let end = std::time::Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let (status, body, _) = post(
            url,
            Some(authorization),
            &format!("poll-{what}-{n}"),
            EVENT_TYPE,
        )
        .await;
        if status == want {
            return body;
        }
        assert!(
            std::time::Instant::now() < end,
            "{what}: still {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn policy(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventPolicy\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n{spec}"
    )
}

fn broker_with_labels(name: &str, labels: &str) -> String {
    format!("apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  namespace: {NS}\n  labels: {{{labels}}}\n")
}

const TOKENS: &str = "\
# token subject
alice-token alice
bob-token bob
app-token system:serviceaccount:shop:app-1
ops-token system:serviceaccount:ops:x
";

#[test]
fn static_tokens_and_event_policies() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        let sink = Sink::start((0, 0)).await;
        let relayed = Sink::start((0, 0)).await;
        let tokens = dir.path().join("tokens.txt");
        std::fs::write(&tokens, TOKENS).unwrap();
        let resources = [
            broker_with_labels("orders", ""),
            broker_with_labels("open", ""),
            broker_with_labels("labelled", "team: a"),
            broker_with_labels("relay", ""),
            trigger_yaml(NS, "to-sink", "orders", &sink.url, &[]),
            // Herald's own sender: a Trigger delivering to another Broker through ingress.
            trigger_yaml_with_spec(
                NS,
                "to-relay",
                "  broker: orders\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: relay}\n",
            ),
            trigger_yaml(NS, "relayed", "relay", &relayed.url, &[]),
            policy(
                "orders-senders",
                "  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: orders}\n  from:\n  - sub: alice\n  - sub: 'system:serviceaccount:shop:app-*'\n",
            ),
            policy(
                "by-label",
                "  to:\n  - selector: {apiVersion: eventing.knative.dev/v1, kind: Broker, matchLabels: {team: a}}\n  from:\n  - sub: bob\n  filters:\n  - prefix: {type: dev.herald.test}\n",
            ),
            policy(
                "relay-from-trigger",
                "  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: relay}\n  from:\n  - sub: system:serviceaccount:shop:to-relay-oidc-eventing.knative.dev-trigger\n",
            ),
        ];
        std::fs::write(config.join("all.yaml"), resources.join("---\n")).unwrap();
        let server = Replica::start(
            "auth",
            &config,
            &dir.path().join("data"),
            (NS, "orders"),
            &["--ingress-tokens", tokens.to_str().unwrap()],
        )
        .await;
        let admin = Admin::new(&server.admin);
        for t in ["to-sink", "to-relay", "relayed"] {
            admin.wait_ready("triggers", NS, t, WAIT).await;
        }
        let orders = server.url_of(NS, "orders");
        let mut accepted = HashSet::new();

        // 401: no token, not a bearer token, an unknown token.
        for (auth, id) in [
            (None, "none"),
            (Some("Basic YWxpY2U6eA=="), "basic"),
            (Some("Bearer nope"), "unknown"),
        ] {
            let (status, body, challenge) = post(&orders, auth, id, EVENT_TYPE).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{id}: {body}");
            assert_eq!(challenge.as_deref(), Some("Bearer"), "{id}");
            assert!(
                body.contains("token") || body.contains("Authorization"),
                "{id}: {body}"
            );
        }
        // 403: a known subject no applying policy allows, named with the Broker.
        let (status, body, _) =
            post(&orders, Some(&bearer("bob-token")), "bob-1", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("Broker shop/orders") && body.contains("bob"),
            "{body}"
        );
        assert!(
            body.contains("orders-senders"),
            "names the applying policy: {body}"
        );
        // Allowed: alice by name, app-1 by the wildcard.
        for (token, id) in [("alice-token", "alice-1"), ("app-token", "app-1")] {
            let (status, body, _) = post(&orders, Some(&bearer(token)), id, EVENT_TYPE).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{id}: {body}");
            accepted.insert(id.to_string());
        }
        // A selector policy with a filter: bob on the labelled Broker, for matching types only.
        let labelled = server.url_of(NS, "labelled");
        let (status, body, _) =
            post(&labelled, Some(&bearer("bob-token")), "bob-2", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (status, body, _) = post(
            &labelled,
            Some(&bearer("bob-token")),
            "bob-3",
            "com.example.other",
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.contains("filters"), "{body}");
        // No policy applies to `open`: the default mode (allow-same-namespace) decides.
        let open = server.url_of(NS, "open");
        let (status, body, _) = post(&open, Some(&bearer("app-token")), "open-1", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for token in ["alice-token", "ops-token"] {
            let (status, body, _) = post(&open, Some(&bearer(token)), "open-x", EVENT_TYPE).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{token}: {body}");
            assert!(body.contains("allow-same-namespace"), "{body}");
        }

        // Status: the Brokers list the policies applying to them.
        let b = admin.get("brokers", NS, "orders").await.unwrap();
        assert_eq!(b["status"]["policies"][0]["name"], "orders-senders", "{b}");
        assert_eq!(
            b["status"]["policies"][0]["apiVersion"],
            "eventing.knative.dev/v1alpha1"
        );
        let b = admin.get("brokers", NS, "labelled").await.unwrap();
        assert_eq!(b["status"]["policies"][0]["name"], "by-label", "{b}");
        let b = admin.get("brokers", NS, "open").await.unwrap();
        assert!(b["status"]["policies"].is_null(), "{b}");
        assert_eq!(condition_state(&b, "EventPoliciesReady").0, "True", "{b}");
        let p = policies_api(&server.admin)
            .get("eventpolicies", NS, "orders-senders")
            .await
            .unwrap();
        assert!(is_ready(&p), "{p}");
        assert_eq!(
            p["status"]["from"][1], "system:serviceaccount:shop:app-*",
            "{p}"
        );

        // A policy applied at runtime lets bob in; removed, it shuts him out again.
        let bob_policy = policy(
            "bob-too",
            "  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: orders}\n  from:\n  - sub: bob\n",
        );
        let policies = policies_api(&server.admin);
        let a = policies
            .put(
                "eventpolicies",
                NS,
                "bob-too",
                "application/yaml",
                &bob_policy,
            )
            .await;
        assert!(a.status.is_success(), "{:?}", a.body);
        until_status(
            &orders,
            &bearer("bob-token"),
            StatusCode::ACCEPTED,
            "bob allowed",
        )
        .await;
        let (status, body, _) =
            post(&orders, Some(&bearer("bob-token")), "bob-4", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.insert("bob-4".to_string());
        let a = policies.delete("eventpolicies", NS, "bob-too").await;
        assert!(a.status.is_success(), "{:?}", a.body);
        until_status(
            &orders,
            &bearer("bob-token"),
            StatusCode::FORBIDDEN,
            "bob refused again",
        )
        .await;

        // The token file reloads: carol added (known now, so 403 rather than 401), bob gone.
        write_atomically(
            &tokens,
            &format!("{TOKENS}carol-token carol\n").replace("bob-token bob\n", ""),
        );
        until_status(
            &orders,
            &bearer("carol-token"),
            StatusCode::FORBIDDEN,
            "carol known",
        )
        .await;
        let (status, _, _) = post(&orders, Some(&bearer("bob-token")), "bob-5", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // A broken file keeps the last good tokens, and the log says why.
        write_atomically(&tokens, "alice-token\n");
        let mut proc = server.proc;
        proc.wait_line("ingress tokens not reloaded").await;
        let (status, body, _) =
            post(&orders, Some(&bearer("alice-token")), "alice-2", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.insert("alice-2".to_string());

        // Delivered: exactly what was accepted into `orders` (polls included); refused requests
        // stored nothing. Through the relay Broker too: the Trigger `to-relay` got in under
        // its own identity, which `relay-from-trigger` allows.
        sink.wait_for(&accepted, WAIT, "accepted events").await;
        relayed.wait_for(&accepted, WAIT, "relayed events").await;
        let got: HashSet<String> = sink.records().into_iter().map(|r| r.id).collect();
        // Every id posted to `orders` is either accepted above, a poll, or refused here.
        let unexpected: Vec<_> = got
            .iter()
            .filter(|id| !accepted.contains(*id) && !id.starts_with("poll-"))
            .collect();
        assert!(
            unexpected.is_empty(),
            "refused events were delivered: {unexpected:?}"
        );
        drop(proc);
    });
}

// ---------------------------------------------------------------------------------------
// JWTs

/// A key pair made with the openssl CLI: the private key as DER (PKCS#1 for RSA, PKCS#8 for
/// EC, as jsonwebtoken reads them) and its public JWK.
struct TestKey {
    private_der: Vec<u8>,
    jwk: serde_json::Value,
    alg: jsonwebtoken::Algorithm,
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("the openssl CLI runs (needed to make test keys): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn rsa_key(dir: &Path, kid: &str) -> TestKey {
    let pem = dir.join(format!("{kid}.pem"));
    let pem = pem.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        pem,
    ]);
    let der = openssl(&["rsa", "-in", pem, "-traditional", "-outform", "DER"]);
    let modulus = String::from_utf8(openssl(&["rsa", "-in", pem, "-noout", "-modulus"])).unwrap();
    let hex = modulus.trim().strip_prefix("Modulus=").unwrap();
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    TestKey {
        private_der: der,
        jwk: serde_json::json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB"}),
        alg: jsonwebtoken::Algorithm::RS256,
    }
}

fn ec_key(dir: &Path, kid: &str) -> TestKey {
    let pem = dir.join(format!("{kid}.pem"));
    let pem = pem.to_str().unwrap();
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        pem,
    ]);
    let der = openssl(&["pkcs8", "-topk8", "-nocrypt", "-in", pem, "-outform", "DER"]);
    let public = openssl(&["pkey", "-in", pem, "-pubout", "-outform", "DER"]);
    // The SubjectPublicKeyInfo ends in the uncompressed point 04 || x || y.
    let point = &public[public.len() - 65..];
    assert_eq!(point[0], 4);
    TestKey {
        private_der: der,
        jwk: serde_json::json!({"kty": "EC", "kid": kid, "alg": "ES256", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
        alg: jsonwebtoken::Algorithm::ES256,
    }
}

const ISSUER: &str = "https://issuer.herald.test";

fn jwt(key: &TestKey, sub: &str, aud: &str, iss: &str, exp_in: i64, nbf_in: i64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = serde_json::json!({"sub": sub, "aud": aud, "iss": iss, "exp": now + exp_in, "nbf": now + nbf_in, "iat": now});
    let mut header = jsonwebtoken::Header::new(key.alg);
    header.kid = key.jwk["kid"].as_str().map(String::from);
    let encoding = match key.alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_der(&key.private_der),
        _ => jsonwebtoken::EncodingKey::from_ec_der(&key.private_der),
    };
    jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
}

fn jwks(keys: &[&TestKey]) -> String {
    serde_json::json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn openssl_available() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    available("ingress_auth jwt", "the openssl CLI", ok)
}

#[test]
fn jwt_verification_deny_all_and_jwks_reload() {
    if !openssl_available() {
        return;
    }
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let rsa = rsa_key(dir.path(), "rsa-1");
        let ec = ec_key(dir.path(), "ec-1");
        let jwks_file = dir.path().join("jwks.json");
        std::fs::write(&jwks_file, jwks(&[&rsa])).unwrap();
        let config = dir.path().join("config.yaml");
        let sink = Sink::start((0, 0)).await;
        let resources = [
            broker_with_labels("orders", ""),
            broker_with_labels("closed", ""),
            trigger_yaml(NS, "to-sink", "orders", &sink.url, &[]),
            policy("shop-apps", "  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: orders}\n  from:\n  - sub: 'system:serviceaccount:shop:*'\n"),
        ];
        std::fs::write(&config, resources.join("---\n")).unwrap();
        let server = Replica::start(
            "jwt",
            &config,
            &dir.path().join("data"),
            (NS, "orders"),
            &[
                "--oidc-jwks",
                jwks_file.to_str().unwrap(),
                "--oidc-issuer",
                ISSUER,
                "--default-authorization-mode",
                "deny-all",
            ],
        )
        .await;
        Admin::new(&server.admin)
            .wait_ready("triggers", NS, "to-sink", WAIT)
            .await;
        let orders = server.url_of(NS, "orders");
        let aud = "eventing.knative.dev/broker/shop/orders";
        let app = "system:serviceaccount:shop:app";
        let mut accepted = HashSet::new();

        let good = jwt(&rsa, app, aud, ISSUER, 600, -10);
        let (status, body, _) = post(&orders, Some(&bearer(&good)), "rsa-ok", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.insert("rsa-ok".to_string());
        for (token, id, why) in [
            (
                jwt(
                    &rsa,
                    app,
                    "eventing.knative.dev/broker/shop/closed",
                    ISSUER,
                    600,
                    -10,
                ),
                "wrong-aud",
                "audience",
            ),
            (
                jwt(&rsa, app, aud, "https://evil.test", 600, -10),
                "wrong-iss",
                "issuer",
            ),
            (
                jwt(&rsa, app, aud, ISSUER, -600, -1200),
                "expired",
                "expired",
            ),
            (jwt(&rsa, app, aud, ISSUER, 1200, 600), "not-yet", "nbf"),
            (jwt(&ec, app, aud, ISSUER, 600, -10), "unknown-key", "kid"),
        ] {
            let (status, body, challenge) =
                post(&orders, Some(&bearer(&token)), id, EVENT_TYPE).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{id}: {body}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
            assert!(body.contains(why), "{id}: {body}");
        }
        // A valid identity the policy does not allow; and deny-all where no policy applies.
        let outsider = jwt(&rsa, "system:serviceaccount:ops:app", aud, ISSUER, 600, -10);
        let (status, body, _) =
            post(&orders, Some(&bearer(&outsider)), "outsider", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let closed = server.url_of(NS, "closed");
        let to_closed = jwt(
            &rsa,
            app,
            "eventing.knative.dev/broker/shop/closed",
            ISSUER,
            600,
            -10,
        );
        let (status, body, _) =
            post(&closed, Some(&bearer(&to_closed)), "closed", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(
            body.contains("deny-all") && body.contains("Broker shop/closed"),
            "{body}"
        );

        // The JWKS reloads: the EC key added is accepted without a restart.
        write_atomically(&jwks_file, &jwks(&[&rsa, &ec]));
        let by_ec = jwt(&ec, app, aud, ISSUER, 600, -10);
        until_status(&orders, &bearer(&by_ec), StatusCode::ACCEPTED, "ec key").await;
        // A broken JWKS keeps the last good set.
        write_atomically(&jwks_file, "{\"keys\": [{\"kty\": \"RSA\"}]}");
        let mut proc = server.proc;
        proc.wait_line("JWKS not reloaded").await;
        let (status, body, _) = post(&orders, Some(&bearer(&by_ec)), "ec-ok", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        accepted.insert("ec-ok".to_string());
        sink.wait_for(&accepted, WAIT, "accepted events").await;
        let refused = [
            "wrong-aud",
            "wrong-iss",
            "expired",
            "not-yet",
            "unknown-key",
            "outsider",
        ];
        let got: HashSet<String> = sink.records().into_iter().map(|r| r.id).collect();
        for id in refused {
            assert!(!got.contains(id), "refused {id} was delivered");
        }
        drop(proc);
    });
}

// ---------------------------------------------------------------------------------------
// NATS: a refused request stores nothing

#[test]
fn refused_requests_store_nothing_on_nats() {
    if !shared_nats_available("refused_requests_store_nothing_on_nats") {
        return;
    }
    run(async {
        let ns = format!("auth-{}", std::process::id());
        let stream = stream_name(&ns, "orders");
        let _cleanup = StreamCleanup::new(NATS_URL, stream.clone());
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.txt");
        std::fs::write(&tokens, "in-token insider\nout-token outsider\n").unwrap();
        let config = dir.path().join("config.yaml");
        let resources = [
            broker_yaml(&ns, "orders", &[]),
            format!(
                "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventPolicy\nmetadata: {{name: insiders, namespace: {ns}}}\nspec:\n  from:\n  - sub: insider\n"
            ),
        ];
        std::fs::write(&config, resources.join("---\n")).unwrap();
        let server = Replica::start(
            "nats-auth",
            &config,
            &dir.path().join("data"),
            (&ns, "orders"),
            &[
                "--channel",
                "nats",
                "--nats-url",
                NATS_URL,
                "--ingress-tokens",
                tokens.to_str().unwrap(),
            ],
        )
        .await;
        let orders = server.url_of(&ns, "orders");
        let (status, body, _) = post(&orders, Some(&bearer("in-token")), "in-1", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let (before, _) = stream_state(NATS_URL, &stream).await;
        assert_eq!(before, 1);
        for (auth, want) in [
            (None, StatusCode::UNAUTHORIZED),
            (Some("Bearer bad"), StatusCode::UNAUTHORIZED),
            (Some("Bearer out-token"), StatusCode::FORBIDDEN),
        ] {
            let (status, body, _) = post(&orders, auth, "refused", EVENT_TYPE).await;
            assert_eq!(status, want, "{body}");
        }
        let (after, _) = stream_state(NATS_URL, &stream).await;
        assert_eq!(after, before, "a refused request stored an event");
        let (status, _, _) = post(&orders, Some(&bearer("in-token")), "in-2", EVENT_TYPE).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (last, _) = stream_state(NATS_URL, &stream).await;
        assert_eq!(last, before + 1);
        drop(server);
    });
}

// ---------------------------------------------------------------------------------------
// README: the Authentication section's commands and EventPolicy, as written

/// The EventPolicy YAML block of README.md's Authentication section.
fn readme_policy() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let section = &readme[readme
        .find("### Authentication")
        .expect("README has the section")..];
    let start = section
        .find("```yaml\n")
        .expect("the section shows an EventPolicy")
        + 8;
    let block = &section[start..];
    block[..block.find("```").unwrap()].to_string()
}

#[test]
fn readme_authentication_commands() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start((0, 0)).await;
        // printf 'alice-token alice\n' > tokens.txt
        let tokens = dir.path().join("tokens.txt");
        std::fs::write(&tokens, "alice-token alice\n").unwrap();
        let policy = readme_policy();
        assert!(policy.contains("kind: EventPolicy"), "{policy}");
        let config = dir.path().join("herald.yaml");
        let resources = [
            broker_yaml("default", "default", &[]),
            trigger_yaml("default", "to-sink", "default", &sink.url, &[]),
            policy,
        ];
        std::fs::write(&config, resources.join("---\n")).unwrap();
        // herald serve --config herald.yaml --ingress-tokens tokens.txt
        let server = Replica::start(
            "readme-auth",
            &config,
            &dir.path().join("data"),
            ("default", "default"),
            &["--ingress-tokens", tokens.to_str().unwrap()],
        )
        .await;
        Admin::new(&server.admin)
            .wait_ready("triggers", "default", "to-sink", WAIT)
            .await;
        let url = server.url_of("default", "default");
        // herald send --to URL --token alice-token
        herald(&[
            "send",
            "--to",
            &url,
            "--token",
            "alice-token",
            "--id",
            "readme-1",
        ])
        .await
        .ok();
        herald_with_env(
            &["send", "--to", &url, "--id", "readme-2"],
            &[("HERALD_INGRESS_TOKEN", "alice-token")],
        )
        .await
        .ok();
        let run = herald(&["send", "--to", &url, "--id", "readme-3"])
            .await
            .failed();
        assert!(run.stderr.contains("401"), "{run}");
        let run = herald(&["send", "--to", &url, "--token", "wrong", "--id", "readme-4"])
            .await
            .failed();
        assert!(run.stderr.contains("401"), "{run}");
        let want: HashSet<String> = ["readme-1", "readme-2"].map(String::from).into();
        sink.wait_for(&want, WAIT, "the README's sends").await;
        let policy = policies_api(&server.admin)
            .get("eventpolicies", "default", "orders-senders")
            .await
            .unwrap();
        assert_eq!(
            policy["status"]["from"][2],
            "system:serviceaccount:default:tick-oidc-sources.knative.dev-pingsource",
            "{policy}"
        );
        drop(server);
    });
}

/// Replicas behind one `--ingress-url`: a Trigger of one replica delivers to a Broker whose
/// ingress is another's. With the same `--sender-key-file` the other replica accepts the
/// Trigger's token (and its EventPolicy allows the Trigger's identity); with a key of its
/// own the token is refused (401), so the event is dead-lettered instead.
#[test]
fn replicas_sharing_a_sender_key_accept_each_others_triggers() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens.txt");
        std::fs::write(&tokens, TOKENS).unwrap();
        let key = dir.path().join("sender.key");
        std::fs::write(&key, "5d2e4f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c\n").unwrap();
        let (key, tokens) = (key.to_str().unwrap(), tokens.to_str().unwrap());

        // B serves the Broker `relay`, which only the Trigger `to-relay` may send to.
        let relayed = Sink::start((0, 0)).await;
        let b_config = dir.path().join("b");
        std::fs::create_dir(&b_config).unwrap();
        let b_resources = [
            broker_with_labels("relay", ""),
            trigger_yaml(NS, "relayed", "relay", &relayed.url, &[]),
            policy(
                "relay-from-trigger",
                "  to:\n  - ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: relay}\n  from:\n  - sub: system:serviceaccount:shop:to-relay-oidc-eventing.knative.dev-trigger\n",
            ),
        ];
        std::fs::write(b_config.join("all.yaml"), b_resources.join("---\n")).unwrap();
        let b = Replica::start(
            "b",
            &b_config,
            &dir.path().join("b-data"),
            (NS, "relay"),
            &["--ingress-tokens", tokens, "--sender-key-file", key],
        )
        .await;
        Admin::new(&b.admin)
            .wait_ready("triggers", NS, "relayed", WAIT)
            .await;

        // With the same key, A's Trigger gets through to B; with a key of its own, A2's is
        // refused and its event dead-lettered.
        let a = relay_through(dir.path(), "a", &b.base, &["--sender-key-file", key]).await;
        relayed
            .wait_for_or(
                &["a-1".to_string()].into(),
                WAIT,
                "relayed through B",
                || a.0.proc.log_tail(),
            )
            .await;
        assert!(
            a.1.records().is_empty(),
            "dead-lettered: {:?}",
            a.1.counts()
        );
        let a2 = relay_through(dir.path(), "a2", &b.base, &[]).await;
        a2.1.wait_for_or(&["a2-1".to_string()].into(), WAIT, "dead-lettered", || {
            a2.0.proc.log_tail()
        })
        .await;
        assert_eq!(
            relayed.counts().get("a2-1"),
            None,
            "B accepted a foreign token"
        );
    });
}

/// A replica serving Broker `orders`, whose Trigger relays to Broker `relay` at the ingress
/// `b_base` (also its `--ingress-url`, so it presents its token there) with one attempt, dead letters to the returned sink; an event
/// `{name}-1` is accepted on it.
async fn relay_through(
    dir: &Path,
    name: &str,
    b_base: &str,
    extra: &[&str],
) -> (Replica, std::sync::Arc<Sink>) {
    let tokens = dir.join("tokens.txt");
    let dead = Sink::start((0, 0)).await;
    let config = dir.join(name);
    std::fs::create_dir(&config).unwrap();
    let spec = format!(
        "  broker: orders\n  subscriber:\n    uri: {b_base}/{NS}/relay\n  delivery:\n    retry: 0\n    deadLetterSink:\n      uri: {}\n",
        dead.url
    );
    let resources = [
        broker_with_labels("orders", ""),
        trigger_yaml_with_spec(NS, "to-relay", &spec),
    ];
    std::fs::write(config.join("all.yaml"), resources.join("---\n")).unwrap();
    let mut args = vec![
        "--ingress-tokens",
        tokens.to_str().unwrap(),
        "--ingress-url",
        b_base,
    ];
    args.extend_from_slice(extra);
    let a = Replica::serve(name, &config, &dir.join(format!("{name}-data")), &args).await;
    Admin::new(&a.admin)
        .wait_ready("triggers", NS, "to-relay", WAIT)
        .await;
    let id = format!("{name}-1");
    let (status, body, _) = post(
        &a.url_of(NS, "orders"),
        Some(&bearer("app-token")),
        &id,
        EVENT_TYPE,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{name}: {body}");
    (a, dead)
}

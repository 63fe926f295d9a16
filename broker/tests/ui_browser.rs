//! The web UI in headless Chromium (Debian's `chromium`, driven through `chromedriver`) against
//! a real `herald serve` with an admin token: the page loads and, once the token is typed in,
//! lists the resources; a test event sent through its form shows in its live stream; an event
//! that its Trigger's subscriber refuses (and that has no dead-letter sink) is parked, listed,
//! and redriven from the page once the subscriber is back, which delivers it and unlists it;
//! the EventType panel lists the type the Broker recorded from the test event.
//! Saves a screenshot under the target directory and prints its path.
//!
//! Needs chromium and chromedriver (`scripts/test-deps.sh` installs both): a failure under
//! CI=true, a printed skip otherwise.

mod replicas;
mod webdriver;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use replicas::admin::*;
use replicas::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use webdriver::{ChromeDriver, Session};

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "ui-secret";

/// A subscriber that refuses every delivery (500) until told to accept; records what it took.
#[derive(Clone, Default)]
struct Subscriber {
    accept: Arc<AtomicBool>,
    taken: Arc<Mutex<Vec<String>>>,
}

impl Subscriber {
    async fn start(self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let app = axum::Router::new().fallback(take).with_state(self);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }
}

async fn take(State(s): State<Subscriber>, headers: HeaderMap) -> StatusCode {
    if !s.accept.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let id = headers
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    s.taken.lock().unwrap().push(id.to_string());
    StatusCode::ACCEPTED
}

fn found(path: &str) -> Option<String> {
    Path::new(path).exists().then(|| path.to_string())
}

#[test]
fn the_ui_sends_streams_and_redrives() {
    let chromium = std::env::var("HERALD_CHROMIUM")
        .ok()
        .or_else(|| found("/usr/bin/chromium"));
    let driver = std::env::var("HERALD_CHROMEDRIVER")
        .ok()
        .or_else(|| found("/usr/bin/chromedriver"));
    let (Some(chromium), Some(driver)) = (chromium, driver) else {
        assert!(
            !in_ci(),
            "chromium and chromedriver are needed (scripts/test-deps.sh installs them)"
        );
        eprintln!("skipped: no chromium or chromedriver (scripts/test-deps.sh installs them)");
        return;
    };
    run(async {
        let ns = format!("ui-{}", std::process::id());
        let subscriber = Subscriber::default();
        let subscriber_url = subscriber.clone().start().await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        // No retries and no dead-letter sink: a refused event is parked at once.
        let trigger = trigger_yaml_with_spec(
            &ns,
            "orders",
            &format!("  broker: default\n  subscriber:\n    uri: {subscriber_url}\n  delivery:\n    retry: 0\n"),
        );
        std::fs::write(
            config.join("herald.yaml"),
            format!("{}---\n{trigger}", broker_yaml(&ns, "default", &[])),
        )
        .unwrap();
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &["--channel", "memory", "--admin-token", TOKEN],
        )
        .await;

        let chromedriver = ChromeDriver::start(&driver, free_port(), WAIT).await;
        let page = Session::new(&chromedriver, &chromium).await;
        page.goto(&format!("{}/ui/", server.admin)).await;
        // Without the token the page says so instead of listing.
        let refused = page.wait_for("#resources .error", WAIT).await;
        assert!(page.text(&refused).await.contains("401"));
        let token = page.wait_for("#token", WAIT).await;
        page.type_text(&token, TOKEN).await;
        // Leaving the field commits it.
        page.click(&page.wait_for("#refresh", WAIT).await).await;
        page.wait_for(&format!("#table-brokers tr[data-key='{ns}/default']"), WAIT)
            .await;
        page.wait_for(&format!("#table-triggers tr[data-key='{ns}/orders']"), WAIT)
            .await;
        page.wait_for("#stream-status.watching", WAIT).await;

        // Send a test event through the form; it shows in the live stream.
        let data = page.wait_for("#send-data", WAIT).await;
        page.clear(&data).await;
        page.type_text(&data, r#"{"order": 42, "note": "from the browser"}"#)
            .await;
        page.click(&page.wait_for("#send-button", WAIT).await).await;
        let result = page.wait_for("#send-result[data-event-id]", WAIT).await;
        let id = page.attribute(&result, "data-event-id").await.unwrap();
        let sent = page.text(&result).await;
        assert!(sent.contains("202"), "{sent}");
        let shown = page
            .wait_for(&format!("#stream li[data-event-id='{id}']"), WAIT)
            .await;
        let text = page.text(&shown).await;
        assert!(text.contains("from the browser"), "{text}");

        // The subscriber refused it and there is no dead-letter sink: it is parked, listed.
        let row = format!("#table-dlq tr[data-event-id='{id}']");
        page.wait_for(&row, WAIT).await;
        // The Broker recorded the test event's EventType; the panel lists it under Knative's name.
        let name = herald_core::eventtype::generated_name(
            "default",
            &ns,
            "dev.herald.ui.test",
            "herald-ui",
        );
        let listed = page
            .wait_for(
                &format!("#table-eventtypes tr[data-key='{ns}/{name}']"),
                WAIT,
            )
            .await;
        let text = page.text(&listed).await;
        for want in [
            "dev.herald.ui.test",
            "herald-ui",
            "Broker default",
            "Ready",
            "recorded",
        ] {
            assert!(
                text.contains(want),
                "{want:?} not in the EventType row: {text}"
            );
        }
        let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-browser.png");
        std::fs::write(&shot, page.screenshot().await).unwrap();
        println!("screenshot: {}", shot.display());

        // Back up, the subscriber takes the redriven event, and the list drops it.
        subscriber.accept.store(true, Ordering::SeqCst);
        page.click(&page.wait_for(&format!("{row} button.redrive"), WAIT).await)
            .await;
        page.wait_gone(&row, WAIT).await;
        let said = page.text_of("#dlq-result").await;
        assert!(
            said.contains("Redrove") && said.contains("Delivered"),
            "{said}"
        );
        assert_eq!(*subscriber.taken.lock().unwrap(), vec![id.clone()]);
        let listed = herald(&[
            "dlq",
            "list",
            "--broker",
            &format!("{ns}/default"),
            "--server",
            &server.admin,
            "--token",
            TOKEN,
        ])
        .await;
        assert!(!listed.stdout.contains(&id), "{listed}");
        page.close().await;
    });
}

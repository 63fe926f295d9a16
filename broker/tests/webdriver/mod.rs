//! A small WebDriver client (W3C WebDriver over HTTP, JSON in and out) for the browser test:
//! the handful of commands it needs, against a chromedriver process it starts on a free port.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct ChromeDriver {
    child: Child,
    pub url: String,
}

impl ChromeDriver {
    /// Starts `driver` on `port` and waits (up to `limit`) until it answers ready.
    pub async fn start(driver: &str, port: u16, limit: Duration) -> ChromeDriver {
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {driver}: {e}"));
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let end = Instant::now() + limit;
        loop {
            let ready = match reqwest::get(format!("{}/status", driver.url)).await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return driver;
            }
            assert!(
                Instant::now() < end,
                "chromedriver not ready within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Session {
    http: reqwest::Client,
    base: String,
}

#[derive(Clone, Debug)]
pub struct Element(String);

impl Session {
    /// A new headless Chromium session (`chromium` is the browser binary).
    pub async fn new(driver: &ChromeDriver, chromium: &str) -> Session {
        let http = reqwest::Client::new();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1400,1600", "--no-first-run", "--no-default-browser-check"]
            }
        }}});
        let answer: Value = http
            .post(format!("{}/session", driver.url))
            .json(&caps)
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Session {
            http,
            base: format!("{}/session/{id}", driver.url),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(&b);
        }
        let answer: Value = request
            .send()
            .await
            .expect("chromedriver answers")
            .json()
            .await
            .expect("a JSON answer");
        answer["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The first element matching `css`, if any.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().map(|id| Element(id.to_string()))
    }

    /// Waits up to `limit` for an element matching `css`.
    pub async fn wait_for(&self, css: &str, limit: Duration) -> Element {
        let end = Instant::now() + limit;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            assert!(
                Instant::now() < end,
                "no element {css} within {limit:?}; page text:\n{}",
                self.text_of("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `limit` until no element matches `css`.
    pub async fn wait_gone(&self, css: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while self.find(css).await.is_some() {
            assert!(Instant::now() < end, "{css} still there after {limit:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    pub async fn type_text(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{}/text", e.0),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    pub async fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.call(
            reqwest::Method::GET,
            &format!("/element/{}/attribute/{name}", e.0),
            None,
        )
        .await
        .as_str()
        .map(str::to_string)
    }

    /// The visible text of the first element matching `css` (empty when none).
    pub async fn text_of(&self, css: &str) -> String {
        match self.find(css).await {
            Some(e) => self.text(&e).await,
            None => String::new(),
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("a base64 screenshot"))
            .expect("valid base64")
    }

    pub async fn close(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }
}

//! A minimal W3C WebDriver client, for the tests that need a real browser
//! (the auditor's page): Debian's headless `chromium`, driven by its
//! `chromedriver` over HTTP with JSON, through reqwest.
//!
//! Owns: starting `chromedriver` on a free port (killed on drop, with the
//! browser session deleted first and its fresh profile directory removed),
//! one session, and the few endpoints the tests use: navigate, find
//! elements by CSS selector, element text, attribute, property, click, keys,
//! execute script, screenshots (the viewport, or the whole page through
//! CDP), the browser's console log, and chromedriver's
//! CDP passthrough (extra request headers, for HTTP Basic authentication).
//! Must never: skip a test when the browser is missing (it fails, naming
//! the packages to install); fetch anything itself; outlive its test (no
//! chromedriver or chromium process is left behind).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Value, json};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// How long `wait_for` polls before failing.
const WAIT: Duration = Duration::from_secs(10);

/// One headless Chromium session behind its own chromedriver.
pub struct Browser {
    /// One browser at a time in this test binary: Chromium is heavy, and the
    /// other tests (some of them about time limits) share the machine.
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
    http: reqwest::Client,
    port: u16,
    session: String,
    driver: Child,
    profile: PathBuf,
}

/// An element of the current page.
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

/// Fail (never skip) when the browser or its driver is not installed.
fn require_installed() {
    for (path, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromedriver")] {
        assert!(
            Path::new(path).exists(),
            "the browser tests need {what} at {path}, which is missing. Install Chromium and its \
             WebDriver: `sudo apt-get install chromium chromium-driver` (Debian), or run `bash .ci/run`, \
             which installs them when missing."
        );
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

impl Browser {
    /// Start chromedriver and open a headless Chromium session with a fresh
    /// profile and a 1400×1000 window.
    pub async fn start() -> Browser {
        require_installed();
        // A test that failed while holding the lock poisons it; the lock
        // only serialises, so the next test goes on.
        let one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let profile = std::env::temp_dir().join(format!("xaa-chromium-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&profile).expect("a temporary profile directory");
        let log = profile.with_extension("chromedriver.log");
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e} (install `chromium chromium-driver`)"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let mut browser = Browser {
            _one_at_a_time: one_at_a_time,
            http,
            port,
            session: String::new(),
            driver,
            profile,
        };
        browser.wait_until_ready(&log).await;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([format!("--user-data-dir={}", browser.profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
            "timeouts": {"pageLoad": 30000, "script": 10000, "implicit": 0},
        }}});
        let created = browser.driver_call(reqwest::Method::POST, "/session", Some(caps)).await;
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session from chromedriver: {created}; log: {}", tail(&log)))
            .to_owned();
        browser
    }

    async fn wait_until_ready(&mut self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.driver.try_wait() {
                panic!("chromedriver exited ({status}) before it was ready; log: {}", tail(log));
            }
            let url = format!("http://127.0.0.1:{}/status", self.port);
            if let Ok(r) = self.http.get(&url).send().await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready after 20 s; log: {}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// One WebDriver command; its `value`, or a panic naming the command
    /// and WebDriver's error.
    async fn driver_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = &body {
            req = req.json(b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON: {e}"));
        if !status.is_success() || v["value"]["error"].is_string() {
            panic!(
                "WebDriver {method} {path} failed ({status}): {} — {}",
                v["value"]["error"], v["value"]["message"]
            );
        }
        v["value"].clone()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.driver_call(method, &format!("/session/{}{path}", self.session), body)
            .await
    }

    /// Navigate and wait for the page to load.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn current_url(&self) -> String {
        self.call(reqwest::Method::GET, "/url", None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A Chrome DevTools Protocol command through chromedriver.
    pub async fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
        .await
    }

    /// Send `Authorization: Basic …` with every request from now on (a
    /// headless browser cannot answer the Basic prompt).
    pub async fn basic_auth(&self, user: &str, password: &str) {
        let token = B64.encode(format!("{user}:{password}"));
        self.cdp("Network.enable", json!({})).await;
        self.cdp(
            "Network.setExtraHTTPHeaders",
            json!({"headers": {"Authorization": format!("Basic {token}")}}),
        )
        .await;
    }

    /// Every element matching the CSS selector, in document order.
    pub async fn find_all(&self, css: &str) -> Vec<Element<'_>> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| self.element(id))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The one element matching the CSS selector (a panic if none or many).
    pub async fn find(&self, css: &str) -> Element<'_> {
        let mut all = self.find_all(css).await;
        assert_eq!(all.len(), 1, "`{css}` matches {} elements, not one", all.len());
        all.remove(0)
    }

    /// The first element matching the CSS selector, polling until it exists.
    pub async fn wait_for(&self, css: &str) -> Element<'_> {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut all = self.find_all(css).await;
            if !all.is_empty() {
                return all.remove(0);
            }
            if Instant::now() >= deadline {
                panic!(
                    "no `{css}` after {WAIT:?} at {}; console: {:?}",
                    self.current_url().await,
                    self.console().await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Click `element` and wait until the page it leads to has loaded (a
    /// click does not wait for the navigation it starts).
    pub async fn click_to_navigate(&self, element: &Element<'_>) {
        self.execute("window.__xaaLeaving = true", vec![]).await;
        element.click().await;
        let deadline = Instant::now() + WAIT;
        loop {
            let arrived = self
                .execute(
                    "return window.__xaaLeaving !== true && document.readyState === 'complete'",
                    vec![],
                )
                .await;
            if arrived == true {
                return;
            }
            assert!(Instant::now() < deadline, "no new page after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn element(&self, id: &str) -> Element<'_> {
        Element {
            browser: self,
            id: id.to_owned(),
        }
    }

    /// Run `script` (a function body: `return …`) with `args`; elements are
    /// passed with [`Element::arg`].
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// A PNG of the viewport, written to `path` (its directories created).
    pub async fn screenshot(&self, path: &Path) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        write_png(path, &png);
    }

    /// A PNG of the whole page, beyond the viewport (through CDP).
    pub async fn screenshot_full_page(&self, path: &Path) {
        let metrics = self.cdp("Page.getLayoutMetrics", json!({})).await;
        let size = &metrics["cssContentSize"];
        let clip = json!({"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1});
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
            )
            .await;
        write_png(path, &shot["data"]);
    }

    /// The console messages since the last call (level, message).
    pub async fn console(&self) -> Vec<(String, String)> {
        self.call(reqwest::Method::POST, "/se/log", Some(json!({"type": "browser"})))
            .await
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["level"].as_str().unwrap_or_default().to_owned(),
                            e["message"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Element<'_> {
    fn path(&self, tail: &str) -> String {
        format!("/element/{}{tail}", self.id)
    }

    /// The rendered text (WebDriver's "Get Element Text").
    pub async fn text(&self) -> String {
        let v = self.browser.call(reqwest::Method::GET, &self.path("/text"), None).await;
        v.as_str().unwrap_or_default().to_owned()
    }

    pub async fn attribute(&self, name: &str) -> Option<String> {
        let v = self
            .browser
            .call(reqwest::Method::GET, &self.path(&format!("/attribute/{name}")), None)
            .await;
        v.as_str().map(str::to_owned)
    }

    pub async fn property(&self, name: &str) -> Value {
        self.browser
            .call(reqwest::Method::GET, &self.path(&format!("/property/{name}")), None)
            .await
    }

    pub async fn click(&self) {
        self.browser
            .call(reqwest::Method::POST, &self.path("/click"), None)
            .await;
    }

    pub async fn clear(&self) {
        self.browser
            .call(reqwest::Method::POST, &self.path("/clear"), None)
            .await;
    }

    /// Type `text` into the element.
    pub async fn send_keys(&self, text: &str) {
        self.browser
            .call(reqwest::Method::POST, &self.path("/value"), Some(json!({"text": text})))
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Delete the session first, so chromedriver closes Chromium, then
        // stop chromedriver. Blocking and bounded: this runs on test exit,
        // also after a failed assertion.
        if !self.session.is_empty() {
            delete_session(self.port, &self.session);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
        let _ = std::fs::remove_file(self.profile.with_extension("chromedriver.log"));
    }
}

/// Write a base64 PNG from WebDriver or CDP to `path`, creating its
/// directories.
fn write_png(path: &Path, png: &Value) {
    let bytes = B64.decode(png.as_str().expect("a base64 screenshot")).expect("base64");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("the screenshot's directory");
    }
    std::fs::write(path, bytes).expect("the screenshot written");
}

/// `DELETE /session/{id}` over a plain blocking socket (Drop cannot await).
fn delete_session(port: u16, session: &str) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let _ = write!(
        s,
        "DELETE /session/{session} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
}

/// The end of chromedriver's log, for a failure message.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let start = text.len().saturating_sub(2000);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

//! A headless Chromium driven through chromedriver's W3C WebDriver HTTP API,
//! with `ureq` and `serde_json` only.
//!
//! Both programs are found on `PATH` (or `CHROME` and `CHROMEDRIVER`). When
//! either is missing the tests say they are skipped, except under CI (`CI`
//! set), where they fail. Everything started here is killed on drop, by
//! process id, even when a test fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// A browser session; closes the browser and stops chromedriver on drop.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    profile: PathBuf,
    http: ureq::Agent,
}

fn find(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|dir| names.iter().map(move |n| dir.join(n))).find(|p| p.is_file())
}

/// Chromium and chromedriver, or the reason the browser tests cannot run.
fn programs() -> Result<(PathBuf, PathBuf), String> {
    let chrome = find("CHROME", &["chromium", "chromium-browser", "google-chrome"])
        .ok_or("no chromium on PATH (apt-get install chromium, or set CHROME)")?;
    let driver = find("CHROMEDRIVER", &["chromedriver"])
        .ok_or("no chromedriver on PATH (apt-get install chromium-driver, or set CHROMEDRIVER)")?;
    Ok((chrome, driver))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    /// A fresh headless browser, or `None` (after saying why) when Chromium
    /// is not installed. Under CI a missing browser fails the test.
    pub fn start(test: &str) -> Option<Browser> {
        let (chrome, driver) = match programs() {
            Ok(p) => p,
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("{test}: {why}; CI must run the browser tests")
            }
            Err(why) => {
                // Straight to stderr: the test harness captures eprintln! of passing tests.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{test}: skipped: {why}");
                return None;
            }
        };
        let port = free_port();
        let driver = Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = std::env::temp_dir().join(format!("taskscope-viewer-{}-{port}", std::process::id()));
        let http = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            profile,
            http,
        };
        let ready = Instant::now();
        while browser.get("/status").map(|v| v["value"]["ready"] != true).unwrap_or(true) {
            assert!(ready.elapsed() < Duration::from_secs(30), "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            &format!("--user-data-dir={}", browser.profile.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chrome, "args": args},
        }}});
        let v = browser.post("/session", &caps);
        browser.session =
            v["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {v}")).to_string();
        Some(browser)
    }

    fn get(&self, path: &str) -> Result<Value, ureq::Error> {
        let mut r = self.http.get(format!("{}{path}", self.base)).call()?;
        Ok(serde_json::from_str(&r.body_mut().read_to_string()?).unwrap_or(Value::Null))
    }

    fn post(&self, path: &str, body: &Value) -> Value {
        let mut r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body.to_string())
            .expect("webdriver request");
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        if let Some(e) = v["value"]["error"].as_str() {
            panic!("webdriver {path}: {e}: {}", v["value"]["message"]);
        }
        v
    }

    fn session(&self, path: &str, body: &Value) -> Value {
        self.post(&format!("/session/{}{path}", self.session), body)["value"].clone()
    }

    /// Loads `url` and waits for the page.
    pub fn goto(&self, url: &str) {
        self.session("/url", &json!({ "url": url }));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn run(&self, script: &str, args: Value) -> Value {
        self.session("/execute/sync", &json!({ "script": script, "args": args }))
    }

    /// Runs `script` until it returns something other than null or false;
    /// panics with `what` and the page's text after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let start = Instant::now();
        loop {
            let v = self.run(script, json!([]));
            if !v.is_null() && v != false {
                return v;
            }
            if start.elapsed() > timeout {
                let text = self.run("return document.body.innerText", json!([]));
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the page says:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The element `css` selects, as WebDriver names it.
    pub fn element(&self, css: &str) -> String {
        let v = self.session("/element", &json!({ "using": "css selector", "value": css }));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element id")
            .to_string()
    }

    /// A real click (WebDriver moves the pointer there), not a script's.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.session(&format!("/element/{id}/click"), &json!({}));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session(&format!("/element/{id}/value"), &json!({ "text": text }));
    }

    /// A PNG of the window, when a test wants to show what it saw.
    pub fn screenshot(&self, path: &Path) {
        let v = self.http.get(format!("{}/session/{}/screenshot", self.base, self.session)).call();
        let text = v.ok().and_then(|mut r| r.body_mut().read_to_string().ok()).unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(b64) = v["value"].as_str() {
            let _ = std::fs::write(path, base64_decode(b64));
        }
    }
}

/// Process ids of the descendants of `pid`, from /proc (Linux).
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`; comm may hold spaces, so read after the last ')'.
        let ppid =
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if let Some(ppid) = ppid {
            parents.push((child, ppid));
        }
    }
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}

impl Drop for Browser {
    fn drop(&mut self) {
        let browsers = descendants(self.driver.id());
        if !self.session.is_empty() {
            let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).call();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Whatever chromedriver started and did not stop: by process id.
        for pid in browsers {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").arg("-9").arg(pid.to_string()).stderr(Stdio::null()).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let bits: Vec<u8> = s.bytes().filter_map(value).collect();
    bits.chunks(4)
        .flat_map(|c| {
            let n = c.iter().fold(0u32, |n, &v| (n << 6) | v as u32) << (6 * (4 - c.len()));
            let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            bytes.into_iter().take(c.len() * 3 / 4)
        })
        .collect()
}

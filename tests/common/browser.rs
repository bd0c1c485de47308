//! A real headless Chromium, driven through ChromeDriver (WebDriver).
//!
//! Needs Debian's `chromium` and `chromium-driver`. Without them the browser
//! tests are skipped with a notice, unless `HERALD_REQUIRE_BROWSER=1` (CI)
//! turns the skip into a failure.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// A fresh browser with an empty profile, or `None` when the test is skipped.
    pub async fn start() -> Option<Self> {
        let (Some(driver_bin), Some(chromium)) = (
            find(&["chromedriver"]),
            find(&["chromium", "chromium-browser", "google-chrome"]),
        ) else {
            assert!(
                std::env::var("HERALD_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "HERALD_REQUIRE_BROWSER=1 but chromium or chromedriver is missing: apt-get install chromium chromium-driver"
            );
            super::report(
                "SKIPPED browser test: chromium and chromedriver are not installed (apt-get install chromium chromium-driver)",
            );
            return None;
        };
        let port = free_port();
        // Its own process group, so that ending it ends the browsers it started.
        let driver = Command::new(driver_bin)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().expect("object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) => {
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "chromedriver did not answer: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        Some(Self {
            client,
            driver,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.expect("page opens");
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.expect("current url").path().to_owned()
    }

    pub async fn text(&self, css: &str) -> String {
        self.element(css).await.text().await.expect("text")
    }

    /// Waits for `css`; when it never comes, fails with the page as it was.
    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                let url = self
                    .client
                    .current_url()
                    .await
                    .map(|u| u.to_string())
                    .unwrap_or_default();
                let source = self.client.source().await.unwrap_or_default();
                panic!("no element {css} ({e}) on {url}:\n{source}");
            }
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.expect("find").len()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no field {css}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Clicks something that loads another page (a link, a form's button),
    /// and waits until the new page has replaced the old one.
    pub async fn follow(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.expect("a page");
        self.click(css).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // The old page's root goes stale once the new page is in.
        while old.tag_name().await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "clicking {css} loaded no page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("body"))
            .await
            .expect("the new page");
    }

    pub async fn select(&self, css: &str, value: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no select {css}: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("no option {value} in {css}: {e}"));
    }

    /// Reloads the page until `css` matches something, as a person would.
    pub async fn reload_until(&self, css: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if self.count(css).await > 0 {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{css} never appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.client.refresh().await.expect("reload");
        }
    }

    /// Saves the page as `docs/screenshots/NAME.png` when
    /// `HERALD_UPDATE_SCREENSHOTS=1`, else under the target directory.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = if std::env::var("HERALD_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
        };
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Runs axe-core (pinned in tests/sdk, installed by `npm ci` into
    /// target/sdk-node) on the page: its serious and critical violations,
    /// each with the elements it found them on.
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let axe = super::node::sdk_node_dir().join("node_modules/axe-core/axe.min.js");
        let source = std::fs::read_to_string(&axe).unwrap_or_else(|e| panic!("{}: {e}", axe.display()));
        // Scripts run through WebDriver are not the page's, so its
        // Content-Security-Policy does not stop them.
        self.client
            .execute(&format!("{source}\nreturn typeof axe;"), vec![])
            .await
            .expect("axe-core loads into the page");
        let found = self
            .client
            .execute_async(
                r#"const done = arguments[arguments.length - 1];
                axe.run(document, { resultTypes: ["violations"] }).then(
                  (r) => done(r.violations
                    .filter((v) => v.impact === "serious" || v.impact === "critical")
                    .map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)),
                  (e) => done([`axe failed: ${e}`]));"#,
                vec![],
            )
            .await
            .expect("axe-core runs");
        serde_json::from_value(found).expect("a list of problems")
    }

    /// Fails when axe-core finds a serious or critical problem on the page.
    pub async fn assert_accessible(&self) {
        let problems = self.accessibility_problems().await;
        assert!(
            problems.is_empty(),
            "{} is not accessible:\n{}",
            self.path().await,
            problems.join("\n")
        );
    }

    /// Presses Tab until the element with id `id` has the focus, as someone
    /// on a keyboard would; fails when it never comes.
    pub async fn tab_to(&self, id: &str) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        use fantoccini::key::Key;
        for _ in 0..40 {
            let active = self.client.active_element().await.expect("a focused element");
            if active.attr("id").await.ok().flatten().as_deref() == Some(id) {
                return;
            }
            let tab = KeyActions::new("keyboard".into())
                .then(KeyAction::Down {
                    value: char::from(Key::Tab),
                })
                .then(KeyAction::Up {
                    value: char::from(Key::Tab),
                });
            self.client.perform_actions(tab).await.expect("Tab");
        }
        panic!("Tab never reached #{id} on {}", self.path().await);
    }

    /// Types `text` into the focused element and presses Enter, then waits
    /// for the page that loads.
    pub async fn type_and_enter(&self, text: &str) {
        use fantoccini::key::Key;
        let old = self.client.find(Locator::Css("html")).await.expect("a page");
        let active = self.client.active_element().await.expect("a focused element");
        active
            .send_keys(&format!("{text}{}", char::from(Key::Enter)))
            .await
            .expect("type");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while old.tag_name().await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "Enter loaded no page");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("body"))
            .await
            .expect("the new page");
    }

    /// The value of the form field `css`, as the browser holds it.
    pub async fn value(&self, css: &str) -> String {
        self.element(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

/// A test that fails never reaches `close`: kill ChromeDriver's whole
/// process group, Chromium included, so no browser outlives its test.
impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}

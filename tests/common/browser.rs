//! A real browser for the website's tests: Debian's chromium, headless, driven over WebDriver
//! by chromedriver (started here on a free loopback port, stopped by PID) through fantoccini.
//! Screenshots go to target/web-screenshots/, and also to docs/web/ when
//! `CJSM_WEB_SCREENSHOTS=update` (how the README's pictures are renewed).

use fantoccini::{Client, ClientBuilder, Locator};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
    base: String,
}

fn need(path: &str, package: &str) -> PathBuf {
    let path = PathBuf::from(path);
    assert!(
        path.exists(),
        "{} is not installed: the website's browser tests need Debian's {package} package \
         (scripts/test.sh installs it)",
        path.display()
    );
    path
}

impl Browser {
    /// A fresh headless browser (its own empty profile) pointed at the website at `base`.
    pub async fn start(base: &str) -> Browser {
        let chromium = need("/usr/bin/chromium", "chromium");
        let chromedriver = need("/usr/bin/chromedriver", "chromium-driver");
        let port = super::free_port();
        // In a process group of its own, with the chromium it starts: a test that fails before
        // closing the browser still ends them all, by the group's id (chromedriver's PID).
        let driver =
            std::os::unix::process::CommandExt::process_group(&mut Command::new(chromedriver), 0)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
        super::wait_listening(port, "chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), "chrome".into());
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                // As root, chromium runs only without its sandbox. The network switches keep
                // it from reaching out to Google's services (there is no network here).
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1280,900", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }),
        );
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.enforce_http(true);
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromium starts within 60 s")
        .expect("a WebDriver session");
        Browser {
            driver,
            client,
            _profile: profile,
            base: base.to_string(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The path of the page shown now.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        path
    }

    /// The element `css` on the page shown now; a test fails naming the page without it.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => {
                let path = self.path().await;
                let source = self.source().await;
                panic!("no element {css} on {path}: {e}\n{source}")
            }
        }
    }

    /// Types `text` into the field `css` (clearing it first).
    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    /// Clicks a link or a form's button and waits until the next page has replaced this one
    /// (every click on this website navigates: there is no JavaScript).
    pub async fn click(&self, css: &str) {
        let page = self.find("html").await;
        self.find(css).await.click().await.unwrap();
        let started = std::time::Instant::now();
        // The old page's root goes stale once the new page is there.
        while page.tag_name().await.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "clicking {css} on {} led nowhere within 15 s",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.find("body").await;
    }

    /// On the password page: replaces `current` with `new`; the problem the page shows, if it
    /// refused. The browser's own check of the length (`minlength`) is taken off first, so
    /// that what is tested is the server's rule.
    pub async fn change_password(&self, current: &str, new: &str) -> Option<String> {
        self.fill("#current", current).await;
        self.fill("#new", new).await;
        self.fill("#confirm", new).await;
        self.client
            .execute(
                "document.getElementById('new').removeAttribute('minlength')",
                vec![],
            )
            .await
            .unwrap();
        self.click("#change").await;
        if self.path().await != "/password" {
            return None;
        }
        Some(self.text("#problem").await)
    }

    /// Chooses a file for the file input `css`.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let field = self.find(css).await;
        field.send_keys(&file.display().to_string()).await.unwrap();
    }

    /// The visible text of the element `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// The page's whole HTML source.
    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    /// Saves a picture of the page as NAME.png (see the module's comment for where).
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut dirs = vec![root.join("target/web-screenshots")];
        if std::env::var("CJSM_WEB_SCREENSHOTS").as_deref() == Ok("update") {
            dirs.push(root.join("docs/web"));
        }
        for dir in dirs {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
        }
    }

    /// Ends the WebDriver session (chromium exits); chromedriver is stopped on drop.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Ok(group) = libc::pid_t::try_from(self.driver.id()) {
            // SAFETY: kill(2) on the process group we made for chromedriver (its PID).
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

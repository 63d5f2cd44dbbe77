//! The website as the tests use it: `cjsm-milter --config FILE web` as a child process on a
//! free loopback port, with a fresh store (the embedded one, or a Redis started for it),
//! stopped by PID; and an HTTP client that keeps cookies, for the tests that post forms
//! themselves (forged requests, missing tokens) rather than through the browser.

use super::cli::{CliOutput, run_cli};
use super::redis::RedisServer;
use bytes::Bytes;
use cjsm_milter::store::{self, Directory};
use http_body_util::{BodyExt as _, Full};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Which store the website runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Redis,
}

pub struct WebSite {
    child: Child,
    log: Arc<Mutex<String>>,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub metrics_port: u16,
    pub backend: Backend,
    redis: Option<RedisServer>,
}

impl WebSite {
    pub fn start(backend: Backend) -> WebSite {
        WebSite::start_with(backend, "")
    }

    /// The website with `extra` appended to its config (more TOML tables).
    pub fn start_with(backend: Backend, extra: &str) -> WebSite {
        let dir = tempfile::tempdir().unwrap();
        let redis = (backend == Backend::Redis).then(RedisServer::start);
        let store = match &redis {
            None => format!("[store]\npath = \"{}/store\"\n", dir.path().display()),
            Some(redis) => format!(
                "[store]\nbackend = \"redis\"\nurl = \"{}\"\nkey_prefix = \"web\"\n",
                redis.url()
            ),
        };
        let port = super::free_port();
        let metrics_port = super::free_port();
        let config = dir.path().join("cjsm.toml");
        std::fs::write(
            &config,
            format!(
                "[milter]\nallow_root = true\n[metrics]\nlisten = \"\"\n{store}\
                 [web]\nlisten = \"127.0.0.1:{port}\"\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n{extra}"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cjsm-milter"))
            .arg("--config")
            .arg(&config)
            .arg("web")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cjsm-milter web starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let site = WebSite {
            child,
            log,
            config,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            metrics_port,
            backend,
            redis,
        };
        // It logs this once its store is open (it binds its address before): a command run on
        // the same store from here on finds it made.
        let started = std::time::Instant::now();
        while !site.log().contains("website listening") {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the website did not start on {port}; log:\n{}",
                site.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        site
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `cjsm-milter --config (the website's) ARGS…` on the same store.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        run_cli(Some(&self.config), b"", args)
    }

    /// A hub operator's account, made on the command line; its one-time password.
    pub fn add_operator(&self, address: &str) -> String {
        let out = self.cli(&["web", "add-operator", address]).success();
        out.stdout.trim().to_string()
    }

    /// An active organisation made with the directory commands, with `admins` named in it.
    pub fn onboard(&self, id: &str, name: &str, domain: &str, connection: &str, admins: &[&str]) {
        let mut apply = vec![
            "directory",
            "org",
            "apply",
            "--id",
            id,
            "--name",
            name,
            "--domain",
            domain,
            "--connection",
            connection,
        ];
        for admin in admins {
            apply.extend(["--admin", admin]);
        }
        self.cli(&apply).success();
        for step in ["approve", "sign-terms", "activate"] {
            self.cli(&["directory", "org", step, id]).success();
        }
    }

    /// The website's store, opened as the admin commands open it.
    pub async fn store(&self) -> Arc<dyn Directory> {
        let config = cjsm_milter::config::Config::load(&self.config).unwrap();
        store::open(&config.store, store::Access::ReadWrite)
            .await
            .unwrap()
    }

    /// An account made directly in the store (as the pages that create them do); its
    /// one-time password.
    pub async fn create_account(
        &self,
        login: &str,
        role: cjsm_milter::web::accounts::Role,
        org: Option<&str>,
    ) -> String {
        let store = self.store().await;
        cjsm_milter::web::accounts::create(
            store.as_ref(),
            login,
            role,
            org,
            cjsm_milter::clock::now_unix(),
        )
        .await
        .unwrap()
        .expect("a new account")
    }

    /// The website's /metrics.
    pub fn metrics(&self) -> String {
        let (status, body) = super::daemon::http_get(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.metrics_port)),
            "/metrics",
        );
        assert_eq!(status, 200, "{body}");
        body
    }

    /// The newest audit entries (newest first), as JSON values.
    pub async fn audit(&self, limit: usize) -> Vec<serde_json::Value> {
        let store = self.store().await;
        store
            .audit(limit)
            .await
            .unwrap()
            .into_iter()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect()
    }

    pub fn http(&self) -> Http {
        Http::new(&self.base)
    }
}

impl Drop for WebSite {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        drop(self.redis.take());
    }
}

/// One answer of the website.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Page {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Where a redirect points.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }

    /// The form token on the page.
    pub fn csrf(&self) -> String {
        csrf_of(&self.body).unwrap_or_else(|| panic!("no csrf field on the page:\n{}", self.body))
    }

    /// The text of the element with this id (its inner HTML, trimmed), if there is one.
    pub fn element(&self, id: &str) -> Option<String> {
        let start = self.body.find(&format!("id=\"{id}\""))?;
        let open_end = self.body[start..].find('>')? + start + 1;
        let close = self.body[open_end..].find("</")? + open_end;
        Some(self.body[open_end..close].trim().to_string())
    }
}

/// The value of the first `name="csrf"` field of an HTML page.
pub fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    let end = html[at..].find('"')? + at;
    Some(html[at..end].to_string())
}

/// An HTTP client for the website that keeps its cookies, like a browser (one person).
pub struct Http {
    base: String,
    cookies: Mutex<BTreeMap<String, String>>,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
    /// Sent as `X-Forwarded-For` (for a website behind a proxy).
    pub forwarded_for: Option<String>,
}

impl Http {
    pub fn new(base: &str) -> Http {
        Http {
            base: base.to_string(),
            cookies: Mutex::new(BTreeMap::new()),
            client: hyper_util::client::legacy::Client::builder(
                hyper_util::rt::TokioExecutor::new(),
            )
            .build_http(),
            forwarded_for: None,
        }
    }

    /// The cookie jar's value of a cookie.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .unwrap()
            .insert(name.to_string(), value.to_string());
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Page {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        let cookies = self
            .cookies
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        if !cookies.is_empty() {
            request = request.header("cookie", cookies);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        if let Some(forwarded) = &self.forwarded_for {
            request = request.header("x-forwarded-for", forwarded);
        }
        let response = tokio::time::timeout(
            Duration::from_secs(30),
            self.client
                .request(request.body(Full::new(Bytes::from(body))).unwrap()),
        )
        .await
        .expect("the website answers within 30 s")
        .expect("the website answers");
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        for (name, value) in &headers {
            if name == "set-cookie" {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((key, val)) = pair.split_once('=') {
                    let mut jar = self.cookies.lock().unwrap();
                    if val.is_empty() || value.contains("Max-Age=0") {
                        jar.remove(key);
                    } else {
                        jar.insert(key.to_string(), val.to_string());
                    }
                }
            }
        }
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        self.request("GET", path, None, Vec::new()).await
    }

    /// Posts a form as given (add the `csrf` field yourself, or leave it out on purpose).
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.request(
            "POST",
            path,
            Some("application/x-www-form-urlencoded"),
            body.into_bytes(),
        )
        .await
    }

    /// Posts a form with the token of the page at `form_page` (GET first), as a browser
    /// would.
    pub async fn submit(&self, form_page: &str, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.get(form_page).await.csrf();
        let mut all = vec![("csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }

    /// A `multipart/form-data` post: the text fields, then one file.
    pub async fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &[u8]),
    ) -> Page {
        let boundary = "----cjsm-test-boundary-7d1e0f";
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        let (name, filename, content) = file;
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.request(
            "POST",
            path,
            Some(&format!("multipart/form-data; boundary={boundary}")),
            body,
        )
        .await
    }

    /// Posts `fields` to each of `paths` without a form token and with a wrong one, and
    /// asserts each is refused 403 (nothing in the form may be acted on).
    pub async fn assert_forms_need_their_token(&self, paths: &[&str], fields: &[(&str, &str)]) {
        let wrong = "f".repeat(64);
        for path in paths {
            for token in [None, Some(wrong.as_str())] {
                let mut all = fields.to_vec();
                if let Some(token) = token {
                    all.push(("csrf", token));
                }
                let page = self.post(path, &all).await;
                assert_eq!(page.status, 403, "{path} with {token:?}: {}", page.body);
            }
        }
    }

    /// Signs in; the answer to the sign-in form.
    pub async fn sign_in(&self, login: &str, password: &str) -> Page {
        self.submit(
            "/sign-in",
            "/sign-in",
            &[("login", login), ("password", password)],
        )
        .await
    }

    /// Signs in with a one-time password and replaces it with `new`, as a first sign-in must.
    pub async fn first_sign_in(&self, login: &str, one_time: &str, new: &str) {
        let page = self.sign_in(login, one_time).await;
        assert_eq!(page.status, 303, "sign-in of {login}: {}", page.body);
        assert_eq!(page.location(), Some("/password"));
        self.first_sign_in_continue(one_time, new).await;
    }

    /// Signed in with a one-time password: replaces it with `new`.
    pub async fn first_sign_in_continue(&self, one_time: &str, new: &str) {
        let page = self
            .submit(
                "/password",
                "/password",
                &[("current", one_time), ("new", new), ("confirm", new)],
            )
            .await;
        assert_eq!(page.status, 303, "password change: {}", page.body);
    }
}

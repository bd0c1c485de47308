//! Reading a Svix server through its v1 API (the API Herald serves too):
//! lists paged with `?limit=&iterator=` and answered `{data, iterator,
//! done}`, an endpoint's headers and its signing secret.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::import_svix::ImportError;

/// The largest page Svix serves.
const PAGE: &str = "250";
/// Busy answers (429, 502–504) are tried again this many times.
const RETRIES: u32 = 4;
const LONGEST_WAIT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error answer is quoted.
const QUOTED: usize = 300;

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SvixApp {
    pub id: String,
    pub uid: Option<String>,
    pub name: String,
    pub rate_limit: Option<i64>,
    /// The older name of `rateLimit`.
    pub throttle_rate: Option<i64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SvixEventType {
    pub name: String,
    pub description: Option<String>,
    pub archived: Option<bool>,
    pub deprecated: Option<bool>,
    pub schemas: Option<serde_json::Value>,
    pub group_name: Option<String>,
    pub feature_flags: Option<Vec<String>>,
    /// The older, single form of `featureFlags`.
    pub feature_flag: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SvixEndpoint {
    pub id: String,
    pub uid: Option<String>,
    pub url: String,
    pub description: Option<String>,
    pub filter_types: Option<Vec<String>>,
    pub channels: Option<Vec<String>>,
    pub disabled: Option<bool>,
    pub rate_limit: Option<i64>,
    pub throttle_rate: Option<i64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// An endpoint's custom headers: credentials (`sensitive`) come by name only.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SvixHeaders {
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub sensitive: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct SvixSecret {
    key: String,
}

#[derive(Debug, Deserialize)]
struct ListPage<T> {
    data: Vec<T>,
    iterator: Option<String>,
    #[serde(default)]
    done: bool,
}

/// A Svix server and the token that reads it.
pub struct Svix {
    http: reqwest::Client,
    base: url::Url,
    token: String,
}

impl Svix {
    pub fn new(base: &str, token: &str) -> Result<Self, ImportError> {
        let bad = |reason: &str| ImportError::BadUrl {
            url: base.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parsed = url::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.cannot_be_a_base() {
            return Err(bad("it must be an http:// or https:// address"));
        }
        // The server's address is wanted; one given with the API's prefix works too.
        let path = parsed.path().trim_end_matches('/');
        if let Some(server) = path.strip_suffix("/api/v1") {
            let server = server.to_owned();
            parsed.set_path(&server);
        }
        if token.trim().is_empty() {
            return Err(ImportError::NoToken);
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("herald-import/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImportError::Unreachable {
                url: base.to_owned(),
                reason: chain(&e),
            })?;
        Ok(Self {
            http,
            base: parsed,
            token: token.trim().to_owned(),
        })
    }

    /// Every application.
    pub async fn apps(&self) -> Result<Vec<SvixApp>, ImportError> {
        self.list(&["app"], &[]).await
    }

    /// Every event type, archived ones and schemas included.
    pub async fn event_types(&self) -> Result<Vec<SvixEventType>, ImportError> {
        self.list(
            &["event-type"],
            &[("with_content", "true"), ("include_archived", "true")],
        )
        .await
    }

    pub async fn endpoints(&self, app: &str) -> Result<Vec<SvixEndpoint>, ImportError> {
        self.list(&["app", app, "endpoint"], &[]).await
    }

    pub async fn headers(&self, app: &str, endpoint: &str) -> Result<SvixHeaders, ImportError> {
        self.get(&["app", app, "endpoint", endpoint, "headers"], &[]).await
    }

    /// The endpoint's current signing secret (`whsec_…`).
    pub async fn secret(&self, app: &str, endpoint: &str) -> Result<String, ImportError> {
        let secret: SvixSecret = self.get(&["app", app, "endpoint", endpoint, "secret"], &[]).await?;
        Ok(secret.key)
    }

    /// Follows `iterator` until `done`.
    async fn list<T: DeserializeOwned>(&self, path: &[&str], query: &[(&str, &str)]) -> Result<Vec<T>, ImportError> {
        let mut all = Vec::new();
        let mut iterator: Option<String> = None;
        loop {
            let mut params: Vec<(&str, &str)> = vec![("limit", PAGE)];
            params.extend_from_slice(query);
            if let Some(it) = &iterator {
                params.push(("iterator", it.as_str()));
            }
            let page: ListPage<T> = self.get(path, &params).await?;
            let empty = page.data.is_empty();
            all.extend(page.data);
            match page.iterator {
                // An iterator that does not move would page forever.
                Some(next) if !page.done && !empty && iterator.as_ref() != Some(&next) => iterator = Some(next),
                _ => return Ok(all),
            }
        }
    }

    fn url(&self, path: &[&str], query: &[(&str, &str)]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["api", "v1"]).extend(path);
        }
        url.set_query(None);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// One GET, tried again while the server is busy.
    async fn get<T: DeserializeOwned>(&self, path: &[&str], query: &[(&str, &str)]) -> Result<T, ImportError> {
        let url = self.url(path, query);
        let shown = url.as_str().to_owned();
        let mut tries = 0;
        loop {
            let answer = self
                .http
                .get(url.clone())
                .bearer_auth(&self.token)
                .send()
                .await
                .map_err(|e| ImportError::Unreachable {
                    url: shown.clone(),
                    reason: chain(&e.without_url()),
                })?;
            let status = answer.status();
            if busy(status) && tries < RETRIES {
                tries += 1;
                tokio::time::sleep(wait_before_retry(&answer, tries)).await;
                continue;
            }
            let body = answer.bytes().await.map_err(|e| ImportError::Unreachable {
                url: shown.clone(),
                reason: chain(&e.without_url()),
            })?;
            if status == StatusCode::UNAUTHORIZED {
                return Err(ImportError::Unauthorized { url: shown });
            }
            if !status.is_success() {
                return Err(ImportError::Status {
                    url: shown,
                    status: status.as_u16(),
                    body: quote(&body),
                });
            }
            return serde_json::from_slice(&body).map_err(|e| ImportError::Unreadable {
                url: shown,
                reason: e.to_string(),
            });
        }
    }
}

fn busy(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// `Retry-After` seconds when given, else 1 s, 2 s, 4 s, …; never over half a minute.
fn wait_before_retry(answer: &reqwest::Response, tries: u32) -> Duration {
    let asked = answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    asked
        .unwrap_or_else(|| Duration::from_secs(1 << (tries - 1).min(5)))
        .min(LONGEST_WAIT)
}

/// The start of an error answer, on one line.
fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None if line.is_empty() => "(no body)".to_owned(),
        None => line,
    }
}

/// An error with its causes: reqwest's own message alone rarely says
/// "connection refused".
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_api_v1_of_the_given_base() {
        let svix = Svix::new("http://svix.internal:8071/", "t").expect("valid");
        let url = svix.url(
            &["app", "app_2Xz", "endpoint"],
            &[("limit", "250"), ("iterator", "ep_1")],
        );
        assert_eq!(
            url.as_str(),
            "http://svix.internal:8071/api/v1/app/app_2Xz/endpoint?limit=250&iterator=ep_1"
        );
        let behind_a_prefix = Svix::new("https://gw.example.com/svix", "t").expect("valid");
        assert_eq!(
            behind_a_prefix.url(&["app"], &[]).as_str(),
            "https://gw.example.com/svix/api/v1/app"
        );
        let with_the_api_prefix = Svix::new("https://svix.example.com/api/v1/", "t").expect("valid");
        assert_eq!(
            with_the_api_prefix.url(&["app"], &[]).as_str(),
            "https://svix.example.com/api/v1/app"
        );
    }

    #[test]
    fn unusable_urls_and_empty_tokens_are_refused() {
        assert!(matches!(
            Svix::new("svix.internal", "t"),
            Err(ImportError::BadUrl { .. })
        ));
        assert!(matches!(
            Svix::new("ftp://svix.internal", "t"),
            Err(ImportError::BadUrl { .. })
        ));
        assert!(matches!(
            Svix::new("http://svix.internal", " "),
            Err(ImportError::NoToken)
        ));
    }

    #[test]
    fn error_answers_are_quoted_short_and_on_one_line() {
        assert_eq!(quote(b"{\"code\":\n \"not_found\"}"), "{\"code\": \"not_found\"}");
        assert_eq!(quote(b""), "(no body)");
        assert!(quote("x".repeat(1000).as_bytes()).ends_with('…'));
    }
}

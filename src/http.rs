// SPDX-License-Identifier: Apache-2.0
//! The one HTTP path to the KBS: TLS policy, timeouts, a response size cap
//! enforced while reading, and retries of transient failures under one
//! overall deadline.
//!
//! Retried: connection failures (refused, reset, dropped mid-body), timeouts,
//! 5xx, 408 and 429 (waiting as `Retry-After` says, within the deadline).
//! Not retried: TLS failures (a wrong CA does not heal) and every other
//! status, which the caller interprets (kbs-protocol §6).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use reqwest::{header, Method, StatusCode, Url};
use zeroize::Zeroizing;

use crate::retry::{parse_retry_after, Backoff};

/// The largest response accepted. The KBS takes uploads of at most 2 MiB by
/// default; as a JWE in base64 that is under 3 MiB.
pub const BODY_CAP: usize = 4 << 20;

/// Test seam: overrides the initial and maximum backoff (milliseconds).
const BACKOFF_ENV: &str = "CVM_ATTEST_TEST_BACKOFF_MS";

pub struct TransportConfig {
    pub url: String,
    pub ca: Option<PathBuf>,
    pub insecure_http: bool,
    pub deadline: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

/// Told about every retry: the message and the wait.
type Observer = Box<dyn Fn(&str, Duration)>;

pub struct Transport {
    client: reqwest::Client,
    base: Url,
    backoff: Backoff,
    deadline: Instant,
    budget: Duration,
    request_timeout: Duration,
    /// The KBS CA is pinned (else the system roots): for TLS messages.
    pinned_ca: bool,
    /// Told about every retry (message, wait) — `run` forwards it to systemd.
    observer: Option<Observer>,
}

/// A complete response whose status the caller interprets.
pub struct Reply {
    pub status: StatusCode,
    pub body: Zeroizing<Vec<u8>>,
    pub session_cookie: Option<Zeroizing<String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("could not {what} at {url} within the {} deadline after {attempts} attempt(s): {cause}", seconds(*deadline))]
    GaveUp {
        what: &'static str,
        url: String,
        attempts: u32,
        deadline: Duration,
        cause: String,
        /// The wait the server asked for with `Retry-After`, if it did.
        retry_after: Option<Duration>,
    },
    #[error("TLS with the KBS at {url} failed: {cause}")]
    Tls { url: String, cause: String },
    #[error("the KBS at {url} sent more than {cap} bytes in reply to {what}: refused")]
    TooLarge {
        what: &'static str,
        url: String,
        cap: usize,
    },
}

impl TransportError {
    /// Whether asking the same server again cannot help: its certificate
    /// does not verify, or its answer is over the size cap.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TransportError::Tls { .. } | TransportError::TooLarge { .. }
        )
    }

    /// How long the server asked to be left alone, when it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            TransportError::GaveUp { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The retry backoff: 0.5 s doubling to 10 s, or the test seam's fixed delay.
pub fn backoff() -> Backoff {
    match std::env::var(BACKOFF_ENV).ok().and_then(|v| v.parse().ok()) {
        Some(ms) => Backoff {
            initial: Duration::from_millis(ms),
            max: Duration::from_millis(ms),
        },
        None => Backoff::default(),
    }
}

/// `2s`, `1.5s`: whole seconds without decimals.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if (s - s.round()).abs() < 0.05 {
        format!("{}s", s.round())
    } else {
        format!("{s:.1}s")
    }
}

fn client_builder(connect_timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .use_rustls_tls()
        .user_agent(concat!("cvm-attest/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
}

fn load_ca(path: &Path) -> Result<Vec<reqwest::Certificate>> {
    let pem = crate::input::read(path, crate::input::CA_CAP)
        .with_context(|| format!("read KBS CA file {}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("parse KBS CA file {} as PEM certificates", path.display()))?;
    if certs.is_empty() {
        bail!("KBS CA file {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

impl Transport {
    /// The transport to a KBS: URL checked, TLS policy applied.
    pub fn new(cfg: &TransportConfig) -> Result<Transport> {
        let base = crate::kbs_url::parse(&cfg.url, cfg.insecure_http)?;
        let mut builder = client_builder(cfg.connect_timeout).https_only(!cfg.insecure_http);
        // The system roots cost a directory scan and ~150 certificate parses
        // per run: load them only for https without a pinned CA.
        if cfg.ca.is_some() || base.scheme() == "http" {
            builder = builder.tls_built_in_root_certs(false);
        }
        if let Some(path) = &cfg.ca {
            for cert in load_ca(path)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().context("set up the HTTPS client")?;
        Ok(Transport::with_client(
            client,
            base,
            cfg.deadline,
            cfg.request_timeout,
            cfg.ca.is_some(),
        ))
    }

    /// The transport to Azure's Instance Metadata Service: plain http to a
    /// link-local address by design, every request with `Metadata: true`.
    pub fn imds(url: &str, deadline: Duration, request_timeout: Duration) -> Result<Transport> {
        let base = crate::kbs_url::parse_url("IMDS", url)?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            bail!("IMDS URL '{url}' is not an http(s) URL with a host");
        }
        let mut headers = header::HeaderMap::new();
        headers.insert("metadata", header::HeaderValue::from_static("true"));
        let client = client_builder(request_timeout)
            .tls_built_in_root_certs(false)
            .default_headers(headers)
            .build()
            .context("set up the IMDS client")?;
        Ok(Transport::with_client(
            client,
            base,
            deadline,
            request_timeout,
            false,
        ))
    }

    fn with_client(
        client: reqwest::Client,
        base: Url,
        deadline: Duration,
        request_timeout: Duration,
        pinned_ca: bool,
    ) -> Transport {
        Transport {
            client,
            base,
            backoff: backoff(),
            deadline: Instant::now() + deadline,
            budget: deadline,
            request_timeout,
            pinned_ca,
            observer: None,
        }
    }

    /// Calls `f` with a one-line message and the wait before every retry.
    pub fn observe(&mut self, f: impl Fn(&str, Duration) + 'static) {
        self.observer = Some(Box::new(f));
    }

    /// The base URL, for messages.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// Sends one request, retrying transient failures, and reads the whole
    /// body (at most `BODY_CAP` bytes).
    pub async fn send(
        &self,
        what: &'static str,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        cookie: Option<&str>,
    ) -> Result<Reply, TransportError> {
        let url = self.endpoint(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (cause, after) = match self.attempt(what, &method, &url, body, cookie).await {
                Ok(Attempt::Done(reply)) => return Ok(reply),
                Ok(Attempt::Retry { cause, after }) => (cause, after),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::Transient(cause)) => (cause, None),
            };
            // Retry-After is a floor: "0" or a date in the past does not
            // make the retries back to back.
            let backoff = self.backoff.delay(attempt - 1);
            let wait = after.map_or(backoff, |a| a.max(backoff));
            let remaining = self.deadline.saturating_duration_since(Instant::now());
            if wait >= remaining {
                return Err(TransportError::GaveUp {
                    what,
                    url,
                    attempts: attempt,
                    deadline: self.budget,
                    cause,
                    retry_after: after,
                });
            }
            let message = format!(
                "{what}: attempt {attempt} failed ({cause}); retrying in {} ms",
                wait.as_millis()
            );
            log::warn!("{message}");
            if let Some(observe) = &self.observer {
                observe(&message, wait);
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Waits the backoff before trying again something the KBS refused for
    /// now (`attempt` counts from 0), telling the observer; false, without
    /// waiting, when the deadline leaves no time for it.
    pub async fn pause(&self, attempt: u32, cause: &str) -> bool {
        let wait = self.backoff.delay(attempt);
        if wait >= self.deadline.saturating_duration_since(Instant::now()) {
            return false;
        }
        let message = format!("{cause}; trying again in {} ms", wait.as_millis());
        log::warn!("{message}");
        if let Some(observe) = &self.observer {
            observe(&message, wait);
        }
        tokio::time::sleep(wait).await;
        true
    }

    async fn attempt(
        &self,
        what: &'static str,
        method: &Method,
        url: &str,
        body: Option<&[u8]>,
        cookie: Option<&str>,
    ) -> Result<Attempt, Failure> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        let mut req = self
            .client
            .request(method.clone(), url)
            .timeout(self.request_timeout.min(remaining));
        if let Some(body) = body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        if let Some(cookie) = cookie {
            req = req.header(header::COOKIE, format!("kbs-session-id={cookie}"));
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| classify(&e, url, self.pinned_ca))?;
        let status = resp.status();
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            let after = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, SystemTime::now()));
            return Ok(Attempt::Retry {
                cause: format!("HTTP {status}"),
                after,
            });
        }
        let session_cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(session_id)
            .map(|v| Zeroizing::new(v.to_owned()));
        let too_large = || {
            Failure::Final(TransportError::TooLarge {
                what,
                url: url.to_owned(),
                cap: BODY_CAP,
            })
        };
        let announced = resp.content_length().unwrap_or(0);
        if announced > BODY_CAP as u64 {
            return Err(too_large());
        }
        let mut buf = Zeroizing::new(Vec::with_capacity(announced as usize));
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| classify(&e, url, self.pinned_ca))?
        {
            if buf.len() + chunk.len() > BODY_CAP {
                return Err(too_large());
            }
            append(&mut buf, &chunk);
        }
        Ok(Attempt::Done(Reply {
            status,
            body: buf,
            session_cookie,
        }))
    }
}

/// Appends to a body that may hold the token: when it must grow, into a new
/// buffer, so that the old one is wiped (a reallocation would free it as is).
fn append(buf: &mut Zeroizing<Vec<u8>>, chunk: &[u8]) {
    let needed = buf.len() + chunk.len();
    if needed > buf.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * buf.capacity())));
        bigger.extend_from_slice(buf);
        *buf = bigger;
    }
    buf.extend_from_slice(chunk);
}

enum Attempt {
    Done(Reply),
    Retry {
        cause: String,
        after: Option<Duration>,
    },
}

enum Failure {
    Final(TransportError),
    Transient(String),
}

/// The `kbs-session-id` value of one `Set-Cookie` header.
fn session_id(set_cookie: &str) -> Option<&str> {
    let pair = set_cookie.split(';').next()?.trim();
    let value = pair.strip_prefix("kbs-session-id=")?;
    (!value.is_empty()).then_some(value)
}

/// TLS failures are final; every other transport error is worth a retry.
fn classify(err: &reqwest::Error, url: &str, pinned_ca: bool) -> Failure {
    match crate::tls::find(err) {
        Some(tls) => Failure::Final(TransportError::Tls {
            url: url.to_owned(),
            cause: crate::tls::cause(tls, pinned_ca),
        }),
        None => Failure::Transient(chain(err)),
    }
}

/// One line with every cause, without reqwest's URL repetition.
fn chain(err: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.contains(&text) {
            parts.push(text);
        }
        source = e.source();
    }
    if parts.is_empty() {
        let kind = if err.is_timeout() {
            "timed out"
        } else {
            "request failed"
        };
        parts.push(kind.to_owned());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::{append, session_id};

    #[test]
    fn a_growing_body_keeps_every_byte() {
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        let mut expected = Vec::new();
        for i in 0..200u8 {
            let chunk = vec![i; usize::from(i) % 37 + 1];
            let before = buf.capacity();
            append(&mut buf, &chunk);
            expected.extend_from_slice(&chunk);
            assert!(buf.capacity() >= before);
        }
        assert_eq!(*buf, expected);
    }

    #[test]
    fn cookie_extraction() {
        assert_eq!(
            session_id("kbs-session-id=887492b5f05741c995586176f9b87325; Expires=Fri, 27 Nov 2026 23:17:45 GMT"),
            Some("887492b5f05741c995586176f9b87325")
        );
        assert_eq!(session_id("other=1; kbs-session-id=x"), None);
        assert_eq!(session_id("kbs-session-id=; Expires=x"), None);
    }
}

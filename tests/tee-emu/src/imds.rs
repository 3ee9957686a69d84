// SPDX-License-Identifier: Apache-2.0
//! A fake Azure Instance Metadata Service on loopback, with the two
//! endpoints CVM attestation uses (kbs-protocol.md §4.4, §4.5; devices.md §4;
//! kinvolk az-snp-vtpm `imds.rs`, az-tdx-vtpm `imds.rs`):
//!
//! * `GET /metadata/THIM/amd/certification`, header `Metadata: true` (else
//!   400) → `{"vcekCert": PEM, "certificateChain": PEM of ASK then ARK}`, the
//!   test PKI of [`crate::snp`].
//! * `POST /acc/tdquote`, headers `Metadata: true` (else 400) and
//!   `Content-Type: application/json` exactly (else 415), body
//!   `{"report": base64url-nopad TDREPORT}` → `{"quote": base64url-nopad}`, the
//!   [`crate::tdx::quote`] of the TDREPORT's REPORTDATA (offset 128..192).
//!
//! HTTP/1.1 with one request per connection (`Connection: close`). Knobs
//! apply to the next requests, to any endpoint: [`FakeImds::fail_next`],
//! [`FakeImds::delay_next`], [`FakeImds::garble_next`]; every request is
//! logged ([`FakeImds::requests`]).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, Context as _, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::hcl::{HclKind, TDREPORT_DATA_OFFSET, TDREPORT_LEN};
use crate::{snp, tdx};

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsRequest {
    pub method: String,
    pub path: String,
    /// Header names lowercased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ImdsRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Knobs {
    fail: (usize, u16),
    delay: (usize, Duration),
    garble: usize,
    log: Vec<ImdsRequest>,
}

struct Shared {
    kind: HclKind,
    stop: AtomicBool,
    knobs: Mutex<Knobs>,
}

/// A running fake IMDS.
pub struct FakeImds {
    port: u16,
    shared: Arc<Shared>,
}

/// PEM of one DER certificate.
pub fn pem(der: &[u8]) -> String {
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in STANDARD.encode(der).as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

impl FakeImds {
    /// Serves on a free loopback port. `kind` is the CVM flavour it belongs to
    /// (both endpoints answer either way, as on Azure).
    pub fn start(kind: HclKind) -> Result<FakeImds> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("bind the fake IMDS")?;
        let port = listener.local_addr().context("read the IMDS port")?.port();
        let shared = Arc::new(Shared {
            kind,
            stop: AtomicBool::new(false),
            knobs: Mutex::new(Knobs::default()),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fake-imds".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        let s = s.clone();
                        std::thread::spawn(move || {
                            let _ = s.handle(stream);
                        });
                    }
                }
            })
            .context("spawn the fake IMDS thread")?;
        Ok(FakeImds { port, shared })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn kind(&self) -> HclKind {
        self.shared.kind
    }

    /// The next `n` requests get `status` with a small JSON error body.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.knobs().fail = (n, status);
    }

    /// The next `n` requests are answered only after `delay`.
    pub fn delay_next(&self, n: usize, delay: Duration) {
        self.shared.knobs().delay = (n, delay);
    }

    /// The next `n` requests get 200 with a body that is not JSON.
    pub fn garble_next(&self, n: usize) {
        self.shared.knobs().garble = n;
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<ImdsRequest> {
        self.shared.knobs().log.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.knobs().log.clear();
    }
}

impl Drop for FakeImds {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port));
    }
}

fn read_request(stream: &TcpStream) -> Result<ImdsRequest> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .context("read the request line")?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).context("read a header")?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (name, value) = l.split_once(':').ok_or_else(|| anyhow!("bad header {l}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len.min(1 << 20)];
    reader.read_exact(&mut body).context("read the body")?;
    Ok(ImdsRequest {
        method,
        path,
        headers,
        body,
    })
}

fn error(status: u16, message: &str) -> (u16, String) {
    (status, json!({"error": message}).to_string())
}

impl Shared {
    fn knobs(&self) -> MutexGuard<'_, Knobs> {
        self.knobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, mut stream: TcpStream) -> Result<()> {
        let request = read_request(&stream)?;
        let (delay, fail, garble) = {
            let mut k = self.knobs();
            k.log.push(request.clone());
            let delay = take(&mut k.delay.0).then_some(k.delay.1);
            let fail = take(&mut k.fail.0).then_some(k.fail.1);
            (delay, fail, take(&mut k.garble))
        };
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let (status, body) = match (fail, garble) {
            (Some(status), _) => error(status, "injected failure"),
            (None, true) => (200, "<html>garbled".to_string()),
            (None, false) => route(&request),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            415 => "Unsupported Media Type",
            500 => "Internal Server Error",
            _ => "Status",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body.as_bytes())?;
        Ok(())
    }
}

/// Decrements a knob counter; whether it applied.
fn take(n: &mut usize) -> bool {
    let applies = *n > 0;
    *n = n.saturating_sub(1);
    applies
}

fn route(r: &ImdsRequest) -> (u16, String) {
    let path = r.path.split('?').next().unwrap_or_default();
    match (r.method.as_str(), path) {
        ("GET", "/metadata/THIM/amd/certification") => {
            if r.header("metadata") != Some("true") {
                return error(400, "Required metadata header not specified");
            }
            let chain = format!("{}{}", pem(snp::ASK_DER), pem(snp::ARK_DER));
            let body = json!({"vcekCert": pem(snp::VCEK_DER), "certificateChain": chain});
            (200, body.to_string())
        }
        ("POST", "/acc/tdquote") => {
            if r.header("metadata") != Some("true") {
                return error(400, "Required metadata header not specified");
            }
            if r.header("content-type") != Some("application/json") {
                return error(415, "Unsupported Media Type");
            }
            match td_quote(&r.body) {
                Ok(quote) => (200, json!({"quote": quote}).to_string()),
                Err(e) => error(400, &format!("{e:#}")),
            }
        }
        _ => error(404, "no such endpoint"),
    }
}

/// The base64url quote for a `{"report": …}` body.
fn td_quote(body: &[u8]) -> Result<String> {
    let v: Value = serde_json::from_slice(body).context("parse the request JSON")?;
    let report = v["report"].as_str().context("no report member")?;
    let report = URL_SAFE_NO_PAD
        .decode(report.trim_end_matches('='))
        .context("decode the TDREPORT")?;
    if report.len() != TDREPORT_LEN {
        return Err(anyhow!("the TDREPORT is {} bytes, not 1024", report.len()));
    }
    let mut data = [0u8; 64];
    data.copy_from_slice(&report[TDREPORT_DATA_OFFSET..TDREPORT_DATA_OFFSET + 64]);
    Ok(URL_SAFE_NO_PAD.encode(tdx::quote(&data)?))
}

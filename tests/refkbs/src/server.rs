// SPDX-License-Identifier: Apache-2.0
//! The HTTP server: accept loop (plain or TLS), hyper HTTP/1.1 connections
//! (HTTP/2 when TLS negotiates it),
//! routing (kbs-protocol.md §1.1), body limit, recording, statistics, fault
//! injection, and the refkbs-only control endpoints under `/refkbs/`.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use bytes::Bytes;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, CONTENT_LENGTH};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::fault::{Endpoint, Fault, FaultKind};
use crate::handshake;
use crate::problem::Problem;
use crate::reply::{Mode, Payload, Reply};
use crate::resource;
use crate::state::{Recorded, State};

/// Trustee's default `payload_request_size`: 2 MiB.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Serves connections from `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    state.log(&format!("accept: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        state.count_connection();
        let state = state.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection(stream, state, false).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                        connection(stream, state, h2).await
                    }
                    Err(e) => state.log(&format!("TLS handshake: {e}")),
                },
            }
        });
    }
}

async fn connection<I>(io: I, state: Arc<State>, h2: bool)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, request).await) }
    });
    // Errors here are mostly clients going away or the Drop fault; not worth a log line.
    if h2 {
        let _ = http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), service)
            .await;
    } else {
        let _ = http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .await;
    }
}

/// The endpoint class of a path, for faults and statistics.
fn endpoint_of(path: &str) -> Option<Endpoint> {
    let first = path.strip_prefix("/kbs/v0/")?.split('/').next()?;
    match first {
        "auth" => Some(Endpoint::Auth),
        "attest" => Some(Endpoint::Attest),
        "resource" => Some(Endpoint::Resource),
        _ => Some(Endpoint::Any),
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Payload> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    if path.starts_with("/refkbs/") {
        let body = read_body(body, &parts.headers).await.unwrap_or_default();
        return control(state, &parts.method, &path, &body).into_response();
    }
    let body = read_body(body, &parts.headers).await;
    state.record(Recorded {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| path.clone(), |pq| pq.as_str().to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(body.as_deref().unwrap_or_default()).into_owned(),
    });
    let endpoint = endpoint_of(&path);
    let reply = match body {
        Ok(body) => faulted(state, endpoint, &parts.method, &path, &parts.headers, &body).await,
        Err(reply) => reply,
    };
    let response = reply.into_response();
    let counted = if endpoint == Some(Endpoint::Any) {
        None
    } else {
        endpoint
    };
    state.count(counted, started.elapsed());
    response
}

/// Reads the whole body, or the reply to send instead (413 over the limit).
async fn read_body(body: Incoming, headers: &HeaderMap) -> Result<Bytes, Reply> {
    let too_large =
        || Reply::new(413, "A payload reached size limit.").header("content-type", "text/plain");
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    match Limited::new(body, BODY_LIMIT).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(Reply::new(400, "cannot read request body")),
    }
}

/// Applies the next matching fault around the normal handling.
async fn faulted(
    state: &State,
    endpoint: Option<Endpoint>,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let fault = endpoint.and_then(|e| state.take_fault(Some(e)));
    if let Some(kind) = &fault {
        state.log(&format!("fault {kind:?} on {method} {path}"));
    }
    match fault {
        None => route(state, method, path, headers, body, false).await,
        Some(FaultKind::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            route(state, method, path, headers, body, false).await
        }
        Some(FaultKind::Status { code, retry_after }) => {
            let reply = Reply::new(code, format!("refkbs fault: status {code}\n"))
                .header("content-type", "text/plain");
            match retry_after {
                Some(secs) => reply.header("retry-after", secs.to_string()),
                None => reply,
            }
        }
        Some(FaultKind::Drop) => Reply {
            mode: Mode::DropHalf,
            ..route(state, method, path, headers, body, false).await
        },
        Some(FaultKind::Truncate) => {
            let mut reply = route(state, method, path, headers, body, false).await;
            reply.body = reply.body.slice(..reply.body.len() / 2);
            reply
        }
        Some(FaultKind::Garble) => Reply::json(&b"\x00\xffrefkbs <garbled> not json"[..]),
        Some(FaultKind::Oversize(len)) => Reply {
            mode: Mode::Filler(len),
            ..Reply::json(Bytes::new())
        },
        Some(FaultKind::NonceMismatch) => route(state, method, path, headers, body, true).await,
        Some(FaultKind::PolicyEngineError) => crate::problem::Problem::PolicyEngine.reply(),
        Some(FaultKind::TokenVerifierError) => crate::problem::Problem::TokenVerifier.reply(),
        Some(FaultKind::InvalidRequestPath) => {
            crate::problem::Problem::InvalidRequestPath(path.to_owned()).reply()
        }
    }
}

/// Trustee routing: `/kbs/v0/{plugin}/...`, `auth`/`attest` only for POST.
async fn route(
    state: &State,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    nonce_mismatch: bool,
) -> Reply {
    if path == "/healthz" && method == Method::GET {
        return Reply::new(200, Bytes::new());
    }
    let Some(rest) = path.strip_prefix("/kbs/v0/") else {
        return Reply::new(404, Bytes::new());
    };
    let (plugin, tail) = rest.split_once('/').unwrap_or((rest, ""));
    match (method, plugin) {
        (&Method::POST, "auth") => handshake::auth(state, body, nonce_mismatch),
        (&Method::POST, "attest") => handshake::attest(state, headers, body),
        (&Method::GET, "resource") => resource::get(state, headers, tail),
        _ => Problem::PluginNotFound(plugin.to_string()).reply(),
    }
}

/// refkbs-only test controls (not Trustee API).
fn control(state: &State, method: &Method, path: &str, body: &[u8]) -> Reply {
    let ok = || Reply::new(200, Bytes::new());
    match (method, path) {
        (&Method::POST, "/refkbs/faults") => match parse_fault(body) {
            Ok(fault) => {
                state.push_fault(fault);
                ok()
            }
            Err(e) => Reply::new(400, format!("{e:#}\n")),
        },
        (&Method::POST, "/refkbs/expire-sessions") => {
            state.expire_sessions();
            ok()
        }
        (&Method::GET, "/refkbs/stats") => match serde_json::to_vec(&state.stats()) {
            Ok(body) => Reply::json(body),
            Err(e) => Reply::new(500, e.to_string()),
        },
        (&Method::POST, "/refkbs/stats/reset") => {
            state.reset_stats();
            ok()
        }
        _ => Reply::new(404, Bytes::new()),
    }
}

fn parse_fault(body: &[u8]) -> Result<Fault> {
    serde_json::from_slice(body).context("parse fault JSON")
}

#[cfg(test)]
mod tests {
    use super::{endpoint_of, Endpoint};

    #[test]
    fn endpoints() {
        assert_eq!(endpoint_of("/kbs/v0/auth"), Some(Endpoint::Auth));
        assert_eq!(
            endpoint_of("/kbs/v0/resource/a/b/c"),
            Some(Endpoint::Resource)
        );
        assert_eq!(endpoint_of("/kbs/v0/foo"), Some(Endpoint::Any));
        assert_eq!(endpoint_of("/healthz"), None);
    }
}

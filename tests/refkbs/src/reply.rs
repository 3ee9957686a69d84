// SPDX-License-Identifier: Apache-2.0
//! HTTP replies and the response body type, including the misbehaving bodies
//! used by the fault knobs (a connection dropped mid-body, an endless stream).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderName, HeaderValue, CONTENT_LENGTH};
use hyper::{Response, StatusCode};
use tokio::time::Sleep;

/// How the body of a [`Reply`] reaches the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The whole body with a matching `Content-Length`.
    Whole,
    /// `Content-Length` of the whole body, about half of it, then the connection is closed.
    DropHalf,
    /// No body of its own: a chunked stream of this many bytes of a JSON string.
    Filler(u64),
}

/// A response before it is handed to hyper.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    pub mode: Mode,
}

impl Reply {
    pub fn new(status: u16, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.into(),
            mode: Mode::Whole,
        }
    }

    /// A 200 `application/json` reply, as actix's `HttpResponse::Ok().json()`.
    pub fn json(body: impl Into<Bytes>) -> Reply {
        Reply::new(200, body).header("content-type", "application/json")
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub fn into_response(self) -> Response<Payload> {
        let payload = match self.mode {
            Mode::Whole => Payload::Whole(Some(self.body.clone())),
            Mode::DropHalf => {
                let half = self.body.slice(..self.body.len() / 2);
                Payload::Broken(Some(half), None)
            }
            Mode::Filler(len) => Payload::Filler { left: len, sent: 0 },
        };
        let mut response = Response::new(payload);
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(HeaderName::from_static(name), value);
            }
        }
        if self.mode == Mode::DropHalf {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len()));
        }
        response
    }
}

/// The response body handed to hyper.
#[derive(Debug)]
pub enum Payload {
    Whole(Option<Bytes>),
    /// Sends the bytes, waits so hyper flushes them, then fails (hyper closes the connection).
    Broken(Option<Bytes>, Option<Pin<Box<Sleep>>>),
    /// `"AAA…"`: a JSON string of `left + sent` bytes in total.
    Filler {
        left: u64,
        sent: u64,
    },
}

const FILLER_CHUNK: usize = 64 * 1024;
static FILLER: [u8; FILLER_CHUNK] = [b'A'; FILLER_CHUNK];

impl Body for Payload {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            Payload::Whole(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Payload::Broken(bytes, sleep) => {
                if let Some(b) = bytes.take() {
                    *sleep = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50))));
                    return Poll::Ready(Some(Ok(Frame::data(b))));
                }
                if let Some(timer) = sleep.as_mut() {
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "refkbs fault: connection dropped mid-body",
                ))))
            }
            Payload::Filler { left, sent } => {
                if *left == 0 {
                    return Poll::Ready(None);
                }
                let n = (*left).min(FILLER_CHUNK as u64) as usize;
                let mut chunk = FILLER[..n].to_vec();
                if *sent == 0 {
                    chunk[0] = b'"';
                }
                *left -= n as u64;
                *sent += n as u64;
                if *left == 0 {
                    chunk[n - 1] = b'"';
                }
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Payload::Whole(bytes) => bytes.is_none(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Payload::Whole(Some(b)) => SizeHint::with_exact(b.len() as u64),
            Payload::Whole(None) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

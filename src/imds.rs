// SPDX-License-Identifier: Apache-2.0
//! Azure Instance Metadata Service, the two calls Azure CVM evidence needs
//! (kbs-protocol §4.4, §4.5; azure-cvm-tooling `imds.rs`):
//! `GET /metadata/THIM/amd/certification` → the VCEK (and ASK/ARK) as PEM,
//! `POST /acc/tdquote` with `{"report": base64url(TDREPORT)}` → a TD quote.
//! Every request carries `Metadata: true`; the quote request's Content-Type
//! is exactly `application/json` (IMDS answers 415 to `; charset=utf-8`).
//! The base URL is configurable (default `http://169.254.169.254`), and the
//! shared transport retries connection failures, timeouts and 5xx.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use reqwest::{Method, StatusCode};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::http::{Reply, Transport, TransportError};
use crate::problem::describe_body;

pub const DEFAULT_URL: &str = "http://169.254.169.254";

pub struct Imds {
    transport: Transport,
}

#[derive(Deserialize)]
struct Thim {
    #[serde(rename = "vcekCert")]
    vcek_cert: String,
}

#[derive(Serialize)]
struct TdQuoteRequest {
    report: String,
}

#[derive(Deserialize)]
struct TdQuoteReply {
    quote: String,
}

/// IMDS is not the KBS: when it cannot be reached, evidence collection
/// failed (exit 1), and `run` must not take it for a KBS to give up on. The
/// message is kept, the type is not.
fn evidence_error(e: TransportError) -> anyhow::Error {
    anyhow!("{e}")
}

impl Imds {
    pub fn new(url: &str, deadline: Duration) -> Result<Imds> {
        let request_timeout = deadline.min(Duration::from_secs(10));
        Ok(Imds {
            transport: Transport::imds(url, deadline, request_timeout)?,
        })
    }

    fn check(&self, reply: Reply, what: &str) -> Result<Reply> {
        if reply.status != StatusCode::OK {
            bail!(
                "IMDS at {} answered HTTP {} to {what} with {}",
                self.transport.base(),
                reply.status,
                describe_body(&reply.body)
            );
        }
        Ok(reply)
    }

    /// The VCEK certificate (DER) from THIM.
    pub async fn vcek(&self) -> Result<Vec<u8>> {
        let what = "GET /metadata/THIM/amd/certification";
        let reply = self
            .transport
            .send(
                "fetch the VCEK from IMDS",
                Method::GET,
                "/metadata/THIM/amd/certification",
                None,
                None,
            )
            .await
            .map_err(evidence_error)?;
        let reply = self.check(reply, what)?;
        let thim: Thim = serde_json::from_slice(&reply.body).map_err(|_| {
            anyhow!(
                "IMDS sent a malformed reply to {what} ({})",
                describe_body(&reply.body)
            )
        })?;
        let der = CertificateDer::from_pem_slice(thim.vcek_cert.as_bytes())
            .map_err(|e| anyhow!("IMDS's vcekCert is not a PEM certificate ({e})"))?;
        Ok(der.as_ref().to_vec())
    }

    /// A TD quote for a TDREPORT.
    pub async fn td_quote(&self, tdreport: &[u8]) -> Result<Vec<u8>> {
        let what = "POST /acc/tdquote";
        let body = serde_json::to_vec(&TdQuoteRequest {
            report: URL_SAFE_NO_PAD.encode(tdreport),
        })
        .context("serialize the TD quote request")?;
        let reply = self
            .transport
            .send(
                "fetch a TD quote from IMDS",
                Method::POST,
                "/acc/tdquote",
                Some(&body),
                None,
            )
            .await
            .map_err(evidence_error)?;
        let reply = self.check(reply, what)?;
        let parsed: TdQuoteReply = serde_json::from_slice(&reply.body).map_err(|_| {
            anyhow!(
                "IMDS sent a malformed reply to {what} ({})",
                describe_body(&reply.body)
            )
        })?;
        let trimmed = parsed.quote.trim_end_matches('=');
        URL_SAFE_NO_PAD
            .decode(trimmed)
            .or_else(|_| URL_SAFE.decode(&parsed.quote))
            .map_err(|_| anyhow!("IMDS's TD quote is not base64url"))
    }
}

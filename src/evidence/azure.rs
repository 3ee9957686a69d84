// SPDX-License-Identifier: Apache-2.0
//! Azure confidential VMs: `az-snp-vtpm` and `az-tdx-vtpm` evidence, version
//! 2 (kbs-protocol §3.4, §4.4, §4.5). The paravisor holds the hardware
//! report; the guest reaches it through the vTPM:
//!
//! 1. write the 48-byte binding digest to NV 0x01400002;
//! 2. read the HCL report from NV 0x01400001 until its var-data carries our
//!    digest as `user-data` (upstream sleeps a fixed 3 s instead; we poll,
//!    bounded by `--hcl-timeout`); its hardware report binds SHA-256(var-data);
//! 3. quote PCRs 0-23 (SHA-256) with the AK at 0x81000003, qualifying data
//!    = the 48-byte digest;
//! 4. SNP: the VCEK from IMDS THIM; TDX: the TD quote IMDS makes from the
//!    TDREPORT in the HCL report.
//!
//! Encodings: quote members hex (raw RSA signature), `hcl_report` and
//! `vcek`/`td_quote` base64url with padding, 24 PCRs.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::{engine::general_purpose::URL_SAFE, Engine};
use serde::Serialize;

use crate::binding::Binding;
use crate::imds::Imds;
use crate::report::hcl::{HclReport, HclReportType};
use crate::tpm::{AkSource, Tpm};

use super::tpm::hex;
use super::TeeOptions;

const HCL_REPORT_INDEX: u32 = 0x0140_0001;
const REPORT_DATA_INDEX: u32 = 0x0140_0002;
const AK_HANDLE: u32 = 0x8100_0003;
const EVIDENCE_VERSION: u32 = 2;

#[derive(Serialize)]
pub struct AzQuote {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

#[derive(Serialize)]
pub struct AzSnpEvidence {
    version: u32,
    tpm_quote: AzQuote,
    hcl_report: String,
    vcek: String,
}

#[derive(Serialize)]
pub struct AzTdxEvidence {
    version: u32,
    tpm_quote: AzQuote,
    hcl_report: String,
    td_quote: String,
}

/// What the vTPM gave: the refreshed HCL report and the quote.
struct Vtpm {
    hcl_bytes: Vec<u8>,
    hcl: HclReport,
    quote: AzQuote,
}

fn vtpm(binding: &Binding, options: &TeeOptions, want: HclReportType) -> Result<Vtpm> {
    let digest = binding.digest();
    let mut tpm = Tpm::open(&options.tcti)?;
    tpm.nv_write(REPORT_DATA_INDEX, digest)
        .context("hand the binding digest to the paravisor")?;
    let started = Instant::now();
    let mut wait = Duration::from_millis(20);
    let (hcl_bytes, hcl) = loop {
        let bytes = tpm
            .nv_read(HCL_REPORT_INDEX)
            .context("read the HCL report")?;
        let hcl = HclReport::parse(&bytes).context("parse the HCL report from NV 0x01400001")?;
        if carries(&hcl, digest) {
            break (bytes, hcl);
        }
        if started.elapsed() + wait > options.hcl_timeout {
            bail!(
                "the paravisor did not put our report data into the HCL report within {:?}: is this an Azure confidential VM with a current paravisor?",
                options.hcl_timeout
            );
        }
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_millis(500));
    };
    log::debug!(
        "HCL report refreshed after {} ms",
        started.elapsed().as_millis()
    );
    if hcl.report_type() != want {
        bail!(
            "the HCL report holds a {:?} report, not {want:?}",
            hcl.report_type()
        );
    }
    let quote = tpm.quote(AkSource::Persistent(AK_HANDLE), digest, false)?;
    let quote = AzQuote {
        signature: hex(&quote.raw_signature),
        message: hex(&quote.message),
        pcrs: quote.pcrs.iter().map(hex).collect(),
    };
    Ok(Vtpm {
        hcl_bytes,
        hcl,
        quote,
    })
}

/// Whether var-data's `user-data` (hex, zero-padded to 64 bytes) starts with `digest`.
fn carries(hcl: &HclReport, digest: &[u8]) -> bool {
    hcl.user_data()
        .is_some_and(|user_data| starts_with_hex(user_data, digest))
}

/// Compared as bytes: `user-data` comes from the paravisor and may hold
/// anything, where slicing a `str` at a byte offset would panic.
fn starts_with_hex(user_data: &str, digest: &[u8]) -> bool {
    let expected = hex(digest);
    user_data
        .as_bytes()
        .get(..expected.len())
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(expected.as_bytes()))
}

pub async fn snp(binding: &Binding, options: &TeeOptions) -> Result<AzSnpEvidence> {
    let v = vtpm(binding, options, HclReportType::Snp)?;
    let vcek = Imds::new(&options.imds, options.imds_deadline)?
        .vcek()
        .await?;
    Ok(AzSnpEvidence {
        version: EVIDENCE_VERSION,
        tpm_quote: v.quote,
        hcl_report: URL_SAFE.encode(&v.hcl_bytes),
        vcek: URL_SAFE.encode(vcek),
    })
}

pub async fn tdx(binding: &Binding, options: &TeeOptions) -> Result<AzTdxEvidence> {
    let v = vtpm(binding, options, HclReportType::Tdx)?;
    let td_quote = Imds::new(&options.imds, options.imds_deadline)?
        .td_quote(v.hcl.hw_report())
        .await?;
    Ok(AzTdxEvidence {
        version: EVIDENCE_VERSION,
        tpm_quote: v.quote,
        hcl_report: URL_SAFE.encode(&v.hcl_bytes),
        td_quote: URL_SAFE.encode(td_quote),
    })
}

#[cfg(test)]
mod tests {
    use super::starts_with_hex;

    #[test]
    fn user_data_is_compared_as_bytes() {
        let digest = [0xab_u8; 48];
        let hex = "AB".repeat(48);
        for (user_data, expected) in [
            (format!("{hex}{}", "0".repeat(32)), true),
            (hex.to_lowercase(), true),
            (hex[..95].to_owned(), false),
            ("00".repeat(64), false),
            // Not hex at all, with a multi-byte character across byte 96:
            // once a panic (a str sliced inside a character).
            (format!("a{}", "é".repeat(60)), false),
        ] {
            assert_eq!(
                starts_with_hex(&user_data, &digest),
                expected,
                "{user_data}"
            );
        }
    }
}

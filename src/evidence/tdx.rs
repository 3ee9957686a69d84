// SPDX-License-Identifier: Apache-2.0
//! Intel TDX evidence (kbs-protocol §3.3, §4.3): a TD quote whose REPORTDATA
//! is the binding digest followed by 16 zero bytes, obtained through
//! configfs-tsm (provider `tdx_guest`), sent as
//! `{"quote": base64, "cc_eventlog": base64 | null}`.
//!
//! The CC event log is the ACPI CCEL region, trimmed at the first record
//! that is all 0xFF or all 0x00 and closed with 8 × 0xFF (guest-components
//! `read_eventlog`). The verifier replays a log it is given and fails the
//! attestation when it does not parse, but skips the check when there is
//! none: a log that does not parse is therefore left out, with a warning.

use anyhow::{bail, Context, Result};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::Serialize;

use crate::binding::Binding;
use crate::eventlog;
use crate::root;
use crate::tsm::{self, TsmError};

#[derive(Serialize)]
pub struct TdxEvidence {
    quote: String,
    cc_eventlog: Option<String>,
}

pub fn evidence(binding: &Binding) -> Result<TdxEvidence> {
    let report_data = binding.report_data_64();
    let quote = match tsm::request("tdx_guest", &report_data, None) {
        Ok(blobs) => blobs.outblob,
        Err(e @ (TsmError::Absent(_) | TsmError::NoProvider(_)))
            if root::path(root::TDX_GUEST).exists() =>
        {
            bail!("{e}; /dev/tdx_guest alone gives only a TDREPORT, which a KBS cannot verify: use a kernel with CONFIG_TSM_REPORTS (RHEL 9.6 has it)")
        }
        Err(e) => return Err(e).context("request a TDX quote through configfs-tsm"),
    };
    check_quote(&quote, &report_data)?;
    Ok(TdxEvidence {
        quote: STANDARD.encode(&quote),
        cc_eventlog: event_log().map(|log| STANDARD.encode(log)),
    })
}

/// The quote must be a v4/v5 TDX quote carrying our REPORTDATA.
fn check_quote(quote: &[u8], report_data: &[u8; 64]) -> Result<()> {
    let parsed = crate::report::tdx::TdxQuote::parse(quote)
        .context("read the TDX quote from configfs-tsm")?;
    if parsed.report_data() != report_data {
        bail!("the TDX quote from configfs-tsm carries other REPORTDATA than requested");
    }
    Ok(())
}

/// The trimmed CCEL plus terminator, or `None` (absent or unparsable).
fn event_log() -> Option<Vec<u8>> {
    let path = root::path(root::CCEL);
    let raw = match std::fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            log::info!("no CC event log at {}: sending none", path.display());
            return None;
        }
        Err(e) => {
            log::warn!(
                "read the CC event log {}: {e}; sending none",
                path.display()
            );
            return None;
        }
    };
    let trimmed = eventlog::trim_ccel(&raw);
    match eventlog::parse(trimmed) {
        Ok(events) => {
            log::debug!(
                "CC event log: {} events, {} bytes",
                events.len(),
                trimmed.len()
            );
            let mut log = trimmed.to_vec();
            log.extend_from_slice(&[0xFF; 8]);
            Some(log)
        }
        Err(e) => {
            log::warn!("the CC event log {} does not parse ({e}); sending none, since the KBS would reject a malformed log", path.display());
            None
        }
    }
}

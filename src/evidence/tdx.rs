// SPDX-License-Identifier: Apache-2.0
//! Intel TDX evidence (kbs-protocol §3.3, §4.3): a TD quote whose REPORTDATA
//! is the binding digest followed by 16 zero bytes, obtained through
//! configfs-tsm (provider `tdx_guest`), sent as
//! `{"quote": base64, "cc_eventlog": base64 | null}`.
//!
//! The CC event log is the ACPI CCEL region, trimmed at the first record
//! that is all 0xFF or all 0x00 and closed with 8 × 0xFF (guest-components
//! `read_eventlog`). The verifier replays a log it is given and fails the
//! attestation when it does not parse or does not reproduce RTMR0..3 of the
//! quote (events of index 1..4 extend RTMR0..3 with their SHA-384 digest),
//! but skips the check when there is none: such a log is therefore left
//! out, with a warning that says why.

use anyhow::{bail, Context, Result};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde::Serialize;

use ring::digest;

use crate::binding::Binding;
use crate::eventlog::{self, Event, EV_NO_ACTION};
use crate::report::tdx::TdxQuote;
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
    let parsed = check_quote(&quote, &report_data)?;
    Ok(TdxEvidence {
        quote: STANDARD.encode(&quote),
        cc_eventlog: event_log(&parsed.rtmrs()).map(|log| STANDARD.encode(log)),
    })
}

/// The quote must be a v4/v5 TDX quote carrying our REPORTDATA.
fn check_quote(quote: &[u8], report_data: &[u8; 64]) -> Result<TdxQuote> {
    let parsed = TdxQuote::parse(quote).context("read the TDX quote from configfs-tsm")?;
    if parsed.report_data() != report_data {
        bail!("the TDX quote from configfs-tsm carries other REPORTDATA than requested");
    }
    Ok(parsed)
}

const SHA384: u16 = 0x000c;

/// RTMR0..3 as the events of index 1..4 extend them from zero:
/// RTMR = SHA-384(RTMR ‖ digest). EV_NO_ACTION events extend nothing.
fn replay(events: &[Event]) -> Result<[[u8; 48]; 4], String> {
    let mut rtmrs = [[0u8; 48]; 4];
    for (n, event) in events.iter().enumerate() {
        if !(1..=4).contains(&event.index) || event.event_type == EV_NO_ACTION {
            continue;
        }
        let Some((_, digest)) = event.digests.iter().find(|(alg, _)| *alg == SHA384) else {
            return Err(format!(
                "event {n} (index {}) has no SHA-384 digest",
                event.index
            ));
        };
        let rtmr = &mut rtmrs[event.index as usize - 1];
        let mut ctx = digest::Context::new(&digest::SHA384);
        ctx.update(rtmr);
        ctx.update(digest);
        rtmr.copy_from_slice(ctx.finish().as_ref());
    }
    Ok(rtmrs)
}

/// Why the log's replay does not give the quote's RTMRs, if it does not.
fn mismatch(events: &[Event], quoted: &[&[u8]; 4]) -> Option<String> {
    match replay(events) {
        Err(why) => Some(why),
        Ok(replayed) => (0..4)
            .find(|&i| replayed[i][..] != *quoted[i])
            .map(|i| format!("it does not reproduce the quote's RTMR{i}")),
    }
}

/// The trimmed CCEL plus terminator, or `None` (absent, unparsable, or not
/// what the quote measured).
fn event_log(quoted: &[&[u8]; 4]) -> Option<Vec<u8>> {
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
    let events = match eventlog::parse(trimmed) {
        Ok(events) => events,
        Err(e) => {
            log::warn!("the CC event log {} does not parse ({e}); sending none, since the KBS would reject a malformed log", path.display());
            return None;
        }
    };
    if let Some(why) = mismatch(&events, quoted) {
        log::warn!("the CC event log {} does not match the quote: {why}; sending none, since the KBS would reject the attestation", path.display());
        return None;
    }
    log::debug!(
        "CC event log: {} events, {} bytes, RTMR0..3 replayed",
        events.len(),
        trimmed.len()
    );
    let mut log = trimmed.to_vec();
    log.extend_from_slice(&[0xFF; 8]);
    Some(log)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{mismatch, replay};
    use crate::eventlog::{self, Event};

    /// Trustee's recorded CCEL, parsed by us and replayed, against the
    /// replay of the digests in Trustee's own parse of it.
    #[test]
    fn the_recorded_log_replays_as_its_recorded_parse_says() {
        let raw = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tdx/ccel.bin"
        ))
        .unwrap();
        let events = eventlog::parse(eventlog::trim_ccel(&raw)).unwrap();
        let parsed: Value = serde_json::from_str(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tdx/ccel-parsed.json"
        )))
        .unwrap();
        let mut want = [[0u8; 48]; 4];
        for e in parsed["uefi_event_logs"].as_array().unwrap() {
            let index = e["index"].as_u64().unwrap() as usize;
            if !(1..=4).contains(&index) || e["type_name"] == "EV_NO_ACTION" {
                continue;
            }
            let digest: Vec<u8> = (0..48)
                .map(|i| {
                    let hex = &e["digests"][0]["digest"].as_str().unwrap()[2 * i..2 * i + 2];
                    u8::from_str_radix(hex, 16).unwrap()
                })
                .collect();
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA384);
            ctx.update(&want[index - 1]);
            ctx.update(&digest);
            want[index - 1].copy_from_slice(ctx.finish().as_ref());
        }
        let got = replay(&events).unwrap();
        assert_eq!(got, want);
        assert_ne!(got[0], [0; 48], "the log extends RTMR0");
        // The quote that measured exactly this matches; any other RTMR does not.
        let quoted = [&got[0][..], &got[1][..], &got[2][..], &got[3][..]];
        assert_eq!(mismatch(&events, &quoted), None);
        let zero = [0u8; 48];
        let other = [&got[0][..], &zero[..], &got[2][..], &got[3][..]];
        assert_eq!(
            mismatch(&events, &other).as_deref(),
            Some("it does not reproduce the quote's RTMR1")
        );
        // An event that extends an RTMR without a SHA-384 digest cannot be replayed.
        let mut sha256_only = events.clone();
        sha256_only[1] = Event {
            digests: vec![(0x000b, vec![0; 32])],
            ..sha256_only[1].clone()
        };
        assert!(mismatch(&sha256_only, &quoted)
            .unwrap()
            .contains("has no SHA-384 digest"));
    }
}

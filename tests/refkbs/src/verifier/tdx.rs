// SPDX-License-Identifier: Apache-2.0
//! `tdx` evidence (kbs-protocol.md §4.3): a DCAP quote v4 or v5 (Intel TDX
//! DCAP Quoting Library API, "Quote Format") and an optional CC event log.
//!
//! Checked here: header (version 4 or 5, attestation key type 2 = ECDSA-P256,
//! TEE type 0x81), REPORTDATA = digest ‖ 16 zero bytes (v4 at offset 568; v5
//! at 48 + 6 + 520 = 574, after the body type u16 and size u32), and the quote
//! signature: ECDSA-P256/SHA-256 over header ‖ body (v5: including the type
//! and size) with the attestation key embedded in the quote.
//! Not checked, and said so in the claims: the QE report, the PCK chain and
//! Intel's collateral (TCB info, QE identity, CRLs), which the real Trustee
//! verifier fetches from Intel PCS — an offline reference KBS cannot. A
//! non-empty `cc_eventlog` is replayed, and must reproduce RTMR0..3
//! (`ccel.rs`); an absent one is let through, as Trustee does.

use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use serde::Deserialize;
use serde_json::{json, Value};

use super::hex;

/// Trustee `TdxEvidence`.
#[derive(Deserialize)]
struct TdxEvidence {
    quote: String,
    #[serde(default)]
    cc_eventlog: Option<String>,
}

const HEADER_LEN: usize = 48;
const TD_REPORT_LEN: usize = 584;

fn u16_at(q: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([q[at], q[at + 1]])
}

fn u32_at(q: &[u8], at: usize) -> usize {
    u32::from_le_bytes([q[at], q[at + 1], q[at + 2], q[at + 3]]) as usize
}

/// Checks the header and the signature; returns (version, offset of the TD report body).
pub(super) fn check_quote(q: &[u8]) -> Result<(u16, usize)> {
    if q.len() < HEADER_LEN + 6 {
        bail!("TDX quote is {} bytes, too short", q.len());
    }
    let (version, key_type, tee_type) = (u16_at(q, 0), u16_at(q, 2), u32_at(q, 4));
    if tee_type != 0x81 {
        bail!("quote TEE type {tee_type:#x} is not TDX (0x81)");
    }
    if key_type != 2 {
        bail!("quote attestation key type {key_type} is not ECDSA-P256 (2)");
    }
    let (body, signed_len) = match version {
        4 => (HEADER_LEN, HEADER_LEN + TD_REPORT_LEN),
        5 => (HEADER_LEN + 6, HEADER_LEN + 6 + u32_at(q, HEADER_LEN + 2)),
        v => bail!("TDX quote version {v} is not supported (4 or 5)"),
    };
    if signed_len < body + TD_REPORT_LEN || q.len() < signed_len + 4 + 128 {
        bail!("TDX quote is truncated");
    }
    let sig_len = u32_at(q, signed_len);
    if sig_len < 128 || signed_len + 4 + sig_len > q.len() {
        bail!("TDX quote signature data length {sig_len} is out of bounds");
    }
    let sig = &q[signed_len + 4..signed_len + 68];
    let mut key = [4u8; 65];
    key[1..].copy_from_slice(&q[signed_len + 68..signed_len + 132]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
        .verify(&q[..signed_len], sig)
        .ok()
        .context("the TDX quote signature does not verify with its attestation key")?;
    Ok((version, body))
}

/// Verifies `tdx` evidence against the expected digest.
pub(super) fn verify(evidence: &Value, expected: &[u8; 48]) -> Result<Value> {
    let evidence = TdxEvidence::deserialize(evidence).context("parse tdx evidence")?;
    let quote = STANDARD
        .decode(&evidence.quote)
        .context("decode the TDX quote")?;
    let (version, body) = check_quote(&quote)?;
    let report_data = &quote[body + 520..body + 584];
    if report_data[..48] != expected[..] || report_data[48..] != [0; 16] {
        bail!("TDX REPORTDATA is not the runtime-data digest followed by 16 zero bytes");
    }
    let eventlog = match evidence.cc_eventlog.as_deref() {
        None | Some("") => "absent",
        Some(log) => {
            let log = STANDARD.decode(log).context("decode cc_eventlog")?;
            let rtmrs = super::ccel::replay(&log).context("replay cc_eventlog")?;
            for (k, rtmr) in rtmrs.iter().enumerate() {
                let at = body + 328 + 48 * k;
                if quote[at..at + 48] != rtmr[..] {
                    bail!("cc_eventlog does not reproduce RTMR{k} of the quote");
                }
            }
            "replayed: RTMR0..3 match"
        }
    };
    let field = |at: usize, len: usize| hex(&quote[body + at..body + at + len]);
    Ok(json!({
        "version": version,
        "tee_tcb_svn": field(0, 16),
        "mr_seam": field(16, 48),
        "td_attributes": field(120, 8),
        "mr_td": field(136, 48),
        "mr_config_id": field(184, 48),
        "rtmr": [field(328, 48), field(376, 48), field(424, 48), field(472, 48)],
        "report_data": hex(report_data),
        "collateral": "not checked (offline reference KBS)",
        "cc_eventlog": eventlog,
    }))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde_json::json;
    use tee_emu::tdx;

    use super::{check_quote, verify};

    const DIGEST: [u8; 48] = [0xd1; 48];

    fn bound_quote() -> Vec<u8> {
        let mut data = [0u8; 64];
        data[..48].copy_from_slice(&DIGEST);
        tdx::quote(&data).unwrap()
    }

    #[test]
    fn accepts_emulator_and_recorded_quotes() {
        let q = bound_quote();
        let claims = verify(
            &json!({"quote": STANDARD.encode(&q), "cc_eventlog": null}),
            &DIGEST,
        )
        .unwrap();
        assert_eq!(claims["version"], 4);
        assert_eq!(claims["collateral"], "not checked (offline reference KBS)");
        // A log is replayed: it must give the quote's RTMRs.
        let ccel = include_bytes!("../../../data/tdx/ccel.bin");
        let rtmrs = super::super::ccel::replay(ccel).unwrap();
        let mut data = [0u8; 64];
        data[..48].copy_from_slice(&DIGEST);
        let measured = tdx::quote_with(&data, Some(&rtmrs)).unwrap();
        let log =
            |q: &[u8]| json!({"quote": STANDARD.encode(q), "cc_eventlog": STANDARD.encode(ccel)});
        assert_eq!(
            verify(&log(&measured), &DIGEST).unwrap()["cc_eventlog"],
            "replayed: RTMR0..3 match"
        );
        let err = format!("{:#}", verify(&log(&q), &DIGEST).unwrap_err());
        assert!(err.contains("does not reproduce RTMR0"), "{err}");
        let cut =
            json!({"quote": STANDARD.encode(&measured), "cc_eventlog": STANDARD.encode([1, 2, 3])});
        assert!(format!("{:#}", verify(&cut, &DIGEST).unwrap_err()).contains("replay cc_eventlog"));
        // Real quotes: their own signatures verify (v4 from Azure, v5 from Trustee).
        assert_eq!(check_quote(tdx::TEMPLATE).unwrap(), (4, 48));
        let v5 = include_bytes!("../../../data/tdx/quote-v5.bin");
        assert_eq!(check_quote(v5).unwrap(), (5, 54));
    }

    #[test]
    fn rejects_bad_evidence() {
        let q = bound_quote();
        let check = |q: &[u8], log: serde_json::Value| {
            let ev = json!({"quote": STANDARD.encode(q), "cc_eventlog": log});
            format!("{:#}", verify(&ev, &DIGEST).unwrap_err())
        };
        assert!(check(&tdx::quote(&[0xd1; 64]).unwrap(), json!(null)).contains("REPORTDATA"));
        let mut tampered = q.clone();
        tampered[48 + 136] ^= 1;
        assert!(check(&tampered, json!(null)).contains("signature"));
        let mut resigned = q.clone();
        resigned[700] ^= 1;
        assert!(check(&resigned, json!(null)).contains("signature"));
        let mut v3 = q.clone();
        v3[0] = 3;
        assert!(check(&v3, json!(null)).contains("version 3"));
        let mut sgx = q.clone();
        sgx[4] = 0;
        assert!(check(&sgx, json!(null)).contains("TEE type"));
        assert!(check(&q[..600], json!(null)).contains("truncated"));
        assert!(check(&q, json!("***")).contains("cc_eventlog"));
        assert!(verify(&json!({"quote": "%%"}), &DIGEST).is_err());
    }
}

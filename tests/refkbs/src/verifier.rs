// SPDX-License-Identifier: Apache-2.0
//! Evidence verifiers, one `match` arm per TEE (kbs-protocol.md §3.3, §4).
//!
//! Each verifier checks that the evidence binds `report_data` (the 48-byte
//! SHA-384 digest of the canonical runtime data, computed once by the caller)
//! and returns the TEE claims that go into the token: `sample` here, `snp`,
//! `tdx`, `tpm` and `az-snp-vtpm`/`az-tdx-vtpm` (with the HCL report parser)
//! in their own files. [`Roots`] holds what the verifiers trust, loaded once
//! from [`Config`].

mod az_vtpm;
pub mod ccel;
mod hcl;
mod snp;
mod tdx;
mod tpm;
#[cfg(test)]
mod vtpm_tests;

use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use kbs_types::Tee;
use serde::Deserialize;
use serde_json::{json, Value};
use sev::certs::snp::Certificate;

use crate::Config;

/// Trust anchors of the verifiers.
#[derive(Debug, Default)]
pub(crate) struct Roots {
    /// The AMD root key SNP VCEKs must chain to (no built-in AMD roots here).
    pub(crate) snp_ark: Option<Certificate>,
    /// The trusted ASK, for evidence that carries only the VCEK (always for
    /// `az-snp-vtpm`; for `snp` when the host publishes no ASK): given when
    /// the `snp_ark` file is a PEM bundle ASK, then ARK.
    pub(crate) snp_ask: Option<Certificate>,
}

impl Roots {
    pub(crate) fn load(config: &Config) -> Result<Roots> {
        let Some(path) = &config.snp_ark else {
            return Ok(Roots::default());
        };
        let bytes =
            std::fs::read(path).with_context(|| format!("read SNP ARK {}", path.display()))?;
        // A PEM bundle is ASK then ARK (AMD KDS `cert_chain` order); the last is the ARK.
        let text = String::from_utf8_lossy(&bytes);
        let blocks: Vec<String> = text
            .split("-----BEGIN CERTIFICATE-----")
            .skip(1)
            .map(|b| format!("-----BEGIN CERTIFICATE-----{b}"))
            .collect();
        if blocks.len() < 2 {
            let cert = snp::parse_cert(&bytes)
                .with_context(|| format!("parse SNP ARK {}", path.display()))?;
            return Ok(Roots {
                snp_ark: Some(cert),
                snp_ask: None,
            });
        }
        let parse = |i: usize| {
            snp::parse_cert(blocks[i].as_bytes())
                .with_context(|| format!("parse certificate {} of {}", i + 1, path.display()))
        };
        Ok(Roots {
            snp_ark: Some(parse(blocks.len() - 1)?),
            snp_ask: Some(parse(blocks.len() - 2)?),
        })
    }
}

/// Verifies `evidence` from a `tee` guest against the expected binding digest.
pub(crate) fn verify(
    tee: Tee,
    evidence: &Value,
    report_data: &[u8; 48],
    roots: &Roots,
) -> Result<Value> {
    match tee {
        Tee::Sample => sample(evidence, report_data),
        Tee::Snp => snp::verify(evidence, report_data, roots),
        Tee::Tdx => tdx::verify(evidence, report_data),
        Tee::Tpm => tpm::verify(evidence, report_data),
        Tee::AzSnpVtpm => az_vtpm::verify_snp(evidence, report_data, roots),
        Tee::AzTdxVtpm => az_vtpm::verify_tdx(evidence, report_data),
        other => bail!("no verifier for TEE {other:?} in refkbs"),
    }
}

/// Lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex of either case.
fn unhex(text: &str) -> Result<Vec<u8>> {
    if text.len() % 2 != 0 {
        bail!("hex of odd length {}", text.len());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| anyhow!("not hex at character {i}"))
        })
        .collect()
}

/// Trustee `deps/verifier/src/sample/mod.rs` `SampleTeeEvidence`.
#[derive(Deserialize)]
struct SampleEvidence {
    svn: String,
    #[serde(default)]
    report_data: String,
}

/// `sample`: `report_data` is base64 STANDARD of exactly the 48-byte digest.
fn sample(evidence: &Value, expected: &[u8; 48]) -> Result<Value> {
    let evidence = SampleEvidence::deserialize(evidence).context("parse sample evidence")?;
    let report_data = STANDARD
        .decode(&evidence.report_data)
        .context("decode sample report_data")?;
    if report_data != expected {
        return Err(anyhow!(
            "sample report_data does not match the runtime-data digest"
        ));
    }
    Ok(json!({
        "svn": evidence.svn,
        "launch_digest": "abcde",
        "platform_version": {"major": 1, "minor": 4},
        "debug": false,
    }))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use kbs_types::Tee;
    use serde_json::json;

    use super::{verify, Roots};

    #[test]
    fn sample_binding() {
        let verify =
            |tee, ev: &serde_json::Value, d: &[u8; 48]| verify(tee, ev, d, &Roots::default());
        let digest = [7u8; 48];
        let good = json!({"svn": "1", "report_data": STANDARD.encode(digest)});
        assert!(verify(Tee::Sample, &good, &digest).is_ok());
        let short = json!({"svn": "1", "report_data": STANDARD.encode([7u8; 32])});
        assert!(verify(Tee::Sample, &short, &digest).is_err());
        let padded = json!({"svn": "1", "report_data": STANDARD.encode([7u8; 64])});
        assert!(verify(Tee::Sample, &padded, &digest).is_err());
        assert!(verify(Tee::Sample, &json!({"report_data": ""}), &digest).is_err());
        assert!(verify(Tee::Snp, &good, &digest).is_err());
    }
}

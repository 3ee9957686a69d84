// SPDX-License-Identifier: Apache-2.0
//! `az-snp-vtpm` and `az-tdx-vtpm` evidence (kbs-protocol.md §3.3, §3.4,
//! §4.4, §4.5), checked in the order of Trustee's `AzSnpVtpm::evaluate` and
//! `AzTdxVtpm::evaluate`:
//!
//! 1. the TPM quote (`tpm_quote`: hex raw RSA signature, hex `TPMS_ATTEST`,
//!    24 hex SHA-256 PCRs) verifies with the HCL var-data's `HCLAkPub`;
//! 2. its extraData is exactly the 48-byte digest; its pcrDigest matches;
//! 3. var-data hash type 1 and the hardware report's report_data[0..32] =
//!    SHA-256(var-data);
//! 4. version ≥ 2: var-data `user-data` (hex) starts with the digest;
//! 5. SNP: `vcek` (base64url DER) chains through the trusted ASK to the
//!    trusted ARK (never the evidence's: Trustee uses its embedded ASK/ARK),
//!    signs the embedded report (version 3..=5, VMPL 0);
//!    TDX: `td_quote` (base64url) is a v4/v5 quote whose signature verifies
//!    with its attestation key (collateral not checked, as for `tdx`), and its
//!    REPORTDATA[0..32] = SHA-256(var-data).
//!
//! `hcl_report`, `vcek` and `td_quote` are base64url; padded (what
//! serde_with writes) and unpadded are both accepted. Versions 1 and 2 are
//! accepted (v1 skips step 4); the legacy v0 shape is not.

use anyhow::{anyhow, bail, Context as _, Result};
use base64::alphabet::URL_SAFE;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sev::certs::snp::Certificate;
use sev::firmware::guest::AttestationReport;

use super::hcl::{Hcl, HclType};
use super::tpm::{check_quote, pcr_claims, pcrs, Quote};
use super::{hex, snp, tdx, unhex, Roots};

/// base64url, padding optional.
const URL_ANY: GeneralPurpose = GeneralPurpose::new(
    &URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Trustee `az_snp_vtpm` / `az_tdx_vtpm` `Evidence` (v1, v2).
#[derive(Deserialize)]
struct AzEvidence {
    version: u32,
    tpm_quote: HexQuote,
    hcl_report: String,
    #[serde(default)]
    vcek: Option<String>,
    #[serde(default)]
    td_quote: Option<String>,
}

#[derive(Deserialize)]
struct HexQuote {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

/// Steps 1–4, common to both flavours: the HCL report and the TPM PCRs.
fn check_vtpm(ev: &AzEvidence, expected: &[u8; 48], kind: HclType) -> Result<(Hcl, Value)> {
    if !(1..=2).contains(&ev.version) {
        bail!("evidence version {} is not supported (1 or 2)", ev.version);
    }
    let raw = URL_ANY
        .decode(&ev.hcl_report)
        .context("decode hcl_report")?;
    let hcl = Hcl::parse(&raw)?;
    if hcl.kind() != kind {
        bail!(
            "the HCL report holds a {:?} report, not {kind:?}",
            hcl.kind()
        );
    }
    let quote = Quote {
        message: unhex(&ev.tpm_quote.message).context("decode the quote message")?,
        signature: unhex(&ev.tpm_quote.signature).context("decode the quote signature")?,
        pcrs: pcrs(&ev.tpm_quote.pcrs)?,
    };
    let ak = hcl.ak()?;
    let extra = check_quote(&ak, &quote)?;
    if extra != expected[..] {
        bail!("the TPM quote's extraData is not the runtime-data digest");
    }
    hcl.check_hw_binding()?;
    if ev.version >= 2 {
        hcl.check_user_data(expected)?;
    }
    let claims = json!({
        "tpm": pcr_claims(&quote.pcrs),
        "report_data": hex(&extra),
        "init_data": hex(&quote.pcrs[8]),
        "vm-configuration": hcl.var_data_json()["vm-configuration"],
    });
    Ok((hcl, claims))
}

/// Verifies `az-snp-vtpm` evidence.
pub(super) fn verify_snp(evidence: &Value, expected: &[u8; 48], roots: &Roots) -> Result<Value> {
    let ev = AzEvidence::deserialize(evidence).context("parse az-snp-vtpm evidence")?;
    let (hcl, mut claims) = check_vtpm(&ev, expected, HclType::Snp)?;
    let vcek = ev
        .vcek
        .as_deref()
        .context("az-snp-vtpm evidence has no vcek")?;
    let vcek = URL_ANY.decode(vcek).context("decode vcek")?;
    let vcek = Certificate::from_der(&vcek).context("parse the VCEK")?;
    let ark = roots
        .snp_ark
        .as_ref()
        .ok_or_else(|| anyhow!("no trusted SNP ARK is configured (refkbs --snp-ark)"))?;
    let ask = roots.snp_ask.clone().ok_or_else(|| {
        anyhow!("no trusted SNP ASK is configured (give --snp-ark a PEM bundle: ASK, then ARK)")
    })?;
    let report =
        AttestationReport::from_bytes(hcl.hw_report()).context("parse the HCL's SNP report")?;
    snp::check_report(&report, vcek, ask, ark)?;
    claims["snp"] = snp::claims(&report)?;
    Ok(claims)
}

/// Verifies `az-tdx-vtpm` evidence.
pub(super) fn verify_tdx(evidence: &Value, expected: &[u8; 48]) -> Result<Value> {
    let ev = AzEvidence::deserialize(evidence).context("parse az-tdx-vtpm evidence")?;
    let (hcl, mut claims) = check_vtpm(&ev, expected, HclType::Tdx)?;
    let quote = ev
        .td_quote
        .as_deref()
        .context("az-tdx-vtpm evidence has no td_quote")?;
    let quote = URL_ANY.decode(quote).context("decode td_quote")?;
    let (version, body) = tdx::check_quote(&quote)?;
    let report_data = &quote[body + 520..body + 584];
    if report_data[..32] != hcl.var_data_sha256()? {
        bail!("the TD quote's REPORTDATA does not start with SHA-256(var-data)");
    }
    claims["tdx"] = json!({
        "version": version,
        "mr_td": hex(&quote[body + 136..body + 184]),
        "report_data": hex(report_data),
        "collateral": "not checked (offline reference KBS)",
    });
    Ok(claims)
}

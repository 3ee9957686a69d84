// SPDX-License-Identifier: Apache-2.0
//! Generic `tpm` evidence (kbs-protocol §3.5, §4.6): a TPM2_Quote over the
//! SHA-256 PCRs 0-23 by an RSA attestation key, qualifying data = the first
//! 32 bytes of the binding digest (the verifier resizes the digest to 32),
//! sent as base64 marshalled TPMT_SIGNATURE and TPMS_ATTEST, hex PCRs, and
//! the AK as base64 DER SubjectPublicKeyInfo. The verifier trusts the AK
//! only through the attestation policy's reference values (`trusted_aks`).

use anyhow::{Context, Result};
use base64::{engine::general_purpose::STANDARD, Engine};
use rsa::pkcs8::EncodePublicKey;
use rsa::{BigUint, RsaPublicKey};
use serde::Serialize;

use crate::binding::Binding;
use crate::tpm::{AkSource, Tpm};

use super::TeeOptions;

/// Where guest-components and Trustee's docs persist the AK.
pub const DEFAULT_AK: u32 = 0x8101_0002;

#[derive(Serialize)]
pub struct TpmEvidence {
    ak_public: String,
    tpm_quote: TpmQuote,
}

#[derive(Serialize)]
struct TpmQuote {
    message: String,
    pcrs: Vec<String>,
    signature: String,
}

pub fn evidence(binding: &Binding, options: &TeeOptions) -> Result<TpmEvidence> {
    let source = match options.ak_handle {
        Some(h) => AkSource::Persistent(h),
        None => AkSource::PersistentOrCreate(DEFAULT_AK),
    };
    let mut tpm = Tpm::open(&options.tcti)?;
    let quote = tpm.quote(source, &binding.first_32(), true)?;
    let key = RsaPublicKey::new(
        BigUint::from_bytes_be(&quote.ak_modulus),
        BigUint::from(quote.ak_exponent),
    )
    .context("read the AK as an RSA key")?;
    let spki = key
        .to_public_key_der()
        .context("encode the AK as SubjectPublicKeyInfo")?;
    Ok(TpmEvidence {
        ak_public: STANDARD.encode(spki.as_bytes()),
        tpm_quote: TpmQuote {
            message: STANDARD.encode(&quote.message),
            pcrs: quote.pcrs.iter().map(hex).collect(),
            signature: STANDARD.encode(&quote.signature),
        },
    })
}

pub fn hex(bytes: impl AsRef<[u8]>) -> String {
    bytes.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

// SPDX-License-Identifier: Apache-2.0
//! TPM quotes (kbs-protocol.md §3.5, §4.6, §5) and the generic `tpm`
//! evidence, checked like Trustee's `deps/verifier/src/tpm/mod.rs`.
//!
//! A quote is a marshalled `TPMS_ATTEST` (TPM 2.0 Library Part 2, 10.12.12)
//! and an RSASSA-PKCS1-v1_5 SHA-256 signature over it by the AK. Checked:
//! the signature, magic `TPM_GENERATED_VALUE` 0xff544347 and type
//! `TPM_ST_ATTEST_QUOTE` 0x8018, the PCR selection (exactly the SHA-256 bank,
//! PCRs 0–23), pcrDigest = SHA-256 of the 24 given PCR values concatenated,
//! and extraData against the binding. `tpm` evidence: `ak_public` (base64
//! DER SPKI, RSA), `tpm_quote.signature` (base64 `TPMT_SIGNATURE`, RSASSA
//! 0x0014 + SHA-256 0x000b only), `message` (base64), `pcrs` (24 × 64 hex);
//! extraData = the first 32 bytes of the digest. As in Trustee, the AK is
//! trusted as sent: policy, not the verifier, decides whether it is known.

use anyhow::{anyhow, bail, ensure, Context as _, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{hex, unhex};

/// An RSA public key: big-endian modulus and exponent.
pub(super) struct RsaKey {
    pub(super) n: Vec<u8>,
    pub(super) e: Vec<u8>,
}

/// One DER TLV: (tag, content, rest).
fn tlv(der: &[u8]) -> Result<(u8, &[u8], &[u8])> {
    ensure!(der.len() >= 2, "DER is truncated");
    let (tag, first) = (der[0], der[1] as usize);
    let (len, start) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        ensure!((1..=3).contains(&n) && der.len() >= 2 + n, "bad DER length");
        let len = der[2..2 + n]
            .iter()
            .fold(0usize, |a, b| a << 8 | *b as usize);
        (len, 2 + n)
    };
    ensure!(der.len() >= start + len, "DER is truncated");
    Ok((tag, &der[start..start + len], &der[start + len..]))
}

impl RsaKey {
    /// From a DER `SubjectPublicKeyInfo` with an rsaEncryption key (RFC 8017 A.1.1).
    pub(super) fn from_spki(der: &[u8]) -> Result<RsaKey> {
        const RSA_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        let (_, spki, _) = tlv(der).context("parse SubjectPublicKeyInfo")?;
        let (_, alg, rest) = tlv(spki).context("parse the algorithm")?;
        let (_, oid, _) = tlv(alg).context("parse the algorithm OID")?;
        ensure!(oid == RSA_OID, "the AK is not an RSA key");
        let (tag, bits, _) = tlv(rest).context("parse the key bits")?;
        ensure!(
            tag == 0x03 && bits.first() == Some(&0),
            "bad subjectPublicKey"
        );
        let (_, key, _) = tlv(&bits[1..]).context("parse RSAPublicKey")?;
        let (_, n, rest) = tlv(key).context("parse the modulus")?;
        let (_, e, _) = tlv(rest).context("parse the exponent")?;
        let strip = |v: &[u8]| v[v.iter().position(|b| *b != 0).unwrap_or(v.len())..].to_vec();
        Ok(RsaKey {
            n: strip(n),
            e: strip(e),
        })
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature.
    pub(super) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        RsaPublicKeyComponents {
            n: &self.n,
            e: &self.e,
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
        .map_err(|_| anyhow!("the TPM quote signature does not verify with the AK"))
    }
}

/// A quote's parts in bytes; `pcrs` decoded from hex.
pub(super) struct Quote {
    pub(super) message: Vec<u8>,
    pub(super) signature: Vec<u8>,
    pub(super) pcrs: Vec<[u8; 32]>,
}

/// Decodes the 24 PCR hex strings.
pub(super) fn pcrs(values: &[String]) -> Result<Vec<[u8; 32]>> {
    ensure!(values.len() == 24, "{} PCR values, not 24", values.len());
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let bytes = unhex(v).with_context(|| format!("decode PCR {i}"))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| anyhow!("PCR {i} is not 32 bytes (64 hex characters)"))
        })
        .collect()
}

/// Verifies signature, structure and PCR digest; returns extraData.
pub(super) fn check_quote(key: &RsaKey, quote: &Quote) -> Result<Vec<u8>> {
    key.verify(&quote.message, &quote.signature)?;
    let m = quote.message.as_slice();
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let b = m.get(at..at + n).context("TPMS_ATTEST is truncated")?;
        at += n;
        Ok(b)
    };
    ensure!(
        take(4)? == [0xff, 0x54, 0x43, 0x47],
        "TPMS_ATTEST magic is not TPM_GENERATED_VALUE"
    );
    ensure!(
        take(2)? == [0x80, 0x18],
        "TPMS_ATTEST is not a quote (type 0x8018)"
    );
    let sized = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]) as usize;
    let n = sized(take(2)?);
    take(n).context("read qualifiedSigner")?;
    let n = sized(take(2)?);
    let extra = take(n).context("read extraData")?.to_vec();
    take(17 + 8).context("read clockInfo and firmwareVersion")?;
    // TPML_PCR_SELECTION: exactly one selection, SHA-256, PCRs 0-23.
    let selection = take(4 + 2 + 1 + 3)?;
    ensure!(
        selection == [0, 0, 0, 1, 0x00, 0x0b, 3, 0xff, 0xff, 0xff],
        "the quote does not select exactly the SHA-256 PCRs 0-23"
    );
    let n = sized(take(2)?);
    let pcr_digest = take(n).context("read pcrDigest")?;
    if pcr_digest != digest(&SHA256, &quote.pcrs.concat()).as_ref() {
        bail!("the PCR values do not match the quote's PCR digest");
    }
    Ok(extra)
}

/// `tpm.pcrNN` claims.
pub(super) fn pcr_claims(pcrs: &[[u8; 32]]) -> Value {
    let map: Map<String, Value> = pcrs
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("pcr{i:02}"), Value::String(hex(p))))
        .collect();
    Value::Object(map)
}

/// Trustee `tpm` `Evidence` / `Quote`.
#[derive(Deserialize)]
struct TpmEvidence {
    ak_public: String,
    tpm_quote: TpmQuote,
}

#[derive(Deserialize)]
struct TpmQuote {
    signature: String,
    message: String,
    pcrs: Vec<String>,
}

/// The raw signature of a marshalled `TPMT_SIGNATURE` (RSASSA, SHA-256 only).
pub(super) fn tpmt_signature(sig: &[u8]) -> Result<Vec<u8>> {
    ensure!(sig.len() >= 6, "TPMT_SIGNATURE is truncated");
    ensure!(
        sig[..2] == [0x00, 0x14],
        "the TPM signature scheme is not RSASSA (0x0014)"
    );
    ensure!(
        sig[2..4] == [0x00, 0x0b],
        "the TPM signature hash is not SHA-256 (0x000b)"
    );
    let n = u16::from_be_bytes([sig[4], sig[5]]) as usize;
    sig.get(6..6 + n)
        .map(<[u8]>::to_vec)
        .context("TPMT_SIGNATURE is truncated")
}

/// Verifies `tpm` evidence: extraData must be the digest's first 32 bytes.
pub(super) fn verify(evidence: &Value, expected: &[u8; 48]) -> Result<Value> {
    let ev = TpmEvidence::deserialize(evidence).context("parse tpm evidence")?;
    let der = STANDARD.decode(&ev.ak_public).context("decode ak_public")?;
    let key = RsaKey::from_spki(&der).context("parse ak_public")?;
    let signature = STANDARD
        .decode(&ev.tpm_quote.signature)
        .context("decode the quote signature")?;
    let quote = Quote {
        message: STANDARD
            .decode(&ev.tpm_quote.message)
            .context("decode the quote message")?,
        signature: tpmt_signature(&signature)?,
        pcrs: pcrs(&ev.tpm_quote.pcrs)?,
    };
    let extra = check_quote(&key, &quote)?;
    // Trustee resizes the digest to TPM_REPORT_DATA_SIZE (32): truncation.
    if extra != expected[..32] {
        bail!("the quote's extraData is not the first 32 bytes of the runtime-data digest");
    }
    Ok(json!({
        "ak_public": ev.ak_public,
        "report_data": hex(&extra),
        "init_data": hex(&quote.pcrs[8]),
        "tpm": pcr_claims(&quote.pcrs),
    }))
}

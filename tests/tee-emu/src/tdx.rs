// SPDX-License-Identifier: Apache-2.0
//! TDX quotes (Intel TDX DCAP Quoting Library API, "Quote Format" v4) made
//! from a recorded template with our REPORTDATA and re-signed by a test
//! attestation key.
//!
//! Layout of a v4 quote (all integers little-endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 48 | header: version u16 = 4, att_key_type u16 = 2 (ECDSA-P256), tee_type u32 = 0x81, reserved, QE vendor id, user data |
//! | 48 | 584 | TD report body; REPORTDATA is its last 64 bytes (body offset 520, quote offset 568) |
//! | 632 | 4 | quote signature data length |
//! | 636 | 64 | ECDSA-P256 signature `r‖s` (big-endian) over bytes 0..632 with SHA-256 |
//! | 700 | 64 | attestation public key `x‖y` (big-endian) |
//! | 764 | … | certification data (type 6: QE report, its PCK signature, QE auth data, PCK chain) |
//!
//! The template is `tests/data/az-tdx-vtpm/td-quote.bin`. Only REPORTDATA
//! (and RTMR0..3 when asked), the signature and the attestation key change,
//! so the QE report (whose REPORTDATA hashes the original attestation key)
//! and the PCK chain no longer match: a real DCAP verifier rejects these
//! quotes; the reference KBS, which cannot check Intel collateral offline
//! anyway, verifies the signature (and replays a CC event log).

use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};

/// The recorded v4 quote the emulator starts from.
pub const TEMPLATE: &[u8] = include_bytes!("../../data/az-tdx-vtpm/td-quote.bin");
/// Offset of REPORTDATA in a v4 quote.
pub const REPORT_DATA_OFFSET: usize = 568;
/// Offset of RTMR0 in a v4 quote (body offset 328); RTMR1..3 follow.
pub const RTMR0_OFFSET: usize = 376;
/// Header and body: the signed bytes.
pub const SIGNED_LEN: usize = 632;
/// Offset of the signature `r‖s`.
pub const SIG_OFFSET: usize = 636;
/// Offset of the attestation public key `x‖y`.
pub const KEY_OFFSET: usize = 700;

/// The per-process test attestation key.
fn attestation_key() -> Result<&'static EcdsaKeyPair> {
    static KEY: OnceLock<EcdsaKeyPair> = OnceLock::new();
    if let Some(key) = KEY.get() {
        return Ok(key);
    }
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| anyhow!("generate the TDX attestation key"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|e| anyhow!("load the TDX attestation key: {e}"))?;
    Ok(KEY.get_or_init(|| key))
}

/// A v4 quote with `report_data` as REPORTDATA, signed by the test attestation key.
pub fn quote(report_data: &[u8; 64]) -> Result<Vec<u8>> {
    quote_with(report_data, None)
}

/// As [`quote`], with RTMR0..3 set to `rtmrs` (else the template's, all zero).
pub fn quote_with(report_data: &[u8; 64], rtmrs: Option<&[[u8; 48]; 4]>) -> Result<Vec<u8>> {
    let key = attestation_key()?;
    let mut quote = TEMPLATE.to_vec();
    quote[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64].copy_from_slice(report_data);
    for (i, rtmr) in rtmrs.into_iter().flatten().enumerate() {
        let at = RTMR0_OFFSET + 48 * i;
        quote[at..at + 48].copy_from_slice(rtmr);
    }
    // ring's public key is the SEC1 point 0x04‖x‖y; the quote holds x‖y.
    quote[KEY_OFFSET..KEY_OFFSET + 64].copy_from_slice(&key.public_key().as_ref()[1..]);
    let sig = key
        .sign(&SystemRandom::new(), &quote[..SIGNED_LEN])
        .map_err(|_| anyhow!("sign the TDX quote"))?;
    quote[SIG_OFFSET..SIG_OFFSET + 64].copy_from_slice(sig.as_ref());
    Ok(quote)
}

/// Checks a v4 quote's signature with the attestation key it carries.
pub fn verify_signature(quote: &[u8]) -> Result<()> {
    if quote.len() < KEY_OFFSET + 64 || quote[0..2] != [4, 0] {
        bail!("not a v4 TDX quote");
    }
    let mut point = [4u8; 65];
    point[1..].copy_from_slice(&quote[KEY_OFFSET..KEY_OFFSET + 64]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
        .verify(&quote[..SIGNED_LEN], &quote[SIG_OFFSET..SIG_OFFSET + 64])
        .map_err(|_| anyhow!("the TDX quote signature does not verify"))
}

#[cfg(test)]
mod tests {
    use super::{quote, verify_signature, REPORT_DATA_OFFSET, TEMPLATE};

    #[test]
    fn template_and_resigned_quotes_verify() {
        verify_signature(TEMPLATE).unwrap();
        let data = [0x42u8; 64];
        let mut q = quote(&data).unwrap();
        verify_signature(&q).unwrap();
        assert_eq!(q[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64], data);
        assert_eq!(q.len(), TEMPLATE.len());
        q[REPORT_DATA_OFFSET] ^= 1;
        assert!(verify_signature(&q).is_err());
    }
}

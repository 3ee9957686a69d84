// SPDX-License-Identifier: Apache-2.0
//! TPM2_Quote results (TPM 2.0 Library Part 3, 18.4) as verifiers consume
//! them, and a software AK that makes them without a TPM.
//!
//! `message` is the marshalled `TPMS_ATTEST` (Part 2, 10.12.12: magic
//! `TPM_GENERATED_VALUE` 0xff544347, type `TPM_ST_ATTEST_QUOTE` 0x8018,
//! qualifiedSigner, extraData = qualifyingData, clockInfo, firmwareVersion,
//! `TPMS_QUOTE_INFO` {pcrSelect, pcrDigest}); `signature` the marshalled
//! `TPMT_SIGNATURE` (sigAlg RSASSA 0x0014, hash SHA-256 0x000b, `TPM2B`
//! signature). The PCR selection is always the SHA-256 bank, PCRs 0–23, and
//! pcrDigest = SHA-256 of the 24 values concatenated in index order.
//!
//! [`SoftAk::test_key`] is the fixed RSA-2048 key of `tests/data/tpm/test-ak.pk8`
//! (a test key, never trust it).

use anyhow::{anyhow, ensure, Result};
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::rsa::PublicKeyComponents;
use ring::signature::{KeyPair as _, RsaKeyPair, RSA_PKCS1_SHA256};

use crate::ak::AkInfo;

/// `TPM_GENERATED_VALUE`.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
pub const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_RSASSA`.
pub const ALG_RSASSA: u16 = 0x0014;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;

/// The test AK's private key, PKCS#8 DER.
const TEST_AK_PKCS8: &[u8] = include_bytes!("../../data/tpm/test-ak.pk8");

/// One quote: what the guest sends and the verifier checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    /// Marshalled `TPMS_ATTEST`.
    pub message: Vec<u8>,
    /// Marshalled `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    /// SHA-256 PCRs 0–23.
    pub pcrs: [[u8; 32]; 24],
}

impl TpmQuote {
    /// The raw RSA signature inside `signature` (what az-*-vtpm evidence carries).
    pub fn raw_signature(&self) -> Result<&[u8]> {
        let s = &self.signature;
        ensure!(s.len() >= 6, "TPMT_SIGNATURE is truncated");
        let len = u16::from_be_bytes([s[4], s[5]]) as usize;
        s.get(6..6 + len)
            .ok_or_else(|| anyhow!("TPMT_SIGNATURE is truncated"))
    }

    /// The 24 PCR values as lowercase hex strings.
    pub fn pcrs_hex(&self) -> Vec<String> {
        self.pcrs.iter().map(|p| hex(p)).collect()
    }
}

/// SHA-256 of the PCR values concatenated in order (the quote's pcrDigest).
pub fn pcr_digest(pcrs: &[[u8; 32]]) -> [u8; 32] {
    let d = digest(&SHA256, &pcrs.concat());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A marshalled quote `TPMS_ATTEST` with `extra_data` over `pcrs` (SHA-256, 0–23).
pub fn attest(extra_data: &[u8], pcrs: &[[u8; 32]; 24]) -> Vec<u8> {
    let mut m = Vec::with_capacity(160);
    m.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    m.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
    // qualifiedSigner: a SHA-256 TPM2B_NAME.
    let name = digest(&SHA256, b"tee-emu soft AK");
    m.extend_from_slice(&34u16.to_be_bytes());
    m.extend_from_slice(&ALG_SHA256.to_be_bytes());
    m.extend_from_slice(name.as_ref());
    m.extend_from_slice(&(extra_data.len() as u16).to_be_bytes());
    m.extend_from_slice(extra_data);
    // clockInfo: clock u64, resetCount u32, restartCount u32, safe u8.
    m.extend_from_slice(&1_000_000u64.to_be_bytes());
    m.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 1]);
    m.extend_from_slice(&0x2023_0511_000e_0000u64.to_be_bytes());
    // TPML_PCR_SELECTION with one TPMS_PCR_SELECTION: SHA-256, 3 bytes, all set.
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&ALG_SHA256.to_be_bytes());
    m.extend_from_slice(&[3, 0xff, 0xff, 0xff]);
    m.extend_from_slice(&32u16.to_be_bytes());
    m.extend_from_slice(&pcr_digest(pcrs));
    m
}

/// A software RSA-2048 AK signing RSASSA-SHA256 quotes.
pub struct SoftAk {
    key: RsaKeyPair,
}

impl SoftAk {
    /// The fixed test key.
    pub fn test_key() -> Result<SoftAk> {
        let key = RsaKeyPair::from_pkcs8(TEST_AK_PKCS8)
            .map_err(|e| anyhow!("load the test AK key: {e}"))?;
        Ok(SoftAk { key })
    }

    pub fn info(&self) -> AkInfo {
        let public = PublicKeyComponents::<Vec<u8>>::from(self.key.public());
        let e = public
            .e
            .iter()
            .fold(0u32, |acc, b| acc << 8 | u32::from(*b));
        AkInfo::from_rsa(&public.n, e)
    }

    /// RSASSA-PKCS1-v1_5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| anyhow!("sign with the test AK"))?;
        Ok(sig)
    }

    /// A quote over `pcrs` with qualifyingData `nonce`, as a TPM would return it.
    pub fn quote(&self, nonce: &[u8], pcrs: &[[u8; 32]; 24]) -> Result<TpmQuote> {
        let message = attest(nonce, pcrs);
        let raw = self.sign(&message)?;
        let mut signature = Vec::with_capacity(raw.len() + 6);
        signature.extend_from_slice(&ALG_RSASSA.to_be_bytes());
        signature.extend_from_slice(&ALG_SHA256.to_be_bytes());
        signature.extend_from_slice(&(raw.len() as u16).to_be_bytes());
        signature.extend_from_slice(&raw);
        Ok(TpmQuote {
            message,
            signature,
            pcrs: *pcrs,
        })
    }

    /// The public key as ring exposes it (PKCS#1 `RSAPublicKey` DER).
    pub fn public_pkcs1(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

    use super::{pcr_digest, SoftAk};

    #[test]
    fn soft_quotes_verify_with_the_public_key() {
        let ak = SoftAk::test_key().unwrap();
        let mut pcrs = [[0u8; 32]; 24];
        pcrs[7] = [7; 32];
        let q = ak.quote(&[0x11; 48], &pcrs).unwrap();
        assert_eq!(q.message[..6], [0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
        assert!(q.message.ends_with(&pcr_digest(&pcrs)));
        let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, ak.public_pkcs1());
        key.verify(&q.message, q.raw_signature().unwrap()).unwrap();
        assert_eq!(q.signature[..4], [0x00, 0x14, 0x00, 0x0b]);
        let info = ak.info();
        assert_eq!(info.modulus.len(), 256);
        assert_eq!(info.exponent, 65537);
        assert_eq!(q.pcrs_hex()[7], "07".repeat(32));
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The attestation key (AK) of an emulated TPM, in the forms its consumers
//! want: the TPM's own `TPM2B_PUBLIC` (TPM 2.0 Library Part 2, 12.2.5 and
//! 12.2.3.5 `TPMS_RSA_PARMS`), the DER `SubjectPublicKeyInfo` of RFC 5280 /
//! RFC 8017 A.1.1 that the generic `tpm` evidence carries as `ak_public`, its
//! PEM, and the JWK modulus the Azure HCL var-data lists as `HCLAkPub`.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context as _, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;

/// `TPM_ALG_RSA`.
const ALG_RSA: u16 = 0x0001;
/// `TPM_ALG_NULL`.
const ALG_NULL: u16 = 0x0010;
/// DER of the rsaEncryption `AlgorithmIdentifier` (OID 1.2.840.113549.1.1.1, NULL).
const RSA_ALG_ID: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// An RSA attestation key's public part and where it lives in the TPM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkInfo {
    /// Big-endian modulus, without a leading zero (256 bytes for RSA-2048).
    pub modulus: Vec<u8>,
    /// Public exponent (a TPM's 0 already mapped to 65537).
    pub exponent: u32,
    /// DER `SubjectPublicKeyInfo`.
    pub der: Vec<u8>,
    /// PEM `PUBLIC KEY` of [`AkInfo::der`].
    pub pem: String,
    /// The persistent handle the key was evicted to, if any.
    pub handle: Option<u32>,
    /// A tpm2-tools context file that loads the key, for keys made in a swtpm.
    pub context: Option<PathBuf>,
}

impl AkInfo {
    /// The key from its modulus and exponent (no TPM location).
    pub fn from_rsa(modulus: &[u8], exponent: u32) -> AkInfo {
        let start = modulus
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(modulus.len());
        let modulus = modulus[start..].to_vec();
        let e = exponent.to_be_bytes();
        let e_start = e.iter().position(|b| *b != 0).unwrap_or(3);
        let rsa_key = der(
            0x30,
            &[der_uint(&modulus), der_uint(&e[e_start..])].concat(),
        );
        let bits = der(0x03, &[&[0u8][..], &rsa_key].concat());
        let spki = der(0x30, &[RSA_ALG_ID, &bits].concat());
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in STANDARD.encode(&spki).as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        AkInfo {
            modulus,
            exponent,
            der: spki,
            pem,
            handle: None,
            context: None,
        }
    }

    /// The key from a marshalled `TPM2B_PUBLIC` (tpm2-tools' default `tss` output).
    pub fn from_tpm2b_public(bytes: &[u8]) -> Result<AkInfo> {
        let mut r = Reader(bytes);
        let size = r.u16()? as usize;
        ensure!(
            size == r.0.len(),
            "TPM2B_PUBLIC size {size} disagrees with its {} bytes",
            r.0.len()
        );
        let alg = r.u16()?;
        if alg != ALG_RSA {
            bail!("the AK is not an RSA key (TPMI_ALG_PUBLIC {alg:#06x})");
        }
        r.u16().context("read nameAlg")?;
        r.u32().context("read objectAttributes")?;
        r.sized().context("read authPolicy")?;
        // TPMT_SYM_DEF_OBJECT: algorithm, then keyBits and mode unless NULL.
        if r.u16()? != ALG_NULL {
            r.u16()?;
            r.u16()?;
        }
        // TPMT_RSA_SCHEME: scheme, then its hash unless NULL.
        if r.u16()? != ALG_NULL {
            r.u16()?;
        }
        r.u16().context("read keyBits")?;
        let exponent = match r.u32().context("read exponent")? {
            0 => 65537,
            e => e,
        };
        let modulus = r.sized().context("read the RSA modulus")?;
        Ok(AkInfo::from_rsa(modulus, exponent))
    }

    /// The JWK `n` member: base64url without padding of the modulus (RFC 7518 6.3.1.1).
    pub fn jwk_n(&self) -> String {
        URL_SAFE_NO_PAD.encode(&self.modulus)
    }

    /// The JWK `e` member (`AQAB` for 65537).
    pub fn jwk_e(&self) -> String {
        let e = self.exponent.to_be_bytes();
        let start = e.iter().position(|b| *b != 0).unwrap_or(3);
        URL_SAFE_NO_PAD.encode(&e[start..])
    }

    /// `ak_public` of `tpm` evidence: base64 STANDARD of the DER SPKI.
    pub fn der_base64(&self) -> String {
        STANDARD.encode(&self.der)
    }
}

/// A DER TLV with a definite length.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u32).to_be_bytes();
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(3);
        out.push(0x80 | (4 - start) as u8);
        out.extend_from_slice(&bytes[start..]);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of an unsigned big-endian value.
fn der_uint(value: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_none_or(|b| *b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    der(0x02, &content)
}

/// A cursor over big-endian TPM structures.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        ensure!(self.0.len() >= n, "the TPM structure is truncated");
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `TPM2B_*`: u16 size, then the bytes.
    fn sized(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()? as usize;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::AkInfo;

    #[test]
    fn spki_and_jwk_encodings() {
        let mut n = vec![0xc5u8; 256];
        n[255] = 1;
        let ak = AkInfo::from_rsa(&n, 65537);
        // 2048-bit RSA SPKI is always 294 bytes with this fixed prefix.
        assert_eq!(ak.der.len(), 294);
        assert_eq!(ak.der[..4], [0x30, 0x82, 0x01, 0x22]);
        assert_eq!(ak.der[ak.der.len() - 5..], [0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(ak.jwk_e(), "AQAB");
        assert_eq!(ak.jwk_n().len(), 342);
        assert!(ak.pem.starts_with(
            "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"
        ));
    }

    #[test]
    fn parses_a_tpm2b_public() {
        // TPMT_PUBLIC: RSA, SHA-256, attributes, empty policy, NULL sym, RSASSA-SHA256, 2048, e=0.
        let mut t = vec![0x00, 0x01, 0x00, 0x0b, 0x00, 0x05, 0x04, 0x72, 0x00, 0x00];
        t.extend_from_slice(&[0x00, 0x10, 0x00, 0x14, 0x00, 0x0b, 0x08, 0x00, 0, 0, 0, 0]);
        t.extend_from_slice(&[0x01, 0x00]);
        t.extend_from_slice(&[0xab; 256]);
        let mut b = (t.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(&t);
        let ak = AkInfo::from_tpm2b_public(&b).unwrap();
        assert_eq!(ak.exponent, 65537);
        assert_eq!(ak.modulus, vec![0xab; 256]);
        assert!(AkInfo::from_tpm2b_public(&b[..100]).is_err());
    }
}

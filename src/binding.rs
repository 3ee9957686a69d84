// SPDX-License-Identifier: Apache-2.0
//! The runtime-data binding: the one place where the KBS nonce and our TEE
//! public key are turned into the bytes a TEE signs.
//!
//! kbs-protocol §3.2: the KBS hashes, with SHA-384 for every TEE we support,
//! the RFC 8785 (JCS) serialization of
//! `{"additional-evidence": <string>, "nonce": <challenge nonce>, "tee-pubkey": <JWK>}`,
//! where the JWK is the one kbs-types re-serializes (unknown members dropped).
//! §3.3 says how each TEE carries the 48-byte digest; the accessors below are
//! those forms, so platforms cannot disagree on size or padding.

use anyhow::{Context, Result};
use kbs_types::TeePubKey;
use ring::digest::{digest, SHA384};
use serde::Serialize;

/// Length of the SHA-384 binding digest.
pub const DIGEST_LEN: usize = 48;

/// The object the KBS hashes. Field names are the wire names; JCS sorts them.
#[derive(Serialize)]
struct RuntimeDataClaims<'a> {
    #[serde(rename = "additional-evidence")]
    additional_evidence: &'a str,
    nonce: &'a str,
    #[serde(rename = "tee-pubkey")]
    tee_pubkey: &'a TeePubKey,
}

/// SHA-384 over the canonical runtime data of one attestation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Binding([u8; DIGEST_LEN]);

impl Binding {
    /// Computes the binding for a challenge nonce (echoed verbatim, never
    /// decoded), our public key and the additional-evidence string.
    pub fn compute(nonce: &str, tee_pubkey: &TeePubKey, additional_evidence: &str) -> Result<Self> {
        let canonical = canonical_runtime_data(nonce, tee_pubkey, additional_evidence)?;
        let mut out = [0u8; DIGEST_LEN];
        out.copy_from_slice(digest(&SHA384, &canonical).as_ref());
        Ok(Binding(out))
    }

    /// The 48-byte digest: `sample` (base64), `az-snp-vtpm`/`az-tdx-vtpm`
    /// (TPM qualifying data and NV 0x01400002) take it as is.
    pub fn digest(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }

    /// SNP REPORT_DATA and TDX REPORTDATA: the digest then 16 zero bytes
    /// (the verifiers' `regularize_data(digest, 64)`).
    pub fn report_data_64(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..DIGEST_LEN].copy_from_slice(&self.0);
        out
    }

    /// Generic `tpm` qualifying data: the verifier resizes the digest to 32
    /// bytes, which truncates it.
    pub fn first_32(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.0[..32]);
        out
    }
}

/// The exact bytes that are hashed (RFC 8785 canonical JSON).
pub fn canonical_runtime_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    additional_evidence: &str,
) -> Result<Vec<u8>> {
    let claims = RuntimeDataClaims {
        additional_evidence,
        nonce,
        tee_pubkey,
    };
    serde_json_canonicalizer::to_vec(&claims).context("serialize the runtime data canonically")
}

#[cfg(test)]
mod tests {
    use super::{canonical_runtime_data, Binding};
    use crate::testvec::{hex, jwk, DIGEST, NONCE, SAMPLE_REPORT_DATA};
    use base64::{engine::general_purpose::STANDARD, Engine};
    use kbs_types::TeePubKey;

    const JCS: &str = r#"{"additional-evidence":"","nonce":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWcoGA","y":"0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs"}}"#;

    #[test]
    fn jcs_string_matches_the_spec_vector() {
        let jcs = canonical_runtime_data(NONCE, &jwk(), "").unwrap();
        assert_eq!(String::from_utf8(jcs).unwrap(), JCS);
    }

    #[test]
    fn digest_and_every_tee_form_match_the_spec_vector() {
        let b = Binding::compute(NONCE, &jwk(), "").unwrap();
        assert_eq!(hex(b.digest()), DIGEST);
        assert_eq!(STANDARD.encode(b.digest()), SAMPLE_REPORT_DATA);
        let rd = b.report_data_64();
        assert_eq!(hex(&rd[..48]), DIGEST);
        assert_eq!(rd[48..], [0u8; 16]);
        assert_eq!(hex(&b.first_32()), DIGEST[..64]);
    }

    #[test]
    fn trustee_unit_vector_for_jcs() {
        // attestation-service `parse_runtimedata_json_binding`: key order and
        // nesting are canonicalized before hashing.
        let v: serde_json::Value =
            serde_json::from_str(r#"{"b":1,"a":"test","c":{"d":"e"}}"#).unwrap();
        let jcs = serde_json_canonicalizer::to_vec(&v).unwrap();
        let d = hex(ring::digest::digest(&ring::digest::SHA384, &jcs).as_ref());
        assert!(
            d.starts_with("e71ce8e70d814ba6") && d.ends_with("a78870c3"),
            "{d}"
        );
    }

    #[test]
    fn every_input_changes_the_digest() {
        let base = Binding::compute(NONCE, &jwk(), "").unwrap();
        let other_nonce = Binding::compute(&NONCE.replacen('A', "B", 1), &jwk(), "").unwrap();
        let other_ae = Binding::compute(NONCE, &jwk(), "{}").unwrap();
        let mut other = jwk();
        if let TeePubKey::EC { x, .. } = &mut other {
            x.replace_range(0..1, "G");
        }
        let other_key = Binding::compute(NONCE, &other, "").unwrap();
        assert!(base != other_nonce && base != other_ae && base != other_key);
    }
}

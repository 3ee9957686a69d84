// SPDX-License-Identifier: Apache-2.0
//! JWE decryption of KBS resource responses (compact members in JSON form).
//!
//! kbs-protocol §2.2-2.3, RFC 7516/7518: `ECDH-ES+A256KW` with `A256GCM`.
//! Z = ECDH(our key, epk); KEK = Concat KDF (SHA-256, AlgorithmID = the `alg`
//! value, empty PartyU/PartyV, 256 bits); CEK = AES-256-KW unwrap; then
//! AES-256-GCM with AAD = the ASCII of the received `protected` string
//! (RFC 7516 §5.2 step 14), never a re-serialization of it. Any `alg`, `enc`
//! or curve other than the ones our key asked for is refused.
//! Intermediate secrets (Z, KEK, CEK) live in buffers zeroized on every
//! path. Not wiped, because the libraries give no handle on them: the
//! stack copies of ring's SHA-256 state and digest (the KEK), aes-kw's
//! last unwrapped block (8 bytes of the CEK), p256's shared point (Z), and
//! ring's AES-GCM key schedule.

use aes_kw::KekAes256;
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cvm_attest_ec::SecretKey;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest::{Context, SHA256};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::teekey::{ALG, CRV};

const ENC: &str = "A256GCM";

/// A KBS resource response (kbs-types `Response`), kept as received: the
/// `protected` member must stay a string because it is the AAD.
#[derive(Deserialize)]
pub struct JweResponse {
    pub protected: String,
    pub encrypted_key: String,
    #[serde(default)]
    pub aad: Option<String>,
    pub iv: String,
    pub ciphertext: String,
    pub tag: String,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    enc: String,
    epk: Option<Epk>,
}

#[derive(Deserialize)]
struct Epk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JweError {
    #[error("the KBS encrypted the resource with alg {alg}, enc {enc}, curve {crv}, but this agent asked for {ALG}, {ENC}, {CRV}")]
    Unsupported {
        alg: String,
        enc: String,
        crv: String,
    },
    #[error("the KBS sent a malformed JWE: {0}")]
    Malformed(&'static str),
    #[error("the resource did not decrypt with this session's key ({0}): the response was altered or encrypted to another key")]
    Decrypt(&'static str),
}

fn b64(field: &'static str, value: &str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| JweError::Malformed(field))
}

/// Decrypts `response` with `secret`, returning the raw resource bytes.
pub fn decrypt(secret: &SecretKey, response: &JweResponse) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let header: Header =
        serde_json::from_slice(&b64("protected is not base64url", &response.protected)?)
            .map_err(|_| JweError::Malformed("protected header is not the expected JSON"))?;
    let epk = header.epk.as_ref();
    let crv = epk.map_or("none", |e| e.crv.as_str());
    if header.alg != ALG || header.enc != ENC || crv != CRV || epk.is_some_and(|e| e.kty != "EC") {
        return Err(JweError::Unsupported {
            alg: header.alg.clone(),
            enc: header.enc.clone(),
            crv: crv.to_owned(),
        });
    }
    let epk = epk.ok_or(JweError::Malformed("epk missing"))?;
    let (x, y) = (b64("epk.x", &epk.x)?, b64("epk.y", &epk.y)?);
    let (Ok(x), Ok(y)) = (<[u8; 32]>::try_from(&x[..]), <[u8; 32]>::try_from(&y[..])) else {
        return Err(JweError::Malformed("epk coordinates are not 32 bytes"));
    };
    let epk =
        cvm_attest_ec::peer_point(&x, &y).ok_or(JweError::Malformed("epk is not a P-256 point"))?;

    // Z: the x-coordinate of d·EPK (the SharedSecret zeroizes itself).
    let shared = cvm_attest_ec::diffie_hellman(secret, &epk);
    let kek = concat_kdf(&shared.raw_secret_bytes()[..]);

    let wrapped = b64("encrypted_key", &response.encrypted_key)?;
    if wrapped.len() != 40 {
        return Err(JweError::Malformed("encrypted_key is not 40 bytes"));
    }
    let mut cek = Zeroizing::new([0u8; 32]);
    // By reference: a copy of the KEK would stay on the stack (the cipher's
    // key schedule is wiped on drop, aes's `zeroize` feature).
    KekAes256::new(kek.as_ref().into())
        .unwrap(&wrapped, cek.as_mut())
        .map_err(|_| JweError::Decrypt("AES key unwrap integrity check failed"))?;

    let iv: [u8; 12] = b64("iv", &response.iv)?
        .try_into()
        .map_err(|_| JweError::Malformed("iv is not 12 bytes"))?;
    let tag = b64("tag", &response.tag)?;
    if tag.len() != 16 {
        return Err(JweError::Malformed("tag is not 16 bytes"));
    }
    let mut buf = Zeroizing::new(b64("ciphertext", &response.ciphertext)?);
    buf.extend_from_slice(&tag);

    // RFC 7516 §5.2 step 14: AAD = ASCII(protected) [|| '.' || ASCII(aad)].
    let mut aad = response.protected.clone().into_bytes();
    if let Some(extra) = &response.aad {
        aad.push(b'.');
        aad.extend_from_slice(extra.as_bytes());
    }
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, cek.as_ref())
            .map_err(|_| JweError::Malformed("content key"))?,
    );
    let plain_len = key
        .open_in_place(
            Nonce::assume_unique_for_key(iv),
            Aad::from(aad),
            buf.as_mut_slice(),
        )
        .map_err(|_| JweError::Decrypt("AES-GCM authentication tag mismatch"))?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

/// NIST SP 800-56A Concat KDF, one SHA-256 round (keydatalen = 256).
fn concat_kdf(z: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut ctx = Context::new(&SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    ctx.update(&(ALG.len() as u32).to_be_bytes());
    ctx.update(ALG.as_bytes());
    ctx.update(&0u32.to_be_bytes()); // PartyUInfo: empty
    ctx.update(&0u32.to_be_bytes()); // PartyVInfo: empty
    ctx.update(&256u32.to_be_bytes()); // SuppPubInfo: key length in bits
    let mut kek = Zeroizing::new([0u8; 32]);
    kek.copy_from_slice(ctx.finish().as_ref());
    kek
}

#[cfg(test)]
mod tests {
    use super::{concat_kdf, JweError, JweResponse};
    use crate::teekey::TeeKey;
    use crate::testvec::{unhex, SCALAR};
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

    // kbs-protocol.md §3.7: the KBS-style JWE of "this is a test data".
    const VECTOR: &str = r#"{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJlcGsiOnsiY3J2IjoiUC0yNTYiLCJrdHkiOiJFQyIsIngiOiJTUDF1Mk1QQVNVUEJUaWpWc25KUUlBRi02YkQtSDBiLVd2WF82MkRWWldRIiwieSI6Ijd1anFPV1Ixb3pUZThQbE1NOGhJSnVXeWhjeXFrdGVORmpiQnpQdUNMNWMifX0",
   "encrypted_key":"rkDRFtlntyYpKJL4PHIIB4tslSze19xezu_msScaLSmdeOl3SaSI9w",
   "iv":"CrMGgjA1Zhu426Ic","ciphertext":"uHRhPhl7HlRu54mM8du5CVmlIA","tag":"8mhSyXOa6wmlaaKzYug2Hw"}"#;

    fn key() -> TeeKey {
        TeeKey::from_scalar(&unhex(SCALAR))
    }

    fn vector() -> JweResponse {
        serde_json::from_str(VECTOR).unwrap()
    }

    #[test]
    fn decrypts_the_spec_vector() {
        let plain = key().decrypt(&vector()).unwrap();
        assert_eq!(plain.as_slice(), b"this is a test data");
    }

    #[test]
    fn kek_matches_the_spec_intermediate() {
        let z = unhex("585ce3efc291aa133634a28baf80fe3bde29322501cc9281e6d6e9f0c1907999");
        assert_eq!(
            concat_kdf(&z).to_vec(),
            unhex("a23dd7520954cd884c28f9d8731bf6145e1f242c9c61eec20fe0395fce36b49e")
        );
    }

    #[test]
    fn tampering_is_detected() {
        let mut v = vector();
        v.ciphertext = "vHRhPhl7HlRu54mM8du5CVmlIA".into();
        assert!(matches!(key().decrypt(&v), Err(JweError::Decrypt(_))));
        let mut v = vector();
        v.encrypted_key = "skDRFtlntyYpKJL4PHIIB4tslSze19xezu_msScaLSmdeOl3SaSI9w".into();
        assert!(matches!(key().decrypt(&v), Err(JweError::Decrypt(_))));
        // Another key cannot open it.
        let other = TeeKey::generate().unwrap();
        assert!(matches!(
            other.decrypt(&vector()),
            Err(JweError::Decrypt(_))
        ));
    }

    #[test]
    fn the_aad_is_the_received_protected_string() {
        // Same header JSON with a space: a re-serializing client would accept
        // it; RFC 7516 says the AAD is the string as received, so it must fail.
        let mut v = vector();
        let json = String::from_utf8(URL_SAFE_NO_PAD.decode(&v.protected).unwrap()).unwrap();
        v.protected = URL_SAFE_NO_PAD.encode(json.replacen(",", ", ", 1));
        assert!(matches!(key().decrypt(&v), Err(JweError::Decrypt(_))));
    }

    #[test]
    fn refuses_other_algorithms_and_curves() {
        for header in [
            r#"{"alg":"RSA-OAEP-256","enc":"A256GCM"}"#,
            r#"{"alg":"ECDH-ES+A256KW","enc":"A128GCM","epk":{"crv":"P-256","kty":"EC","x":"","y":""}}"#,
            r#"{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"P-521","kty":"EC","x":"","y":""}}"#,
            r#"{"alg":"ECDH-ES","enc":"A256GCM","epk":{"crv":"P-256","kty":"EC","x":"","y":""}}"#,
        ] {
            let mut v = vector();
            v.protected = URL_SAFE_NO_PAD.encode(header);
            let err = key().decrypt(&v).unwrap_err();
            assert!(
                matches!(err, JweError::Unsupported { .. }),
                "{header}: {err}"
            );
        }
    }

    #[test]
    fn malformed_members_are_named() {
        let mut v = vector();
        v.iv = "CrMG".into();
        assert_eq!(
            key().decrypt(&v).unwrap_err().to_string(),
            "the KBS sent a malformed JWE: iv is not 12 bytes"
        );
        let mut v = vector();
        v.protected = "%%%".into();
        assert!(key()
            .decrypt(&v)
            .unwrap_err()
            .to_string()
            .contains("protected is not base64url"));
    }

    #[test]
    fn an_epk_off_the_curve_or_of_the_wrong_size_is_refused() {
        let header = |x: &[u8], y: &[u8]| {
            let (x, y) = (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y));
            URL_SAFE_NO_PAD.encode(format!(
                r#"{{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}}}"#
            ))
        };
        for (x, y, reason) in [
            (&[1u8; 32][..], &[2u8; 32][..], "epk is not a P-256 point"),
            (&[0; 32], &[0; 32], "epk is not a P-256 point"),
            (&[1; 31], &[2; 32], "epk coordinates are not 32 bytes"),
            (&[1; 32], &[2; 33], "epk coordinates are not 32 bytes"),
        ] {
            let mut v = vector();
            v.protected = header(x, y);
            assert_eq!(
                key().decrypt(&v).unwrap_err().to_string(),
                format!("the KBS sent a malformed JWE: {reason}")
            );
        }
    }
}

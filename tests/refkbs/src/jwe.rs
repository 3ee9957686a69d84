// SPDX-License-Identifier: Apache-2.0
//! JWE encryption of resources to the TEE key (kbs-protocol.md §2, recipe §2.3 in
//! reverse; Trustee `kbs/src/jwe/mod.rs` `ecdh_es_a256kw_p256`).
//!
//! Only `kty=EC, crv=P-256, alg=ECDH-ES+A256KW` is supported; anything else is a
//! `JweError` for the caller. Output is the kbs-types `Response` JSON
//! (`protected`, `encrypted_key`, `iv`, `ciphertext`, `tag`, base64url without padding).

use aes_kw::KekAes256;
use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::TeePubKey;
use p256::elliptic_curve::sec1::{FromEncodedPoint as _, ToEncodedPoint as _};
use p256::{EncodedPoint, PublicKey};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::agreement::{agree_ephemeral, EphemeralPrivateKey, UnparsedPublicKey, ECDH_P256};
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

pub const ALG: &str = "ECDH-ES+A256KW";
pub const ENC: &str = "A256GCM";

/// The protected header, in the exact member order Trustee emits.
#[derive(Serialize)]
struct Protected<'a> {
    alg: &'a str,
    enc: &'a str,
    epk: Epk<'a>,
}

#[derive(Serialize)]
struct Epk<'a> {
    crv: &'a str,
    kty: &'a str,
    x: String,
    y: String,
}

/// kbs-types `Response` without `aad` (the KBS always leaves it out).
#[derive(Serialize)]
struct JweJson {
    protected: String,
    encrypted_key: String,
    iv: String,
    ciphertext: String,
    tag: String,
}

/// Encrypts `plaintext` to `key` with fresh randomness. The ephemeral ECDH
/// runs on ring's P-256 (one-shot keys are exactly what it offers, and it is
/// several times faster than the portable code); the deterministic
/// [`encrypt_with`] used by the spec-vector test shares everything after Z.
pub fn encrypt(key: &TeePubKey, plaintext: &[u8]) -> Result<String> {
    let tee_key = tee_public_key(key)?.to_encoded_point(false);
    let rng = SystemRandom::new();
    let mut cek = [0u8; 32];
    let mut iv = [0u8; 12];
    rng.fill(&mut cek).map_err(|_| anyhow!("generate CEK"))?;
    rng.fill(&mut iv).map_err(|_| anyhow!("generate IV"))?;
    let ephemeral = EphemeralPrivateKey::generate(&ECDH_P256, &rng)
        .map_err(|_| anyhow!("generate ephemeral key"))?;
    let epk = ephemeral
        .compute_public_key()
        .map_err(|_| anyhow!("compute ephemeral public key"))?;
    // Uncompressed SEC1: 0x04 || x || y.
    let (ex, ey) = (&epk.as_ref()[1..33], &epk.as_ref()[33..65]);
    let peer = UnparsedPublicKey::new(&ECDH_P256, tee_key.as_bytes());
    agree_ephemeral(ephemeral, &peer, |z| seal(z, ex, ey, plaintext, &cek, &iv))
        .map_err(|_| anyhow!("ECDH with the TEE key"))?
}

/// Decodes a P-256 TEE key, enforcing Trustee's accepted `crv`/`alg` and 32-byte coordinates.
pub fn tee_public_key(key: &TeePubKey) -> Result<PublicKey> {
    let TeePubKey::EC { crv, alg, x, y } = key else {
        bail!("unsupported tee-pubkey key type (only EC P-256 is implemented)");
    };
    if crv != "P-256" || alg != ALG {
        bail!("unsupported tee-pubkey crv {crv:?} / alg {alg:?}");
    }
    let coordinate = |name: &str, value: &str| -> Result<[u8; 32]> {
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .with_context(|| format!("decode tee-pubkey {name}"))?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map_err(|_| anyhow!("tee-pubkey {name} is {} bytes, not 32", bytes.len()))
    };
    let (x, y) = (coordinate("x", x)?, coordinate("y", y)?);
    let point = EncodedPoint::from_affine_coordinates(&x.into(), &y.into(), false);
    Option::from(PublicKey::from_encoded_point(&point))
        .ok_or_else(|| anyhow!("tee-pubkey is not a point on P-256"))
}

/// Concat KDF (NIST SP 800-56A) for ECDH-ES+A256KW with empty apu/apv, 256-bit output.
pub fn concat_kdf(z: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(4 + z.len() + 4 + ALG.len() + 12);
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(z);
    input.extend_from_slice(&(ALG.len() as u32).to_be_bytes());
    input.extend_from_slice(ALG.as_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&0u32.to_be_bytes());
    input.extend_from_slice(&256u32.to_be_bytes());
    let mut kek = [0u8; 32];
    kek.copy_from_slice(digest(&SHA256, &input).as_ref());
    kek
}

/// Deterministic [`encrypt`] for the spec vector: the caller supplies the
/// ephemeral key, CEK and IV.
#[cfg(test)]
pub fn encrypt_with(
    key: &TeePubKey,
    plaintext: &[u8],
    ephemeral: &p256::SecretKey,
    cek: &[u8; 32],
    iv: &[u8; 12],
) -> Result<String> {
    let tee_key = tee_public_key(key)?;
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), tee_key.as_affine());
    let epk = ephemeral.public_key().to_encoded_point(false);
    let (Some(ex), Some(ey)) = (epk.x(), epk.y()) else {
        bail!("ephemeral public key has no affine coordinates");
    };
    seal(&shared.raw_secret_bytes()[..], ex, ey, plaintext, cek, iv)
}

/// Everything after the ECDH: KEK, key wrap, protected header, AES-GCM.
fn seal(
    z: &[u8],
    ex: &[u8],
    ey: &[u8],
    plaintext: &[u8],
    cek: &[u8; 32],
    iv: &[u8; 12],
) -> Result<String> {
    let kek = concat_kdf(z);
    let mut encrypted_key = [0u8; 40];
    KekAes256::new(&kek.into())
        .wrap(cek, &mut encrypted_key)
        .map_err(|e| anyhow!("wrap CEK: {e}"))?;
    let header = Protected {
        alg: ALG,
        enc: ENC,
        epk: Epk {
            crv: "P-256",
            kty: "EC",
            x: URL_SAFE_NO_PAD.encode(ex),
            y: URL_SAFE_NO_PAD.encode(ey),
        },
    };
    let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header)?);

    let gcm = UnboundKey::new(&AES_256_GCM, cek).map_err(|_| anyhow!("load CEK"))?;
    let mut buffer = plaintext.to_vec();
    let tag = LessSafeKey::new(gcm)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(*iv),
            Aad::from(protected.as_bytes()),
            &mut buffer,
        )
        .map_err(|_| anyhow!("AES-256-GCM seal"))?;

    let jwe = JweJson {
        protected,
        encrypted_key: URL_SAFE_NO_PAD.encode(encrypted_key),
        iv: URL_SAFE_NO_PAD.encode(iv),
        ciphertext: URL_SAFE_NO_PAD.encode(&buffer),
        tag: URL_SAFE_NO_PAD.encode(tag.as_ref()),
    };
    Ok(serde_json::to_string(&jwe)?)
}

#[cfg(test)]
mod tests {
    use kbs_types::TeePubKey;
    use p256::SecretKey;
    use ring::digest::{digest, SHA256};

    use super::{encrypt_with, tee_public_key};

    fn vector_key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWcoGA".into(),
            y: "0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs".into(),
        }
    }

    fn sha256(data: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, data).as_ref());
        out
    }

    /// kbs-protocol.md §3.7, byte for byte.
    #[test]
    fn worked_vector() {
        let mut scalar = sha256(b"kbs-ephemeral");
        scalar[0] &= 0x7f;
        let ephemeral = SecretKey::from_slice(&scalar).expect("scalar");
        let cek = sha256(b"cek");
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&sha256(b"iv")[..12]);
        let jwe = encrypt_with(&vector_key(), b"this is a test data", &ephemeral, &cek, &iv)
            .expect("encrypt");
        assert_eq!(
            jwe,
            concat!(
                r#"{"protected":"eyJhbGciOiJFQ0RILUVTK0EyNTZLVyIsImVuYyI6IkEyNTZHQ00iLCJlcGsiOnsiY3J2IjoiUC0yNTYiLCJrdHkiOiJFQyIsIngiOiJTUDF1Mk1QQVNVUEJUaWpWc25KUUlBRi02YkQtSDBiLVd2WF82MkRWWldRIiwieSI6Ijd1anFPV1Ixb3pUZThQbE1NOGhJSnVXeWhjeXFrdGVORmpiQnpQdUNMNWMifX0","#,
                r#""encrypted_key":"rkDRFtlntyYpKJL4PHIIB4tslSze19xezu_msScaLSmdeOl3SaSI9w","#,
                r#""iv":"CrMGgjA1Zhu426Ic","ciphertext":"uHRhPhl7HlRu54mM8du5CVmlIA","tag":"8mhSyXOa6wmlaaKzYug2Hw"}"#
            )
        );
    }

    #[test]
    fn rejects_unsupported_keys() {
        let cases = [
            TeePubKey::EC {
                crv: "P-384".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "AA".into(),
                y: "AA".into(),
            },
            TeePubKey::RSA {
                alg: "RSA-OAEP".into(),
                k_mod: "AQAB".into(),
                k_exp: "AQAB".into(),
            },
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWcoGA=".into(),
                y: "0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs".into(),
            },
            TeePubKey::EC {
                crv: "P-256".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWc".into(),
                y: "0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs".into(),
            },
        ];
        for key in cases {
            assert!(tee_public_key(&key).is_err(), "{key:?}");
        }
        assert!(tee_public_key(&vector_key()).is_ok());
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The TEE key: a fresh EC P-256 key per run, bound into the evidence, to
//! which the KBS encrypts every resource of the session.
//!
//! kbs-protocol §2.1 and §9 item 4: `{"kty":"EC","crv":"P-256",
//! "alg":"ECDH-ES+A256KW","x","y"}`, coordinates 32 bytes base64url without
//! padding, no other members (the KBS hashes its re-serialization).
//! The private scalar lives in `p256::SecretKey`, which zeroizes on drop; it
//! is never serialized, logged or written anywhere.

use anyhow::{anyhow, Result};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use cvm_attest_ec::SecretKey;
use kbs_types::TeePubKey;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::jwe::{self, JweResponse};

/// The only key-management algorithm this agent asks for.
pub const ALG: &str = "ECDH-ES+A256KW";
/// The only curve this agent uses.
pub const CRV: &str = "P-256";

pub struct TeeKey {
    secret: SecretKey,
}

impl TeeKey {
    /// Draws a new key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let rng = SystemRandom::new();
        // A random 256-bit string is a valid scalar unless it is zero or
        // >= n (probability about 2^-32); draw again in that case.
        for _ in 0..8 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rng.fill(bytes.as_mut())
                .map_err(|_| anyhow!("read random bytes for the TEE key"))?;
            if let Ok(secret) = SecretKey::from_slice(bytes.as_ref()) {
                return Ok(TeeKey { secret });
            }
        }
        Err(anyhow!("draw a valid P-256 scalar for the TEE key"))
    }

    #[cfg(test)]
    pub fn from_scalar(bytes: &[u8]) -> Self {
        TeeKey {
            secret: SecretKey::from_slice(bytes).expect("valid scalar"),
        }
    }

    /// The JWK sent as `runtime-data.tee-pubkey`.
    pub fn public_jwk(&self) -> TeePubKey {
        let point = cvm_attest_ec::public_key(&self.secret);
        // Uncompressed points always carry both coordinates, 32 bytes each,
        // left-padded big-endian as the KBS requires.
        let (x, y) = (point.x().map(|c| c.to_vec()), point.y().map(|c| c.to_vec()));
        TeePubKey::EC {
            crv: CRV.into(),
            alg: ALG.into(),
            x: URL_SAFE_NO_PAD.encode(x.unwrap_or_default()),
            y: URL_SAFE_NO_PAD.encode(y.unwrap_or_default()),
        }
    }

    /// Decrypts a resource the KBS encrypted to this key.
    pub fn decrypt(&self, response: &JweResponse) -> Result<Zeroizing<Vec<u8>>, jwe::JweError> {
        jwe::decrypt(&self.secret, response)
    }
}

#[cfg(test)]
mod tests {
    use super::TeeKey;
    use crate::testvec::{jwk, unhex, SCALAR};
    use kbs_types::TeePubKey;

    #[test]
    fn jwk_of_the_spec_vector_key() {
        let key = TeeKey::from_scalar(&unhex(SCALAR));
        let ours = serde_json::to_string(&key.public_jwk()).unwrap();
        assert_eq!(ours, serde_json::to_string(&jwk()).unwrap());
        // Exactly the members and order upstream's client sends (wire/ok capture).
        assert!(
            ours.starts_with(r#"{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":""#),
            "{ours}"
        );
    }

    #[test]
    fn fresh_keys_differ_and_have_43_char_coordinates() {
        let (a, b) = (TeeKey::generate().unwrap(), TeeKey::generate().unwrap());
        let (TeePubKey::EC { x: xa, y: ya, .. }, TeePubKey::EC { x: xb, .. }) =
            (a.public_jwk(), b.public_jwk())
        else {
            panic!("EC key expected");
        };
        assert_ne!(xa, xb);
        assert_eq!((xa.len(), ya.len()), (43, 43));
    }
}

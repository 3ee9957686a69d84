// SPDX-License-Identifier: Apache-2.0
//! The two P-256 scalar multiplications of cvm-attest: the TEE key's public
//! point (once per session) and ECDH with the KBS's ephemeral key (once per
//! resource). They are most of the agent's CPU time.
//!
//! Why a crate of its own: the agent is built with `opt-level = "z"`, and
//! Rust compiles generic code (all of `primeorder`'s point arithmetic) in the
//! crate that instantiates it, at that crate's level: a profile override on
//! `primeorder` or `p256` never reached it. Instantiated here, under this
//! crate's `opt-level = 3` (the workspace `Cargo.toml`), a scalar
//! multiplication takes 1.5 M instructions instead of 2.0 M, for 3 KB of
//! binary (README, Benchmarks).

use p256::elliptic_curve::zeroize::Zeroizing;
pub use p256::{ecdh::SharedSecret, PublicKey, SecretKey};

/// `secret`·G.
#[inline(never)]
pub fn public_key(secret: &SecretKey) -> PublicKey {
    secret.public_key()
}

/// The x-coordinate of `secret`·`peer` (the `SharedSecret` zeroizes itself).
#[inline(never)]
pub fn diffie_hellman(secret: &SecretKey, peer: &PublicKey) -> SharedSecret {
    // The scalar is copied out of the key: wipe the copy too.
    let scalar = Zeroizing::new(secret.to_nonzero_scalar());
    p256::ecdh::diffie_hellman(&*scalar, peer.as_affine())
}

#[cfg(test)]
mod tests {
    use super::{diffie_hellman, public_key, SecretKey};

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    /// 1·G is P-256's base point (SEC 2 §2.4.2, FIPS 186-4 D.1.2.3).
    #[test]
    fn the_public_key_of_one_is_the_base_point() {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let mut one = [0u8; 32];
        one[31] = 1;
        let g = public_key(&SecretKey::from_slice(&one).unwrap()).to_encoded_point(false);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(g.x().unwrap()),
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        );
        assert_eq!(
            hex(g.y().unwrap()),
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        );
    }

    #[test]
    fn both_sides_agree() {
        let (a, b) = (key(1), key(2));
        let ab = diffie_hellman(&a, &public_key(&b));
        let ba = diffie_hellman(&b, &public_key(&a));
        assert_eq!(ab.raw_secret_bytes(), ba.raw_secret_bytes());
        let ac = diffie_hellman(&a, &public_key(&key(3)));
        assert_ne!(ab.raw_secret_bytes(), ac.raw_secret_bytes());
    }
}

// SPDX-License-Identifier: Apache-2.0
//! The two P-256 scalar multiplications of cvm-attest: the TEE key's public
//! point (once per session, from a table: `fixed_base`) and ECDH with the
//! KBS's ephemeral key (once per resource). They are most of the agent's CPU
//! time.
//!
//! Why a crate of its own: the agent is built with `opt-level = "z"`, and
//! Rust compiles generic code (all of `primeorder`'s point arithmetic) in the
//! crate that instantiates it, at that crate's level: a profile override on
//! `primeorder` or `p256` never reached it. Instantiated here, under this
//! crate's `opt-level = 3` (the workspace `Cargo.toml`), a scalar
//! multiplication takes 1.5 M instructions instead of 2.0 M, for 3 KB of
//! binary (README, Benchmarks).

mod fixed_base;

use p256::elliptic_curve::{
    sec1::{FromEncodedPoint, ToEncodedPoint},
    zeroize::Zeroizing,
};
pub use p256::{ecdh::SharedSecret, AffinePoint, EncodedPoint, SecretKey};

/// `secret`·G, SEC1-encoded and uncompressed (`04 || x || y`).
///
/// An encoded point and not a `p256::PublicKey`: making one checks that the
/// point is not the identity by comparing projective points, which costs two
/// field inversions, 0.13 M instructions. A secret key is neither zero nor
/// above the group order, so its public point is never the identity.
#[inline(never)]
pub fn public_key(secret: &SecretKey) -> EncodedPoint {
    let scalar = Zeroizing::new(secret.to_bytes());
    fixed_base::mul_base(&scalar)
        .to_affine()
        .to_encoded_point(false)
}

/// The point (`x`, `y`), big-endian coordinates, if it is on the curve.
///
/// Not a `p256::PublicKey`, for the two inversions named above. An affine
/// point decoded from coordinates is never the identity, and P-256 has no
/// other point of small order: ECDH with it is safe.
#[inline(never)]
pub fn peer_point(x: &[u8; 32], y: &[u8; 32]) -> Option<AffinePoint> {
    let encoded = EncodedPoint::from_affine_coordinates(&(*x).into(), &(*y).into(), false);
    AffinePoint::from_encoded_point(&encoded).into()
}

/// The x-coordinate of `secret`·`peer` (the `SharedSecret` zeroizes itself).
#[inline(never)]
pub fn diffie_hellman(secret: &SecretKey, peer: &AffinePoint) -> SharedSecret {
    // The scalar is copied out of the key: wipe the copy too.
    let scalar = Zeroizing::new(secret.to_nonzero_scalar());
    p256::ecdh::diffie_hellman(&*scalar, peer)
}

#[cfg(test)]
mod tests {
    use super::{diffie_hellman, peer_point, public_key, AffinePoint, SecretKey};

    fn key(byte: u8) -> SecretKey {
        SecretKey::from_slice(&[byte; 32]).unwrap()
    }

    /// 1·G is P-256's base point (SEC 2 §2.4.2, FIPS 186-4 D.1.2.3).
    #[test]
    fn the_public_key_of_one_is_the_base_point() {
        let mut one = [0u8; 32];
        one[31] = 1;
        let g = public_key(&SecretKey::from_slice(&one).unwrap());
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

    fn point(secret: &SecretKey) -> AffinePoint {
        let encoded = public_key(secret);
        let (x, y) = (encoded.x().unwrap(), encoded.y().unwrap());
        peer_point(&(*x).into(), &(*y).into()).expect("a public key is on the curve")
    }

    #[test]
    fn both_sides_agree() {
        let (a, b) = (key(1), key(2));
        let ab = diffie_hellman(&a, &point(&b));
        let ba = diffie_hellman(&b, &point(&a));
        assert_eq!(ab.raw_secret_bytes(), ba.raw_secret_bytes());
        let ac = diffie_hellman(&a, &point(&key(3)));
        assert_ne!(ab.raw_secret_bytes(), ac.raw_secret_bytes());
    }

    #[test]
    fn a_point_off_the_curve_is_refused() {
        let on = public_key(&key(1));
        let (x, y): ([u8; 32], [u8; 32]) = ((*on.x().unwrap()).into(), (*on.y().unwrap()).into());
        assert!(peer_point(&x, &y).is_some());
        let mut y_off = y;
        y_off[31] ^= 1;
        assert!(peer_point(&x, &y_off).is_none());
        assert!(peer_point(&[0; 32], &[0; 32]).is_none());
        // Coordinates of p or more are not field elements.
        assert!(peer_point(&[0xff; 32], &y).is_none());
    }
}

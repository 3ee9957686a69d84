// SPDX-License-Identifier: Apache-2.0
//! `scalar`·G from a table of multiples of G, in constant time.
//!
//! `p256` multiplies the base point like any other point: 64 rounds of four
//! doublings and one addition, 1.5 M instructions. With G's multiples
//! precomputed, 64 additions do: the scalar is read as 64 four-bit digits
//! d₀…d₆₃ (least significant first), and `scalar`·G = Σ dᵢ·16ⁱ·G, where
//! each dᵢ·16ⁱ·G is an entry of the table (`base_table.bin`, 60 KB in the
//! binary; ring and BoringSSL keep such tables too).
//!
//! Which entry a digit picks is secret. Every entry of a window is read,
//! and the wanted one kept with a mask (`subtle`), so that neither the
//! branches nor the cache lines touched depend on the scalar. The points are
//! added with `p256`'s complete formulas, which have no exceptional cases.
//!
//! The table is data, not code: the test `the_table_is_what_p256_computes`
//! recomputes every entry with `p256`'s own arithmetic, and writes the file
//! afresh when run with `CVM_ATTEST_EC_WRITE_TABLE=1`.

use p256::elliptic_curve::{
    sec1::FromEncodedPoint,
    subtle::{ConditionallySelectable, ConstantTimeEq},
    zeroize::Zeroizing,
};
use p256::{AffinePoint, EncodedPoint, FieldBytes, ProjectivePoint};

/// Four-bit windows of a 256-bit scalar.
const WINDOWS: usize = 64;
/// Entries of a window: digits 1 to 15 (digit 0 adds nothing).
const ENTRIES: usize = 15;
/// An entry: the affine point's x and y, 32 bytes each, big-endian.
const POINT: usize = 64;

const TABLE_LEN: usize = WINDOWS * ENTRIES * POINT;
static TABLE: &[u8; TABLE_LEN] = include_bytes!("base_table.bin");

/// `scalar`·G, for a big-endian scalar below the group order.
pub(crate) fn mul_base(scalar: &FieldBytes) -> ProjectivePoint {
    let mut sum = Zeroizing::new(ProjectivePoint::IDENTITY);
    for window in 0..WINDOWS {
        let digit = (scalar[31 - window / 2] >> (4 * (window % 2))) & 0xf;
        let entry = Zeroizing::new(select(window, digit));
        *sum += *entry;
    }
    *sum
}

/// Entry `digit` of `window`, read in constant time; the identity for 0.
fn select(window: usize, digit: u8) -> AffinePoint {
    let mut words = Zeroizing::new([0u64; POINT / 8]);
    let entries = TABLE[window * ENTRIES * POINT..][..ENTRIES * POINT].chunks_exact(POINT);
    for (entry, bytes) in (1u8..).zip(entries) {
        let take = digit.ct_eq(&entry);
        for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            word.conditional_assign(&u64::from_le_bytes(le), take);
        }
    }
    let mut coordinates = Zeroizing::new([0u8; POINT]);
    for (chunk, word) in coordinates.chunks_exact_mut(8).zip(words.iter()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    let (mut x, mut y) = (
        Zeroizing::new(FieldBytes::default()),
        Zeroizing::new(FieldBytes::default()),
    );
    x.copy_from_slice(&coordinates[..POINT / 2]);
    y.copy_from_slice(&coordinates[POINT / 2..]);
    let encoded = Zeroizing::new(EncodedPoint::from_affine_coordinates(&x, &y, false));
    // Digit 0 kept no entry: (0, 0) is not on the curve, so it decodes to
    // nothing, and the identity stands in. Both paths run the same code.
    AffinePoint::from_encoded_point(&encoded).unwrap_or(AffinePoint::IDENTITY)
}

#[cfg(test)]
mod tests {
    use super::{mul_base, ENTRIES, POINT, TABLE, TABLE_LEN, WINDOWS};
    use p256::elliptic_curve::{sec1::ToEncodedPoint, Field};
    use p256::{FieldBytes, NonZeroScalar, ProjectivePoint, Scalar};

    /// The table as `p256` computes it: entry d of window i is d·16ⁱ·G.
    fn compute_table() -> Vec<u8> {
        let mut table = Vec::with_capacity(TABLE_LEN);
        let mut base = ProjectivePoint::GENERATOR;
        for _ in 0..WINDOWS {
            let mut multiple = base;
            for _ in 0..ENTRIES {
                let point = multiple.to_affine().to_encoded_point(false);
                table.extend_from_slice(&point.as_bytes()[1..]);
                multiple += base;
            }
            // `multiple` is now 16·base.
            base = multiple;
        }
        table
    }

    #[test]
    fn the_table_is_what_p256_computes() {
        let computed = compute_table();
        assert_eq!(computed.len(), TABLE_LEN);
        if std::env::var_os("CVM_ATTEST_EC_WRITE_TABLE").is_some() {
            let path = concat!(env!("CARGO_MANIFEST_DIR"), "/base_table.bin");
            std::fs::write(path, &computed).unwrap();
        }
        let first_wrong = computed.iter().zip(TABLE.iter()).position(|(a, b)| a != b);
        assert!(
            first_wrong.is_none(),
            "base_table.bin differs from p256's arithmetic in entry {} of window {}: \
             run `CVM_ATTEST_EC_WRITE_TABLE=1 cargo test -p cvm-attest-ec` to write it again",
            first_wrong.unwrap_or(0) / POINT % ENTRIES + 1,
            first_wrong.unwrap_or(0) / POINT / ENTRIES,
        );
    }

    fn scalar_from_hex(hex: &str) -> NonZeroScalar {
        let bytes: Vec<u8> = (0..64)
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let bytes: [u8; 32] = bytes.try_into().unwrap();
        NonZeroScalar::from_repr(bytes.into()).unwrap()
    }

    fn agrees(scalar: &Scalar) {
        let expected = (ProjectivePoint::GENERATOR * scalar).to_affine();
        let got = mul_base(&scalar.to_bytes()).to_affine();
        assert_eq!(got, expected, "scalar {:x?}", scalar.to_bytes());
    }

    /// Scalars whose digits reach every entry: each digit 1 to 15 in every
    /// window (0x11…1 to 0xee…e, and 0x0f…f), 0 in all but one, the largest
    /// scalar (n - 1) and a thousand others.
    #[test]
    fn agrees_with_the_generic_multiplication() {
        for hex in [
            "0000000000000000000000000000000000000000000000000000000000000001",
            "000000000000000000000000000000000000000000000000000000000000000f",
            "0000000000000000000000000000000000000000000000000000000000000010",
            "f000000000000000000000000000000000000000000000000000000000000000",
            "0fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "123456789abcdef0fedcba9876543210123456789abcdef0fedcba9876543210",
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632550",
        ] {
            agrees(&scalar_from_hex(hex));
        }
        // 0x11…1 to 0xee…e; 0xff…f is above n, and "0fff…" has its digits.
        for digit in 1..15u8 {
            agrees(&NonZeroScalar::from_repr([digit * 0x11; 32].into()).unwrap());
        }
        // Deterministic, so that a failure can be replayed.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..1000 {
            agrees(&Scalar::random(&mut rng));
        }
    }

    #[test]
    fn zero_is_the_identity() {
        assert_eq!(mul_base(&FieldBytes::default()), ProjectivePoint::IDENTITY);
    }

    struct XorShift(u64);
    impl p256::elliptic_curve::rand_core::RngCore for XorShift {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(8) {
                let word = self.next_u64().to_le_bytes();
                chunk.copy_from_slice(&word[..chunk.len()]);
            }
        }
        fn try_fill_bytes(
            &mut self,
            dest: &mut [u8],
        ) -> Result<(), p256::elliptic_curve::rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
}

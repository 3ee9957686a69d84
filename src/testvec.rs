// SPDX-License-Identifier: Apache-2.0
//! The worked vector of kbs-protocol.md §3.7, shared by the unit tests of
//! the binding, the TEE key, the JWE decryption and the sample evidence.

use kbs_types::TeePubKey;

/// The challenge nonce: bytes 0x00..0x1f in base64.
pub const NONCE: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// The TEE key's private scalar.
pub const SCALAR: &str = "00f79470af24f054cde1aedccd1b381fa688c5d4571d93c502930bed27f73ca0";
/// SHA-384 of the canonical runtime data.
pub const DIGEST: &str = "5464382c0169bfacd7b5380146bed959857ed95f56bd3863815f4f2b0060b5d89b5fbed6314dc42eb4e0039a38c7a9a7";
/// The sample TEE's report_data: base64 of the digest.
pub const SAMPLE_REPORT_DATA: &str =
    "VGQ4LAFpv6zXtTgBRr7ZWYV+2V9WvThjgV9PKwBgtdibX77WMU3ELrTgA5o4x6mn";

/// The TEE public key as a kbs-types JWK.
pub fn jwk() -> TeePubKey {
    TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ECDH-ES+A256KW".into(),
        x: "FvCPUXLoAJdGS7r0YU1mnMiD2nzn7OjQP3erVPWcoGA".into(),
        y: "0b31ECFNLbSgcm1Jgks9gp40jbJbrutK33Uu7pjdvvs".into(),
    }
}

pub fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

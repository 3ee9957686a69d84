// SPDX-License-Identifier: Apache-2.0
//! What the agent and its TPM helper say to each other: one JSON object per
//! line, a [`Request`] on the helper's stdin, a [`Response`] on its stdout.
//! The helper answers its first line ([`Response::Ready`] or
//! [`Response::Error`]) once the TPM is open, then one line per request,
//! and exits when its stdin closes. Nothing secret crosses: report data,
//! quotes, PCR values and HCL reports are all public.
//!
//! Shared by both binaries (`#[path]`-included by the helper), so it names
//! no other module.

use serde::{Deserialize, Serialize};

/// A quote and what the verifier needs with it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Quote {
    /// Marshalled TPMS_ATTEST (what was signed).
    pub message: Vec<u8>,
    /// Marshalled TPMT_SIGNATURE.
    pub signature: Vec<u8>,
    /// The raw RSASSA signature bytes.
    pub raw_signature: Vec<u8>,
    /// SHA-256 PCRs 0..23 in order.
    pub pcrs: Vec<[u8; 32]>,
    /// The signing AK's RSA modulus (big-endian) and public exponent.
    pub ak_modulus: Vec<u8>,
    pub ak_exponent: u32,
}

/// Where the attestation key comes from.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub enum AkSource {
    /// A key persisted at this handle; it must exist.
    Persistent(u32),
    /// The key at this handle, or else a fresh AK under the EK.
    PersistentOrCreate(u32),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// TPM2_Quote over SHA-256 PCRs 0-23 with `qualifying` as extraData.
    Quote {
        source: AkSource,
        qualifying: Vec<u8>,
        rsassa: bool,
    },
    /// Whether an NV index is defined.
    NvDefined { index: u32 },
    /// Read a whole NV index with owner authorization.
    NvRead { index: u32 },
    /// (Re)define an owner NV index with the size of `data` and write it.
    NvWrite { index: u32, data: Vec<u8> },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// The TPM is open.
    Ready,
    Quote(Quote),
    Defined(bool),
    NvData(Vec<u8>),
    Written,
    /// The request failed: the whole error chain, on one line.
    Error(String),
}

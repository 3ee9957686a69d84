// SPDX-License-Identifier: Apache-2.0
//! Exit codes, part of the interface (README "Exit codes"):
//! 0 done; 1 any other failure; 2 bad arguments (found before any traffic);
//! 3 the KBS refused (policy, attestation, missing resource, protocol);
//! 4 the KBS unreachable or failing within the deadline; 5 no usable TEE
//! (none detected, or the one named has no working interface).

use crate::evidence::{NoPlatform, Unavailable};
use crate::http::TransportError;
use crate::jwe::JweError;
use crate::problem::KbsError;

pub const SUCCESS: u8 = 0;
pub const FAILURE: u8 = 1;
pub const USAGE: u8 = 2;
pub const REFUSED: u8 = 3;
pub const UNREACHABLE: u8 = 4;
pub const NO_TEE: u8 = 5;

/// Marks an error in the command line's values.
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Usage(pub anyhow::Error);

/// A failure already shown on stdout (e.g. `probe` found nothing): exit with
/// the code, log nothing more.
#[derive(Debug, thiserror::Error)]
#[error("exit {0}")]
pub struct Shown(pub u8);

/// The exit code for an error chain.
pub fn code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(Shown(code)) = cause.downcast_ref::<Shown>() {
            return *code;
        }
        if cause.is::<Usage>() {
            return USAGE;
        }
        if let Some(kbs) = cause.downcast_ref::<KbsError>() {
            return match kbs {
                KbsError::ServerFault { .. }
                | KbsError::Unexpected { .. }
                | KbsError::Malformed { .. } => UNREACHABLE,
                _ => REFUSED,
            };
        }
        if cause.is::<JweError>() {
            return REFUSED;
        }
        if cause.is::<NoPlatform>() || cause.is::<Unavailable>() {
            return NO_TEE;
        }
        if cause.is::<TransportError>() {
            return UNREACHABLE;
        }
    }
    FAILURE
}

// SPDX-License-Identifier: Apache-2.0
//! Platforms: where evidence comes from. A closed enum, one file each.
//!
//! Each platform turns the binding (computed once, in `binding.rs`) into the
//! `primary_evidence` JSON its Trustee verifier takes (kbs-protocol §4).
//! Without `--tee` the platform is detected by `probe.rs`'s checks; the
//! `sample` test TEE is only ever used when named, never as a fallback.

mod sample;
mod snp;
mod tdx;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::binding::Binding;
use crate::probe;

/// A TEE this agent can produce evidence for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// AMD SEV-SNP: an attestation report at VMPL 0 (configfs-tsm or /dev/sev-guest)
    Snp,
    /// Intel TDX: a TD quote through configfs-tsm, with the CC event log
    Tdx,
    /// Trustee's `sample` test TEE: no hardware, no signature; for test KBSes only
    Sample,
}

/// No usable TEE was found; the message says what the probe saw.
#[derive(Debug, thiserror::Error)]
#[error(
    "no TEE platform detected: {0}; run `cvm-attest probe` for details, or name one with --tee"
)]
pub struct NoPlatform(pub String);

impl Platform {
    /// The platform named on the command line, or the one detected.
    pub fn select(chosen: Option<Platform>) -> Result<Platform> {
        if let Some(p) = chosen {
            return Ok(p);
        }
        let probe = probe::run();
        let platform = probe.platform.ok_or(NoPlatform(probe.reason.clone()))?;
        log::info!("platform: {} ({})", platform.name(), probe.reason);
        Ok(platform)
    }

    /// The `tee` value of the KBS Request.
    pub fn kbs_tee(self) -> kbs_types::Tee {
        match self {
            Platform::Snp => kbs_types::Tee::Snp,
            Platform::Tdx => kbs_types::Tee::Tdx,
            Platform::Sample => kbs_types::Tee::Sample,
        }
    }

    /// The name operators see (the KBS's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Snp => "snp",
            Platform::Tdx => "tdx",
            Platform::Sample => "sample",
        }
    }

    /// Collects evidence bound to `binding`.
    pub fn evidence(self, binding: &Binding) -> Result<Value> {
        let value = match self {
            Platform::Snp => serde_json::to_value(snp::evidence(binding)?),
            Platform::Tdx => serde_json::to_value(tdx::evidence(binding)?),
            Platform::Sample => serde_json::to_value(sample::evidence(binding)),
        };
        value.with_context(|| format!("serialize the {} evidence", self.name()))
    }
}

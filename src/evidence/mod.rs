// SPDX-License-Identifier: Apache-2.0
//! Platforms: where evidence comes from. A closed enum, one file each.
//!
//! Each platform turns the binding (computed once, in `binding.rs`) into the
//! `primary_evidence` JSON its Trustee verifier takes (kbs-protocol §4).
//! Without `--tee` the platform is detected by `probe.rs`'s checks; the
//! `sample` test TEE is only ever used when named, never as a fallback.

mod azure;
mod sample;
mod snp;
mod tdx;
mod tpm;
mod vcek;

use std::time::Duration;

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
    /// Azure CVM on SEV-SNP: the paravisor's HCL report and a quote through the vTPM
    AzSnpVtpm,
    /// Azure CVM on TDX: the paravisor's HCL report, a vTPM quote and a TD quote from IMDS
    AzTdxVtpm,
    /// A plain (v)TPM quote; only when named, never detected
    Tpm,
    /// Trustee's `sample` test TEE: no hardware, no signature; for test KBSes only
    Sample,
}

/// Where TPM- and IMDS-based evidence comes from.
#[derive(Clone)]
pub struct TeeOptions {
    /// TCTI of the TPM (default `device:/dev/tpmrm0`).
    pub tcti: String,
    /// Persistent handle of the AK for `tpm` (default 0x81010002, created under the EK when absent).
    pub ak_handle: Option<u32>,
    /// Azure IMDS base URL.
    pub imds: String,
    /// Time for IMDS requests, retries included.
    pub imds_deadline: Duration,
    /// Time the paravisor gets to refresh the HCL report.
    pub hcl_timeout: Duration,
}

/// No usable TEE was found; the message says what the probe saw.
#[derive(Debug, thiserror::Error)]
#[error(
    "no TEE platform detected: {0}; run `cvm-attest probe` for details, or name one with --tee"
)]
pub struct NoPlatform(pub String);

/// The platform named (`--tee`, or `tee.type` in the configuration) has no
/// working interface here.
#[derive(Debug, thiserror::Error)]
#[error("TEE {0} was named, but this guest cannot give its evidence: {1}; run `cvm-attest probe` for details")]
pub struct Unavailable(pub &'static str, pub String);

impl Platform {
    /// The platform named on the command line, or the one detected.
    pub fn select(chosen: Option<Platform>, options: &TeeOptions) -> Result<Platform> {
        if let Some(p) = chosen {
            if let Some(why) = probe::missing(p, &options.tcti) {
                return Err(Unavailable(p.name(), why).into());
            }
            return Ok(p);
        }
        let probe = probe::run(&options.tcti);
        let platform = probe.platform.ok_or(NoPlatform(probe.reason.clone()))?;
        log::info!("platform: {} ({})", platform.name(), probe.reason);
        Ok(platform)
    }

    /// The `tee` value of the KBS Request.
    pub fn kbs_tee(self) -> kbs_types::Tee {
        match self {
            Platform::Snp => kbs_types::Tee::Snp,
            Platform::Tdx => kbs_types::Tee::Tdx,
            Platform::AzSnpVtpm => kbs_types::Tee::AzSnpVtpm,
            Platform::AzTdxVtpm => kbs_types::Tee::AzTdxVtpm,
            Platform::Tpm => kbs_types::Tee::Tpm,
            Platform::Sample => kbs_types::Tee::Sample,
        }
    }

    /// The name operators see (the KBS's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Snp => "snp",
            Platform::Tdx => "tdx",
            Platform::AzSnpVtpm => "az-snp-vtpm",
            Platform::AzTdxVtpm => "az-tdx-vtpm",
            Platform::Tpm => "tpm",
            Platform::Sample => "sample",
        }
    }

    /// Collects evidence bound to `binding`.
    pub async fn evidence(self, binding: &Binding, options: &TeeOptions) -> Result<Value> {
        let value = match self {
            Platform::Snp => serde_json::to_value(snp::evidence(binding)?),
            Platform::Tdx => serde_json::to_value(tdx::evidence(binding)?),
            Platform::AzSnpVtpm => serde_json::to_value(azure::snp(binding, options).await?),
            Platform::AzTdxVtpm => serde_json::to_value(azure::tdx(binding, options).await?),
            Platform::Tpm => serde_json::to_value(tpm::evidence(binding, options)?),
            Platform::Sample => serde_json::to_value(sample::evidence(binding)),
        };
        value.with_context(|| format!("serialize the {} evidence", self.name()))
    }
}

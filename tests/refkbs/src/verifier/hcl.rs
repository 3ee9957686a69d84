// SPDX-License-Identifier: Apache-2.0
//! Azure HCL reports (kbs-protocol.md §3.4, §4.4; Trustee
//! `deps/verifier/src/az_snp_vtpm/mod.rs`, kinvolk az-cvm-vtpm `hcl/mod.rs`):
//! header "HCLA" at 0, hardware report at 0x20 (SNP report 1184 bytes or
//! TDREPORT 1024), IgvmRequestData at 0x4C0 (data size, version, report type
//! 2 = SNP / 4 = TDX, report-data hash type, var-data size), var-data JSON at
//! 0x4D4. The var-data names the vTPM AK (JWK `kid` "HCLAkPub") and carries
//! `user-data`, the hex of what the guest wrote to NV 0x01400002.

use anyhow::{bail, ensure, Context as _, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use serde_json::Value;

use super::tpm::RsaKey;
use super::unhex;

const HW_AT: usize = 0x20;
const SNP_LEN: usize = 1184;
const TDREPORT_LEN: usize = 1024;
const IGVM_AT: usize = 0x4c0;
const VAR_AT: usize = 0x4d4;

/// The hardware report type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HclType {
    Snp,
    Tdx,
}

/// A parsed HCL report.
pub(super) struct Hcl {
    raw: Vec<u8>,
    kind: HclType,
    hash_type: u32,
    var_len: usize,
    json: Value,
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Hcl {
    pub(super) fn parse(raw: &[u8]) -> Result<Hcl> {
        ensure!(
            raw.len() >= VAR_AT,
            "the HCL report is {} bytes, too short",
            raw.len()
        );
        ensure!(
            &raw[..4] == b"HCLA",
            "not an HCL report (no \"HCLA\" signature)"
        );
        let kind = match word(raw, IGVM_AT + 8) {
            2 => HclType::Snp,
            4 => HclType::Tdx,
            other => bail!("HCL report type {other} is neither SNP (2) nor TDX (4)"),
        };
        let var_len = word(raw, IGVM_AT + 16) as usize;
        ensure!(
            raw.len() >= VAR_AT + var_len,
            "the HCL var-data runs past the end of the report"
        );
        let json = serde_json::from_slice(&raw[VAR_AT..VAR_AT + var_len])
            .context("parse the HCL var-data JSON")?;
        Ok(Hcl {
            raw: raw.to_vec(),
            kind,
            hash_type: word(raw, IGVM_AT + 12),
            var_len,
            json,
        })
    }

    pub(super) fn kind(&self) -> HclType {
        self.kind
    }

    pub(super) fn var_data(&self) -> &[u8] {
        &self.raw[VAR_AT..VAR_AT + self.var_len]
    }

    pub(super) fn var_data_json(&self) -> &Value {
        &self.json
    }

    /// The embedded SNP report (1184 bytes) or TDREPORT (1024 bytes).
    pub(super) fn hw_report(&self) -> &[u8] {
        let len = match self.kind {
            HclType::Snp => SNP_LEN,
            HclType::Tdx => TDREPORT_LEN,
        };
        &self.raw[HW_AT..HW_AT + len]
    }

    /// SHA-256 of the var-data; the hash type must be 1 (SHA-256).
    pub(super) fn var_data_sha256(&self) -> Result<[u8; 32]> {
        if self.hash_type != 1 {
            bail!(
                "the HCL report data hash type is {}, not 1 (SHA-256)",
                self.hash_type
            );
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(digest(&SHA256, self.var_data()).as_ref());
        Ok(out)
    }

    /// `report_data[0..32]` of the embedded hardware report must be SHA-256(var-data).
    pub(super) fn check_hw_binding(&self) -> Result<()> {
        let at = match self.kind {
            HclType::Snp => 0x50,
            HclType::Tdx => 128,
        };
        if self.hw_report()[at..at + 32] != self.var_data_sha256()? {
            bail!("the hardware report's report_data does not start with SHA-256(var-data)");
        }
        Ok(())
    }

    /// The AK: the JWK with `kid` "HCLAkPub" in var-data `keys`.
    pub(super) fn ak(&self) -> Result<RsaKey> {
        let key = self.json["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kid"] == "HCLAkPub")
            .context("the var-data has no HCLAkPub key")?;
        ensure!(key["kty"] == "RSA", "HCLAkPub is not an RSA key");
        let member = |name: &str| -> Result<Vec<u8>> {
            let text = key[name]
                .as_str()
                .with_context(|| format!("HCLAkPub has no {name}"))?;
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .with_context(|| format!("decode HCLAkPub {name}"))
        };
        Ok(RsaKey {
            n: member("n")?,
            e: member("e")?,
        })
    }

    /// Version 2 binding: the first 48 bytes of `user-data` are the digest.
    pub(super) fn check_user_data(&self, expected: &[u8; 48]) -> Result<()> {
        let text = self.json["user-data"]
            .as_str()
            .context("the var-data has no user-data")?;
        let user = unhex(text).context("decode user-data")?;
        if user.get(..48) != Some(&expected[..]) {
            bail!("the HCL user-data does not start with the runtime-data digest");
        }
        Ok(())
    }
}

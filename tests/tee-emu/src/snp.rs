// SPDX-License-Identifier: Apache-2.0
//! SEV-SNP attestation reports signed by the test VCEK, and the extended-report
//! certificate table, as the AMD firmware and the host would return them.
//!
//! Report layout: AMD SEV-SNP ABI spec (56860) table "ATTESTATION_REPORT",
//! version 3, 1184 bytes. The report is built with the `sev` crate's
//! `AttestationReport` and encoded with its `write_bytes`, so the bytes are
//! exactly what `AttestationReport::from_bytes` and the Trustee verifier
//! re-encode. Signature (ABI spec "Signature Format", ECDSA P-384 with SHA-384,
//! `SIG_ALGO` = 1): over bytes `0x000..0x2A0`; `r` and `s` little-endian,
//! zero-padded to 72 bytes, at `0x2A0` and `0x2E8`.
//!
//! Certificate table (GHCB spec 56421 "SNP Extended Guest Request", the
//! `auxblob` of configfs-tsm and the `certs_address` buffer of
//! `SNP_GET_EXT_REPORT`): entries `{guid[16], offset u32 LE, length u32 LE}`
//! terminated by an all-zero entry, then the DER certificates; offsets count
//! from the start of the table. GUIDs are stored in RFC 4122 byte order
//! (`Uuid::as_bytes`), which is what the `sev` crate writes and parses.
//!
//! The test PKI (ARK → ASK → VCEK) lives in `tests/data/snp-test-pki`, made by
//! its `make.sh`; the keys are test keys.

use std::path::PathBuf;

use anyhow::{anyhow, Context as _, Result};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use sev::firmware::guest::{AttestationReport, GuestPolicy, KeyInfo, PlatformInfo, Version};
use sev::firmware::host::TcbVersion;

/// Size of an SNP attestation report.
pub const REPORT_LEN: usize = 1184;
/// Bytes `0..SIGNED_LEN` are signed.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the `r` component of the signature (`s` follows 72 bytes later).
pub const SIG_R_OFFSET: usize = 0x2A0;
/// Offset of the `s` component of the signature.
pub const SIG_S_OFFSET: usize = 0x2E8;
/// The emulated chip's CHIP_ID: bytes 1..=64, as in the test VCEK's hwID extension.
pub const CHIP_ID: [u8; 64] = {
    let mut id = [0u8; 64];
    let mut i = 0;
    while i < 64 {
        id[i] = i as u8 + 1;
        i += 1;
    }
    id
};
/// GUID of the VCEK entry in the certificate table.
pub const GUID_VCEK: &str = "63da758d-e664-4564-adc5-f4b93be8accd";
/// GUID of the ASK entry.
pub const GUID_ASK: &str = "4ab7b379-bbac-4fe4-a02f-05aef327c782";
/// GUID of the ARK entry.
pub const GUID_ARK: &str = "c0b406a4-a803-4952-9743-3fb6014cd0ae";

/// Test ARK (self-signed, RSA-4096, RSASSA-PSS), DER.
pub const ARK_DER: &[u8] = include_bytes!("../../data/snp-test-pki/ark.der");
/// Test ASK (signed by the ARK), DER.
pub const ASK_DER: &[u8] = include_bytes!("../../data/snp-test-pki/ask.der");
/// Test VCEK (P-384, CN "SEV-VCEK", signed by the ASK), DER.
pub const VCEK_DER: &[u8] = include_bytes!("../../data/snp-test-pki/vcek.der");
/// The test VCEK's private key, PKCS#8 DER (`vcek.key` is the same in PEM).
const VCEK_PKCS8: &[u8] = include_bytes!("../../data/snp-test-pki/vcek.pk8");

/// Directory of the test PKI files (`ark.pem`, `ask.pem`, `vcek.pem`, `other-ark.pem`, …).
pub fn pki_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../data/snp-test-pki"))
}

/// Genoa TCB of the emulated platform (matches the test VCEK's TCB extensions).
fn tcb() -> TcbVersion {
    TcbVersion {
        fmc: None,
        bootloader: 10,
        tee: 0,
        snp: 23,
        microcode: 84,
    }
}

/// Fixed non-zero filler, so fields look like hashes and stay reproducible.
fn filler<const N: usize>(seed: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = seed
            .wrapping_mul(31)
            .wrapping_add((i as u8).wrapping_mul(17))
            ^ 0x5a;
    }
    out
}

/// An unsigned version-3 Genoa report with realistic fields for `report_data` at `vmpl`.
/// Tests may change fields before [`sign`].
pub fn template(report_data: &[u8; 64], vmpl: u32) -> AttestationReport {
    // The sev crate does not export its `Array` wrapper: fill the public tuple fields.
    let mut r = AttestationReport {
        version: 3,
        guest_svn: 1,
        policy: GuestPolicy::from(0x3_0000),
        vmpl,
        sig_algo: 1,
        current_tcb: tcb(),
        plat_info: PlatformInfo::from(0x25),
        key_info: KeyInfo::from(0),
        reported_tcb: tcb(),
        cpuid_fam_id: Some(0x19),
        cpuid_mod_id: Some(0x11),
        cpuid_step: Some(1),
        committed_tcb: tcb(),
        current: Version::new(1, 55, 37),
        committed: Version::new(1, 55, 37),
        launch_tcb: tcb(),
        ..Default::default()
    };
    r.family_id.0 = filler(1);
    r.image_id.0 = filler(2);
    r.report_data.0 = *report_data;
    r.measurement.0 = filler(3);
    r.id_key_digest.0 = filler(4);
    r.report_id.0 = filler(5);
    r.report_id_ma.0 = [0xff; 32];
    r.chip_id.0 = CHIP_ID;
    r
}

/// Encodes `report` with the sev crate and signs it with the test VCEK: 1184 bytes.
pub fn sign(report: &AttestationReport) -> Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(REPORT_LEN);
    report
        .write_bytes(&mut raw)
        .context("encode the SNP report")?;
    if raw.len() != REPORT_LEN {
        return Err(anyhow!("encoded SNP report is {} bytes", raw.len()));
    }
    let rng = SystemRandom::new();
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, VCEK_PKCS8, &rng)
        .map_err(|e| anyhow!("load the test VCEK key: {e}"))?;
    let sig = key
        .sign(&rng, &raw[..SIGNED_LEN])
        .map_err(|_| anyhow!("sign the SNP report"))?;
    let (r, s) = sig.as_ref().split_at(48);
    for (offset, be) in [(SIG_R_OFFSET, r), (SIG_S_OFFSET, s)] {
        let field = &mut raw[offset..offset + 72];
        field.fill(0);
        for (dst, src) in field.iter_mut().zip(be.iter().rev()) {
            *dst = *src;
        }
    }
    Ok(raw)
}

/// A signed v3 report for `report_data` at `vmpl`, as the firmware returns it.
pub fn report(report_data: &[u8; 64], vmpl: u32) -> Result<Vec<u8>> {
    report_at_snp_spl(report_data, vmpl, None)
}

/// As [`report`], with the reported TCB's SNP SPL set to `spl`: a firmware
/// update that the host's certificate table (its VCEK is for 23) missed.
pub fn report_at_snp_spl(report_data: &[u8; 64], vmpl: u32, spl: Option<u8>) -> Result<Vec<u8>> {
    let mut report = template(report_data, vmpl);
    if let Some(spl) = spl {
        report.reported_tcb.snp = spl;
    }
    sign(&report)
}

/// The certificates a host hands its guests with their reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HostCerts {
    /// VCEK, ASK and ARK.
    #[default]
    All,
    /// Only the VCEK: the verifier must hold the ASK and ARK itself, as
    /// Trustee does.
    VcekOnly,
    /// None: the table is empty.
    None,
}

/// The certificate table with VCEK, ASK and ARK (see the module doc for the layout).
pub fn cert_table() -> Vec<u8> {
    host_table(HostCerts::All)
}

/// The certificate table of a host that publishes `certs`.
pub fn host_table(certs: HostCerts) -> Vec<u8> {
    match certs {
        HostCerts::All => table_of(&[
            (GUID_VCEK, VCEK_DER),
            (GUID_ASK, ASK_DER),
            (GUID_ARK, ARK_DER),
        ]),
        HostCerts::VcekOnly => table_of(&[(GUID_VCEK, VCEK_DER)]),
        HostCerts::None => Vec::new(),
    }
}

fn table_of(certs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut table = Vec::new();
    let mut blobs = Vec::new();
    let mut offset = 24 * (certs.len() + 1);
    for &(guid, der) in certs {
        table.extend_from_slice(&guid_bytes(guid));
        table.extend_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&(der.len() as u32).to_le_bytes());
        blobs.extend_from_slice(der);
        offset += der.len();
    }
    table.extend_from_slice(&[0; 24]);
    table.extend_from_slice(&blobs);
    table
}

/// RFC 4122 byte order of a textual GUID.
fn guid_bytes(guid: &str) -> [u8; 16] {
    let hex: Vec<u8> = guid.bytes().filter(|c| *c != b'-').collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).unwrap_or("00");
        out[i] = u8::from_str_radix(text, 16).unwrap_or(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
    use sev::firmware::guest::AttestationReport;
    use sev::firmware::host::{CertTableEntry, CertType};

    use super::{cert_table, report, ARK_DER, ASK_DER, CHIP_ID, VCEK_DER};

    #[test]
    fn report_parses_and_verifies_with_the_test_chain() {
        let data = [0xabu8; 64];
        let raw = report(&data, 2).unwrap();
        let parsed = AttestationReport::from_bytes(&raw).unwrap();
        assert_eq!(parsed.version, 3);
        assert_eq!(parsed.vmpl, 2);
        assert_eq!(*parsed.report_data, data);
        assert_eq!(*parsed.chip_id, CHIP_ID);
        let vcek = Certificate::from_der(VCEK_DER).unwrap();
        (&vcek, &parsed).verify().unwrap();
        let chain = Chain {
            ca: ca::Chain {
                ark: Certificate::from_der(ARK_DER).unwrap(),
                ask: Certificate::from_der(ASK_DER).unwrap(),
            },
            vek: vcek,
        };
        (&chain, &parsed).verify().unwrap();
        // Re-encoding is byte-identical, so the verifier hashes what was signed.
        let mut again = Vec::new();
        parsed.write_bytes(&mut again).unwrap();
        assert_eq!(again, raw);
        let mut tampered = parsed;
        tampered.report_data.0[0] ^= 1;
        assert!((&chain, &tampered).verify().is_err());
    }

    #[test]
    fn cert_table_parses_with_the_sev_crate() {
        let mut table = cert_table();
        table.resize(4096, 0);
        let entries = CertTableEntry::vec_bytes_to_cert_table(&mut table).unwrap();
        let types: Vec<CertType> = entries.iter().map(|e| e.cert_type.clone()).collect();
        assert_eq!(types, [CertType::VCEK, CertType::ASK, CertType::ARK]);
        assert_eq!(entries[0].data, VCEK_DER);
        assert_eq!(entries[2].data, ARK_DER);
    }
}

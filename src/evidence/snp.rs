// SPDX-License-Identifier: Apache-2.0
//! AMD SEV-SNP evidence (kbs-protocol §3.3, §4.2): a report at VMPL 0 whose
//! REPORT_DATA is the binding digest followed by 16 zero bytes, sent as
//! `{"attestation_report": <sev crate serde>, "cert_chain": [...] | null}`.
//!
//! Source order: configfs-tsm (provider `sev_guest`, `privlevel` 0, report
//! in `outblob`, certificate table in `auxblob`), then `/dev/sev-guest`
//! SNP_GET_EXT_REPORT, then SNP_GET_REPORT (no certificates). The report is
//! parsed with the `sev` crate, whose serde shape is the one the Trustee
//! verifier re-encodes bit for bit before checking the signature.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

use crate::binding::Binding;
use crate::root;
use crate::sevguest::{SevGuest, SevGuestError};
use crate::tsm::{self, busy_retry, TsmError};

/// Trustee's verifier requires VMPL 0 (the HCL and paravisors run above it).
const VMPL: u32 = 0;

#[derive(Serialize)]
pub struct SnpEvidence {
    attestation_report: AttestationReport,
    cert_chain: Option<Vec<CertTableEntry>>,
}

/// The raw report and certificate table, from whichever interface works.
pub struct Raw {
    pub report: Vec<u8>,
    pub certs: Option<Vec<u8>>,
    pub source: String,
}

pub fn evidence(binding: &Binding) -> Result<SnpEvidence> {
    let report_data = binding.report_data_64();
    let raw = collect(&report_data)?;
    let report = AttestationReport::from_bytes(&raw.report).map_err(|e| {
        anyhow::anyhow!(
            "parse the {}-byte SNP report from {}: {e}",
            raw.report.len(),
            raw.source
        )
    })?;
    if *report.report_data != report_data {
        bail!(
            "the SNP report from {} carries other REPORT_DATA than requested",
            raw.source
        );
    }
    if report.vmpl != VMPL {
        bail!(
            "the SNP report from {} is for VMPL {}, not {VMPL}",
            raw.source,
            report.vmpl
        );
    }
    let cert_chain = match raw.certs {
        Some(table) => Some(
            parse_cert_table(&table)
                .with_context(|| format!("read the certificate table from {}", raw.source))?,
        ),
        None => None,
    };
    let cert_chain = cert_chain
        .filter(|c| !c.is_empty())
        .and_then(|chain| usable(chain, &report, &raw.source));
    log::debug!(
        "SNP report v{} from {}; {} certificate(s)",
        report.version,
        raw.source,
        cert_chain.as_ref().map_or(0, Vec::len)
    );
    Ok(SnpEvidence {
        attestation_report: report,
        cert_chain,
    })
}

/// The host's certificates, unless its VCEK (or VLEK) is not the one for
/// this report: the KBS rejects a stale one, but fetches the right one from
/// AMD KDS when it gets none.
fn usable(
    chain: Vec<CertTableEntry>,
    report: &AttestationReport,
    source: &str,
) -> Option<Vec<CertTableEntry>> {
    let Some(vek) = chain
        .iter()
        .find(|c| matches!(c.cert_type, CertType::VCEK | CertType::VLEK))
    else {
        return Some(chain);
    };
    let hwid = vek.cert_type == CertType::VCEK;
    match super::vcek::mismatch(&vek.data, report, hwid) {
        None => Some(chain),
        Some(why) => {
            log::warn!(
                "the {:?} from {source} is not this report's ({why}): sending no certificates, \
                 so that the KBS fetches the right one from AMD KDS; the host should refresh its \
                 certificate table",
                vek.cert_type
            );
            None
        }
    }
}

/// configfs-tsm first, then the ioctl device: when configfs-tsm is absent,
/// and also when it refuses us (a sandbox that left it read-only, say) and
/// the device is there.
pub fn collect(report_data: &[u8; 64]) -> Result<Raw> {
    let why_device = match tsm::request("sev_guest", report_data, Some(VMPL)) {
        Ok(blobs) => {
            return Ok(Raw {
                report: blobs.outblob,
                certs: blobs.auxblob.filter(|a| !a.is_empty()),
                source: "configfs-tsm".into(),
            })
        }
        Err(TsmError::Absent(_) | TsmError::NoProvider(_)) => "no configfs-tsm".to_owned(),
        Err(e @ (TsmError::Denied(_) | TsmError::Io { .. }))
            if root::path(root::SEV_GUEST).exists() =>
        {
            log::warn!(
                "configfs-tsm failed ({e}); trying {} instead",
                root::SEV_GUEST
            );
            format!("configfs-tsm failed ({e})")
        }
        Err(e) => return Err(e).context("request an SNP report through configfs-tsm"),
    };
    let device =
        SevGuest::open().with_context(|| format!("{why_device}; open the SNP guest device"))?;
    let source = device.path().display().to_string();
    let (report, certs) = busy_retry(SevGuestError::retryable, || {
        match device.ext_report(report_data, VMPL) {
            Err(SevGuestError::Io { source: e, .. })
                if matches!(e.raw_os_error(), Some(libc::ENOTTY | libc::EINVAL)) =>
            {
                log::info!("{source} has no SNP_GET_EXT_REPORT; asking for the report alone");
                device.report(report_data, VMPL).map(|r| (r, None))
            }
            other => other,
        }
    })
    .with_context(|| format!("request an SNP report from {source}"))?;
    Ok(Raw {
        report,
        certs,
        source,
    })
}

/// The GHCB/kernel certificate table: `{guid[16], offset u32, length u32}`
/// entries (little-endian), ended by an all-zero entry; offsets are from the
/// start of the table. GUIDs are in RFC 4122 byte order.
pub fn parse_cert_table(table: &[u8]) -> Result<Vec<CertTableEntry>> {
    let mut entries = Vec::new();
    for (i, entry) in table.chunks(24).enumerate() {
        if entry.len() < 24 {
            bail!("entry {i} is cut off at byte {}", i * 24 + entry.len());
        }
        if entry.iter().all(|&b| b == 0) {
            return Ok(entries);
        }
        let guid = uuid::Uuid::from_slice(&entry[..16]).context("read a GUID")?;
        let offset = u32::from_le_bytes([entry[16], entry[17], entry[18], entry[19]]) as usize;
        let length = u32::from_le_bytes([entry[20], entry[21], entry[22], entry[23]]) as usize;
        let data = offset
            .checked_add(length)
            .and_then(|end| table.get(offset..end))
            .with_context(|| {
                format!(
                    "entry {i} ({guid}) points past the table's {} bytes",
                    table.len()
                )
            })?;
        let cert_type = CertType::try_from(&guid).context("read a certificate type")?;
        entries.push(CertTableEntry::new(cert_type, data.to_vec()));
    }
    bail!("the table has no terminating all-zero entry")
}

#[cfg(test)]
mod tests {
    use super::parse_cert_table;
    use sev::firmware::host::CertType;

    fn entry(guid: &str, offset: u32, len: u32) -> Vec<u8> {
        let mut e = uuid::Uuid::parse_str(guid).unwrap().as_bytes().to_vec();
        e.extend_from_slice(&offset.to_le_bytes());
        e.extend_from_slice(&len.to_le_bytes());
        e
    }

    #[test]
    fn reads_a_kernel_certificate_table() {
        let mut t = entry("63da758d-e664-4564-adc5-f4b93be8accd", 72, 3);
        t.extend(entry("4ab7b379-bbac-4fe4-a02f-05aef327c782", 75, 2));
        t.extend([0u8; 24]);
        t.extend([1, 2, 3, 4, 5]);
        let certs = parse_cert_table(&t).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(
            (certs[0].cert_type.clone(), certs[0].data.clone()),
            (CertType::VCEK, vec![1, 2, 3])
        );
        assert_eq!(
            (certs[1].cert_type.clone(), certs[1].data.clone()),
            (CertType::ASK, vec![4, 5])
        );
    }

    #[test]
    fn malformed_tables_are_refused() {
        let mut t = entry("63da758d-e664-4564-adc5-f4b93be8accd", 48, 100);
        t.extend([0u8; 24]);
        assert!(
            format!("{:#}", parse_cert_table(&t).unwrap_err()).contains("points past the table")
        );
        let t = entry("63da758d-e664-4564-adc5-f4b93be8accd", 0, 0);
        assert!(format!("{:#}", parse_cert_table(&t).unwrap_err()).contains("no terminating"));
        assert!(format!("{:#}", parse_cert_table(&[1, 2, 3]).unwrap_err()).contains("cut off"));
    }
}

// SPDX-License-Identifier: Apache-2.0
//! Is the host's VCEK the one for this report?
//!
//! AMD issues a VCEK per chip and TCB (KDS spec 57230): its extensions carry
//! the security patch levels (blSPL, teeSPL, snpSPL, ucodeSPL, and fmcSPL on
//! Turin) and, for a VCEK, the chip's hwID. The Trustee verifier requires
//! them to equal the report's `reported_tcb` and `chip_id` (kbs-protocol.md
//! §4.2). A host that did not refresh its certificate table after a
//! firmware update serves a stale VCEK, and the attestation fails; with no
//! certificates, the KBS fetches the right VCEK from AMD KDS instead.

use sev::firmware::guest::AttestationReport;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::Decode;

const AMD: &str = "1.3.6.1.4.1.3704.1";

/// Why the certificate `der` is not the VCEK (or VLEK, `hwid = false`) of
/// `report`, or `None` when it is.
pub fn mismatch(der: &[u8], report: &AttestationReport, hwid: bool) -> Option<String> {
    let cert = match x509_cert::Certificate::from_der(der) {
        Ok(cert) => cert,
        Err(e) => return Some(format!("it does not parse as X.509: {e}")),
    };
    let extensions = cert.tbs_certificate.extensions.unwrap_or_default();
    let value = |oid: &str| {
        let oid = ObjectIdentifier::new(&format!("{AMD}.{oid}")).ok()?;
        extensions
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let tcb = &report.reported_tcb;
    let spls = [
        ("blSPL", "3.1", Some(tcb.bootloader)),
        ("teeSPL", "3.2", Some(tcb.tee)),
        ("snpSPL", "3.3", Some(tcb.snp)),
        ("ucodeSPL", "3.8", Some(tcb.microcode)),
        ("fmcSPL", "3.9", tcb.fmc),
    ];
    for (name, oid, reported) in spls {
        let Some(reported) = reported else { continue };
        let Some(raw) = value(oid) else {
            return Some(format!("it has no {name} extension"));
        };
        match u8::from_der(&raw) {
            Ok(spl) if spl == reported => {}
            Ok(spl) => {
                return Some(format!(
                    "it is for {name} {spl}, the report's reported TCB has {reported}"
                ))
            }
            Err(e) => return Some(format!("its {name} extension is not a small integer: {e}")),
        }
    }
    if hwid {
        // 64 bytes up to Genoa; Turin's hwID is the first 8 bytes of chip_id.
        match value("4") {
            Some(id) if !id.is_empty() && report.chip_id.starts_with(&id) => {}
            Some(_) => return Some("its hwID is not the report's chip_id".to_owned()),
            None => return Some("it has no hwID extension".to_owned()),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use sev::firmware::guest::AttestationReport;
    use sev::firmware::host::TcbVersion;

    use super::mismatch;

    const VCEK: &[u8] = include_bytes!("../../tests/data/snp-test-pki/vcek.der");
    const ASK: &[u8] = include_bytes!("../../tests/data/snp-test-pki/ask.der");

    /// What tests/data/snp-test-pki/make.sh put in the test VCEK.
    fn report() -> AttestationReport {
        let mut r = AttestationReport {
            reported_tcb: TcbVersion {
                fmc: None,
                bootloader: 10,
                tee: 0,
                snp: 23,
                microcode: 84,
            },
            ..Default::default()
        };
        for (i, b) in r.chip_id.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        r
    }

    #[test]
    fn the_vcek_must_be_for_the_reported_tcb_and_chip() {
        assert_eq!(mismatch(VCEK, &report(), true), None);
        let mut stale = report();
        stale.reported_tcb.snp = 24;
        assert_eq!(
            mismatch(VCEK, &stale, true).as_deref(),
            Some("it is for snpSPL 23, the report's reported TCB has 24")
        );
        let mut other_chip = report();
        other_chip.chip_id[63] ^= 1;
        assert_eq!(
            mismatch(VCEK, &other_chip, true).as_deref(),
            Some("its hwID is not the report's chip_id")
        );
        // A VLEK carries no hwID: not checked.
        assert_eq!(mismatch(VCEK, &other_chip, false), None);
        let mut turin = report();
        turin.reported_tcb.fmc = Some(1);
        assert_eq!(
            mismatch(VCEK, &turin, true).as_deref(),
            Some("it has no fmcSPL extension")
        );
        assert_eq!(
            mismatch(ASK, &report(), true).as_deref(),
            Some("it has no blSPL extension")
        );
        assert!(mismatch(b"not a certificate", &report(), true)
            .unwrap()
            .starts_with("it does not parse as X.509"));
    }
}

// SPDX-License-Identifier: Apache-2.0
//! `snp` evidence (kbs-protocol.md §4.2), checked like Trustee's
//! `deps/verifier/src/snp/mod.rs` `Snp::evaluate`, with one difference: the
//! VCEK is never fetched from AMD KDS, so it must come in `cert_chain` and
//! chain to the ARK the refkbs was configured to trust (`Config::snp_ark`),
//! through the ASK in `cert_chain` or, as Trustee falls back to its embedded
//! ASK, through the trusted ASK (`--snp-ark` given a bundle: ASK, then ARK).
//!
//! Rules: report version 3..=5 (v2 is rejected), VMPL 0, the first VCEK or
//! VLEK of `cert_chain` is the VEK, ARK → ASK → VEK verifies (RSA-PSS, AMD
//! KDS spec 57230), the VEK signs the report re-encoded from its fields (ECDSA
//! P-384 over bytes 0..0x2A0, SEV-SNP ABI 56860), and REPORT_DATA equals the
//! 48-byte digest followed by 16 zero bytes (§3.3), and the VEK's TCB
//! extensions equal `reported_tcb` (a VCEK's hwID, `chip_id`).

use anyhow::{anyhow, bail, Context as _, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{hex, Roots};
use sev::certs::snp::{ca, Certificate, Chain, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

/// Trustee `SnpEvidence`.
#[derive(Deserialize)]
struct SnpEvidence {
    attestation_report: AttestationReport,
    cert_chain: Option<Vec<CertTableEntry>>,
}

/// A PEM or DER certificate (sev's `from_bytes` exists only with OpenSSL).
pub(super) fn parse_cert(bytes: &[u8]) -> std::io::Result<Certificate> {
    if bytes.starts_with(b"-----BEGIN") {
        Certificate::from_pem(bytes)
    } else {
        Certificate::from_der(bytes)
    }
}

/// The first entry of one of `types`, and its certificate if it parses.
fn cert<'a>(
    chain: &'a [CertTableEntry],
    types: &[CertType],
) -> Option<(&'a CertTableEntry, Certificate)> {
    let entry = chain.iter().find(|e| types.contains(&e.cert_type))?;
    Some((entry, parse_cert(&entry.data).ok()?))
}

/// Checks version 3..=5, VMPL 0, ARK -> ASK -> VEK and the report signature.
pub(super) fn check_report(
    report: &AttestationReport,
    vek: Certificate,
    ask: Certificate,
    ark: &Certificate,
) -> Result<()> {
    if !(3..=5).contains(&report.version) {
        bail!(
            "SNP report version {} is not supported (3 to 5)",
            report.version
        );
    }
    if report.vmpl != 0 {
        bail!("SNP report is for VMPL {}, not 0", report.vmpl);
    }
    let chain = Chain {
        ca: ca::Chain {
            ark: ark.clone(),
            ask,
        },
        vek,
    };
    (&chain)
        .verify()
        .context("verify ARK -> ASK -> VEK against the trusted ARK")?;
    // sev's report verification unwraps its own re-encoding: encode first.
    report
        .write_bytes(Vec::with_capacity(1184))
        .context("re-encode the SNP report")?;
    (&chain.vek, report)
        .verify()
        .context("verify the SNP report signature")?;
    Ok(())
}

/// Verifies `snp` evidence against the expected digest and the trusted roots.
pub(super) fn verify(evidence: &Value, expected: &[u8; 48], roots: &Roots) -> Result<Value> {
    let ark = roots.snp_ark.as_ref().ok_or_else(|| {
        anyhow!("no trusted SNP ARK is configured (refkbs --snp-ark): cannot verify snp evidence")
    })?;
    let evidence = SnpEvidence::deserialize(evidence).context("parse snp evidence")?;
    let report = evidence.attestation_report;
    let chain = evidence.cert_chain.ok_or_else(|| {
        anyhow!("snp evidence has no cert_chain and refkbs cannot fetch the VCEK from AMD KDS")
    })?;
    let (vek_entry, vek) = cert(&chain, &[CertType::VCEK, CertType::VLEK])
        .ok_or_else(|| anyhow!("cert_chain holds no parsable VCEK or VLEK"))?;
    let ask = cert(&chain, &[CertType::ASK])
        .map(|(_, ask)| ask)
        .or_else(|| roots.snp_ask.clone())
        .ok_or_else(|| {
            anyhow!(
                "cert_chain holds no parsable ASK and no trusted ASK is configured \
                 (give --snp-ark a PEM bundle: ASK, then ARK)"
            )
        })?;
    if let Some((_, supplied)) = cert(&chain, &[CertType::ARK]) {
        if supplied != *ark {
            bail!("the ARK in cert_chain is not the trusted ARK");
        }
    }
    check_report(&report, vek, ask, ark)?;
    check_vek_tcb(
        &vek_entry.data,
        vek_entry.cert_type == CertType::VCEK,
        &report,
    )?;
    let mut wanted = [0u8; 64];
    wanted[..48].copy_from_slice(expected);
    if *report.report_data != wanted {
        bail!("SNP report_data is not the runtime-data digest followed by 16 zero bytes");
    }
    claims(&report)
}

/// Trustee's VEK checks: each TCB extension (AMD OID arc 1.3.6.1.4.1.3704.1.3,
/// a DER INTEGER whose last byte Trustee reads) equals `reported_tcb`, and a
/// VCEK's hwID (arc .4, raw bytes) equals `chip_id` (its first 8 on Turin).
fn check_vek_tcb(der: &[u8], vcek: bool, report: &AttestationReport) -> Result<()> {
    use x509_cert::der::{asn1::ObjectIdentifier, Decode};
    let cert = x509_cert::Certificate::from_der(der).context("parse the VEK")?;
    let extensions = cert.tbs_certificate.extensions.unwrap_or_default();
    let ext = |arc: &str| {
        let oid = ObjectIdentifier::new(&format!("1.3.6.1.4.1.3704.1.{arc}")).ok()?;
        extensions
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes().to_vec())
    };
    let t = &report.reported_tcb;
    let mut spls = vec![
        ("3.1", t.bootloader),
        ("3.2", t.tee),
        ("3.3", t.snp),
        ("3.8", t.microcode),
    ];
    spls.extend(t.fmc.map(|fmc| ("3.9", fmc)));
    for (arc, reported) in spls {
        let raw = ext(arc).with_context(|| format!("the VEK has no TCB extension .{arc}"))?;
        match (raw.first(), raw.last()) {
            (Some(2), Some(&spl)) if spl == reported => {}
            (Some(2), Some(spl)) => {
                bail!("the VEK's TCB extension .{arc} is {spl}, reported_tcb has {reported}")
            }
            _ => bail!("the VEK's TCB extension .{arc} is not an INTEGER"),
        }
    }
    if vcek {
        let id = ext("4").context("the VCEK has no hwID extension")?;
        if id.is_empty() || !report.chip_id.starts_with(&id) {
            bail!("the VCEK's hwID is not the report's chip_id");
        }
    }
    Ok(())
}

/// The token claims of an SNP report.
pub(super) fn claims(report: &AttestationReport) -> Result<Value> {
    let fields = serde_json::to_value(report).context("serialize the SNP report")?;
    Ok(json!({
        "version": report.version,
        "measurement": hex(&*report.measurement),
        "host_data": hex(&*report.host_data),
        "report_data": hex(&*report.report_data),
        "chip_id": hex(&*report.chip_id),
        "policy": fields["policy"],
        "guest_svn": report.guest_svn,
        "vmpl": report.vmpl,
        "reported_tcb": fields["reported_tcb"],
        "platform_version": fields["current"],
        "cpuid": [report.cpuid_fam_id, report.cpuid_mod_id, report.cpuid_step],
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};
    use sev::certs::snp::Certificate;
    use sev::firmware::guest::AttestationReport;
    use sev::firmware::host::{CertTableEntry, CertType};
    use tee_emu::snp;

    use super::{parse_cert, verify, Roots};

    const DIGEST: [u8; 48] = [0x3c; 48];

    fn bound() -> [u8; 64] {
        let mut data = [0u8; 64];
        data[..48].copy_from_slice(&DIGEST);
        data
    }

    fn evidence(report: &AttestationReport) -> Value {
        let raw = snp::sign(report).unwrap();
        let parsed = AttestationReport::from_bytes(&raw).unwrap();
        let chain = [
            (CertType::VCEK, snp::VCEK_DER),
            (CertType::ASK, snp::ASK_DER),
            (CertType::ARK, snp::ARK_DER),
        ]
        .map(|(t, der)| CertTableEntry::new(t, der.to_vec()));
        json!({"attestation_report": parsed, "cert_chain": chain})
    }

    fn ark(name: &str) -> Certificate {
        parse_cert(&std::fs::read(snp::pki_dir().join(name)).unwrap()).unwrap()
    }

    /// Trusts the ARK in `name`, and the test ASK when `ask`.
    fn roots(name: &str, ask: bool) -> Roots {
        Roots {
            snp_ark: Some(ark(name)),
            snp_ask: ask.then(|| ark("ask.pem")),
        }
    }

    #[test]
    fn accepts_an_emulator_report() {
        let good = evidence(&snp::template(&bound(), 0));
        let claims = verify(&good, &DIGEST, &roots("ark.pem", false)).unwrap();
        assert_eq!(claims["version"], 3);
        assert_eq!(claims["measurement"].as_str().unwrap().len(), 96);
        assert_eq!(claims["reported_tcb"]["snp"], 23);
        // The same evidence through the JSON text, as the KBS receives it.
        let text = serde_json::to_string(&good).unwrap();
        let again: Value = serde_json::from_str(&text).unwrap();
        assert!(verify(&again, &DIGEST, &roots("ark.der", false)).is_ok());
    }

    #[test]
    fn rejects_bad_evidence() {
        let trusted = roots("ark.pem", false);
        let check = |ev: &Value| {
            verify(ev, &DIGEST, &trusted)
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        let good = evidence(&snp::template(&bound(), 0));

        assert!(check(&evidence(&snp::template(&[0x3c; 64], 0))).contains("report_data"));
        let mut v2 = snp::template(&bound(), 0);
        v2.version = 2;
        assert!(check(&evidence(&v2)).contains("version 2"));
        assert!(check(&evidence(&snp::template(&bound(), 1))).contains("VMPL 1"));

        let mut tampered = good.clone();
        tampered["attestation_report"]["measurement"][0] = json!(0);
        assert!(check(&tampered).contains("signature"));

        let mut no_chain = good.clone();
        no_chain["cert_chain"] = Value::Null;
        assert!(check(&no_chain).contains("KDS"));

        // A VCEK for another TCB (the host did not follow a firmware
        // update) or another chip, both signed by that VCEK's key.
        let mut newer = snp::template(&bound(), 0);
        newer.reported_tcb.snp = 24;
        assert_eq!(
            check(&evidence(&newer)),
            "the VEK's TCB extension .3.3 is 23, reported_tcb has 24"
        );
        let mut other_chip = snp::template(&bound(), 0);
        other_chip.chip_id[0] ^= 1;
        assert_eq!(
            check(&evidence(&other_chip)),
            "the VCEK's hwID is not the report's chip_id"
        );

        let other = roots("other-ark.pem", false);
        let err = verify(&good, &DIGEST, &other).unwrap_err().to_string();
        assert!(err.contains("trusted ARK"), "{err}");
        let mut no_ark = good.clone();
        no_ark["cert_chain"].as_array_mut().unwrap().pop();
        let err = verify(&no_ark, &DIGEST, &other).unwrap_err();
        assert!(format!("{err:#}").contains("ASK"), "{err:#}");
        assert!(verify(&good, &DIGEST, &Roots::default())
            .unwrap_err()
            .to_string()
            .contains("--snp-ark"));
    }

    /// A host that publishes only the VCEK: Trustee takes the ASK from its
    /// embedded roots, refkbs from its trusted bundle.
    #[test]
    fn a_vcek_alone_chains_through_the_trusted_ask() {
        let mut vcek_only = evidence(&snp::template(&bound(), 0));
        vcek_only["cert_chain"].as_array_mut().unwrap().truncate(1);
        assert!(verify(&vcek_only, &DIGEST, &roots("ark.pem", true)).is_ok());
        let err = verify(&vcek_only, &DIGEST, &roots("ark.pem", false)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cert_chain holds no parsable ASK and no trusted ASK is configured \
             (give --snp-ark a PEM bundle: ASK, then ARK)"
        );
        // The trusted ASK does not stand in for an ARK it was not signed by.
        let err = verify(&vcek_only, &DIGEST, &roots("other-ark.pem", true)).unwrap_err();
        assert!(format!("{err:#}").contains("trusted ARK"), "{err:#}");
    }
}

// SPDX-License-Identifier: Apache-2.0
//! SEV-SNP attestation reports: decoding and VCEK signature checks.
//!
//! Implements the AMD SEV-SNP ABI spec, table "ATTESTATION_REPORT structure" (1184 bytes,
//! versions 2 to 5). The `sev` crate parses the report when it can, and its serde shape is what
//! the agent sends as evidence (kbs-protocol §4.2); but sev 6.3 refuses v2 reports with a masked
//! (all-zero) chip ID and CPUs it does not know, because the TCB byte layout depends on the CPU
//! generation. Every field whose position does not depend on the generation is therefore read
//! here from the raw bytes, and only the TCB split comes from sev.

use anyhow::{anyhow, bail, Context, Result};
use base64::{engine::general_purpose::STANDARD, Engine};
use serde_json::{json, Value};
use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::TcbVersion;
use sev::Generation;

use super::{flags_json, flags_text, json_items, le_u64, render_items, Bytes, Item};

/// Size of an ATTESTATION_REPORT.
pub const REPORT_SIZE: usize = 1184;
/// The signature covers bytes 0x000..0x2A0.
const SIGNED_LEN: usize = 0x2a0;

/// (name, offset, length) of every region, in order: names the field a short input is cut in.
#[rustfmt::skip]
const LAYOUT: &[(&str, usize, usize)] = &[
    ("version", 0x00, 4), ("guest_svn", 0x04, 4), ("policy", 0x08, 8), ("family_id", 0x10, 16),
    ("image_id", 0x20, 16), ("vmpl", 0x30, 4), ("sig_algo", 0x34, 4), ("current_tcb", 0x38, 8),
    ("plat_info", 0x40, 8), ("key_info", 0x48, 4), ("report_data", 0x50, 64),
    ("measurement", 0x90, 48), ("host_data", 0xc0, 32), ("id_key_digest", 0xe0, 48),
    ("author_key_digest", 0x110, 48), ("report_id", 0x140, 32), ("report_id_ma", 0x160, 32),
    ("reported_tcb", 0x180, 8), ("cpuid", 0x188, 24), ("chip_id", 0x1a0, 64),
    ("committed_tcb", 0x1e0, 8), ("current and committed versions", 0x1e8, 8),
    ("launch_tcb", 0x1f0, 8), ("mitigation vectors", 0x1f8, 0xa8), ("signature", 0x2a0, 0x200),
];

#[rustfmt::skip]
const POLICY_BITS: &[(u32, &str)] = &[
    (16, "SMT"), (18, "MIGRATE_MA"), (19, "DEBUG"), (20, "SINGLE_SOCKET"), (21, "CXL_ALLOW"),
    (22, "MEM_AES_256_XTS"), (23, "RAPL_DIS"), (24, "CIPHERTEXT_HIDING"),
    (25, "PAGE_SWAP_DISABLE"),
];
#[rustfmt::skip]
const PLATFORM_BITS: &[(u32, &str)] = &[
    (0, "SMT_EN"), (1, "TSME_EN"), (2, "ECC_EN"), (3, "RAPL_DIS"), (4, "CIPHERTEXT_HIDING_EN"),
    (5, "ALIAS_CHECK_COMPLETE"), (7, "SEV_TIO_EN"),
];
/// (label, field) of the byte fields shown as hex, in report order.
#[rustfmt::skip]
const HEX_FIELDS: &[(&str, &str)] = &[
    ("family ID", "family_id"), ("image ID", "image_id"), ("measurement", "measurement"),
    ("report data", "report_data"), ("host data", "host_data"), ("ID key digest", "id_key_digest"),
    ("author key digest", "author_key_digest"), ("report ID", "report_id"),
    ("report ID (MA)", "report_id_ma"), ("chip ID", "chip_id"),
];

/// An SEV-SNP report: the raw bytes, and sev's parse when it succeeded.
pub struct SnpReport {
    raw: Vec<u8>,
    sev: std::result::Result<Box<AttestationReport>, String>,
}

/// A raw report starts with version 2..=5, policy bit 17 (reserved, must be one) and VMPL 0..=3.
pub fn looks_like_report(bytes: &[u8]) -> bool {
    let b = Bytes::new(bytes, "");
    matches!(b.u32(0, ""), Ok(2..=5))
        && matches!(b.u64(0x08, ""), Ok(p) if p & (1 << 17) != 0)
        && matches!(b.u32(0x30, ""), Ok(0..=3))
}

impl SnpReport {
    pub fn parse(bytes: &[u8]) -> Result<SnpReport> {
        if bytes.len() != REPORT_SIZE {
            let version = Bytes::new(bytes, "").u32(0, "").unwrap_or(0);
            let cut = LAYOUT.iter().find(|(_, off, len)| off + len > bytes.len());
            match cut {
                Some((name, off, len)) => bail!(
                    "a {}-byte file is not an SNP report ({REPORT_SIZE} bytes) although it starts \
                     like one (version {version}): it is cut in {name} ({off:#x}..{:#x})",
                    bytes.len(),
                    off + len
                ),
                None => bail!(
                    "a {}-byte file is not an SNP report: it starts like one (version {version}) \
                     but has {} bytes after the {REPORT_SIZE} of a report",
                    bytes.len(),
                    bytes.len() - REPORT_SIZE
                ),
            }
        }
        let sev = AttestationReport::from_bytes(bytes)
            .map(Box::new)
            .map_err(|e| e.to_string());
        Ok(SnpReport {
            raw: bytes.to_vec(),
            sev,
        })
    }

    /// The raw 1184 bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw
    }

    /// A field by its [`LAYOUT`] name (the length is checked at parse time).
    fn field(&self, name: &str) -> &[u8] {
        match LAYOUT.iter().find(|(n, _, _)| *n == name) {
            Some((_, off, len)) => &self.raw[*off..off + len],
            None => &[],
        }
    }

    fn int(&self, name: &str) -> u64 {
        le_u64(self.field(name))
    }

    fn version(&self) -> u64 {
        self.int("version")
    }

    /// CPUID family, model, stepping: reports v3 and later.
    fn cpuid(&self) -> Option<(u8, u8, u8)> {
        let c = self.field("cpuid");
        (self.version() >= 3).then(|| (c[0], c[1], c[2]))
    }

    fn generation(&self) -> Option<&'static str> {
        let (family, model, _) = self.cpuid()?;
        match Generation::identify_cpu(family, model) {
            Ok(Generation::Milan) => Some("Milan"),
            Ok(Generation::Genoa) => Some("Genoa"),
            Ok(Generation::Turin) => Some("Turin"),
            _ => None,
        }
    }

    /// Mitigation vectors (launch, current): reports v5 and later.
    fn mit_vectors(&self) -> Option<(u64, u64)> {
        let m = self.field("mitigation vectors");
        (self.version() >= 5).then(|| (le_u64(&m[..8]), le_u64(&m[8..16])))
    }

    /// (label, key, TCB) of the four TCBs; the TCB is `None` when sev could not split them.
    fn tcbs(&self) -> [(&'static str, &'static str, Option<TcbVersion>); 4] {
        let r = self.sev.as_ref().ok();
        [
            ("current TCB", "current_tcb", r.map(|r| r.current_tcb)),
            ("reported TCB", "reported_tcb", r.map(|r| r.reported_tcb)),
            ("committed TCB", "committed_tcb", r.map(|r| r.committed_tcb)),
            ("launch TCB", "launch_tcb", r.map(|r| r.launch_tcb)),
        ]
    }

    fn tcb_layout(&self) -> String {
        match (&self.sev, self.generation()) {
            (Err(e), _) => format!("could not be determined (sev: {e}); TCBs shown raw"),
            (Ok(_), Some(g)) => g.to_string(),
            (Ok(r), None) if r.current_tcb.fmc.is_some() => "Turin (from the chip ID)".into(),
            (Ok(_), None) => "Milan/Genoa (from the chip ID; v2 reports carry no CPUID)".into(),
        }
    }

    fn key_info_text(&self) -> String {
        let k = self.int("key_info");
        let key = match (k >> 2) & 7 {
            0 => "VCEK",
            1 => "VLEK",
            7 => "none (unsigned)",
            _ => "reserved",
        };
        format!(
            "{k:#010x}: signing key {key}, AUTHOR_KEY_EN {}, MASK_CHIP_KEY {}",
            k & 1,
            (k >> 1) & 1
        )
    }

    fn versions(&self) -> [String; 2] {
        let v = self.field("current and committed versions");
        [
            format!("{}.{}.{}", v[2], v[1], v[0]),
            format!("{}.{}.{}", v[6], v[5], v[4]),
        ]
    }

    /// Every field, for both the text and the JSON form.
    fn items(&self) -> Vec<Item> {
        let int = |label, key| Item::new(label, key, self.int(key), self.int(key));
        let text = |label, key, text: String| Item::new(label, key, &text, text.as_str());
        let (policy, plat) = (self.int("policy"), self.int("plat_info"));
        let (major, minor) = ((policy >> 8) & 0xff, policy & 0xff);
        let mut policy_json = flags_json(policy, POLICY_BITS);
        (policy_json["abi_major"], policy_json["abi_minor"]) = (json!(major), json!(minor));
        let policy_text = format!("ABI {major}.{minor}, {}", flags_text(policy, POLICY_BITS));
        let sig_algo = sig_algo_text(self.int("sig_algo"));
        let mut items = vec![
            int("version", "version"),
            int("guest SVN", "guest_svn"),
            Item::new("policy", "policy", policy_text, policy_json),
            int("VMPL", "vmpl"),
            Item::new(
                "signature algorithm",
                "sig_algo",
                sig_algo,
                self.int("sig_algo"),
            ),
            self.cpuid_item(),
            text("TCB layout", "tcb_layout", self.tcb_layout()),
        ];
        for (label, key, tcb) in self.tcbs() {
            let raw = format!("{:#018x}", self.int(key));
            items.push(match tcb {
                Some(t) => Item::new(label, key, tcb_text(&t), json!(t)),
                None => Item::new(label, key, format!("{raw} (raw)"), raw),
            });
        }
        let [current, committed] = self.versions();
        let versions = format!("current {current}, committed {committed}");
        let versions_json = json!({"current": current, "committed": committed});
        items.push(Item::new(
            "firmware version",
            "firmware_version",
            versions,
            versions_json,
        ));
        let plat_json = flags_json(plat, PLATFORM_BITS);
        items.push(Item::new(
            "platform info",
            "plat_info",
            flags_text(plat, PLATFORM_BITS),
            plat_json,
        ));
        items.push(text("key info", "key_info", self.key_info_text()));
        items.extend(
            HEX_FIELDS
                .iter()
                .map(|(label, key)| Item::hex(label, key, self.field(key))),
        );
        if let Some((launch, current)) = self.mit_vectors() {
            items.push(text(
                "launch mitigation vector",
                "launch_mit_vector",
                format!("{launch:#018x}"),
            ));
            items.push(text(
                "current mitigation vector",
                "current_mit_vector",
                format!("{current:#018x}"),
            ));
        }
        let sig = self.field("signature");
        for (label, key, part) in [
            ("signature r (big-endian)", "signature_r", &sig[..72]),
            ("signature s (big-endian)", "signature_s", &sig[72..144]),
        ] {
            items.push(Item::hex(label, key, &be48(part)));
        }
        items
    }

    fn cpuid_item(&self) -> Item {
        let Some((f, m, s)) = self.cpuid() else {
            return Item::new("CPUID", "cpuid", "not reported (version 2)", Value::Null);
        };
        let g = self.generation();
        let text = format!(
            "family {f:#x}, model {m:#x}, stepping {s:#x} ({})",
            g.unwrap_or("unknown generation")
        );
        Item::new(
            "CPUID",
            "cpuid",
            text,
            json!({"family": f, "model": m, "stepping": s, "generation": g}),
        )
    }

    pub fn render(&self) -> String {
        let mut out = format!("SEV-SNP attestation report ({REPORT_SIZE} bytes)\n");
        render_items(&mut out, 2, &self.items());
        out
    }

    pub fn to_json(&self) -> Value {
        json_items(Some("snp"), self.items())
    }
}

fn sig_algo_text(algo: u64) -> String {
    match algo {
        1 => "1 (ECDSA P-384 with SHA-384)".into(),
        other => format!("{other} (unknown)"),
    }
}

fn tcb_text(t: &TcbVersion) -> String {
    let fmc = t.fmc.map(|f| format!("fmc {f}, ")).unwrap_or_default();
    format!(
        "{fmc}bootloader {}, tee {}, snp {}, microcode {}",
        t.bootloader, t.tee, t.snp, t.microcode
    )
}

/// The 48 significant bytes of a 72-byte little-endian signature component, big-endian.
fn be48(le: &[u8]) -> Vec<u8> {
    le[..48].iter().rev().copied().collect()
}

/// Checks that the VCEK (or VLEK), DER or PEM (the first certificate of a chain), signed the
/// raw report: with sev's re-encoding, as the Trustee verifier does, when sev can parse the
/// report; otherwise over the raw signed bytes 0x000..0x2A0.
pub fn verify(report_bytes: &[u8], vcek_der_or_pem: &[u8]) -> Result<()> {
    let cert = certificate(vcek_der_or_pem)?;
    let report = SnpReport::parse(report_bytes)?;
    match report.int("sig_algo") {
        1 => {}
        other => bail!(
            "the report's signature algorithm is {}, not ECDSA P-384 with SHA-384",
            sig_algo_text(other)
        ),
    }
    match &report.sev {
        Ok(parsed) => (&cert, parsed.as_ref()).verify().map_err(|e| {
            // sev's messages end in a Debug dump of the p384 error: keep only what they mean.
            let text = e.to_string();
            if text.starts_with("VEK does not sign") {
                anyhow!("the certificate's key did not sign this report")
            } else if text.contains("public key from sec1") {
                anyhow!(
                    "the certificate's key is not an ECDSA P-384 key, as a VCEK's or VLEK's is \
                     (an ARK or ASK holds RSA): give the VCEK"
                )
            } else {
                anyhow!("check the signature with the certificate: {e}")
            }
        }),
        Err(_) => verify_raw(report.bytes(), &cert),
    }
}

/// ECDSA P-384/SHA-384 over the raw signed bytes (r and s are stored little-endian).
fn verify_raw(report: &[u8], cert: &Certificate) -> Result<()> {
    let sig = &report[SIGNED_LEN..SIGNED_LEN + 144];
    let fixed = [be48(&sig[..72]), be48(&sig[72..])].concat();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P384_SHA384_FIXED,
        cert.public_key_sec1(),
    );
    key.verify(&report[..SIGNED_LEN], &fixed)
        .map_err(|_| anyhow!("the certificate's key did not sign this report"))
}

/// A certificate from DER, or from the first CERTIFICATE block of a PEM file.
fn certificate(der_or_pem: &[u8]) -> Result<Certificate> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    let text = String::from_utf8_lossy(der_or_pem);
    let der = match text.find(BEGIN) {
        Some(start) => {
            let body = &text[start + BEGIN.len()..];
            let end = body
                .find("-----END CERTIFICATE-----")
                .context("read the VCEK PEM: no END CERTIFICATE line")?;
            let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD
                .decode(b64)
                .context("decode the VCEK PEM's base64")?
        }
        None => der_or_pem.to_vec(),
    };
    Certificate::from_der(&der).context("parse the VCEK certificate (DER or PEM)")
}

#[cfg(test)]
mod tests {
    use base64::{engine::general_purpose::STANDARD, Engine};
    use serde_json::Value;
    use sev::firmware::guest::AttestationReport;

    use super::{certificate, verify, verify_raw, SnpReport};
    use crate::report::tests::value_of;
    use crate::report::Report;

    const REPORT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snp/report.bin"
    ));
    const VCEK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snp/vcek.der"
    ));
    const EVIDENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/snp/evidence.json"
    ));

    #[test]
    fn decodes_the_recorded_report() {
        let Ok(Report::Snp(r)) = Report::parse(REPORT) else {
            panic!("not decoded as SNP")
        };
        assert!(r.sev.is_ok());
        let json = r.to_json();
        assert_eq!(json["version"], 2);
        assert_eq!(json["vmpl"], 0);
        assert_eq!(json["guest_svn"], 4);
        assert!(json["report_data"]
            .as_str()
            .unwrap()
            .starts_with("ec6c52d7533cc2c4"));
        assert!(json["measurement"]
            .as_str()
            .unwrap()
            .starts_with("a1f3930413247bb3"));
        assert_eq!(json["current_tcb"]["microcode"], 206);
        let text = r.render();
        assert_eq!(value_of(&text, "VMPL"), Some("0"), "{text}");
        assert_eq!(
            value_of(&text, "signature algorithm"),
            Some("1 (ECDSA P-384 with SHA-384)")
        );
        let tcb = value_of(&text, "current TCB");
        assert_eq!(tcb, Some("bootloader 3, tee 0, snp 8, microcode 206"));
        let layout = value_of(&text, "TCB layout").unwrap();
        assert!(
            layout.starts_with("Milan/Genoa (from the chip ID"),
            "{layout}"
        );
    }

    #[test]
    fn sev_serde_json_re_encodes_to_the_same_bytes() {
        let parsed = AttestationReport::from_bytes(REPORT).unwrap();
        let json = serde_json::to_value(parsed).unwrap();
        let back: AttestationReport = serde_json::from_value(json).unwrap();
        let mut bytes = Vec::new();
        back.write_bytes(&mut bytes).unwrap();
        assert_eq!(bytes, REPORT);
    }

    #[test]
    fn evidence_json_round_trips_except_the_mitigation_vectors() {
        let evidence: Value = serde_json::from_str(EVIDENCE).unwrap();
        let original = &evidence["attestation_report"];
        let report: AttestationReport = serde_json::from_value(original.clone()).unwrap();
        let mut again = serde_json::to_value(report).unwrap();
        let again = again.as_object_mut().unwrap();
        let original = original.as_object().unwrap();
        let added: Vec<&String> = again
            .keys()
            .filter(|k| !original.contains_key(*k))
            .collect();
        assert_eq!(added, ["launch_mit_vector", "current_mit_vector"]);
        assert!(original.keys().all(|k| again.contains_key(k)));
        assert_eq!(again.remove("launch_mit_vector"), Some(Value::Null));
        assert_eq!(again.remove("current_mit_vector"), Some(Value::Null));
        assert_eq!(again, original);
    }

    #[test]
    fn vcek_verifies_the_report_and_not_a_changed_one() {
        verify(REPORT, VCEK).unwrap();
        verify_raw(REPORT, &certificate(VCEK).unwrap()).unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            STANDARD.encode(VCEK)
        );
        verify(REPORT, pem.as_bytes()).unwrap();
        for (at, what) in [(0x50, "report_data"), (0x2a0, "signature")] {
            let mut changed = REPORT.to_vec();
            changed[at] ^= 1;
            let err = verify(&changed, VCEK).expect_err(what);
            assert_eq!(
                err.to_string(),
                "the certificate's key did not sign this report"
            );
        }
        assert!(verify(REPORT, b"not a certificate").is_err());
    }

    #[test]
    fn masked_chip_id_still_shows_the_fields() {
        let mut masked = REPORT.to_vec();
        masked[0x1a0..0x1e0].fill(0);
        let r = SnpReport::parse(&masked).unwrap();
        assert!(
            r.sev.is_err(),
            "sev 6.3 refuses a v2 report with a masked chip ID"
        );
        let text = r.render();
        let layout = value_of(&text, "TCB layout").unwrap();
        assert!(
            layout.starts_with("could not be determined (sev: MASK_CHIP_ID"),
            "{layout}"
        );
        assert_eq!(
            value_of(&text, "current TCB"),
            Some("0xce08000000000003 (raw)")
        );
        assert!(value_of(&text, "measurement")
            .unwrap()
            .starts_with("a1f3930413247bb3"));
        assert_eq!(r.to_json()["vmpl"], 0);
        // The changed chip ID is signed, so the raw check must fail, not panic.
        let err = verify(&masked, VCEK).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the certificate's key did not sign this report"
        );
    }

    #[test]
    fn truncated_report_names_the_cut_field() {
        let err = Report::parse(&REPORT[..1000]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "a 1000-byte file is not an SNP report (1184 bytes) although it starts like one \
             (version 2): it is cut in signature (0x2a0..0x4a0)"
        );
        let err = Report::parse(&REPORT[..400]).err().unwrap();
        assert!(
            err.to_string()
                .ends_with("it is cut in cpuid (0x188..0x1a0)"),
            "{err}"
        );
    }
}

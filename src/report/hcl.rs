// SPDX-License-Identifier: Apache-2.0
//! Azure vTPM HCL reports: the paravisor's report in vTPM NV index 0x01400001.
//!
//! Layout (Azure HCL report, kbs-protocol §4.4, az-cvm-vtpm `hcl/mod.rs`): a 32-byte header at 0
//! ("HCLA", version, report size, request type, status, 3 reserved words); the hardware report
//! area (1184 bytes) at 0x20, holding an SEV-SNP report or a TDX TDREPORT (1024 bytes, zero
//! filled); IgvmRequestData at 0x4C0 (data size, version, report type 2 = SNP / 4 = TDX, report
//! data hash type, variable data size); the var-data JSON at 0x4D4. The hardware report's
//! report_data starts with the hash of the var-data, which binds the vTPM keys it lists.

use anyhow::{bail, Result};
use ring::digest;
use serde_json::{json, Map, Value};

use super::snp::SnpReport;
use super::tdx::TD_ATTRIBUTE_BITS;
use super::{flags_json, flags_text, hex, le_u64, line, Bytes};

/// The header signature word 0x414C4348, little-endian.
pub const SIGNATURE: &[u8] = b"HCLA";
const HW_AT: usize = 0x20;
const HW_LEN: usize = 1184;
const TDREPORT_LEN: usize = 1024;
const IGVM_AT: usize = 0x4c0;
const VAR_AT: usize = 0x4d4;
/// TDREPORT_STRUCT fields shown: (name, offset, length). REPORTMACSTRUCT is 256 bytes (report
/// type 4, reserved 12, CPUSVN 16, two 48-byte hashes, REPORTDATA 64, reserved 32, MAC 32),
/// then TEE_TCB_INFO (239), reserved (17) and TDINFO at 512.
#[rustfmt::skip]
const TDREPORT_FIELDS: &[(&str, usize, usize)] = &[
    ("REPORTTYPE", 0, 4), ("CPUSVN", 16, 16), ("TEE_TCB_INFO_HASH", 32, 48),
    ("TEE_INFO_HASH", 80, 48), ("REPORTDATA", 128, 64), ("MAC", 224, 32),
    ("ATTRIBUTES", 512, 8), ("XFAM", 520, 8), ("MRTD", 528, 48), ("MRCONFIGID", 576, 48),
    ("MROWNER", 624, 48), ("MROWNERCONFIG", 672, 48), ("RTMR0", 720, 48), ("RTMR1", 768, 48),
    ("RTMR2", 816, 48), ("RTMR3", 864, 48), ("SERVTD_HASH", 912, 48),
];

/// The hardware report inside an HCL report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HclReportType {
    Snp,
    Tdx,
}

/// A decoded Azure HCL report.
pub struct HclReport {
    raw: Vec<u8>,
    /// Header words: version, report size, request type, status.
    header: [u32; 4],
    /// IgvmRequestData words: data size, version, report type, hash type, variable data size.
    igvm: [u32; 5],
    report_type: HclReportType,
    snp: Option<SnpReport>,
    var_json: std::result::Result<Value, String>,
}

impl HclReport {
    pub fn parse(bytes: &[u8]) -> Result<HclReport> {
        let b = Bytes::new(bytes, "the HCL report");
        let signature = b.u32(0, "the header signature")?;
        if signature != u32::from_le_bytes(*b"HCLA") {
            bail!("not an HCL report: the header signature is {signature:#010x}, not 0x414c4348 (\"HCLA\")");
        }
        let word = |at: usize, name: &str| b.u32(at, name);
        let header = [
            word(4, "version")?,
            word(8, "report_size")?,
            word(12, "request_type")?,
            word(16, "status")?,
        ];
        b.slice(HW_AT, HW_LEN, "the hardware report")?;
        let mut igvm = [0u32; 5];
        for (i, name) in [
            "data_size",
            "version",
            "report_type",
            "report_data_hash_type",
            "variable_data_size",
        ]
        .iter()
        .enumerate()
        {
            igvm[i] = word(IGVM_AT + 4 * i, name)?;
        }
        let report_type = match igvm[2] {
            2 => HclReportType::Snp,
            4 => HclReportType::Tdx,
            other => bail!("the HCL report type is {other}, neither SNP (2) nor TDX (4)"),
        };
        let var = b.slice(
            VAR_AT,
            igvm[4] as usize,
            "the var-data (variable_data_size at 0x4d0)",
        )?;
        let snp = match report_type {
            HclReportType::Snp => Some(SnpReport::parse(&bytes[HW_AT..HW_AT + HW_LEN])?),
            HclReportType::Tdx => None,
        };
        let var_json = serde_json::from_slice(var).map_err(|e| e.to_string());
        Ok(HclReport {
            raw: bytes.to_vec(),
            header,
            igvm,
            report_type,
            snp,
            var_json,
        })
    }

    /// The var-data JSON bytes, exactly as hashed into the hardware report.
    pub fn var_data(&self) -> &[u8] {
        &self.raw[VAR_AT..VAR_AT + self.igvm[4] as usize]
    }

    pub fn report_type(&self) -> HclReportType {
        self.report_type
    }

    /// The hardware report: the 1184-byte SNP report, or the 1024-byte TDREPORT.
    pub fn hw_report(&self) -> &[u8] {
        let len = match self.report_type {
            HclReportType::Snp => HW_LEN,
            HclReportType::Tdx => TDREPORT_LEN,
        };
        &self.raw[HW_AT..HW_AT + len]
    }

    /// The var-data `user-data` member (hex of the report data the guest asked for).
    pub fn user_data(&self) -> Option<&str> {
        self.var_json.as_ref().ok()?.get("user-data")?.as_str()
    }

    /// The hardware report's report_data (SNP REPORT_DATA or TDREPORT REPORTDATA).
    fn report_data(&self) -> &[u8] {
        let at = match self.report_type {
            HclReportType::Snp => 0x50,
            HclReportType::Tdx => 128,
        };
        &self.hw_report()[at..at + 64]
    }

    /// Whether hash(var-data), by the declared hash type, starts the hardware report_data.
    pub fn var_data_bound(&self) -> std::result::Result<bool, String> {
        let alg = match self.igvm[3] {
            1 => &digest::SHA256,
            2 => &digest::SHA384,
            3 => &digest::SHA512,
            other => return Err(format!("unknown report data hash type {other}")),
        };
        let d = digest::digest(alg, self.var_data());
        Ok(self.report_data().starts_with(d.as_ref()))
    }

    fn hash_name(&self) -> String {
        match self.igvm[3] {
            1 => "1 (SHA-256)".into(),
            2 => "2 (SHA-384)".into(),
            3 => "3 (SHA-512)".into(),
            other => format!("{other} (unknown)"),
        }
    }

    fn binding_text(&self) -> String {
        match self.var_data_bound() {
            Ok(true) => "yes: hash(var-data) starts the hardware report's report_data".into(),
            Ok(false) => {
                "NO: hash(var-data) does not start the hardware report's report_data".into()
            }
            Err(e) => format!("not checked: {e}"),
        }
    }

    fn tdreport_value(&self, name: &str, bytes: &[u8]) -> (String, Value) {
        match name {
            "ATTRIBUTES" => (
                flags_text(le_u64(bytes), TD_ATTRIBUTE_BITS),
                flags_json(le_u64(bytes), TD_ATTRIBUTE_BITS),
            ),
            _ => (hex(bytes), Value::String(hex(bytes))),
        }
    }

    /// Appends the var-data's keys (kid, kty), `vm-configuration` members and `user-data`.
    fn render_var_data(&self, o: &mut String) {
        let v = match &self.var_json {
            Ok(v) => v,
            Err(e) => return line(o, 4, "JSON", format!("not JSON: {e}")),
        };
        let text = |v: Option<&Value>| match v {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "?".into(),
        };
        for k in v
            .get("keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            line(
                o,
                4,
                "key",
                format!("{} ({})", text(k.get("kid")), text(k.get("kty"))),
            );
        }
        let config = v.get("vm-configuration").and_then(Value::as_object);
        for (member, value) in config.into_iter().flatten() {
            line(o, 4, member, text(Some(value)));
        }
        line(o, 4, "user-data", self.user_data().unwrap_or("absent"));
    }

    pub fn render(&self) -> String {
        let [version, size, request, status] = self.header;
        let mut out = format!("Azure HCL report ({} bytes)\n", self.raw.len());
        let o = &mut out;
        line(o, 2, "version", version);
        line(o, 2, "report size", size);
        line(o, 2, "request type", request);
        line(o, 2, "status", status);
        let kind = match self.report_type {
            HclReportType::Snp => "SEV-SNP",
            HclReportType::Tdx => "TDX",
        };
        line(o, 2, "report type", format!("{} ({kind})", self.igvm[2]));
        line(
            o,
            2,
            "IGVM data size/version",
            format!("{} / {}", self.igvm[0], self.igvm[1]),
        );
        line(o, 2, "report data hash type", self.hash_name());
        line(o, 2, "var-data", format!("{} bytes at 0x4d4", self.igvm[4]));
        self.render_var_data(o);
        line(o, 2, "var-data bound", self.binding_text());
        match &self.snp {
            Some(snp) => o.push_str(&format!("Embedded {}", snp.render())),
            None => {
                o.push_str("Embedded TDREPORT (1024 bytes)\n");
                for (name, at, len) in TDREPORT_FIELDS {
                    line(
                        o,
                        2,
                        name,
                        self.tdreport_value(name, &self.hw_report()[*at..at + len])
                            .0,
                    );
                }
            }
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let [version, report_size, request_type, status] = self.header;
        let hw = match &self.snp {
            Some(snp) => snp.to_json(),
            None => {
                let mut m = Map::new();
                m.insert("kind".into(), json!("tdreport"));
                for (name, at, len) in TDREPORT_FIELDS {
                    m.insert(
                        (*name).into(),
                        self.tdreport_value(name, &self.hw_report()[*at..at + len])
                            .1,
                    );
                }
                Value::Object(m)
            }
        };
        let var = match &self.var_json {
            Ok(v) => v.clone(),
            Err(_) => Value::String(hex(self.var_data())),
        };
        json!({
            "kind": "hcl",
            "header": {"version": version, "report_size": report_size, "request_type": request_type, "status": status},
            "igvm_request_data": {
                "data_size": self.igvm[0], "version": self.igvm[1], "report_type": self.igvm[2],
                "report_data_hash_type": self.hash_name(), "variable_data_size": self.igvm[4],
            },
            "var_data": var,
            "var_data_bound": self.var_data_bound().ok(),
            "hw_report": hw,
        })
    }
}

#[cfg(test)]
mod tests {
    use ring::digest;

    use super::{HclReport, HclReportType};
    use crate::report::tdx::TdxQuote;
    use crate::report::tests::value_of;
    use crate::report::{hex, Report};

    const SNP: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/az-snp-vtpm/hcl-report.bin"
    ));
    const TDX: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/az-tdx-vtpm/hcl-report.bin"
    ));
    const TD_QUOTE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/az-tdx-vtpm/td-quote.bin"
    ));

    #[test]
    fn decodes_the_snp_hcl_report() {
        let Ok(Report::Hcl(h)) = Report::parse(SNP) else {
            panic!("not decoded as HCL")
        };
        assert_eq!(h.report_type(), HclReportType::Snp);
        assert_eq!(h.header[0], 1);
        assert_eq!(h.hw_report().len(), 1184);
        assert_eq!(h.var_data().len(), 1110);
        let json = h.to_json();
        assert_eq!(json["hw_report"]["version"], 2);
        assert_eq!(json["hw_report"]["vmpl"], 0);
        assert!(json["hw_report"]["report_data"]
            .as_str()
            .unwrap()
            .starts_with("b3fbad6514c83cae"));
        assert_eq!(json["var_data"]["keys"][0]["kid"], "HCLAkPub");
        let text = h.render();
        assert_eq!(value_of(&text, "key"), Some("HCLAkPub (RSA)"), "{text}");
        assert_eq!(value_of(&text, "report type"), Some("2 (SEV-SNP)"));
        assert_eq!(value_of(&text, "VMPL"), Some("0"));
        assert!(
            text.contains("Embedded SEV-SNP attestation report"),
            "{text}"
        );
    }

    #[test]
    fn decodes_the_tdx_hcl_report() {
        let h = HclReport::parse(TDX).unwrap();
        assert_eq!(h.report_type(), HclReportType::Tdx);
        assert_eq!(h.header[0], 2);
        assert_eq!(h.hw_report().len(), 1024);
        // The TDREPORT IMDS turned into td-quote.bin: same MRTD and REPORTDATA.
        let quote = TdxQuote::parse(TD_QUOTE).unwrap();
        let json = h.to_json();
        assert_eq!(json["hw_report"]["MRTD"], quote.to_json()["body"]["MRTD"]);
        assert_eq!(
            json["hw_report"]["REPORTDATA"].as_str().unwrap(),
            hex(quote.report_data())
        );
        assert!(h.render().contains("Embedded TDREPORT (1024 bytes)\n"));
    }

    #[test]
    fn var_data_hash_starts_the_report_data() {
        for bytes in [SNP, TDX] {
            let h = HclReport::parse(bytes).unwrap();
            let sha = digest::digest(&digest::SHA256, h.var_data());
            assert_eq!(&h.report_data()[..32], sha.as_ref());
            assert_eq!(h.var_data_bound(), Ok(true));
            let bound = value_of(&h.render(), "var-data bound").map(|v| v.starts_with("yes:"));
            assert_eq!(bound, Some(true));
        }
    }

    #[test]
    fn a_bad_signature_word_is_refused() {
        let mut bad = SNP.to_vec();
        bad[3] = b'X';
        let err = HclReport::parse(&bad).err().unwrap();
        assert_eq!(
            err.to_string(),
            "not an HCL report: the header signature is 0x584c4348, not 0x414c4348 (\"HCLA\")"
        );
    }

    #[test]
    fn var_data_running_past_the_end_is_refused() {
        let mut bad = TDX.to_vec();
        bad[0x4d0..0x4d4].copy_from_slice(&5000u32.to_le_bytes());
        let err = Report::parse(&bad).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the HCL report is cut in the var-data (variable_data_size at 0x4d0): it needs bytes \
             0x4d4..0x185c but has 2600 bytes"
        );
    }
}

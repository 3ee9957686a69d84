// SPDX-License-Identifier: Apache-2.0
//! Report decoding for operators: `cvm-attest decode FILE [--json] [--vcek CERT]`.
//!
//! A file is recognised from its bytes, never from its name: an Azure HCL report starts with
//! "HCLA"; a TDX quote has version 4/5 and TEE type 0x81 at bytes 0..8 (Intel TDX DCAP quote
//! format); an SEV-SNP report is exactly 1184 bytes and starts with a plausible version, policy
//! and VMPL (AMD SEV-SNP ABI spec, table "ATTESTATION_REPORT structure"). Each format is decoded
//! by its own module; the helpers here (bounds-checked reads, hex, bit flags, aligned text) are
//! shared by all three.

pub mod hcl;
pub mod snp;
pub mod tdx;

use std::fmt::Display;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// What a file holds, detected from its bytes (never from its name).
pub enum Report {
    Snp(snp::SnpReport),
    Tdx(tdx::TdxQuote),
    Hcl(hcl::HclReport),
}

impl Report {
    /// Detects and decodes a raw SNP report, TDX quote or Azure HCL report.
    pub fn parse(bytes: &[u8]) -> Result<Report> {
        if bytes.starts_with(hcl::SIGNATURE) {
            return hcl::HclReport::parse(bytes).map(Report::Hcl);
        }
        if tdx::looks_like_quote(bytes) {
            return tdx::TdxQuote::parse(bytes).map(Report::Tdx);
        }
        if snp::looks_like_report(bytes) {
            return snp::SnpReport::parse(bytes).map(Report::Snp);
        }
        bail!(
            "a {}-byte file is neither an SNP report ({} bytes), a TDX quote (version 4/5, TEE type \
             0x81) nor an HCL report (\"HCLA\" header)",
            bytes.len(),
            snp::REPORT_SIZE
        )
    }

    /// The decoded fields as JSON (`--json`): hex strings for byte fields, decoded bit flags.
    pub fn to_json(&self) -> Value {
        match self {
            Report::Snp(r) => r.to_json(),
            Report::Tdx(q) => q.to_json(),
            Report::Hcl(h) => h.to_json(),
        }
    }

    /// Readable multi-line text for operators.
    pub fn render(&self) -> String {
        match self {
            Report::Snp(r) => r.render(),
            Report::Tdx(q) => q.render(),
            Report::Hcl(h) => h.render(),
        }
    }

    /// The raw SNP report whose signature a VCEK can check, if this holds one.
    fn snp_bytes(&self) -> Result<&[u8]> {
        match self {
            Report::Snp(r) => Ok(r.bytes()),
            Report::Hcl(h) if h.report_type() == hcl::HclReportType::Snp => Ok(h.hw_report()),
            Report::Hcl(_) => {
                bail!("an HCL report from a TDX VM holds a TDREPORT, not an SNP report")
            }
            Report::Tdx(_) => bail!("a TDX quote is signed by the quoting enclave, not by a VCEK"),
        }
    }
}

/// `decode FILE [--json] [--vcek CERT]`: prints to stdout; with `vcek` verifies an SNP report's
/// (or an HCL report's embedded SNP report's) signature and says so, and fails when it does not
/// verify or when the file holds no SNP report.
pub fn decode_file(path: &Path, json: bool, vcek: Option<&Path>) -> Result<()> {
    let bytes = crate::input::read(path, crate::input::DECODE_CAP)
        .with_context(|| format!("read {}", path.display()))?;
    let report = Report::parse(&bytes).with_context(|| format!("decode {}", path.display()))?;
    let checked = match vcek {
        None => None,
        Some(cert_path) => {
            let cert = crate::input::read(cert_path, crate::input::DECODE_CAP)
                .with_context(|| format!("read the VCEK {}", cert_path.display()))?;
            let raw = report.snp_bytes().with_context(|| {
                format!(
                    "check {} with --vcek {}",
                    path.display(),
                    cert_path.display()
                )
            })?;
            Some((cert_path, snp::verify(raw, &cert)))
        }
    };
    let text = if json {
        let mut value = report.to_json();
        if let (Some((cert_path, result)), Some(object)) = (&checked, value.as_object_mut()) {
            let error = result.as_ref().err().map(|e| format!("{e:#}"));
            let signature = json!({"vcek": cert_path.display().to_string(), "verified": result.is_ok(), "error": error});
            object.insert("signature_check".into(), signature);
        }
        serde_json::to_string_pretty(&value).context("serialize the decoded report")? + "\n"
    } else {
        let mut out = report.render();
        let verdict = match &checked {
            Some((cert, Ok(()))) => Some(format!("verified with the VCEK {}", cert.display())),
            Some((cert, Err(e))) => Some(format!(
                "DOES NOT VERIFY with the VCEK {}: {e:#}",
                cert.display()
            )),
            None => None,
        };
        if let Some(verdict) = verdict {
            line(&mut out, 0, "signature check", verdict);
        }
        out
    };
    crate::commands::print_out(&text)?;
    match checked {
        Some((cert_path, Err(e))) => Err(e.context(format!(
            "verify the SNP report signature in {} with the VCEK {}",
            path.display(),
            cert_path.display()
        ))),
        _ => Ok(()),
    }
}

/// Bounds-checked little-endian reads that name the field an input is cut in.
pub(crate) struct Bytes<'a> {
    data: &'a [u8],
    /// What the bytes are ("the TDX quote"), for error messages.
    what: &'static str,
}

impl<'a> Bytes<'a> {
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Bytes<'a> {
        Bytes { data, what }
    }

    pub(crate) fn len(&self) -> usize {
        self.data.len()
    }

    /// `len` bytes at `offset`, or an error naming `field`.
    pub(crate) fn slice(&self, offset: usize, len: usize, field: &str) -> Result<&'a [u8]> {
        match offset
            .checked_add(len)
            .and_then(|end| self.data.get(offset..end))
        {
            Some(s) => Ok(s),
            None => bail!(
                "{} is cut in {field}: it needs bytes {offset:#x}..{:#x} but has {} bytes",
                self.what,
                offset.saturating_add(len),
                self.data.len()
            ),
        }
    }

    pub(crate) fn array<const N: usize>(&self, offset: usize, field: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.slice(offset, N, field)?);
        Ok(out)
    }

    pub(crate) fn u16(&self, offset: usize, field: &str) -> Result<u16> {
        self.array(offset, field).map(u16::from_le_bytes)
    }

    pub(crate) fn u32(&self, offset: usize, field: &str) -> Result<u32> {
        self.array(offset, field).map(u32::from_le_bytes)
    }

    pub(crate) fn u64(&self, offset: usize, field: &str) -> Result<u64> {
        self.array(offset, field).map(u64::from_le_bytes)
    }
}

/// Lowercase hex, no separators.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Little-endian integer from up to 8 bytes (callers pass fixed-size fields).
pub(crate) fn le_u64(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .rev()
        .fold(0, |acc, b| (acc << 8) | u64::from(*b))
}

/// `0x…: set: A, B; clear: C` for the named bits of a flags word.
pub(crate) fn flags_text(value: u64, bits: &[(u32, &str)]) -> String {
    let names = |want: bool| -> Vec<&str> {
        bits.iter()
            .filter(|(bit, _)| (value >> bit) & 1 == u64::from(want))
            .map(|(_, n)| *n)
            .collect()
    };
    let (set, clear) = (names(true), names(false));
    let list = |v: &[&str]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    format!(
        "{value:#018x}: set: {}; clear: {}",
        list(&set),
        list(&clear)
    )
}

/// `{"value": "0x…", "NAME": bool, …}` for the named bits of a flags word.
pub(crate) fn flags_json(value: u64, bits: &[(u32, &str)]) -> Value {
    let mut map = Map::new();
    map.insert("value".into(), Value::String(format!("{value:#018x}")));
    for (bit, name) in bits {
        map.insert((*name).into(), Value::Bool((value >> bit) & 1 == 1));
    }
    Value::Object(map)
}

/// One decoded field: its label and text for operators, its key and value for `--json`.
pub(crate) struct Item {
    label: &'static str,
    key: &'static str,
    text: String,
    json: Value,
}

impl Item {
    pub(crate) fn new(
        label: &'static str,
        key: &'static str,
        text: impl Display,
        json: impl Into<Value>,
    ) -> Item {
        Item {
            label,
            key,
            text: text.to_string(),
            json: json.into(),
        }
    }

    /// A byte field: hex in both forms.
    pub(crate) fn hex(label: &'static str, key: &'static str, bytes: &[u8]) -> Item {
        Item::new(label, key, hex(bytes), hex(bytes))
    }
}

/// Appends one aligned line per item.
pub(crate) fn render_items(out: &mut String, indent: usize, items: &[Item]) {
    for item in items {
        line(out, indent, item.label, &item.text);
    }
}

/// `{"kind": kind, key: value, …}`, without `kind` when it is `None`.
pub(crate) fn json_items(kind: Option<&str>, items: Vec<Item>) -> Value {
    let mut map = Map::new();
    if let Some(kind) = kind {
        map.insert("kind".into(), Value::String(kind.into()));
    }
    map.extend(items.into_iter().map(|i| (i.key.to_string(), i.json)));
    Value::Object(map)
}

/// Appends `label  value` with the label padded so values line up.
pub(crate) fn line(out: &mut String, indent: usize, label: &str, value: impl Display) {
    // At least two spaces, so that a long label stays apart from its value.
    let width = 26usize.saturating_sub(indent).max(label.len() + 2);
    out.push_str(&format!("{:indent$}{label:<width$}{value}\n", ""));
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::{decode_file, Report};

    fn data(name: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(name)
    }

    #[test]
    fn an_unknown_file_is_named_for_what_it_is_not() {
        let err = Report::parse(&[0x41; 1000]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "a 1000-byte file is neither an SNP report (1184 bytes), a TDX quote (version 4/5, TEE \
             type 0x81) nor an HCL report (\"HCLA\" header)"
        );
    }

    #[test]
    fn every_recorded_file_decodes_by_its_bytes() {
        for (name, kind) in [
            ("snp/report.bin", "snp"),
            ("tdx/quote-v5.bin", "tdx"),
            ("az-tdx-vtpm/td-quote.bin", "tdx"),
            ("az-snp-vtpm/hcl-report.bin", "hcl"),
            ("az-tdx-vtpm/hcl-report.bin", "hcl"),
        ] {
            let bytes = std::fs::read(data(name)).unwrap();
            let report = Report::parse(&bytes).unwrap();
            assert_eq!(report.to_json()["kind"], kind, "{name}");
            assert!(!report.render().is_empty());
            decode_file(&data(name), false, None).unwrap();
            decode_file(&data(name), true, None).unwrap();
        }
    }

    #[test]
    fn vcek_checks_snp_reports_only() {
        let vcek = data("snp/vcek.der");
        decode_file(&data("snp/report.bin"), false, Some(&vcek)).unwrap();
        decode_file(&data("snp/report.bin"), true, Some(&vcek)).unwrap();
        let err = decode_file(&data("tdx/quote-v5.bin"), false, Some(&vcek)).unwrap_err();
        assert!(
            format!("{err:#}")
                .ends_with(": a TDX quote is signed by the quoting enclave, not by a VCEK"),
            "{err:#}"
        );
        let err = decode_file(&data("az-tdx-vtpm/hcl-report.bin"), false, Some(&vcek)).unwrap_err();
        assert!(
            format!("{err:#}").contains("holds a TDREPORT, not an SNP report"),
            "{err:#}"
        );
        // The HCL report's SNP report is signed by another chip's VCEK.
        let err = decode_file(&data("az-snp-vtpm/hcl-report.bin"), false, Some(&vcek)).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("verify the SNP report signature in "),
            "{err:#}"
        );
        assert!(
            format!("{err:#}").ends_with(": the certificate's key did not sign this report"),
            "{err:#}"
        );
    }

    /// The value on the rendered line whose label is `label`.
    pub(crate) fn value_of<'a>(text: &'a str, label: &str) -> Option<&'a str> {
        text.lines().find_map(|l| {
            let rest = l.trim_start().strip_prefix(label)?;
            rest.starts_with("  ").then(|| rest.trim_start())
        })
    }
}

// SPDX-License-Identifier: Apache-2.0
//! TDX quotes: decoding of Intel TDX DCAP quote format versions 4 and 5.
//!
//! Layout (Intel TDX DCAP Quote Generation Library and Quote Verification Library, quote format
//! v4/v5): a 48-byte header (version, attestation key type, TEE type 0x81, QE/PCE SVN — reserved
//! in v4 —, QE vendor ID, user data); the TD report body (v4: TD 1.0 body at 48; v5: body type and
//! size at 48, the body at 54, TD 1.0 or TD 1.5); then the signature data length and the ECDSA
//! quote signature data with its certification data (type 6: QE report certification data, which
//! carries the PCK certificate chain). Nothing is verified here: that needs Intel's collateral.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::{flags_json, flags_text, hex, json_items, le_u64, line, render_items, Bytes, Item};

const HEADER_LEN: usize = 48;
const TEE_TDX: u32 = 0x81;
/// TD 1.0 report body fields in order, with sizes; TD 1.5 appends [`TD15_FIELDS`].
#[rustfmt::skip]
const TD10_FIELDS: &[(&str, usize)] = &[
    ("TEE_TCB_SVN", 16), ("MRSEAM", 48), ("MRSIGNERSEAM", 48), ("SEAMATTRIBUTES", 8),
    ("TDATTRIBUTES", 8), ("XFAM", 8), ("MRTD", 48), ("MRCONFIGID", 48), ("MROWNER", 48),
    ("MROWNERCONFIG", 48), ("RTMR0", 48), ("RTMR1", 48), ("RTMR2", 48), ("RTMR3", 48),
    ("REPORTDATA", 64),
];
const TD15_FIELDS: &[(&str, usize)] = &[("TEE_TCB_SVN2", 16), ("MRSERVICETD", 48)];
/// TDATTRIBUTES bits (Intel TDX module ABI, TDINFO_STRUCT.ATTRIBUTES).
#[rustfmt::skip]
pub(crate) const TD_ATTRIBUTE_BITS: &[(u32, &str)] = &[
    (0, "DEBUG"), (28, "SEPT_VE_DISABLE"), (30, "PKS"), (31, "KL"), (63, "PERFMON"),
];

/// A decoded TDX quote (v4 or v5).
pub struct TdxQuote {
    raw_len: usize,
    header: [u8; HEADER_LEN],
    /// v5 body type (2 = TD 1.0, 3 = TD 1.5); v4 quotes carry a TD 1.0 body.
    body_type: u16,
    /// Report body fields in order: (name, bytes).
    body: Vec<(&'static str, Vec<u8>)>,
    report_data: [u8; 64],
    signature: Signature,
    trailing: usize,
}

/// The ECDSA quote signature data.
struct Signature {
    len: usize,
    ecdsa: Vec<u8>,
    attestation_key: Vec<u8>,
    cert_type: u16,
    cert_size: u32,
    /// For type 6: the nested certification data (type, size), normally 5 = PCK chain.
    pck: Option<(u16, u32)>,
}

/// A DCAP quote header: version 3..=5, attestation key type 2/3, TEE type SGX (0) or TDX (0x81).
pub fn looks_like_quote(bytes: &[u8]) -> bool {
    let b = Bytes::new(bytes, "");
    matches!(b.u16(0, ""), Ok(3..=5))
        && matches!(b.u16(2, ""), Ok(2 | 3))
        && matches!(b.u32(4, ""), Ok(0 | TEE_TDX))
}

impl TdxQuote {
    pub fn parse(bytes: &[u8]) -> Result<TdxQuote> {
        let b = Bytes::new(bytes, "the TDX quote");
        let version = b.u16(0, "version")?;
        match b.u32(4, "TEE type")? {
            TEE_TDX => {}
            0 => bail!("this is an SGX quote (TEE type 0x00, version {version}), not a TDX quote (TEE type 0x81)"),
            other => bail!("TEE type {other:#x} is not TDX (0x81)"),
        }
        let header: [u8; HEADER_LEN] = b.array(0, "the header")?;
        let (body_type, body_at) = match version {
            4 => (2, HEADER_LEN),
            5 => (b.u16(48, "the body type")?, HEADER_LEN + 6),
            other => bail!("TDX quote version {other} is not supported (versions 4 and 5 are)"),
        };
        let fields: Vec<(&str, usize)> = match body_type {
            2 => TD10_FIELDS.to_vec(),
            3 => TD10_FIELDS.iter().chain(TD15_FIELDS).copied().collect(),
            1 => {
                bail!("the quote body type is 1 (an SGX enclave report), not a TD report (2 or 3)")
            }
            other => bail!("unknown quote body type {other} (2 = TD 1.0, 3 = TD 1.5)"),
        };
        let body_len: usize = fields.iter().map(|(_, n)| n).sum();
        if version == 5 {
            let declared = b.u32(50, "the body size")?;
            if declared as usize != body_len {
                bail!("the quote body size is {declared}, but body type {body_type} is {body_len} bytes");
            }
        }
        let mut body = Vec::with_capacity(fields.len());
        let mut at = body_at;
        for (name, len) in fields {
            body.push((name, b.slice(at, len, name)?.to_vec()));
            at += len;
        }
        let report_data = b.array(body_at + 520, "REPORTDATA")?;
        let sig_len = b.u32(at, "the signature data length")? as usize;
        let sig = Bytes::new(
            b.slice(at + 4, sig_len, "the signature data")?,
            "the quote signature data",
        );
        let signature = Signature::parse(&sig)?;
        let trailing = bytes.len() - (at + 4 + sig_len);
        Ok(TdxQuote {
            raw_len: bytes.len(),
            header,
            body_type,
            body,
            report_data,
            signature,
            trailing,
        })
    }

    /// REPORTDATA: the 64 bytes the TD bound into the quote.
    pub fn report_data(&self) -> &[u8; 64] {
        &self.report_data
    }

    /// RTMR0..3, as the quote reports them.
    pub fn rtmrs(&self) -> [&[u8]; 4] {
        let field = |name: &str| {
            self.body
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(&[][..], |(_, v)| &v[..])
        };
        [
            field("RTMR0"),
            field("RTMR1"),
            field("RTMR2"),
            field("RTMR3"),
        ]
    }

    fn version(&self) -> u64 {
        le_u64(&self.header[0..2])
    }

    fn td_attributes(&self) -> u64 {
        self.body
            .iter()
            .find(|(n, _)| *n == "TDATTRIBUTES")
            .map_or(0, |(_, v)| le_u64(v))
    }

    fn header_items(&self) -> Vec<Item> {
        let h = &self.header;
        let (key_type, tee_type) = (le_u64(&h[2..4]), le_u64(&h[4..8]));
        let key_text = match key_type {
            2 => "2 (ECDSA-256-with-P-256)".to_string(),
            3 => "3 (ECDSA-384-with-P-384)".to_string(),
            k => format!("{k} (unknown)"),
        };
        let svns = format!("{} / {}", le_u64(&h[8..10]), le_u64(&h[10..12]));
        let svns = match self.version() {
            4 => format!("{svns} (reserved in v4)"),
            _ => svns,
        };
        let vendor = match hex(&h[12..28]).as_str() {
            v @ "939a7233f79c4ca9940a0db3957f0607" => format!("{v} (Intel)"),
            v => v.to_string(),
        };
        vec![
            Item::new("version", "version", self.version(), self.version()),
            Item::new(
                "attestation key type",
                "attestation_key_type",
                key_text,
                key_type,
            ),
            Item::new(
                "TEE type",
                "tee_type",
                format!("{tee_type:#x} (TDX)"),
                tee_type,
            ),
            Item::new("QE SVN / PCE SVN", "qe_svn_pce_svn", &svns, svns.as_str()),
            Item::new("QE vendor ID", "qe_vendor_id", &vendor, vendor.as_str()),
            Item::hex("user data", "user_data", &h[28..48]),
        ]
    }

    fn body_type_text(&self) -> String {
        match self.body_type {
            3 => "3 (TD 1.5, 648 bytes)".into(),
            _ => "2 (TD 1.0, 584 bytes)".into(),
        }
    }

    pub fn render(&self) -> String {
        let mut out = format!("TDX quote ({} bytes)\n", self.raw_len);
        let o = &mut out;
        render_items(o, 2, &self.header_items());
        line(o, 2, "body type", self.body_type_text());
        o.push_str("TD report body\n");
        for (name, value) in &self.body {
            match *name {
                "TDATTRIBUTES" => line(
                    o,
                    2,
                    name,
                    flags_text(self.td_attributes(), TD_ATTRIBUTE_BITS),
                ),
                _ => line(o, 2, name, hex(value)),
            }
        }
        let s = &self.signature;
        o.push_str(&format!("Signature data ({} bytes)\n", s.len));
        line(o, 2, "ECDSA signature", hex(&s.ecdsa));
        line(o, 2, "attestation key", hex(&s.attestation_key));
        line(o, 2, "certification data", s.cert_text());
        if self.trailing > 0 {
            line(
                o,
                2,
                "trailing bytes",
                format!("{} after the signature data (ignored)", self.trailing),
            );
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let mut body = Map::new();
        for (name, value) in &self.body {
            let v = match *name {
                "TDATTRIBUTES" => flags_json(self.td_attributes(), TD_ATTRIBUTE_BITS),
                _ => Value::String(hex(value)),
            };
            body.insert((*name).into(), v);
        }
        let s = &self.signature;
        json!({
            "kind": "tdx",
            "size": self.raw_len,
            "header": json_items(None, self.header_items()),
            "body_type": self.body_type_text(),
            "body": body,
            "signature_data": {
                "size": s.len,
                "ecdsa_signature": hex(&s.ecdsa),
                "attestation_key": hex(&s.attestation_key),
                "certification_data": s.cert_text(),
            },
            "trailing_bytes": self.trailing,
        })
    }
}

impl Signature {
    fn parse(b: &Bytes) -> Result<Signature> {
        let cert_type = b.u16(128, "the certification data type")?;
        let cert_size = b.u32(130, "the certification data size")?;
        let cert = Bytes::new(
            b.slice(134, cert_size as usize, "the certification data")?,
            "the certification data",
        );
        // Type 6, QE report certification data: QE report (384), its signature (64), QE
        // authentication data (u16 size + data), then the nested certification data.
        let pck = if cert_type == 6 {
            let auth = cert.u16(448, "the QE authentication data size")? as usize;
            let at = 450 + auth;
            Some((
                cert.u16(at, "the PCK certification data type")?,
                cert.u32(at + 2, "the PCK certification data size")?,
            ))
        } else {
            None
        };
        Ok(Signature {
            len: b.len(),
            ecdsa: b.slice(0, 64, "the ECDSA signature")?.to_vec(),
            attestation_key: b.slice(64, 64, "the attestation key")?.to_vec(),
            cert_type,
            cert_size,
            pck,
        })
    }

    fn cert_text(&self) -> String {
        let name = match self.cert_type {
            5 => " (PCK certificate chain)",
            6 => " (QE report certification data)",
            _ => "",
        };
        let nested = match self.pck {
            Some((5, size)) => format!("; PCK certificate chain (type 5): {size} bytes"),
            Some((t, size)) => format!("; nested certification data type {t}: {size} bytes"),
            None => String::new(),
        };
        format!(
            "type {}{name}, {} bytes{nested}",
            self.cert_type, self.cert_size
        )
    }
}

#[cfg(test)]
mod tests {
    use super::TdxQuote;
    use crate::report::tests::value_of;
    use crate::report::Report;

    const V5: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/tdx/quote-v5.bin"
    ));
    const V4: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/az-tdx-vtpm/td-quote.bin"
    ));

    fn body_hex(q: &TdxQuote, name: &str) -> String {
        q.to_json()["body"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn decodes_a_v5_quote() {
        let Ok(Report::Tdx(q)) = Report::parse(V5) else {
            panic!("not decoded as TDX")
        };
        assert_eq!(q.version(), 5);
        assert_eq!(q.body_type, 3);
        assert!(body_hex(&q, "MRTD").starts_with("dfba221b48a22af8"));
        assert_eq!(body_hex(&q, "MRSERVICETD").len(), 96);
        assert_eq!(q.report_data()[..4], [0x6d, 0x6a, 0xb1, 0x3b]);
        let text = q.render();
        assert_eq!(value_of(&text, "body type"), Some("3 (TD 1.5, 648 bytes)"));
        assert_eq!(
            value_of(&text, "certification data"),
            Some("type 6 (QE report certification data), 4166 bytes; PCK certificate chain (type 5): 3678 bytes")
        );
        assert_eq!(
            value_of(&text, "TDATTRIBUTES"),
            Some("0x0000000010000000: set: SEPT_VE_DISABLE; clear: DEBUG, PKS, KL, PERFMON")
        );
    }

    #[test]
    fn decodes_a_v4_quote() {
        let q = TdxQuote::parse(V4).unwrap();
        assert_eq!(q.version(), 4);
        assert_eq!(q.body_type, 2);
        assert!(body_hex(&q, "MRTD").starts_with("024a32b070383331"));
        assert_eq!(q.report_data()[32..], [0; 32]);
        assert_eq!(q.trailing, 70);
        let json = q.to_json();
        assert_eq!(json["header"]["qe_svn_pce_svn"], "0 / 0 (reserved in v4)");
        assert_eq!(json["header"]["version"], 4);
        assert_eq!(json["signature_data"]["size"], 4300);
    }

    #[test]
    fn a_quote_cut_in_the_body_names_the_field() {
        let err = Report::parse(&V5[..300]).err().unwrap();
        assert_eq!(
            err.to_string(),
            "the TDX quote is cut in MROWNER: it needs bytes 0x11e..0x14e but has 300 bytes"
        );
        let err = TdxQuote::parse(&V4[..1000]).err().unwrap();
        assert_eq!(err.to_string(), "the TDX quote is cut in the signature data: it needs bytes 0x27c..0x1348 but has 1000 bytes");
    }

    #[test]
    fn an_sgx_quote_is_refused() {
        let mut sgx = V5.to_vec();
        sgx[4..8].copy_from_slice(&[0; 4]);
        let err = Report::parse(&sgx).err().unwrap();
        assert_eq!(
            err.to_string(),
            "this is an SGX quote (TEE type 0x00, version 5), not a TDX quote (TEE type 0x81)"
        );
    }
}

// SPDX-License-Identifier: Apache-2.0
//! Azure HCL reports as the paravisor leaves them in vTPM NV 0x01400001
//! (kbs-protocol.md §3.4, §4.4; kinvolk az-cvm-vtpm `hcl/mod.rs`).
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0x000 | 32 | header: "HCLA" (u32 LE 0x414C4348), version 2, report_size, request_type 2, status 0, 3 reserved words |
//! | 0x020 | 1184 | hardware report: SNP report (v3, VMPL 0, signed by the test VCEK), or a 1024-byte TDREPORT and zeros |
//! | 0x4C0 | 20 | IgvmRequestData: data_size (20 + var-data), version 1, report_type 2 = SNP / 4 = TDX, report_data_hash_type 1 = SHA-256, variable_data_size |
//! | 0x4D4 | n | var-data JSON |
//!
//! The hardware report's report_data is SHA-256(var-data) followed by 32 zero
//! bytes. The var-data follows the recorded Azure vector
//! (`tests/data/az-snp-vtpm/hcl-report.bin`): members `keys` (the AK as JWK
//! `kid` "HCLAkPub", `key_ops` ["sign"]), `vm-configuration`, and `user-data`,
//! the 64 bytes the guest wrote to NV 0x01400002 (zero-padded) as UPPERCASE
//! hex. Only the AK key is listed (Azure also lists `HCLEkPub`), so that the
//! report fits a 2048-byte swtpm NV index.

use anyhow::{ensure, Context as _, Result};
use ring::digest::{digest, SHA256, SHA384};

use crate::ak::AkInfo;
use crate::{snp, tdx};

/// NV index of the HCL report.
pub const NV_HCL_REPORT: u32 = 0x0140_0001;
/// NV index the guest writes its report data to.
pub const NV_USER_DATA: u32 = 0x0140_0002;
/// Persistent handle of Azure's vTPM AK.
pub const AZURE_AK_HANDLE: u32 = 0x8100_0003;
/// Offset of the hardware report.
pub const HW_REPORT_OFFSET: usize = 0x20;
/// Size of the hardware report area.
pub const HW_REPORT_AREA: usize = 1184;
/// Offset of IgvmRequestData.
pub const IGVM_OFFSET: usize = 0x4c0;
/// Offset of the var-data JSON.
pub const VAR_DATA_OFFSET: usize = 0x4d4;
/// Size of a TDREPORT_STRUCT.
pub const TDREPORT_LEN: usize = 1024;
/// Offset of REPORTMACSTRUCT.REPORTDATA in a TDREPORT.
pub const TDREPORT_DATA_OFFSET: usize = 128;
/// Largest report that fits a swtpm NV index.
pub const MAX_LEN: usize = 2048;

/// The hardware behind the vTPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HclKind {
    Snp,
    Tdx,
}

impl HclKind {
    /// IgvmRequestData report_type.
    pub fn report_type(self) -> u32 {
        match self {
            HclKind::Snp => 2,
            HclKind::Tdx => 4,
        }
    }
}

/// Uppercase hex, as Azure writes `user-data`.
fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// The var-data JSON naming `ak` and carrying `user_data` (≤ 64 bytes).
pub fn var_data(ak: &AkInfo, user_data: &[u8]) -> Result<Vec<u8>> {
    ensure!(
        user_data.len() <= 64,
        "user data is {} bytes, more than 64",
        user_data.len()
    );
    let mut padded = [0u8; 64];
    padded[..user_data.len()].copy_from_slice(user_data);
    let json = format!(
        concat!(
            r#"{{"keys":[{{"kid":"HCLAkPub","key_ops":["sign"],"kty":"RSA","e":"{e}","n":"{n}"}}],"#,
            r#""vm-configuration":{{"console-enabled":false,"secure-boot":true,"tpm-enabled":true,"#,
            r#""vmUniqueId":"5E5C2E4B-6E8D-4A0C-9F0B-7A1C3D2E4F60"}},"user-data":"{u}"}}"#
        ),
        e = ak.jwk_e(),
        n = ak.jwk_n(),
        u = upper_hex(&padded),
    );
    Ok(json.into_bytes())
}

/// report_data of the hardware report: SHA-256(var-data) ‖ 32 zero bytes.
pub fn report_data(var_data: &[u8]) -> [u8; 64] {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(digest(&SHA256, var_data).as_ref());
    data
}

/// A 1024-byte TDREPORT_STRUCT (Intel TDX module ABI: REPORTMACSTRUCT 256,
/// TEE_TCB_INFO 239, reserved 17, TDINFO 512) with `report_data` at 128. The
/// measurements are those of `tdx::TEMPLATE`, so IMDS quotes match them.
pub fn tdreport(report_data: &[u8; 64]) -> Vec<u8> {
    let body = &tdx::TEMPLATE[48..48 + 584];
    let mut r = vec![0u8; TDREPORT_LEN];
    // REPORTTYPE: TDX (0x81), subtype 0, version 0.
    r[0] = 0x81;
    r[16..32].copy_from_slice(&body[..16]); // CPUSVN = TEE_TCB_SVN
    r[TDREPORT_DATA_OFFSET..TDREPORT_DATA_OFFSET + 64].copy_from_slice(report_data);
    for (i, b) in r[224..256].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5; // MAC: plausible, unchecked
    }
    // TEE_TCB_INFO: valid bits, TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, ATTRIBUTES.
    r[256..264].copy_from_slice(&[0xff, 0x03, 0, 0, 0, 0, 0, 0]);
    r[264..280].copy_from_slice(&body[..16]);
    r[280..376].copy_from_slice(&body[16..112]);
    r[376..384].copy_from_slice(&body[112..120]);
    // TDINFO: ATTRIBUTES, XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG, RTMR0-3.
    r[512..912].copy_from_slice(&body[120..520]);
    let tcb_hash = digest(&SHA384, &r[256..495]);
    r[32..80].copy_from_slice(tcb_hash.as_ref());
    let info_hash = digest(&SHA384, &r[512..1024]);
    r[80..128].copy_from_slice(info_hash.as_ref());
    r
}

/// A complete HCL report (exactly `report_size` bytes, no NV padding).
pub fn build(kind: HclKind, ak: &AkInfo, user_data: &[u8]) -> Result<Vec<u8>> {
    let var = var_data(ak, user_data)?;
    let bound = report_data(&var);
    let hw = match kind {
        HclKind::Snp => snp::report(&bound, 0).context("sign the SNP report")?,
        HclKind::Tdx => tdreport(&bound),
    };
    let size = VAR_DATA_OFFSET + var.len();
    ensure!(
        size <= MAX_LEN,
        "the HCL report would be {size} bytes, more than a swtpm NV index holds ({MAX_LEN})"
    );
    let mut out = Vec::with_capacity(size);
    for word in [0x414c_4348, 2, size as u32, 2, 0, 0, 0, 0] {
        out.extend_from_slice(&u32::to_le_bytes(word));
    }
    out.extend_from_slice(&hw);
    out.resize(IGVM_OFFSET, 0);
    let igvm = [
        20 + var.len() as u32,
        1,
        kind.report_type(),
        1,
        var.len() as u32,
    ];
    for word in igvm {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend_from_slice(&var);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use ring::digest::{digest, SHA256};
    use serde_json::Value;
    use sev::firmware::guest::AttestationReport;

    use super::{build, tdreport, HclKind, IGVM_OFFSET, VAR_DATA_OFFSET};
    use crate::quote::SoftAk;

    const RECORDED: &[u8] = include_bytes!("../../data/az-snp-vtpm/hcl-report.bin");

    fn var_json(hcl: &[u8]) -> (Vec<u8>, Value) {
        let n = u32::from_le_bytes(hcl[0x4d0..0x4d4].try_into().unwrap()) as usize;
        let var = hcl[VAR_DATA_OFFSET..VAR_DATA_OFFSET + n].to_vec();
        let json = serde_json::from_slice(&var).unwrap();
        (var, json)
    }

    #[test]
    fn snp_report_binds_the_var_data_like_the_recorded_one() {
        let ak = SoftAk::test_key().unwrap().info();
        let hcl = build(HclKind::Snp, &ak, &[0xab; 48]).unwrap();
        assert!(hcl.len() <= 2048);
        assert_eq!(&hcl[..4], b"HCLA");
        assert_eq!(hcl[IGVM_OFFSET + 8], 2);
        let (var, json) = var_json(&hcl);
        let report = AttestationReport::from_bytes(&hcl[0x20..0x20 + 1184]).unwrap();
        assert_eq!(report.vmpl, 0);
        assert_eq!(report.report_data[..32], *digest(&SHA256, &var).as_ref());
        assert_eq!(report.report_data[32..], [0; 32]);
        assert_eq!(json["keys"][0]["n"], ak.jwk_n());
        let user = json["user-data"].as_str().unwrap();
        assert_eq!(user, format!("{}{}", "AB".repeat(48), "00".repeat(16)));
        // Same member names, order and key shape as the recorded Azure report.
        let (_, recorded) = var_json(RECORDED);
        let names = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&json), names(&recorded));
        assert_eq!(
            names(&json["vm-configuration"]),
            names(&recorded["vm-configuration"])
        );
        assert_eq!(names(&json["keys"][0]), names(&recorded["keys"][0]));
        assert_eq!(json["keys"][0]["kid"], recorded["keys"][0]["kid"]);
        assert_eq!(user.len(), recorded["user-data"].as_str().unwrap().len());
        let word = |at: usize| u32::from_le_bytes(hcl[at..at + 4].try_into().unwrap());
        assert_eq!([word(4), word(8), word(12)], [2, hcl.len() as u32, 2]);
    }

    #[test]
    fn tdx_report_carries_a_tdreport() {
        let ak = SoftAk::test_key().unwrap().info();
        let hcl = build(HclKind::Tdx, &ak, &[1; 48]).unwrap();
        assert_eq!(hcl[IGVM_OFFSET + 8], 4);
        let (var, _) = var_json(&hcl);
        let td = &hcl[0x20..0x20 + 1024];
        assert_eq!(td[128..160], *digest(&SHA256, &var).as_ref());
        assert!(hcl[0x20 + 1024..IGVM_OFFSET].iter().all(|b| *b == 0));
        // MRTD matches the TDX quote template the fake IMDS signs.
        let plain = tdreport(&[0; 64]);
        assert_eq!(plain[528..576], crate::tdx::TEMPLATE[48 + 136..48 + 184]);
        assert!(build(HclKind::Tdx, &ak, &[0; 65]).is_err());
    }
}

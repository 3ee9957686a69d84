// SPDX-License-Identifier: Apache-2.0
//! The `SNP_GET_REPORT` and `SNP_GET_EXT_REPORT` request handlers of the
//! `/dev/sev-guest` emulator: the buffers of `struct snp_report_req`,
//! `struct snp_ext_report_req` and `struct snp_report_resp`
//! (include/uapi/linux/sev-guest.h) in the calling process, and the driver's
//! `get_ext_report` length rules (see `sev_guest.rs` for the summary).

use crate::sev_guest::{CERTS_MAX, SEV_RET_INVALID_PARAM, VMM_ERR_INVALID_LEN};
use crate::{remote, snp};

/// Writes the 4000-byte `snp_report_resp` for a 96-byte `snp_report_req`.
fn answer(pid: u32, req: &[u8], resp: u64) -> std::io::Result<()> {
    let data: [u8; 64] = req[..64].try_into().unwrap_or([0; 64]);
    let vmpl = u32::from_le_bytes(req[64..68].try_into().unwrap_or_default());
    let mut out = vec![0u8; 4000];
    if vmpl > 3 {
        out[..4].copy_from_slice(&SEV_RET_INVALID_PARAM.to_le_bytes());
    } else {
        let report = snp::report(&data, vmpl).map_err(std::io::Error::other)?;
        out[4..8].copy_from_slice(&(report.len() as u32).to_le_bytes());
        out[32..32 + report.len()].copy_from_slice(&report);
    }
    remote::write(pid, resp, &out)
}

pub(crate) fn get_report(pid: u32, req: u64, resp: u64) -> std::io::Result<i32> {
    let req = remote::read(pid, req, 96)?;
    answer(pid, &req, resp)?;
    Ok(0)
}

pub(crate) fn get_ext_report(
    pid: u32,
    req_addr: u64,
    resp: u64,
    table: Vec<u8>,
    io: &mut [u8; 32],
) -> std::io::Result<i32> {
    let mut req = remote::read(pid, req_addr, 112)?;
    let certs_address = u64::from_le_bytes(req[96..104].try_into().unwrap_or_default());
    let certs_len = u32::from_le_bytes(req[104..108].try_into().unwrap_or_default());
    if certs_len == 0 || certs_address == 0 {
        answer(pid, &req, resp)?;
        return Ok(0);
    }
    if certs_len > CERTS_MAX || certs_len % 4096 != 0 {
        return Ok(-libc::EINVAL);
    }
    let needed = (table.len() as u32).div_ceil(4096) * 4096;
    if certs_len < needed {
        io[24..32].copy_from_slice(&VMM_ERR_INVALID_LEN.to_le_bytes());
        req[104..108].copy_from_slice(&needed.to_le_bytes());
        remote::write(pid, req_addr, &req)?;
        return Ok(-libc::EIO);
    }
    let mut certs = table;
    certs.resize(certs_len as usize, 0);
    remote::write(pid, certs_address, &certs)?;
    answer(pid, &req, resp)?;
    Ok(0)
}

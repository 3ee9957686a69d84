// SPDX-License-Identifier: Apache-2.0
//! The /dev/sev-guest emulator, driven with real ioctl(2) calls from this
//! process. Needs root and /dev/fuse (else each test prints SKIPPED).

mod util;

use std::fs::File;
use std::os::fd::AsRawFd as _;

use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};
use tee_emu::{
    can_run, snp, SevGuestEmulator, SEV_RET_RESOURCE_LIMIT, SNP_GET_EXT_REPORT, SNP_GET_REPORT,
    VMM_ERR_BUSY, VMM_ERR_INVALID_LEN,
};
use util::{errno, Scratch};

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
#[derive(Default)]
struct GuestRequest {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

/// `struct snp_ext_report_req` (its first 96 bytes are `struct snp_report_req`).
#[repr(C)]
struct ExtReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
    certs_address: u64,
    certs_len: u32,
}

/// Issues `cmd`; returns the ioctl's errno (0 on success) and the request.
fn ioctl(
    dev: &File,
    cmd: u32,
    req: &mut ExtReportReq,
    resp: &mut [u8; 4000],
    version: u8,
) -> (i32, GuestRequest) {
    let mut io = GuestRequest {
        msg_version: version,
        req_data: req as *mut ExtReportReq as u64,
        resp_data: resp.as_mut_ptr() as u64,
        exitinfo2: 0,
    };
    // SAFETY: `io` and the buffers it points to are live and as large as the ABI says.
    let rc = unsafe { libc::ioctl(dev.as_raw_fd(), cmd as _, &mut io as *mut GuestRequest) };
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    (if rc == 0 { 0 } else { errno }, io)
}

fn request(vmpl: u32) -> ExtReportReq {
    ExtReportReq {
        user_data: [0x77; 64],
        vmpl,
        rsvd: [0; 28],
        certs_address: 0,
        certs_len: 0,
    }
}

fn parse(resp: &[u8; 4000]) -> AttestationReport {
    assert_eq!(resp[0..4], [0; 4], "status");
    assert_eq!(u32::from_le_bytes(resp[4..8].try_into().unwrap()), 1184);
    AttestationReport::from_bytes(&resp[32..32 + 1184]).unwrap()
}

#[test]
fn get_report_and_ext_report() {
    if !can_run("get_report_and_ext_report") {
        return;
    }
    let scratch = Scratch::new("sev-guest");
    let emu = SevGuestEmulator::mount(scratch.path()).unwrap();
    assert_eq!(emu.device(), scratch.path().join("dev/sev-guest"));
    let dev = File::options()
        .read(true)
        .write(true)
        .open(emu.device())
        .unwrap();
    let vcek = Certificate::from_der(snp::VCEK_DER).unwrap();
    let mut resp = [0u8; 4000];

    let mut req = request(1);
    assert_eq!(ioctl(&dev, SNP_GET_REPORT, &mut req, &mut resp, 1).0, 0);
    let report = parse(&resp);
    assert_eq!((*report.report_data, report.vmpl), ([0x77; 64], 1));
    (&vcek, &report).verify().unwrap();

    assert_eq!(
        ioctl(&dev, SNP_GET_REPORT, &mut req, &mut resp, 0).0,
        libc::EINVAL
    );
    let mut bad = request(4);
    assert_eq!(ioctl(&dev, SNP_GET_REPORT, &mut bad, &mut resp, 1).0, 0);
    assert_eq!(resp[0..4], 0x16u32.to_le_bytes(), "firmware INVALID_PARAM");

    // Too small a certificate buffer: EIO, INVALID_LEN and the needed size.
    let mut certs = vec![0u8; 16384];
    let mut req = request(0);
    req.certs_address = certs.as_mut_ptr() as u64;
    req.certs_len = 4096;
    let (rc, io) = ioctl(&dev, SNP_GET_EXT_REPORT, &mut req, &mut resp, 1);
    assert_eq!((rc, io.exitinfo2), (libc::EIO, VMM_ERR_INVALID_LEN));
    assert_eq!(req.certs_len, 8192);
    req.certs_len = 100;
    assert_eq!(
        ioctl(&dev, SNP_GET_EXT_REPORT, &mut req, &mut resp, 1).0,
        libc::EINVAL
    );
    req.certs_len = 8192;
    assert_eq!(ioctl(&dev, SNP_GET_EXT_REPORT, &mut req, &mut resp, 1).0, 0);
    (&vcek, &parse(&resp)).verify().unwrap();
    let table = CertTableEntry::vec_bytes_to_cert_table(&mut certs).unwrap();
    let types: Vec<CertType> = table.iter().map(|e| e.cert_type.clone()).collect();
    assert_eq!(types, [CertType::VCEK, CertType::ASK, CertType::ARK]);
    assert_eq!(table[1].data, snp::ASK_DER);

    emu.knobs().update(|f| f.certs = snp::HostCerts::None);
    certs.fill(0xee);
    req.certs_len = 4096;
    assert_eq!(ioctl(&dev, SNP_GET_EXT_REPORT, &mut req, &mut resp, 1).0, 0);
    assert!(certs[..4096].iter().all(|b| *b == 0), "an empty table");
}

#[test]
fn device_knobs() {
    if !can_run("device_knobs") {
        return;
    }
    let scratch = Scratch::new("sev-guest-knobs");
    let emu = SevGuestEmulator::mount(scratch.path()).unwrap();
    let dev = File::open(emu.device()).unwrap();
    let mut resp = [0u8; 4000];
    let mut req = request(0);
    emu.knobs().update(|f| {
        f.busy = 1;
        f.eio = 1;
        f.fw_error = SEV_RET_RESOURCE_LIMIT;
    });
    let (rc, io) = ioctl(&dev, SNP_GET_REPORT, &mut req, &mut resp, 1);
    assert_eq!((rc, io.exitinfo2), (libc::EBUSY, VMM_ERR_BUSY));
    let (rc, io) = ioctl(&dev, SNP_GET_REPORT, &mut req, &mut resp, 1);
    assert_eq!(
        (rc, io.exitinfo2),
        (libc::EIO, u64::from(SEV_RET_RESOURCE_LIMIT))
    );
    assert_eq!(ioctl(&dev, SNP_GET_REPORT, &mut req, &mut resp, 1).0, 0);
    assert_eq!(emu.knobs().faults().requests, 3);

    emu.knobs().update(|f| f.deny_open = true);
    assert_eq!(errno(File::open(emu.device())), libc::EACCES);
    emu.knobs().update(|f| {
        f.deny_open = false;
        f.mode = 0;
    });
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(emu.device())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0);
}

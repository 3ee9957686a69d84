// SPDX-License-Identifier: Apache-2.0
//! The configfs-tsm emulator, driven through the mounted filesystem like a
//! client would. Needs root and /dev/fuse (else each test prints SKIPPED).

mod util;

use std::fs;

use sev::certs::snp::{Certificate, Verifiable};
use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};
use tee_emu::{can_run, snp, tdx, Provider, TsmEmulator};
use util::{errno, Scratch};

#[test]
fn sev_entry_round_trip() {
    if !can_run("sev_entry_round_trip") {
        return;
    }
    let scratch = Scratch::new("tsm-sev");
    let emu = TsmEmulator::mount(scratch.path(), Provider::Sev).unwrap();
    let base = scratch.path().join("sys/kernel/config/tsm/report");
    assert_eq!(emu.report_dir(), base);
    let entry = base.join("agent-1");
    fs::create_dir(&entry).unwrap();
    assert_eq!(emu.knobs().entries(), ["agent-1"]);
    let mut names: Vec<String> = fs::read_dir(&entry)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "auxblob",
            "generation",
            "inblob",
            "outblob",
            "privlevel",
            "privlevel_floor",
            "provider"
        ]
    );
    assert_eq!(text(&entry.join("provider")), "sev_guest\n");
    assert_eq!(text(&entry.join("privlevel_floor")), "0\n");
    assert_eq!(text(&entry.join("generation")), "0\n");
    assert_eq!(errno(read(&entry.join("outblob"))), libc::EINVAL);

    let data: [u8; 64] = std::array::from_fn(|i| i as u8 ^ 0x33);
    fs::write(entry.join("inblob"), data).unwrap();
    assert_eq!(text(&entry.join("generation")), "1\n");
    let raw = fs::read(entry.join("outblob")).unwrap();
    assert_eq!(raw.len(), snp::REPORT_LEN);
    let report = AttestationReport::from_bytes(&raw).unwrap();
    assert_eq!(*report.report_data, data);
    assert_eq!((report.version, report.vmpl), (3, 0));
    let vcek = Certificate::from_der(snp::VCEK_DER).unwrap();
    (&vcek, &report).verify().unwrap();
    let mut aux = fs::read(entry.join("auxblob")).unwrap();
    let table = CertTableEntry::vec_bytes_to_cert_table(&mut aux).unwrap();
    assert_eq!(table[0].cert_type, CertType::VCEK);

    fs::write(entry.join("privlevel"), "2\n").unwrap();
    assert_eq!(text(&entry.join("generation")), "2\n");
    let report = AttestationReport::from_bytes(&fs::read(entry.join("outblob")).unwrap()).unwrap();
    assert_eq!(report.vmpl, 2);
    assert_eq!(errno(fs::write(entry.join("privlevel"), "7")), libc::EINVAL);
    assert_eq!(text(&entry.join("generation")), "2\n");

    fs::remove_dir(&entry).unwrap();
    assert!(emu.knobs().entries().is_empty());
    assert!(!entry.exists());
}

#[test]
fn inblob_size_rules() {
    if !can_run("inblob_size_rules") {
        return;
    }
    let scratch = Scratch::new("tsm-size");
    let emu = TsmEmulator::mount(scratch.path(), Provider::Sev).unwrap();
    let entry = emu.report_dir().join("short");
    fs::create_dir(&entry).unwrap();
    fs::write(entry.join("inblob"), [1u8; 32]).unwrap();
    // The short store succeeds (generation moves); the provider refuses it at read.
    assert_eq!(text(&entry.join("generation")), "1\n");
    assert_eq!(errno(read(&entry.join("outblob"))), libc::EINVAL);
    assert_eq!(
        errno(fs::write(entry.join("inblob"), [1u8; 65])),
        libc::EFBIG
    );
    fs::remove_dir(&entry).unwrap();
}

#[test]
fn knobs_fail_like_the_kernel() {
    if !can_run("knobs_fail_like_the_kernel") {
        return;
    }
    let scratch = Scratch::new("tsm-knobs");
    let emu = TsmEmulator::mount(scratch.path(), Provider::Sev).unwrap();
    let dir = emu.report_dir();
    emu.knobs().update(|f| f.deny = true);
    assert_eq!(errno(fs::create_dir(dir.join("a"))), libc::EACCES);
    emu.knobs().update(|f| {
        f.deny = false;
        f.provider = None;
    });
    assert_eq!(errno(fs::create_dir(dir.join("a"))), libc::ENXIO);
    emu.knobs().update(|f| {
        f.provider = Some(Provider::Sev);
        f.busy = 1;
        f.eio = 1;
        f.race = 1;
        f.outblob_len = Some(100);
    });
    let entry = dir.join("a");
    fs::create_dir(&entry).unwrap();
    fs::write(entry.join("inblob"), [9u8; 64]).unwrap();
    assert_eq!(
        text(&entry.join("generation")),
        "2\n",
        "race: a second writer"
    );
    assert_eq!(errno(read(&entry.join("outblob"))), libc::EBUSY);
    assert_eq!(errno(read(&entry.join("outblob"))), libc::EIO);
    assert_eq!(fs::read(entry.join("outblob")).unwrap().len(), 100);
    let left = emu.knobs().faults();
    assert_eq!((left.busy, left.eio, left.race), (0, 0, 0));
    fs::remove_dir(&entry).unwrap();
}

#[test]
fn tdx_quote_is_resigned() {
    if !can_run("tdx_quote_is_resigned") {
        return;
    }
    let scratch = Scratch::new("tsm-tdx");
    let emu = TsmEmulator::mount(scratch.path(), Provider::Tdx).unwrap();
    let entry = emu.report_dir().join("q");
    fs::create_dir(&entry).unwrap();
    assert_eq!(text(&entry.join("provider")), "tdx_guest\n");
    assert!(!entry.join("privlevel").exists());
    assert!(!entry.join("auxblob").exists());
    let data = [0x5cu8; 64];
    fs::write(entry.join("inblob"), data).unwrap();
    let quote = fs::read(entry.join("outblob")).unwrap();
    tdx::verify_signature(&quote).unwrap();
    assert_eq!(
        quote[tdx::REPORT_DATA_OFFSET..tdx::REPORT_DATA_OFFSET + 64],
        data
    );
    fs::remove_dir(&entry).unwrap();
}

/// One open + read to end, as configfs clients must.
fn read(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut fs::File::open(path)?, &mut out)?;
    Ok(out)
}

fn text(path: &std::path::Path) -> String {
    String::from_utf8(read(path).unwrap()).unwrap()
}
